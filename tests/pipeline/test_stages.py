"""The stage runner behind `make apply`: skip unchanged, re-run changed, resume after failure."""

from __future__ import annotations

import io

import pytest

from breedops.errors import BreedopsError
from breedops.pipeline.stages import Stage, StageFailed, StageLedger, run_stages


def make_stages(calls: list[str], inputs: dict[str, int], fail: set[str] = frozenset()):
    def runner(name: str):
        def run(outputs):
            calls.append(name)
            if name in fail:
                raise BreedopsError(f"{name} broke")
            return {name: inputs[name], "seen": sorted(outputs)}

        return run

    return [
        Stage(n, n.title(), lambda _o, n=n: inputs[n], runner(n), hint=f"fix {n}")
        for n in ("base", "data", "train")
    ]


def test_run_stages_skips_unchanged_on_second_run(tmp_path):
    calls: list[str] = []
    inputs = {"base": 1, "data": 1, "train": 1}
    ledger = StageLedger(tmp_path / "ledger.json")
    run_stages(make_stages(calls, inputs), ledger, out=io.StringIO())
    assert calls == ["base", "data", "train"]

    calls.clear()
    outputs, timeline = run_stages(
        make_stages(calls, inputs), StageLedger(tmp_path / "ledger.json"), out=io.StringIO()
    )
    assert calls == []
    assert [t[1] for t in timeline] == ["skipped"] * 3
    assert outputs["train"] == 1  # outputs of skipped stages are restored from the ledger


def test_run_stages_reruns_changed_stage_and_everything_after(tmp_path):
    calls: list[str] = []
    inputs = {"base": 1, "data": 1, "train": 1}
    run_stages(make_stages(calls, inputs), StageLedger(tmp_path / "l.json"), out=io.StringIO())
    calls.clear()
    inputs["data"] = 2
    run_stages(make_stages(calls, inputs), StageLedger(tmp_path / "l.json"), out=io.StringIO())
    assert calls == ["data", "train"]


def test_run_stages_resumes_at_failed_stage(tmp_path):
    calls: list[str] = []
    inputs = {"base": 1, "data": 1, "train": 1}
    out = io.StringIO()
    with pytest.raises(StageFailed) as err:
        run_stages(make_stages(calls, inputs, fail={"data"}), StageLedger(tmp_path / "l.json"),
                   out=out)
    assert "stage 'data' failed: data broke" in str(err.value)
    assert "what to do: fix data" in str(err.value)

    calls.clear()
    run_stages(make_stages(calls, inputs), StageLedger(tmp_path / "l.json"), out=io.StringIO())
    assert calls == ["data", "train"]


def test_ledger_ignores_corrupt_file(tmp_path):
    path = tmp_path / "l.json"
    path.write_text("{not json")
    calls: list[str] = []
    run_stages(make_stages(calls, {"base": 1, "data": 1, "train": 1}), StageLedger(path),
               out=io.StringIO())
    assert calls == ["base", "data", "train"]


def test_run_stages_reruns_when_stage_result_no_longer_exists(tmp_path):
    calls: list[str] = []
    inputs = {"base": 1, "data": 1, "train": 1}
    exists = {"value": True}

    def stages():
        built = make_stages(calls, inputs)
        built[0] = Stage("base", "Base", lambda _o: 1, built[0].run, hint="",
                         still_valid=lambda _outputs: exists["value"])
        return built

    run_stages(stages(), StageLedger(tmp_path / "l.json"), out=io.StringIO())
    calls.clear()
    run_stages(stages(), StageLedger(tmp_path / "l.json"), out=io.StringIO())
    assert calls == []  # nothing changed, the result is still there

    exists["value"] = False  # e.g. the emulator's state was wiped
    run_stages(stages(), StageLedger(tmp_path / "l.json"), out=io.StringIO())
    assert calls == ["base", "data", "train"]


def test_run_stages_always_run_stage_does_not_invalidate_later_ones(tmp_path):
    calls: list[str] = []
    inputs = {"base": 1, "data": 1, "train": 1}

    def stages():
        built = make_stages(calls, inputs)
        check = Stage("check", "Check", lambda _o: None, lambda _o: calls.append("check") or {},
                      hint="", always_run=True)
        return [check, *built]

    run_stages(stages(), StageLedger(tmp_path / "l.json"), out=io.StringIO())
    calls.clear()
    run_stages(stages(), StageLedger(tmp_path / "l.json"), out=io.StringIO())
    assert calls == ["check"]
