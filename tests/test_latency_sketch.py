"""Latency statistics of large runs: the LogHistogram sketch against numpy's exact percentiles,
the summary's switch between them, and request columns built a chunk at a time."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fleetsim
import fleetsim.metrics
import fleetsim.sim.engine
from fleetsim.metrics import latency_stats
from fleetsim.sketch import RATIO, RELATIVE_ERROR, LogHistogram

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "h100_llama3.yaml"


def test_relative_error_is_the_half_bucket():
    assert RELATIVE_ERROR == pytest.approx(math.sqrt(RATIO) - 1.0)
    assert RELATIVE_ERROR < 0.003


@pytest.mark.parametrize("p", [1, 50, 90, 99, 99.9])
def test_sketched_percentiles_bracket_the_exact_ones(p):
    # 2M lognormal latencies (median ~0.3 s, heavy tail): the sketch's q-quantile is within the
    # stated relative error of one of the two samples numpy's percentile interpolates between.
    v = np.random.default_rng(7).lognormal(math.log(0.3), 1.2, 2_000_000)
    h = LogHistogram()
    for chunk in np.array_split(v, 5):  # filled in pieces, as the summary does
        h.add_values(chunk)
    got = h.quantile(p / 100.0)
    lo = np.percentile(v, p, method="lower")
    hi = np.percentile(v, p, method="higher")
    assert lo / (1 + RELATIVE_ERROR) <= got <= hi * (1 + RELATIVE_ERROR)
    assert got == pytest.approx(np.percentile(v, p), rel=RELATIVE_ERROR + 1e-4)
    assert h.mean == pytest.approx(v.mean(), rel=1e-9)


def test_zero_and_nan_samples():
    h = LogHistogram()
    h.add_values(np.array([0.0, np.nan, 0.0, 2.0]))
    assert h.total == 3  # NaN left out, zeros kept (in the first bucket)
    assert h.quantile(0.5) < 2e-6  # the median is a zero: reported at about the lowest bucket
    assert h.quantile(1.0) == pytest.approx(2.0, rel=RELATIVE_ERROR)


def test_latency_stats_switch_to_the_sketch_above_the_threshold(monkeypatch):
    v = np.random.default_rng(3).gamma(2.0, 0.05, 5000)
    v[::10] = np.nan
    rows = np.arange(len(v)) % 3 != 0
    exact = latency_stats(v, rows)
    kept = v[rows]
    kept = kept[~np.isnan(kept)]
    assert exact["p90"] == np.percentile(kept, 90) and exact["mean"] == kept.mean()
    monkeypatch.setattr(fleetsim.metrics, "EXACT_PERCENTILES_MAX_SAMPLES", 100)
    monkeypatch.setattr(fleetsim.metrics, "SKETCH_CHUNK_ROWS", 777)  # chunks cut the mask too
    sketched = latency_stats(v, rows)
    for k in ("p50", "p90", "p99"):
        assert sketched[k] == pytest.approx(exact[k], rel=RELATIVE_ERROR + 0.01)
    assert sketched["mean"] == pytest.approx(exact["mean"], rel=1e-9)


def test_summary_says_when_percentiles_are_sketched(monkeypatch):
    over = {"fleet.replicas": 2, "run.duration_s": 20}
    exact = fleetsim.simulate(SCENARIO, over).summary
    assert "percentiles" not in exact["latency_s"]  # exact: the summary as it always was
    monkeypatch.setattr(fleetsim.metrics, "EXACT_PERCENTILES_MAX_SAMPLES", 50)
    sketched = fleetsim.simulate(SCENARIO, over).summary
    note = sketched["latency_s"]["percentiles"]
    assert note["method"] == "log_histogram" and note["relative_error"] == RELATIVE_ERROR
    assert note["samples"] > 50
    for metric in ("ttft", "tpot", "e2e"):
        for k in ("p50", "p90", "p99"):
            # a few hundred samples: the neighbours of a high percentile can be far apart
            assert sketched["latency_s"][metric][k] == pytest.approx(exact["latency_s"][metric][k], rel=0.1)
    assert sketched["requests"] == exact["requests"]
    assert sketched["throughput"] == exact["throughput"]


@pytest.mark.parametrize(
    "over",
    [
        {},
        {
            "kv_cache.prefix_caching": True,
            "workload.classes": [
                {
                    "name": "chat",
                    "weight": 0.6,
                    "shared_prefix_tokens": 256,
                    "prompt_cache_hit_fraction": 0.4,
                    "input_tokens": {"kind": "uniform", "min_tokens": 300, "max_tokens": 3000},
                    "output_tokens": {"kind": "uniform", "min_tokens": 1, "max_tokens": 400},
                },
                {
                    "name": "batch",
                    "weight": 0.4,
                    "input_tokens": {"kind": "fixed", "tokens": 900},
                    "output_tokens": {"kind": "fixed", "tokens": 20},
                },
            ],
        },
    ],
    ids=["one_class", "prefix_hits"],
)
def test_request_columns_built_in_chunks_give_the_same_run(monkeypatch, over):
    over = {"fleet.replicas": 2, "run.duration_s": 15, **over}
    whole = fleetsim.simulate(SCENARIO, over)
    monkeypatch.setattr(fleetsim.sim.engine, "ADD_CHUNK_ROWS", 7)
    chunked = fleetsim.simulate(SCENARIO, over)
    assert len(whole.requests) > 7 * 10
    pd.testing.assert_frame_equal(chunked.requests, whole.requests)
    assert chunked.summary == whole.summary
