"""The ``bsr`` command: ``bsr <command> [args]``.

Each command lives in its own module as ``main(argv) -> int``; this file only
dispatches, so ``bsr --help`` stays fast (no torch import).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "simulate": ("bsr.testsets", "write simulated misaligned test sets (images, fields, manifest)"),
    "datasets": ("bsr.data", "list the datasets found under the data root and check them"),
    "train": ("bsr.train", "train B-SR from a config file (phase 1, then phase 2)"),
    "fuse": ("bsr.fuse", "register and fuse IR/visible pairs with a checkpoint"),
    "evaluate": ("bsr.metrics.cli", "score fused images against their sources"),
}


def _usage() -> str:
    lines = ["usage: bsr <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "`bsr <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from . import __version__
        print(__version__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"bsr: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[cmd][0])
    try:
        return int(module.main(rest) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        # user-facing errors: one clear line, no traceback
        print(f"bsr {cmd}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
