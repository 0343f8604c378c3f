"""The study's files: test sets, trained runs, and the images the methods write.

A *set* is a folder written by :mod:`bsr.datasets.testsets`
(``<dataset>_<kind><level>``); a *run* is a trained checkpoint
(``<checkpoint_dir>/<run>/seed<k>/final.pt``); a method's images of a set lie
at :func:`image_path`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..datasets import testsets
from ..datasets.readers import load_simulated
from ..io import read_image
from ..pretrained import verified_path

PRETRAINED = "pretrained:"   # a study role played by a shipped model, not by a trained run


def pretrained_name(run: str) -> str | None:
    """The shipped model's name of a study role ``pretrained:<name>``, else None (a trained run)."""
    return run[len(PRETRAINED):] if run.startswith(PRETRAINED) else None

__all__ = ["set_info", "inputs", "load_sets", "checkpoint_paths", "image_path", "qualitative_rows",
           "demo_inputs"]


def set_info(folder) -> dict:
    """The manifest's parameters of a set (dataset, kind, level, ground_truth, n_pairs)."""
    man = json.loads((Path(folder) / "manifest.json").read_text())
    return {k: man.get(k) for k in ("dataset", "kind", "level", "n_pairs")} | {
        "ground_truth": man.get("ground_truth", man.get("kind") != "none"), "name": Path(folder).name}


def inputs(data_dir=None, checkpoint_dir=None) -> tuple[Path, Path, dict]:
    """The study notebooks' inputs: ``(data_dir, checkpoint_dir, info)`` with
    ``info`` = :func:`set_info` of every set under ``data_dir``. When either
    folder is None, a tiny demo set-up (:func:`demo_inputs`) in a new temporary
    folder fills it in, so a notebook runs as it is."""
    if data_dir is None or checkpoint_dir is None:
        demo = demo_inputs(tempfile.mkdtemp(prefix="bsr_demo_"))
        data_dir, checkpoint_dir = data_dir or demo["data_dir"], checkpoint_dir or demo["checkpoint_dir"]
    info = {p.name: set_info(p) for p in sorted(Path(data_dir).iterdir()) if (p / "manifest.json").is_file()}
    return Path(data_dir), Path(checkpoint_dir), info


def load_sets(data_dir, names=None, limit: int | None = None) -> dict[str, list]:
    """Sets under ``data_dir`` by folder name (all when ``names`` is None)."""
    data_dir = Path(data_dir)
    names = names or sorted(p.name for p in data_dir.iterdir() if (p / "manifest.json").is_file())
    out = {}
    for n in names:
        if not (data_dir / n / "manifest.json").is_file():
            raise FileNotFoundError(f"test set {n} not found under {data_dir} (run notebook 01 / bsr simulate)")
        pairs = load_simulated(data_dir / n)
        out[n] = pairs[:limit] if limit else pairs
    return out


def checkpoint_paths(checkpoint_dir, run: str, seeds) -> list[Path]:
    """``<checkpoint_dir>/<run>/seed<k>/final.pt`` for each seed, checked to exist.

    A run named ``pretrained:<name>`` is the shipped model of that name
    (:mod:`bsr.pretrained`, its checksum checked): one file, trained once, so
    one entry whatever the seeds."""
    if pretrained_name(run) is not None:
        return [verified_path(pretrained_name(run))]
    paths = [Path(checkpoint_dir) / run / f"seed{s}" / "final.pt" for s in seeds]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError("checkpoint(s) missing (train them with the workflow's train rule): "
                                + ", ".join(missing))
    return paths


def image_path(root, method: str, set_name: str, name: str, suffix: str = "") -> Path:
    """Where a method's image of one pair is written and read back:
    ``<root>/<method, spaces removed>/<set>/<name><suffix>.png``."""
    return Path(root) / method.replace(" ", "") / set_name / f"{name}{suffix}.png"


def qualitative_rows(sets: dict[str, list], image_dir, methods: list[str], n: int = 2,
                     titles: dict[str, str] | None = None) -> list[dict]:
    """Rows for :func:`bsr.plots.method_grid`: IR, VIS and each method's fused
    image (read back from :func:`image_path` under ``image_dir``; a method
    without the file is left out of the row), for the first ``n`` pairs of
    each set. ``titles``: set name -> the first line of the row title
    (default: the set name); the second line is the pair's name."""
    rows = []
    for set_name, pairs in sets.items():
        for p in pairs[:n]:
            head = set_name if titles is None else titles[set_name]
            row = {"title": f"{head}\n{p.name}", "IR (input)": p.ir, "VIS": p.vis}
            for m in methods:
                f = image_path(image_dir, m, set_name, p.name)
                if f.is_file():
                    row[m] = read_image(f)
            rows.append(row)
    return rows


def demo_inputs(folder, size=(64, 96), steps: int = 3) -> dict:
    """A tiny self-contained set-up for running a study notebook as it is
    (nbval, first look in JupyterLab): two synthetic sets (shift 5 px,
    dilate-crop 5 px) and one tiny checkpoint per needed run, trained for a
    few steps. Returns {"data_dir", "checkpoint_dir"}. Not for numbers."""
    from ..training import TrainConfig, train   # only the demo trains; scoring needs no training code

    folder = Path(folder)
    data_dir, ck_dir = folder / "data", folder / "checkpoints"
    synth = {"n": 2, "size": list(size), "seed": 0}
    for kind in ("shift", "dilate_crop"):
        if not (data_dir / testsets.set_name("synthetic", kind, 5)).is_dir():
            testsets.simulate_dataset("synthetic", kind, [5], data_dir, split="test", synthetic=synth,
                                      progress=False)
    out = ck_dir / "demo" / "seed0"
    if not (out / "final.pt").is_file():
        train(TrainConfig.from_dict({
            "model": {"size": "quick"}, "data": {"name": "synthetic", "synthetic": {**synth, "n": 4}},
            "crop": 32, "batch_size": 2, "phase1": {"steps": steps}, "phase2": {"steps": steps},
            "loss": {"nda_targets": "search", "nda_radius": 3, "nda_window": 5},
            "threads": 1, "progress": False, "out_dir": str(out)}))
    return {"data_dir": data_dir, "checkpoint_dir": ck_dir}
