"""The one place where run folders are named.

Everything a workflow profile produces lives under ``<results>/<profile>/``::

    data/<set>/          simulated test sets (bsr.testsets)
    notebooks/           executed notebooks (.ipynb) and their HTML
    figures/             figures (PNG)
    tables/              tables (CSV, Markdown, LaTeX)
    checkpoints/<run>/   trained models and their logs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RunPaths:
    results: Path
    profile: str

    @property
    def root(self) -> Path:
        return Path(self.results) / self.profile

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"
