"""``python -m bsr.training``: errors reported as by ``bsr train`` (one line, no traceback)."""

import sys

from ..cli import main

sys.exit(main(["train", *sys.argv[1:]]))
