"""Summarise a `terraform show -json` plan as PLAN.md: actions per module."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

ACTION_COLUMNS = ("add", "change", "replace", "destroy")


def classify(actions: list[str]) -> str | None:
    """Map a resource change's action list to one column (None for no-op and read)."""
    if "create" in actions and "delete" in actions:
        return "replace"
    return {"create": "add", "update": "change", "delete": "destroy"}.get(actions[0])


def module_of(change: dict[str, Any]) -> str:
    """The module a resource change belongs to (`root` for the root module)."""
    return change.get("module_address") or "root"


def summarize(plan: dict[str, Any]) -> dict[str, Counter[str]]:
    """Count adds, changes, replaces and destroys per module."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for change in plan.get("resource_changes", []):
        column = classify(change["change"]["actions"])
        if column is not None:
            counts[module_of(change)][column] += 1
    return dict(counts)


def render(env: str, plan: dict[str, Any]) -> str:
    """PLAN.md: a totals line, a table per module, and the replaced resources by address."""
    counts = summarize(plan)
    totals = Counter()
    for module_counts in counts.values():
        totals.update(module_counts)
    lines = [
        f"# Terraform plan: `{env}`",
        "",
        "Total: " + ", ".join(f"{totals[c]} to {c}" for c in ACTION_COLUMNS),
        "",
    ]
    if not counts:
        lines.append("No changes.")
        return "\n".join(lines) + "\n"
    lines += ["| module | " + " | ".join(ACTION_COLUMNS) + " |", "|---" * 5 + "|"]
    for module in sorted(counts):
        cells = " | ".join(str(counts[module][c]) for c in ACTION_COLUMNS)
        lines.append(f"| `{module}` | {cells} |")
    replaced = [
        change["address"]
        for change in plan.get("resource_changes", [])
        if classify(change["change"]["actions"]) in ("replace", "destroy")
    ]
    if replaced:
        lines += ["", "Replaced or destroyed:", *(f"- `{address}`" for address in replaced)]
    return "\n".join(lines) + "\n"
