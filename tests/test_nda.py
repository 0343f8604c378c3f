"""L_nda (bsr.nda): the neighbourhood search, its targets, the loss and the consensus filter."""

from __future__ import annotations

import math

import numpy as np

import pytest
import torch
import torch.nn.functional as F

import bsr.nda

from bsr.filters import box_filter
from bsr.nda import NDATargets, nda_consistency, nda_from_targets, nda_loss, nda_search
from bsr.pdg import ProxyDataGenerator, seam_mask
from bsr.datasets.simulate import shift

torch.set_num_threads(1)


def _cross_modal(img):
    """A monotone, polarity-inverting, non-linear intensity map (IR-vs-visible-ish)."""
    return 0.9 - 0.6 * img + 0.2 * img * img


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


def test_nda_target_cache(tmp_path, monkeypatch):
    """The on-disk cache returns exactly what the search returns, keys on the
    content and the options, recovers from a damaged file, and can be switched off."""
    from bsr.nda.cache import cached_nda_targets, nda_cache_dir, pair_targets

    g = torch.Generator().manual_seed(0)
    ir, vis = torch.rand(1, 1, 40, 48, generator=g), torch.rand(1, 1, 40, 48, generator=g)
    opts = {"radius": 3, "window": 7}
    monkeypatch.setenv("BSR_CACHE", str(tmp_path))
    ref = pair_targets(ir, vis, opts)
    first = cached_nda_targets(ir, vis, opts)
    files = sorted((tmp_path / "nda").glob("*.npz"))
    assert len(files) == 1
    def no_search(*a, **k):
        raise AssertionError("searched again: the cache was not used")

    monkeypatch.setattr(bsr.nda.cache, "pair_targets", no_search)
    second = cached_nda_targets(ir, vis, opts)                 # served from disk
    monkeypatch.setattr(bsr.nda.cache, "pair_targets", pair_targets)
    for out in (first, second):
        for k in ("nda_p", "nda_n"):
            assert torch.equal(out[k][0], ref[k][0]) and torch.equal(out[k][1], ref[k][1])
    cached_nda_targets(ir, vis, dict(opts, radius=4))           # other options: another entry
    cached_nda_targets(ir.flip(-1), vis, opts)                 # other content: another entry
    assert len(list((tmp_path / "nda").glob("*.npz"))) == 3
    files[0].write_bytes(b"not an npz")                        # damaged: recomputed and replaced
    again = cached_nda_targets(ir, vis, opts)
    assert torch.equal(again["nda_p"][0], ref["nda_p"][0])
    assert np.load(files[0])["nda_p_delta"].shape == (2, 40, 48)
    monkeypatch.setenv("BSR_CACHE", "off")
    assert nda_cache_dir() is None
    monkeypatch.delenv("BSR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert nda_cache_dir() == tmp_path / "xdg" / "bsr" / "nda"
