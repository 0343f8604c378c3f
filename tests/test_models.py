"""Networks and the BSR model: shapes at odd sizes, near-identity start, sizes."""

from __future__ import annotations

import pytest
import torch

from bsr.model import BSR, SIZES, model_config
from bsr.networks import AutoEncoder, RegUNet, count_parameters
from bsr.networks.autoencoder import InvertibleBlock
from bsr.pdg import ProxyDataGenerator
from bsr.warp import warp


def _pair(b=2, h=37, w=53, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g), torch.rand(b, 1, h, w, generator=g)


@pytest.mark.parametrize("hw", [(37, 53), (16, 16), (5, 9)])
def test_unet_any_size_and_near_identity(hw):
    torch.manual_seed(0)
    net = RegUNet(enc_channels=(4, 8, 8, 8), dec_channels=(8, 8, 8), final_channels=(4,), flow_scale=4.0)
    ir, vis = _pair(2, *hw)
    out = net(ir, vis)
    assert out.shape == (2, 4, *hw)
    # small-init head: the field starts within a thousandth of a pixel of zero
    assert out.abs().max() < 1e-3


def test_unet_config_errors():
    with pytest.raises(ValueError, match="dec_channels"):
        RegUNet(enc_channels=(4, 8), dec_channels=(8, 8))


def test_autoencoder_shapes_odd_size():
    torch.manual_seed(0)
    ae = AutoEncoder(dim=8, heads=2, enc_blocks=1, global_blocks=1, local_blocks=1, dec_blocks=1)
    x = torch.rand(2, 1, 37, 53)
    rec, g, l = ae(x)
    assert rec.shape == x.shape and g.shape == l.shape == (2, 8, 37, 53)
    assert 0 <= rec.min() and rec.max() <= 1
    fused, fa, fb = ae.fuse(x, torch.rand_like(x), "sum")
    assert fused.shape == x.shape
    # the "sum" rule adds global to global and local to local
    gs, ls = AutoEncoder.combine(fa, fb, "sum")
    torch.testing.assert_close(gs, fa[0] + fb[0])
    torch.testing.assert_close(ls, fa[1] + fb[1])
    # "absmax" keeps, per element, the feature of larger magnitude, sign included
    a = (torch.tensor([[1.0, -3.0, 0.5]]), torch.tensor([[-2.0, 0.0, 4.0]]))
    b = (torch.tensor([[-2.0, 1.0, 0.5]]), torch.tensor([[1.0, -1.0, -5.0]]))
    gm, lm = AutoEncoder.combine(a, b, "absmax")
    torch.testing.assert_close(gm, torch.tensor([[-2.0, -3.0, 0.5]]))
    torch.testing.assert_close(lm, torch.tensor([[-2.0, -1.0, -5.0]]))
    torch.testing.assert_close(AutoEncoder.combine(fa, fa, "absmax")[0], fa[0])
    with pytest.raises(ValueError, match="fusion rule"):
        AutoEncoder.combine(fa, fb, "max")


def test_invertible_block_is_invertible():
    """The coupling is invertible given its sub-networks (checked by inverting it)."""
    torch.manual_seed(0)
    blk = InvertibleBlock(8)
    x = torch.randn(1, 8, 9, 11)
    y = blk(x)
    a2, b2 = y.chunk(2, 1)
    a = (a2 - blk.t(b2)) / torch.exp(torch.tanh(blk.s(b2)))
    b = b2 - blk.f(a)
    mixed = torch.cat((a, b), 1)
    w = blk.mix.weight[:, :, 0, 0]
    x_rec = torch.einsum("oc,bchw->bohw", torch.linalg.inv(w), mixed - blk.mix.bias[None, :, None, None])
    torch.testing.assert_close(x_rec, x, atol=1e-4, rtol=1e-4)


def test_parameter_counts_reported():
    counts = {}
    for size in SIZES:
        m = BSR(model_config(size))
        counts[size] = m.parameter_counts()
        assert counts[size]["total"] == counts[size]["unet"] + counts[size]["ae"] == count_parameters(m)
    print("parameter counts:", counts)
    # paper size: a U-Net larger than VoxelMorph's (~0.1 M) and a CDDFuse-order auto-encoder
    assert counts["paper"]["unet"] > 300_000 and counts["paper"]["ae"] > 300_000
    assert counts["quick"]["total"] < 50_000


def test_model_config_overrides_and_errors():
    cfg = model_config("quick", ae={"dim": 12, "heads": 3})
    assert cfg["ae"]["dim"] == 12 and cfg["size"] == "quick"
    with pytest.raises(ValueError, match="unknown model option"):
        model_config("quick", ae={"width": 3})
    with pytest.raises(ValueError, match="unknown model size"):
        model_config("huge")


def test_bsr_register_fuse_odd_size():
    torch.manual_seed(0)
    m = BSR(model_config("quick"))
    ir, vis = _pair(1, 37, 53)
    phi_p, phi_n = m.register(ir, vis)
    assert phi_p.shape == phi_n.shape == (1, 2, 37, 53)
    fused, ir_reg, phi = m.fuse(ir, vis)
    assert fused.shape == ir_reg.shape == (1, 1, 37, 53)
    # near-identity start: the registered IR is the IR
    assert (ir_reg - ir).abs().max() < 1e-3


def test_phase1_keys_and_ipdg_consistency():
    torch.manual_seed(0)
    m = BSR(model_config("quick"))
    ir, vis = _pair(2, 32, 32)
    pdg = ProxyDataGenerator(2)
    g = torch.Generator().manual_seed(1)
    d = m.phase1(ir, vis, pdg, g)
    for k in ("phi_p", "phi_n", "ir_reg", "vis_reg", "ir_rec", "vis_rec", "ir_glob", "vis_loc",
              "ir_new", "vis_new", "phi_p_new", "phi_p_restored", "phi_n_restored", "ir_reg_restored",
              "vis_reg_restored", "ir_rec_restored", "vis_rec_restored", "ir_glob_new"):
        assert k in d, k
        assert torch.isfinite(d[k]).all(), k
    # restored PDG-branch inputs equal the plain inputs (IPDG undoes PDG)
    torch.testing.assert_close(pdg.inverse(d["ir_new"], d["ops"]), ir)
    # the aligned images are the inputs warped by their fields (V with V, T with T)
    torch.testing.assert_close(d["ir_reg"], warp(ir, d["phi_p"]))
    torch.testing.assert_close(d["vis_reg"], warp(vis, d["phi_n"]))
    torch.testing.assert_close(d["vis_reg_new"], warp(d["vis_new"], d["phi_n_new"]))


def test_phase1_switches():
    torch.manual_seed(0)
    m = BSR(model_config("quick"))
    ir, vis = _pair(1, 16, 16)
    d = m.phase1(ir, vis, None, bidirectional=False, joint=False)
    assert "phi_n" not in d and "vis_reg" not in d and "phi_p_new" not in d
    # one direction: the visible image itself is reconstructed (features for L_dec)
    assert "vis_rec" in d
    # not joint: no reconstruction gradient reaches the registration network
    d["ir_rec"].sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in m.unet.parameters())


def test_phase2_freezes_all_but_decoder():
    m = BSR(model_config("quick"))
    m.set_phase(2)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("ae.reduce", "ae.decoder", "ae.out")) for n in trainable)
    ir, vis = _pair(1, 16, 16)
    d = m.phase2(ir, vis)
    assert d["fused"].requires_grad and not d["ir_glob"].requires_grad
    m.set_phase(1)
    assert all(p.requires_grad for p in m.parameters())


def test_phase2_with_train_encoder_trains_the_whole_autoencoder_only():
    m = BSR(model_config("quick"))
    m.set_phase(2, train_encoder=True)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in m.named_parameters() if n.startswith("ae.")}
    encoder = {id(p) for mod in m.ae.encoder_modules() for p in mod.parameters()}
    assert encoder and all(p.requires_grad for p in m.parameters() if id(p) in encoder)
    ir, vis = _pair(1, 16, 16)
    d = m.phase2(ir, vis)
    assert d["fused"].requires_grad and d["ir_glob"].requires_grad and not d["phi_p"].requires_grad


def test_grad_checkpoint_gives_same_gradients():
    torch.manual_seed(0)
    m = BSR(model_config("quick"))
    x = torch.rand(2, 1, 16, 16)
    grads = []
    for on in (False, True):
        m.zero_grad()
        m.set_grad_checkpoint(on)
        rec, g, l = m.reconstruct(x)
        (rec.mean() + g.mean() + l.pow(2).mean()).backward()
        grads.append([p.grad.clone() for p in m.ae.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
