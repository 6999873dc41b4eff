"""One hyperparameter tuning job: trials proposed by the search, run as training jobs.

`TuningJobRun` keeps up to `MaxParallelTrainingJobs` trials running, names them as SageMaker
does (`<tuning-job>-<NNN>-<8 hex>`), reads each finished trial's objective from its
`FinalMetricDataList` (the request's own metric regexes over its log), tells the search, and
records the counters and the best trial after every change. A tuning job that was in progress
when the emulator stopped goes on where it was (`restored`): the search learns its ended
trials again, and its trials in progress run again.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from breedops.local.sagemaker_jobs import records
from breedops.local.sagemaker_jobs.search import Proposal, TuningSearch
from breedops.local.sagemaker_jobs.training import TERMINAL, Site, TrainingJobRun

log = logging.getLogger(__name__)

# Keys of a TrainingJobDefinition that are the tuner's, not a training job's.
DEFINITION_ONLY = {"StaticHyperParameters", "HyperParameterRanges", "TuningObjective",
                   "DefinitionName", "HyperParameterTuningResourceConfig"}
WAIT_SECONDS = 0.5


def trial_name(tuning_job_name: str, number: int) -> str:
    return f"{tuning_job_name}-{number:03d}-{secrets.token_hex(4)}"


def trial_number(tuning_job_name: str, trial_name: str) -> int:
    """The NNN of `<tuning-job>-<NNN>-<hash>`."""
    return int(trial_name[len(tuning_job_name) + 1:].split("-", 1)[0])


def trial_request(definition: dict[str, Any], name: str, proposal: Proposal) -> dict[str, Any]:
    """The CreateTrainingJob parameters of one trial: the definition plus its hyperparameters."""
    request = {k: v for k, v in definition.items() if k not in DEFINITION_ONLY}
    request["TrainingJobName"] = name
    request["HyperParameters"] = {**(definition.get("StaticHyperParameters") or {}),
                                  **proposal.hyperparameters}
    return request


def counters(trials: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """`TrainingJobStatusCounters` and `ObjectiveStatusCounters` of the trial summaries."""
    trials = list(trials)
    statuses = [t["TrainingJobStatus"] for t in trials]
    objectives = [t["ObjectiveStatus"] for t in trials]
    return {
        "TrainingJobStatusCounters": {
            "Completed": statuses.count("Completed"),
            "InProgress": statuses.count("InProgress") + statuses.count("Stopping"),
            "RetryableError": 0,
            "NonRetryableError": statuses.count("Failed"),
            "Stopped": statuses.count("Stopped")},
        "ObjectiveStatusCounters": {"Succeeded": objectives.count("Succeeded"),
                                    "Pending": objectives.count("Pending"),
                                    "Failed": objectives.count("Failed")},
    }


class TuningJobRun:
    """The executor of one tuning job; `start()` runs it in a thread of its own."""

    def __init__(self, site: Site, job: dict[str, Any], account: str, region: str,
                 start_trial: Callable[[dict[str, Any], int], TrainingJobRun],
                 restored: list[dict[str, Any]] | None = None,
                 restart_trial: Callable[[str, int], TrainingJobRun] | None = None) -> None:
        self.site = site
        self.job = job
        self.name: str = job["HyperParameterTuningJobName"]
        self.account = account
        self.region = region
        config = job["HyperParameterTuningJobConfig"]
        self.search = TuningSearch(config)
        self.objective = config["HyperParameterTuningJobObjective"]
        self.parallel = int(config["ResourceLimits"].get("MaxParallelTrainingJobs", 1))
        self.start_trial = start_trial
        self.restored = restored or []  # the trial summaries of a run the emulator restarted
        self.restart_trial = restart_trial
        self.stopping = threading.Event()
        self._abandoned = False  # the emulator is shutting down: record nothing more
        self.done = threading.Event()
        self.trials: dict[str, dict[str, Any]] = {}  # trial name -> summary
        self._running: dict[str, tuple[TrainingJobRun, Proposal]] = {}
        self._thread = threading.Thread(target=self._run, name=f"tuning-{self.name}",
                                        daemon=True)
        self._started = time.time()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for run, _ in list(self._running.values()):
            run.stop()

    def abandon(self) -> None:
        """The emulator is stopping: start no trial and record nothing more."""
        self._abandoned = True
        self.stopping.set()

    def _run(self) -> None:
        definition = self.job["TrainingJobDefinition"]
        instances = int(definition["ResourceConfig"].get("InstanceCount", 1))
        threads = max(1, self.site.cpu_count // (self.parallel * instances))
        try:
            self._restore(threads)
            while True:
                while len(self._running) < self.parallel and not self.stopping.is_set():
                    proposal = self.search.ask()
                    if proposal is None:
                        break
                    self._launch(definition, proposal, threads)
                if not self._running:
                    break
                self._collect()
            self._finish()
        except Exception as e:  # the tuning job fails with the reason
            log.exception("tuning job %s failed", self.name)
            self.stop()
            self._record({"HyperParameterTuningJobStatus": "Failed",
                          "FailureReason": f"InternalServerError: {e}"[:1024],
                          "HyperParameterTuningEndTime": time.time()})
            self.done.set()

    def _restore(self, threads: int) -> None:
        """Take up the trials of the run that the emulator's restart cut: the search proposes
        their numbers again (so new trials follow them) and learns the ended ones' objective;
        the ones in progress run again, under their names, with their hyperparameters."""
        if not self.restored:
            return
        for summary in sorted(self.restored,
                              key=lambda t: trial_number(self.name, t["TrainingJobName"])):
            asked = self.search.ask()
            if asked is None:
                break
            name = summary["TrainingJobName"]
            proposal = Proposal(asked.number, dict(summary["TunedHyperParameters"]))
            self.trials[name] = dict(summary)
            if summary["TrainingJobStatus"] in TERMINAL:
                objective = summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
                self.search.tell(proposal.number, objective.get("Value"))
            elif self.restart_trial is not None:
                self._running[name] = (self.restart_trial(name, threads), proposal)
                log.info("tuning job %s: trial %s runs again", self.name, name)
        self._record_progress()

    def _launch(self, definition: dict[str, Any], proposal: Proposal, threads: int) -> None:
        name = trial_name(self.name, proposal.number)
        request = trial_request(definition, name, proposal)
        run = self.start_trial(request, threads)
        self._running[name] = (run, proposal)
        if self.stopping.is_set():  # stopped while this trial was being created
            run.stop()
        self.trials[name] = {"TrainingJobName": name, "TrainingJobArn": run.job["TrainingJobArn"],
                             "TuningJobName": self.name, "CreationTime": time.time(),
                             "TrainingJobStatus": "InProgress",
                             "TunedHyperParameters": proposal.hyperparameters,
                             "ObjectiveStatus": "Pending"}
        log.info("tuning job %s: trial %s %s", self.name, name, proposal.hyperparameters)
        self._record_progress()

    def _collect(self) -> None:
        """Wait for at least one running trial to end, then account for every ended one."""
        while not any(run.done.is_set() for run, _ in self._running.values()):
            time.sleep(WAIT_SECONDS)
        for name, (run, proposal) in list(self._running.items()):
            if not run.done.is_set():
                continue
            del self._running[name]
            value = self._objective_of(run)
            self.search.tell(proposal.number, value)
            summary = self.trials[name]
            summary.update({"TrainingJobStatus": run.status, "TrainingEndTime": time.time(),
                            "TrainingStartTime": run.training_started or time.time(),
                            "ObjectiveStatus": "Succeeded" if value is not None else "Failed"})
            if run.failure_reason:
                summary["FailureReason"] = run.failure_reason
            if value is not None:
                summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                    "Type": self.objective["Type"], "MetricName": self.objective["MetricName"],
                    "Value": value}
        self._record_progress()

    def _objective_of(self, run: TrainingJobRun) -> float | None:
        if run.status != "Completed":
            return None
        metric = self.objective["MetricName"]
        return next((m["Value"] for m in run.final_metrics if m["MetricName"] == metric), None)

    def best(self) -> dict[str, Any] | None:
        scored = [t for t in self.trials.values()
                  if "FinalHyperParameterTuningJobObjectiveMetric" in t]
        best = None
        for trial in scored:
            value = trial["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
            if best is None or self.search.is_better(
                    value, best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]):
                best = trial
        return best

    def _progress(self) -> dict[str, Any]:
        """The trials, their counters and the best one so far, as the describe calls show them."""
        fields: dict[str, Any] = {**counters(self.trials.values()),
                                  "LastModifiedTime": time.time(),
                                  "Trials": list(self.trials.values())}
        best = self.best()
        if best is not None:
            fields["BestTrainingJob"] = best
        return fields

    def _record_progress(self) -> None:
        self._record(self._progress())

    def _finish(self) -> None:
        best = self.best()
        now = time.time()
        if self.stopping.is_set():
            status, reason = "Stopped", None
        elif best is None:
            status = "Failed"
            reason = ("No training job succeeded with a value of the objective metric "
                      f"{self.objective['MetricName']}; see the trials' FailureReason")
        else:
            status, reason = "Completed", None
        fields: dict[str, Any] = {"HyperParameterTuningJobStatus": status,
                                  "HyperParameterTuningEndTime": now, "LastModifiedTime": now,
                                  "ConsumedResources": {"RuntimeInSeconds":
                                                        round(now - self._started)}}
        if reason:
            fields["FailureReason"] = reason
        self._record({**self._progress(), **fields})
        self.done.set()
        log.info("tuning job %s: %s (best %s)", self.name, status,
                 best["TrainingJobName"] if best else None)

    def _record(self, fields: dict[str, Any]) -> None:
        if self._abandoned:
            return
        records.dispatch(records.TUNING_STATE, {"account": self.account, "region": self.region,
                                                "name": self.name, "fields": fields})
