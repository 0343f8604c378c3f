"""Shared fixtures. Tests run single-threaded (the CI machine has 2 cores)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """The L_nda target cache of the tests lives in a temporary folder, never in ~/.cache."""
    old = os.environ.get("BSR_CACHE")
    os.environ["BSR_CACHE"] = str(tmp_path_factory.mktemp("bsr_cache"))
    yield
    if old is None:
        os.environ.pop("BSR_CACHE", None)
    else:
        os.environ["BSR_CACHE"] = old

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared" / "datasets"


def shared_data_root() -> Path | None:
    """The real datasets: $BSR_DATA, else ../shared/datasets next to the repo."""
    env = os.environ.get("BSR_DATA")
    root = Path(env) if env else DEFAULT_SHARED
    return root if root.is_dir() else None


@pytest.fixture
def data_root() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip(f"real datasets not found (set BSR_DATA or place them at {DEFAULT_SHARED})")
    return root


def need_dataset(name: str) -> Path:
    root = shared_data_root()
    if root is None or not (root / name / "ir").is_dir():
        pytest.skip(f"dataset {name!r} not found under the data root "
                    f"({root or DEFAULT_SHARED}); set BSR_DATA to a folder holding {name}/ir and {name}/vi")
    return root / name


@pytest.fixture
def smooth_image():
    """A smooth (1, 1, 96, 128) test image in [0, 1] made of Gaussian blobs."""
    rng = np.random.default_rng(0)
    h, w = 96, 128
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w), np.float32)
    for _ in range(12):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        s = rng.uniform(5, 14)
        img += rng.uniform(0.3, 1.0) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
    img /= img.max()
    return torch.from_numpy(img)[None, None]
