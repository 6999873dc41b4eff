"""Thin wrapper: `python scripts/train.py ...` is `breedops train ...`."""

from __future__ import annotations

import sys

from breedops.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
