"""``bsr evaluate``: score a folder of fused images against their sources.

    bsr evaluate --fused DIR --ir DIR --vis DIR [-o scores.csv] [--workers N]

Files are paired by stem (``fused/00012.png`` with ``ir/00012.jpg`` and
``vis/00012.jpg``). Prints the per-metric mean, standard deviation and
bootstrap 95% interval; ``-o`` also writes one row per image as CSV
(atomically: a crash never leaves a partial file).
"""

from __future__ import annotations

import argparse
import os
import sys

from .fusion import DEFAULTS, DEFINITIONS, METRICS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bsr evaluate",
        description="Score fused images (Qabf, VIFF, SF, AG, MG, EI, SD, EN) against their "
                    "infrared and visible sources. Colour images are scored on Y (YCbCr).")
    p.add_argument("--fused", required=True, help="folder of fused images")
    p.add_argument("--ir", required=True, help="folder of infrared images (paired by file stem)")
    p.add_argument("--vis", required=True, help="folder of visible images (paired by file stem)")
    p.add_argument("-o", "--output", help="write per-image scores to this CSV file")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: all cores, %(default)s here)")
    p.add_argument("--metrics", nargs="+", choices=METRICS, metavar="M",
                   help=f"subset of metrics (default: all of {' '.join(METRICS)})")
    for metric in ("Qabf", "AG", "MG", "EI"):
        p.add_argument(f"--{metric.lower()}", choices=sorted(DEFINITIONS[metric]), default=DEFAULTS[metric],
                       help=f"{metric} definition (default: %(default)s; see docs/metrics.md)")
    p.add_argument("--no-quantize", action="store_true",
                   help="keep fractional grey levels instead of rounding to 0..255 integers")
    p.add_argument("--boot", type=int, default=10000, help="bootstrap resamples (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..io import atomic_path
    from .evaluate import evaluate_pairs, summarize

    df = evaluate_pairs(args.fused, args.ir, args.vis, workers=args.workers,
                        progress=not args.no_progress, quantize=not args.no_quantize,
                        metrics=args.metrics, qabf=args.qabf, ag=args.ag, mg=args.mg, ei=args.ei)
    summary = summarize(df, n_boot=args.boot, seed=args.seed)
    print(f"{len(df)} images; mean, std and bootstrap 95% interval of the mean:")
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.output:
        with atomic_path(args.output, suffix=".csv") as tmp:
            df.to_csv(tmp, index=False)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
