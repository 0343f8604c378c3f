"""Run methods on test sets and score them all the same way.

Scoring (:func:`score_set`):

* fusion metrics (``bsr.metrics.fusion_metrics``) on 8-bit values (as the
  field's evaluators read PNG files), of the fused image against the *inputs*
  the method received: the misaligned IR and the visible image. This is what
  the paper's tables measure. It rewards *not* registering (a fused image
  that keeps the misaligned IR agrees with it), so where the set has the
  aligned IR, Qabf and VIFF are also scored against it (``Qabf_aligned``,
  ``VIFF_aligned``, group ``fusion_aligned``);
* registration metrics against ground truth when the set has it
  (``bsr.metrics.registration_metrics``: endpoint error of ``flow`` against
  ``flow_gt``, RMSE/NCC/SSIM of ``registered`` against the aligned IR); a
  method that does not register is scored as the identity field
  (:func:`identity_scores`);
* a ground-truth-free edge alignment (symmetric Chamfer distance of Sobel
  edges, px) between the registered (or input) IR and the visible image, on
  every set.

Besides: :func:`content_check` (registration from content, or a learned
offset?) and :func:`nda_target_table` (how often the L_nda targets are right).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..datasets.readers import Pair
from ..io import to_uint8, write_image
from ..metrics import edge_alignment, fusion_metrics, registration_metrics
from .diagnostics import nda_target_accuracy, summarize_transformed, transformed_epe
from .external import list_external_methods
from .methods import IDENTITY, Method, external_method
from .sets import image_path

__all__ = ["identity_scores", "score_set", "score", "content_check", "nda_target_table"]


def _fusion_scores(fused, ir, vis, metrics=None) -> dict:
    return fusion_metrics(to_uint8(fused), to_uint8(ir), to_uint8(vis), metrics=metrics)


def _registration_scores(p: Pair, flow, registered, margin: int) -> dict:
    out = {}
    if p.flow_gt is not None:
        reg = registration_metrics(flow, p.flow_gt, registered, p.ir_aligned, margin=margin)
        out.update({("registration", k): v for k, v in reg.items()})
    out[("edges", "edge_chamfer_px")] = edge_alignment(registered, p.vis, margin=margin)
    return out


def identity_scores(pairs: list[Pair], set_name: str, margin: int = 10) -> pd.DataFrame:
    """Registration scores of doing nothing (zero field): the bar every
    registration method must clear, and what every fusion-only method gets."""
    rows = []
    for p in pairs:
        zero = np.zeros((2, *p.ir.shape), np.float32)
        for (group, metric), value in _registration_scores(p, zero, p.ir, margin).items():
            rows.append({"set": set_name, "method": IDENTITY, "name": p.name, "group": group,
                         "metric": metric, "value": float(value)})
    return pd.DataFrame(rows)


def score_set(pairs: list[Pair], methods: dict[str, Method], set_name: str, out_dir=None,
              margin: int = 10, progress: bool = True) -> pd.DataFrame:
    """Run every method on every pair; return long scores.

    Columns: ``set``, ``method``, ``name``, ``group`` (``fusion`` /
    ``fusion_aligned`` / ``registration`` / ``edges``), ``metric``, ``value``.
    Registration and edge scores only for methods that return a field (see
    :func:`identity_scores` for the identity). With ``out_dir``, the fused
    (and registered) images are written to
    :func:`bsr.study.sets.image_path` (suffix ``_registered``).
    """
    rows = []
    jobs = [(m, p) for m in methods for p in pairs]
    for mname, p in tqdm(jobs, desc=f"score {set_name}", disable=not progress, leave=False):
        fn = methods[mname]
        out = fn(p.ir, p.vis, p.name) if getattr(fn, "needs_name", False) else fn(p.ir, p.vis)
        fused = np.clip(out["fused"], 0, 1)
        if fused.shape != p.ir.shape:
            raise ValueError(f"{mname} returned a fused image of shape {fused.shape} for {p.name} "
                             f"(expected {p.ir.shape})")
        scores = {("fusion", k): v for k, v in _fusion_scores(fused, p.ir, p.vis).items()}
        if p.ir_aligned is not None:   # the source-based metrics against the *aligned* IR too
            scores.update({("fusion_aligned", f"{k}_aligned"): v for k, v in
                           _fusion_scores(fused, p.ir_aligned, p.vis, ("Qabf", "VIFF")).items()})
        flow = out.get("flow")
        if flow is not None:   # methods that register; the identity is scored once per set
            scores.update(_registration_scores(p, flow, out.get("registered"), margin))
        for (group, metric), value in scores.items():
            rows.append({"set": set_name, "method": mname, "name": p.name, "group": group,
                         "metric": metric, "value": float(value)})
        if out_dir is not None:
            write_image(image_path(out_dir, mname, set_name, p.name), fused)
            if flow is not None:
                write_image(image_path(out_dir, mname, set_name, p.name, "_registered"), out["registered"])
    return pd.DataFrame(rows)


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
            for ext in list_external_methods(external_root, set_name):
                todo[f"{ext} (external)"] = [external_method(external_root, ext, set_name)]
        ident = identity_scores(pairs, set_name, margin)
        ident["seed"] = 0
        frames.append(ident)
        jobs = [(m, k, fn) for m, inst in todo.items() for k, fn in enumerate(inst)]
        for mname, k, fn in tqdm(jobs, desc=f"{set_name}: {len(pairs)} pairs", disable=not progress, leave=False):
            # the first instance's images go under the method's own name (what qualitative_rows reads)
            tag = mname if k == 0 else f"{mname}#seed{k}"
            df = score_set(pairs, {tag: fn}, set_name, out_dir if k == 0 else None, margin, False)
            df["method"], df["seed"] = mname, k
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _with_field(pairs: list) -> list:
    """The pairs with a non-zero ground-truth field (what the registration checks need)."""
    return [p for p in pairs if p.flow_gt is not None and np.abs(p.flow_gt).max() > 0]


def content_check(sets: dict[str, list], methods: dict[str, list], margin: int = 10) -> pd.DataFrame:
    """Registration from content, or a learned offset? (:mod:`bsr.study.diagnostics`)

    Each method (all its seeds) re-scored with every test pair flipped or
    rotated as a whole (``identity``, ``rot180``, ``flip_x``, ``flip_y``) and its
    field mapped back. Sets without a ground-truth field, or whose field is
    zero, are skipped. Returns rows (set, method, op, EPE_mean, ratio to the
    pair as given), EPE averaged over pairs and seeds.
    """
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
    """How often are the L_nda training targets right? (:func:`bsr.study.diagnostics.nda_target_accuracy`)

    For the first ``n_pairs`` pairs of each set with a non-zero ground-truth
    field: the targets of the visible reference (what training sees) and of the
    aligned-IR control, averaged over pairs. ``options`` default to
    ``LossConfig()``'s search options, which every run of the shipped profiles
    uses (none overrides the search); pass a run's ``precompute_options()``
    otherwise. Returns rows (set, reference,
    pairs, valid, err_mean, err_median, within_1px, within_3px, gt_mean).
    """
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
