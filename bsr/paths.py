"""Repository root, and the layout of a run's folder (named by the Snakefile).

Everything a workflow profile produces lives under ``<results>/<profile>/``::

    data/<set>/          simulated test sets (bsr.datasets.testsets)
    notebooks/           executed notebooks (.ipynb) and their HTML
    figures/             figures (PNG)
    tables/              tables (CSV, Markdown, LaTeX)
    checkpoints/<run>/   trained models and their logs
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
