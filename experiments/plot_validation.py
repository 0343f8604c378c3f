"""Plot the validation EPE of the U-Net runs recorded in experiments/records/ (NOTES.md, sections 1, 4 and 12).

    python experiments/plot_validation.py   # -> experiments/records/validation_epe.png
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402

from bsr.plots_train import plot_validation  # noqa: E402

HERE = Path(__file__).parent / "records"
fig = plot_validation({
    "1. wide family, from scratch (validation: wide family)": pd.read_csv(HERE / "roadscene_wide_val.csv"),
    "4. refinement of residuals (validation: residual family)": pd.read_csv(HERE / "roadscene_refine_val.csv"),
    "12. after the global stage (validation: benchmark sets)": pd.read_csv(HERE / "roadscene_local_val.csv"),
})
fig.savefig(HERE / "validation_epe.png", dpi=110)
print(HERE / "validation_epe.png")
