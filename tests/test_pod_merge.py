"""The pod merge's request table (fleetsim.sim.request_merge), checked two independent ways: a
fleet of 3 pods against each pod run on its own (the same requests replayed as a trace of one
pod), and the column-wise merge against pandas' own concat and sort of the pods' tables."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fleetsim
from fleetsim.sim.pods import pod_sizes
from fleetsim.sim.request_merge import merge_requests
from fleetsim.sim.run_record import request_table

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "h100_llama3.yaml"
REPLICAS, PODS = 7, 3


def _trace(path: Path, arrival_s: np.ndarray, input_tokens: np.ndarray, output_tokens: np.ndarray) -> dict:
    pd.DataFrame({"arrival_s": arrival_s, "input_tokens": input_tokens, "output_tokens": output_tokens}).to_csv(
        path, index=False
    )
    return {
        "fleet.router": "least_outstanding",  # draws nothing: a pod's own generator does not matter
        "run.duration_s": 30,
        "workload.classes": [{"name": "chat", "weight": 1.0}],
        "workload.arrival": {"kind": "trace", "path": str(path)},
    }


def test_three_pods_are_three_independent_runs(tmp_path):
    rng = np.random.default_rng(11)
    n = 400
    arrival = np.concatenate([[0.0], np.sort(rng.uniform(0.0, 25.0, n - 1))])  # the replay starts at 0
    inputs, outputs = rng.integers(20, 3000, n), rng.integers(1, 400, n)
    fleet = fleetsim.simulate(
        SCENARIO,
        {**_trace(tmp_path / "fleet.csv", arrival, inputs, outputs), "fleet.replicas": REPLICAS, "fleet.pods": PODS},
        workers=1,
    )
    req = fleet.requests
    # Conservation: every request of the trace exactly once, in the trace's order.
    assert len(req) == n and list(req.index) == list(range(n))
    np.testing.assert_array_equal(req["arrival_s"].to_numpy(), arrival)
    np.testing.assert_array_equal(req["input_tokens"].to_numpy(), inputs)
    assert (req["status"] == "completed").all()
    first = 0
    for k, size in enumerate(pod_sizes(REPLICAS, PODS)):
        mine = req[(req["replica"] >= first) & (req["replica"] < first + size)]
        assert len(mine) > 0
        own = fleetsim.simulate(
            SCENARIO,
            {
                **_trace(tmp_path / f"pod{k}.csv", arrival[mine.index], inputs[mine.index], outputs[mine.index]),
                "fleet.replicas": size,
            },
        ).requests
        # The pod's own run replays its requests shifted to start at 0.
        t0 = arrival[mine.index[0]]
        assert len(own) == len(mine)
        for col in ("input_tokens", "output_tokens", "preemptions", "status"):
            assert list(own[col]) == list(mine[col]), col
        assert list(own["replica"] + first) == list(mine["replica"])
        for col in ("scheduled_s", "first_token_s", "finish_s"):
            np.testing.assert_allclose(own[col].to_numpy() + t0, mine[col].to_numpy(), rtol=0, atol=1e-9)
        for col in ("ttft_s", "tpot_s", "e2e_s"):
            np.testing.assert_allclose(own[col].to_numpy(), mine[col].to_numpy(), rtol=0, atol=1e-9)
        first += size
    assert first == REPLICAS


def _pod_columns(rng, n: int, sessions: bool) -> dict[str, np.ndarray]:
    """A pod's stored columns (RunRecord._request_columns' names and dtypes), random values."""
    arrival = np.sort(rng.uniform(0, 10, n))
    first = arrival + rng.uniform(0, 1, n)
    cols = {
        "arrival_s": arrival,
        "status": rng.integers(0, 3, n).astype(np.int8),
        "class": rng.integers(0, 2, n).astype(np.int8),
        "input_tokens": rng.integers(1, 900, n).astype(np.int32),
        "output_tokens": rng.integers(1, 90, n).astype(np.int32),
        "shared_prefix_tokens": np.zeros(n, np.int32),
        "cached_prompt_tokens": rng.integers(0, 5, n).astype(np.int32),
        "replica": rng.integers(-1, 3, n).astype(np.int32),
        "scheduled_s": arrival + 0.01,
        "first_token_s": first,
        "finish_s": first + rng.uniform(0, 5, n),
        "preemptions": rng.integers(0, 2, n).astype(np.int32),
        "requeues": np.zeros(n, np.int32),
    }
    if sessions:
        cols["session_id"] = rng.integers(0, 9, n)
        cols["turn"] = rng.integers(0, 4, n).astype(np.int32)
    return cols


def _copy(pods):
    return [{k: v.copy() for k, v in cols.items()} for cols in pods]


@pytest.mark.parametrize(
    "sessions", [(True, True, True), (False, False, False), (True, False, True), (False, True, True)]
)
@pytest.mark.parametrize("closed", [False, True])
def test_column_merge_is_pandas_concat_and_sort(sessions, closed):
    rng = np.random.default_rng(3)
    sizes, offsets, classes = [40, 0, 25], np.array([0, 3, 5]), ["a", "b"]
    pods = [_pod_columns(rng, n, s and n > 0) for n, s in zip(sizes, sessions)]
    assign = None if closed else rng.permutation(np.repeat(np.arange(3, dtype=np.uint8), sizes))
    # Reference: each pod's own table, replicas renumbered, concatenated and ordered by pandas.
    frames = []
    for k, cols in enumerate(_copy(pods)):
        df = request_table(cols, classes)
        df["replica"] = np.where(df["replica"] >= 0, df["replica"] + offsets[k], -1).astype(np.int32)
        if assign is not None:
            df.index = pd.Index(np.flatnonzero(assign == k), name="request_id")
        frames.append(df)
    want = pd.concat(frames)
    want = want.sort_values("arrival_s", kind="stable") if closed else want.sort_index()
    want.index = pd.RangeIndex(len(want), name="request_id")
    got = merge_requests(_copy(pods), offsets, assign, classes)
    assert list(got.columns) == list(want.columns)
    assert list(got.dtypes) == list(want.dtypes)
    assert got.equals(want)


def test_the_merge_empties_the_pods_columns():
    rng = np.random.default_rng(4)
    pods = [_pod_columns(rng, 5, False), _pod_columns(rng, 3, False)]
    merge_requests(pods, np.array([0, 3]), None, ["a", "b"])
    assert pods == [{}, {}]
