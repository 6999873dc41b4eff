"""Summarise a `terraform show -json` plan as PLAN.md for review in a pull request.

PLAN.md holds, in this order: destructive changes to stateful resources (flagged first, so a
reviewer cannot miss them), a table of adds, changes, replacements and destroys per module,
every IAM policy change as a before/after of its statements, and the checkov summary.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ACTION_COLUMNS = ("add", "change", "replace", "destroy")
# Resources whose loss loses data: the bucket, the key that decrypts it, the logs.
PROTECTED_TYPES = frozenset({"aws_s3_bucket", "aws_kms_key", "aws_cloudwatch_log_group"})
# Attributes that hold a policy document, per resource type (identity and resource policies).
POLICY_ATTRIBUTES = {
    "aws_iam_policy": ("policy",),
    "aws_iam_role": ("assume_role_policy",),
    "aws_iam_role_policy": ("policy",),
    "aws_iam_user_policy": ("policy",),
    "aws_s3_bucket_policy": ("policy",),
    "aws_kms_key": ("policy",),
}
POLICY_ATTACHMENT_TYPES = frozenset({
    "aws_iam_role_policy_attachment", "aws_iam_user_policy_attachment",
    "aws_iam_group_policy_attachment", "aws_iam_policy_attachment",
})
UNKNOWN = "(known after apply)"


@dataclass(frozen=True)
class CheckovSummary:
    """What checkov found: counts and the failed checks as `(check id, resource, file)`."""

    passed: int
    failed: int
    skipped: int
    failures: tuple[tuple[str, str, str], ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class PolicyChange:
    """One policy attribute of one resource: its statements before and after the plan."""

    address: str
    attribute: str
    before: list[dict[str, Any]] | None
    after: list[dict[str, Any]] | None
    after_unknown: bool = False
    notes: list[str] = field(default_factory=list)


def classify(actions: list[str]) -> str | None:
    """Map a resource change's action list to one column (None for no-op and read)."""
    if "create" in actions and "delete" in actions:
        return "replace"
    return {"create": "add", "update": "change", "delete": "destroy"}.get(actions[0])


def module_of(change: dict[str, Any]) -> str:
    """The module a resource change belongs to (`root` for the root module)."""
    return change.get("module_address") or "root"


def managed_changes(plan: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """Resource changes of managed resources (data sources are read, never changed)."""
    return (c for c in plan.get("resource_changes", []) if c.get("mode", "managed") == "managed")


def summarize(plan: dict[str, Any]) -> dict[str, Counter[str]]:
    """Count adds, changes, replaces and destroys per module."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for change in managed_changes(plan):
        column = classify(change["change"]["actions"])
        if column is not None:
            counts[module_of(change)][column] += 1
    return dict(counts)


def protected_changes(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """`(address, "destroy" | "replace")` for every stateful resource the plan would lose."""
    return [
        (change["address"], column)
        for change in managed_changes(plan)
        if change.get("type") in PROTECTED_TYPES
        and (column := classify(change["change"]["actions"])) in ("replace", "destroy")
    ]


def unapproved_protected_changes(plan: dict[str, Any], allowed: Iterable[str]) -> list[str]:
    """Protected destroys and replacements not named in `allowed` (addresses or their modules)."""
    allowed = tuple(allowed)
    return [
        address for address, _ in protected_changes(plan)
        if not any(address == a or address.startswith(f"{a}.") for a in allowed)
    ]


def statements(document: str | dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The statements of a policy document given as JSON text or a dict; None when absent."""
    if document in (None, ""):
        return None
    parsed = json.loads(document) if isinstance(document, str) else document
    found = parsed.get("Statement", [])
    return [found] if isinstance(found, dict) else list(found)


def policy_changes(plan: dict[str, Any]) -> list[PolicyChange]:
    """Every policy attribute that the plan creates, changes or deletes, and every attachment."""
    found = []
    for change in managed_changes(plan):
        body = change["change"]
        if classify(body["actions"]) is None:
            continue
        before, after = body.get("before") or {}, body.get("after") or {}
        unknown = body.get("after_unknown") or {}
        if change.get("type") in POLICY_ATTACHMENT_TYPES:
            found.append(_attachment_change(change, before, after, unknown))
            continue
        for attribute in POLICY_ATTRIBUTES.get(change.get("type"), ()):
            old, new = statements(before.get(attribute)), statements(after.get(attribute))
            is_unknown = bool(unknown.get(attribute))
            if old != new or is_unknown:
                found.append(PolicyChange(change["address"], attribute, old, new, is_unknown))
    return found


def _attachment_change(change: dict[str, Any], before: dict[str, Any], after: dict[str, Any],
                       unknown: dict[str, Any]) -> PolicyChange:
    def describe(values: dict[str, Any], is_unknown: bool = False) -> str | None:
        if not values:
            return None
        policy = UNKNOWN if is_unknown else values.get("policy_arn")
        target = values.get("role") or values.get("user") or values.get("group") or UNKNOWN
        return f"attach `{policy}` to `{target}`"

    old, new = describe(before), describe(after, bool(unknown.get("policy_arn")))
    notes = [f"- {old}"] * bool(old) + [f"+ {new}"] * bool(new)
    return PolicyChange(change["address"], "attachment", None, None, notes=notes)


def describe_statement(statement: dict[str, Any]) -> str:
    """One statement as a line: effect, sid, actions, resources, principals and conditions."""
    def listed(value: Any) -> str:
        values = value if isinstance(value, list) else [value]
        return ", ".join(sorted(str(v) for v in values))

    sid = statement.get("Sid", "(no sid)")
    actions = listed(statement.get("Action", statement.get("NotAction", [])))
    line = f"{statement.get('Effect', 'Allow')} {sid}: {actions}"
    if "NotAction" in statement:
        line = line.replace(": ", ": all but ", 1)
    if "Resource" in statement or "NotResource" in statement:
        line += f" on {listed(statement.get('Resource', statement.get('NotResource')))}"
    if "Principal" in statement:
        line += f" for {json.dumps(statement['Principal'], sort_keys=True)}"
    for test, variables in sorted((statement.get("Condition") or {}).items()):
        for variable, values in sorted(variables.items()):
            line += f" when {test} {variable} = {listed(values)}"
    return line


def statement_diff(change: PolicyChange) -> list[str]:
    """The change as diff lines: `-` removed, `+` added, `  ` kept statements, by sid."""
    if change.notes:
        return change.notes
    old = [describe_statement(s) for s in change.before or []]
    if change.after_unknown:
        return [f"- {line}" for line in old] + [f"+ {UNKNOWN}"]
    new = [describe_statement(s) for s in change.after or []]
    return ([f"- {line}" for line in old if line not in new]
            + [f"+ {line}" for line in new if line not in old]
            + [f"  {line}" for line in new if line in old])


def render(env: str, plan: dict[str, Any], checkov: CheckovSummary | None = None,
           allowed: Iterable[str] = ()) -> str:
    """PLAN.md: protected changes, a table per module, IAM before/after, the checkov summary."""
    counts = summarize(plan)
    totals: Counter[str] = Counter()
    for module_counts in counts.values():
        totals.update(module_counts)
    lines = [f"# Terraform plan: `{env}`", ""]
    lines += _protected_section(plan, tuple(allowed))
    lines += ["Total: " + ", ".join(f"{totals[c]} to {c}" for c in ACTION_COLUMNS), ""]
    if counts:
        lines += ["| module | " + " | ".join(ACTION_COLUMNS) + " |", "|---" * 5 + "|"]
        for module in sorted(counts):
            cells = " | ".join(str(counts[module][c]) for c in ACTION_COLUMNS)
            lines.append(f"| `{module}` | {cells} |")
    else:
        lines.append("No changes.")
    replaced = [change["address"] for change in managed_changes(plan)
                if classify(change["change"]["actions"]) in ("replace", "destroy")]
    if replaced:
        lines += ["", "Replaced or destroyed:", *(f"- `{address}`" for address in replaced)]
    lines += ["", "## IAM policy changes", ""]
    changes = policy_changes(plan)
    if not changes:
        lines.append("No policy changes.")
    for change in changes:
        lines += [f"`{change.address}` ({change.attribute}):", "", "```diff",
                  *statement_diff(change), "```", ""]
    if lines[-1]:
        lines.append("")
    lines += ["## checkov", "", *_checkov_section(checkov)]
    return "\n".join(lines).rstrip("\n") + "\n"


def _protected_section(plan: dict[str, Any], allowed: tuple[str, ...]) -> list[str]:
    found = protected_changes(plan)
    if not found:
        return []
    unapproved = set(unapproved_protected_changes(plan, allowed))
    lines = ["> [!CAUTION]", "> This plan destroys or replaces stateful resources:", ">"]
    for address, column in found:
        override = "" if address in unapproved else " (allowed by override)"
        lines.append(f"> - **{column}** `{address}`{override}")
    return lines + [""]


def _checkov_section(summary: CheckovSummary | None) -> list[str]:
    if summary is None:
        return ["checkov was not run."]
    if summary.error:
        return [f"checkov could not run: {summary.error}"]
    lines = [(f"{summary.passed} passed, {summary.failed} failed, {summary.skipped} skipped "
              "(skips carry their reason next to the resource).")]
    if summary.failures:
        lines += ["", "| check | resource | file |", "|---|---|---|"]
        lines += [f"| {c} | `{r}` | {f} |" for c, r, f in summary.failures]
    return lines
