"""Job names as `<prefix>-<kind>-<yymmddHHMMSS>[-<random>]`, within SageMaker's limits.

The prefix is the project's resource name prefix (`breedops-local`, `breedops-aws`): the
operator's policy allows jobs whose names start with `<prefix>-`, and a tuning job's trials
(`<tuning-job>-NNN-<hash>`) inherit it.
"""

from __future__ import annotations

import secrets
import time

from breedops.settings import DEFAULT_PROJECT

TRAINING_JOB_NAME_MAX = 63
TUNING_JOB_NAME_MAX = 32


def job_name(kind: str, max_length: int = TRAINING_JOB_NAME_MAX,
             project: str = DEFAULT_PROJECT, now: float | None = None) -> str:
    """A name unique to the second, with as much random suffix (2 to 6 hex digits) as fits."""
    stem = f"{project}-{kind}-{time.strftime('%y%m%d%H%M%S', time.gmtime(now))}"
    if len(stem) > max_length:
        raise ValueError(f"a {kind!r} job name for the prefix {project!r} would exceed "
                         f"{max_length} characters: use a shorter project name")
    room = min(6, max_length - len(stem) - 1)
    return stem + (f"-{secrets.token_hex(3)[:room]}" if room >= 2 else "")


def trial_job_name(tuning_job_name: str, trial_number: int) -> str:
    """A tuning trial's training job name, shaped like SageMaker's `<tuning>-<NNN>-<hash>`."""
    return f"{tuning_job_name}-{trial_number:03d}-{secrets.token_hex(4)}"
