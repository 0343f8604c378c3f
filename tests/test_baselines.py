"""Classical registration and fusion baselines (bsr.baselines)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from bsr import baselines
from bsr.baselines import COMBINATIONS, FUSION, REGISTRATION, register_then_fuse
from bsr.baselines import fusion as fu
from bsr.baselines import ecc, ecc_numpy, fields
from bsr.baselines import registration as rg
from bsr.datasets.simulate import dilate_crop, shift
from bsr.warp import warp

H, W = 128, 160
DX, DY = 4.0, -3.0
MARGIN = 12


def _layers(seed: int = 0):
    """Two smooth layers: Gaussian blobs (A) and blurred rectangles (B), each in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    a = np.zeros((H, W))
    for _ in range(14):
        cy, cx, s = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(4, 10)
        a += rng.uniform(0.3, 1.0) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
    b = np.zeros((H, W))
    for _ in range(10):
        y0, x0 = rng.integers(0, H - 20), rng.integers(0, W - 20)
        hh, ww = rng.integers(10, 40), rng.integers(10, 40)
        b[y0:y0 + hh, x0:x0 + ww] += rng.uniform(0.3, 1.0)
    b = ndimage.gaussian_filter(b, 1.5)
    return a / a.max(), b / b.max()


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, dtype=np.float32))[None, None]


@pytest.fixture(scope="module")
def mono_pair():
    """(ir, vis) of the same modality, aligned."""
    a, b = _layers()
    img = _t(0.5 * a + 0.5 * b)
    return img, img.clone()


@pytest.fixture(scope="module")
def cross_pair():
    """(ir, vis) aligned but 'cross-modal': different layer weights, inverted contrast."""
    a, b = _layers()
    ir = 0.75 * a + 0.25 * b
    vis = 1.0 - (0.3 * a + 0.7 * b)
    return _t(ir / ir.max()), _t(vis)


def _interior_epe(field: torch.Tensor, gt: torch.Tensor, m: int = MARGIN) -> float:
    e = (field - gt).square().sum(1).sqrt()
    return float(e[..., m:-m, m:-m].mean())


# ----------------------------------------------------------------- registration

@pytest.mark.parametrize("method", sorted(REGISTRATION))
@pytest.mark.parametrize("pair", ["mono_pair", "cross_pair"])
def test_registration_recovers_shift(method, pair, request):
    ir, vis = request.getfixturevalue(pair)
    mis, gt = shift(ir, DX, DY)
    field = REGISTRATION[method](mis, vis)
    assert field.shape == (1, 2, H, W)
    assert field.dtype == ir.dtype
    epe = _interior_epe(field, gt)
    assert epe < 1.0, f"{method} on {pair}: interior EPE {epe:.2f} px"
    # the sign convention: warping the misaligned IR by the field re-aligns it
    err = (warp(mis, field) - ir).abs()[..., MARGIN:-MARGIN, MARGIN:-MARGIN].mean()
    base = (mis - ir).abs()[..., MARGIN:-MARGIN, MARGIN:-MARGIN].mean()
    assert err < 0.5 * base


def test_identity_on_aligned_pair(mono_pair):
    ir, vis = mono_pair
    for name, fn in REGISTRATION.items():
        assert _interior_epe(fn(ir, vis), torch.zeros(1, 2, H, W)) < 0.2, name


def test_phase_sign_explicit():
    """A single bright square moved by (+4, -3) gives the field (+4, -3)."""
    img = np.zeros((H, W), np.float32)
    img[50:70, 60:90] = 1.0
    img = ndimage.gaussian_filter(img, 1.0)
    vis = _t(img)
    mis, gt = shift(vis, DX, DY)
    f = rg.phase_correlation(mis, vis)
    assert torch.allclose(f[0, :, 0, 0], torch.tensor([DX, DY]), atol=0.2)


def test_ecc_matrix_and_zoom(cross_pair):
    """ECC recovers a dilate-crop zoom (an affine map) across modalities."""
    ir, vis = cross_pair
    mis, gt = dilate_crop(ir, 10)
    m = ecc_numpy.ecc_affine_numpy(mis[0, 0].double().numpy(), vis[0, 0].double().numpy(),
                            return_matrix=True)
    assert m.shape == (2, 3)
    field = torch.from_numpy(fields.affine_to_field(m, H, W)).float()[None]
    assert _interior_epe(field, gt) < 0.5


def test_ecc_translation_motion(cross_pair):
    ir, vis = cross_pair
    mis, gt = shift(ir, DX, DY)
    f = ecc.ecc_affine(mis, vis, motion="translation")
    assert _interior_epe(f, gt) < 0.5
    with pytest.raises(ValueError):
        ecc.ecc_affine(mis, vis, motion="homography")


def _rotated(ir: torch.Tensor, deg: float, tx: float, ty: float):
    """IR moved by a rotation of ``deg`` about the centre plus (tx, ty): (misaligned, gt field)."""
    th = np.deg2rad(deg)
    a = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    c = np.array([(W - 1) / 2.0, (H - 1) / 2.0])
    n = np.concatenate((a, (c - a @ c + [tx, ty])[:, None]), axis=1)   # mis(q) = ir(n q)
    n_inv = np.linalg.inv(np.vstack((n, [0, 0, 1])))[:2]
    mis = warp(ir, torch.from_numpy(fields.affine_to_field(n, H, W)).to(ir.dtype)[None])
    return mis, torch.from_numpy(fields.affine_to_field(n_inv, H, W)).to(ir.dtype)[None]


@pytest.mark.parametrize("pair", ["mono_pair", "cross_pair"])
def test_ecc_recovers_rotation(pair, request):
    """A 5 degree rotation plus a (6, -4) px translation, which the old coarse zoom-only search missed."""
    ir, vis = request.getfixturevalue(pair)
    mis, gt = _rotated(ir, 5.0, 6.0, -4.0)
    f = REGISTRATION["ECC"](mis, vis)
    assert _interior_epe(f, gt) < 0.5
    m = ecc.ecc_affine_opencv(mis[0, 0].double().numpy(), vis[0, 0].double().numpy(), return_matrix=True)
    assert m.shape == (2, 3)
    assert np.isclose(np.rad2deg(np.arctan2(m[1, 0], m[0, 0])), -5.0, atol=0.3)


def test_ecc_degenerate_inputs_give_finite_fields(cross_pair):
    """Flat, edge-free or non-finite inputs (where findTransformECC raises) return a finite field."""
    ir, vis = cross_pair
    flat = torch.full_like(ir, 0.5)
    zeros = torch.zeros_like(ir)
    bad = ir.clone()
    bad[..., 10, 10] = float("nan")
    for a, b in ((flat, flat), (flat, vis), (ir, zeros), (bad, vis)):
        f = ecc.ecc_affine(a, b)
        assert f.shape == (1, 2, H, W) and torch.isfinite(f).all()
    assert torch.equal(ecc.ecc_affine(flat, flat), torch.zeros(1, 2, H, W))
    # unrelated content: a finite field within the plausibility limits (centre moved < 35 %)
    noise = _t(ndimage.gaussian_filter(np.random.default_rng(7).random((H, W)), 1.0))
    f = ecc.ecc_affine(noise, vis)
    assert torch.isfinite(f).all()
    assert abs(float(f[0, 0, H // 2, W // 2])) < 0.35 * W and abs(float(f[0, 1, H // 2, W // 2])) < 0.35 * H
    # below min_rho the result is discarded: no registration rather than a doubtful one
    mis, _ = shift(ir, DX, DY)
    assert torch.equal(ecc.ecc_affine(mis, vis, min_rho=1.01), torch.zeros(1, 2, H, W))
    # a tiny image: no pyramid, hardly any search; still a finite field
    f = ecc.ecc_affine(ir[..., :12, :14], vis[..., :12, :14])
    assert f.shape == (1, 2, 12, 14) and torch.isfinite(f).all()


def test_ecc_motions_and_registry(cross_pair):
    import cv2

    ir, vis = cross_pair
    assert REGISTRATION["ECC"] is ecc.ecc_affine
    assert ecc_numpy.ecc_affine_numpy not in REGISTRATION.values()
    mis, gt = shift(ir, DX, DY)
    threads = cv2.getNumThreads()
    for motion in ("euclidean", "scale"):      # "scale" runs the numpy implementation
        assert _interior_epe(ecc.ecc_affine(mis, vis, motion=motion), gt) < 0.5, motion
    assert cv2.getNumThreads() == threads      # the one-thread setting is undone


def test_ecc_batch_mixed_motions_and_dtype(cross_pair):
    ir, vis = cross_pair
    m1, g1 = _rotated(ir, -4.0, -5.0, 3.0)
    m2, g2 = dilate_crop(ir, 10)
    f = ecc.ecc_affine(torch.cat((m1, m2, ir)).double(), torch.cat((vis, vis, vis)).double())
    assert f.shape == (3, 2, H, W) and f.dtype == torch.float64
    assert _interior_epe(f[:1], g1.double()) < 0.5
    assert _interior_epe(f[1:2], g2.double()) < 0.5
    assert _interior_epe(f[2:], torch.zeros(1, 2, H, W, dtype=torch.float64)) < 0.2


def test_batch_of_two(mono_pair):
    ir, vis = mono_pair
    m1, g1 = shift(ir, DX, DY)
    m2, g2 = shift(ir, -2.0, 5.0)
    mis = torch.cat((m1, m2))
    gt = torch.cat((g1, g2))
    f = ecc.ecc_affine(mis, torch.cat((vis, vis)))
    assert f.shape == (2, 2, H, W)
    assert _interior_epe(f[:1], gt[:1]) < 0.5 and _interior_epe(f[1:], gt[1:]) < 0.5


def test_field_helpers():
    f = fields.translation_to_field(1.5, -2.0, 4, 5)
    assert f.shape == (2, 4, 5) and np.all(f[0] == 1.5) and np.all(f[1] == -2.0)
    m = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    assert np.allclose(fields.affine_to_field(m, 4, 5), fields.translation_to_field(2.0, -1.0, 4, 5))
    z = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])   # q = 2p: field = p
    fz = fields.affine_to_field(z, 3, 4)
    assert np.allclose(fz[0], np.arange(4)[None, :].repeat(3, 0))
    assert np.allclose(fz[1], np.arange(3)[:, None].repeat(4, 1))


def test_registration_rejects_bad_input():
    with pytest.raises(ValueError):
        rg.phase_correlation(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))
    with pytest.raises(ValueError):
        rg.tvl1(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


# ----------------------------------------------------------------- fusion

@pytest.mark.parametrize("method", sorted(FUSION))
def test_fusion_shape_range_dtype(method, cross_pair):
    ir, vis = cross_pair
    ir2 = torch.cat((ir, vis))
    vis2 = torch.cat((vis, ir))
    out = FUSION[method](ir2, vis2)
    assert out.shape == ir2.shape
    assert out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.isfinite(out).all()
    out64 = FUSION[method](ir2.double(), vis2.double())
    assert out64.dtype == torch.float64


@pytest.mark.parametrize("method", sorted(FUSION))
def test_fusion_of_identical_inputs_is_identity(method, cross_pair):
    x = cross_pair[1]
    out = FUSION[method](x, x.clone())
    assert torch.allclose(out, x, atol=1e-5), float((out - x).abs().max())


@pytest.mark.parametrize("method", sorted(FUSION))
def test_fusion_odd_size(method):
    rng = np.random.default_rng(1)
    a = _t(ndimage.gaussian_filter(rng.random((37, 53)), 2))
    b = _t(ndimage.gaussian_filter(rng.random((37, 53)), 2))
    out = FUSION[method](a, b)
    assert out.shape == (1, 1, 37, 53)


def test_average_and_max_exact(cross_pair):
    ir, vis = cross_pair
    assert torch.allclose(FUSION["average"](ir, vis), (ir + vis) / 2)
    assert torch.equal(FUSION["max"](ir, vis), torch.maximum(ir, vis))


def test_salient_detail_is_kept():
    """A small hot target on a flat IR background survives LP and GFF fusion with a textured visible."""
    rng = np.random.default_rng(3)
    vis = 0.5 + 0.1 * ndimage.gaussian_filter(rng.standard_normal((96, 96)), 1.0)
    ir = np.full((96, 96), 0.2)
    ir[40:50, 40:50] = 0.9
    ir_t, vis_t = _t(ir), _t(np.clip(vis, 0, 1))
    for name in ("LP", "GFF"):
        out = FUSION[name](ir_t, vis_t)[0, 0].numpy()
        contrast = out[42:48, 42:48].mean() - out[20:30, 70:80].mean()
        assert contrast > 0.2, (name, contrast)


def test_box_mean_matches_direct_sum():
    rng = np.random.default_rng(4)
    x = rng.random((2, 17, 23))
    r = 3
    got = fu.box_mean(x, r)
    pad = np.pad(x, ((0, 0), (r, r), (r, r)))
    ones = np.pad(np.ones((17, 23)), r)
    want = np.empty_like(x)
    for i in range(17):
        for j in range(23):
            want[:, i, j] = pad[:, i:i + 2 * r + 1, j:j + 2 * r + 1].sum((1, 2)) / \
                ones[i:i + 2 * r + 1, j:j + 2 * r + 1].sum()
    assert np.allclose(got, want)
    # a radius larger than the image is the global mean
    assert np.allclose(fu.box_mean(x[0], 100), x[0].mean())


def test_guided_filter_properties():
    rng = np.random.default_rng(5)
    guide = rng.random((40, 50))
    const = np.full((40, 50), 0.7)
    assert np.allclose(fu.guided_filter(guide, const, 4, 1e-3), 0.7)
    # tiny eps with the source equal to the guide: edge-preserving identity
    assert np.allclose(fu.guided_filter(guide, guide, 3, 1e-8), guide, atol=1e-4)
    # huge eps: a -> 0, b -> box mean of the source, averaged again over the windows
    src = rng.random((40, 50))
    assert np.allclose(fu.guided_filter(guide, src, 3, 1e6), fu.box_mean(fu.box_mean(src, 3), 3),
                       atol=1e-4)


def test_laplacian_pyramid_levels():
    rng = np.random.default_rng(6)
    x = _t(ndimage.gaussian_filter(rng.random((64, 80)), 1))
    for levels in (0, 1, 3, None, 99):
        assert torch.allclose(fu.laplacian_pyramid(x, x, levels=levels), x, atol=1e-6)


# ----------------------------------------------------------------- pipelines

def test_combinations_and_register_then_fuse(cross_pair):
    assert "ECC + GFF" in COMBINATIONS and "none + average" in COMBINATIONS
    assert len(COMBINATIONS) == len(set(COMBINATIONS)) == (len(REGISTRATION) + 1) * len(FUSION)
    for name in COMBINATIONS:
        r, f = baselines.parse_combination(name)
        assert baselines.combination_name(r, f) == name
    ir, vis = cross_pair
    mis, gt = shift(ir, DX, DY)
    fused, field = register_then_fuse("none", "average", mis, vis)
    assert torch.equal(field, torch.zeros_like(gt)) and torch.allclose(fused, (mis + vis) / 2)
    fused, field = register_then_fuse("phase", "max", mis, vis)
    assert fused.shape == ir.shape and _interior_epe(field, gt) < 1.0
    with pytest.raises(KeyError):
        register_then_fuse("SIFT", "max", mis, vis)
    with pytest.raises(KeyError):
        register_then_fuse("ECC", "wavelet", mis, vis)
    with pytest.raises(ValueError):
        baselines.parse_combination("ECC")


# ----------------------------------------------------------------- real data (skipped when absent)

def test_roadscene_pair_shift5():
    """On a real RoadScene pair shifted 5 px, every method gets well below the 5 px of doing nothing;
    mono-modal (IR against itself) all are near exact."""
    from conftest import need_dataset

    from bsr.io import read_image, rgb_to_ycbcr

    root = need_dataset("roadscene")
    name = (root / "splits" / "test.txt").read_text().split()[0]
    ir = read_image(root / "ir" / name)
    vi = read_image(root / "vi" / name)
    ir = _t(ir if ir.ndim == 2 else rgb_to_ycbcr(ir)[..., 0])
    vi = _t(vi if vi.ndim == 2 else rgb_to_ycbcr(vi)[..., 0])
    mis, gt = shift(ir, 5.0, 0.0)
    for method, fn in REGISTRATION.items():
        assert _interior_epe(fn(mis, vi), gt, 10) < 3.0, method
        assert _interior_epe(fn(mis, ir), gt, 10) < 0.5, method
