"""The dataset is prepared in a thread while the base stage's Terraform runs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from breedops.data.layout import DatasetError
from breedops.pipeline.apply import DatasetPreparation


def test_preparation_runs_once_in_another_thread(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    release = threading.Event()
    calls: list[tuple[str, Path, str]] = []

    def prepare(dataset: str, out_dir: Path) -> Path:
        calls.append((dataset, out_dir, threading.current_thread().name))
        release.wait(10)
        return out_dir

    monkeypatch.setattr("breedops.data.prepare.prepare", prepare)
    preparation = DatasetPreparation("digits", tmp_path / "digits")
    preparation.start()  # returns while prepare still runs
    preparation.start()
    release.set()
    assert preparation.result() == tmp_path / "digits"
    assert preparation.result() == tmp_path / "digits"
    assert len(calls) == 1
    dataset, out_dir, thread = calls[0]
    assert (dataset, out_dir) == ("digits", tmp_path / "digits")
    assert thread != threading.current_thread().name


def test_preparation_error_reaches_the_stage_that_takes_the_result(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def prepare(dataset: str, out_dir: Path) -> Path:
        raise DatasetError(f"unknown dataset {dataset!r}")

    monkeypatch.setattr("breedops.data.prepare.prepare", prepare)
    preparation = DatasetPreparation("nope", tmp_path / "nope")
    preparation.start()
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        preparation.result()


def test_preparation_not_started_runs_when_its_result_is_taken(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A skipped base stage starts nothing; the data stage then prepares by itself."""
    monkeypatch.setattr("breedops.data.prepare.prepare", lambda dataset, out_dir: out_dir)
    assert DatasetPreparation("digits", tmp_path).result() == tmp_path
