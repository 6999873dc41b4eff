"""Fixtures for the training tests: the digits dataset rendered once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from breedops.data.prepare import render_digits

    root = tmp_path_factory.mktemp("training-data") / "digits"
    render_digits(root, image_size=16)
    return root
