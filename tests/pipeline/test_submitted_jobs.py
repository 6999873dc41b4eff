"""A rerun of `make apply` waits on the job an interrupted run submitted, and never submits a
job that it does not record."""

from __future__ import annotations

import json
import os
import signal

import pytest

from breedops.jobs.submitted import SubmittedJob, attach_or_submit


@pytest.fixture
def slot(tmp_path):
    return SubmittedJob(tmp_path / "jobs.json", "train", "request-1")


def submitter(names: list[str]):
    def submit() -> str:
        names.append(f"job-{len(names) + 1}")
        return names[-1]

    return submit


@pytest.mark.parametrize("status", ["InProgress", "Completed"])
def test_attach_or_submit_uses_recorded_job_that_runs_or_completed(slot, status):
    slot.record("job-0", "training")
    created: list[str] = []
    name = attach_or_submit("training", slot, lambda _name: status, submitter(created))
    assert name == "job-0"
    assert created == []


@pytest.mark.parametrize("status", ["Failed", "Stopped", "Stopping", None])
def test_attach_or_submit_resubmits_when_recorded_job_failed_stopped_or_unknown(slot, status):
    slot.record("job-0", "training")
    created: list[str] = []
    name = attach_or_submit("training", slot, lambda _name: status, submitter(created))
    assert name == created[0] == "job-1"
    assert slot.name == "job-1"  # the new job is the one a later rerun waits on


def test_attach_or_submit_records_new_job_before_returning(slot):
    created: list[str] = []
    name = attach_or_submit("training", slot, lambda _name: None, submitter(created))
    assert SubmittedJob(slot.path, "train", "request-1").name == name
    assert json.loads(slot.path.read_text())["train"]["kind"] == "training"


def test_recorded_job_of_another_request_is_not_attached(slot):
    slot.record("job-0", "training")
    changed = SubmittedJob(slot.path, "train", "request-2")
    created: list[str] = []
    assert attach_or_submit("training", changed, lambda _name: "InProgress",
                            submitter(created)) == "job-1"


def test_interrupt_during_submission_is_held_until_the_job_is_recorded(slot):
    def submit() -> str:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while CreateTrainingJob is in flight
        return "job-1"

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        attach_or_submit("training", slot, lambda _name: None, submit)
    assert slot.name == "job-1"
    assert signal.getsignal(signal.SIGINT) is before  # the hold is lifted


def test_clear_forgets_only_its_own_stage(slot):
    slot.record("job-0", "training")
    tune = SubmittedJob(slot.path, "tune", "request-1")
    tune.record("tuning-0", "tuning")
    slot.clear()
    assert slot.name is None
    assert tune.name == "tuning-0"


def test_torn_record_file_is_ignored(slot):
    slot.path.write_text('{"train": {"name": "job-')
    assert slot.name is None
    slot.record("job-1", "training")
    assert slot.name == "job-1"
