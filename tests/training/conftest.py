"""Fixtures for the training tests: the digits dataset rendered once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from breedops.data.prepare import render_digits

    root = tmp_path_factory.mktemp("training-data") / "digits"
    render_digits(root, image_size=16)
    return root


@pytest.fixture(scope="session")
def tiny_digits_dir(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few digits per class (80 train images): a checkpointed run takes seconds."""
    root = tmp_path_factory.mktemp("training-data") / "tiny-digits"
    for split, per_class in (("train", 8), ("valid", 2), ("test", 2)):
        for folder in sorted((digits_dir / split).iterdir()):
            (root / split / folder.name).mkdir(parents=True)
            for image in sorted(folder.iterdir())[:per_class]:
                shutil.copy(image, root / split / folder.name / image.name)
    return root
