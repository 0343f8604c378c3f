"""``REPORT.md``: every table and figure of a study run, the profile and the git commit."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pandas as pd
import yaml

from ..io import atomic_path
from ..paths import REPO_ROOT

__all__ = ["TABLE_ORDER", "git_commit", "write_report", "run_cost", "cost_lines"]

TABLE_ORDER = ["table1", "table2", "table3", "table4", "table5", "table6", "registration_accuracy",
               "robustness_epe", "ablation_all_metrics", "pdg_high_response", "simulated_sets"]


def git_commit(repo=None) -> str:
    """The current commit, or ``unknown``; ``-dirty`` when tracked files outside
    ``results/`` have changes (the workflow's own outputs, REPORT.md included,
    are being rewritten while it runs and do not count)."""
    try:
        cwd = str(repo or REPO_ROOT)
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"], cwd=cwd,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_cost(root) -> pd.DataFrame:
    """What each job of the run cost, from Snakemake's ``benchmark:`` files under
    ``<root>/benchmarks`` (one TSV per job, written when the job ends): columns
    ``job``, ``wall_s``, ``max_rss_mb`` and ``cpu_s``, the most expensive first.
    Empty when the run wrote no benchmark files (a notebook run by hand).

    Only ``wall_s`` is exact. Snakemake samples a job's processes every 0.5 s
    for its first 15 s, then every 30 s (``snakemake.benchmark``), so
    ``max_rss_mb`` can miss a short peak and ``cpu_s`` stops at the last
    sample: a job that ends between 15 and 45 s shows the CPU time of its
    first 15 s only."""
    rows = []
    for f in sorted(Path(root, "benchmarks").glob("*.tsv")):
        if f.stem == "report":   # the report's own file, from an earlier report
            continue
        b = pd.read_csv(f, sep="\t", na_values=["NA", "-"]).iloc[-1]
        rows.append({"job": f.stem, "wall_s": float(b["s"]), "max_rss_mb": float(b.get("max_rss", float("nan"))),
                     "cpu_s": float(b.get("cpu_time", float("nan"))), "ended": f.stat().st_mtime})
    df = pd.DataFrame(rows, columns=["job", "wall_s", "max_rss_mb", "cpu_s", "ended"])
    return df.sort_values(["wall_s", "job"], ascending=[False, True], ignore_index=True)


def cost_lines(root, now: float | None = None) -> list[str]:
    """The "Cost of this run" section of REPORT.md: one row per job (wall seconds and
    peak resident memory; not Snakemake's sampled CPU time, see :func:`run_cost`)
    and the totals; the wall time from the
    first job's start to now (the report job itself is not in the table: its
    benchmark file is written after it ends)."""
    cost = run_cost(root)
    if cost.empty:
        return []
    now = time.time() if now is None else now
    elapsed = now - float((cost["ended"] - cost["wall_s"]).min())
    lines = ["## Cost of this run", "",
             f"Measured by Snakemake's `benchmark:` directive for every job ({len(cost)} jobs, "
             f"`benchmarks/*.tsv`). The jobs took {cost['wall_s'].sum():.0f} s of wall time in all and ran "
             f"side by side as the cores allowed: {elapsed:.0f} s ({elapsed / 60:.1f} min) from the first job's "
             f"start to this report (when only some jobs reran, the others' last figures are listed and this "
             f"span reaches back to them). Peak memory is the largest resident set of a job's processes, "
             f"as sampled by Snakemake (every 0.5 s for a job's first 15 s, then every 30 s), so a short "
             f"peak can be missed.", "",
             "| job | wall s | max RSS (MB) |", "|---|---|---|"]
    lines += [f"| {r.job} | {r.wall_s:.1f} | {r.max_rss_mb:.0f} |" for r in cost.itertuples()]
    lines += [f"| **all jobs** | **{cost['wall_s'].sum():.1f}** | **{cost['max_rss_mb'].max():.0f}** (largest) |", ""]
    return lines


def write_report(root, profile: dict, title: str = "B-SR study report") -> Path:
    """``<root>/REPORT.md``: every table under ``<root>/tables`` (paper tables
    first, measured rows above reported rows as written by the notebooks),
    every figure under ``<root>/figures``, links to the executed notebooks,
    the profile and the git commit."""
    root = Path(root)
    tables = sorted((root / "tables").glob("*.md"),
                    key=lambda p: (TABLE_ORDER.index(p.stem) if p.stem in TABLE_ORDER else 99, p.stem))
    figures = sorted((root / "figures").glob("*.png"))
    notebooks = sorted((root / "notebooks").rglob("*.html"))
    lines = [f"# {title}: profile `{profile.get('profile')}`", "",
             f"- made: {time.strftime('%Y-%m-%d %H:%M %Z')}",
             f"- git commit: `{git_commit()}`",
             f"- profile: {profile.get('description', '')}",
             f"- seeds: {profile.get('seeds', [0])}"]
    if profile.get("command_line_override"):
        over = yaml.safe_dump(profile["command_line_override"], default_flow_style=True, sort_keys=False,
                              width=10 ** 6).strip()
        lines.append(f"- **run with a command-line override** of the profile "
                     f"(already merged into the profile below): `{over}`")
    lines += ["",
             "Every table lists **measured** rows (this package, this run) above the paper's **reported** rows "
             "(Li et al. 2025), each labelled in its `source` column, with the data each was computed on in "
             "`data` (or the level in `setting`). Reported rows are never measured here; measured rows on "
             "synthetic data calibrate nothing about RoadScene.", "", "## Tables", ""]
    for t in tables:
        lines += [f"### {t.stem}", "", t.read_text().strip(), "",
                  f"(also as [CSV](tables/{t.stem}.csv) and [LaTeX](tables/{t.stem}.tex))", ""]
    lines += ["## Figures", ""]
    lines += [f"### {f.stem}\n\n![{f.stem}](figures/{f.name})\n" for f in figures]
    lines += cost_lines(root)
    lines += ["## Executed notebooks", ""]
    lines += [f"- [{n.relative_to(root)}]({n.relative_to(root)})" for n in notebooks]
    lines += ["", "## Profile", "", "```yaml", yaml.safe_dump(profile, sort_keys=False).strip(), "```", ""]
    out = root / "REPORT.md"
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return out
