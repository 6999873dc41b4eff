"""Thin wrapper: `python scripts/tune.py ...` is `breedops tune ...`."""

from __future__ import annotations

import sys

from breedops.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
