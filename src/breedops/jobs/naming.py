"""Job names as `<project>-<kind>-<yyyymmdd-hhmmss>-<random>`, within SageMaker's limits."""

from __future__ import annotations

import secrets
import time

from breedops.settings import DEFAULT_PROJECT

TRAINING_JOB_NAME_MAX = 63
TUNING_JOB_NAME_MAX = 32


def job_name(kind: str, max_length: int = TRAINING_JOB_NAME_MAX,
             project: str = DEFAULT_PROJECT, now: float | None = None) -> str:
    """A unique name; the random suffix shrinks (to 2 hex digits) to fit `max_length`."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    stem = f"{project}-{kind}-{stamp}-"
    room = min(6, max_length - len(stem))
    if room < 2:
        raise ValueError(f"a {kind!r} job name would exceed {max_length} characters")
    return stem + secrets.token_hex(3)[:room]


def trial_job_name(tuning_job_name: str, trial_number: int) -> str:
    """A tuning trial's training job name, shaped like SageMaker's `<tuning>-<NNN>-<hash>`."""
    return f"{tuning_job_name}-{trial_number:03d}-{secrets.token_hex(4)}"

