"""No-reference and source-referenced fusion metrics on 8-bit grey levels.

All functions take 2-D arrays on the 0-255 scale (uint8 or float; they are
converted to float64) and return Python floats. The conventions follow the
Python evaluators common in infrared-visible fusion papers (e.g. the
``Evaluator`` shipped with CDDFuse, CVPR 2023), so numbers are comparable
with published tables; where the field has several definitions in use, the
alternatives are available by name (see :data:`DEFINITIONS` and
``docs/metrics.md``, which also lists value ranges and toolbox differences).

Sources of the formulas
-----------------------
* Qabf: C. S. Xydeas and V. Petrovic, "Objective image fusion performance
  measure", Electronics Letters 36(4):308-309, 2000.
* VIF (pixel domain): H. R. Sheikh and A. C. Bovik, "Image information and
  visual quality", IEEE TIP 15(2):430-444, 2006. VIFF here is the sum of
  VIF(ir -> fused) and VIF(vis -> fused), as the common evaluators report it
  (not the fusion-specific VIFF of Y. Han et al., Information Fusion 14(2),
  2013).
* SF: A. M. Eskicioglu and P. S. Fisher, "Image quality measures and their
  performance", IEEE Trans. Commun. 43(12):2959-2965, 1995.
* AG, MG, EI, SD, EN: J. Ma, Y. Ma and C. Li, "Infrared and visible image
  fusion methods and applications: A survey", Information Fusion 45:153-178,
  2019; the VIFB benchmark (X. Zhang, P. Ye and G. Xiao, CVPR Workshops 2020)
  for the MATLAB edge-intensity code.

Implementation
--------------
Everything is float64 and vectorised. The 17x17 (and smaller) Gaussian
windows of VIF are applied separably as products with small banded matrices
(BLAS), the 3x3 Sobel filters by array slicing; element-wise chains run on
row strips or column blocks small enough to stay in cache, and masked
updates are replaced by arithmetic (masked numpy operations are slow). The
values equal a direct ``scipy.signal.convolve2d`` transcription of the usual
code to rounding (``benchmarks/bench_metrics.py`` checks 1e-6 relative and
reports the speed-up).

The code lives in one module per idea: ``common`` (names, definitions, input
checks), ``image_stats`` (SF, AG, MG, EI, SD, EN), ``qabf`` and ``vif``; this
module gathers them and computes all eight at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .common import DEFAULTS, DEFINITIONS, METRICS, _choose, _one_blas_thread, _triple
from .image_stats import (_ei_sobel, _forward_diff_mean, _fused_stats, _mg_sobel, _ring_sum, _sobel_mag,
                          ag, ei, en, mg, sd, sf, sobel)
from .qabf import QABF_CONSTANTS, _qabf_core, qabf, qabf_field_max, qabf_max
from .vif import VIF_MIN_SIZE, _vif_many, vif, viff

__all__ = [
    "METRICS", "DEFINITIONS", "DEFAULTS", "fusion_metrics",
    "qabf", "viff", "vif", "sf", "ag", "mg", "ei", "sd", "en", "sobel",
    "QABF_CONSTANTS", "qabf_max", "qabf_field_max", "VIF_MIN_SIZE",
]


# ----------------------------------------------------------------------------
# all at once

def fusion_metrics(fused, ir, vis, *, metrics: Iterable[str] | None = None,
                   qabf: str | None = None, ag: str | None = None,
                   mg: str | None = None, ei: str | None = None) -> dict[str, float]:
    """The eight fusion metrics of one image triple.

    Parameters
    ----------
    fused, ir, vis : 2-D arrays of equal shape, grey levels on the 0-255 scale
        (the visible image as the Y channel).
    metrics : subset of :data:`METRICS` to compute (default: all).
    qabf, ag, mg, ei : definition names from :data:`DEFINITIONS` (default:
        :data:`DEFAULTS`), e.g. ``mg="forward_diff", ei="sobel_plain"``.

    Returns ``{"Qabf", "VIFF", "SF", "AG", "MG", "EI", "SD", "EN"}`` (in that order,
    restricted to ``metrics``) -> float.
    """
    with _one_blas_thread():
        return _fusion_metrics(fused, ir, vis, metrics, qabf, ag, mg, ei)


def _fusion_metrics(fused, ir, vis, metrics, qabf, ag, mg, ei) -> dict[str, float]:
    f, a, b = _triple(fused, ir, vis)
    wanted = set(METRICS if metrics is None else metrics)
    unknown = sorted(wanted - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    d_q, d_ag, d_mg, d_ei = _choose("Qabf", qabf), _choose("AG", ag), _choose("MG", mg), _choose("EI", ei)
    out: dict[str, float] = {}
    if "Qabf" in wanted:
        # Qabf computes the fused image's Sobel magnitude (zero border) anyway; the
        # Sobel-based MG / EI differ from it only on the one-pixel border ring.
        out["Qabf"], fsum = _qabf_core(f, a, b, d_q)
        if min(f.shape) >= 3:
            fsum -= _ring_sum(f, lambda s: _sobel_mag(s, "constant"))
            n = f.size
            if "MG" in wanted and d_mg == "sobel_mirror":
                out["MG"] = (fsum + _ring_sum(f, lambda s: _sobel_mag(s, "mirror"))) / (math.sqrt(2.0) * n)
            if "EI" in wanted:
                if d_ei == "sobel_normalized":
                    out["EI"] = (fsum + _ring_sum(f, lambda s: _sobel_mag(s, "reflect"))) / (4.0 * n)
                else:
                    out["EI"] = (fsum + _ring_sum(f, lambda s: _sobel_mag(s, "nearest"))) / n
    if "VIFF" in wanted:
        va, vb = _vif_many([a, b], f)
        out["VIFF"] = va + vb
    stats = {"SF", "SD", "EN"} & wanted
    if "AG" in wanted and d_ag == "central_diff":
        stats.add("AG")
    if stats:
        out.update(_fused_stats(f, stats))
    if "AG" in wanted and "AG" not in out:
        out["AG"] = _forward_diff_mean(f)
    if "MG" in wanted and "MG" not in out:
        out["MG"] = _forward_diff_mean(f) if d_mg == "forward_diff" else _mg_sobel(f)
    if "EI" in wanted and "EI" not in out:
        out["EI"] = _ei_sobel(f, plain=d_ei == "sobel_plain")
    return {m: float(out[m]) for m in METRICS if m in wanted}
