"""A resumable, skip-if-unchanged stage runner for `make apply`.

Each stage has a fingerprint of its inputs. The runner records, per environment, the
fingerprint and outputs of every stage that finished; a later run skips a stage whose
fingerprint is unchanged and re-runs it (and everything after it) otherwise. A stage that
failed or was interrupted has no record, so the next run resumes there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from breedops.errors import BreedopsError

log = logging.getLogger(__name__)

Outputs = dict[str, Any]


class StageFailed(BreedopsError):
    """A stage failed: names the stage, the cause and what to do next."""

    def __init__(self, stage: str, cause: BaseException, hint: str) -> None:
        self.stage = stage
        super().__init__(f"stage '{stage}' failed: {cause}\n  what to do: {hint}")


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    `fingerprint(outputs_so_far)` returns the inputs the stage depends on; `run(outputs_so_far)`
    does the work and returns the outputs later stages and the summary read.
    """

    name: str
    title: str
    fingerprint: Callable[[Outputs], Any]
    run: Callable[[Outputs], Outputs]
    hint: str
    always_run: bool = False
    # Whether what a finished run produced still exists (e.g. the emulator was wiped).
    still_valid: Callable[[Outputs], bool] = lambda _outputs: True
    # Who runs it (see principals.py): Terraform stages the deployer, the others the operator;
    # None for a stage that makes no AWS call as anyone (starting the local services).
    principal: str | None = "deployer"


@dataclass
class StageRecord:
    fingerprint: str
    outputs: Outputs
    seconds: float
    finished_at: float = field(default_factory=time.time)


def digest(value: Any) -> str:
    """A stable hash of any JSON-serialisable value."""
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def hash_files(paths: Iterable[Path], suffixes: tuple[str, ...] = ()) -> str:
    """Hash the contents of files (directories are walked), in a stable order."""
    h = hashlib.sha256()
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files.append(path)
    for file in sorted(files):
        if suffixes and not file.name.endswith(suffixes):
            continue
        # Caches and files that tools rewrite on their own are not inputs.
        if {"__pycache__", ".terraform"} & set(file.parts) or file.name == ".terraform.lock.hcl":
            continue
        h.update(str(file).encode())
        h.update(file.read_bytes())
    return h.hexdigest()


class StageLedger:
    """The record of finished stages for one environment, saved atomically after each stage."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, StageRecord] = {}
        if path.exists():
            try:
                raw = json.loads(path.read_text())
                self.records = {k: StageRecord(**v) for k, v in raw.items()}
            except (ValueError, TypeError) as e:
                log.warning("ignoring unreadable pipeline record %s (%s)", path, e)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ledger-")
        with os.fdopen(fd, "w") as f:
            json.dump({k: vars(v) for k, v in self.records.items()}, f, indent=2, default=str)
        os.replace(tmp, self.path)

    def forget_from(self, names: list[str]) -> None:
        for name in names:
            self.records.pop(name, None)
        self.save()


def _as_caller(_principal: str, _outputs: Outputs) -> ContextManager[str]:
    return nullcontext("the caller")


def run_stages(
    stages: list[Stage], ledger: StageLedger, *, out=sys.stderr, force: bool = False,
    act_as: Callable[[str, Outputs], ContextManager[str]] = _as_caller,
) -> tuple[Outputs, list[tuple[str, str, float, str]]]:
    """Run `stages` in order, skipping unchanged ones, each inside `act_as(stage.principal,
    outputs)`, which yields the ARN it runs as. Returns merged outputs and a timeline of
    (stage, "ran"|"skipped", seconds, ARN it ran as)."""
    outputs: Outputs = {}
    timeline: list[tuple[str, str, float, str]] = []
    started = time.monotonic()
    invalidated = force
    for index, stage in enumerate(stages, start=1):
        prefix = f"[{index}/{len(stages)}] {stage.title}"
        try:
            fingerprint = digest(stage.fingerprint(outputs))
        except BreedopsError as e:
            raise StageFailed(stage.name, e, stage.hint) from e
        record = ledger.records.get(stage.name)
        if (
            not invalidated
            and not stage.always_run
            and record is not None
            and record.fingerprint == fingerprint
            and stage.still_valid(record.outputs)
        ):
            outputs.update(record.outputs)
            timeline.append((stage.name, "skipped", 0.0, ""))
            print(f"{prefix} ... unchanged, skipped  [{_clock(started)}]", file=out, flush=True)
            continue
        if record is not None and not stage.always_run:
            reason = ("an earlier stage ran again" if invalidated else
                      "its inputs changed" if record.fingerprint != fingerprint else
                      "what it made is gone")
            log.info("stage %s runs again: %s", stage.name, reason)
        # A stage that runs again invalidates what was built on it (an always-run stage only
        # checks or uses what exists, so it does not).
        if not stage.always_run:
            invalidated = True
            ledger.forget_from([s.name for s in stages[index - 1 :]])
        t0 = time.monotonic()
        try:
            principal = stage.principal
            with act_as(principal, outputs) if principal else nullcontext("") as arn:
                who = f"as {principal} {arn}  " if principal else ""
                print(f"{prefix} ...  {who}[{_clock(started)}]", file=out, flush=True)
                produced = stage.run(dict(outputs)) or {}
        except BreedopsError as e:
            raise StageFailed(stage.name, e, stage.hint) from e
        except KeyboardInterrupt:
            print(f"{prefix} interrupted; `make apply` resumes here.", file=out, flush=True)
            raise
        seconds = time.monotonic() - t0
        outputs.update(produced)
        ledger.records[stage.name] = StageRecord(fingerprint, produced, seconds)
        ledger.save()
        timeline.append((stage.name, "ran", seconds, arn))
        print(f"{prefix} done in {seconds:.1f}s  [{_clock(started)}]", file=out, flush=True)
    return outputs, timeline


def _clock(started: float) -> str:
    elapsed = int(time.monotonic() - started)
    return f"{elapsed // 60:02d}:{elapsed % 60:02d}"
