"""A path that contains another cannot be faster than it: the bench checks its own figures.

forward (the network alone) is inside the handler (decode, transform, forward, JSON), which is
inside the endpoint (HTTP, IAM check, worker), which is inside the Lambda end to end. Each outer
p50 must be at least the inner p50 less the noise margin; a violation means the measurement is
wrong (different settings between the paths, a busy machine), not that the path is fast.
"""

from __future__ import annotations

import itertools
from typing import Any

NESTED_PATHS = ("forward", "handler", "endpoint", "lambda_end_to_end")
# Noise margin: two medians of 40 samples on a quiet machine differ by a few per cent, and
# timer and scheduling jitter by a fraction of a millisecond.
MARGIN_MS = 0.5
MARGIN_FRACTION = 0.05


def margin_ms(inner_p50_ms: float) -> float:
    """How much faster an outer path's p50 may look than its inner path's: noise."""
    return max(MARGIN_MS, MARGIN_FRACTION * inner_p50_ms)


def check_nesting(architectures: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Every adjacent (inner, outer) pair of `NESTED_PATHS`, per architecture and runtime."""
    checks, violations = [], []
    for arch, runtimes in architectures.items():
        for runtime, figures in runtimes.items():
            for inner, outer in itertools.pairwise(NESTED_PATHS):
                if inner not in figures or outer not in figures:
                    continue
                inner_p50, outer_p50 = figures[inner]["p50_ms"], figures[outer]["p50_ms"]
                allowed = round(margin_ms(inner_p50), 2)
                check = {"arch": arch, "runtime": runtime, "inner": inner, "outer": outer,
                         "inner_p50_ms": inner_p50, "outer_p50_ms": outer_p50,
                         "margin_ms": allowed, "ok": outer_p50 >= inner_p50 - allowed}
                checks.append(check)
                if not check["ok"]:
                    violations.append(check)
    return {"rule": (f"p50(outer) >= p50(inner) - max({MARGIN_MS} ms, "
                     f"{MARGIN_FRACTION:.0%} of p50(inner))"),
            "checks": checks, "violations": violations}


def describe(violation: dict[str, Any]) -> str:
    return (f"{violation['arch']} ({violation['runtime']}): {violation['outer']} p50 "
            f"{violation['outer_p50_ms']} ms < {violation['inner']} p50 "
            f"{violation['inner_p50_ms']} ms - {violation['margin_ms']} ms")
