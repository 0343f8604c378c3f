"""Tables: the paper's reported values, measured values beside them, and
writing tables as CSV, Markdown and LaTeX.

Reported numbers (Li et al. 2025, Tables 1-6) live in
``bsr/data_files/reported.csv`` and are only ever shown in rows whose
``source`` says ``reported``; measured rows say ``measured``. No function here
puts one in place of the other.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path

__all__ = ["REPORTED_LABEL", "MEASURED_LABEL", "METRICS6", "reported", "reported_wide", "format_mean_std",
           "measured_wide", "side_by_side", "paper_table", "registration_summary", "write_table"]

REPORTED_LABEL = "reported (Li et al. 2025)"
MEASURED_LABEL = "measured (this package)"
METRICS6 = ["Qabf", "VIFF", "SF", "AG", "MG", "EI"]


def reported(table: int | None = None) -> pd.DataFrame:
    """The paper's numbers, long format: table, dataset, setting, method, metric, value."""
    with resources.files("bsr").joinpath("data_files/reported.csv").open() as f:
        df = pd.read_csv(f, comment="#")
    return df if table is None else df[df["table"] == table].reset_index(drop=True)


def reported_wide(table: int, setting: str | None = None) -> pd.DataFrame:
    """One row per (setting, method), one column per metric, paper order kept."""
    df = reported(table)
    if setting is not None:
        df = df[df["setting"] == setting]
    order = list(dict.fromkeys(df["metric"]))
    methods = list(dict.fromkeys(df["method"]))
    wide = df.pivot_table(index=["setting", "method"], columns="metric", values="value", sort=False)
    wide = wide[order].reset_index()
    settings = list(dict.fromkeys(df["setting"]))
    for col, cats in (("setting", settings), ("method", methods)):
        wide[col] = pd.Categorical(wide[col], cats, ordered=True)
    wide = wide.sort_values(["setting", "method"], kind="stable")
    for col in ("setting", "method"):
        wide[col] = wide[col].astype(str)
    return wide.reset_index(drop=True)


def format_mean_std(mean: float, std: float | None = None, digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "n/a"
    if std is None or (isinstance(std, float) and np.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def measured_wide(long: pd.DataFrame, metrics: list[str], digits: int = 2,
                  by: tuple[str, ...] = ("method",)) -> pd.DataFrame:
    """Long measured values (columns ``by`` + ``metric`` + ``value``, optional
    ``seed``) -> one formatted row per ``by``: the mean over images, then mean
    ± std over seeds when several seeds are present."""
    by = list(by)
    df = long[long["metric"].isin(metrics)]
    if "seed" in df.columns and df["seed"].nunique() > 1:
        per_seed = df.groupby(by + ["metric", "seed"], sort=False)["value"].mean().reset_index()
        agg = per_seed.groupby(by + ["metric"], sort=False)["value"].agg(["mean", "std"]).reset_index()
    else:
        agg = df.groupby(by + ["metric"], sort=False)["value"].agg(["mean"]).reset_index()
        agg["std"] = np.nan
    agg["cell"] = [format_mean_std(m, s, digits) for m, s in zip(agg["mean"], agg["std"])]
    wide = agg.pivot_table(index=by, columns="metric", values="cell", aggfunc="first", sort=False)
    return wide[[m for m in metrics if m in wide.columns]].reset_index()


def side_by_side(measured: pd.DataFrame | None, table: int, setting: str | None = None,
                 metrics: list[str] | None = None, note_if_empty: str | None = None) -> pd.DataFrame:
    """Measured rows, then the paper's rows, each labelled in a ``source`` column.

    ``measured``: a wide frame (``method`` + metric columns, e.g. from
    :func:`measured_wide`), or None when nothing could be measured (then one row
    says so, with ``note_if_empty`` as its method text).
    """
    rep = reported_wide(table, setting)
    metrics = metrics or [c for c in rep.columns if c not in ("setting", "method")]
    # a table reported at several settings (Table 6: one block per level) keeps a setting column
    with_setting = rep["setting"].nunique() > 1 or (measured is not None and "setting" in measured.columns)
    key = (["setting"] if with_setting else []) + ["method"]
    rep_rows = rep[key + metrics].copy()
    for m in metrics:
        rep_rows[m] = [format_mean_std(v) for v in rep_rows[m]]
    rep_rows.insert(0, "source", REPORTED_LABEL)
    if measured is None or len(measured) == 0:
        meas = pd.DataFrame([{"source": MEASURED_LABEL, **({"setting": "-"} if with_setting else {}),
                              "method": note_if_empty or "no measured row (data not available)",
                              **{m: "n/a" for m in metrics}}])
    else:
        meas = measured[[c for c in key if c in measured.columns] +
                        [m for m in metrics if m in measured.columns]].copy()
        if with_setting and "setting" not in meas.columns:
            meas.insert(0, "setting", "-")
        for m in metrics:
            if m not in meas.columns:
                meas[m] = "n/a"
        meas.insert(0, "source", MEASURED_LABEL)
    return pd.concat([meas, rep_rows], ignore_index=True)


def paper_table(scores: pd.DataFrame, set_name: str | None, table: int, setting: str | None = None,
                metrics=METRICS6, note_if_empty: str | None = None) -> pd.DataFrame:
    """Measured rows of one set (mean over images, then mean ± std over seeds)
    above the paper's reported rows of ``table``, each row labelled."""
    measured = None
    if set_name is not None and len(scores):
        s = scores[(scores["set"] == set_name) & (scores["group"] == "fusion")]
        if len(s):
            measured = measured_wide(s, list(metrics))
    out = side_by_side(measured, table, setting, list(metrics), note_if_empty=note_if_empty)
    rep = reported(table)
    rep_data = "; ".join(sorted(set(rep["dataset"] + ", " + rep["setting"]))) if setting is None else \
        f"{rep['dataset'].iloc[0]}, {setting}"
    out.insert(1, "data", [set_name or "-" if src == MEASURED_LABEL else rep_data for src in out["source"]])
    return out


def registration_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Registration accuracy (not in the paper): per set and method, mean over
    images (and over seeds) of EPE, SSIM/NCC against the aligned IR, the
    edge distance to the visible image, and Qabf/VIFF of the fused image
    against the aligned IR (where the set has it)."""
    df = scores[scores["group"].isin(["registration", "edges", "fusion_aligned"])]
    per_seed = df.groupby(["set", "method", "seed", "metric"], sort=False)["value"].mean().reset_index()
    wide = per_seed.pivot_table(index=["set", "method"], columns="metric", values="value", aggfunc="mean",
                                sort=False)
    order = ["EPE_mean", "EPE_median", "EPE>1px", "EPE>3px", "SSIM", "NCC", "RMSE", "edge_chamfer_px",
             "Qabf_aligned", "VIFF_aligned"]
    return wide[[c for c in order if c in wide.columns]].reset_index()


def write_table(df: pd.DataFrame, stem, caption: str = "") -> list[Path]:
    """Write ``stem``.csv, .md and .tex atomically; return the paths."""
    stem = Path(stem)
    paths = []
    with atomic_path(stem.with_suffix(".csv")) as tmp:
        df.to_csv(tmp, index=False)
    paths.append(stem.with_suffix(".csv"))
    md = (f"{caption}\n\n" if caption else "") + _markdown(df) + "\n"
    with atomic_path(stem.with_suffix(".md")) as tmp:
        tmp.write_text(md, encoding="utf-8")
    paths.append(stem.with_suffix(".md"))
    with atomic_path(stem.with_suffix(".tex")) as tmp:
        tmp.write_text(_latex(df, caption), encoding="utf-8")
    paths.append(stem.with_suffix(".tex"))
    return paths


def _markdown(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(v) -> str:
    if isinstance(v, float):
        return "n/a" if np.isnan(v) else f"{v:.4g}"
    return str(v).replace("|", "\\|")


def _latex(df: pd.DataFrame, caption: str) -> str:
    esc = lambda s: (str(s).replace("\\", "\\textbackslash{}").replace("&", "\\&").replace("%", "\\%")
                     .replace("_", "\\_").replace("#", "\\#").replace("±", "$\\pm$"))
    cols = list(df.columns)
    out = ["\\begin{table}[t]", "\\centering"]
    if caption:
        out.append(f"\\caption{{{esc(caption)}}}")
    out += [f"\\begin{{tabular}}{{{'l' * 2 + 'r' * (len(cols) - 2)}}}", "\\hline",
            " & ".join(esc(c) for c in cols) + " \\\\", "\\hline"]
    out += [" & ".join(esc(_cell(v)) for v in row) + " \\\\" for row in df.itertuples(index=False)]
    out += ["\\hline", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)
