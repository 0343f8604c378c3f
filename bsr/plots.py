"""Figures shared by the notebooks. Array helpers are pure numpy (testable);
plotting functions import matplotlib lazily and return the figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = ["checkerboard", "edge_overlay", "sobel_edges", "plot_sample_pairs", "save_figure"]


def checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Interleave two (H, W) images in a ``tiles`` x ``tiles`` checkerboard:
    misalignment shows as broken edges at tile borders."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    h, w = a.shape[:2]
    yy = (np.arange(h) * tiles // h)[:, None]
    xx = (np.arange(w) * tiles // w)[None, :]
    mask = (yy + xx) % 2 == 0
    if a.ndim == 3:
        mask = mask[..., None]
    return np.where(mask, a, b)


def sobel_edges(img: np.ndarray, quantile: float = 0.9) -> np.ndarray:
    """Boolean edge map: Sobel magnitude above its ``quantile``."""
    mag = np.hypot(ndimage.sobel(img, axis=1, mode="reflect"), ndimage.sobel(img, axis=0, mode="reflect"))
    return mag > np.quantile(mag, quantile)


def edge_overlay(ir: np.ndarray, vis: np.ndarray, quantile: float = 0.9) -> np.ndarray:
    """RGB image: the visible image in grey, IR edges in magenta, visible edges
    in green (where both coincide: white). Aligned pairs show white edges."""
    grey = np.clip(vis, 0, 1) * 0.6
    out = np.repeat(grey[..., None], 3, axis=2)
    e_ir, e_vi = sobel_edges(ir, quantile), sobel_edges(vis, quantile)
    out[e_ir] = (1.0, 0.0, 1.0)
    out[e_vi & ~e_ir] = (0.0, 1.0, 0.0)
    out[e_ir & e_vi] = (1.0, 1.0, 1.0)
    return out


def plot_sample_pairs(rows: list[dict], tiles: int = 8):
    """One row per sample: visible | misaligned IR | checkerboard | edge overlay
    | the ground-truth field's magnitude. ``rows``: dicts with ``title``,
    ``ir``, ``vis``, ``flow`` (2, H, W)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 5, figsize=(15, 2.8 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        mag = np.hypot(row["flow"][0], row["flow"][1])
        panels = [(row["vis"], "visible (Y)", "gray"), (row["ir"], "misaligned IR", "gray"),
                  (checkerboard(row["ir"], row["vis"], tiles), "checkerboard IR/VIS", "gray"),
                  (edge_overlay(row["ir"], row["vis"]), "edges: IR magenta, VIS green", None),
                  (mag, f"|flow_gt| (px), max {mag.max():.1f}", "viridis")]
        for c, (img, title, cmap) in enumerate(panels):
            ax = axes[r, c]
            im = ax.imshow(img, cmap=cmap, vmin=None if cmap == "viridis" else 0, vmax=None if cmap == "viridis" else 1)
            ax.set_title(title if r == 0 or c else f"{row['title']}\n{title}", fontsize=9)
            ax.axis("off")
            if cmap == "viridis":
                fig.colorbar(im, ax=ax, fraction=0.04)
        axes[r, 0].set_title(f"{row['title']}\nvisible (Y)", fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Save atomically (temp file + rename)."""
    from .io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path
