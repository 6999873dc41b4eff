"""The benchmark's runtime comparison: same weights, same threads, agreement with eager."""

from __future__ import annotations

import sys

import pytest

from breedops.bench.runtimes import measure_runtimes


def test_measure_runtimes_times_each_runtime_and_checks_it_against_eager() -> None:
    results = measure_runtimes(["resnet18"], threads=1, image_size=32, num_classes=5, repeats=3)
    assert [r.runtime for r in results] == ["eager", "onnxruntime", "openvino"]
    for result in results:
        assert result.available and result.threads == 1 and result.image_size == 32
        assert 0 < result.min_ms <= result.p50_ms <= result.p90_ms
        assert result.same_top1 and result.passes_gate, result
        assert result.max_probability_delta <= 1e-4
    assert results[0].speedup == 1.0 and results[0].max_logit_delta == 0.0


def test_measure_runtimes_reports_an_unimportable_runtime(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    results = measure_runtimes(["resnet18"], threads=1, image_size=32, num_classes=5, repeats=1,
                               runtimes=("eager", "openvino"))
    (openvino,) = [r for r in results if r.runtime == "openvino"]
    assert not openvino.available and openvino.p50_ms is None
    assert openvino.reason.startswith("openvino does not import")


def test_measure_runtimes_rejects_an_unknown_runtime() -> None:
    with pytest.raises(ValueError, match="runtimes must include eager and come from eager, "
                                         "onnxruntime, openvino; got eager, tvm"):
        measure_runtimes(["resnet18"], runtimes=("eager", "tvm"))
