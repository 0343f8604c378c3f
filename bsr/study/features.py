"""Feature statistics of the registration network (paper Sec. 4.4, 7.4, Figs. 7, 11).

The paper shows "shallow" and "deep" feature maps of the registration
network for PDG grids N in {x, 0, 1, 2, 3, 4} and the percentage of the
image covered by "highly responsive" (red/orange) areas. It does not define
the layers, the normalisation or the threshold; we do (docs/method.md):

* shallow features: the output of the U-Net's first encoder block (full
  resolution); deep features: the output of its coarsest encoder block
  (the bottleneck), upsampled bilinearly to the image size;
* response map: mean over channels of the absolute activation, min-max
  normalised per image to [0, 1];
* high response: normalised response >= ``threshold`` (default 0.6, about
  where the jet colour map turns orange); the statistic is the percentage of
  pixels above it.

:func:`feature_statistics` runs this over one run per grid (notebook 05).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..checkpoint import load_checkpoint
from .sets import checkpoint_paths

__all__ = ["unet_features", "response_map", "high_response_percent", "DEFAULT_THRESHOLD", "grid_order",
           "feature_statistics", "high_response_summary"]

DEFAULT_THRESHOLD = 0.6


def unet_features(model, ir: np.ndarray, vis: np.ndarray) -> dict[str, np.ndarray]:
    """Shallow and deep response maps (H, W) in [0, 1] of a B-SR model's U-Net
    for one pair (numpy (H, W) in [0, 1])."""
    unet = model.unet
    feats: dict[str, torch.Tensor] = {}
    hooks = [unet.enc[0].register_forward_hook(lambda m, i, o: feats.__setitem__("shallow", o)),
             unet.enc[-1].register_forward_hook(lambda m, i, o: feats.__setitem__("deep", o))]
    dev = next(model.parameters()).device
    try:
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(ir, np.float32))[None, None].to(dev)
            v = torch.from_numpy(np.ascontiguousarray(vis, np.float32))[None, None].to(dev)
            model.eval()
            model.register(t, v)
    finally:
        for h in hooks:
            h.remove()
    h, w = ir.shape
    return {k: response_map(f.float(), (h, w)) for k, f in feats.items()}


def response_map(features: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(1, C, h, w) activations -> (H, W) mean |activation|, min-max normalised."""
    r = features.abs().mean(dim=1, keepdim=True)
    r = F.interpolate(r, size=size, mode="bilinear", align_corners=False)[0, 0][:size[0], :size[1]]
    lo, hi = r.min(), r.max()
    return ((r - lo) / (hi - lo).clamp_min(1e-12)).cpu().numpy()


def high_response_percent(response: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Percentage of pixels whose normalised response is >= ``threshold``."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1); got {threshold}")
    return float(100.0 * np.mean(response >= threshold))


def grid_order(grids) -> list[str]:
    """PDG grid names in the order of the figures: ``x`` (no PDG) first, then 0, 1, 2, ..."""
    return sorted(grids, key=lambda n: (n != "x", int(n) if n.isdigit() else -1))


def feature_statistics(pairs, runs: dict[str, str], checkpoint_dir, seeds, threshold: float = DEFAULT_THRESHOLD,
                       n_panels: int = 1) -> tuple[pd.DataFrame, dict]:
    """High-response percentages of every run's registration U-Net on ``pairs``.

    ``runs``: PDG grid N -> run name; each run's checkpoints are
    :func:`bsr.study.sets.checkpoint_paths` ``(checkpoint_dir, run, seeds)``,
    loaded one at a time. Returns ``(stats, maps)``: ``stats`` has one row per
    (N, seed, pair, features) with ``high_response_pct``, grids in
    :func:`grid_order`; ``maps[(N, k)]`` are the response maps
    (:func:`unet_features`) of pair ``k < n_panels`` under the first seed.
    """
    rows, maps = [], {}
    for n in grid_order(runs):
        for seed, ck in zip(seeds, checkpoint_paths(checkpoint_dir, runs[n], seeds)):
            model = load_checkpoint(ck)
            for k, p in enumerate(pairs):
                f = unet_features(model, p.ir, p.vis)
                if seed == seeds[0] and k < n_panels:
                    maps[(n, k)] = f
                for level, resp in f.items():
                    rows.append({"N": n, "seed": seed, "pair": p.name, "features": level,
                                 "high_response_pct": high_response_percent(resp, threshold)})
    return pd.DataFrame(rows), maps


def high_response_summary(stats: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of ``high_response_pct`` per (features, N), over pairs and seeds."""
    return stats.groupby(["features", "N"], sort=False)["high_response_pct"].agg(["mean", "std"]).reset_index()
