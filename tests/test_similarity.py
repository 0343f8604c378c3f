"""Search-free similarity terms of real-data training (bsr.similarity)."""

import pytest
import torch

from bsr.datasets import simulate
from bsr.similarity import diffusion, inside_mask, inverse_consistency, mind_descriptors, mind_loss
from bsr.warp import warp


def _pair(seed=0, h=64, w=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, h // 4, w // 4, generator=g)
    ir = torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return ir, 1.0 - ir   # "visible": inverted contrast, the same structures


def test_mind_loss_is_lowest_at_the_true_field():
    ir, vis = _pair()
    mis, gt = simulate.shift(ir, 3.0, -2.0)
    mask = inside_mask(gt, 2)
    at_truth = mind_loss(warp(mis, gt), vis, mask)
    at_zero = mind_loss(mis, vis, mask)
    at_half = mind_loss(warp(mis, gt * 0.5), vis, mask)
    assert at_truth < at_half < at_zero


def test_mind_loss_gradient_points_towards_the_truth():
    ir, vis = _pair(1)
    mis, gt = simulate.shift(ir, 2.0, 0.0)
    flow = torch.zeros_like(gt, requires_grad=True)
    mind_loss(warp(mis, flow), vis, inside_mask(gt, 2)).backward()
    # descending the gradient moves the x component towards +2
    assert flow.grad[:, 0].mean() < 0


def test_inside_mask_and_diffusion():
    f = torch.zeros(1, 2, 8, 10)
    f[:, 0] = 3.0
    m = inside_mask(f)
    assert m[0, 0, :, :7].all() and not m[0, 0, :, 7:].any()
    assert diffusion(f) == 0
    f[:, 0, :, 5:] = 4.0
    assert diffusion(f) > 0


def test_inverse_consistency_zero_for_inverse_pair():
    a = torch.zeros(1, 2, 16, 16)
    a[:, 0] = 2.0
    assert inverse_consistency(a, -a) < 1e-6
    assert inverse_consistency(a, a) > 3.5


def test_mind_loss_with_precomputed_fixed_descriptors_is_the_same():
    ir, vis = _pair(3)
    mis, gt = simulate.shift(ir, 1.0, 2.0)
    mask = inside_mask(gt, 2)
    for scales in ((1, 2, 4), (2,)):
        a = mind_loss(warp(mis, gt * 0.7), vis, mask, scales=scales)
        b = mind_loss(warp(mis, gt * 0.7), vis, mask, scales=scales,
                      fixed_descriptors=mind_descriptors(vis, scales))
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="fixed descriptors"):
        mind_loss(mis, vis, scales=(1, 2), fixed_descriptors=mind_descriptors(vis, (1,)))
