"""Losses of Sec. 3.4 / supplement 6.4 and the filters behind them."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bsr.filters import box_filter, gaussian_blur, gaussian_window, sobel, sobel_magnitude, ssim
from bsr.losses import (correlation, decomposition_loss, edge_map, edge_transfer, epr_loss, fusion_loss, recon_loss,
                        saliency_weight, smooth_loss, sobel_edge_loss, ss_loss)
from bsr.objective import LossConfig
from bsr.nda import nda_loss
from bsr.pdg import seam_mask
from bsr.datasets.simulate import shift

torch.set_num_threads(1)


def _cross_modal(img):
    """A monotone, polarity-inverting, non-linear intensity map (IR-vs-visible-ish)."""
    return 0.9 - 0.6 * img + 0.2 * img * img


# ----------------------------------------------------------------------------- filters

def test_sobel_ramp_and_constant():
    ramp = (torch.arange(12.0) * 0.25).view(1, 1, 1, 12).expand(1, 1, 10, 12)
    gx, gy = sobel(ramp)
    assert torch.allclose(gx[..., 1:-1], torch.full_like(gx[..., 1:-1], 0.25))
    assert gy.abs().max() == 0
    gx, gy = sobel(torch.full((1, 2, 5, 5), 0.3))
    assert gx.abs().max() == 0 and gy.abs().max() == 0
    assert torch.allclose(sobel_magnitude(ramp, norm="l1")[..., 1:-1], torch.tensor(0.25))


def test_ssim_identity_and_skimage_agreement():
    from skimage.metrics import structural_similarity
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 40, 44, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.rand(1, 1, 40, 44, generator=g, dtype=torch.float64)).clamp(0, 1)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-12)
    ref = structural_similarity(x[0, 0].numpy(), y[0, 0].numpy(), gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=1.0)
    assert ssim(x, y).item() == pytest.approx(ref, abs=1e-10)
    assert ssim(x, y, reduction="none").shape == (1,)
    assert gaussian_window(11, 1.5).sum().item() == pytest.approx(1.0)


def test_box_filter_mean():
    x = torch.rand(2, 3, 9, 11)
    y = box_filter(x, 3)
    assert torch.allclose(y[..., 4, 5], x[..., 3:6, 4:7].mean((-1, -2)))
    assert torch.allclose(y[..., 0, 0], x[..., 0:2, 0:2].mean((-1, -2)))




# ----------------------------------------------------------------------------- edges, epr

def test_sobel_edge_loss(smooth_image):
    assert sobel_edge_loss(smooth_image, smooth_image).item() == 0
    moved, _ = shift(smooth_image, 3.0, 0.0)
    assert sobel_edge_loss(moved, smooth_image).item() > 0


def test_epr_loss_forms(smooth_image):
    vis = smooth_image
    ir, _ = shift(_cross_modal(smooth_image), 3.0, 0.0)
    warped, _ = shift(ir, -1.0, 0.0)
    e_t, e_v, e_w = edge_map(ir), edge_map(vis), edge_map(warped)
    o1 = ((e_t - e_v) ** 2).mean().sqrt()
    o2 = ((e_w - e_t) ** 2).mean().sqrt()
    assert epr_loss(ir, vis, warped).item() == pytest.approx((o1 - o2).abs().item(), rel=1e-4)
    # unwarped: O2 = 0, the loss is O1
    assert epr_loss(ir, vis, ir).item() == pytest.approx(o1.item(), rel=1e-4)
    assert epr_loss(ir, vis, warped, form="pixel").item() >= 0
    with pytest.raises(ValueError):
        epr_loss(ir, vis, warped, form="nope")


# ----------------------------------------------------------------------------- ss, smooth, recon

def test_ss_loss_values():
    a = torch.rand(2, 2, 8, 8)
    assert ss_loss(a, a).item() == 0
    assert ss_loss(a, a + 0.5).item() == pytest.approx(5 * 0.5 + 1 * 0.25, rel=1e-6)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1
    b = a.clone()
    b[..., 4:, :] += 10
    assert ss_loss(a, b, mask=mask).item() == 0
    assert ss_loss(a, b, mask=seam_mask(8, 8, 2, 0)).item() > 0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10 ** 6), c=st.floats(-5, 5))
def test_ss_and_smooth_properties(seed, c):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(1, 2, 6, 7, generator=g)
    b = torch.randn(1, 2, 6, 7, generator=g)
    assert ss_loss(a, b).item() >= 0
    assert ss_loss(a, b).item() == pytest.approx(ss_loss(b, a).item(), rel=1e-6)
    assert smooth_loss(a + c).item() == pytest.approx(smooth_loss(a).item(), rel=1e-4, abs=1e-5)
    assert smooth_loss(torch.full((1, 2, 6, 7), c)).item() == 0


def test_smooth_loss():
    assert smooth_loss(torch.full((2, 2, 9, 9), 3.7)).item() == 0
    f = torch.zeros(1, 2, 5, 5)
    f[:, 0] = torch.arange(5.0)            # unit slope in x, x component only
    assert smooth_loss(f).item() == pytest.approx(0.25)
    assert smooth_loss(torch.randn(1, 2, 8, 8)).item() > 0


def test_recon_loss(smooth_image):
    assert recon_loss(smooth_image, smooth_image).item() == pytest.approx(0.0, abs=1e-6)
    assert recon_loss(smooth_image, smooth_image, l2="rmse").item() == pytest.approx(0.0, abs=1e-6)
    noisy = (smooth_image + 0.1 * torch.randn_like(smooth_image)).clamp(0, 1)
    mse = ((noisy - smooth_image) ** 2).mean()
    val = recon_loss(smooth_image, noisy)
    assert val.item() == pytest.approx((1 - ssim(smooth_image, noisy) + mse).item(), rel=1e-5)
    assert val.item() > 0


# ----------------------------------------------------------------------------- decomposition, fusion

def test_correlation():
    a = torch.randn(3, 4, 5, 5)
    assert correlation(a, a).item() == pytest.approx(1.0, abs=1e-6)
    assert correlation(a, -2 * a + 1).item() == pytest.approx(-1.0, abs=1e-6)
    assert correlation(a, a, per_channel=True).item() == pytest.approx(1.0, abs=1e-6)


def test_decomposition_loss_falls_with_more_global_correlation():
    g = torch.Generator().manual_seed(0)
    g_a = torch.randn(2, 8, 16, 16, generator=g)
    noise = torch.randn(2, 8, 16, 16, generator=g)
    l_a = torch.randn(2, 8, 16, 16, generator=g)
    l_b = 0.5 * l_a + torch.randn(2, 8, 16, 16, generator=g)    # some local correlation
    vals = [decomposition_loss(g_a, alpha * g_a + (1 - alpha) * noise, l_a, l_b).item()
            for alpha in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(x > y for x, y in zip(vals, vals[1:])), vals
    # and rises with more local correlation
    assert decomposition_loss(g_a, g_a, l_a, l_a).item() > decomposition_loss(g_a, g_a, l_a, l_b).item()
    assert decomposition_loss(g_a, g_a, l_a, l_a).item() == pytest.approx(1 / 2.01, rel=1e-5)


def test_fusion_loss():
    g = torch.Generator().manual_seed(0)
    ir = torch.rand(2, 1, 20, 20, generator=g)
    vis = torch.rand(2, 1, 20, 20, generator=g)
    l_int, l_grad = fusion_loss(torch.maximum(ir, vis), ir, vis)
    assert l_int.item() == 0 and l_grad.item() >= 0
    l_int2, _ = fusion_loss(torch.maximum(ir, vis) + 0.1, ir, vis)
    assert l_int2.item() == pytest.approx(0.1, rel=1e-5)
    _, lg = fusion_loss(ir, ir, torch.zeros_like(ir), grad="l2")
    assert lg.item() == pytest.approx(0.0, abs=1e-5)


def test_gaussian_blur():
    x = torch.full((1, 2, 9, 11), 0.3)
    assert torch.allclose(gaussian_blur(x, 2.0), x)                  # constants stay
    d = torch.zeros(1, 1, 41, 41)
    d[0, 0, 20, 20] = 1.0
    y = gaussian_blur(d, 2.0)
    assert y.sum().item() == pytest.approx(1.0, rel=1e-5)            # mass kept away from borders
    assert y[0, 0, 20, 20] == y.max() and torch.allclose(y, y.flip(-1)) and torch.allclose(y, y.transpose(-1, -2))
    # the variance of the blurred impulse is that of the 13-tap Gaussian of sigma 2 cut at 3 sigma
    t = torch.arange(41.0) - 20
    k = torch.arange(13.0) - 6
    g = torch.exp(-k * k / 8)
    want = float((g * k * k).sum() / g.sum())                        # 3.951, 1.2 % under sigma^2
    assert (y[0, 0].sum(0) * t * t).sum().item() == pytest.approx(want, rel=1e-4)


def test_saliency_weight():
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(1, 1, 48, 48, generator=g)
    flat = torch.full_like(tex, 0.4)
    w = saliency_weight(tex, flat)
    assert w.min().item() > 0.99                                     # textured infrared, flat visible
    assert torch.allclose(saliency_weight(flat, flat), torch.full_like(tex, 0.5))
    other = torch.rand(1, 1, 48, 48, generator=g)
    assert torch.allclose(saliency_weight(tex, other) + saliency_weight(other, tex), torch.ones_like(tex), atol=1e-6)
    # half the visible image textured: the infrared share drops there and only there
    half = torch.cat([other[..., :24], flat[..., 24:]], -1)
    w2 = saliency_weight(tex, half)
    assert w2[..., 40:].min().item() > 0.99 and w2[..., :8].max().item() < 0.9
    # ramps of slopes s1, s2 (normalised Sobel: the magnitude is the slope): w = s1^2 / (s1^2 + s2^2) inside
    x = torch.arange(64.0).expand(1, 1, 64, 64)
    w3 = saliency_weight(0.01 * x, 0.02 * x.transpose(-1, -2))
    assert torch.allclose(w3[..., 20:44, 20:44], torch.full((1, 1, 24, 24), 0.2), atol=1e-5)
    with pytest.raises(ValueError, match="shapes differ"):
        saliency_weight(tex, tex[..., :40])


def test_fusion_loss_saliency_target():
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(1, 1, 48, 48, generator=g)
    flat = torch.full_like(tex, 0.9)                                  # brighter but featureless visible
    # the max target follows the brighter input; the saliency target the textured one
    assert fusion_loss(tex, tex, flat, target="saliency")[0].item() < 0.01
    assert fusion_loss(tex, tex, flat, target="max")[0].item() > 0.3
    assert fusion_loss(flat, tex, flat, target="max")[0].item() < 0.01
    # the weight carries no gradient: with F = 0 below the target, d l_int / d ir is w / N only
    other = 0.1 + 0.9 * torch.rand(1, 1, 48, 48, generator=g)       # textured too: w is mid-range
    ir = tex.clone().requires_grad_()
    fusion_loss(torch.zeros_like(tex), ir, other, target="saliency")[0].backward()
    w = saliency_weight(tex, other)
    assert 0.2 < w.mean().item() < 0.8
    assert torch.allclose(ir.grad, w / tex.numel(), atol=1e-9)
    # two scales: the brighter base (here the flat infrared), the textured input's detail
    dim = 0.3 * tex
    want = 0.9 + dim - gaussian_blur(dim, 5.0)
    assert fusion_loss(want, flat, dim, target="two_scale")[0].item() < 1e-4
    assert fusion_loss(want, flat, dim, target="max")[0].item() > 0.02          # max drops the detail
    assert fusion_loss(want, flat, dim, target="saliency")[0].item() > 0.5      # saliency drops the brightness
    c1, c2 = torch.full_like(tex, 0.2), torch.full_like(tex, 0.7)
    assert fusion_loss(c2, c1, c2, target="two_scale")[0].item() < 1e-6         # constants: the max
    with pytest.raises(ValueError, match="target must be"):
        fusion_loss(tex, tex, flat, target="mean")
    with pytest.raises(ValueError, match="fusion_target"):
        LossConfig(fusion_target="mean")


def test_sobel_padding():
    x = torch.full((1, 1, 6, 7), 0.5)
    gx, gy = sobel(x, padding="zeros")
    assert gx[..., 1:-1, 1:-1].abs().max() == 0 and gx[..., 0, 0].item() > 0 and gy[..., 0, 0].item() > 0
    with pytest.raises(ValueError, match="padding"):
        sobel(x, padding="reflect")


def test_edge_transfer_is_the_metrics_qabf(smooth_image):
    """With zero padding it is the metric's 'strict' Q^{AB/F} (up to its eps), for
    fusions from poor to good."""
    from bsr.metrics.qabf import qabf

    ir = smooth_image.double()
    vis = _cross_modal(torch.roll(smooth_image, (3, -2), (2, 3))).double()
    noise = torch.rand(ir.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for fused in (0.5 * (ir + vis), torch.maximum(ir, vis), 0.7 * ir + 0.3 * noise, vis):
        want = qabf(fused[0, 0].numpy(), ir[0, 0].numpy(), vis[0, 0].numpy(), variant="strict")
        assert edge_transfer(fused, ir, vis).item() == pytest.approx(want, abs=2e-4)


def test_edge_transfer_bounds_and_gradients(smooth_image):
    from bsr.metrics.qabf import qabf_max

    ir, vis = smooth_image, _cross_modal(torch.roll(smooth_image, 4, 3))
    assert edge_transfer(ir, ir, ir, padding="replicate").item() == pytest.approx(qabf_max(), abs=1e-6)
    f = (0.5 * (ir + vis)).requires_grad_()
    src = ir.clone().requires_grad_()
    q = edge_transfer(f, src, vis, padding="replicate")
    q.backward()
    assert 0 < q.item() < qabf_max()
    assert torch.isfinite(f.grad).all() and src.grad is None
    # a small step up its gradient raises it: the term a training step follows
    with torch.no_grad():
        stepped = f + 0.01 * f.grad / f.grad.abs().max()
    assert edge_transfer(stepped, ir, vis, padding="replicate").item() > q.item() + 1e-2
    flat = torch.zeros(1, 1, 8, 8, requires_grad=True)
    edge_transfer(flat, flat.detach(), flat.detach(), padding="replicate").backward()
    assert torch.isfinite(flat.grad).all()


# ----------------------------------------------------------------------------- gradients

def test_gradcheck_smooth_losses():
    g = torch.Generator().manual_seed(0)

    def r(*s):
        return torch.rand(*s, generator=g, dtype=torch.float64).requires_grad_()

    a, b = r(1, 1, 12, 12), r(1, 1, 12, 12)
    assert torch.autograd.gradcheck(lambda x, y: ssim(x, y, window=7), (a, b))
    assert torch.autograd.gradcheck(lambda x, y: recon_loss(x, y, window=7), (a, b))
    assert torch.autograd.gradcheck(lambda x, y: ss_loss(x, y), (a, b))
    assert torch.autograd.gradcheck(smooth_loss, (r(1, 2, 6, 6),))
    feats = [r(2, 3, 4, 4) for _ in range(4)]
    assert torch.autograd.gradcheck(decomposition_loss, tuple(feats))
    t, v, f = r(1, 1, 10, 10), r(1, 1, 10, 10), r(1, 1, 10, 10)
    assert torch.autograd.gradcheck(lambda x: torch.stack(fusion_loss(x, t, v, grad="l2")), (f,))
    assert torch.autograd.gradcheck(lambda x: sobel_edge_loss(x, v), (f,))
    assert torch.autograd.gradcheck(lambda x: epr_loss(t, v, x), (f,))


def test_all_losses_finite_gradients(smooth_image):
    img = smooth_image.clone().requires_grad_()
    other = _cross_modal(smooth_image)
    flow = torch.zeros(1, 2, 96, 128, requires_grad=True)
    warped = img + flow.sum(1, keepdim=True) * 0          # depends on both
    terms = [sobel_edge_loss(warped, other), epr_loss(other, smooth_image, warped),
             epr_loss(other, smooth_image, warped, form="pixel"), ss_loss(warped, other),
             smooth_loss(flow), recon_loss(other, warped), *fusion_loss(warped, other, smooth_image),
             *nda_loss(other, smooth_image, flow, radius=3)]
    sum(terms).backward()
    assert torch.isfinite(img.grad).all() and torch.isfinite(flow.grad).all()
    assert all(math.isfinite(t.item()) for t in terms)
