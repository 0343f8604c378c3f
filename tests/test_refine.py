"""Per-pair MIND refinement of a field (bsr.refine) and its model option ``refine``."""

import pytest
import torch

from bsr import refine as refine_mod
from bsr.checkpoint import load_checkpoint, save_checkpoint
from bsr.datasets import simulate
from bsr.model import BSR, model_config
from bsr.refine import Refiner
from bsr.warp import compose


def _pair(seed=0, h=64, w=80):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, h // 4, w // 4, generator=g)
    ir = torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return ir, 1.0 - ir   # "visible": inverted contrast, the same structures


def _epe(phi, gt, m=6):
    return (phi - gt)[..., m:-m, m:-m].pow(2).sum(1).sqrt().mean().item()


def test_refinement_recovers_a_shift_from_the_identity():
    ir, vis = _pair()
    mis, gt = simulate.shift(ir, 2.0, -1.5)
    phi, _ = Refiner(grid=8, steps=80)(mis, vis, torch.zeros_like(gt))
    assert _epe(torch.zeros_like(gt), gt) > 2.4
    assert _epe(phi, gt) < 0.5


def test_an_exact_field_stays_put():
    ir, vis = _pair(1)
    mis, gt = simulate.shift(ir, 1.0, -2.0)
    phi, _ = Refiner(grid=8, steps=60)(mis, vis, gt)
    assert _epe(phi, gt) < 0.1


@pytest.mark.parametrize("warp_descriptors", [True, False])
def test_the_border_band_of_the_warped_image_is_left_out(monkeypatch, warp_descriptors):
    """A field that samples outside the IR (a 20 px shift of a 96 px image): the band it fills by repeating
    the IR's border must not pull the refinement away from the true field; counting it (a mask of ones)
    does. (Warped descriptors feel the band less: at a 12 px shift they were pulled 0.16 px, against
    0.21 px when MIND is recomputed on the warped IR.)"""
    ir, vis = _pair(2, 96, 96)
    mis, gt = simulate.shift(ir, 20.0, 0.0)
    ref = Refiner(grid=8, steps=60, warp_descriptors=warp_descriptors)
    r_masked = ref.residual(mis, vis, gt)
    monkeypatch.setattr(refine_mod, "inside_mask", lambda flow, margin=0.0: torch.ones_like(flow[:, :1]))
    r_band = ref.residual(mis, vis, gt)
    assert _epe(compose(gt, r_masked), gt) < 0.1
    assert _epe(compose(gt, r_band), gt) > 2 * _epe(compose(gt, r_masked), gt)


def test_runs_under_inference_mode_and_returns_the_inverse():
    ir, vis = _pair(3)
    mis, gt = simulate.shift(ir, 1.0, 1.0)
    zero = torch.zeros_like(gt)
    with torch.inference_mode():
        phi_p, phi_n = Refiner(grid=8, steps=40)(mis, vis, zero, zero)
    assert not phi_p.requires_grad
    assert _epe(compose(phi_p, phi_n), zero) < 0.05     # warping by phi_p then phi_n is the identity


def test_batch_items_are_fitted_each_on_their_own():
    a, va = _pair(4)
    b, vb = _pair(5)
    mis_a, gt = simulate.shift(a, 1.5, 0.0)
    ref = Refiner(grid=8, steps=10)
    zero = torch.zeros(1, 2, *a.shape[-2:])
    both = ref.residual(torch.cat([mis_a, b]), torch.cat([va, vb]), zero.repeat(2, 1, 1, 1))
    alone = ref.residual(mis_a, va, zero)
    torch.testing.assert_close(both[:1], alone)


@pytest.mark.parametrize("bad, match", [
    ({"grid": 1}, "at least 2"), ({"steps": 0}, "positive whole"), ({"steps": 2.5}, "positive whole"),
    ({"lr": 0}, "> 0"), ({"smooth": -1}, ">= 0"), ({"scales": []}, "scales"), ({"scales": [0]}, "scales"),
])
def test_bad_settings_are_one_line_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        Refiner(**bad)


def test_from_config():
    assert Refiner.from_config(None) is None and Refiner.from_config(False) is None
    assert Refiner.from_config(True) == Refiner()
    assert Refiner.from_config({"steps": 5}).steps == 5
    with pytest.raises(ValueError, match="unknown refine option"):
        Refiner.from_config({"step": 5})
    with pytest.raises(ValueError, match="must be true, false"):
        Refiner.from_config("yes")
    with pytest.raises(ValueError, match="shapes|expected"):
        Refiner().residual(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9), torch.zeros(1, 2, 8, 8))


def test_model_option_refine_changes_the_field_and_survives_a_checkpoint(tmp_path):
    ir, vis = _pair(6)
    mis, _ = simulate.shift(ir, 1.5, 0.0)
    model = BSR(model_config("quick")).eval()
    model.use_local = False
    with torch.no_grad():
        plain, _ = model.register(mis, vis)
    model.set_refine({"grid": 8, "steps": 20})
    with torch.no_grad():
        refined, back = model.register(mis, vis)
    assert plain.abs().max().item() == 0.0 and refined.abs().mean().item() > 0.2
    assert back.shape == refined.shape
    path = save_checkpoint(tmp_path / "m.pt", model, {}, step=0, phase=1)
    loaded = load_checkpoint(path)
    assert loaded.refiner == model.refiner
    model.set_refine(False)
    assert model.refiner is None and model.config["refine"] is None


def test_warped_descriptors_equal_recomputed_ones_on_a_translation_by_a_multiple_of_the_scales():
    """Away from the border, MIND of the IR shifted by (4, -8) px equals the IR's MIND shifted so at every
    scale (1, 2, 4), so the two losses agree there; on a field that is no translation they differ."""
    from bsr.similarity import mind_descriptors, mind_loss, warped_mind_loss
    from bsr.warp import warp

    ir, vis = _pair(7, 96, 96)
    flow = torch.zeros(1, 2, 96, 96)
    flow[:, 0], flow[:, 1] = 4.0, -8.0
    mask = torch.zeros(1, 1, 96, 96)
    mask[..., 24:-24, 24:-24] = 1.0
    moving, fixed = mind_descriptors(ir), mind_descriptors(vis)
    a = warped_mind_loss(moving, fixed, flow, mask)
    b = mind_loss(warp(ir, flow), vis, mask, fixed_descriptors=fixed)
    assert a.item() > 0.05 and abs(a.item() - b.item()) < 1e-5
    zoom = torch.stack(torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="xy")) * 0.05
    a, b = (warped_mind_loss(moving, fixed, zoom[None], mask),
            mind_loss(warp(ir, zoom[None]), vis, mask, fixed_descriptors=fixed))
    assert abs(a.item() - b.item()) > 1e-3


@pytest.mark.parametrize("warp_descriptors", [True, False])
def test_both_descriptor_paths_recover_a_shift(warp_descriptors):
    ir, vis = _pair(8)
    mis, gt = simulate.shift(ir, -1.5, 2.0)
    phi, _ = Refiner(grid=8, steps=80, warp_descriptors=warp_descriptors)(mis, vis, torch.zeros_like(gt))
    assert _epe(phi, gt) < 0.5


def test_warp_descriptors_must_be_a_bool():
    with pytest.raises(ValueError, match="true or false"):
        Refiner(warp_descriptors="yes")


def test_a_large_pair_is_fitted_on_a_reduced_copy_in_px_of_the_image():
    """Over ``max_side`` the fit runs on a copy reduced 3 times (96 x 120 -> 32 x 40) and its residual is
    returned at full size in full-size px: it still finds the (3, -2) px shift; within ``max_side`` the
    result is that of a fit without the option."""
    ir, vis = _pair(9, 96, 120)
    mis, gt = simulate.shift(ir, 3.0, -2.0)
    zero = torch.zeros_like(gt)
    reduced = Refiner(grid=12, steps=80, max_side=48).residual(mis, vis, zero)
    assert reduced.shape == gt.shape and _epe(reduced, gt, 12) < 0.5
    small = Refiner(grid=12, steps=10, max_side=120).residual(mis, vis, zero)
    torch.testing.assert_close(small, Refiner(grid=12, steps=10, max_side=None).residual(mis, vis, zero))


@pytest.mark.parametrize("bad", [8, 100.0, True])
def test_max_side_must_be_null_or_a_whole_number(bad):
    with pytest.raises(ValueError, match="max_side"):
        Refiner(max_side=bad)
