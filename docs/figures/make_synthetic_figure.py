"""Regenerate docs/figures/synthetic_pairs.png: generated pairs beside a
RoadScene pair (when the data root is available).

    python docs/figures/make_synthetic_figure.py
"""

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bsr.datasets.synthetic import generate_pair

HERE = Path(__file__).parent
root = os.environ.get("BSR_DATA") or str(HERE.parents[2] / "shared" / "datasets")
pairs = [generate_pair(s, (256, 320)) for s in (0, 3, 7)]
real = None
if (Path(root) / "roadscene").is_dir():
    from bsr.io import read_image

    real = [read_image(Path(root) / "roadscene" / d / "FLIR_00006.jpg") for d in ("vi", "ir")]
cols = len(pairs) + (real is not None)
fig, ax = plt.subplots(2, cols, figsize=(3.4 * cols, 5.6))
for i, p in enumerate(pairs):
    ax[0, i].imshow(p.vis)
    ax[1, i].imshow(p.ir, cmap="gray", vmin=0, vmax=1)
    ax[0, i].set_title(f"synthetic seed {p.name[-2:]}: visible", fontsize=9)
    ax[1, i].set_title("synthetic: infrared", fontsize=9)
if real is not None:
    ax[0, -1].imshow(real[0])
    ax[1, -1].imshow(real[1], cmap="gray")
    ax[0, -1].set_title("RoadScene FLIR_00006: visible", fontsize=9)
    ax[1, -1].set_title("RoadScene FLIR_00006: infrared", fontsize=9)
for a in ax.flat:
    a.axis("off")
fig.tight_layout()
fig.savefig(HERE / "synthetic_pairs.png", dpi=80)
print(HERE / "synthetic_pairs.png")
