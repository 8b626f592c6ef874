"""Fuzzing the config.json reader (fleetsim.catalog.hf) with configs one edit away from real ones.

Every shipped test config (tests/data/*.config.json) is mutated a few times over: a value swapped
for another type, a count made huge, negative, zero or a float, a field removed, a field set to
nested junk, the whole config nested under text_config. Whatever comes out, the reader gives a
valid Architecture (layers within MAX_LAYERS, counts within the spec's bounds) or a CatalogError
of one line under 300 characters -- never another exception, never a hang (a hypothesis
deadline and an alarm; settings in tests/fuzz_support.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fuzz_support import FUZZ, file_with, outcome
from hypothesis import example, given
from hypothesis import strategies as st

from fleetsim.catalog import architecture_from_hf_config, load_model
from fleetsim.errors import CatalogError
from fleetsim.spec.architecture import MAX_ARCH_INT, MAX_LAYERS, Architecture

DATA = Path(__file__).parent / "data"
CONFIGS = {path.name.removesuffix(".config.json"): json.loads(path.read_text()) for path in DATA.glob("*.config.json")}

HOSTILE_COUNTS = [
    0,
    -1,
    -(10**9),
    MAX_LAYERS,
    MAX_LAYERS + 1,
    10**9,
    MAX_ARCH_INT,
    MAX_ARCH_INT + 1,
    10**29,
    2**63,
    10**400,
    1.5,
    1e9,
    1e29,
    1e308,
    math.nan,
    math.inf,
    -0.0,
    True,
    "32",
    "1e9",
]


def _deep(depth: int):
    node: object = 1
    for i in range(depth):
        node = [node] if i % 2 else {"x": node}
    return node


JUNK = st.one_of(
    st.integers(min_value=1, max_value=80).map(_deep),
    st.sampled_from(["", "x" * 5000, "\x00\n\r\x1b[31m", "\ud800", "auto", "sliding_attention"]),
    st.lists(st.integers(min_value=-2, max_value=3), max_size=40),
    st.just(list(range(20_000))),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=4),
    st.lists(st.lists(st.integers(), max_size=2), max_size=4),
)


def _paths(config: dict) -> list[tuple[str, ...]]:
    """Every key of the config, and of a nested text_config, as a path."""
    paths = [(k,) for k in config]
    nested = config.get("text_config")
    if isinstance(nested, dict):
        paths += [("text_config", k) for k in nested]
    return paths


def _swapped(value, draw):
    """The value as another JSON type."""
    choices = [str(value), [value], {"value": value}, None, not bool(value)]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**300:
        choices.append(float(value))
    return draw(st.sampled_from(choices))


@st.composite
def mutated_configs(draw):
    name = draw(st.sampled_from(sorted(CONFIGS)))
    config = json.loads(json.dumps(CONFIGS[name]))  # a deep copy
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(config)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = config if len(path) == 1 else config[path[0]]
        key = path[-1]
        op = draw(st.sampled_from(["swap", "count", "count", "delete", "junk", "nest"]))
        if op == "swap":
            parent[key] = _swapped(parent[key], draw)
        elif op == "count":
            ints = [p for p in paths if isinstance(_at(config, p), int) and not isinstance(_at(config, p), bool)]
            if ints:
                path = draw(st.sampled_from(ints))
                parent, key = (config if len(path) == 1 else config[path[0]]), path[-1]
            parent[key] = draw(st.sampled_from(HOSTILE_COUNTS))
        elif op == "delete":
            del parent[key]
        elif op == "junk":
            parent[key] = draw(JUNK)
        else:
            config = {"model_type": config.get("model_type"), "text_config": config}
    return name, config


def _at(config: dict, path: tuple[str, ...]):
    return config[path[0]] if len(path) == 1 else config[path[0]][path[1]]


def _check_valid(arch: Architecture) -> None:
    assert isinstance(arch, Architecture)
    assert 1 <= arch.num_layers <= MAX_LAYERS
    assert 1 <= arch.active_params <= arch.total_params <= MAX_ARCH_INT
    assert 1 <= arch.hidden_size <= MAX_ARCH_INT and 1 <= arch.vocab_size <= MAX_ARCH_INT
    assert Architecture.model_validate(arch.model_dump()) == arch


@FUZZ
@given(mutated_configs())
@example(("llama-3-8b", {**CONFIGS["llama-3-8b"], "num_hidden_layers": 10**9}))
@example(("gpt2-xl", {**CONFIGS["gpt2-xl"], "n_layer": 10**29}))
@example(("mamba-2.8b", {**CONFIGS["mamba-2.8b"], "n_layer": 2**63}))
@example(("llama-3-8b", {**CONFIGS["llama-3-8b"], "num_attention_heads": MAX_ARCH_INT}))
@example(("llama-3-8b", {**CONFIGS["llama-3-8b"], "architectures": [["LlamaForCausalLM"]], "model_type": None}))
@example(("llama-3-8b", {**CONFIGS["llama-3-8b"], "architectures": 7, "model_type": None}))
def test_mutated_configs_build_an_architecture_or_fail_in_one_line(named):
    name, config = named
    kind, result = outcome(lambda: architecture_from_hf_config(config, name=name))
    if kind == "ok":
        _check_valid(result)
    else:
        assert "x" * 100 not in result and "\x1b" not in result


@FUZZ
@given(mutated_configs())
def test_mutated_config_files_load_or_fail_in_one_line(named):
    """The same configs, written to a config.json and read back through load_model."""
    _, config = named
    raw = json.dumps(config, allow_nan=True, ensure_ascii=True).encode()
    with file_with(raw, "config.json") as path:
        kind, result = outcome(lambda: load_model(path))
        if kind == "ok":
            _check_valid(result)


def test_a_huge_layer_count_is_refused_before_any_layer_is_built():
    """10^9 layers once meant a list of 10^9 layer specs (minutes, gigabytes): now one line."""
    config = {**CONFIGS["llama-3-8b"], "num_hidden_layers": 10**9}
    with pytest.raises(CatalogError) as caught:
        architecture_from_hf_config(config, name="huge")
    assert str(caught.value) == (
        "huge: config field 'num_hidden_layers' = 1000000000 is not valid; it must be an integer from 1 to 10,000"
    )


def test_the_bounds_themselves_are_accepted():
    """MAX_LAYERS layers load; one more does not."""
    config = {**CONFIGS["llama-3-8b"], "num_hidden_layers": MAX_LAYERS}
    assert architecture_from_hf_config(config, name="deep").num_layers == MAX_LAYERS
    with pytest.raises(CatalogError, match="from 1 to 10,000"):
        architecture_from_hf_config({**config, "num_hidden_layers": MAX_LAYERS + 1}, name="deeper")
