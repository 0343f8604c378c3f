"""Does a registration method register from content, or has it learned an offset?

A network trained on one fixed misalignment (the paper's 5 px shift, always
to the right) can lower its endpoint error without looking at the images:
outputting the training offset everywhere is enough. The check here flips or
rotates the whole test pair by a D4 op ``T`` before the method sees it, then
maps the predicted field back with the inverse op (``bsr.pdg``, ``kind="flow"``,
vectors rotated with the image) and scores it against the original ground
truth. A method that registers from content scores the same under every op;
one that outputs a constant ``c`` scores ``|c - R c|``-worse under the ops
whose matrix ``R`` moves ``c`` (for a horizontal shift: ``flip_x`` and
``rot180``; ``flip_y`` leaves it unchanged and is a control).

    from bsr.study.diagnostics import transformed_epe
    table = transformed_epe(method, pairs)      # one row per (pair, op)
    table.groupby("op")["EPE_mean"].mean()

Phase correlation passes this check (tested: the same error under all four
ops on the test pairs; TV-L1 was measured at 2.67-2.69 px across them). The
results of the trained checkpoints are in notebook 03's `content_check` table
(:func:`bsr.study.scoring.content_check`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..metrics import registration_metrics
from ..nda import cached_nda_targets
from ..objective import LossConfig
from ..pdg import OP_NAMES, SHAPE_PRESERVING, PDGOps, ProxyDataGenerator

__all__ = ["transformed_epe", "summarize_transformed", "windowed_epe", "WINDOWS", "nda_target_accuracy",
           "field_gain"]


def _field(method, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """The (2, H, W) float32 field a registration method predicts for one pair (through
    its ``register`` shortcut when it has one: a checkpoint's field without its fusion)."""
    out = getattr(method, "register", method)(ir, vis)
    if out.get("flow") is None:
        raise ValueError("the method returns no field; only registration methods can be checked")
    return np.asarray(out["flow"], dtype=np.float32)


def _ops(code: int) -> PDGOps:
    return PDGOps(torch.tensor([[int(code)]], dtype=torch.long), 1)


def transformed_epe(method, pairs, codes=SHAPE_PRESERVING, margin: int = 10) -> pd.DataFrame:
    """EPE of ``method`` on each pair as given and under whole-image D4 ops.

    Args:
        method: ``fn(ir, vis) -> {"flow": (2, H, W), ...}`` (the convention of
            ``bsr.study.methods``; ``ir_registered(p) = ir(p + flow(p))``).
        pairs: pairs with a ground-truth field (``bsr.datasets.readers.load_simulated``).
        codes: D4 op codes (``bsr.pdg.OP_NAMES``); 0 is the pair as given. The
            90-degree ops (1, 3, 5, 7) need square images and are skipped otherwise.
        margin: pixels excluded on each side, as in the registration tables.

    Returns one row per (pair, op) with ``pair``, ``op``, ``code`` and the
    endpoint-error keys of :func:`bsr.metrics.registration_metrics`.
    """
    pdg = ProxyDataGenerator(1)
    rows = []
    for p in pairs:
        if p.flow_gt is None:
            raise ValueError(f"pair {p.name!r} has no ground-truth field; use a simulated set (bsr simulate)")
        h, w = p.ir.shape
        ir = torch.from_numpy(np.ascontiguousarray(p.ir, dtype=np.float32))[None, None]
        vis = torch.from_numpy(np.ascontiguousarray(p.vis, dtype=np.float32))[None, None]
        for code in codes:
            if code not in SHAPE_PRESERVING and h != w:
                continue
            ops = _ops(code)
            ir_t, vis_t = pdg.apply(ir, ops), pdg.apply(vis, ops)
            flow_t = torch.as_tensor(_field(method, ir_t[0, 0].numpy(), vis_t[0, 0].numpy()))[None]
            flow = pdg.inverse(flow_t, ops, kind="flow")[0].numpy()
            scores = registration_metrics(flow, p.flow_gt, margin=margin)
            rows.append({"pair": p.name, "op": OP_NAMES[code], "code": int(code), **scores})
    return pd.DataFrame(rows)


def summarize_transformed(table: pd.DataFrame, key: str = "EPE_mean") -> pd.DataFrame:
    """Mean ``key`` per op, with the ratio to the untransformed pair (``identity``)."""
    s = table.groupby("op", sort=False)[key].mean()
    base = s.get("identity", np.nan)
    return pd.DataFrame({key: s, "ratio_to_as_given": s / base if base > 0 else np.nan})


def field_gain(flow: np.ndarray, flow_gt: np.ndarray, mask: np.ndarray | None = None, margin: int = 10) -> float:
    """How much of the true displacement a field predicts: the least-squares
    slope ``sum(f . g) / sum(g . g)`` of the predicted field ``f`` on the
    ground truth ``g`` over the pixels inside ``margin`` (and ``mask``, (H, W)
    bool, if given). 1 = the full displacement, 0 = none (or unrelated), 0.2 =
    a field shrunk to a fifth. NaN where ``g`` is zero there."""
    f, g = np.asarray(flow, dtype=np.float64), np.asarray(flow_gt, dtype=np.float64)
    if f.shape != g.shape or f.ndim != 3 or f.shape[0] != 2:
        raise ValueError(f"expected two (2, H, W) fields of one shape; got {f.shape} and {g.shape}")
    h, w = g.shape[1:]
    keep = np.zeros((h, w), bool)
    keep[margin:h - margin, margin:w - margin] = True
    if mask is not None:
        keep &= np.asarray(mask, bool)
    den = float((g[:, keep] ** 2).sum())
    return float((f[:, keep] * g[:, keep]).sum() / den) if den > 0 else float("nan")


# windows as (top, bottom, left, right) fractions of the pair
WINDOWS = {"full": (0.0, 1.0, 0.0, 1.0), "left 3/4": (0.0, 1.0, 0.0, 0.75),
           "top-left 3/4": (0.0, 0.75, 0.0, 0.75)}


def windowed_epe(method, pairs, windows: dict | None = None, margin: int = 10) -> pd.DataFrame:
    """EPE of ``method`` run on sub-windows of each pair (the field cut to the window).

    Returns one row per (pair, window) with ``EPE_mean`` and ``identity`` (the
    EPE of a zero field on the same window).
    """
    windows = WINDOWS if windows is None else windows
    rows = []
    for p in pairs:
        if p.flow_gt is None:
            raise ValueError(f"pair {p.name!r} has no ground-truth field; use a simulated set (bsr simulate)")
        h, w = p.ir.shape
        for name, (t, b, l, r) in windows.items():
            ys, xs = slice(int(round(t * h)), int(round(b * h))), slice(int(round(l * w)), int(round(r * w)))
            gt = p.flow_gt[:, ys, xs]
            if min(gt.shape[1:]) <= 2 * margin:
                raise ValueError(f"window {name!r} of pair {p.name!r} is too small for margin {margin}")
            flow = _field(method, np.ascontiguousarray(p.ir[ys, xs]), np.ascontiguousarray(p.vis[ys, xs]))
            rows.append({"pair": p.name, "window": name,
                         "EPE_mean": registration_metrics(flow, gt, margin=margin)["EPE_mean"],
                         "identity": registration_metrics(np.zeros_like(gt), gt, margin=margin)["EPE_mean"]})
    return pd.DataFrame(rows)


def nda_target_accuracy(pairs, margin: int = 10, options: dict | None = None) -> pd.DataFrame:
    """Accuracy of the L_nda targets used in training, against the ground-truth field.

    For each simulated pair (``flow_gt`` known; ``warp(ir, flow_gt)`` aligns the
    IR), the targets of ``phi_p`` are computed exactly as the training data
    computes them (``bsr.nda.cached_nda_targets``: the search of
    :func:`bsr.nda.nda_search` plus the left-right check, cached on disk by
    content, so a re-run of the study does not search again), with the
    misaligned IR as the moving image and, as fixed image, the visible image
    (``reference="visible"``, what training sees) or the aligned IR
    (``reference="ir_aligned"``, a mono-modal control). ``options``: search
    options plus ``lr_check``; default ``LossConfig().precompute_options()``.

    Returns one row per (pair, reference) with ``valid`` (fraction of the
    pixels inside ``margin`` that get a target), ``err_mean`` / ``err_median``
    (px, target minus ground truth, over valid pixels), ``within_1px`` and
    ``within_3px`` (fractions of the valid targets), and ``gt_mean`` (the mean
    ground-truth displacement there: the error of a zero target).
    """
    options = LossConfig().precompute_options() if options is None else dict(options)
    rows = []
    for p in pairs:
        if p.flow_gt is None or p.ir_aligned is None:
            raise ValueError(f"pair {p.name!r} has no ground truth; use a simulated set (bsr simulate)")
        h, w = p.ir.shape
        if min(h, w) <= 2 * margin:
            raise ValueError(f"pair {p.name!r} ({h}x{w}) is too small for margin {margin}")
        ir = torch.from_numpy(np.ascontiguousarray(p.ir, dtype=np.float32))
        gt = torch.from_numpy(np.ascontiguousarray(p.flow_gt, dtype=np.float32))
        inner = (slice(margin, h - margin), slice(margin, w - margin))
        for ref_name, ref in (("visible", p.vis), ("ir_aligned", p.ir_aligned)):
            fixed = torch.from_numpy(np.ascontiguousarray(np.squeeze(ref), dtype=np.float32))
            delta, valid = cached_nda_targets(ir, fixed, options)["nda_p"]
            valid = valid[0][inner]
            err = (delta - gt).norm(dim=0)[inner][valid]
            gt_mag = gt.norm(dim=0)[inner][valid]
            n = int(valid.sum())
            rows.append({
                "pair": p.name, "reference": ref_name, "valid": float(valid.float().mean()),
                "err_mean": float(err.mean()) if n else np.nan,
                "err_median": float(err.median()) if n else np.nan,
                "within_1px": float((err <= 1).float().mean()) if n else np.nan,
                "within_3px": float((err <= 3).float().mean()) if n else np.nan,
                "gt_mean": float(gt_mag.mean()) if n else np.nan,
            })
    return pd.DataFrame(rows)
