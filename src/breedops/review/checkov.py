"""Run checkov over the Terraform tree and reduce its JSON report to a summary for PLAN.md."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any

from breedops.review.plan_summary import CheckovSummary
from breedops.review.tools import ReviewError, tool_path

log = logging.getLogger(__name__)


def run_checkov(directory: Path) -> CheckovSummary:
    """Scan `directory` (the tree, so inline skips with their reasons apply) with checkov."""
    try:
        executable = tool_path("checkov")
    except ReviewError as e:
        return CheckovSummary(0, 0, 0, error=str(e))
    result = subprocess.run(
        # --skip-download: the checks ship with checkov; only doc links come from its vendor.
        [str(executable), "-d", str(directory), "--framework", "terraform", "-o", "json",
         "--quiet", "--skip-download"],
        capture_output=True, text=True, check=False,
    )
    # checkov exits 1 when a check fails; its report is still on stdout.
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        return CheckovSummary(0, 0, 0, error=(result.stderr.strip() or "no report")[-300:])
    return summarize_report(report)


def summarize_report(report: dict[str, Any] | list[dict[str, Any]]) -> CheckovSummary:
    """Counts and failed checks from checkov's JSON report (one dict, or one per framework)."""
    reports = report if isinstance(report, list) else [report]
    passed = failed = skipped = 0
    failures = []
    for one in reports:
        summary = one.get("summary", {})
        passed += summary.get("passed", 0)
        failed += summary.get("failed", 0)
        skipped += summary.get("skipped", 0)
        for check in one.get("results", {}).get("failed_checks", []):
            failures.append((check["check_id"], check["resource"], check["file_path"]))
    return CheckovSummary(passed, failed, skipped, tuple(sorted(failures)))
