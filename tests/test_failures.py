"""Failure processes: published rates recomputed from the study's own counts, closed-form
availability against a long draw, TP groups down when any GPU is, determinism per seed."""

import math

import numpy as np
import pytest

from fleetsim.errors import SpecError
from fleetsim.failures import (
    RELIABILITY_FILE,
    FailureProcess,
    downtime_s,
    fleet_availability,
    processes_of,
    replica_availability,
    replica_outages,
    replica_servers,
    study_mtbf_h,
    unit_outages,
)
from fleetsim.spec.dynamics import FailureSpec
from fleetsim.spec.yaml_file import read_mapping

H = 3600.0


def test_llama3_counts_give_the_published_total_and_the_mtbfs():
    # The Llama 3 paper (arXiv 2407.21783, Table 5): 419 unexpected interruptions in 54 days on
    # 16,384 H100. GPU rows: 148 + 72 + 19 + 17 + 6 + 6 = 268; host, network and unplanned host
    # maintenance rows: 35 + 32 + 7 + 3 + 3 + 2 + 2 + 2 + 2 = 88 on 16,384 / 8 = 2,048 servers.
    rates = study_mtbf_h("llama3-405b-2024")
    assert rates["gpu_mtbf_h"] == pytest.approx(16384 * 54 * 24 / 268)  # ~79,230 h
    assert rates["server_mtbf_h"] == pytest.approx(2048 * 54 * 24 / 88)  # ~30,162 h
    rows = read_mapping(RELIABILITY_FILE, "reliability")["studies"]["llama3-405b-2024"]["breakdown"]
    assert sum(r["count"] for r in rows) == 419


def test_meta_rsc_reads_the_8_gpu_job_mttf_as_a_per_gpu_rate():
    # Kokolis et al. (HPCA 2025): an 8-GPU job fails every ~47 days -> one GPU every 8 x 47 days.
    assert study_mtbf_h("meta-rsc-a100-2024")["gpu_mtbf_h"] == pytest.approx(8 * 47 * 24)


def test_spec_overrides_the_study_field_by_field():
    gpu, server = processes_of(FailureSpec(gpu_mtbf_h=1000.0, server_repair_h=2.0))
    assert gpu is not None and server is not None
    assert gpu.mtbf_s == 1000.0 * H and gpu.repair_s == 8.0 * H
    assert server.repair_s == 2.0 * H
    with pytest.raises(SpecError, match="failures.source"):
        processes_of(FailureSpec(source="nope"))


def occupation_sigma(up_s, down_s, horizon_s, units):
    """Standard deviation of the down-time fraction of `units` independent two-state Markov units
    over horizon_s: the occupation-time variance 2 u^2 d^2 / ((u + d)^3 T) per unit."""
    return math.sqrt(2 * up_s**2 * down_s**2 / ((up_s + down_s) ** 3 * horizon_s) / units)


def test_unit_availability_matches_the_closed_form_on_a_long_draw():
    p = FailureProcess(mtbf_s=1000 * H, repair_s=50 * H)
    horizon = 2e6 * H
    out = unit_outages(np.random.default_rng(1), p, 16, horizon)
    down_fraction = float((out["up_s"].clip(upper=horizon) - out["down_s"]).sum()) / (16 * horizon)
    expected = 50 / 1050  # 1 - MTBF / (MTBF + MTTR)
    assert abs(down_fraction - expected) < 5 * occupation_sigma(1000 * H, 50 * H, horizon, 16)


def test_weibull_keeps_the_mean_so_the_availability():
    p = FailureProcess(mtbf_s=500 * H, repair_s=25 * H, distribution="weibull", weibull_shape=0.7)
    draws = p.draw_up_s(np.random.default_rng(3), 400_000)
    # Weibull k = 0.7: CV = sqrt(Gamma(1 + 2/k) / Gamma(1 + 1/k)^2 - 1) ~ 1.46; 5 sigma of the mean.
    cv = math.sqrt(math.gamma(1 + 2 / 0.7) / math.gamma(1 + 1 / 0.7) ** 2 - 1)
    assert abs(draws.mean() / (500 * H) - 1) < 5 * cv / math.sqrt(len(draws))
    assert p.availability == pytest.approx(500 / 525)


def test_a_tp_group_is_down_when_any_gpu_or_its_server_is():
    gpu = FailureProcess(mtbf_s=2000 * H, repair_s=40 * H, repair_distribution="fixed")
    server = FailureProcess(mtbf_s=4000 * H, repair_s=20 * H)
    horizon = 4e5 * H
    out = replica_outages(np.random.default_rng(7), gpu, server, replicas=8, tp=4, gpus_per_server=8, horizon_s=horizon)
    # Two TP-4 replicas per 8-GPU server; each spans one server: A = (2000/2040)^4 x (4000/4020).
    a = (2000 / 2040) ** 4 * (4000 / 4020)
    assert replica_availability(gpu, server, replica=3, tp=4, gpus_per_server=8) == pytest.approx(a)
    assert fleet_availability(gpu, server, replicas=8, tp=4, gpus_per_server=8) == pytest.approx(a)
    measured = 1 - downtime_s(out, horizon) / (8 * horizon)
    # Unavailability ~2.4%; the draw holds ~8 x 400k / 500 h = 6,400 replica outages: within 0.3%.
    assert measured == pytest.approx(a, abs=3e-3)
    # Merged: no two outages of one replica overlap.
    for _, g in out.groupby("replica"):
        assert (g["down_s"].to_numpy()[1:] > g["up_s"].to_numpy()[:-1]).all()
    assert set(out["cause"]) == {"gpu", "server"}


def test_replicas_spanning_servers():
    assert list(replica_servers(0, 16, 8)) == [0, 1]
    assert list(replica_servers(1, 4, 8)) == [0]
    assert list(replica_servers(2, 4, 8)) == [1]
    assert list(replica_servers(1, 3, 8)) == [0]
    assert list(replica_servers(2, 3, 8)) == [0, 1]  # GPUs 6, 7, 8


def test_same_seed_same_timeline():
    gpu, server = processes_of(FailureSpec(gpu_mtbf_h=100.0, server_mtbf_h=300.0))
    kw = dict(replicas=16, tp=2, gpus_per_server=8, horizon_s=5000 * H)
    a = replica_outages(np.random.default_rng(11), gpu, server, **kw)
    b = replica_outages(np.random.default_rng(11), gpu, server, **kw)
    c = replica_outages(np.random.default_rng(12), gpu, server, **kw)
    assert a.equals(b) and not a.equals(c)


def test_bad_process_is_one_line():
    with pytest.raises(SpecError, match="mtbf_s"):
        FailureProcess(mtbf_s=0.0, repair_s=1.0)


def test_spot_reclaims_as_a_whole_instance_process():
    from fleetsim.failures import outage_summary, spot_reclaim_process

    p = spot_reclaim_process(0.05, 300.0)  # one reclaim per 20 instance-hours, back after 5 minutes
    assert p is not None and p.mtbf_s == 20 * H and p.repair_s == 300.0
    assert spot_reclaim_process(0.0, 300.0) is None
    horizon = 20000 * H
    out = replica_outages(np.random.default_rng(2), None, p, replicas=4, tp=8, gpus_per_server=8, horizon_s=horizon)
    s = outage_summary(out, 4, horizon)
    # 4 instances x 20,000 h / (20 h + 5 min) ~ 3,988 reclaims; Poisson count: 5 sigma ~ 316.
    assert abs(s["outages"] - 4 * horizon / (p.mtbf_s + p.repair_s)) < 5 * math.sqrt(4 * 20000 / 20)
    assert s["by_cause"] == {"server": s["outages"]}
    # Down fraction = reclaims x 300 s / (4 T): its sigma ~ sqrt(3,988) x 300 / (4 T) ~ 6.6e-5; 5 sigma.
    assert s["availability"] == pytest.approx(p.availability, abs=3.3e-4)
