"""``bsr train`` (and ``python -m bsr.training``): train B-SR from a config file."""

from __future__ import annotations

import argparse
import sys

from .config import TrainConfig
from .loop import NonFiniteLossError, train

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bsr train", description="Train B-SR (phase 1, then phase 2).")
    ap.add_argument("--config", required=True, help="training config (YAML)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. --set phase1.steps=100 (repeatable)")
    ap.add_argument("--out", default=None, help="output folder (overrides out_dir)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="resume from OUT/last.pt (required to exist), even with a changed config")
    g.add_argument("--fresh", action="store_true", help="start over, removing OUT's log and checkpoints")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.epilog = ("Without --resume or --fresh, a run in OUT is resumed only if it has the same config; "
                 "otherwise the command stops and names the changed keys.")
    args = ap.parse_args(argv)
    overrides = list(args.overrides)
    if args.no_progress:
        overrides.append("progress=false")
    cfg = TrainConfig.from_yaml(args.config, overrides)
    if args.out:
        cfg.out_dir = args.out       # as given (not parsed as YAML)
    resume = True if args.resume else (False if args.fresh else "same")
    try:
        path = train(cfg, resume=resume)
    except NonFiniteLossError as e:
        print(f"bsr train: {e}", file=sys.stderr)
        return 3
    print(path)
    return 0
