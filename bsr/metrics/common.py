"""What the fusion metrics share: their names and named definitions, the checks
on input grey images, and single-threaded BLAS (``bsr.metrics.fusion`` documents
the metrics themselves)."""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
from threadpoolctl import ThreadpoolController

METRICS = ("Qabf", "VIFF", "SF", "AG", "MG", "EI", "SD", "EN")

# Named definitions. Defaults first; every entry is documented in docs/metrics.md.
DEFINITIONS: dict[str, dict[str, str]] = {
    "Qabf": {
        "field": "Xydeas-Petrovic with Sobel gradients, zero-padded 'same' borders, "
                 "and the field code's tie rule G = g_F where g_S == g_F (CDDFuse/VIFB port)",
        "strict": "as 'field' but G = 1 where g_S == g_F (the ratio of equal strengths)",
    },
    "AG": {
        "central_diff": "mean sqrt((Gx^2+Gy^2)/2), central differences, one-sided at borders "
                        "(numpy.gradient; CDDFuse)",
        "forward_diff": "sum over the (M-1)x(N-1) grid of sqrt((dx^2+dy^2)/2) with backward "
                        "first differences, divided by (M-1)(N-1) (survey form)",
    },
    "MG": {
        "sobel_mirror": "mean sqrt((Sx^2+Sy^2)/2), unnormalised Sobel, border BORDER_REFLECT_101 "
                        "(OpenCV default; scipy 'mirror')",
        "forward_diff": "same formula as AG 'forward_diff' (survey form of the mean gradient)",
    },
    "EI": {
        "sobel_normalized": "mean sqrt(Sx^2+Sy^2), Sobel kernel / 4 (skimage sobel_h/sobel_v), "
                            "border 'reflect'",
        "sobel_plain": "mean sqrt(Sx^2+Sy^2), unnormalised Sobel, replicate border "
                       "(VIFB / MATLAB imfilter 'replicate'; scipy 'nearest')",
    },
}
DEFAULTS = {"Qabf": "field", "AG": "central_diff", "MG": "sobel_mirror", "EI": "sobel_normalized"}


# ----------------------------------------------------------------------------
# input handling

def _gray(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D grey image on the 0-255 scale; got shape {a.shape}")
    if a.dtype.kind not in "uifb":
        raise ValueError(f"{name} must be numeric; got dtype {a.dtype}")
    kind = a.dtype.kind
    a = a.astype(np.float64, copy=False)
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    # a sum is non-finite if any element is (or, rarely, on overflow: then check exactly)
    if kind == "f" and not math.isfinite(float(a.sum())) and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _triple(fused, ir, vis):
    f, a, b = _gray(fused, "fused"), _gray(ir, "ir"), _gray(vis, "vis")
    if not (f.shape == a.shape == b.shape):
        raise ValueError(f"shape mismatch: fused {f.shape}, ir {a.shape}, vis {b.shape}")
    return f, a, b


def _choose(metric: str, name: str | None) -> str:
    name = DEFAULTS[metric] if name is None else name
    if name not in DEFINITIONS[metric]:
        raise ValueError(f"unknown {metric} definition {name!r}; choose from {sorted(DEFINITIONS[metric])}")
    return name


# ----------------------------------------------------------------------------
# BLAS threads

_BLAS: ThreadpoolController | None = None


@contextmanager
def _one_blas_thread():
    """Run BLAS single-threaded inside the block. The banded products here are small;
    OpenBLAS' own threads only add overhead, and oversubscribe the cores when
    evaluate_pairs already runs one process per core (4x slower wall time measured).
    threadpoolctl finds the BLAS libraries once (they are loaded with numpy)."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    with _BLAS.limit(limits=1, user_api="blas"):
        yield
