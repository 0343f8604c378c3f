"""Run methods on test sets and score them all the same way.

A *method* is a function ``(ir, vis) -> dict`` on (H, W) float arrays in
[0, 1] (IR as given to the method, i.e. misaligned; visible Y) returning
``fused`` (H, W) and, for methods that register, ``registered`` (the IR
aligned to the visible image) and ``flow`` (2, H, W) with
``registered = warp(ir, flow)``.

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
  method that does not register is scored as the identity field;
* a ground-truth-free edge alignment (symmetric Chamfer distance of Sobel
  edges, px) between the registered (or input) IR and the visible image, on
  every set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .data import Pair
from .io import to_uint8, write_image

__all__ = ["Method", "baseline_fusion_methods", "baseline_registration_methods", "checkpoint_method",
           "external_method", "score_set", "run_methods", "fusion_table", "registration_table"]

Method = Callable[[np.ndarray, np.ndarray], dict]


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]


def baseline_fusion_methods(names=None) -> dict[str, Method]:
    """Fusion without registration (``bsr.baselines.FUSION``)."""
    from .baselines import FUSION

    names = list(FUSION) if names is None else list(names)

    def make(fn):
        return lambda ir, vis: {"fused": fn(_t(ir), _t(vis))[0, 0].numpy()}

    return {n: make(FUSION[n]) for n in names}


def baseline_registration_methods(combos) -> dict[str, Method]:
    """Registration then fusion: ``combos`` are (registration, fusion) names
    from ``bsr.baselines.REGISTRATION`` / ``FUSION``; the method is named
    ``"<reg> + <fusion>"``."""
    from .baselines import FUSION, REGISTRATION
    from .warp import warp

    def make(reg, fus):
        def run(ir, vis):
            t, v = _t(ir), _t(vis)
            flow = REGISTRATION[reg](t, v)
            registered = warp(t, flow)
            return {"fused": FUSION[fus](registered, v)[0, 0].numpy(),
                    "registered": registered[0, 0].numpy(), "flow": flow[0].numpy()}
        return run

    return {f"{r} + {f}": make(r, f) for r, f in combos}


def checkpoint_method(path, device: str = "cpu", registration: bool = True) -> Method:
    """A trained B-SR checkpoint as a method (``bsr.fuse.fuse_pair``).

    ``registration=False`` replaces the registration by the identity (the
    learned fusion of the same checkpoint on the unregistered pair): a
    reference row that isolates what the registration contributes.
    """
    from .fuse import fuse_pair
    from .model import load_checkpoint

    model = load_checkpoint(path, map_location=device)
    model.eval()

    def run(ir, vis):
        out = fuse_pair(model, ir, vis)
        return {"fused": out["fused_y"], "registered": out["ir_registered"], "flow": out["flow"]}

    def run_identity(ir, vis):
        with torch.no_grad():
            dev = next(model.parameters()).device
            fused, _, _ = model.fuse_aligned(_t(ir).to(dev), _t(vis).to(dev))
        return {"fused": fused[0, 0].clamp(0, 1).cpu().numpy()}

    return run if registration else run_identity


def external_method(root, method: str, dataset: str) -> Method:
    """Fused images made elsewhere, read from ``<root>/<method>/<dataset>/<name>.png``.

    Used through :func:`run_methods`, which passes the pair name; files are
    checked (missing, wrong size) by ``bsr.external.load_external``.
    """
    from .external import load_external

    def run(ir, vis, name):
        got = load_external(root, method, dataset, [name], {name: ir.shape})
        return {"fused": got[name]}

    run.needs_name = True
    return run


def _fusion_scores(fused, ir, vis, metrics=None) -> dict:
    from .metrics import fusion_metrics

    return fusion_metrics(to_uint8(fused), to_uint8(ir), to_uint8(vis), metrics=metrics)


def _registration_scores(p: Pair, flow, registered, margin: int) -> dict:
    from .metrics import edge_alignment, registration_metrics

    out = {}
    if p.flow_gt is not None:
        reg = registration_metrics(flow, p.flow_gt, registered, p.ir_aligned, margin=margin)
        out.update({("registration", k): v for k, v in reg.items()})
    out[("edges", "edge_chamfer_px")] = edge_alignment(registered, p.vis, margin=margin)
    return out


IDENTITY = "identity (no registration)"


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
    ``registration`` / ``edges``), ``metric``, ``value``. Registration and
    edge scores only for methods that return a field (see
    :func:`identity_scores` for the identity). With ``out_dir``, the
    fused (and registered) images are written to
    ``out_dir/<method>/<set>/<name>.png`` (and ``..._registered.png``).
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
            d = Path(out_dir) / mname.replace(" ", "") / set_name
            write_image(d / f"{p.name}.png", fused)
            if flow is not None:
                write_image(d / f"{p.name}_registered.png", out["registered"])
    return pd.DataFrame(rows)


def run_methods(sets: dict[str, list[Pair]], methods: dict[str, Method], out_dir=None, margin: int = 10,
                progress: bool = True) -> pd.DataFrame:
    """:func:`score_set` over several sets, concatenated."""
    frames = [score_set(pairs, methods, name, out_dir, margin, progress) for name, pairs in sets.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def fusion_table(scores: pd.DataFrame, metrics=("Qabf", "VIFF", "SF", "AG", "MG", "EI")) -> pd.DataFrame:
    """Mean over images of each fusion metric, one row per (set, method)."""
    df = scores[(scores["group"] == "fusion") & scores["metric"].isin(metrics)]
    wide = df.pivot_table(index=["set", "method"], columns="metric", values="value", aggfunc="mean", sort=False)
    return wide[[m for m in metrics if m in wide.columns]].reset_index()


def registration_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean over images of each registration metric and the edge distance."""
    df = scores[scores["group"].isin(["registration", "edges"])]
    wide = df.pivot_table(index=["set", "method"], columns="metric", values="value", aggfunc="mean", sort=False)
    order = ["EPE_mean", "EPE_median", "EPE>1px", "EPE>3px", "RMSE", "NCC", "SSIM", "edge_chamfer_px"]
    return wide[[c for c in order if c in wide.columns]].reset_index()
