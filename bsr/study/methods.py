"""The compared methods and their row labels.

A *method* is a function ``(ir, vis) -> dict`` on (H, W) float arrays in
[0, 1] (IR as given to the method, i.e. misaligned; visible Y) returning
``fused`` (H, W) and, for methods that register, ``registered`` (the IR
aligned to the visible image) and ``flow`` (2, H, W) with
``registered = warp(ir, flow)``. A method with ``needs_name = True`` is
called as ``fn(ir, vis, name)`` (the pair's name; used for images made
elsewhere).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..baselines import FUSION, combination_name, register_then_fuse
from ..checkpoint import load_checkpoint
from ..fuse import fuse_pair, register_pair
from ..warp import warp
from .external import load_external

__all__ = ["Method", "IDENTITY", "BSR_LABEL", "BSR_IDENTITY_LABEL", "BSR_FUSION_ONLY_LABEL",
           "baseline_fusion_methods", "baseline_registration_methods", "checkpoint_method", "external_method",
           "build_methods", "describe_methods"]

Method = Callable[[np.ndarray, np.ndarray], dict]

IDENTITY = "identity (no registration)"
BSR_LABEL = "B-SR (this package)"
BSR_IDENTITY_LABEL = "B-SR, identity registration (this package)"
BSR_FUSION_ONLY_LABEL = "B-SR fusion only, no registration (this package)"


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]


def baseline_fusion_methods(names=None) -> dict[str, Method]:
    """Fusion without registration (``bsr.baselines.FUSION``)."""
    names = list(FUSION) if names is None else list(names)

    def make(fn):
        return lambda ir, vis: {"fused": fn(_t(ir), _t(vis))[0, 0].numpy()}

    return {n: make(FUSION[n]) for n in names}


def baseline_registration_methods(combos) -> dict[str, Method]:
    """Registration then fusion (``bsr.baselines.register_then_fuse``):
    ``combos`` are (registration, fusion) names from
    ``bsr.baselines.REGISTRATION`` / ``FUSION``; the method is named
    ``"<reg> + <fusion>"``."""
    def make(reg, fus):
        def run(ir, vis):
            t, v = _t(ir), _t(vis)
            fused, flow = register_then_fuse(reg, fus, t, v)
            return {"fused": fused[0, 0].numpy(), "registered": warp(t, flow)[0, 0].numpy(),
                    "flow": flow[0].numpy()}
        return run

    return {combination_name(r, f): make(r, f) for r, f in combos}


def checkpoint_method(path, device: str = "cpu", registration: bool = True) -> Method:
    """A trained B-SR checkpoint as a method (``bsr.fuse.fuse_pair``).

    ``registration=False`` replaces the registration by the identity (the
    learned fusion of the same checkpoint on the unregistered pair): a
    reference row that isolates what the registration contributes.
    """
    model = load_checkpoint(path, map_location=device)
    model.eval()

    def run(ir, vis):
        out = fuse_pair(model, ir, vis)
        return {"fused": out["fused_y"], "registered": out["ir_registered"], "flow": out["flow"]}

    run.register = lambda ir, vis: {"flow": register_pair(model, ir, vis)}   # the field alone

    def run_identity(ir, vis):
        with torch.no_grad():
            dev = next(model.parameters()).device
            fused, _, _ = model.fuse_aligned(_t(ir).to(dev), _t(vis).to(dev))
        return {"fused": fused[0, 0].clamp(0, 1).cpu().numpy()}

    return run if registration else run_identity


def external_method(root, method: str, dataset: str) -> Method:
    """Fused images made elsewhere, read from ``<root>/<method>/<dataset>/<name>.png``.

    Called with the pair name (``needs_name``); files are checked (missing,
    wrong size) by :func:`bsr.study.external.load_external`.
    """
    def run(ir, vis, name):
        got = load_external(root, method, dataset, [name], {name: ir.shape})
        return {"fused": got[name]}

    run.needs_name = True
    return run


def build_methods(fusion=(), registration=(), checkpoints: dict | None = None,
                  identity_checkpoints: dict | None = None, device: str = "cpu") -> dict[str, list]:
    """Methods by name, each a list of one method per seed (one for baselines).

    ``fusion``: names of ``bsr.baselines.FUSION``; ``registration``: (reg,
    fusion) pairs; ``checkpoints``: label -> list of checkpoint paths (seeds);
    ``identity_checkpoints``: the same, run with the identity registration.
    """
    methods: dict[str, list] = {}
    for name, fn in baseline_fusion_methods(fusion).items():
        methods[name] = [fn]
    for name, fn in baseline_registration_methods([tuple(c) for c in registration]).items():
        methods[name] = [fn]
    for label, paths in (checkpoints or {}).items():
        methods[label] = [checkpoint_method(p, device) for p in paths]
    for label, paths in (identity_checkpoints or {}).items():
        methods[label] = [checkpoint_method(p, device, registration=False) for p in paths]
    return methods


def describe_methods(methods: dict[str, list]) -> pd.DataFrame:
    """What each compared row is, for the notebooks' method table."""
    rows = []
    for name, inst in methods.items():
        if "B-SR" in name:
            kind = "learned (this package)"
        elif " + " in name:
            kind = "classical registration + fusion (bsr.baselines)"
        else:
            kind = "classical fusion, no registration (bsr.baselines)"
        rows.append({"method": name, "kind": kind, "seeds": len(inst)})
    return pd.DataFrame(rows)
