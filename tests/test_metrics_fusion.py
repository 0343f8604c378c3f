"""bsr.metrics.fusion against values worked out by hand or by an independent route.

The independent routes are explicit Python loops over pixels (with the border
rules written as index maps) and, for VIF, a direct scipy.signal.convolve2d
transcription of the field's code: none shares code with the vectorised
implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import convolve2d

from bsr.metrics import fusion as F
from bsr.metrics import fusion_metrics


def textured(h, w, seed, smooth=True):
    """Integer grey levels 0..255 with structure at several scales."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = 120 + 60 * np.sin(x / 5.0 + seed) * np.cos(y / 7.0) + 30 * ((x // 9 + y // 11) % 2)
    img = img + rng.normal(0, 12 if smooth else 40, (h, w))
    return np.clip(np.rint(img), 0, 255)


# ----------------------------------------------------------------------------
# independent loop implementations

def loop_sf(x):
    h, w = x.shape
    rf = sum((x[i, j + 1] - x[i, j]) ** 2 for i in range(h) for j in range(w - 1)) / (h * (w - 1))
    cf = sum((x[i + 1, j] - x[i, j]) ** 2 for i in range(h - 1) for j in range(w)) / ((h - 1) * w)
    return math.sqrt(rf + cf)


def loop_ag(x):
    h, w = x.shape

    def d(v, k, n):  # numpy.gradient along one line
        if k == 0:
            return v(1) - v(0)
        if k == n - 1:
            return v(n - 1) - v(n - 2)
        return (v(k + 1) - v(k - 1)) / 2

    tot = 0.0
    for i in range(h):
        for j in range(w):
            gx = d(lambda t: x[i, t], j, w)
            gy = d(lambda t: x[t, j], i, h)
            tot += math.sqrt((gx * gx + gy * gy) / 2)
    return tot / (h * w)


def loop_sd(x):
    vals = [float(v) for v in x.ravel()]
    m = sum(vals) / len(vals)
    return math.sqrt(sum((v - m) ** 2 for v in vals) / len(vals))


def loop_en(x):
    counts = {}
    for v in x.ravel():
        counts[int(round(v))] = counts.get(int(round(v)), 0) + 1
    n = x.size
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def mirror(i, n):  # OpenCV BORDER_REFLECT_101: ... 2 1 | 0 1 2 ... n-1 | n-2 ...
    return -i if i < 0 else (2 * n - 2 - i if i >= n else i)


def reflect(i, n):  # half-sample symmetric: ... 1 0 | 0 1 ... n-1 | n-1 n-2 ...
    return -i - 1 if i < 0 else (2 * n - 1 - i if i >= n else i)


def nearest(i, n):
    return min(max(i, 0), n - 1)


KX = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]  # correlation kernel: right minus left


def loop_sobel(x, idx):
    h, w = x.shape
    sx = np.zeros((h, w))
    sy = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            for u in range(3):
                for v in range(3):
                    val = x[idx(i + u - 1, h), idx(j + v - 1, w)]
                    sx[i, j] += KX[u][v] * val
                    sy[i, j] += KX[v][u] * val
    return sx, sy


def loop_forward_diff(x):
    h, w = x.shape
    tot = sum(math.sqrt(((x[i, j] - x[i, j - 1]) ** 2 + (x[i, j] - x[i - 1, j]) ** 2) / 2)
              for i in range(1, h) for j in range(1, w))
    return tot / ((h - 1) * (w - 1))


def loop_qabf(f, a, b, variant="field"):
    """Literal transcription of Xydeas-Petrovic with the field's conventions: true 2-D
    convolution (kernel flipped) with zero fill, alpha = pi/2 where Sx == 0."""
    h1 = [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]
    h3 = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    H, W = f.shape

    def conv(x, k, i, j):
        s = 0.0
        for u in range(3):
            for v in range(3):
                ii, jj = i - (u - 1), j - (v - 1)
                if 0 <= ii < H and 0 <= jj < W:
                    s += k[u][v] * x[ii, jj]
        return s

    def grad(x):
        g = np.zeros((H, W))
        al = np.zeros((H, W))
        for i in range(H):
            for j in range(W):
                sx, sy = conv(x, h3, i, j), conv(x, h1, i, j)
                g[i, j] = math.sqrt(sx * sx + sy * sy)
                al[i, j] = math.pi / 2 if sx == 0 else math.atan(sy / sx)
        return g, al

    c = F.QABF_CONSTANTS
    gf, af = grad(f)
    num = den = 0.0
    for src in (a, b):
        gs, as_ = grad(src)
        for i in range(H):
            for j in range(W):
                if gs[i, j] > gf[i, j]:
                    G = gf[i, j] / gs[i, j]
                elif gs[i, j] < gf[i, j]:
                    G = gs[i, j] / gf[i, j]
                else:
                    G = gf[i, j] if variant == "field" else 1.0
                A = 1 - abs(as_[i, j] - af[i, j]) / (math.pi / 2)
                q = c["Tg"] / (1 + math.exp(c["kg"] * (G - c["Dg"]))) * c["Ta"] / (1 + math.exp(c["ka"] * (A - c["Da"])))
                num += q * gs[i, j]
                den += gs[i, j]
    return num / den


def convolve2d_vif(ref, dist):
    """The field's pixel-domain VIF written with scipy.signal.convolve2d."""
    sigma_nsq, eps = 2.0, 1e-10
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        sd = n / 5.0
        m = (n - 1) / 2
        yy, xx = np.ogrid[-m:m + 1, -m:m + 1]
        win = np.exp(-(xx * xx + yy * yy) / (2 * sd * sd))
        win /= win.sum()
        if scale > 1:
            ref = convolve2d(ref, win, mode="valid")[::2, ::2]
            dist = convolve2d(dist, win, mode="valid")[::2, ::2]
        mu1, mu2 = convolve2d(ref, win, mode="valid"), convolve2d(dist, win, mode="valid")
        s1 = convolve2d(ref * ref, win, mode="valid") - mu1 * mu1
        s2 = convolve2d(dist * dist, win, mode="valid") - mu2 * mu2
        s12 = convolve2d(ref * dist, win, mode="valid") - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g[s1 < eps] = 0
        sv[s1 < eps] = s2[s1 < eps]
        s1[s1 < eps] = 0
        g[s2 < eps] = 0
        sv[s2 < eps] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= eps] = eps
        num += np.sum(np.log10(1 + g * g * s1 / (sv + sigma_nsq)))
        den += np.sum(np.log10(1 + s1 / sigma_nsq))
    return 1.0 if den == 0 else num / den


# ----------------------------------------------------------------------------
# hand values

def test_hand_values_2x2():
    x = np.array([[0.0, 2.0], [4.0, 6.0]])
    assert F.sf(x) == pytest.approx(math.sqrt(20.0))  # RF^2 = 4, CF^2 = 16
    assert F.ag(x) == pytest.approx(math.sqrt(10.0))  # gx = 2, gy = 4 everywhere (one-sided)
    assert F.sd(x) == pytest.approx(math.sqrt(5.0))  # mean 3, deviations 9, 1, 1, 9
    assert F.en(x) == pytest.approx(2.0)  # four equally likely levels
    # forward differences at the single interior point (1, 1): dx = 2, dy = 4
    assert F.mg(x, "forward_diff") == pytest.approx(math.sqrt(10.0))


def test_entropy_hand_values():
    half = np.zeros((4, 4))
    half[:, :2] = 255
    assert F.en(half) == pytest.approx(1.0)
    assert F.en(np.arange(256.0).reshape(16, 16)) == pytest.approx(8.0)
    # rounding half to even (numpy.round), clipping outside 0..255
    assert F.en(np.array([[0.5, -3.0], [300.0, 255.4]])) == pytest.approx(1.0)


def test_small_image_against_loops():
    x = textured(7, 9, seed=3, smooth=False)
    assert F.sf(x) == pytest.approx(loop_sf(x), rel=1e-12)
    assert F.ag(x) == pytest.approx(loop_ag(x), rel=1e-12)
    assert F.sd(x) == pytest.approx(loop_sd(x), rel=1e-12)
    assert F.en(x) == pytest.approx(loop_en(x), rel=1e-12)
    sx, sy = loop_sobel(x, mirror)
    assert F.mg(x) == pytest.approx(np.mean(np.sqrt((sx ** 2 + sy ** 2) / 2)), rel=1e-12)
    sx, sy = loop_sobel(x, reflect)
    assert F.ei(x) == pytest.approx(np.mean(np.sqrt(sx ** 2 + sy ** 2)) / 4, rel=1e-12)
    sx, sy = loop_sobel(x, nearest)
    assert F.ei(x, "sobel_plain") == pytest.approx(np.mean(np.sqrt(sx ** 2 + sy ** 2)), rel=1e-12)
    assert F.mg(x, "forward_diff") == pytest.approx(loop_forward_diff(x), rel=1e-12)
    assert F.ag(x, "forward_diff") == pytest.approx(loop_forward_diff(x), rel=1e-12)


@pytest.mark.parametrize("variant", ["field", "strict"])
def test_qabf_against_loops(variant):
    f, a, b = textured(11, 13, 1, False), textured(11, 13, 2, False), textured(11, 13, 3, False)
    # a region where the fused image copies a source, so strength ties occur
    f[2:6, 3:9] = a[2:6, 3:9]
    assert F.qabf(f, a, b, variant) == pytest.approx(loop_qabf(f, a, b, variant), rel=1e-12)


def test_vif_against_convolve2d():
    a, b = textured(50, 61, 1), textured(50, 61, 2)
    f = np.rint(0.6 * a + 0.4 * b)
    assert F.vif(a, f) == pytest.approx(convolve2d_vif(a, f), rel=1e-9)
    assert F.viff(f, a, b) == pytest.approx(convolve2d_vif(a, f) + convolve2d_vif(b, f), rel=1e-9)
    # non-integer input and a saturated (flat) region exercise the eps branches
    g = a.copy() + 0.25
    g[:20, :30] = 255.0
    assert F.vif(g, f) == pytest.approx(convolve2d_vif(g, f), rel=1e-9)
    assert F.vif(f, g) == pytest.approx(convolve2d_vif(f, g), rel=1e-9)
    # the smallest size with all four scales non-empty
    s, t = a[:41, :41], f[:41, :41]
    assert F.vif(s, t) == pytest.approx(convolve2d_vif(s, t), rel=1e-9)


# ----------------------------------------------------------------------------
# identities, constants, symmetry

def test_identical_inputs():
    x = textured(48, 64, 5)
    assert F.vif(x, x) == pytest.approx(1.0, abs=1e-9)
    assert F.viff(x, x, x) == pytest.approx(2.0, abs=1e-9)
    # The usual Qabf constants put the sigmoids' top below 1: a perfect transfer scores
    # Qg(G=1) * Qa(A=1), worked out here from the constants.
    perfect = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert perfect == pytest.approx(0.974794, abs=1e-6)
    assert F.qabf(x, x, x, "strict") == pytest.approx(perfect, rel=1e-12)
    assert F.qabf_max() == pytest.approx(perfect, rel=1e-12)
    # the field's tie rule (G = g_F) pushes it towards Tg * Qa(1)
    q = F.qabf(x, x, x)
    assert perfect < q <= F.qabf_field_max() + 1e-15
    assert F.qabf_field_max() == pytest.approx(0.9994 * 0.9879 / (1 + math.exp(-22 * 0.2)), rel=1e-12)


def test_constant_images_have_defined_values():
    c = np.full((48, 64), 100.0)
    m = fusion_metrics(c, c, c)
    assert all(math.isfinite(v) for v in m.values())
    assert m["SF"] == m["AG"] == m["MG"] == m["EI"] == m["SD"] == m["EN"] == 0.0
    assert m["VIFF"] == 2.0  # a reference without variance scores 1 (the field's NaN rule)
    # zero-filled borders give the constant image edges on its rim; fused == sources there
    assert fusion_metrics(c, c, c, qabf="strict")["Qabf"] == pytest.approx(F.qabf_max(), rel=1e-12)
    z = np.zeros((48, 64))
    assert fusion_metrics(z, z, z)["Qabf"] == 0.0  # no source edges at all: defined as 0
    # a constant fused image carries no information about textured sources
    a, b = textured(48, 64, 1), textured(48, 64, 2)
    assert F.viff(c, a, b) == 0.0
    assert 0.0 <= F.qabf(c, a, b) < 0.2


def test_symmetry_in_the_sources():
    a, b = textured(45, 52, 1), textured(45, 52, 2)
    f = np.maximum(a, b)
    for metric in ("Qabf", "VIFF"):
        assert fusion_metrics(f, a, b)[metric] == pytest.approx(fusion_metrics(f, b, a)[metric], rel=1e-13)
    # the single-image metrics do not look at the sources at all
    m1, m2 = fusion_metrics(f, a, b), fusion_metrics(f, b, np.zeros_like(a))
    for k in ("SF", "AG", "MG", "EI", "SD", "EN"):
        assert m1[k] == m2[k]


def test_qabf_prefers_edges_that_are_kept():
    a, b = textured(48, 48, 1), textured(48, 48, 2)
    good = np.rint((a + b) / 2)
    blurred = np.rint(convolve2d(good, np.ones((5, 5)) / 25, mode="same", boundary="symm"))
    assert F.qabf(good, a, b) > F.qabf(blurred, a, b)
    assert F.viff(good, a, b) > F.viff(blurred, a, b)


# ----------------------------------------------------------------------------
# fusion_metrics plumbing

def test_fusion_metrics_keys_and_shared_paths():
    f, a, b = textured(45, 61, 7), textured(45, 61, 8), textured(45, 61, 9)
    m = fusion_metrics(f, a, b)
    assert list(m) == ["Qabf", "VIFF", "SF", "AG", "MG", "EI", "SD", "EN"]
    # MG / EI come from Qabf's Sobel pass plus a border fix-up: equal to the direct route
    assert m["MG"] == pytest.approx(F.mg(f), rel=1e-13)
    assert m["EI"] == pytest.approx(F.ei(f), rel=1e-13)
    plain = fusion_metrics(f, a, b, ei="sobel_plain", mg="forward_diff", ag="forward_diff")
    assert plain["EI"] == pytest.approx(F.ei(f, "sobel_plain"), rel=1e-13)
    assert plain["MG"] == pytest.approx(loop_forward_diff(f), rel=1e-12)
    assert plain["AG"] == plain["MG"]
    assert m["EI"] != plain["EI"]
    sub = fusion_metrics(f, a, b, metrics=["EN", "SF"])
    assert list(sub) == ["SF", "EN"] and sub["SF"] == m["SF"]
    assert fusion_metrics(f, a, b, metrics=["MG"])["MG"] == pytest.approx(m["MG"], rel=1e-13)
    u8 = fusion_metrics(f.astype(np.uint8), a.astype(np.uint8), b.astype(np.uint8))
    assert u8 == pytest.approx(m, rel=1e-13)


def test_tiny_images_score_every_metric_but_vif():
    """On a 3 x 4 image every metric but VIFF is finite (VIFF needs 41 px a side; test_errors)."""
    x = textured(3, 4, 1)
    m = fusion_metrics(x, x, x, metrics=["Qabf", "SF", "AG", "MG", "EI", "SD", "EN"])
    assert list(m) == ["Qabf", "SF", "AG", "MG", "EI", "SD", "EN"]
    with pytest.raises(ValueError, match="at least 41x41"):
        fusion_metrics(x, x, x)
    assert all(math.isfinite(v) for v in m.values())
    assert m["MG"] == pytest.approx(F.mg(x), rel=1e-13) and m["EI"] == pytest.approx(F.ei(x), rel=1e-13)


def test_errors():
    a = np.zeros((50, 50))
    with pytest.raises(ValueError, match=r"fused \(50, 50\), ir \(50, 49\), vis \(50, 50\)"):
        fusion_metrics(a, a[:, 1:], a)
    with pytest.raises(ValueError, match="2-D"):
        fusion_metrics(np.zeros((50, 50, 3)), a, a)
    with pytest.raises(ValueError, match="NaN"):
        fusion_metrics(np.full((50, 50), np.nan), a, a)
    with pytest.raises(ValueError, match="unknown metric"):
        fusion_metrics(a, a, a, metrics=["PSNR"])
    with pytest.raises(ValueError, match="unknown MG definition"):
        fusion_metrics(a, a, a, mg="laplacian")
    with pytest.raises(ValueError, match="at least 41x41"):
        fusion_metrics(np.zeros((40, 80)), np.zeros((40, 80)), np.zeros((40, 80)))
    with pytest.raises(ValueError, match="empty"):
        F.sf(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="numeric"):
        F.sf(np.array([["a"]]))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(41, 60), st.integers(41, 60))
def test_ranges(seed, h, w):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 256, (h, w)).astype(float), rng.integers(0, 256, (h, w)).astype(float)
    f = np.rint(rng.uniform(0, 1) * a + rng.uniform(0, 1) * b).clip(0, 255)
    m = fusion_metrics(f, a, b)
    assert 0.0 <= m["Qabf"] <= F.qabf_field_max() + 1e-12
    assert m["VIFF"] >= 0.0
    assert 0.0 <= m["EN"] <= 8.0
    assert 0.0 <= m["SD"] <= 127.5
    assert m["MG"] >= 0 and m["EI"] >= 0 and m["AG"] >= 0 and m["SF"] >= 0


# ----------------------------------------------------------------------------
# the paper's MG / EI scale, on real pairs

@pytest.mark.realdata
def test_mg_ei_scale_matches_the_paper_on_roadscene():
    from conftest import need_dataset

    from bsr.metrics.evaluate import load_grey

    root = need_dataset("roadscene")
    names = (root / "splits" / "test.txt").read_text().split()[:3]
    for name in names:
        a, b = load_grey(root / "ir" / name), load_grey(root / "vi" / name)
        m = fusion_metrics(np.rint((a + b) / 2), a, b, metrics=["AG", "MG", "EI"])
        # the paper's tables: MG about 7.3 x AG, EI about 2.6 x AG
        assert 6.9 < m["MG"] / m["AG"] < 7.8
        assert 2.45 < m["EI"] / m["AG"] < 2.8


def test_metrics_run_blas_single_threaded():
    """Inside the metrics every BLAS library runs one thread (threadpoolctl), and the
    caller's setting is restored afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from bsr.metrics.common import _one_blas_thread

    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    if not blas:
        pytest.skip("no BLAS library reports its threads here (threadpoolctl found none)")
    with threadpool_limits(limits=2, user_api="blas"):
        with _one_blas_thread():
            assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {1}
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {2}
