"""bsr.warp: sign convention, exactness, agreement with an independent sampler."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from bsr.warp import compose, identity_grid, invert_flow, warp


def const_flow(h, w, dx, dy, b=1):
    f = torch.zeros(b, 2, h, w)
    f[:, 0], f[:, 1] = dx, dy
    return f


def test_identity_is_exact(smooth_image):
    out = warp(smooth_image, torch.zeros(1, 2, *smooth_image.shape[-2:]))
    assert torch.allclose(out, smooth_image, atol=1e-6)


def test_sign_convention_content_moves_against_flow():
    img = torch.zeros(1, 1, 9, 12)
    img[0, 0, 4, 7] = 1.0
    out = warp(img, const_flow(9, 12, 3, 0))       # out(p) = img(p + 3 in x)
    assert out[0, 0, 4, 4] == pytest.approx(1.0, abs=1e-5)
    assert out.sum() == pytest.approx(1.0, abs=1e-5)
    out = warp(img, const_flow(9, 12, 0, -2))      # content moves down by 2
    assert out[0, 0, 6, 7] == pytest.approx(1.0, abs=1e-5)


def test_channel_order_x_then_y():
    g = identity_grid(4, 6)
    assert g.shape == (1, 2, 4, 6)
    assert g[0, 0, 2, 5] == 5 and g[0, 1, 2, 5] == 2


def test_matches_scipy_map_coordinates(smooth_image):
    """An independent bilinear sampler gives the same values in the interior."""
    torch.manual_seed(0)
    h, w = smooth_image.shape[-2:]
    flow = torch.nn.functional.interpolate(torch.randn(1, 2, 6, 8) * 3, size=(h, w), mode="bilinear",
                                           align_corners=True)
    ours = warp(smooth_image, flow)[0, 0].numpy()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    coords = np.stack([yy + flow[0, 1].numpy(), xx + flow[0, 0].numpy()])
    ref = ndimage.map_coordinates(smooth_image[0, 0].numpy().astype(np.float64), coords, order=1, mode="nearest")
    assert np.abs(ours - ref)[8:-8, 8:-8].max() < 1e-5


def test_broadcast_and_errors(smooth_image):
    f = torch.zeros(3, 2, *smooth_image.shape[-2:])
    assert warp(smooth_image, f).shape == (3, 1, *smooth_image.shape[-2:])
    with pytest.raises(ValueError, match="flow must be"):
        warp(smooth_image, torch.zeros(1, 3, *smooth_image.shape[-2:]))
    with pytest.raises(ValueError, match="differs from image size"):
        warp(smooth_image, torch.zeros(1, 2, 5, 5))
    with pytest.raises(ValueError, match="image must be"):
        warp(smooth_image[0], f)


def test_gradients_flow_to_field(smooth_image):
    flow = torch.zeros(1, 2, *smooth_image.shape[-2:], requires_grad=True)
    warp(smooth_image, flow + 0.3).sum().backward()
    assert flow.grad is not None and flow.grad.abs().sum() > 0


def test_compose_and_invert(smooth_image):
    h, w = smooth_image.shape[-2:]
    torch.manual_seed(1)
    flow = torch.nn.functional.interpolate(torch.randn(1, 2, 4, 5) * 2, size=(h, w), mode="bicubic",
                                           align_corners=True)
    inv = invert_flow(flow)
    assert compose(flow, inv)[..., 10:-10, 10:-10].abs().max() < 1e-2
    twice = warp(warp(smooth_image, flow), inv)
    assert (twice - smooth_image)[..., 10:-10, 10:-10].abs().mean() < 2e-3
