"""Evaluation metrics: fusion quality, registration accuracy, batch scoring.

* :func:`fusion_metrics` - Qabf, VIFF, SF, AG, MG, EI, SD, EN of one fused image
  (``bsr.metrics.fusion``; definitions in ``docs/metrics.md``);
* :func:`registration_metrics`, :func:`edge_alignment` - flow endpoint error,
  image agreement after registration, ground-truth-free edge alignment
  (``bsr.metrics.registration``);
* :func:`evaluate_pairs`, :func:`summarize` - score folders of images in
  parallel and summarise with bootstrap intervals (``bsr.metrics.evaluate``);
  the ``bsr evaluate`` command is ``bsr.metrics.cli``.

Only numpy/scipy/pandas are imported here; torch is touched only if a torch
tensor is passed in.
"""

from .fusion import DEFAULTS, DEFINITIONS, METRICS, fusion_metrics
from .registration import edge_alignment, endpoint_error, registration_metrics
from .evaluate import evaluate_pairs, summarize

__all__ = [
    "METRICS", "DEFINITIONS", "DEFAULTS", "fusion_metrics",
    "registration_metrics", "endpoint_error", "edge_alignment",
    "evaluate_pairs", "summarize",
]
