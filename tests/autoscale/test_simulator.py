"""The target-tracking simulator on curves small enough to check by hand."""

from __future__ import annotations

import pytest

from breedops.autoscale.simulator import (
    Fleet,
    Policy,
    SimulationError,
    recommended_target,
    simulate,
    sweep,
)

# One instance serves 100 requests a minute; the target keeps it at half that.
FLEET = Fleet(capacity_rpm=100, provisioning_minutes=0)
POLICY = Policy(target=50, scale_in_cooldown_s=300, scale_out_cooldown_s=300,
                min_capacity=1, max_capacity=10)
SPIKE = [40.0] * 10 + [200.0] * 20 + [40.0] * 30


def test_simulate_steady_below_target_never_scales():
    run = simulate([40.0] * 60, POLICY, FLEET)
    summary = run.summary()
    assert run.events == []
    assert summary["instance_hours"] == pytest.approx(1.0)
    assert summary["share_above_capacity"] == 0.0


def test_simulate_spike_scales_out_after_three_datapoints():
    run = simulate(SPIKE, POLICY, FLEET)
    first = run.events[0]
    # Minutes 10, 11 and 12 are above the target: the high alarm fires at the end of minute 12.
    assert (first.minute, first.action, first.from_instances, first.to_instances) == (
        12, "scale_out", 1, 4)
    assert run.in_service[12] == 1 and run.in_service[13] == 4
    # 100 requests above capacity in each of minutes 10-12, out of 5600.
    assert run.summary()["requests_above_capacity"] == 300
    assert run.summary()["share_above_capacity"] == pytest.approx(300 / 5600)


def test_simulate_spike_scales_in_after_fifteen_low_datapoints():
    run = simulate(SPIKE, POLICY, FLEET)
    scale_in = run.events[1]
    # The load drops at minute 30; minutes 30-44 are 15 datapoints below 90 % of the target.
    assert (scale_in.minute, scale_in.action, scale_in.to_instances) == (44, "scale_in", 1)
    assert run.in_service[44] == 4 and run.in_service[45] == 1


def test_simulate_spike_instance_hours_by_hand():
    # 13 minutes x 1 + 32 minutes x 4 + 15 minutes x 1 = 156 instance-minutes.
    assert simulate(SPIKE, POLICY, FLEET).summary()["instance_hours"] == pytest.approx(156 / 60)


def test_simulate_provisioning_delay_bills_before_serving():
    run = simulate(SPIKE, POLICY, Fleet(capacity_rpm=100, provisioning_minutes=5))
    assert run.billed[13] == 4 and run.in_service[13] == 1
    assert run.in_service[18] == 4
    # Minutes 10-17 run one instance against 200 requests a minute.
    assert run.summary()["requests_above_capacity"] == 800


def test_simulate_scale_in_after_spike_uses_current_metric_not_alarm_mean():
    # After the spike the load falls to 20/min for 10 minutes, then settles at 140/min: every
    # one of the 15 datapoints is below 90 % of the target (35 < 45 per instance at 4).
    curve = [40.0] * 10 + [200.0] * 20 + [20.0] * 10 + [140.0] * 30
    run = simulate(curve, POLICY, FLEET)
    # The current metric (140 on 4 instances) asks for ceil(140 / 50) = 3 instances. The mean
    # of the alarm's datapoints (15 per instance) asked for 2: one step too far, and a
    # scale-out back to 3 three minutes later.
    assert [(e.minute, e.action, e.from_instances, e.to_instances) for e in run.events] == [
        (12, "scale_out", 1, 4), (44, "scale_in", 4, 3)]
    assert run.in_service[-1] == 3


def test_simulate_scale_in_cooldown_spaces_successive_scale_ins():
    # The load falls in steps while the low alarm stays in alarm; each step allows fewer.
    curve = [200.0] * 20 + [140.0] * 15 + [100.0] * 5 + [40.0] * 30
    short = simulate(curve, Policy(target=50, scale_in_cooldown_s=60, max_capacity=10), FLEET)
    long = simulate(curve, Policy(target=50, scale_in_cooldown_s=900, max_capacity=10), FLEET)
    assert [e.to_instances for e in short.events if e.action == "scale_in"] == [3, 2, 1]
    # The long cooldown holds the next scale-in for 15 minutes, then acts on the load then.
    assert [(e.minute, e.to_instances) for e in long.events if e.action == "scale_in"] == [
        (34, 3), (49, 1)]


def test_simulate_respects_max_capacity():
    run = simulate([1000.0] * 30, Policy(target=50, max_capacity=3), FLEET)
    assert max(run.billed) == 3
    assert run.summary()["share_above_capacity"] > 0.6


def test_simulate_rejects_impossible_policy():
    with pytest.raises(SimulationError, match="min capacity"):
        simulate([1.0], Policy(target=50, min_capacity=5, max_capacity=2), FLEET)
    with pytest.raises(SimulationError, match="target must be positive"):
        simulate([1.0], Policy(target=0), FLEET)
    with pytest.raises(SimulationError, match="capacity must be positive"):
        simulate([1.0], POLICY, Fleet(capacity_rpm=0))
    with pytest.raises(SimulationError, match="empty"):
        simulate([], POLICY, FLEET)


def test_recommended_target_uses_the_load_test_formula():
    assert recommended_target(20.0) == pytest.approx(600.0)
    with pytest.raises(SimulationError, match="positive"):
        recommended_target(0)


def test_sweep_gives_one_row_per_combination_and_curve():
    rows = sweep({"spike": SPIKE, "flat": [40.0] * 30}, FLEET, [50, 80], [60, 300], POLICY)
    assert len(rows) == 2 * 2 * 2 * 2
    cheap = [r for r in rows if r["curve"] == "spike" and r["target"] == 80]
    dear = [r for r in rows if r["curve"] == "spike" and r["target"] == 50]
    # A higher target runs fewer instances and leaves less headroom.
    assert max(r["instance_hours"] for r in cheap) < min(r["instance_hours"] for r in dear)
