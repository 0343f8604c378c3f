"""bsr.metrics.registration: endpoint error, image agreement, edge alignment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bsr.metrics import edge_alignment, registration_metrics
from bsr.metrics.registration import edge_map, endpoint_error, image_agreement


def field(h=40, w=50, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    f = np.stack([3 * np.sin(x / 7.0) + rng.normal(0, 0.1, (h, w)), 2 * np.cos(y / 5.0)])
    return np.round(f * 64) / 64  # dyadic values: adding 1 or 3 is exact


def smooth(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = 0.5 + 0.3 * np.sin(x / 6.0 + seed) * np.cos(y / 9.0) + 0.02 * rng.normal(size=(h, w))
    return np.clip(img, 0, 1)


def test_epe_identity_and_shifts():
    f = field()
    assert endpoint_error(f, f) == {"EPE_mean": 0.0, "EPE_median": 0.0, "EPE>1px": 0.0, "EPE>3px": 0.0}
    g = f.copy()
    g[0] += 1.0  # shifted by (1, 0): every endpoint error is exactly 1
    e = endpoint_error(g, f)
    assert e["EPE_mean"] == pytest.approx(1.0, abs=1e-12)
    assert e["EPE_median"] == pytest.approx(1.0, abs=1e-12)
    assert e["EPE>1px"] == 0.0 and e["EPE>3px"] == 0.0  # strictly greater
    g = f + np.array([3.0, 4.0])[:, None, None]
    e = endpoint_error(f, g)
    assert e["EPE_mean"] == pytest.approx(5.0) and e["EPE>1px"] == 1.0 and e["EPE>3px"] == 1.0


def test_epe_fractions_and_margin():
    f = np.zeros((2, 20, 30))
    g = f.copy()
    g[1, :2, :] = 10.0  # errors only in the top two rows
    e = endpoint_error(g, f)
    assert e["EPE>3px"] == pytest.approx(2 / 20)
    assert e["EPE_mean"] == pytest.approx(10 * 2 / 20)
    assert e["EPE_median"] == 0.0
    assert endpoint_error(g, f, margin=2)["EPE_mean"] == 0.0
    assert endpoint_error(g, f, margin=1)["EPE_mean"] == pytest.approx(10 * 1 * 28 / (18 * 28))


def test_torch_and_batched_inputs():
    f = field()
    g = f + 0.5
    ref = registration_metrics(g, f)
    t = registration_metrics(torch.from_numpy(g)[None].float().requires_grad_(), torch.from_numpy(f)[None])
    assert t == pytest.approx(ref, rel=1e-6)
    a = smooth()
    r1 = registration_metrics(registered=a, reference=a)
    r2 = registration_metrics(registered=torch.from_numpy(a)[None, None], reference=a)
    assert r1 == r2


def test_image_agreement_values():
    a = smooth()
    m = image_agreement(a, a)
    assert m["RMSE"] == 0.0 and m["NCC"] == pytest.approx(1.0) and m["SSIM"] == pytest.approx(1.0)
    m = image_agreement(np.clip(a + 0.1, 0, 1), a)
    assert m["RMSE"] == pytest.approx(0.1, abs=1e-12)
    assert m["NCC"] == pytest.approx(1.0)  # a brightness offset is not a misalignment
    assert m["SSIM"] < 1.0
    assert image_agreement(1 - a, a)["NCC"] == pytest.approx(-1.0)
    shifted = np.roll(a, 3, axis=1)
    assert image_agreement(shifted, a, margin=4)["NCC"] < image_agreement(a, a, margin=4)["NCC"]
    # uint8 is read as 0..255 and put on the [0, 1] scale
    u = np.rint(a * 255).astype(np.uint8)
    assert image_agreement(u, u.astype(float) / 255)["RMSE"] == 0.0
    # constant images: NCC defined as 1 when identical, else 0
    c = np.full((20, 20), 0.3)
    assert image_agreement(c, c)["NCC"] == 1.0
    assert image_agreement(c, a[:20, :20])["NCC"] == 0.0


def test_registration_metrics_combines_both():
    """Both groups of keys, each equal to the function that computes it, with the margin passed on."""
    f, g = field(48, 64), field(48, 64, seed=1) + 1.0
    a, b = smooth(), smooth(seed=1)
    m = registration_metrics(f, g, a, b, margin=5)
    assert set(m) == {"EPE_mean", "EPE_median", "EPE>1px", "EPE>3px", "RMSE", "NCC", "SSIM"}
    assert {k: m[k] for k in endpoint_error(f, g, 5)} == endpoint_error(f, g, 5)
    assert {k: m[k] for k in image_agreement(a, b, 5)} == image_agreement(a, b, 5)
    assert m["EPE_mean"] > 0.5 and m["RMSE"] > 0.0 and m["NCC"] < 1.0
    assert registration_metrics(f, g, margin=5) == endpoint_error(f, g, 5)
    assert registration_metrics(registered=a, reference=b, margin=5) == image_agreement(a, b, 5)


def step_image(col, h=40, w=60):
    img = np.zeros((h, w))
    img[:, col:] = 1.0
    return img


def test_edge_alignment_known_shift():
    a, b = step_image(20), step_image(23)
    # a sharp step gives a two-pixel-wide edge of magnitude 1 (columns 19, 20 and 22, 23):
    # distances 3 and 2 each way, so the symmetric Chamfer distance is 2.5
    ea = edge_map(a, threshold=0.5)
    assert ea.sum() == 2 * 40 and ea[:, 19].all() and ea[:, 20].all()
    assert edge_alignment(a, b, threshold=0.5) == pytest.approx(2.5)
    assert edge_alignment(b, a, threshold=0.5) == pytest.approx(2.5)
    assert edge_alignment(a, a, threshold=0.5) == 0.0
    # default: strongest 10 % of pixels, scale-free (contrast does not matter)
    assert edge_alignment(a, 0.2 * b) == pytest.approx(2.5)
    # a larger move of the step: t - 1/2
    assert edge_alignment(a, step_image(30), threshold=0.5) == pytest.approx(9.5)


def test_edge_alignment_grows_with_misalignment():
    a = smooth(64, 80, 1)
    d = [edge_alignment(a, np.roll(a, s, axis=1), margin=8) for s in (0, 1, 2, 4)]
    assert d[0] == 0.0
    assert d[0] < d[1] < d[2] < d[3]


def test_edge_alignment_undefined_without_edges():
    assert math.isnan(edge_alignment(np.zeros((20, 20)), step_image(5, 20, 20)))


def test_errors():
    f = field()
    with pytest.raises(ValueError, match="both flow_pred and flow_gt"):
        registration_metrics(f)
    with pytest.raises(ValueError, match="nothing to score"):
        registration_metrics()
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        endpoint_error(f[0], f[0])
    with pytest.raises(ValueError, match="shape mismatch"):
        endpoint_error(f, f[:, 1:])
    with pytest.raises(ValueError, match="margin 20 leaves nothing"):
        endpoint_error(f, f, margin=20)
    with pytest.raises(ValueError, match="non-negative integer"):
        endpoint_error(f, f, margin=-1)
    with pytest.raises(ValueError, match="NaN"):
        endpoint_error(f * np.nan, f)
    with pytest.raises(ValueError, match="shape mismatch"):
        edge_alignment(np.zeros((10, 10)), np.zeros((10, 11)))
    with pytest.raises(ValueError, match="7x7"):
        image_agreement(np.zeros((10, 10)), np.zeros((10, 10)), margin=2)
