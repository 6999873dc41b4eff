"""Fixtures for the plan-review tests: the Terraform sandbox of tests/terraform, reused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "breedops_tests_terraform_local_env",
    Path(__file__).parents[1] / "terraform" / "test_local_env.py",
)
_local_env = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_local_env)

sandbox = _local_env.sandbox
