"""Registration accuracy: flow endpoint error, image agreement, edge alignment.

Conventions (as ``bsr.warp``): a flow is (2, H, W) or (1, 2, H, W), in
pixels, channel 0 = x (width), channel 1 = y (height). Images are (H, W)
(leading singleton axes are dropped) with intensities in [0, 1]; uint8 input
is scaled by 1/255. numpy arrays and torch tensors are both accepted (torch
is never imported here; tensors are detached and copied to the CPU).

``margin`` pixels are dropped on every side before any statistic, so border
effects of warping (replicated border samples) do not count.

Sources: endpoint error as in the optical-flow benchmarks (S. Baker et al.,
"A database and evaluation methodology for optical flow", IJCV 92, 2011;
the >1 px / >3 px outlier rates as in KITTI, Geiger et al., CVPR 2012);
SSIM of Z. Wang et al., IEEE TIP 13(4), 2004 (scikit-image implementation);
Chamfer distance of H. G. Barrow et al., IJCAI 1977 / G. Borgefors, IEEE
PAMI 10(6), 1988, on Sobel edge maps with an exact Euclidean distance
transform (``scipy.ndimage.distance_transform_edt``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import distance_transform_edt

from .fusion import sobel

__all__ = ["registration_metrics", "endpoint_error", "image_agreement", "edge_alignment", "edge_map"]

EPE_KEYS = ("EPE_mean", "EPE_median", "EPE>1px", "EPE>3px")
IMAGE_KEYS = ("RMSE", "NCC", "SSIM")


def _numpy(x, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "uifb":
        raise ValueError(f"{name} must be numeric; got dtype {a.dtype}")
    return a


def _flow(x, name: str) -> np.ndarray:
    a = _numpy(x, name)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or a.shape[0] != 2:
        raise ValueError(f"{name} must be (2, H, W) or (1, 2, H, W) in pixels; got shape {a.shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _image(x, name: str) -> np.ndarray:
    a = _numpy(x, name)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be a (H, W) grey image (leading size-1 axes allowed); got shape {a.shape}")
    a = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _crop(a: np.ndarray, margin: int, name: str) -> np.ndarray:
    if int(margin) != margin or margin < 0:
        raise ValueError(f"margin must be a non-negative integer; got {margin!r}")
    margin = int(margin)
    h, w = a.shape[-2:]
    if 2 * margin >= min(h, w):
        raise ValueError(f"margin {margin} leaves nothing of {name} ({h}x{w})")
    return a[..., margin:h - margin, margin:w - margin] if margin else a


def endpoint_error(flow_pred, flow_gt, margin: int = 0) -> dict[str, float]:
    """Endpoint error |flow_pred - flow_gt| (Euclidean, pixels) inside the margin.

    Returns ``EPE_mean``, ``EPE_median`` (pixels) and ``EPE>1px``, ``EPE>3px``: the
    fraction (0-1) of pixels whose error exceeds 1 or 3 pixels (strictly).
    """
    p, g = _flow(flow_pred, "flow_pred"), _flow(flow_gt, "flow_gt")
    if p.shape != g.shape:
        raise ValueError(f"shape mismatch: flow_pred {p.shape}, flow_gt {g.shape}")
    d = _crop(p - g, margin, "the flow")
    e = np.hypot(d[0], d[1])
    return {"EPE_mean": float(e.mean()), "EPE_median": float(np.median(e)),
            "EPE>1px": float(np.mean(e > 1.0)), "EPE>3px": float(np.mean(e > 3.0))}


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    if a.min() == a.max() or b.min() == b.max():  # a constant image: no correlation defined
        return 1.0 if np.array_equal(a, b) else 0.0
    da, db = a - a.mean(), b - b.mean()
    return float(np.sum(da * db) / math.sqrt(float(np.sum(da * da)) * float(np.sum(db * db))))


def image_agreement(registered, reference, margin: int = 0) -> dict[str, float]:
    """RMSE (on the [0, 1] scale), NCC (Pearson correlation, [-1, 1]) and SSIM (scikit-image,
    7x7 uniform window, data_range 1) of ``registered`` against ``reference`` inside the
    margin. NCC with a constant image is defined as 1 if the two are identical, else 0."""
    from skimage.metrics import structural_similarity

    r, t = _image(registered, "registered"), _image(reference, "reference")
    if r.shape != t.shape:
        raise ValueError(f"shape mismatch: registered {r.shape}, reference {t.shape}")
    r, t = _crop(r, margin, "the image"), _crop(t, margin, "the image")
    if min(r.shape) < 7:
        raise ValueError(f"SSIM needs at least 7x7 pixels inside the margin; got {r.shape}")
    return {"RMSE": float(np.sqrt(np.mean((r - t) ** 2))), "NCC": _ncc(r, t),
            "SSIM": float(structural_similarity(r, t, data_range=1.0))}


def registration_metrics(flow_pred=None, flow_gt=None, registered=None, reference=None,
                         margin: int = 0) -> dict[str, float]:
    """Registration scores: the endpoint-error keys when both flows are given, and
    ``RMSE``, ``NCC``, ``SSIM`` when the registered IR and the aligned original are given.

    Flows: (2, H, W) or (1, 2, H, W) in pixels (channel 0 = x); images: (H, W) in [0, 1];
    numpy or torch. ``margin`` pixels are excluded on each side.
    """
    if (flow_pred is None) != (flow_gt is None):
        raise ValueError("give both flow_pred and flow_gt, or neither")
    if (registered is None) != (reference is None):
        raise ValueError("give both registered and reference, or neither")
    if flow_pred is None and registered is None:
        raise ValueError("nothing to score: give flows and/or images")
    out: dict[str, float] = {}
    if flow_pred is not None:
        out.update(endpoint_error(flow_pred, flow_gt, margin))
    if registered is not None:
        out.update(image_agreement(registered, reference, margin))
    return out


def edge_map(img, fraction: float = 0.1, threshold: float | None = None) -> np.ndarray:
    """Boolean Sobel edge map.

    The magnitude is that of the normalised Sobel (kernel / 4, 'reflect' border): twice the
    slope on a ramp, and the step height on the two pixels beside a sharp step. With ``threshold=None`` (default) the strongest
    ``fraction`` of the pixels are edges (magnitude >= the (1 - fraction) quantile), which
    makes maps of different modalities comparable whatever their contrast; otherwise
    pixels with magnitude > ``threshold`` (intensities on the [0, 1] scale, so a step of
    0.05 gives a magnitude of 0.05). Zero-magnitude pixels are never edges.
    """
    x = _image(img, "image")
    sx, sy = sobel(x, mode="reflect", normalize=True)
    mag = np.hypot(sx, sy)
    return _threshold(mag, fraction, threshold)


def _threshold(mag: np.ndarray, fraction: float, threshold: float | None) -> np.ndarray:
    if threshold is None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
        t = np.quantile(mag, 1.0 - fraction)
        return (mag >= t) & (mag > 0)
    return mag > threshold


def edge_alignment(a, b, margin: int = 0, fraction: float = 0.1,
                   threshold: float | None = None) -> float:
    """Ground-truth-free alignment error: symmetric Chamfer distance (pixels) between the
    Sobel edge maps of ``a`` and ``b``.

    d = (mean_{p in E_a} dist(p, E_b) + mean_{q in E_b} dist(q, E_a)) / 2, with exact
    Euclidean distances. Edges as in :func:`edge_map`, computed on the full images and
    then cropped by ``margin``. 0 for identical edge maps, growing with misalignment;
    a sharp step (a two-pixel edge band) moved by t >= 1 pixels scores t - 1/2. Nearby
    edges of the other image cap it (a Chamfer distance measures distance to the
    nearest edge, not the motion). NaN if either image has no edge pixel inside the
    margin (e.g. a constant image).
    """
    x, y = _image(a, "a"), _image(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: a {x.shape}, b {y.shape}")
    mags = []
    for img in (x, y):
        sx, sy = sobel(img, mode="reflect", normalize=True)
        mags.append(_crop(np.hypot(sx, sy), margin, "the image"))
    ea, eb = (_threshold(m, fraction, threshold) for m in mags)
    if not ea.any() or not eb.any():
        return float("nan")
    da = distance_transform_edt(~ea)  # distance of every pixel to the nearest edge of a
    db = distance_transform_edt(~eb)
    return float(0.5 * (db[ea].mean() + da[eb].mean()))
