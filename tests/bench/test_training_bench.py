"""Training throughput runs the real entry point and reads its metrics.json."""

from __future__ import annotations

import pytest

from breedops.bench.training import TrainingBenchError, prepare_digits, run_training


def test_run_training_missing_data_raises_with_log_tail(tmp_path):
    with pytest.raises(TrainingBenchError, match=r"resnet18 with 1 process\(es\) failed"):
        run_training(tmp_path / "no-data", tmp_path, "resnet18")


@pytest.mark.slow
def test_run_training_reports_images_per_second(tmp_path):
    data_dir = prepare_digits(tmp_path / "digits")
    result = run_training(data_dir, tmp_path, "resnet18", image_size=16, batch_size=64)
    assert result["images_per_second"] > 0 and result["wall_s"] > 0
    assert result["processes"] == 1 and 0 <= result["test_accuracy"] <= 1
