"""The per-sample misalignment family of real-data training (bsr.datasets.misalign)."""

import numpy as np
import pytest
import torch

from bsr.datasets import misalign, simulate
from bsr.warp import warp


def _image(h=96, w=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def test_dilate_draw_matches_simulate_dilate_crop():
    ir = _image()
    fam = misalign.Family(weights=(0, 1, 0, 0), max_dilate=10.0)
    # find a draw, then rebuild the same zoom at its (continuous) d with the analytic formula
    prm = misalign.draw(fam, 96, 128, np.random.default_rng(3))
    sx = prm["matrix"][0, 0]
    d = 128 / sx - 128
    assert 0 <= d <= 10
    # an integer d reproduces bsr.datasets.simulate.dilate_crop exactly (up to d//2 vs d/2 for odd d)
    m = np.array([[128 / 136, 0, (4 + 0.5) * 128 / 136 - 0.5], [0, 96 / 104, (4 + 0.5) * 96 / 104 - 0.5]])
    mis = misalign.misaligned_crop(ir, {"matrix": m, "elastic": None}, (0, 0, 96, 128))
    ref, _ = simulate.dilate_crop(ir, 8)
    assert torch.allclose(mis, ref, atol=1e-4)


def test_shift_kind_moves_content_by_at_most_max_shift():
    fam = misalign.Family(weights=(1, 0, 0, 0), max_shift=10.0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        prm = misalign.draw(fam, 64, 64, rng)
        t = -prm["matrix"][:, 2]
        assert np.allclose(prm["matrix"][:, :2], np.eye(2))
        assert np.hypot(*t) <= 10.0 + 1e-9


def test_draws_cover_every_direction():
    """No constant offset pays: the mean displacement of many draws is near zero."""
    fam = misalign.Family()
    rng = np.random.default_rng(1)
    means = []
    for _ in range(400):
        prm = misalign.draw(fam, 64, 80, rng)
        means.append(misalign.sampling_field(prm, 64, 80).mean(dim=(2, 3))[0].numpy())
    means = np.array(means)
    assert np.abs(means.mean(0)).max() < 0.6
    assert means.std(0).min() > 2.0


def test_crop_equals_window_of_whole_image():
    ir = _image()
    prm = misalign.draw(misalign.Family(weights=(0, 0, 1, 0)), 96, 128, np.random.default_rng(5))
    whole = misalign.misaligned_crop(ir, prm, (0, 0, 96, 128))
    part = misalign.misaligned_crop(ir, prm, (10, 20, 40, 50))
    assert torch.allclose(part, whole[..., 10:50, 20:70], atol=1e-5)


def test_ground_truth_undoes_the_misalignment():
    ir = _image(seed=2)
    prm = misalign.draw(misalign.Family(weights=(0, 0, 1, 0), max_rotation_deg=3, max_translation=4),
                        96, 128, np.random.default_rng(7))
    mis = misalign.misaligned_crop(ir, prm, (0, 0, 96, 128))
    back = warp(mis, misalign.ground_truth(prm, 96, 128))
    inner = (slice(None), slice(None), slice(12, -12), slice(12, -12))
    assert (back - ir)[inner].abs().mean() < 0.01


@pytest.mark.parametrize("bad", [{"weights": [1, 1]}, {"weights": [0, 0, 0, 0]}, {"max_shift": -1},
                                 {"max_scale": 0.7}, {"max_elastic": float("nan")}, {"nosuch": 1}])
def test_family_refuses_bad_options(bad):
    with pytest.raises(ValueError):
        misalign.Family.from_dict(bad)
