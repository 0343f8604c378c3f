"""One accuracy report from several runs of ``released_model.py --sections accuracy`` over parts of the sets.

The accuracy section of a slow model (e.g. ``--refine``, about 14 s per pair) fits a working stretch only
when its sets run in parallel processes, each with its own ``--out``. This reads their
``accuracy_per_pair.csv`` files, keeps each (set, pair, method) row once (every run scores the
unmisaligned floor set), and writes the accuracy, floor and summary tables, the plot and a REPORT.md
under ``--out``, as one run would have.

    .venv/bin/python benchmarks/merge_accuracy.py RUN_DIR [RUN_DIR ...] --out results/released/refine
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import released_model as rm  # noqa: E402  (same folder)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="--out folders of released_model.py runs")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    frames, infos = [], []
    for run in a.runs:
        csv, info = run / "accuracy_per_pair.csv", run / "run_info.json"
        if not csv.is_file() or not info.is_file():
            sys.exit(f"{run}: no accuracy_per_pair.csv and run_info.json (a finished accuracy run?)")
        frames.append(pd.read_csv(csv))
        infos.append(json.loads(info.read_text()))
    keys = [{k: i.get(k) for k in ("sha256", "refine", "git_commit")} for i in infos]
    if any(k != keys[0] for k in keys[1:]):
        sys.exit(f"the runs differ in model or commit: {keys}")
    per = pd.concat(frames, ignore_index=True).drop_duplicates(["set", "pair", "method"], keep="first")
    a.out.mkdir(parents=True, exist_ok=True)
    w = rm.Writer(a.out)
    w.md += ["# Released model benchmark: accuracy, merged from " + ", ".join(str(r) for r in a.runs), "",
             f"- model: {infos[0]['model']}, sha256 {infos[0]['sha256']}",
             f"- refinement: {infos[0].get('refine') or 'off'}",
             f"- git commit: {infos[0]['git_commit']}",
             "- sets per run: " + "; ".join(",".join(i["args"]["sets"]) for i in infos),
             "- section seconds per run: " + "; ".join(f"{i['section_seconds'].get('accuracy', 0):.0f}"
                                                       for i in infos), ""]
    w.csv(per, "accuracy_per_pair.csv")
    acc, floor, summary = rm.summarize_accuracy(per)
    w.table(acc, "accuracy", "Registration accuracy per set", "As in released_model.py's accuracy section.")
    w.table(floor, "floor", "Floor: the unmisaligned pairs")
    w.table(summary, "accuracy_summary", "Summary: lowest mean EPE per set", f"Classical = {', '.join(rm.CLASSICAL)}.")
    w.plot(rm.plot_accuracy, acc, "accuracy_epe.png")
    (a.out / "run_info.json").write_text(json.dumps({"merged_from": [str(r) for r in a.runs], "runs": infos},
                                                    indent=2, default=str) + "\n")
    (a.out / "REPORT.md").write_text("\n".join(w.md) + "\n")
    print(f"wrote {len(w.files) + 2} files under {a.out}")


if __name__ == "__main__":
    main()
