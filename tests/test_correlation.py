"""bsr.networks.correlation: the cost volume's displacement convention, its modality
robustness, the soft-argmax readout, and the U-Net option that uses it."""

from __future__ import annotations

import pytest
import torch

from bsr.datasets.readers import load_pairs
from bsr.networks import RegUNet
from bsr.networks.correlation import (cost_volume, cost_volume_channels, edge_cost_volume,
                                    mind_cost_volume, soft_argmax)
from bsr.warp import warp


def _ir(h=96, w=128):
    p = load_pairs("synthetic", synthetic={"n": 1, "size": [h, w], "seed": 5})[0]
    return torch.from_numpy(p.ir)[None, None]


def _argmax_disp(cost, radius, level):
    k = cost.argmax(1)
    n = 2 * radius + 1
    return (k % n - radius) * 2 ** level, (k // n - radius) * 2 ** level


@pytest.mark.parametrize("fn,level,window", [(edge_cost_volume, 0, 7), (edge_cost_volume, 1, 5),
                                             (edge_cost_volume, 2, 5), (mind_cost_volume, 0, 7),
                                             (mind_cost_volume, 1, 5), (mind_cost_volume, 2, 5)])
@pytest.mark.parametrize("d", [(4, 0), (0, -4), (-4, 4)])
def test_peak_at_the_warp_displacement(fn, level, window, d):
    """IR content moved by -d (so warp(moving, d) aligns): the score peaks at channel d
    (mono-modal, so the peak is sharp; the sign convention is what is tested)."""
    fixed = _ir()
    flow = torch.tensor([float(d[0]), float(d[1])]).view(1, 2, 1, 1).expand(1, 2, *fixed.shape[-2:])
    moving = warp(fixed, -flow)
    assert torch.allclose(warp(moving, flow)[..., 8:-8, 8:-8], fixed[..., 8:-8, 8:-8], atol=1e-5)
    r = 4 // 2 ** level + 1
    cost = fn(moving, fixed, radius=r, level=level, window=window)
    assert cost.shape == (1, cost_volume_channels(r), 96 // 2 ** level, 128 // 2 ** level)
    dx, dy = _argmax_disp(cost, r, level)
    m = 12 // 2 ** level
    inner = (slice(m, -m), slice(m, -m))
    hit = ((dx[0][inner] == d[0]) & (dy[0][inner] == d[1])).float().mean()
    assert hit > 0.8, f"{fn.__name__} level {level}: only {hit:.2f} of the pixels peak at {d}"


@pytest.mark.parametrize("fn", [edge_cost_volume, mind_cost_volume])
def test_volumes_ignore_contrast_polarity(fn):
    """Both descriptors are polarity-free: an inverted reference (IR is often dark where
    the visible image is bright) gives the same volume. A signed-gradient descriptor would not."""
    a, b = _ir(), torch.roll(_ir(), 3, dims=-1)
    assert torch.allclose(fn(a, b, radius=2, level=1, window=5), fn(a, 1.0 - b, radius=2, level=1, window=5),
                          atol=1e-4)


def test_edge_volume_range_and_flat_images():
    cost = edge_cost_volume(_ir(), _ir(), radius=2, level=0, window=5)
    assert cost.min() >= -1 and cost.max() <= 1
    flat = torch.full((1, 1, 32, 32), 0.5)
    assert edge_cost_volume(flat, flat, radius=1, level=1, window=3).abs().max() == 0


def test_cost_volume_bad_input():
    x = torch.rand(1, 1, 30, 30)
    with pytest.raises(ValueError, match="divisible"):
        cost_volume(x, x, level=2)
    with pytest.raises(ValueError, match="descriptor"):
        cost_volume(x, x, descriptor="sift", level=1)
    with pytest.raises(ValueError, match="shape"):
        edge_cost_volume(x, torch.rand(1, 1, 30, 32), level=0)
    with pytest.raises(ValueError, match="odd window"):
        edge_cost_volume(x, x, level=0, window=4)


def test_soft_argmax_reads_a_one_hot_volume():
    r = 2
    cost = torch.full((1, cost_volume_channels(r), 3, 4), -1.0)
    cost[0, (1 + r) * (2 * r + 1) + (-2 + r)] = 1.0       # dx = -2, dy = +1 everywhere
    out = soft_argmax(cost, r, beta=100.0)
    assert torch.allclose(out[0, 0], torch.full((3, 4), -2 / r), atol=1e-4)
    assert torch.allclose(out[0, 1], torch.full((3, 4), 1 / r), atol=1e-4)
    assert torch.allclose(out[0, 2], torch.ones(3, 4))
    with pytest.raises(ValueError, match="channels"):
        soft_argmax(cost, 1)


@pytest.mark.parametrize("corr", [{"descriptor": "edge_ncc", "radius": 2, "level": 2, "window": 3},
                                  {"descriptor": "mind", "radius": 1, "level": 0, "window": 3, "readout": 10}])
def test_unet_with_cost_volume_any_size_and_trains(corr):
    torch.manual_seed(0)
    net = RegUNet(enc_channels=(4, 8, 8), dec_channels=(8, 8), final_channels=(4,), flow_scale=4.0,
                  corr=corr, init_std=1e-2)
    ir, vis = torch.rand(2, 1, 37, 53), torch.rand(2, 1, 37, 53)
    out = net(ir, vis)
    assert out.shape == (2, 4, 37, 53)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    # the first block of the corr level sees the extra channels
    extra = cost_volume_channels(corr["radius"]) + (3 if corr.get("readout") else 0)
    first = net.enc[corr["level"]][0]
    assert first.in_channels == (2 if corr["level"] == 0 else 8) + extra


def test_unet_with_cost_volume_in_the_bsr_model_channels_last():
    """Through BSR (channels-last networks) the fields equal those of a contiguous copy."""
    from bsr.model import BSR, model_config

    torch.manual_seed(0)
    m = BSR(model_config("quick", unet={"corr": {"radius": 2, "level": 2, "window": 3}, "init_std": 1e-2}))
    ir, vis = torch.rand(2, 1, 40, 44), torch.rand(2, 1, 40, 44)
    a = m.register(ir, vis)
    m.set_channels_last(False)
    b = m.register(ir, vis)
    for x, y in zip(a, b):
        assert torch.allclose(x, y, atol=1e-5)


def test_unet_corr_option_errors():
    kw = dict(enc_channels=(4, 8, 8), dec_channels=(8, 8))
    with pytest.raises(ValueError, match="level"):
        RegUNet(**kw, corr={"level": 3})
    with pytest.raises(ValueError, match="unknown corr"):
        RegUNet(**kw, corr={"radiuss": 3})
    with pytest.raises(ValueError, match="descriptor"):
        RegUNet(**kw, corr={"descriptor": "sift"})
    with pytest.raises(ValueError, match="odd window"):
        RegUNet(**kw, corr={"window": 1})
