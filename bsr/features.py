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
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["unet_features", "response_map", "high_response_percent", "DEFAULT_THRESHOLD"]

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
