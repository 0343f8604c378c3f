"""bsr.datasets.simulate: each misalignment carries a field that undoes it."""

import numpy as np
import pytest
import torch
from skimage.transform import resize

from bsr.datasets import simulate
from bsr.warp import warp

M = 12  # border margin excluded from recovery checks


def recovery_error(ir, mis, flow, m=M):
    return (warp(mis, flow) - ir)[..., m:-m, m:-m].abs()


def test_positive_dx_moves_content_right():
    img = torch.zeros(1, 1, 20, 40)
    img[..., 10] = 1.0
    mis, flow = simulate.shift(img, 5, 0)
    assert mis[0, 0, 5].argmax() == 15
    assert torch.all(flow[:, 0] == 5) and torch.all(flow[:, 1] == 0)


@pytest.mark.parametrize("dx,dy", [(5, 0), (-3, 2), (2.5, -1.5)])
def test_shift_recovered(smooth_image, dx, dy):
    mis, flow = simulate.shift(smooth_image, dx, dy)
    err = recovery_error(smooth_image, mis, flow)
    before = (mis - smooth_image)[..., M:-M, M:-M].abs().mean()
    assert err.mean() < 0.05 * before
    if float(dx).is_integer() and float(dy).is_integer():
        assert err.max() < 1e-5


@pytest.mark.parametrize("d", [5, 10, 20, 30, 50])
def test_dilate_crop_recovered(smooth_image, d):
    mis, flow = simulate.dilate_crop(smooth_image, d)
    m = M + d // 2  # content within ~d/2 of the border left the frame
    err = recovery_error(smooth_image, mis, flow, m)
    before = (mis - smooth_image)[..., m:-m, m:-m].abs().mean()
    assert err.mean() < 0.05 * before, (err.mean(), before)
    assert err.max() < 0.02


@pytest.mark.parametrize("d", [5, 10, 50])
def test_dilate_crop_matches_resize_then_crop(smooth_image, d):
    """Independent route: scikit-image's bilinear resize, then a centre crop."""
    img = smooth_image[0, 0].numpy().astype(np.float64)
    h, w = img.shape
    big = resize(img, (h + d, w + d), order=1, anti_aliasing=False, mode="edge")
    ref = big[d // 2:d // 2 + h, d // 2:d // 2 + w]
    mis, _ = simulate.dilate_crop(smooth_image, d)
    assert np.abs(mis[0, 0].numpy() - ref).max() < 1e-5


def test_dilate_crop_field_shape_is_a_zoom(smooth_image):
    h, w = smooth_image.shape[-2:]
    _, flow = simulate.dilate_crop(smooth_image, 20)
    fx, fy = flow[0, 0], flow[0, 1]
    # content is pushed outwards, so the aligning field points outwards too:
    # about -d/2 at the left/top border, +d/2 at the right/bottom border
    assert fx[:, 0].mean() == pytest.approx(-10, abs=0.5) and fx[:, -1].mean() == pytest.approx(10, abs=0.5)
    assert fy[0].mean() == pytest.approx(-10, abs=0.5) and fy[-1].mean() == pytest.approx(10, abs=0.5)
    assert fx[:, w // 2].abs().max() < 0.6


def test_random_smooth_recovered_and_repeatable(smooth_image):
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    mis1, f1 = simulate.random_smooth(smooth_image, max_shift=5, generator=g1)
    mis2, f2 = simulate.random_smooth(smooth_image, max_shift=5, generator=g2)
    assert torch.equal(mis1, mis2) and torch.equal(f1, f2)
    err = recovery_error(smooth_image, mis1, f1)
    before = (mis1 - smooth_image)[..., M:-M, M:-M].abs().mean()
    assert err.mean() < 0.1 * before


def test_apply_dispatch_and_errors(smooth_image):
    for kind in sorted(simulate.KINDS):
        mis, flow = simulate.apply(smooth_image, kind, 5, generator=torch.Generator().manual_seed(0))
        assert mis.shape == smooth_image.shape and flow.shape == (1, 2, *smooth_image.shape[-2:])
    with pytest.raises(ValueError, match="unknown misalignment kind"):
        simulate.apply(smooth_image, "twist", 5)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        simulate.shift(smooth_image[0], 1, 0)
    with pytest.raises(ValueError, match="d must be"):
        simulate.dilate_crop(smooth_image, -1)


def test_levels_that_cannot_be_applied_are_refused(smooth_image):
    """NaN/inf, text, a fractional dilate-crop (was applied as int(2.5) = 2) and
    levels the size of the 128 x 96 image are refused, each with one line."""
    assert simulate.check_level("shift", 5.0) == 5 and isinstance(simulate.check_level("shift", 5.0), int)
    assert simulate.check_level("shift", -2.5) == -2.5 and simulate.check_level("dilate_crop", 0) == 0
    for bad in (float("nan"), float("inf"), -float("inf"), "5", True, None):
        with pytest.raises(ValueError, match="number of pixels"):
            simulate.apply(smooth_image, "shift", bad)
    with pytest.raises(ValueError, match="dilate_crop level must be a whole number of pixels; got 2.5"):
        simulate.apply(smooth_image, "dilate_crop", 2.5)
    with pytest.raises(ValueError, match="d must be a whole number of pixels; got 2.5"):
        simulate.dilate_crop(smooth_image, 2.5)
    for s in (128, -128, 500):
        with pytest.raises(ValueError, match="out of the 128 px wide image"):
            simulate.apply(smooth_image, "shift", s)
    with pytest.raises(ValueError, match="shift .* not smaller than the image"):
        simulate.shift(smooth_image, 0, 96)
    with pytest.raises(ValueError, match=r"dilate_crop level 96 px is not smaller than the 128x96 px image"):
        simulate.apply(smooth_image, "dilate_crop", 96)
    with pytest.raises(ValueError, match="d must be smaller than the image"):
        simulate.dilate_crop(smooth_image, 96)
    with pytest.raises(ValueError, match="random_smooth level 96 px is not smaller"):
        simulate.apply(smooth_image, "random_smooth", 96)
    with pytest.raises(ValueError, match=">= 0"):
        simulate.apply(smooth_image, "random_smooth", -1)
    with pytest.raises(ValueError, match="max_shift"):
        simulate.random_smooth(smooth_image, max_shift=float("nan"))
    mis, flow = simulate.apply(smooth_image, "dilate_crop", 95.0)   # the largest that fits, given as a float
    assert mis.shape == smooth_image.shape and torch.isfinite(flow).all()
