"""Workload model: arrival processes and request lengths against their closed forms.

Every statistical check uses a fixed seed and a 99.9% bound derived from the distribution, so a
failure means a wrong model, not bad luck.
"""

import csv
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import stats

from fleetsim.errors import FleetsimWarning, SpecError
from fleetsim.spec.workload import WorkloadSpec
from fleetsim.workload import (
    LengthSampler,
    RequestBatch,
    generate_requests,
    load_trace,
    mean_arrival_rate_per_s,
    mean_lengths,
    think_time_sampler,
    trace_requests_after,
    trace_row_bound,
)

Z999 = stats.norm.ppf(1 - 0.001 / 2)  # two-sided 99.9%: 3.29
AZURE_CONV = Path("/work/shared/traces/AzureLLMInferenceTrace_conv.csv")
VIDUR_1500 = Path("/work/shared/peers/workloads/splitwise_conv_poisson0.75_n1500_seed42.csv")

CHAT = {
    "name": "chat",
    "input_tokens": {"kind": "fixed", "tokens": 100},
    "output_tokens": {"kind": "fixed", "tokens": 10},
}


def workload(arrival: dict, classes=None) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"arrival": arrival, "classes": classes or [CHAT]})


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def chi2_ok(observed: np.ndarray, expected: np.ndarray) -> bool:
    """Pearson chi-square of bin counts against expected counts, at the 99.9% level."""
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return statistic < stats.chi2.ppf(0.999, df=len(observed))


# --------------------------------------------------------------------------- the spec, as users write it


def test_spec_reads_the_documented_yaml_shape():
    import yaml

    text = """
    arrival: {kind: poisson, rate_per_s: 12.0}
    classes:
      - name: chat
        weight: 1.0
        input_tokens: {kind: lognormal, mean_tokens: 600, sigma: 1.0, min_tokens: 1, max_tokens: 8192}
        output_tokens: {kind: fixed, tokens: 256}
        shared_prefix_tokens: 0
        slo_class: interactive
    """
    spec = WorkloadSpec.model_validate(yaml.safe_load(text))
    assert spec.arrival.rate_per_s == 12.0
    assert spec.classes[0].slo_class == "interactive"
    with pytest.raises(ValidationError):  # frozen
        spec.arrival.rate_per_s = 1.0


# --------------------------------------------------------------------------- poisson


def test_poisson_mean_interarrival_is_one_over_rate():
    rate_per_s, n = 12.0, 200_000
    batch = generate_requests(workload({"kind": "poisson", "rate_per_s": rate_per_s}), rng(1), max_requests=n)
    assert len(batch) == n
    gaps_s = np.diff(np.concatenate(([0.0], batch.arrival_s)))
    # Exponential gaps: standard deviation = mean = 1 / rate.
    half_width_s = Z999 * (1 / rate_per_s) / math.sqrt(n)
    assert abs(gaps_s.mean() - 1 / rate_per_s) < half_width_s
    assert abs(gaps_s.std() * rate_per_s - 1.0) < 0.02  # CV of an exponential is 1


def test_poisson_counts_have_mean_equal_variance_rate_times_duration():
    # Dispersion test over independent runs: N(T) ~ Poisson(rate T), so (n-1) s^2 / (rate T)
    # follows chi-square(n-1), and the sample mean sits within z sqrt(rate T / n) of rate T.
    rate_per_s, duration_s, runs = 4.0, 5.0, 2000
    spec = workload({"kind": "poisson", "rate_per_s": rate_per_s})
    generator = rng(2)
    counts = np.array([len(generate_requests(spec, generator, duration_s=duration_s)) for _ in range(runs)])
    lam = rate_per_s * duration_s
    assert abs(counts.mean() - lam) < Z999 * math.sqrt(lam / runs)
    dispersion = (runs - 1) * counts.var(ddof=1) / lam
    assert stats.chi2.ppf(0.0005, runs - 1) < dispersion < stats.chi2.ppf(0.9995, runs - 1)


def test_duration_cut_keeps_everything_before_and_nothing_after():
    spec = workload({"kind": "poisson", "rate_per_s": 50.0})
    long = generate_requests(spec, rng(3), max_requests=10_000)
    cut_s = float(long.arrival_s[5000])
    # Same seed, other stopping rule: the same stream, cut exactly after arrival 5000.
    short = generate_requests(spec, rng(3), duration_s=cut_s)
    np.testing.assert_array_equal(short.arrival_s, long.arrival_s[:5001])


def test_max_requests_and_duration_stop_at_whichever_comes_first():
    spec = workload({"kind": "poisson", "rate_per_s": 100.0})
    assert len(generate_requests(spec, rng(), duration_s=1000.0, max_requests=7)) == 7
    few = generate_requests(spec, rng(), duration_s=0.5, max_requests=10**6)
    assert 0 < len(few) < 200 and few.arrival_s[-1] <= 0.5


# --------------------------------------------------------------------------- gamma


@pytest.mark.parametrize("cv", [0.5, 2.0, 4.0])
def test_gamma_interarrivals_match_rate_and_cv(cv):
    rate_per_s, n = 5.0, 200_000
    spec = workload({"kind": "gamma", "rate_per_s": rate_per_s, "cv": cv})
    gaps_s = np.diff(np.concatenate(([0.0], generate_requests(spec, rng(4), max_requests=n).arrival_s)))
    assert abs(gaps_s.mean() * rate_per_s - 1.0) < Z999 * cv / math.sqrt(n)
    # Gamma with shape k = 1/cv^2 has excess kurtosis 6 cv^2, so the sample variance has relative
    # variance (2 + 6 cv^2) / n; the CV's relative error is at most half of that plus the mean's.
    rel_sd = math.sqrt((2 + 6 * cv**2) / (4 * n)) + cv / math.sqrt(n)
    assert abs(gaps_s.std() / gaps_s.mean() / cv - 1.0) < Z999 * rel_sd


def test_gamma_with_cv_one_is_poisson_in_distribution():
    spec = workload({"kind": "gamma", "rate_per_s": 2.0, "cv": 1.0})
    gaps_s = np.diff(generate_requests(spec, rng(5), max_requests=20_000).arrival_s)
    assert stats.kstest(gaps_s, "expon", args=(0, 0.5)).pvalue > 0.001


# --------------------------------------------------------------------------- diurnal


def test_diurnal_sinusoid_hourly_counts_follow_the_integrated_rate():
    mean_per_s, peak_to_mean, period_s, peak_s = 2.0, 1.8, 86400.0, 14 * 3600.0
    spec = workload(
        {"kind": "diurnal", "mean_rate_per_s": mean_per_s, "peak_to_mean": peak_to_mean, "peak_time_s": peak_s}
    )
    batch = generate_requests(spec, rng(6), duration_s=period_s)
    edges_s = np.arange(25) * 3600.0
    omega = 2 * np.pi / period_s

    def integral(t):  # closed form of  mean (1 + a cos(omega (t - peak)))  from 0 to t
        a = peak_to_mean - 1
        return mean_per_s * (t + a / omega * (np.sin(omega * (t - peak_s)) + np.sin(omega * peak_s)))

    expected = np.diff(integral(edges_s))
    observed = np.histogram(batch.arrival_s, bins=edges_s)[0]
    assert chi2_ok(observed, expected)
    assert np.argmax(observed) in (13, 14)  # the busiest hour is around the peak
    assert mean_arrival_rate_per_s(spec) == mean_per_s


def test_diurnal_piecewise_segment_counts_match_rates():
    rates_per_s, segment_s = [1.0, 0.0, 5.0, 2.0], 600.0
    spec = workload({"kind": "diurnal", "rates_per_s": rates_per_s, "segment_s": segment_s})
    batch = generate_requests(spec, rng(7), duration_s=2 * 4 * segment_s)  # the profile repeats
    observed = np.histogram(batch.arrival_s, bins=np.arange(9) * segment_s)[0]
    expected = np.array(rates_per_s * 2) * segment_s
    assert observed[1] == 0 and observed[5] == 0  # a zero-rate segment gets nothing
    nonzero = expected > 0
    assert chi2_ok(observed[nonzero], expected[nonzero])
    assert np.all(np.diff(batch.arrival_s) >= 0)
    assert mean_arrival_rate_per_s(spec) == pytest.approx(2.0)


def test_diurnal_with_max_requests_only():
    spec = workload({"kind": "diurnal", "mean_rate_per_s": 1.0, "peak_to_mean": 2.0, "period_s": 100.0})
    assert len(generate_requests(spec, rng(), max_requests=5000)) == 5000
    piecewise = workload({"kind": "diurnal", "rates_per_s": [0.0, 3.0], "segment_s": 10.0})
    batch = generate_requests(piecewise, rng(), max_requests=5000)
    assert len(batch) == 5000
    assert np.all((batch.arrival_s % 20.0) >= 10.0)  # only in the second half of each period


# --------------------------------------------------------------------------- offline, closed


def test_offline_sends_every_request_at_time_zero():
    batch = generate_requests(workload({"kind": "offline", "requests": 2500}), rng())
    assert len(batch) == 2500 and np.all(batch.arrival_s == 0.0)
    assert mean_arrival_rate_per_s(workload({"kind": "offline", "requests": 3})) is None


def test_closed_loop_is_driven_by_samplers_not_generate_requests():
    spec = workload({"kind": "closed", "users": 8, "think_time": {"kind": "exponential", "mean_s": 2.0}})
    with pytest.raises(SpecError, match="closed"):
        generate_requests(spec, rng(), duration_s=10.0)
    assert mean_arrival_rate_per_s(spec) is None

    think = think_time_sampler(spec, rng(8))
    draws_s = np.array([think() for _ in range(50_000)])
    assert abs(draws_s.mean() - 2.0) < Z999 * 2.0 / math.sqrt(len(draws_s))

    fixed = workload({"kind": "closed", "users": 1, "think_time": {"kind": "fixed", "value_s": 0.5}})
    assert think_time_sampler(fixed, rng())() == 0.5
    assert think_time_sampler(workload({"kind": "closed", "users": 1}), rng())() == 0.0


def test_length_sampler_draws_one_request_at_a_time_from_the_class_mix():
    classes = [
        {
            "name": "short",
            "weight": 3.0,
            "input_tokens": {"kind": "fixed", "tokens": 10},
            "output_tokens": {"kind": "fixed", "tokens": 1},
            "shared_prefix_tokens": 4,
        },
        {
            "name": "long",
            "weight": 1.0,
            "input_tokens": {"kind": "uniform", "min_tokens": 100, "max_tokens": 200},
            "output_tokens": {"kind": "fixed", "tokens": 50},
        },
    ]
    sampler = LengthSampler(workload({"kind": "closed", "users": 4}, classes), rng(9))
    rows = [sampler.next() for _ in range(10_000)]  # crosses several pre-drawn blocks
    assert all(isinstance(v, int) for v in rows[0])
    short = [r for r in rows if r[2] == 0]
    assert all(r == (10, 1, 0, 4) for r in short)
    assert all(100 <= r[0] <= 200 and r[1] == 50 and r[3] == 0 for r in rows if r[2] == 1)
    p, n = 0.75, len(rows)
    assert abs(len(short) / n - p) < Z999 * math.sqrt(p * (1 - p) / n)


# --------------------------------------------------------------------------- lengths and classes


def test_lognormal_mean_tokens_is_the_arithmetic_mean():
    dist = {"kind": "lognormal", "mean_tokens": 600, "sigma": 0.8, "min_tokens": 1, "max_tokens": 10_000_000}
    spec = workload(
        {"kind": "poisson", "rate_per_s": 1.0},
        [{"name": "c", "input_tokens": dist, "output_tokens": {"kind": "fixed", "tokens": 1}}],
    )
    n = 200_000
    tokens = generate_requests(spec, rng(10), max_requests=n).input_tokens
    sd = 600 * math.sqrt(math.exp(0.8**2) - 1)  # lognormal standard deviation
    assert abs(tokens.mean() - 600) < Z999 * sd / math.sqrt(n)
    assert mean_lengths(spec)[0] == pytest.approx(600, abs=0.01)


def test_clipped_lognormal_mean_is_exact():
    dist = {"kind": "lognormal", "mean_tokens": 600, "sigma": 1.2, "min_tokens": 200, "max_tokens": 1500}
    spec = workload(
        {"kind": "poisson", "rate_per_s": 1.0},
        [{"name": "c", "input_tokens": dist, "output_tokens": {"kind": "fixed", "tokens": 1}}],
    )
    tokens = generate_requests(spec, rng(11), max_requests=200_000).input_tokens
    assert tokens.min() == 200 and tokens.max() == 1500
    expected = mean_lengths(spec)[0]
    assert expected < 600  # clipping the long tail lowers the mean
    assert abs(tokens.mean() - expected) < Z999 * tokens.std() / math.sqrt(len(tokens))


def test_mean_lengths_of_simple_kinds_and_mixtures():
    classes = [
        {
            "name": "a",
            "weight": 1.0,
            "input_tokens": {"kind": "uniform", "min_tokens": 10, "max_tokens": 20},
            "output_tokens": {"kind": "empirical", "values": [1, 3], "weights": [3, 1]},
        },
        {
            "name": "b",
            "weight": 3.0,
            "input_tokens": {"kind": "fixed", "tokens": 100},
            "output_tokens": {"kind": "empirical", "values": [4, 8]},
        },
    ]
    spec = workload({"kind": "poisson", "rate_per_s": 1.0}, classes)
    assert mean_lengths(spec) == pytest.approx((0.25 * 15 + 0.75 * 100, 0.25 * 1.5 + 0.75 * 6))
    batch = generate_requests(spec, rng(12), max_requests=100_000)
    assert set(np.unique(batch.output_tokens)) <= {1, 3, 4, 8}
    assert batch.input_tokens[batch.class_index == 0].min() == 10
    assert batch.input_tokens[batch.class_index == 0].max() == 20


def test_class_mix_proportions_match_weights():
    weights = [1.0, 2.0, 7.0]
    classes = [dict(CHAT, name=f"c{i}", weight=w) for i, w in enumerate(weights)]
    n = 100_000
    batch = generate_requests(workload({"kind": "poisson", "rate_per_s": 1.0}, classes), rng(13), max_requests=n)
    counts = np.bincount(batch.class_index, minlength=3)
    for count, w in zip(counts, weights):
        p = w / sum(weights)
        assert abs(count / n - p) < Z999 * math.sqrt(p * (1 - p) / n)
    assert batch.class_index.dtype == np.int32


def test_shared_prefix_is_part_of_each_class_input():
    classes = [dict(CHAT, shared_prefix_tokens=64)]
    batch = generate_requests(workload({"kind": "poisson", "rate_per_s": 1.0}, classes), rng(), max_requests=10)
    assert np.all(batch.shared_prefix_tokens == 64) and np.all(batch.input_tokens == 100)


# --------------------------------------------------------------------------- traces


def trace_spec(path, **extra) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"arrival": {"kind": "trace", "path": str(path), **extra}})


@pytest.mark.skipif(not AZURE_CONV.exists(), reason="shared Azure traces are absent")
def test_azure_trace_replays_every_request_from_time_zero():
    batch = generate_requests(trace_spec(AZURE_CONV), rng())
    with AZURE_CONV.open() as f:
        rows = list(csv.DictReader(f))
    assert len(batch) == len(rows) == 19_366
    assert batch.arrival_s[0] == 0.0 and np.all(np.diff(batch.arrival_s) >= 0)
    np.testing.assert_array_equal(batch.input_tokens, [int(r["ContextTokens"]) for r in rows])
    np.testing.assert_array_equal(batch.output_tokens, [int(r["GeneratedTokens"]) for r in rows])
    # The trace spans one hour (18:15:46.68 to 19:14:08.40).
    assert batch.arrival_s[-1] == pytest.approx(3501.721937, abs=1e-6)

    faster = generate_requests(trace_spec(AZURE_CONV, speedup=2.0, max_requests=100), rng())
    np.testing.assert_allclose(faster.arrival_s, batch.arrival_s[:100] / 2)
    with pytest.warns(FleetsimWarning, match="arrive after run.duration_s = 60 s"):
        cut = generate_requests(trace_spec(AZURE_CONV), rng(), duration_s=60.0)
    assert len(cut) == np.sum(batch.arrival_s <= 60.0) == len(batch) - cut.dropped_after_duration
    assert mean_lengths(trace_spec(AZURE_CONV))[0] == pytest.approx(batch.input_tokens.mean())


@pytest.mark.skipif(not VIDUR_1500.exists(), reason="shared peer workloads are absent")
def test_vidur_trace_format_loads():
    table = load_trace(VIDUR_1500)
    assert table.format == "vidur" and len(table) == 1500 and table.arrival_s[0] == 0.0
    batch = generate_requests(trace_spec(VIDUR_1500), rng())
    assert len(batch) == 1500 and np.all(np.diff(batch.arrival_s) >= 0)
    rate = mean_arrival_rate_per_s(trace_spec(VIDUR_1500))
    assert 0.6 < rate < 0.9  # generated as Poisson at 0.75 requests per second


def test_native_trace_format_is_sorted_and_shifted(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,input_tokens,output_tokens\n12.5,10,2\n10.0,20,0\n11.0,30,3\n")
    spec = WorkloadSpec.model_validate(
        {
            "arrival": {"kind": "trace", "path": str(path)},
            "classes": [{"name": "rag", "shared_prefix_tokens": 15}],
        }
    )
    batch = generate_requests(spec, rng())
    np.testing.assert_array_equal(batch.arrival_s, [0.0, 1.0, 2.5])
    np.testing.assert_array_equal(batch.input_tokens, [20, 30, 10])
    np.testing.assert_array_equal(batch.output_tokens, [1, 3, 2])  # a 0-token output counts as 1
    np.testing.assert_array_equal(batch.shared_prefix_tokens, [15, 15, 9])  # capped below input


# --------------------------------------------------------------------------- determinism, invariants


ARRIVALS = st.one_of(
    st.builds(lambda r: {"kind": "poisson", "rate_per_s": r}, st.floats(0.1, 100)),
    st.builds(lambda r, cv: {"kind": "gamma", "rate_per_s": r, "cv": cv}, st.floats(0.1, 100), st.floats(0.2, 5)),
    st.builds(
        lambda r, p: {"kind": "diurnal", "mean_rate_per_s": r, "peak_to_mean": p, "period_s": 60.0},
        st.floats(0.1, 100),
        st.floats(1, 2),
    ),
    st.builds(
        lambda rs: {"kind": "diurnal", "rates_per_s": rs, "segment_s": 7.0},
        st.lists(st.floats(0, 50), min_size=1, max_size=5).filter(lambda rs: max(rs) > 0),
    ),
)
LENGTHS = st.one_of(
    st.builds(lambda t: {"kind": "fixed", "tokens": t}, st.integers(1, 5000)),
    st.builds(
        lambda a, d: {"kind": "uniform", "min_tokens": a, "max_tokens": a + d},
        st.integers(1, 1000),
        st.integers(0, 1000),
    ),
    st.builds(
        lambda m, s, a, d: {"kind": "lognormal", "mean_tokens": m, "sigma": s, "min_tokens": a, "max_tokens": a + d},
        st.floats(1, 5000),
        st.floats(0.05, 2.5),
        st.integers(1, 100),
        st.integers(0, 10_000),
    ),
    st.builds(lambda v: {"kind": "empirical", "values": v}, st.lists(st.integers(1, 5000), min_size=1, max_size=6)),
)


@settings(max_examples=40, deadline=None)
@given(
    arrival=ARRIVALS,
    input_tokens=LENGTHS,
    output_tokens=LENGTHS,
    duration_s=st.floats(0, 60),
    seed=st.integers(0, 2**32 - 1),
)
def test_same_seed_same_batch_and_invariants_hold(arrival, input_tokens, output_tokens, duration_s, seed):
    classes = [
        {"name": "a", "input_tokens": input_tokens, "output_tokens": output_tokens},
        {
            "name": "b",
            "weight": 0.5,
            "input_tokens": {"kind": "fixed", "tokens": 3},
            "output_tokens": output_tokens,
            "shared_prefix_tokens": 2,
        },
    ]
    spec = workload(arrival, classes)
    first = generate_requests(spec, rng(seed), duration_s=duration_s)
    again = generate_requests(spec, rng(seed), duration_s=duration_s)
    for name in RequestBatch.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert np.all(np.diff(first.arrival_s) >= 0)
    assert np.all((first.arrival_s >= 0) & (first.arrival_s <= duration_s))
    assert np.all(first.input_tokens >= 1) and np.all(first.output_tokens >= 1)
    assert np.all(first.shared_prefix_tokens < first.input_tokens)
    assert first.arrival_s.dtype == np.float64 and first.input_tokens.dtype == np.int64


# --------------------------------------------------------------------------- bad input


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_missing_trace_names_the_field_and_path(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(SpecError) as exc:
        generate_requests(trace_spec(missing), rng())
    assert one_line(exc) == f"workload.arrival.path: '{missing}' does not exist"


def test_empty_trace_is_rejected(tmp_path):
    header_only = tmp_path / "empty.csv"
    header_only.write_text("arrival_s,input_tokens,output_tokens\n")
    with pytest.raises(SpecError) as exc:
        load_trace(header_only)
    assert "workload.arrival.path" in one_line(exc) and "has no requests" in str(exc.value)
    blank = tmp_path / "blank.csv"
    blank.write_text("")
    with pytest.raises(SpecError, match="has no requests"):
        load_trace(blank)


def test_unknown_trace_columns_are_rejected(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("time,prompt,completion\n0,1,1\n")
    with pytest.raises(SpecError) as exc:
        load_trace(path)
    message = one_line(exc)
    assert "workload.arrival.path" in message and "header" in message
    assert "arrival_s,input_tokens,output_tokens" in message and "TIMESTAMP" in message
    assert "prompt" not in message  # a line of the file is never echoed


def test_a_file_that_is_not_a_trace_is_never_echoed(tmp_path):
    path = tmp_path / "secret.csv"
    path.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    with pytest.raises(SpecError) as exc:
        load_trace(path)
    assert "root" not in one_line(exc).replace(str(tmp_path), "")


def test_bad_trace_values_name_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("arrival_s,input_tokens,output_tokens\n0,10,2\n1,-5,2\n")
    with pytest.raises(SpecError) as exc:
        load_trace(path)
    assert "row 2, column input_tokens: not a whole number of tokens from 0 to 10,000,000 (got '-5')" in one_line(exc)


@pytest.mark.parametrize(
    "cell, column",
    [
        ("nan", "input_tokens"),
        ("inf", "output_tokens"),
        ("1e20", "input_tokens"),  # past int64: once silently 1 token
        ("9" * 400, "input_tokens"),
        ("10000001", "output_tokens"),
        ("2.5", "input_tokens"),
        ("ten", "output_tokens"),
        ("", "input_tokens"),
    ],
)
def test_trace_token_cells_that_are_not_token_counts(tmp_path, cell, column):
    row = {"arrival_s": "1", "input_tokens": "10", "output_tokens": "2", column: cell}
    path = tmp_path / "bad.csv"
    path.write_text("arrival_s,input_tokens,output_tokens\n0,10,2\n" + ",".join(row.values()) + "\n")
    with pytest.raises(SpecError) as exc:
        load_trace(path)
    message = one_line(exc)
    assert f"row 2, column {column}: not a whole number of tokens" in message and len(message) < 400


@pytest.mark.parametrize("cell", ["nan", "inf", "-inf", "1e400", "soon", "1e16"])
def test_trace_times_that_are_not_times(tmp_path, cell):
    path = tmp_path / "bad.csv"
    path.write_text(f"arrival_s,input_tokens,output_tokens\n0,10,2\n{cell},10,2\n")
    with pytest.raises(SpecError, match=r"row 2, column arrival_s: not a finite number of seconds"):
        load_trace(path)


def test_trace_files_that_are_not_files(tmp_path):
    with pytest.raises(SpecError, match="is a folder"):
        load_trace(tmp_path)
    with pytest.raises(SpecError, match="not a regular file"):
        load_trace("/dev/zero")
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="not a regular file"):
        load_trace(fifo)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"arrival_s,input_tokens,output_tokens\n\xff\xfe,1,1\n")
    with pytest.raises(SpecError, match=r"not UTF-8 text \(byte 0xff at offset 37\)"):
        load_trace(binary)


def test_a_trace_cut_by_the_duration_says_so(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,input_tokens,output_tokens\n0,10,2\n5,10,2\n50,10,2\n70,10,2\n")
    spec = trace_spec(path)
    with pytest.warns(FleetsimWarning, match=r"2 of 4 trace requests arrive after run.duration_s = 10 s"):
        batch = generate_requests(spec, rng(), duration_s=10.0)
    assert len(batch) == 2 and batch.dropped_after_duration == 2
    assert trace_requests_after(spec, 10.0) == 2 and trace_requests_after(spec, 10.0, max_requests=3) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = generate_requests(spec, rng(), duration_s=100.0)
    assert len(whole) == 4 and whole.dropped_after_duration == 0
    assert trace_row_bound(path) == 4


@pytest.mark.parametrize(
    "arrival, field",
    [
        ({"kind": "poisson", "rate_per_s": -1.0}, "rate_per_s"),
        ({"kind": "poisson", "rate_per_s": 0.0}, "rate_per_s"),
        ({"kind": "gamma", "rate_per_s": 1.0, "cv": 0.0}, "cv"),
        ({"kind": "diurnal", "mean_rate_per_s": 1.0, "peak_to_mean": 0.5}, "peak_to_mean"),
        ({"kind": "diurnal", "rates_per_s": [0.0, 0.0], "segment_s": 60.0}, "rates_per_s"),
        ({"kind": "closed", "users": 0}, "users"),
        ({"kind": "offline", "requests": 0}, "requests"),
        ({"kind": "trace", "path": "x.csv", "speedup": 0}, "speedup"),
        ({"kind": "burst", "rate_per_s": 1.0}, "kind"),
    ],
)
def test_bad_arrival_fields_are_rejected_by_name(arrival, field):
    with pytest.raises(ValidationError, match=field):
        workload(arrival)


@pytest.mark.parametrize(
    "classes, field",
    [
        ([], "classes is empty"),
        ([dict(CHAT, weight=0.0)], "weight"),
        (
            [dict(CHAT, input_tokens={"kind": "uniform", "min_tokens": 9, "max_tokens": 3})],
            "min_tokens=9 exceeds max_tokens=3",
        ),
        ([dict(CHAT, shared_prefix_tokens=100)], "shared_prefix_tokens=100"),
        ([{"name": "x", "input_tokens": {"kind": "fixed", "tokens": 1}}], "output_tokens"),
        ([CHAT, CHAT], "duplicate"),
        ([dict(CHAT, colour="red")], "colour"),
    ],
)
def test_bad_classes_are_rejected_by_name(classes, field):
    with pytest.raises(ValidationError, match=field):
        WorkloadSpec.model_validate({"arrival": {"kind": "poisson", "rate_per_s": 1.0}, "classes": classes})


def test_unbounded_open_loop_needs_a_limit():
    with pytest.raises(SpecError, match="duration_s or max_requests"):
        generate_requests(workload({"kind": "poisson", "rate_per_s": 1.0}), rng())
    with pytest.raises(SpecError, match="duration_s=-1"):
        generate_requests(workload({"kind": "poisson", "rate_per_s": 1.0}), rng(), duration_s=-1)
