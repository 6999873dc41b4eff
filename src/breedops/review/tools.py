"""Find the linters installed in the tools venv (`make setup` builds `.venv-tools`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from breedops.errors import BreedopsError
from breedops.settings import project_root

TOOLS_VENV = ".venv-tools"


class ReviewError(BreedopsError):
    """A review tool is missing, failed, or found something that blocks the change."""


def tool_path(name: str) -> Path:
    """The executable `name` from the tools venv (of the project, else of this checkout), or PATH.

    The checkout's venv counts too because tests point `project_root()` at a sandbox copy.
    """
    checkout = Path(__file__).resolve().parents[3]
    for root in (project_root(), checkout):
        candidate = root / TOOLS_VENV / "bin" / name
        if candidate.is_file():
            return candidate
    found = shutil.which(name)
    if found is None:
        raise ReviewError(f"{name} is not installed: run `make setup` (it installs {TOOLS_VENV})")
    return Path(found)
