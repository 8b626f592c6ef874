"""Fuzzing the files fleetsim reads: trace CSVs, config.json models, catalog-format GPU and model
YAML, GPU and engine profiles, validation case files.

Each loader gives a valid result or a FleetsimError of one line under 300 characters; never
another exception and never a hang (a hypothesis deadline, and an alarm that fails an input still
running after a few seconds). Trace errors never echo a line of the file. Settings and helpers:
tests/fuzz_support.py.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from fuzz_support import FUZZ, file_with, mutate_bytes, outcome
from hypothesis import example, given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


NUMBERS = st.one_of(
    st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64, 10**30, 10**400, 1e308, -1e308, 5e-324, 0.5, -0.0]),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(),
)
JSON_VALUES = st.one_of(
    NUMBERS,
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.sampled_from(["", "8", "1e3", "nan", "x" * 400]),
    st.lists(st.one_of(st.integers(min_value=-3, max_value=100), st.text(max_size=5)), max_size=5),
    st.dictionaries(st.text(max_size=6), st.integers(min_value=-3, max_value=100), max_size=3),
)


# --------------------------------------------------------------------------- traces

HEADERS = [
    ["arrival_s", "input_tokens", "output_tokens"],
    ["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
    ["arrived_at", "num_prefill_tokens", "num_decode_tokens"],
]
CELLS = st.one_of(
    st.integers(min_value=0, max_value=5000).map(str),
    st.floats(min_value=0, max_value=1e4, allow_nan=False).map(repr),
    st.sampled_from(
        [
            "nan",
            "NaN",
            "inf",
            "-inf",
            "-1",
            "-5",
            "0",
            "1e20",
            "9" * 30,
            "1e400",
            "",
            " ",
            "2.5",
            "ten",
            '"1,2"',
            "0x10",
        ]
    ),
    st.sampled_from(["2023-11-16 18:15:46.6805900", "2023-13-45 00:00:00", "yesterday", "2023-11-16T18:15:47"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=12),
)


@st.composite
def trace_files(draw):
    header = list(draw(st.sampled_from(HEADERS)))
    if draw(st.booleans()):
        header.append(draw(st.sampled_from(["extra", "class", "ContextTokens", " arrival_s "])))
    if draw(st.booleans()):
        header = draw(st.permutations(header))
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        header = draw(st.lists(st.text(max_size=10), min_size=1, max_size=4))
    rows = draw(st.lists(st.lists(CELLS, min_size=len(header) - 1, max_size=len(header) + 1), max_size=12))
    text = ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    raw = text.encode("utf-8", errors="surrogatepass")
    return mutate_bytes(raw, draw)


VALID_HEADERS = "; ".join(",".join(h) for h in HEADERS)
GOOD_TRACE = b"arrival_s,input_tokens,output_tokens\n0,10,2\n0.5,20,4\n"


@FUZZ
@given(trace_files())
@example(GOOD_TRACE)
@example(b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
@example(b"arrival_s,input_tokens,output_tokens\n0,1e20,2\n")
@example(b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,10,2\n2023-99-16 18:15:46.68,10,2\n")
def test_trace_files_load_or_fail_in_one_line_without_echoing_the_file(raw):
    from fleetsim.spec.base import MAX_TOKENS
    from fleetsim.workload import load_trace

    with file_with(raw, "trace.csv") as path:
        kind, result = outcome(lambda: load_trace(path))
        if kind == "error":
            message = result.replace(str(path), "").replace(VALID_HEADERS, "")
            message, _, got = message.partition(" (got ")  # a cell's value is echoed, capped
            assert len(got) < 100
            text = raw.decode("utf-8", errors="replace")
            for line in text.splitlines():
                if len(line.strip()) >= 12:
                    assert line.strip() not in message, f"a line of the file is echoed: {message}"
            return
        assert len(result) >= 1 and result.arrival_s[0] == 0
        assert np.all(np.isfinite(result.arrival_s)) and np.all(np.diff(result.arrival_s) >= 0)
        for column in (result.input_tokens, result.output_tokens):
            assert column.dtype == np.int64 and column.min() >= 1 and column.max() <= MAX_TOKENS


@FUZZ
@given(trace_files(), st.sampled_from([None, 0.1, 1.0, 1e6]), st.sampled_from([None, 1, 5]))
def test_trace_workloads_draw_or_fail_in_one_line(raw, duration_s, max_requests):
    from fleetsim.spec.workload import WorkloadSpec
    from fleetsim.workload import generate_requests, trace_row_bound

    with file_with(raw, "trace.csv") as path:
        spec = WorkloadSpec.model_validate({"arrival": {"kind": "trace", "path": str(path)}})
        kind, batch = outcome(
            lambda: generate_requests(spec, np.random.default_rng(0), duration_s=duration_s, max_requests=max_requests)
        )
        if kind == "ok":
            assert len(batch) <= trace_row_bound(path)  # the work budget's bound holds
            assert batch.dropped_after_duration >= 0


# --------------------------------------------------------------------------- config.json models

CONFIGS = ["llama-3-8b", "mixtral-8x7b", "deepseek-v3", "mamba-2.8b", "gemma-3-27b", "jamba-1.5-mini", "gpt2-xl"]
CONFIG_KEYS = [
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "num_local_experts",
    "num_experts_per_tok",
    "n_routed_experts",
    "sliding_window",
    "layer_types",
    "torch_dtype",
    "model_type",
    "architectures",
    "tie_word_embeddings",
    "kv_lora_rank",
    "state_size",
    "text_config",
]


@st.composite
def config_files(draw):
    config = json.loads((DATA / f"{draw(st.sampled_from(CONFIGS))}.config.json").read_text())
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        key = draw(st.sampled_from(CONFIG_KEYS + sorted(config)))
        if key in config and draw(st.integers(min_value=0, max_value=3)) == 0:
            del config[key]
        else:
            config[key] = draw(JSON_VALUES)
    text = json.dumps(config, allow_nan=True, default=str)
    if draw(st.booleans()):
        text = text[: draw(st.integers(min_value=0, max_value=len(text)))]
    return text.encode()


@FUZZ
@given(config_files())
def test_config_json_models_load_or_fail_in_one_line(raw):
    from fleetsim.catalog import load_model

    with file_with(raw, "config.json") as path:
        kind, arch = outcome(lambda: load_model(path))
        if kind == "ok":
            assert arch.num_layers >= 1 and arch.total_params >= arch.active_params >= 1


@pytest.mark.parametrize(
    "change, says",
    [
        (
            {"num_hidden_layers": 10**9},
            "'num_hidden_layers' = 1000000000 is not valid; it must be an integer from 1 to 10,000",
        ),
        ({"num_hidden_layers": 10**29}, "'num_hidden_layers' = 100000000000000000000000000000 is not valid"),
        (
            {"num_hidden_layers": 1e9},
            "'num_hidden_layers' = 1000000000.0 is not valid; it must be an integer from 1 to 10,000, not a float",
        ),
        (
            {"hidden_size": 10**16},
            "'hidden_size' = 10000000000000000 is not valid; it must be an integer from 1 to 1,000,000,000,000,000",
        ),
        ({"num_attention_heads": 2**61 - 1}, "'num_attention_heads' = 2305843009213693951 is not valid"),
        ({"num_attention_heads": 10**15 - 1, "num_key_value_heads": 2}, "valid: a divisor of 999,999,999,999,999"),
        ({"model_type": "x"}, "'model_type' = 'x' is not supported; supported families include llama, qwen3"),
        ({"model_type": ["llama"]}, "'model_type' = ['llama'] is not valid; it must be a string"),
        ({"hidden_size": "x" * 400}, "'hidden_size' = 'xxxx"),
        (
            {"mlp_only_layers": 5, "model_type": "qwen3_moe", "num_experts": 8, "moe_intermediate_size": 64},
            "'mlp_only_layers' = 5",
        ),
    ],
    ids=[
        "layers-1e9",
        "layers-1e29",
        "layers-float",
        "hidden-1e16",
        "heads-2e18",
        "heads-divisors",
        "model-type",
        "model-type-list",
        "long-value",
        "mlp-only-layers",
    ],
)
def test_config_json_values_out_of_bounds_fail_in_one_line(change, says):
    """Counts are bounded (layers by MAX_LAYERS, sizes by MAX_ARCH_INT) before any per-layer list
    is built; a value is echoed capped; a model_type names a few families, not all."""
    from fleetsim.catalog import load_model

    config = {**json.loads((DATA / "llama-3-8b.config.json").read_text()), **change}
    with file_with(json.dumps(config).encode(), "config.json") as path:
        kind, message = outcome(lambda: load_model(path), seconds=2.0)
    assert kind == "error" and says in message, message
    assert "x" * 100 not in message


@pytest.mark.parametrize(
    "raw, says",
    [
        (b"[" * 100_000, "nesting deeper than 64 levels"),
        (b"[" * 100 + b"]" * 100, "nesting deeper than 64 levels"),
        (b'{"a": ' * 70 + b"1" + b"}" * 70, "nesting deeper than 64 levels"),
        (b"\xff\xfe{}", "is not UTF-8 text (byte 0xff at offset 0)"),
        (b'{"num_hidden_layers": ' + b"9" * 5000 + b"}", "not valid JSON (a value cannot be read"),
        (b"", "not valid JSON (line 1"),
    ],
    ids=["deep", "deep-closed", "deep-objects", "not-utf8", "digits", "empty"],
)
def test_config_json_files_that_are_not_plain_json_fail_in_one_line(raw, says):
    from fleetsim.catalog import load_model

    with file_with(raw, "config.json") as path:
        kind, message = outcome(lambda: load_model(path), seconds=2.0)
    assert kind == "error" and says in message, message


# --------------------------------------------------------------------------- profiles


def _mutate_mapping(data, draw, depth: int = 0):
    """A copy of a YAML/JSON mapping with 0-3 leaves set to hostile values, keys removed or added."""
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        node, parent, key = data, None, None
        for _level in range(draw(st.integers(min_value=1, max_value=4))):
            if isinstance(node, dict) and node:
                parent, key = node, draw(st.sampled_from(sorted(node, key=str)))
            elif isinstance(node, list) and node:
                parent, key = node, draw(st.integers(min_value=0, max_value=len(node) - 1))
            else:
                break
            node = parent[key]
        if parent is None:
            continue
        op = draw(st.sampled_from(["set", "set", "delete", "extra"]))
        if op == "set":
            parent[key] = draw(JSON_VALUES)
        elif op == "delete" and isinstance(parent, dict):
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "x" * 300, "kind"]))] = draw(JSON_VALUES)
    return data


def _yaml_bytes(data, draw) -> bytes:
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    if draw(st.integers(min_value=0, max_value=7)) == 0:
        text = "bomb: &a [x, x, x, x, x, x, x, x]\n" + "".join(
            f"l{i}: &l{i} [{', '.join(['*a' if i == 0 else f'*l{i - 1}'] * 9)}]\n" for i in range(8)
        )
    return mutate_bytes(text.encode("utf-8", errors="surrogatepass"), draw)


@functools.cache
def _parsed(path: Path):
    return yaml.safe_load(path.read_text())


PROFILE_DIR = ROOT / "fleetsim" / "profiles"
GPU_PROFILES = sorted((PROFILE_DIR / "gpus").glob("*.yaml"))
ENGINE_PROFILES = sorted((PROFILE_DIR / "engines").glob("*.yaml"))


@st.composite
def gpu_profile_files(draw):
    path = draw(st.sampled_from(GPU_PROFILES))
    return path.stem, _yaml_bytes(_mutate_mapping(_parsed(path), draw), draw)


@pytest.mark.skipif(not GPU_PROFILES, reason="no shipped GPU profiles")
@FUZZ
@given(gpu_profile_files())
def test_gpu_profile_files_load_or_fail_in_one_line(named):
    from fleetsim.profile import load_profile

    gpu, raw = named
    with file_with(raw, "profile.yaml") as path:
        outcome(lambda: load_profile(gpu, path))


@st.composite
def engine_profile_files(draw):
    path = draw(st.sampled_from(ENGINE_PROFILES))
    return _yaml_bytes(_mutate_mapping(_parsed(path), draw), draw)


@pytest.mark.skipif(not ENGINE_PROFILES, reason="no shipped engine profiles")
@FUZZ
@given(engine_profile_files())
def test_engine_profile_files_load_or_fail_in_one_line(raw):
    from fleetsim.profile import parse_engine_profile
    from fleetsim.spec.yaml_file import read_mapping

    with file_with(raw, "engine.yaml") as path:
        outcome(lambda: parse_engine_profile(read_mapping(path, "engine.profile"), str(path)))


# --------------------------------------------------------------------------- catalog GPU and model YAML files


CATALOG_FILES = {kind: sorted((ROOT / "fleetsim" / "catalog" / kind).glob("*.yaml")) for kind in ("gpus", "models")}


@st.composite
def catalog_files(draw):
    kind = draw(st.sampled_from(sorted(CATALOG_FILES)))
    path = draw(st.sampled_from(CATALOG_FILES[kind]))
    return kind, _yaml_bytes(_mutate_mapping(_parsed(path), draw), draw)


@FUZZ
@given(catalog_files())
def test_catalog_yaml_files_load_or_fail_in_one_line(named):
    """A GPU or model YAML in the catalog's format, as `fleet.gpu: my-gpu.yaml` or `model:
    my-model.yaml` names it (a model's hf_config mutated too)."""
    from fleetsim.catalog import load_gpu, load_model

    kind, raw = named
    with file_with(raw, "entry.yaml") as path:
        if kind == "gpus":
            outcome(lambda: load_gpu(path))
            return
        done, arch = outcome(lambda: load_model(path))
        if done == "ok":
            assert arch.num_layers >= 1 and arch.total_params >= arch.active_params >= 1


# --------------------------------------------------------------------------- validation case files


def _case_files() -> list[Path]:
    folder = ROOT / "fleetsim" / "validation" / "cases"
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


CASE_FILES = _case_files()


@functools.cache
def _first_cases(path: Path) -> list:
    """The first few cases of a shipped file (parsed once: the files are large)."""
    data = yaml.safe_load(path.read_text())
    return (data["cases"] if isinstance(data, dict) else data)[:3]


@st.composite
def case_files(draw):
    cases = _first_cases(draw(st.sampled_from(CASE_FILES)))
    few = {"cases": copy.deepcopy(cases[: draw(st.integers(min_value=1, max_value=3))])}
    return _yaml_bytes(_mutate_mapping(few, draw), draw)


@pytest.mark.skipif(not CASE_FILES, reason="no shipped case files")
@FUZZ
@given(case_files())
def test_validation_case_files_load_or_fail_in_one_line(raw):
    from fleetsim.validation import load_cases

    with file_with(raw, "cases.yaml") as path:
        kind, cases = outcome(lambda: load_cases(path))
        if kind == "ok":
            assert cases and all(math.isfinite(c.published) for c in cases if hasattr(c, "published"))
