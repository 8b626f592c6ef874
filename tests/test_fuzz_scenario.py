"""Fuzzing the scenario schema: mutated scenario mappings, YAML texts and --set values.

Every input gives a valid ScenarioSpec (and then a build() that works or refuses in one line) or
a FleetsimError whose message is one line under 300 characters; never another exception, never a
hang (hypothesis deadlines and an alarm). Settings and helpers: tests/fuzz_support.py.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
import yaml
from fuzz_support import EXAMPLES, FUZZ, MAX_MESSAGE, file_with, mutate_bytes, outcome
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fleetsim.errors import FleetsimWarning
from fleetsim.scenario import load_scenario, parse_override
from fleetsim.simulation import build
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.workbudget import estimate_work

# --------------------------------------------------------------------------- valid starting points

CLASS = {
    "name": "chat",
    "weight": 1.0,
    "input_tokens": {"kind": "lognormal", "mean_tokens": 600, "sigma": 0.8, "min_tokens": 16, "max_tokens": 4096},
    "output_tokens": {"kind": "fixed", "tokens": 64},
}
ARRIVALS = [
    {"kind": "poisson", "rate_per_s": 5.0},
    {"kind": "gamma", "rate_per_s": 5.0, "cv": 2.0},
    {"kind": "diurnal", "mean_rate_per_s": 5.0, "peak_to_mean": 1.5, "period_s": 60.0},
    {"kind": "diurnal", "rates_per_s": [1.0, 8.0], "segment_s": 10.0},
    {"kind": "closed", "users": 4, "think_time": {"kind": "exponential", "mean_s": 1.0}},
    {"kind": "offline", "requests": 50},
]
LENGTHS = [
    {"kind": "fixed", "tokens": 100},
    {"kind": "uniform", "min_tokens": 10, "max_tokens": 300},
    {"kind": "empirical", "values": [50, 100, 400], "weights": [1.0, 2.0, 1.0]},
]


def base_scenario(arrival: dict, length: dict) -> dict:
    return {
        "name": "fuzz",
        "model": "llama-3-8b",
        "kv_cache": {"key_dtype": "bf16", "value_dtype": "fp8", "eviction": {"kind": "none"}},
        "fleet": {"gpu": "h100-sxm", "replicas": 2, "tp": 1, "router": "least_outstanding"},
        "scheduler": {"max_batched_tokens": 4096, "max_running_seqs": 64, "block_tokens": 16},
        "workload": {
            "arrival": copy.deepcopy(arrival),
            "classes": [
                copy.deepcopy(CLASS),
                {**copy.deepcopy(CLASS), "name": "batch", "input_tokens": copy.deepcopy(length)},
            ],
        },
        "slo": {"ttft_s": 1.0, "tpot_s": 0.05},
        "facility": {"pue": 1.3},
        "cost": {"mode": "owned"},
        "run": {"duration_s": 20.0, "seed": 1},
    }


bases = st.builds(base_scenario, st.sampled_from(ARRIVALS), st.sampled_from(LENGTHS))


# --------------------------------------------------------------------------- hostile values


def nested(depth: int, leaf):
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


SPECIAL_NUMBERS = [
    0,
    -1,
    1,
    True,
    False,
    2**31,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    10**400,
    -(10**400),
    1e308,
    -1e308,
    1.7976931348623157e308,
    5e-324,
    1e-7,
    math.inf,
    -math.inf,
    math.nan,
    0.5,
    -0.0,
]
SPECIAL_TEXT = ["", "1e3", "4", "true", "null", "nan", "inf", "-1", "x" * 500, "\x00", "é" * 50, "../../etc/passwd"]

hostile_values = st.deferred(
    lambda: st.one_of(
        st.sampled_from(SPECIAL_NUMBERS),
        st.sampled_from(SPECIAL_TEXT),
        st.none(),
        st.integers(),
        st.floats(),
        st.text(max_size=20),
        st.lists(st.one_of(st.integers(min_value=-5, max_value=10**9), st.floats(), st.booleans()), max_size=4),
        st.dictionaries(st.sampled_from(["kind", "tokens", "x", "rate_per_s"]), st.integers(), max_size=3),
        st.builds(nested, st.integers(min_value=10, max_value=150), st.sampled_from([1, "a", None])),
    )
)


plausible_values = st.one_of(
    st.integers(min_value=1, max_value=5000),
    st.floats(min_value=0.001, max_value=1000.0),
    st.sampled_from(
        ["fp8", "int4", "q4_0", "round_robin", "central_queue", "owned", "rental", "llama-3-8b", "gpt2-xl"]
    ),
    st.sampled_from(
        [{"kind": "h2o", "heavy_tokens": 64, "recent_tokens": 64}, {"kind": "snapkv", "budget_tokens": 256}]
    ),
    st.booleans(),
)
values = st.one_of(hostile_values, plausible_values)


def paths_of(node, prefix=()):
    """Every key path in a mapping (lists indexed), containers included, at most 8 deep."""
    out = []
    if len(prefix) >= 8:
        return out
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return out
    for key, child in items:
        path = (*prefix, key)
        out.append(path)
        out.extend(paths_of(child, path))
    return out


def set_path(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def del_path(data, path):
    node = data
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


@st.composite
def mutated_scenarios(draw):
    data = draw(bases)
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        paths = paths_of(data)
        op = draw(st.sampled_from(["set", "set", "set", "delete", "extra"]))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        if op == "set":
            set_path(data, path, copy.deepcopy(draw(values)))  # drawn objects may be shared
        elif op == "delete":
            del_path(data, path)
        else:
            parent = path[:-1]
            node = data
            for key in parent:
                node = node[key]
            if isinstance(node, dict):
                key = draw(st.sampled_from(["extra", "replicas", "Kind", "x" * 300, "", "rate_per_s"]))
                node[key] = copy.deepcopy(draw(hostile_values))
    return data


def _no_nan(obj) -> None:
    json.dumps(obj, allow_nan=False)


# --------------------------------------------------------------------------- the properties


@FUZZ
@given(mutated_scenarios())
def test_mutated_scenario_mappings_load_or_fail_in_one_line(data):
    kind, spec = outcome(lambda: load_scenario(data))
    if kind == "ok":
        assert isinstance(spec, ScenarioSpec)
        _no_nan(spec.model_dump(mode="json"))  # a valid scenario holds no NaN or infinity
        estimate = estimate_work(spec)  # pure, never raises
        assert not math.isnan(estimate.memory_bytes)


@FUZZ
@given(mutated_scenarios())
def test_scenarios_that_load_build_or_refuse_in_one_line(data):
    kind, spec = outcome(lambda: load_scenario(data))
    if kind == "ok":
        outcome(lambda: build(spec))


@FUZZ
@given(bases, st.sampled_from([
    "fleet.replicas", "fleet.tp", "scheduler.max_batched_tokens", "run.seed", "run.duration_s",
    "run.timeseries_interval_s", "workload.arrival.rate_per_s", "workload.arrival.users",
    "workload.arrival.requests", "workload.classes", "slo.ttft_s", "cost.interest_rate", "facility.pue",
    "kv_cache.eviction", "model", "fleet.gpu", "name", "run", "workload",
]), hostile_values)  # fmt: skip
def test_each_field_against_hostile_values(data, field, value):
    outcome(lambda: load_scenario(data, {field: value}))


set_texts = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(["fleet.replicas", "run.seed", "workload.arrival.rate_per_s", "a..b", "", "x" * 200, "run"]),
        st.one_of(
            st.sampled_from(["1e3", "true", "[1, 2", "{a: 1}", "*a", "&a [*a]", "!!python/name:os.system", "9" * 5000]),
            st.text(max_size=40),
            st.builds(lambda n: "[" * n + "]" * n, st.integers(min_value=0, max_value=400)),
        ),
    ),
)


@FUZZ
@given(set_texts, bases)
def test_set_values_parse_and_apply_or_fail_in_one_line(text, data):
    kind, parsed = outcome(lambda: parse_override(text))
    if kind == "ok":
        key, value = parsed
        outcome(lambda: load_scenario(data, {key: value}))


# --------------------------------------------------------------------------- YAML files


def _yaml_mutations(text: str, draw) -> str:
    op = draw(st.sampled_from(["none", "anchor", "tab"]))
    if op == "anchor":
        return "defaults: &d {replicas: 1}\n" + text.replace("fleet:", "fleet: *d\nignored:", 1)
    if op == "tab":
        return text.replace("  ", "\t", 1)
    return text


@st.composite
def scenario_files(draw):
    data = draw(mutated_scenarios())
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    text = _yaml_mutations(text, draw)
    return mutate_bytes(text.encode("utf-8", errors="surrogatepass"), draw)


@FUZZ
@given(scenario_files())
def test_scenario_files_load_or_fail_in_one_line(raw):
    with file_with(raw, "scenario.yaml") as path:
        outcome(lambda: load_scenario(path))


# --------------------------------------------------------------------------- the CLI, a handful


def _cli_run(path: Path, *extra: str) -> tuple[int, str, str]:
    """`fleetsim run PATH --json ...` in this process: (exit status, stdout, stderr)."""
    import contextlib
    import io

    from fleetsim.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["fleetsim", "run", str(path), "--json", *extra]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore", FleetsimWarning)
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def _strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} in JSON output")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.slow
@settings(FUZZ, max_examples=max(6, EXAMPLES // 10), deadline=None)
@given(mutated_scenarios())
@example(base_scenario(ARRIVALS[0], LENGTHS[2]))
@example(base_scenario(ARRIVALS[4], LENGTHS[1]))
@example({**base_scenario(ARRIVALS[5], LENGTHS[0]), "slo": {"ttft_s": 1e-6, "tpot_s": 1e-6}})
def test_fleetsim_run_json_of_fuzzed_scenarios(data):
    """A handful through `fleetsim run --json`: exit 0 with one strict JSON object (no NaN or
    Infinity), or exit 2 with one line on stderr."""
    data.setdefault("run", {})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scenario.yaml"
        path.write_text(yaml.safe_dump(data))
        kind, _ = outcome(lambda: build(load_scenario(path)))
        extra = ("--set", "run.duration_s=3", "--set", "run.max_requests=200") if kind == "ok" else ()
        code, out, err = _cli_run(path, *extra)
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 0:
        summary = _strict_json(out)
        assert isinstance(summary, dict) and summary["requests"]["arrived"] >= 1
    else:
        assert code == 2 and len(lines) == 1 and len(lines[0]) < MAX_MESSAGE + 10, err[:500]
        assert out == ""


# --------------------------------------------------------------------------- in bounds, at the edges

EDGES = {
    "fleet.replicas": [1, 3, 500],
    "fleet.tp": [1, 2, 8, 1024],
    "fleet.gpu_memory_utilization": [1e-9, 0.05, 1.0],
    "fleet.router": ["round_robin", "random", "most_free_kv", "central_queue"],
    "scheduler.max_batched_tokens": [1, 17, 10_000_000],
    "scheduler.max_running_seqs": [1, 1_000_000],
    "scheduler.block_tokens": [1, 1_048_576],
    "scheduler.max_model_len": [1, 20_000_000],
    "scheduler.max_queue": [1],
    "scheduler.chunked_prefill": [False],
    "kv_cache.eviction": [
        {"kind": "h2o", "heavy_tokens": 1, "recent_tokens": 1},
        {"kind": "pyramidkv", "budget_tokens": 1, "ratio": 1000},
        {"kind": "streamingllm", "sink_tokens": 0, "window_tokens": 10_000_000},
    ],
    "kv_cache.prefix_compression_ratio": [10_000.0],
    "slo.ttft_s": [5e-324, 3e8],
    "slo.percentile": [1e-9, 99.9999],
    "slo.attainment_target": [1e-9, 1.0],
    "workload.arrival": [
        {"kind": "poisson", "rate_per_s": 1e-9},
        {"kind": "poisson", "rate_per_s": 200.0},
        {"kind": "gamma", "rate_per_s": 5.0, "cv": 1e-3},
        {"kind": "gamma", "rate_per_s": 5.0, "cv": 100.0},
        {"kind": "diurnal", "mean_rate_per_s": 5.0, "peak_to_mean": 2.0, "period_s": 1e-3},
        {"kind": "diurnal", "rates_per_s": [0.0, 0.0, 1e-9], "segment_s": 1e-3},
        {"kind": "closed", "users": 300, "think_time": {"kind": "fixed", "value_s": 0}},
        {"kind": "offline", "requests": 1},
    ],
    "workload.classes": [
        [
            {
                "name": "a",
                "input_tokens": {"kind": "fixed", "tokens": 10_000_000},
                "output_tokens": {"kind": "fixed", "tokens": 1},
            },
        ],
        [
            {
                "name": "a",
                "weight": 1e12,
                "input_tokens": {"kind": "lognormal", "mean_tokens": 10_000_000, "sigma": 10},
                "output_tokens": {"kind": "uniform", "min_tokens": 1, "max_tokens": 10_000_000},
            },
            {
                "name": "b",
                "weight": 5e-324,
                "input_tokens": {"kind": "fixed", "tokens": 1},
                "output_tokens": {"kind": "fixed", "tokens": 1},
            },
        ],
        [
            {
                "name": "a",
                "shared_prefix_tokens": 9,
                "prompt_cache_hit_fraction": 1.0,
                "input_tokens": {"kind": "empirical", "values": [10, 10_000_000], "weights": [1e12, 5e-324]},
                "output_tokens": {"kind": "fixed", "tokens": 2},
            }
        ],
    ],
    "facility.pue": [1.0, 5.0],
    "facility.rack_power_kw": [5e-324, 10_000.0],
    "facility.wue_l_per_kwh": [0.0, 100.0],
    "cost.mode": ["owned"],
    "cost.amortization_years": [5e-324, 100.0],
    "cost.interest_rate": [0.0, 1.0],
    "cost.capex_usd_per_gpu": [0.0, 1e8],
    "cost.electricity_usd_per_kwh": [100.0],
    "run.seed": [0, 2**63 - 1],
    "run.warmup_s": [0.0, 1e6],
    "run.drain": [False],
    "run.timeseries_interval_s": [1e-3, 3e8],
}


@st.composite
def edge_scenarios(draw):
    data = base_scenario(ARRIVALS[0], LENGTHS[0])
    data["run"] = {"duration_s": 2.0, "max_requests": 40, "seed": 3}
    changes = {}
    for field in draw(st.lists(st.sampled_from(sorted(EDGES)), min_size=1, max_size=4, unique=True)):
        changes[field] = copy.deepcopy(draw(st.sampled_from(EDGES[field])))
    return data, changes


@pytest.mark.slow
@settings(FUZZ, max_examples=max(10, EXAMPLES // 3), deadline=None)
@given(edge_scenarios())
def test_scenarios_at_the_edges_of_their_bounds_run_or_refuse_in_one_line(case):
    """Values each inside its bounds, at the edges: the run finishes (a short one) with a summary
    holding no NaN or infinity that JSON could not carry, or refuses in one line before it starts."""
    from fleetsim.simulation import simulate

    data, changes = case
    kind, spec = outcome(lambda: load_scenario(data, changes))
    if kind == "ok":
        kind, result = outcome(lambda: simulate(spec), seconds=60)
        if kind == "ok":
            with file_with(yaml.safe_dump(data).encode(), "scenario.yaml") as path:
                sets = [f"{k}={json.dumps(v)}" for k, v in changes.items()]
                code, out, err = _cli_run(path, *[a for s in sets for a in ("--set", s)])
            assert code == 0, err[-500:]
            _strict_json(out)
