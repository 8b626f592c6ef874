"""The per-request table written in row groups reads back as the table (values, dtypes, names)."""

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

import fleetsim
from fleetsim.simulation import write_requests_parquet

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "h100_llama3.yaml"


def test_chunked_parquet_reads_back_as_the_table(tmp_path):
    r = fleetsim.simulate(SCENARIO, {"fleet.replicas": 2, "run.duration_s": 20})
    path = tmp_path / "requests.parquet"
    write_requests_parquet(r.requests, path, rows=100)
    assert pq.ParquetFile(path).num_row_groups == -(-len(r.requests) // 100)
    back = pd.read_parquet(path)
    assert back.index.name == "request_id"
    assert back.index.tolist() == list(range(len(r.requests)))
    pd.testing.assert_frame_equal(back, r.requests, check_index_type=False)


def test_a_drain_is_not_sampled_beyond_the_plan():
    # An overloaded replica: the drain after 10 s of arrivals is longer than the arrivals. The
    # series holds the planned samples (every 10/400 s up to the end of arrivals), then one row
    # at the end of the run; the run still ends on the sampler's clock, after the last completion.
    r = fleetsim.simulate(SCENARIO, {"fleet.replicas": 1, "workload.arrival.rate_per_s": 120.0, "run.duration_s": 10})
    ts = r.timeseries
    end_s = 10.0
    planned = ts[ts["time_s"] < end_s]
    assert len(planned) in (400, 401)  # 0, 0.025, ... (the 400th lands on 10 s give or take a rounding)
    assert len(ts) <= len(planned) + 2
    assert ts["time_s"].iloc[-1] == r.summary["simulated_s"]
    assert r.summary["simulated_s"] >= float(r.requests["finish_s"].max())
    assert r.summary["simulated_s"] > 2 * end_s  # the drain outlasts the arrivals
    assert ts["running"].iloc[-1] == 0 and ts["queued"].iloc[-1] == 0
