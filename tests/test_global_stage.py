"""The global (affine) stage of the released model (bsr.global_stage) and its use in BSR.register."""

import math

import pytest
import torch

from bsr.datasets import simulate
from bsr.global_stage import GlobalStage, _rescale, affine_field, fit_affine
from bsr.model import BSR, model_config
from bsr.warp import compose, identity_grid


def _textured(h=120, w=160, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, h // 6, w // 6, generator=g)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def _matrix(deg=3.0, tx=5.0, ty=-3.0, s=1.02):
    a = math.radians(deg)
    return torch.tensor([[[s * math.cos(a), -s * math.sin(a), tx], [s * math.sin(a), s * math.cos(a), ty]]],
                        dtype=torch.float64)


def test_fit_affine_recovers_the_matrix_of_its_field():
    m = _matrix()
    assert torch.allclose(fit_affine(affine_field(m, 30, 40, dtype=torch.float64)), m, atol=1e-8)


def test_rescale_maps_a_reduced_fit_to_full_size():
    m = _matrix()
    f = 2.0
    pl = identity_grid(60, 80, dtype=torch.float64)
    pf = (pl + 0.5) * f - 0.5
    qf = torch.einsum("ij,bjhw->bihw", m[0, :, :2], pf) + m[0, :, 2].view(1, 2, 1, 1)
    ql = (qf + 0.5) / f - 0.5
    ml = fit_affine(ql - pl)
    assert torch.allclose(_rescale(ml, f, f), m, atol=1e-8)


def test_fields_are_inverse_of_each_other(monkeypatch):
    stage = GlobalStage()
    monkeypatch.setattr(stage, "matrices", lambda ir, vis: _matrix().float())
    x = torch.zeros(1, 1, 60, 80)
    phi, inv = stage.fields(x, x)
    assert compose(phi, inv)[..., 5:-5, 5:-5].abs().max() < 1e-3


def test_stage_recovers_a_zoom_on_a_reduced_copy():
    ir = _textured(240, 320)
    mis, gt = simulate.dilate_crop(ir, 12)
    stage = GlobalStage(max_side=160)            # works on a half-size copy
    phi, _ = stage.fields(mis, ir)
    err = (phi - gt)[..., 10:-10, 10:-10].pow(2).sum(1).sqrt().mean()
    assert err < 1.0, f"mean EPE {err:.2f} px"


def test_bsr_register_composes_global_and_local(monkeypatch):
    """The U-Net sees the IR after the affine map, and phi_p / phi_n compose the two stages in the
    order that warping by them takes: a non-zero local field, so dropping it or swapping the order fails."""
    cfg = model_config("quick", **{"global": {"method": "ecc", "max_side": 640}})
    model = BSR(cfg).eval()
    monkeypatch.setattr(model.global_stage, "matrices", lambda ir, vis: _matrix().float())
    x = _textured(60, 80)
    pos = identity_grid(60, 80)
    loc_p = torch.stack((1.5 + 0.8 * torch.sin(pos[:, 1] / 9.0), -1.0 + 0.6 * torch.cos(pos[:, 0] / 11.0)), 1)
    loc_n = -0.7 * loc_p
    seen = []

    def local(ir, vis):
        seen.append(ir)
        return loc_p, loc_n

    monkeypatch.setattr(model, "register_local", local)
    with torch.no_grad():
        phi_p, phi_n = model.register(x, x)
    g, inv = model.global_stage.fields(x, x)
    from bsr.warp import warp

    assert torch.equal(seen[0], warp(x, g))                               # the U-Net's input
    inner = (..., slice(8, -8), slice(8, -8))
    two_steps = warp(warp(x, g), loc_p)[inner]
    right = (warp(x, phi_p)[inner] - two_steps).abs().mean()
    swapped = (warp(x, compose(loc_p, g))[inner] - two_steps).abs().mean()
    assert right < 0.5 * swapped, (right, swapped)                      # up to interpolation blur
    assert torch.allclose(phi_p, compose(g, loc_p), atol=1e-6)
    assert torch.allclose(phi_n, compose(loc_n, inv), atol=1e-6)
    assert (phi_p - g)[inner].abs().mean() > 1.0                          # the local stage counts
    assert (phi_p - compose(loc_p, g))[inner].abs().max() > 0.1           # and the order does


def test_untrained_local_stage_leaves_the_global_fields(monkeypatch):
    cfg = model_config("quick", **{"global": {"method": "ecc", "max_side": 640}})
    model = BSR(cfg).eval()
    monkeypatch.setattr(model.global_stage, "matrices", lambda ir, vis: _matrix().float())
    x = _textured(60, 80)
    with torch.no_grad():
        phi_p, phi_n = model.register(x, x)
        loc_p, _ = model.register_local(x, x)
    assert loc_p.abs().max() < 1e-2                 # the untrained head is ~ the identity
    g, inv = model.global_stage.fields(x, x)
    assert torch.allclose(phi_p, g, atol=2e-2)
    assert torch.allclose(phi_n, inv, atol=2e-2)


@pytest.mark.parametrize("bad", [{"method": "sift"}, {"max_side": 8}, {"max_side": True}, {"nosuch": 1}, "ecc"])
def test_bad_global_options_are_refused(bad):
    with pytest.raises(ValueError):
        BSR(model_config("quick", **{"global": bad}))


def test_local_stage_off_leaves_the_global_fields(monkeypatch):
    cfg = model_config("quick", **{"global": {"method": "ecc", "max_side": 640}, "local": False})
    model = BSR(cfg).eval()
    torch.nn.init.normal_(model.unet.head.weight, 0.0, 1.0)      # a U-Net that would move pixels
    monkeypatch.setattr(model.global_stage, "matrices", lambda ir, vis: _matrix().float())
    x = _textured(60, 80)
    with torch.no_grad():
        phi_p, phi_n = model.register(x, x)
    g, inv = model.global_stage.fields(x, x)
    assert torch.allclose(phi_p, g, atol=1e-5) and torch.allclose(phi_n, inv, atol=1e-5)
    with pytest.raises(ValueError, match="local"):
        BSR(model_config("quick", local="no"))
