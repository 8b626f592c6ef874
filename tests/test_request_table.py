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
