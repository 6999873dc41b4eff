"""`python -m breedops` is the same as the `breedops` command."""

from breedops.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
