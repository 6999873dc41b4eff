"""Thin wrapper: `python scripts/prepare_data.py ...` is `breedops data prepare ...`."""

from __future__ import annotations

import sys

from breedops.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "prepare", *sys.argv[1:]]))
