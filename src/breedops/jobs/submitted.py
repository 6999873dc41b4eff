"""The jobs a run submitted and has not finished with, kept so that the next run attaches to them.

A job runs (and bills) whatever happens to the process that waits for it: Ctrl-C, a lost
laptop, an emulator restart. Its name is written here right after `Create*` returns, before the
wait, so that a rerun waits on the same job instead of submitting another. One small JSON file
per pipeline, replaced atomically; an entry holds the fingerprint of the request that made it,
and a changed request does not attach to the old job.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breedops import interrupts

log = logging.getLogger(__name__)
# A job an earlier run submitted is used in these states; after any other it is submitted anew.
ATTACHABLE = ("InProgress", "Completed")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:  # a file torn by hand: the jobs in it are no longer known
        log.warning("ignoring unreadable job record %s (%s)", path, e)
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class SubmittedJob:
    """One slot of `path`: the job that `key` (a pipeline stage) submitted for `fingerprint`."""

    path: Path
    key: str
    fingerprint: str

    @property
    def name(self) -> str | None:
        """The recorded job's name, if it was submitted for this same request."""
        entry = _read(self.path).get(self.key) or {}
        if entry.get("fingerprint") != self.fingerprint:
            return None
        return entry.get("name")

    def record(self, name: str, kind: str) -> None:
        data = _read(self.path)
        data[self.key] = {"name": name, "kind": kind, "fingerprint": self.fingerprint}
        _write(self.path, data)

    def clear(self) -> None:
        """The job's result is kept elsewhere now (the stage's record): forget the job."""
        data = _read(self.path)
        if data.pop(self.key, None) is not None:
            _write(self.path, data)


def attach_or_submit(kind: str, submitted: SubmittedJob | None,
                     status_of: Callable[[str], str | None], submit: Callable[[], str]) -> str:
    """The recorded job when it runs or ran to completion; otherwise a new one, recorded before
    anything waits on it (an interrupt in between is held until it is recorded).

    `status_of(name)` is the job's status, None for a job SageMaker does not know (an emulator
    whose state was wiped); `submit()` creates the job and returns its name.
    """
    recorded = submitted.name if submitted is not None else None
    if recorded:
        status = status_of(recorded)
        if status in ATTACHABLE:
            log.info("%s job %s, submitted by an earlier run, is %s: using it, not submitting "
                     "another", kind, recorded, status)
            return recorded
        log.info("%s job %s, submitted by an earlier run, is %s: submitting a new one",
                 kind, recorded, status or "unknown to SageMaker")
    with interrupts.deferred():
        name = submit()
        if submitted is not None:
            submitted.record(name, kind)
    return name
