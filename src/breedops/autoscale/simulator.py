"""Replay a traffic curve against a SageMaker target-tracking policy, minute by minute.

The model (pure Python, documented so its figures can be judged):

- The metric is `SageMakerVariantInvocationsPerInstance`: the minute's invocations divided by the
  instances in service during that minute (every request counts, served or not).
- Target tracking owns two CloudWatch alarms, as AWS creates them: *high* when the last 3
  one-minute datapoints are all above the target, *low* when the last 15 are all below 90 % of
  it. Their evaluation happens at the end of each minute.
- A scaling decision computes the desired capacity from the *current* metric, the datapoint
  that completed the alarm, as Application Auto Scaling does: desired =
  `ceil(in_service * metric / target)` (with the metric per instance, that is the minute's
  invocations divided by the target). The alarm's other datapoints only decide *whether* to
  act: averaging them, as this simulator once did, scales in one step too far when the load
  has risen again within the low alarm's 15 minutes (`tests/autoscale/test_simulator.py`).
  Scale out (high alarm): capped at the maximum. AWS lets a scale-out go ahead during the
  scale-out cooldown, counting the capacity the last one added; here that capacity is already
  in `in_service` once it serves (and nothing scales before), so only a larger count goes
  ahead and the scale-out cooldown changes nothing in this model.
  Scale in (low alarm): at least the minimum, unless a scale-in happened within the scale-in
  cooldown.
- New instances serve after `provisioning_minutes` (SageMaker takes minutes to add one) and are
  billed from the decision on; removed instances stop at once. While instances are still being
  provisioned the endpoint is `Updating` and SageMaker refuses another update, so no scaling
  activity of either kind happens then.
- One instance serves `capacity_rpm` requests per minute; what a minute asks beyond the
  in-service capacity counts as requests above capacity (bursts within a minute are not seen).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from breedops.errors import BreedopsError

# Target tracking's alarms, as AWS creates them for a one-minute metric.
HIGH_ALARM_DATAPOINTS = 3
LOW_ALARM_DATAPOINTS = 15
LOW_ALARM_RATIO = 0.9
# AWS's load-test formula: InvocationsPerInstance target = max RPS x safety factor x 60.
SAFETY_FACTOR = 0.5


class SimulationError(BreedopsError):
    """The policy or the fleet is given impossible values."""


def recommended_target(max_rps: float, safety_factor: float = SAFETY_FACTOR) -> float:
    """The `SageMakerVariantInvocationsPerInstance` target for a measured per-instance max RPS."""
    if max_rps <= 0:
        raise SimulationError(f"the measured max RPS must be positive, got {max_rps}")
    return max_rps * safety_factor * 60


@dataclass(frozen=True)
class Policy:
    """A target-tracking policy and the scalable target's bounds (the Terraform variables)."""

    target: float
    scale_in_cooldown_s: int = 300
    scale_out_cooldown_s: int = 300
    min_capacity: int = 1
    max_capacity: int = 4

    def validate(self) -> None:
        if not self.target > 0:
            raise SimulationError(f"--target must be positive, got {self.target}")
        if self.scale_in_cooldown_s < 0 or self.scale_out_cooldown_s < 0:
            raise SimulationError("cooldowns must be >= 0 seconds")
        if not 1 <= self.min_capacity <= self.max_capacity:
            raise SimulationError(f"need 1 <= min capacity ({self.min_capacity}) <= "
                                  f"max capacity ({self.max_capacity})")


@dataclass(frozen=True)
class Fleet:
    """What one instance can do and how long a new one takes."""

    capacity_rpm: float
    provisioning_minutes: int = 5

    def validate(self) -> None:
        if not self.capacity_rpm > 0:
            raise SimulationError(f"per-instance capacity must be positive, got "
                                  f"{self.capacity_rpm} requests/minute")
        if self.provisioning_minutes < 0:
            raise SimulationError("provisioning minutes must be >= 0")


@dataclass(frozen=True)
class ScalingEvent:
    minute: int
    action: str  # "scale_out" or "scale_in"
    from_instances: int
    to_instances: int


@dataclass
class Simulation:
    """Per-minute series and events of one replay."""

    policy: Policy
    fleet: Fleet
    demand_rpm: list[float] = field(default_factory=list)
    in_service: list[int] = field(default_factory=list)
    billed: list[int] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    over_capacity: list[float] = field(default_factory=list)
    events: list[ScalingEvent] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures that matter: cost, requests above capacity, scaling activity."""
        total = sum(self.demand_rpm)
        over = sum(self.over_capacity)
        minutes = len(self.demand_rpm)
        ideal = sum(max(self.policy.min_capacity, math.ceil(d / self.fleet.capacity_rpm))
                    for d in self.demand_rpm)
        return {
            "minutes": minutes,
            "requests": round(total),
            "requests_above_capacity": round(over),
            "share_above_capacity": over / total if total else 0.0,
            "instance_hours": sum(self.billed) / 60,
            # Perfect foresight, instant instances: a lower bound to compare the cost with.
            "ideal_instance_hours": ideal / 60,
            "peak_instances": max(self.billed),
            "mean_instances": sum(self.billed) / minutes,
            "scale_outs": sum(e.action == "scale_out" for e in self.events),
            "scale_ins": sum(e.action == "scale_in" for e in self.events),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"policy": asdict(self.policy), "fleet": asdict(self.fleet),
                "summary": self.summary(), "events": [asdict(e) for e in self.events]}


def simulate(demand_rpm: Sequence[float], policy: Policy, fleet: Fleet) -> Simulation:
    """Replay `demand_rpm` (one value per minute) against `policy` with `fleet`'s instances."""
    policy.validate()
    fleet.validate()
    if not demand_rpm:
        raise SimulationError("the traffic curve is empty")
    run = Simulation(policy=policy, fleet=fleet)
    in_service = policy.min_capacity
    pending: list[int] = []  # the minute each provisioning instance starts serving
    last_in_s: float | None = None
    for minute, demand in enumerate(demand_rpm):
        ready = [m for m in pending if m <= minute]
        in_service += len(ready)
        pending = [m for m in pending if m > minute]
        served_capacity = in_service * fleet.capacity_rpm
        metric = demand / in_service
        run.demand_rpm.append(demand)
        run.in_service.append(in_service)
        run.billed.append(in_service + len(pending))
        run.metric.append(metric)
        run.over_capacity.append(max(0.0, demand - served_capacity))
        if pending:  # the endpoint is Updating: SageMaker takes no other update
            continue
        now_s = (minute + 1) * 60  # the alarms evaluate at the end of the minute
        recent = run.metric[-max(HIGH_ALARM_DATAPOINTS, LOW_ALARM_DATAPOINTS):]
        high = (len(recent) >= HIGH_ALARM_DATAPOINTS
                and all(m > policy.target for m in recent[-HIGH_ALARM_DATAPOINTS:]))
        low = (len(recent) >= LOW_ALARM_DATAPOINTS
               and all(m < LOW_ALARM_RATIO * policy.target for m in recent))
        if not (high or low):
            continue
        wanted = desired_capacity(in_service, metric, policy)
        if high and wanted > in_service:
            run.events.append(ScalingEvent(minute, "scale_out", in_service, wanted))
            pending = [minute + 1 + fleet.provisioning_minutes] * (wanted - in_service)
        elif low and wanted < in_service:
            if last_in_s is not None and now_s - last_in_s < policy.scale_in_cooldown_s:
                continue
            run.events.append(ScalingEvent(minute, "scale_in", in_service, wanted))
            in_service = wanted
            last_in_s = now_s
    return run


def sweep(curves: dict[str, Sequence[float]], fleet: Fleet, targets: Sequence[float],
          cooldowns_s: Sequence[int], base: Policy) -> list[dict[str, Any]]:
    """Every (target, scale-in cooldown, scale-out cooldown) on every curve: one row each."""
    rows = []
    for target in targets:
        for scale_in in cooldowns_s:
            for scale_out in cooldowns_s:
                policy = Policy(target=target, scale_in_cooldown_s=scale_in,
                                scale_out_cooldown_s=scale_out,
                                min_capacity=base.min_capacity, max_capacity=base.max_capacity)
                for name, demand in curves.items():
                    summary = simulate(demand, policy, fleet).summary()
                    rows.append({"curve": name, "target": target,
                                 "scale_in_cooldown_s": scale_in,
                                 "scale_out_cooldown_s": scale_out, **summary})
    return rows


def desired_capacity(in_service: int, metric: float, policy: Policy) -> int:
    """Target tracking's capacity for the current metric, within the scalable target's bounds.

    Rounded up, so that the metric lands at or below the target after the change.
    """
    wanted = math.ceil(in_service * metric / policy.target)
    return max(policy.min_capacity, min(policy.max_capacity, wanted))
