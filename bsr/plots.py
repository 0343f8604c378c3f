"""Figures shared by the notebooks. Array helpers are pure numpy (testable);
plotting functions import matplotlib lazily and return the figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from .io import atomic_path

__all__ = ["checkerboard", "edge_overlay", "sobel_edges", "plot_sample_pairs", "save_figure", "inset_box",
           "method_grid", "metric_lines", "high_response_bars", "feature_map_grid"]


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
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def inset_box(shape: tuple[int, int], frac: float = 0.25, where: str = "auto", image=None) -> tuple[int, int, int, int]:
    """A zoom box (y0, x0, h, w) of ``frac`` of the image side. ``where="auto"``
    picks the window with the most Sobel edge energy in ``image`` (so the
    inset shows structure, where misalignment is visible)."""
    h, w = shape
    bh, bw = max(int(h * frac), 8), max(int(w * frac), 8)
    if where == "auto" and image is not None:
        mag = np.hypot(ndimage.sobel(image, 0), ndimage.sobel(image, 1))
        energy = ndimage.uniform_filter(mag, size=(bh, bw), mode="constant")
        cy, cx = np.unravel_index(np.argmax(energy[bh // 2:h - bh // 2, bw // 2:w - bw // 2]),
                                  (h - 2 * (bh // 2), w - 2 * (bw // 2)))
        return int(cy), int(cx), bh, bw
    return (h - bh) // 2, (w - bw) // 2, bh, bw


def method_grid(rows: list[dict], columns: list[str], box=None, inset_scale: float = 2.0):
    """Qualitative grid like the paper's Figs. 3, 4, 6, 9: one row per sample,
    one column per image (e.g. IR, VIS, each method's fusion), the same zoomed
    inset on every panel. ``rows``: dicts with ``title`` and one (H, W) image
    per column name."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n, m = len(rows), len(columns)
    fig, axes = plt.subplots(n, m, figsize=(2.3 * m, 2.3 * n * rows[0][columns[0]].shape[0] / rows[0][columns[0]].shape[1] + 0.4 * n),
                             squeeze=False)
    for r, row in enumerate(rows):
        b = box or inset_box(row[columns[1 if len(columns) > 1 else 0]].shape,
                             image=row[columns[1 if len(columns) > 1 else 0]])
        y0, x0, bh, bw = b
        for c, name in enumerate(columns):
            ax = axes[r, c]
            img = np.clip(row[name], 0, 1)
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.add_patch(Rectangle((x0, y0), bw, bh, fill=False, edgecolor="red", linewidth=1))
            h, w = img.shape
            iw, ih = int(bw * inset_scale), int(bh * inset_scale)
            crop = img[y0:y0 + bh, x0:x0 + bw]
            ax.imshow(crop, cmap="gray", vmin=0, vmax=1, extent=(w - iw, w, h, h - ih))
            ax.add_patch(Rectangle((w - iw, h - ih), iw, ih, fill=False, edgecolor="red", linewidth=1))
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
        axes[r, 0].set_ylabel(row.get("title", ""), fontsize=7)
    fig.tight_layout()
    return fig


def metric_lines(df, x: str, y: str, hue: str, title: str = "", ylabel: str | None = None):
    """One line per ``hue`` value of ``y`` against ``x`` (e.g. EPE against the
    misalignment level, one line per method)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (name, g) in enumerate(df.groupby(hue, sort=False)):
        g = g.sort_values(x)
        # lines that coincide (a method that does not move the image, and the
        # identity) stay visible: each later line is drawn thinner, dashed, on top
        ax.plot(g[x], g[y], marker="o", label=str(name), linewidth=max(3.0 - 0.6 * i, 1.0),
                markersize=max(8 - 1.5 * i, 3), linestyle="-" if i % 2 == 0 else "--", zorder=2 + i)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # below the axes: with long labels or many methods a legend inside hides lines and ticks
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    fig.tight_layout()
    return fig


def high_response_bars(summary, order: list[str], threshold: float):
    """Paper Fig. 11: the percentage of high-response area per PDG grid N, a
    shallow and a deep bar each (``summary``: rows ``features``, ``N``,
    ``mean``, ``std`` as from :func:`bsr.study.features.high_response_summary`)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for i, level in enumerate(["shallow", "deep"]):
        s = summary[summary["features"] == level].set_index("N").reindex(order)
        ax.bar([j + 0.4 * i for j in range(len(order))], s["mean"], width=0.4, yerr=s["std"].fillna(0),
               label=level)
    ax.set_xticks([j + 0.2 for j in range(len(order))], [f"N={n}" for n in order])
    ax.set_ylabel(f"% area with response >= {threshold}")
    ax.legend()
    fig.tight_layout()
    return fig


def feature_map_grid(maps: dict, order: list[str], n_panels: int = 1):
    """Paper Fig. 7: shallow and deep response maps (jet, [0, 1]), one column
    per PDG grid N, two rows per pair (``maps[(N, k)]`` as from
    :func:`bsr.study.features.feature_statistics`)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2 * n_panels, len(order), figsize=(2.2 * len(order), 4.4 * n_panels), squeeze=False)
    for k in range(n_panels):
        for j, n in enumerate(order):
            for i, level in enumerate(["shallow", "deep"]):
                ax = axes[2 * k + i, j]
                ax.imshow(maps[(n, k)][level], cmap="jet", vmin=0, vmax=1)
                ax.set_xticks([]), ax.set_yticks([])
                if k == 0 and i == 0:
                    ax.set_title(f"N={n}")
                if j == 0:
                    ax.set_ylabel(level)
    fig.tight_layout()
    return fig
