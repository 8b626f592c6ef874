"""The autoscaler against hand calculations: a step in load, the HPA stabilization window, cold
start from the weights' bytes, and tracking the load-sized fleet with every delay at zero."""

import math

import pytest

from fleetsim.autoscaler import Autoscaler, Signals, cold_start_s, follow_load, replica_series
from fleetsim.errors import SpecError
from fleetsim.spec.dynamics import AutoscalingSpec

STEP = AutoscalingSpec(
    target=0.5,
    tolerance=0.0,
    scrape_interval_s=15.0,
    scale_down_stabilization_s=300.0,
    min_replicas=1,
    max_replicas=20,
    provisioning_delay_s=30.0,
    weights_load_bandwidth_bytes_per_s=2e9,
    engine_start_s=10.0,
    drain_timeout_s=600.0,
)


def step_load(t: float) -> float:
    return 60.0 if 100.0 <= t < 1000.0 else 20.0  # requests/s


def serving_at(scaler: Autoscaler, t: float) -> int:
    return scaler.ready(t)


def test_cold_start_is_provisioning_plus_weights_over_bandwidth_plus_engine():
    # 16 GB of weights over 2 GB/s: 8 s; + 30 s provisioning + 10 s engine start.
    assert cold_start_s(STEP, 16e9) == pytest.approx(48.0)


def test_step_up_follows_after_the_scrape_and_the_cold_start():
    # Capacity 10 req/s per replica at target 0.5: 20 req/s needs 4 replicas, 60 req/s needs 12.
    scaler = follow_load(STEP, step_load, 10.0, 2000.0, initial_replicas=4, cold_start_s=cold_start_s(STEP, 16e9))
    # The step at t = 100 is first seen by the scrape at t = 105 (7 x 15): utilization
    # 60 / 40 = 1.5, desired = ceil(4 x 1.5 / 0.5) = 12; the 8 new replicas serve at 105 + 48 = 153.
    assert serving_at(scaler, 152.9) == 4
    assert serving_at(scaler, 153.0) == 12
    ups = [i for i in scaler.instances if i.launched_s > 0]
    assert len(ups) == 8 and {i.launched_s for i in ups} == {105.0}


def test_scale_down_waits_for_the_stabilization_window():
    scaler = follow_load(STEP, step_load, 10.0, 2000.0, initial_replicas=4, cold_start_s=48.0)
    # Load falls at t = 1000; the scrape at 1005 recommends ceil(12 x (20/120) / 0.5) = 4, but the
    # recommendation of 12 made at 990 stays in the 300 s window until the scrape at
    # 990 + 300 = 1290 (the window keeps scrapes newer than now - 300): 12 replicas until then.
    assert serving_at(scaler, 1289.0) == 12
    assert serving_at(scaler, 1290.0) == 4
    stopped = [i for i in scaler.instances if i.stopped_s is not None]
    assert len(stopped) == 8 and {i.stopped_s for i in stopped} == {1290.0}
    # The newest were removed, each billed to the drain timeout unless reported drained.
    assert {i.released_s for i in stopped} == {1290.0 + 600.0}
    scaler.released(stopped[0].instance_id, 1300.0)
    assert stopped[0].released_s == 1300.0


def test_a_dip_shorter_than_the_window_removes_nothing():
    def dip(t):
        return 20.0 if 500 <= t < 600 else 60.0

    scaler = follow_load(STEP, dip, 10.0, 1200.0, initial_replicas=12, cold_start_s=0.0)
    assert all(i.stopped_s is None for i in scaler.instances)
    assert scaler.committed() == 12


def test_zero_delays_track_the_load_sized_fleet():
    spec = AutoscalingSpec(
        target=0.7,
        tolerance=0.0,
        scrape_interval_s=60.0,
        scale_down_stabilization_s=0.0,
        min_replicas=1,
        max_replicas=1000,
        provisioning_delay_s=0.0,
        engine_start_s=0.0,
        drain_timeout_s=0.0,
    )
    cap = 13.0

    def diurnal(t):  # a day of traffic, 30 to 330 requests/s
        return 180.0 + 150.0 * math.sin(2 * math.pi * t / 86400.0)

    scaler = follow_load(spec, diurnal, cap, 86400.0, initial_replicas=14, cold_start_s=0.0)
    for k in range(0, 1441, 7):
        t = 60.0 * k
        # After each scrape the fleet is the one sized for the load: ceil(load / (capacity x target)).
        assert serving_at(scaler, t) == max(1, math.ceil(diurnal(t) / (cap * spec.target))), t
    series = replica_series(scaler.lifetimes(86400.0), 86400.0, serving=True)
    peak = math.ceil(330.0 / (cap * 0.7))
    assert series["replicas"].max() == peak


def test_queue_signal_and_bounds():
    spec = AutoscalingSpec(signal="queue", target=5.0, tolerance=0.0, min_replicas=2, max_replicas=6)
    scaler = Autoscaler(spec, 2, cold_start_s=0.0)
    # 40 waiting at 5 per replica: ceil(40 / 5) = 8, clamped to 6.
    assert len(scaler.observe(0.0, Signals(queued=40.0))) == 4
    with pytest.raises(SpecError, match="signals.queue"):
        scaler.observe(15.0, Signals(utilization=0.5))
    with pytest.raises(SpecError, match="initial replicas"):
        Autoscaler(spec, 7, cold_start_s=0.0)


def test_spec_refuses_min_above_max():
    with pytest.raises(ValueError, match="min_replicas"):
        AutoscalingSpec(min_replicas=5, max_replicas=2)


def test_scale_up_rate_limits_as_the_hpa_default_policies():
    # HPA's default scale-up: the larger of +100% and +4 pods per period (15 s). From 2 replicas
    # at 5x the target: desired ceil(2 x 5) = 10, limited to max(2 x 2, 2 + 4) = 6; then
    # max(12, 10) caps at the desired 10 on the next scrape.
    spec = AutoscalingSpec(target=0.5, tolerance=0.0, scale_up_max_percent=100.0, scale_up_max_replicas=4)
    scaler = Autoscaler(spec, 2, cold_start_s=0.0)
    assert len(scaler.observe(0.0, Signals(utilization=2.5))) == 4
    assert scaler.committed() == 6
    scaler.observe(15.0, Signals(utilization=2.5 * 2 / 6))  # the same load over 6 replicas
    assert scaler.committed() == 10
