"""Losses of Sec. 3.4 / supplement 6.4 and the filters behind them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bsr.filters import box_filter, gaussian_window, sobel, sobel_magnitude, ssim
from bsr.losses import (correlation, decomposition_loss, edge_map, epr_loss, fusion_loss,
                        nda_consistency, nda_from_targets, nda_loss, nda_search, recon_loss, smooth_loss,
                        sobel_edge_loss, ss_loss)
from bsr.pdg import ProxyDataGenerator, seam_mask
from bsr.simulate import shift

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


# ----------------------------------------------------------------------------- L_nda

def _fit_constant(targets, shape, steps=300, seed=0):
    """Minimise L_nda alone over a free constant displacement (a (1, 2, 1, 1) parameter)."""
    torch.manual_seed(seed)
    p = (0.1 * torch.randn(1, 2, 1, 1)).requires_grad_()
    opt = torch.optim.Adam([p], lr=0.1, betas=(0.9, 0.99))
    for _ in range(steps):
        l_di, l_an = nda_from_targets(p.expand(1, 2, *shape), targets)
        opt.zero_grad()
        (l_di + l_an).backward()
        opt.step()
    return p.detach().flatten()


@pytest.mark.parametrize("dx,dy", [(5.0, 0.0), (0.0, -4.0), (3.4, 2.6)], ids=["x", "y", "diagonal"])
def test_nda_recovers_known_shift_cross_modal(smooth_image, dx, dy):
    fixed = smooth_image                                   # "visible"
    moving, _ = shift(_cross_modal(smooth_image), dx, dy)  # "IR": other contrast, inverted, shifted
    targets = nda_search(moving, fixed)
    assert targets.valid.float().mean() > 0.5
    est = _fit_constant(targets, fixed.shape[-2:])
    err = (est - torch.tensor([dx, dy])).norm().item()
    print(f"L_nda shift recovery ({dx}, {dy}): estimate {est.tolist()}, error {err:.3f} px")
    assert err < 0.5
    # the loss through the public entry point gives the same numbers
    flow = est.view(1, 2, 1, 1).expand(1, 2, *fixed.shape[-2:])
    a = nda_loss(moving, fixed, flow)
    b = nda_loss(moving, fixed, flow, targets=targets)
    assert torch.allclose(torch.stack(a), torch.stack(b))


def test_nda_target_sign_convention(smooth_image):
    """A backward field aligns moving to fixed when flow(p) = delta(p)."""
    moving, flow_gt = shift(smooth_image, 3.0, -2.0)
    t = nda_search(moving, smooth_image)
    d = t.delta[0, :, t.valid[0, 0]]
    assert d.median(dim=1).values.tolist() == pytest.approx([3.0, -2.0], abs=0.2)
    at_gt = sum(nda_loss(moving, smooth_image, flow_gt, targets=t)).item()
    for wrong in (-flow_gt, 0.5 * flow_gt, flow_gt + torch.tensor([1.0, 0.0]).view(1, 2, 1, 1),
                  flow_gt.flip(1)):
        assert at_gt < sum(nda_loss(moving, smooth_image, wrong, targets=t)).item()


def test_nda_nearest_mode_on_sparse_edges():
    x = torch.arange(40.0).view(1, 1, 1, 40).expand(1, 1, 32, 40)
    fixed = torch.sigmoid((x - 12.0) / 1.5)       # a soft vertical step: one ridge at x = 12
    moving = torch.sigmoid((x - 15.0) / 1.5)      # the same step 3 px to the right
    t = nda_search(moving, fixed, match="nearest", edge_norm="max", mu=0.95, radius=5)
    assert t.valid[0, 0, :, 12].all() and t.valid.sum() == 32
    assert torch.equal(t.delta[0, :, t.valid[0, 0]], torch.tensor([[3.0], [0.0]]).expand(2, 32))
    # and the mu = 1e-4 reading finds "edges" everywhere, so nearest is o = 0: why NCC is the default
    t0 = nda_search(moving, fixed, match="nearest", radius=5)
    d0 = t0.delta[0, :, t0.valid[0, 0]]
    assert t0.valid.float().mean() > 0.5 and (d0.abs().sum(0) == 0).float().mean() > 0.5


def test_nda_no_neighbour_no_term():
    fixed = torch.rand(1, 1, 24, 24)
    moving = torch.full((1, 1, 24, 24), 0.5)    # no edges at all
    flow = torch.randn(1, 2, 24, 24, requires_grad=True)
    l_di, l_an = nda_loss(moving, fixed, flow, radius=3)
    assert l_di.item() == 0 and l_an.item() == 0
    (l_di + l_an).backward()
    assert torch.isfinite(flow.grad).all() and flow.grad.abs().sum() == 0


def test_nda_angle_is_safe_at_zero_and_bounded(smooth_image):
    moving, _ = shift(smooth_image, 4.0, 1.0)
    t = nda_search(moving, smooth_image, radius=6)
    for flow0 in (torch.zeros(1, 2, 96, 128), 1e-7 * torch.randn(1, 2, 96, 128),
                  torch.randn(1, 2, 96, 128)):
        flow = flow0.clone().requires_grad_()
        l_di, l_an = nda_from_targets(flow, t)
        (l_di + l_an).backward()
        assert torch.isfinite(flow.grad).all()
        # per-pixel angle gradient is at most 1 / angle_min = 2 (times 1 / M)
        assert flow.grad.abs().max().item() * t.valid.sum().item() < 2 * 40 + 1e-3
    # angle term is exactly zero when the directions agree
    l_di, l_an = nda_from_targets(t.delta * 2.0, t)
    assert l_an.item() == pytest.approx(0.0, abs=1e-5) and l_di.item() > 0


def test_nda_gradcheck_away_from_zero():
    g = torch.Generator().manual_seed(1)
    img = torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64)
    img = box_filter(img, 3)
    moving = torch.roll(img, 2, dims=-1)
    t = nda_search(moving, img, radius=3, window=5, min_score=-1.0)
    flow = (torch.randn(1, 2, 16, 16, generator=g, dtype=torch.float64) + 3.0).requires_grad_()
    assert torch.autograd.gradcheck(lambda f: torch.stack(nda_from_targets(f, t)), (flow,))


def test_nda_targets_through_pdg_match_a_fresh_search(smooth_image):
    fixed = smooth_image
    moving, _ = shift(_cross_modal(smooth_image), 2.0, -1.0)
    kw = dict(radius=4, window=7)
    pdg = ProxyDataGenerator(2)
    mov_new, fix_new, ops = pdg(moving, fixed, generator=torch.Generator().manual_seed(0))
    moved = nda_search(moving, fixed, **kw).through_pdg(pdg, ops, mask=seam_mask(96, 128, 2, 4 + 3 + 3 + 1, include_border=True))
    fresh = nda_search(mov_new, fix_new, **kw)
    both = moved.valid & fresh.valid
    assert both.sum() > 0.5 * moved.valid.sum()
    diff = (moved.delta - fresh.delta).abs().amax(1, keepdim=True)[both]
    # equal up to float32 near-ties of the NCC on this very smooth image
    assert (diff < 1e-3).float().mean() > 0.9


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


def test_nda_search_batched_equals_per_sample_and_stride(smooth_image):
    a, _ = shift(_cross_modal(smooth_image), 2.0, 1.0)
    b, _ = shift(smooth_image, -1.0, 3.0)
    moving = torch.cat((a, b))
    fixed = torch.cat((smooth_image, smooth_image))
    kw = dict(radius=4)
    batched = nda_search(moving, fixed, **kw)
    for i in range(2):
        single = nda_search(moving[i:i + 1], fixed[i:i + 1], **kw)
        assert torch.equal(single.valid, batched.valid[i:i + 1])
        assert torch.allclose(single.delta, batched.delta[i:i + 1], atol=1e-5)
    strided = nda_search(moving, fixed, stride=2, **kw)
    assert not strided.valid[..., 1::2, :].any() and not strided.valid[..., :, 1::2].any()
    same = strided.valid & batched.valid
    assert same.sum() > 0.2 * batched.valid.sum()
    assert torch.allclose(strided.delta[same.expand_as(strided.delta)],
                          batched.delta[same.expand_as(batched.delta)], atol=1e-5)


def test_nda_argument_errors(smooth_image):
    for kw in (dict(match="best"), dict(window=4), dict(stride=0), dict(radius=0), dict(edge_norm="l2")):
        with pytest.raises(ValueError):
            nda_search(smooth_image, smooth_image, **kw)
    with pytest.raises(ValueError):
        nda_loss(smooth_image, smooth_image, torch.zeros(1, 3, 96, 128))


# ----------------------------------------------------------------------------- L_nda penalty forms

def _targets(delta, valid=None):
    from bsr.losses import NDATargets

    valid = torch.ones(delta.shape[0], 1, *delta.shape[-2:], dtype=torch.bool) if valid is None else valid
    return NDATargets(delta, valid, valid.float())


def test_nda_forms_values_and_direction_at_zero():
    """"vector" (Charbonnier of f - d): 0 at the target, ~|f - d| - eps far from it, and a
    gradient pointing at the target from f = 0 (the polar form has no direction there);
    "polar_l1": | |f| - |d| | instead of the squared distance difference."""
    d = torch.zeros(1, 2, 4, 4)
    d[:, 0] = 3.0
    t = _targets(d)
    di, an = nda_from_targets(d.clone(), t, form="vector")
    assert di.item() == pytest.approx(0.0, abs=1e-6) and an.item() == 0.0
    far = d.clone()
    far[:, 1] = 4.0                                   # |f - d| = 4
    assert nda_from_targets(far, t, form="vector", eps=0.1)[0].item() == pytest.approx(math.sqrt(16.01) - 0.1, rel=1e-5)
    flow = torch.zeros(1, 2, 4, 4, requires_grad=True)
    nda_from_targets(flow, t, form="vector")[0].backward()
    g = flow.grad
    assert (g[:, 0] < 0).all() and g[:, 1].abs().max() == 0          # descent moves f towards +x
    assert g.abs().max().item() * 16 <= 1.0 + 1e-6                     # bounded: |grad| <= 1 / M
    long = d * 2.0                                      # |f| = 6, |d| = 3, same direction
    assert nda_from_targets(long, t, form="polar_l1")[0].item() == pytest.approx(3.0, rel=1e-5)
    assert nda_from_targets(long, t, form="polar")[0].item() == pytest.approx(9.0, rel=1e-5)
    with pytest.raises(ValueError, match="form"):
        nda_from_targets(flow, t, form="l3")


def test_nda_vector_form_is_robust_to_outlier_targets():
    """With 30 % wrong targets the vector form's minimiser stays at the true
    displacement (a geometric median), the polar L2 form's is pulled off."""
    g = torch.Generator().manual_seed(0)
    d = torch.zeros(1, 2, 10, 10)
    d[:, 0] = 5.0
    bad = torch.rand(1, 1, 10, 10, generator=g) < 0.3
    d = torch.where(bad, torch.randn(1, 2, 10, 10, generator=g) * 4.0, d)
    t = _targets(d)
    for form, tol in (("vector", 0.3), ("polar", None)):
        c = torch.tensor([0.5, 0.5], requires_grad=True)
        opt = torch.optim.Adam([c], lr=0.05)
        for _ in range(400):
            opt.zero_grad()
            di, an = nda_from_targets(c.view(1, 2, 1, 1).expand(1, 2, 10, 10), t, form=form)
            (di + an).backward()
            opt.step()
        err = (c.detach() - torch.tensor([5.0, 0.0])).norm().item()
        if tol is not None:
            assert err < tol, (form, c)
        else:
            assert err > 0.3, (form, c)


def _radial_field(h, w, scale=0.05):
    """A smooth zoom-like field (px): displacement grows linearly from the centre."""
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32) - (h - 1) / 2,
                          torch.arange(w, dtype=torch.float32) - (w - 1) / 2, indexing="ij")
    return torch.stack((scale * x, scale * y))[None]


def test_nda_consistency_drops_outlier_clusters_and_keeps_inliers():
    """Targets on a smooth field, 20 % of them replaced by 3x3 clusters of wrong
    displacements (how cross-modal matches fail): the clusters go, the rest stays."""
    g = torch.Generator().manual_seed(0)
    h, w = 80, 96
    truth = _radial_field(h, w)
    valid = torch.rand(1, 1, h, w, generator=g) < 0.3
    seeds = (torch.rand(1, 1, h, w, generator=g) < 0.02).float()
    bad = F.max_pool2d(seeds, 3, stride=1, padding=1) > 0
    wrong = truth + torch.randn(1, 2, 1, 1, generator=g).sign() * 4.0 + torch.randn(1, 2, h, w, generator=g)
    delta = torch.where(bad, wrong, truth + 0.2 * torch.randn(1, 2, h, w, generator=g))
    assert 0.1 < (bad & valid).float().sum() / valid.float().sum() < 0.4
    keep = nda_consistency(delta, valid, tau=1.5, window=33, stride=8)
    assert not (keep & ~valid).any()                                     # a subset
    wrong_kept = (keep & bad & ((delta - truth).norm(dim=1, keepdim=True) > 1.5)).sum() / (valid & bad).sum()
    assert wrong_kept < 0.1
    assert (keep & ~bad).sum() / (valid & ~bad).sum() > 0.95
    # a tighter threshold keeps fewer; the filter never adds
    assert (nda_consistency(delta, valid, tau=0.5) & ~keep).sum() == 0
    # dense: the median of the kept targets fills the flat pixels, close to the truth
    field, support = nda_consistency(delta, valid, tau=1.5, dense=True)
    assert field.shape == delta.shape and support.shape == valid.shape and support.float().mean() > 0.9
    err = (field - truth).norm(dim=1, keepdim=True)[support]
    assert err.median() < 0.3 and (err < 1.0).float().mean() > 0.95


def test_nda_consistency_needs_enough_neighbours_and_checks_input():
    truth = _radial_field(64, 64)
    sparse = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    sparse[..., ::20, ::20] = True                      # at most 4 targets in any 33 x 33 window
    assert not nda_consistency(truth, sparse, min_count=8).any()
    assert nda_consistency(truth, sparse, min_count=1).sum() == sparse.sum()
    dense = torch.ones(1, 1, 64, 64, dtype=torch.bool)
    assert nda_consistency(truth, dense).all()          # a smooth field agrees with itself, borders too
    with pytest.raises(ValueError, match="expected delta"):
        nda_consistency(truth[:, :1], dense)
    with pytest.raises(ValueError, match="odd window"):
        nda_consistency(truth, dense, window=32)
    with pytest.raises(ValueError, match="tau > 0"):
        nda_consistency(truth, dense, tau=0)


def test_nda_consistency_dense_median_is_exact_on_a_linear_field():
    """All targets valid on a linear field, sizes not multiples of the stride:
    where a pixel's grid neighbours have complete windows, the interpolated
    median equals the field (the grid and the interpolation line up); a batch
    gives what its samples give one by one."""
    h, w, stride, window = 67, 75, 8, 33
    truth = _radial_field(h, w, scale=0.07)
    valid = torch.ones(1, 1, h, w, dtype=torch.bool)
    field, support = nda_consistency(truth, valid, tau=10.0, window=window, stride=stride, dense=True)
    assert support.all()
    inner = slice(window // 2 + stride, -(window // 2 + stride))   # grid neighbours with complete windows
    assert (field - truth)[..., inner, inner].abs().max() < 1e-4
    other = truth.flip(-1) * 0.5
    both = nda_consistency(torch.cat((truth, other)), valid.expand(2, -1, -1, -1), tau=1.0, dense=True)
    one = [nda_consistency(t[None], valid, tau=1.0, dense=True) for t in (truth[0], other[0])]
    assert torch.equal(both[0], torch.cat((one[0][0], one[1][0])))
    assert torch.equal(both[1], torch.cat((one[0][1], one[1][1])))
