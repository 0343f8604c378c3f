"""The training objective on the model's forward passes: the variants' terms, the
gradient paths of the reconstruction and L_ss, and the PDG branch's L_nda targets."""

from __future__ import annotations

import pytest
import torch

from bsr.model import BSR
from bsr.objective import VARIANTS, LossConfig, Objective, variant_config
from training_helpers import FAST_LOSS


def test_variants_switch_terms():
    torch.manual_seed(0)
    from bsr.pdg import ProxyDataGenerator

    m = BSR()
    ir, vis = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    seen = {}
    for v in VARIANTS:
        lc = variant_config(v, **FAST_LOSS)
        pdg = ProxyDataGenerator(2) if lc.use_pdg else None
        d = m.phase1(ir, vis, pdg, torch.Generator().manual_seed(0), bidirectional=lc.bidirectional,
                     joint=lc.joint)
        _, terms = Objective(lc, pdg).phase1(d)
        seen[v] = set(terms)
    assert {"nda_di", "nda_an", "epr", "ss_field", "rec", "dec", "smooth"} <= seen["full"]
    assert "edge" in seen["I"] and "nda_di" not in seen["I"]
    assert not {"nda_di", "edge"} & seen["II"]
    assert "epr" not in seen["IV"]
    assert not any(k.startswith("ss_") for k in seen["V"])
    with pytest.raises(ValueError, match="alignment"):
        LossConfig(alignment="mi")


def test_not_joint_reconstruction_leaves_registration_alone():
    """Exp. III and the fusion-only reference: with joint=False the reconstruction
    loss (its target, the warped IR, included) sends no gradient to the U-Net,
    so with the alignment losses off the registration network stays untouched."""
    torch.manual_seed(0)
    m = BSR()
    ir, vis = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    for joint in (False, True):
        m.zero_grad(set_to_none=True)
        lc = LossConfig(joint=joint, alignment="none", use_epr=False, use_pdg=False, use_smooth=False,
                        use_dec=False)
        d = m.phase1(ir, vis, None, bidirectional=True, joint=joint)
        total, terms = Objective(lc, None).phase1(d)
        assert set(terms) == {"rec", "total"}
        total.backward()
        unet_grad = sum(float(p.grad.abs().sum()) for p in m.unet.parameters() if p.grad is not None)
        if joint:
            assert unet_grad > 0      # the joint model does shape registration through reconstruction
        else:
            assert unet_grad == 0


@pytest.mark.parametrize("teacher", ["none", "plain", "pdg"])
def test_ss_teacher_and_field_weight(teacher):
    """ss_teacher detaches one side of every L_ss pair (the plain branch, or the
    IPDG-restored PDG branch); ss_field scales the field term only."""
    from bsr.pdg import ProxyDataGenerator

    torch.manual_seed(0)
    m = BSR()
    ir, vis = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    only_ss = dict(alignment="none", use_epr=False, use_smooth=False, use_rec=False, use_dec=False)
    pdg = ProxyDataGenerator(2)
    d = m.phase1(ir, vis, pdg, torch.Generator().manual_seed(0))
    d["phi_p"] = d["phi_p"] + 0.3          # make the two branches differ
    total, terms = Objective(variant_config("full", ss_teacher=teacher, **only_ss), pdg).phase1(d)
    g_plain, g_new = torch.autograd.grad(total, [d["phi_p"], d["phi_p_new"]], retain_graph=True,
                                         allow_unused=True)
    assert (g_plain is None) == (teacher == "plain")
    assert (g_new is None) == (teacher == "pdg")
    half, t2 = Objective(variant_config("full", ss_teacher=teacher, ss_field=0.5, **only_ss), pdg).phase1(d)
    assert t2["total"] == pytest.approx(terms["total"] - 0.5 * terms["ss_field"], rel=1e-5)
    with pytest.raises(ValueError, match="ss_teacher"):
        LossConfig(ss_teacher="both")
    with pytest.raises(ValueError, match="nda_form"):
        LossConfig(nda_form="l2")


def test_nda_target_transfer_matches_search_away_from_seams():
    """The PDG branch's L_nda targets transferred from the plain search equal
    the PDG branch's own search away from patch seams and borders."""
    from bsr.nda import nda_search
    from bsr.pdg import ProxyDataGenerator, seam_mask
    from bsr.datasets.readers import load_pairs
    from bsr.datasets.simulate import shift

    p = load_pairs("synthetic", synthetic={"n": 1, "size": [64, 64]})[0]
    vis = torch.from_numpy(p.vis)[None, None]
    ir, _ = shift(torch.from_numpy(p.ir)[None, None], 2.0)
    pdg = ProxyDataGenerator(2)
    ir_new, vis_new, ops = pdg(ir, vis, generator=torch.Generator().manual_seed(3))
    kw = dict(radius=3, window=5, subpixel=False)   # the sub-pixel parabola is float-sensitive
    own = nda_search(ir_new, vis_new, **kw)
    obj = Objective(LossConfig(), pdg)
    moved = nda_search(ir, vis, **kw).through_pdg(obj.pdg, ops)   # the transfer Objective makes
    keep = seam_mask(64, 64, 2, margin=3 + 2 + 2, include_border=True).bool()
    n = int((own.valid & keep).sum())
    assert n > 50
    # equal up to rare ties / threshold cases of the search (< 1 % of the pixels)
    assert int(((moved.valid ^ own.valid) & keep).sum()) <= max(1, n // 100)
    both = moved.valid & own.valid & keep
    close = ((moved.delta - own.delta).abs() < 1e-4).all(1, keepdim=True)
    assert int((both & ~close).sum()) <= max(1, n // 100)


def test_phase2_adds_the_edge_transfer_term_only_when_weighted():
    from bsr.metrics.qabf import qabf_max
    from bsr.model import model_config

    torch.manual_seed(0)
    m = BSR(model_config("quick"))
    m.set_phase(2)
    d = m.phase2(torch.rand(2, 1, 24, 24), torch.rand(2, 1, 24, 24))
    base, t0 = Objective(LossConfig(), None).phase2(d)
    assert "fusion_qabf" not in t0
    total, t1 = Objective(LossConfig(fusion_qabf=0.5), None).phase2(d)
    assert 0 < t1["fusion_qabf"] < qabf_max()
    assert total.item() == pytest.approx(base.item() + 0.5 * t1["fusion_qabf"], rel=1e-6)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.ae.decoder_modules()[0].parameters())
