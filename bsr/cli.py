"""The ``bsr`` command: ``bsr <command> [args]``.

Each command lives in its own module as ``main(argv) -> int``; this file only
dispatches, so ``bsr --help`` stays fast (no torch import).
"""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "simulate": ("bsr.datasets.testsets", "write simulated misaligned test sets (images, fields, manifest)"),
    "datasets": ("bsr.datasets.readers", "list the datasets found under the data root and check them"),
    "train": ("bsr.training.cli", "train B-SR from a config file (phase 1, then phase 2)"),
    "fuse": ("bsr.fuse", "register and fuse IR/visible pairs (the shipped model, a checkpoint or a classical method)"),
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
    # every failure is one line on stderr and a non-zero exit, never a traceback
    # (BSR_TRACEBACK=1 re-raises, for debugging)
    try:
        module = importlib.import_module(COMMANDS[cmd][0])
        return int(module.main(rest) or 0)
    except KeyboardInterrupt:
        print(f"bsr {cmd}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:      # argparse's usage errors and --help: already reported
        raise
    except BaseException as e:  # noqa: BLE001
        if os.environ.get("BSR_TRACEBACK"):
            raise
        print(f"bsr {cmd}: error: {error_line(e)}", file=sys.stderr)
        return 1


def error_line(e: BaseException) -> str:
    """The message of a failure: a file error names its file; a user-facing error
    (ValueError and kin) is its own message; anything else is its type and the
    first line of its text."""
    if isinstance(e, MemoryError):
        return "out of memory (MemoryError)"
    if isinstance(e, OSError) and e.filename is not None:
        files = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else f"{e.filename}"
        return f"{files}: {e.strerror or type(e).__name__}"
    text = str(e).strip()
    if isinstance(e, (ValueError, OSError)) and text:
        return text
    first = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
