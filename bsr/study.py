"""The study's building blocks, called by notebooks 03-07 (which stay thin).

Naming: a *set* is a folder written by :mod:`bsr.testsets`
(``<dataset>_<kind><level>``); a *run* is a trained checkpoint
(``checkpoints/<run>/seed<k>/final.pt``); a *method* is a function of
:mod:`bsr.compare`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import compare, report
from .data import load_simulated

__all__ = ["set_info", "inputs", "load_sets", "checkpoint_paths", "build_methods", "score", "paper_table",
           "content_check", "nda_target_table",
           "registration_summary", "qualitative_rows", "describe_methods", "demo_inputs"]

BSR_LABEL = "B-SR (this package)"


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
    import tempfile

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
    """``<checkpoint_dir>/<run>/seed<k>/final.pt`` for each seed, checked to exist."""
    paths = [Path(checkpoint_dir) / run / f"seed{s}" / "final.pt" for s in seeds]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError("checkpoint(s) missing (train them with the workflow's train rule): "
                                + ", ".join(missing))
    return paths


def build_methods(fusion=(), registration=(), checkpoints: dict | None = None,
                  identity_checkpoints: dict | None = None, device: str = "cpu") -> dict[str, list]:
    """Methods by name, each a list of one method per seed (one for baselines).

    ``fusion``: names of ``bsr.baselines.FUSION``; ``registration``: (reg,
    fusion) pairs; ``checkpoints``: label -> list of checkpoint paths (seeds);
    ``identity_checkpoints``: the same, run with the identity registration.
    """
    methods: dict[str, list] = {}
    for name, fn in compare.baseline_fusion_methods(fusion).items():
        methods[name] = [fn]
    for name, fn in compare.baseline_registration_methods([tuple(c) for c in registration]).items():
        methods[name] = [fn]
    for label, paths in (checkpoints or {}).items():
        methods[label] = [compare.checkpoint_method(p, device) for p in paths]
    for label, paths in (identity_checkpoints or {}).items():
        methods[label] = [compare.checkpoint_method(p, device, registration=False) for p in paths]
    return methods


def score(sets: dict[str, list], methods: dict[str, list], out_dir=None, margin: int = 10,
          progress: bool = True, external_root=None) -> pd.DataFrame:
    """Long scores of every (set, method, seed, image, metric); ``seed`` is the
    index of the method's instance (0 for deterministic baselines).

    With ``external_root``, fused images of other methods found at
    ``<external_root>/<method>/<set>/<name>.png`` are scored too, as
    ``"<method> (external)"`` (a missing or mis-sized file is an error).
    """
    frames = []
    for set_name, pairs in sets.items():
        todo = dict(methods)
        if external_root is not None and Path(external_root).is_dir():
            from .external import list_external_methods

            for ext in list_external_methods(external_root, set_name):
                todo[f"{ext} (external)"] = [compare.external_method(external_root, ext, set_name)]
        ident = compare.identity_scores(pairs, set_name, margin)
        ident["seed"] = 0
        frames.append(ident)
        jobs = [(m, k, fn) for m, inst in todo.items() for k, fn in enumerate(inst)]
        for mname, k, fn in tqdm(jobs, desc=f"{set_name}: {len(pairs)} pairs", disable=not progress, leave=False):
            tag = mname if len(todo[mname]) == 1 else f"{mname}#seed{k}"
            df = compare.score_set(pairs, {tag: fn}, set_name, out_dir if k == 0 else None, margin, False)
            df["method"], df["seed"] = mname, k
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def paper_table(scores: pd.DataFrame, set_name: str | None, table: int, setting: str | None = None,
                metrics=report.METRICS6, note_if_empty: str | None = None) -> pd.DataFrame:
    """Measured rows of one set (mean over images, then mean ± std over seeds)
    above the paper's reported rows of ``table``, each row labelled."""
    measured = None
    if set_name is not None and len(scores):
        s = scores[(scores["set"] == set_name) & (scores["group"] == "fusion")]
        if len(s):
            measured = report.measured_wide(s, list(metrics))
    out = report.side_by_side(measured, table, setting, list(metrics), note_if_empty=note_if_empty)
    rep = report.reported(table)
    rep_data = "; ".join(sorted(set(rep["dataset"] + ", " + rep["setting"]))) if setting is None else \
        f"{rep['dataset'].iloc[0]}, {setting}"
    out.insert(1, "data", [set_name or "-" if src == report.MEASURED_LABEL else rep_data for src in out["source"]])
    return out


def registration_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Registration accuracy (not in the paper): per set and method, mean over
    images (and over seeds) of EPE, SSIM/NCC against the aligned IR, the
    edge distance to the visible image, and Qabf/VIFF of the fused image
    against the aligned IR (where the set has it)."""
    df = scores[scores["group"].isin(["registration", "edges", "fusion_aligned"])]
    per_seed = df.groupby(["set", "method", "seed", "metric"], sort=False)["value"].mean().reset_index()
    wide = per_seed.pivot_table(index=["set", "method"], columns="metric", values="value", aggfunc="mean",
                                sort=False)
    order = ["EPE_mean", "EPE_median", "EPE>1px", "EPE>3px", "SSIM", "NCC", "RMSE", "edge_chamfer_px",
             "Qabf_aligned", "VIFF_aligned"]
    return wide[[c for c in order if c in wide.columns]].reset_index()


def _with_field(pairs: list) -> list:
    """The pairs with a non-zero ground-truth field (what the registration checks need)."""
    return [p for p in pairs if p.flow_gt is not None and np.abs(p.flow_gt).max() > 0]


def content_check(sets: dict[str, list], methods: dict[str, list], margin: int = 10) -> pd.DataFrame:
    """Registration from content, or a learned offset? (``bsr.diagnostics``)

    Each method (all its seeds) re-scored with every test pair flipped or
    rotated as a whole (``identity``, ``rot180``, ``flip_x``, ``flip_y``) and its
    field mapped back. Sets without a ground-truth field, or whose field is
    zero, are skipped. Returns rows (set, method, op, EPE_mean, ratio to the
    pair as given), EPE averaged over pairs and seeds.
    """
    from .diagnostics import summarize_transformed, transformed_epe

    cols = ["set", "method", "op", "EPE_mean", "ratio_to_as_given"]
    frames = []
    for set_name, pairs in sets.items():
        pairs = _with_field(pairs)
        if not pairs:
            continue
        for label, instances in methods.items():
            t = pd.concat([transformed_epe(m, pairs, margin=margin) for m in instances], ignore_index=True)
            s = summarize_transformed(t).rename_axis("op").reset_index()
            frames.append(s.assign(set=set_name, method=label))
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def nda_target_table(sets: dict[str, list], n_pairs: int | None = 8, options: dict | None = None) -> pd.DataFrame:
    """How often are the L_nda training targets right? (``bsr.diagnostics.nda_target_accuracy``)

    For the first ``n_pairs`` pairs of each set with a non-zero ground-truth
    field: the targets of the visible reference (what training sees) and of the
    aligned-IR control, averaged over pairs. ``options`` default to
    ``LossConfig()``'s search options, which every run of the shipped profiles
    uses (none overrides the search); pass a run's ``precompute_options()``
    otherwise. Returns rows (set, reference,
    pairs, valid, err_mean, err_median, within_1px, within_3px, gt_mean).
    """
    from .diagnostics import nda_target_accuracy

    cols = ["set", "reference", "pairs", "valid", "err_mean", "err_median", "within_1px", "within_3px", "gt_mean"]
    frames = []
    for set_name, pairs in sets.items():
        pairs = _with_field(pairs)[:n_pairs]
        if not pairs:
            continue
        t = nda_target_accuracy(pairs, options=options)
        m = t.groupby("reference", sort=False).mean(numeric_only=True).reset_index()
        frames.append(m.assign(set=set_name, pairs=len(pairs)))
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def qualitative_rows(sets: dict[str, list], image_dir, methods: list[str], n: int = 2) -> list[dict]:
    """Rows for :func:`bsr.plots.method_grid`: IR, VIS and each method's fused
    image (read back from ``image_dir/<method>/<set>/<name>.png``)."""
    from .io import read_image

    rows = []
    for set_name, pairs in sets.items():
        for p in pairs[:n]:
            row = {"title": f"{set_name}\n{p.name}", "IR (input)": p.ir, "VIS": p.vis}
            for m in methods:
                f = Path(image_dir) / m.replace(" ", "") / set_name / f"{p.name}.png"
                if f.is_file():
                    row[m] = read_image(f)
            rows.append(row)
    return rows


def describe_methods(methods: dict[str, list]) -> pd.DataFrame:
    """What each compared row is, for the notebooks' method table."""
    rows = []
    for name, inst in methods.items():
        if name.startswith("B-SR") or "B-SR" in name:
            kind = "learned (this package)"
        elif " + " in name:
            kind = "classical registration + fusion (bsr.baselines)"
        else:
            kind = "classical fusion, no registration (bsr.baselines)"
        rows.append({"method": name, "kind": kind, "seeds": len(inst)})
    return pd.DataFrame(rows)


def demo_inputs(folder, size=(64, 96), steps: int = 3) -> dict:
    """A tiny self-contained set-up for running a study notebook as it is
    (nbval, first look in JupyterLab): two synthetic sets (shift 5 px,
    dilate-crop 5 px) and one tiny checkpoint per needed run, trained for a
    few steps. Returns {"data_dir", "checkpoint_dir"}. Not for numbers."""
    from . import testsets
    from .train import TrainConfig, train

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
