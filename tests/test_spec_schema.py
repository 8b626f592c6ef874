"""The scenario schema documents itself: every property says what it is, its unit and its default."""

import math

import pytest

from fleetsim.errors import SpecError
from fleetsim.scenario import load_scenario
from fleetsim.spec.scenario import ScenarioSpec


def _properties(node, path=""):
    """(path, property schema) of every property anywhere in a JSON schema (root and $defs)."""
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            yield f"{path}.properties.{name}", prop
        for key, child in node.items():
            yield from _properties(child, f"{path}.{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _properties(child, f"{path}[{i}]")


def test_every_scenario_property_has_a_description():
    props = list(_properties(ScenarioSpec.model_json_schema()))
    assert len(props) > 100
    missing = [path for path, prop in props if not str(prop.get("description", "")).strip()]
    assert missing == []


def test_every_number_in_the_schema_is_bounded():
    """A number (or integer) property states both ends of what is valid."""

    def numeric(prop):
        branches = prop.get("anyOf", [prop])
        return [b for b in branches if b.get("type") in ("integer", "number")]

    unbounded = []
    for path, prop in _properties(ScenarioSpec.model_json_schema()):
        for b in numeric(prop):
            low = {"minimum", "exclusiveMinimum"} & set(b)
            high = {"maximum", "exclusiveMaximum"} & set(b)
            if not (low and high):
                unbounded.append(path)
    assert unbounded == []


MINIMAL = {
    "model": "llama-3-8b",
    "workload": {
        "arrival": {"kind": "poisson", "rate_per_s": 1.0},
        "classes": [
            {
                "name": "c",
                "input_tokens": {"kind": "fixed", "tokens": 10},
                "output_tokens": {"kind": "fixed", "tokens": 5},
            }
        ],
    },
}


@pytest.mark.parametrize(
    "path, value, needle",
    [
        ("scheduler.max_batched_tokens", True, "not true/false"),
        ("fleet.replicas", "4", "not text"),
        ("run.seed", -1, ">= 0"),
        ("run.seed", 2**64, "<= 9,223,372,036,854,775,807"),
        ("workload.arrival.rate_per_s", math.inf, "finite"),
        ("workload.arrival.rate_per_s", math.nan, "finite"),
        ("workload.arrival.rate_per_s", 1e308, "<= 1,000,000,000"),
        ("fleet.replicas", 10**5000, "digits"),
        ("run.duration_s", 10**400, "digits"),
        ("slo.percentile", False, "not true/false"),
        ("cost.interest_rate", 7.0, "<= 1"),
        ("facility.pue", 0.5, ">= 1"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_values_a_type_accepts_but_the_model_cannot(path, value, needle):
    with pytest.raises(SpecError) as exc:
        load_scenario(MINIMAL, {path: value})
    message = str(exc.value)
    assert "\n" not in message and len(message) < 300
    assert path.split(".")[-1] in message and needle in message


def test_lengths_bounded_per_request():
    too_long = {"kind": "fixed", "tokens": 10_000_001}
    with pytest.raises(SpecError, match=r"workload.classes.0.input_tokens.fixed.tokens: must be <= 10,000,000"):
        load_scenario(MINIMAL, {"workload.classes": [{**MINIMAL["workload"]["classes"][0], "input_tokens": too_long}]})


def test_integral_floats_and_numpy_numbers_still_count():
    np = pytest.importorskip("numpy")
    spec = load_scenario(MINIMAL, {"fleet.replicas": np.int64(3), "run.duration_s": np.float64(20), "fleet.tp": 1.0})
    assert spec.fleet.replicas == 3 and spec.run.duration_s == 20.0 and spec.fleet.tp == 1


def test_gpu_count_is_bounded():
    with pytest.raises(SpecError, match=r"fleet: replicas x tp = 100,000 x 16 = 1,600,000 GPUs"):
        load_scenario(MINIMAL, {"fleet.replicas": 100_000, "fleet.tp": 16})
