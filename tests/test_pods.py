"""fleet.pods > 1: the fleet's arrivals split over pods behind their own routers, run apart and
merged. Checked against what the split must preserve, not against the code's own figures."""

from pathlib import Path

import numpy as np
import pytest

import fleetsim
from fleetsim.sim.pods import pod_sizes

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "h100_llama3.yaml"
SMALL = {"fleet.replicas": 5, "workload.arrival.rate_per_s": 40.0, "run.duration_s": 30}


def test_pod_sizes_are_as_equal_as_whole_replicas_allow():
    assert pod_sizes(5, 2) == [3, 2]
    assert pod_sizes(1024, 3) == [342, 341, 341]
    assert pod_sizes(4, 4) == [1, 1, 1, 1]


@pytest.fixture(scope="module")
def one_and_two():
    one = fleetsim.simulate(SCENARIO, SMALL)
    two = fleetsim.simulate(SCENARIO, {**SMALL, "fleet.pods": 2}, workers=1)
    return one, two


def test_pods_see_the_fleets_arrivals(one_and_two):
    one, two = one_and_two
    # The same requests arrive (generated once from the run's seed), in the fleet's order.
    for col in ("arrival_s", "input_tokens", "output_tokens"):
        np.testing.assert_array_equal(two.requests[col].to_numpy(), one.requests[col].to_numpy())
    assert two.summary["requests"]["arrived"] == one.summary["requests"]["arrived"]
    assert two.summary["requests"]["completed"] == one.summary["requests"]["completed"]


def test_every_replica_serves_and_the_split_follows_pod_size(one_and_two):
    _, two = one_and_two
    replica = two.requests["replica"].to_numpy()
    assert sorted(set(replica.tolist())) == [0, 1, 2, 3, 4]
    assert list(two.replicas["replica"]) == [0, 1, 2, 3, 4]
    first_pod = np.isin(replica, [0, 1, 2]).mean()  # 3 of 5 replicas: a 0.6 share
    n = len(replica)
    assert abs(first_pod - 0.6) < 4 * np.sqrt(0.6 * 0.4 / n)


def test_energy_covers_the_whole_run_for_every_replica(one_and_two):
    _, two = one_and_two
    # A replica draws at least idle power from 0 to the end of the run, the pods that finished
    # early included.
    idle_w = two.replicas["energy_j"].min() / two.summary["simulated_s"]
    assert idle_w > 0
    ts = two.timeseries
    assert ts["gpu_energy_j"].is_monotonic_increasing
    assert ts["output_tokens"].iloc[-1] == int(two.requests["output_tokens"].sum())


@pytest.mark.slow
def test_workers_do_not_change_the_result(one_and_two):
    _, two = one_and_two
    pooled = fleetsim.simulate(SCENARIO, {**SMALL, "fleet.pods": 2}, workers=2)
    assert pooled.to_json() == two.to_json()
    assert pooled.requests.equals(two.requests)


@pytest.mark.slow
def test_pods_on_dask_give_the_same_result(one_and_two):
    pytest.importorskip("dask.distributed")
    _, two = one_and_two
    on_dask = fleetsim.simulate(SCENARIO, {**SMALL, "fleet.pods": 2}, workers=2, scheduler="local")
    assert on_dask.to_json() == two.to_json()
    assert on_dask.requests.equals(two.requests)


def test_closed_loop_users_split_over_pods():
    r = fleetsim.simulate(
        SCENARIO,
        {
            "fleet.replicas": 3,
            "fleet.pods": 3,
            "workload.arrival": {"kind": "closed", "users": 7},
            "run.duration_s": 10,
        },
        workers=1,
    )
    assert r.summary["requests"]["completed"] > 0
    assert r.summary["concurrency"]["max_running"] <= 7


def test_an_unknown_scheduler_is_one_line_and_exit_2():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "fleetsim", "run", str(SCENARIO), "--set", "fleet.replicas=4", "--set", "fleet.pods=2"]
        + ["--set", "run.duration_s=5", "--scheduler", "bogus"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --scheduler: 'bogus' is not 'local' or tcp://HOST:PORT"]
