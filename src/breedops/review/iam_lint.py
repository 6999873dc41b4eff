"""Lint the policy documents rendered in a plan with parliament; every finding kept has a reason.

Run as `python -m breedops.review.iam_lint PLAN_JSON` (`make lint` does, when a plan exists):
it prints each finding, marks the explained ones, and exits 1 if any is unexplained. The reasons
live in `iam_lint_exceptions.json` next to this module, each tied to an issue, a resource
address and the actions it covers, so a new finding of the same kind is not hidden by an old one.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breedops.review.plan_summary import POLICY_ATTRIBUTES, managed_changes
from breedops.review.tools import ReviewError, tool_path

log = logging.getLogger(__name__)

EXCEPTIONS_FILE = Path(__file__).with_name("iam_lint_exceptions.json")


@dataclass(frozen=True)
class Finding:
    """One parliament finding on one rendered policy."""

    address: str
    issue: str
    severity: str
    title: str
    detail: str
    reason: str | None = None

    def describe(self) -> str:
        verdict = f"explained: {self.reason}" if self.reason else "UNEXPLAINED"
        return f"{self.severity} {self.issue} in {self.address}: {self.detail} ({verdict})"


def rendered_policies(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every known policy document the plan would leave in place, by `<address>.<attribute>`.

    Documents known only after apply (a fresh environment) are skipped: run the lint on a plan
    made after `make apply`, as `make plan` against an applied environment gives.
    """
    policies = {}
    for change in managed_changes(plan):
        after = change["change"].get("after") or {}
        for attribute in POLICY_ATTRIBUTES.get(change.get("type"), ()):
            if after.get(attribute):
                policies[f"{change['address']}.{attribute}"] = json.loads(after[attribute])
    return policies


def load_exceptions(path: Path = EXCEPTIONS_FILE) -> list[dict[str, Any]]:
    """The explained findings: `issue`, `address` (a regex), `detail` (a regex), `reason`."""
    exceptions = json.loads(path.read_text())
    for entry in exceptions:
        if not entry.get("reason", "").strip():
            raise ReviewError(f"{path.name}: the exception for {entry.get('issue')} has no reason")
    return exceptions


def explain(finding: Finding, exceptions: list[dict[str, Any]]) -> Finding:
    """The finding with the reason of the first exception that matches it, if any."""
    for entry in exceptions:
        if (entry["issue"] == finding.issue
                and re.fullmatch(entry["address"], finding.address)
                and re.fullmatch(entry["detail"], finding.detail)):
            return Finding(**{**finding.__dict__, "reason": entry["reason"]})
    return finding


def lint(plan: dict[str, Any], exceptions: list[dict[str, Any]] | None = None) -> list[Finding]:
    """Run parliament over every rendered policy; findings carry their reason when explained."""
    policies = rendered_policies(plan)
    if not policies:
        raise ReviewError("the plan renders no policy documents yet: apply the environment "
                          "first (`make apply`), then `make plan`")
    exceptions = load_exceptions() if exceptions is None else exceptions
    executable = tool_path("parliament")
    findings = []
    for name, document in policies.items():
        # parliament exits 1 when it finds something; its findings are on stdout.
        result = subprocess.run(
            [str(executable), "--string", json.dumps(document), "--json"],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
        )
        if result.returncode not in (0, 1) or result.stderr.strip():
            raise ReviewError(f"parliament failed on {name}: {result.stderr.strip()[-300:]}")
        for line in filter(None, result.stdout.splitlines()):
            raw = json.loads(line)
            finding = Finding(name, raw["issue"], raw["severity"], raw["title"],
                              json.dumps(raw.get("detail"), sort_keys=True))
            findings.append(explain(finding, exceptions))
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="lint the IAM policies rendered in a plan")
    parser.add_argument("plan_json", type=Path, help="terraform show -json output (plan.json)")
    parser.add_argument("--skip-unrendered", action="store_true",
                        help="exit 0 with a note when the plan renders no policy yet")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        plan = json.loads(args.plan_json.read_text())
        if args.skip_unrendered and not rendered_policies(plan):
            print(f"iam lint: {args.plan_json} renders no policy yet (apply, then plan); skipped")
            return 0
        findings = lint(plan)
    except (OSError, ReviewError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for finding in findings:
        print(finding.describe())
    unexplained = [f for f in findings if f.reason is None]
    print(f"parliament: {len(rendered_policies(plan))} policies, {len(findings)} findings, "
          f"{len(unexplained)} unexplained")
    return 1 if unexplained else 0


if __name__ == "__main__":
    raise SystemExit(main())
