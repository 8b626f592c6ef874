"""The starter scenario `fleetsim init` writes: every section and field of the scenario schema,
each with its description (meaning, unit, bounds, default) as a comment above it.

The comments come from the schema itself (fleetsim.spec.scenario.ScenarioSpec field
descriptions), so a field added there appears here; the values are STARTER's, else the field's
default. Where a field takes one of several kinds (an arrival process, a length distribution,
an eviction policy), the kind STARTER names is written out and its description lists the others.
"""

from __future__ import annotations

import textwrap
import typing
from typing import Any

import yaml
from pydantic import BaseModel

from fleetsim.spec.paths import admitted_types
from fleetsim.spec.scenario import ScenarioSpec

# What the starter runs: Llama 3 8B on two H100 SXM replicas, chat traffic at 10 requests/s for
# two simulated minutes (a few seconds of wall time). Fields left out take their defaults.
STARTER: dict[str, Any] = {
    "name": "my-scenario",
    "description": "Llama 3 8B on 2 H100 SXM replicas serving chat traffic: a starting point to edit.",
    "model": "llama-3-8b",
    "fleet": {"gpu": "h100-sxm", "replicas": 2},
    "workload": {
        "arrival": {"kind": "poisson", "rate_per_s": 10.0},
        "classes": [
            {
                "name": "chat",
                # Azure LLM inference trace 2023 (conversation): median prompt ~1,000 tokens, output ~200.
                "input_tokens": {"kind": "lognormal", "mean_tokens": 1000, "sigma": 0.8, "max_tokens": 6144},
                "output_tokens": {"kind": "lognormal", "mean_tokens": 250, "sigma": 0.7, "max_tokens": 2048},
            }
        ],
    },
    "slo": {"ttft_s": 1.0, "tpot_s": 0.05},
    "run": {"duration_s": 120.0},
}

_HEADER = """\
# fleetsim starter scenario (written by `fleetsim init`).
# Every field is listed with its meaning, unit and default; edit the values and run it:
#   fleetsim run {path}
# Try a change without editing: fleetsim run {path} --set fleet.replicas=4
# All fields as JSON Schema: fleetsim schema. Catalog names: fleetsim models, fleetsim gpus.
"""
_WIDTH = 100


def _model_of(annotation: Any, value: Any) -> type[BaseModel] | None:
    """The spec class a mapping value is an instance of (by its `kind` among a union's members)."""
    models = [t for t in admitted_types(annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
    if not models or not isinstance(value, dict):
        return None
    for m in models:
        kind = m.model_fields.get("kind")
        if kind is not None and kind.default == value.get("kind"):
            return m
    return models[0]


def _item_model(annotation: Any) -> type[BaseModel] | None:
    for t in admitted_types(annotation):
        if typing.get_origin(t) in (tuple, list):
            for a in typing.get_args(t):
                m = _model_of(a, {})
                if m is not None:
                    return m
    return None


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(" ".join(text.split()), _WIDTH - len(indent) - 2)]


def _default(info: Any) -> Any:
    if info.is_required():
        return None
    d = info.get_default(call_default_factory=True)
    return d.model_dump(mode="json") if isinstance(d, BaseModel) else d


def _fields(model: type[BaseModel], values: dict, indent: str, item_indent: str | None = None) -> list[str]:
    """The fields of one spec at indent; with item_indent, as a list item ('- ' there)."""
    lines: list[str] = []
    for i, (name, info) in enumerate(model.model_fields.items()):
        value = values[name] if name in values else _default(info)
        here = item_indent if (i == 0 and item_indent is not None) else None
        if info.description:
            lines += _comment(info.description, indent if here is None else here)
        lead = indent if here is None else f"{here}- "
        lines += _field(name, info.annotation, value, lead, indent)
    return lines


def _field(name: str, annotation: Any, value: Any, lead: str, indent: str) -> list[str]:
    sub = _model_of(annotation, value)
    if sub is not None:
        return [f"{lead}{name}:", *_fields(sub, value, indent + "  ")]
    item = _item_model(annotation)
    if item is not None and isinstance(value, (list, tuple)) and value:
        lines = [f"{lead}{name}:"]
        for v in value:
            lines += _fields(item, v, indent + "    ", item_indent=indent + "  ")
        return lines
    return [f"{lead}{name}: {_scalar(value)}"]


def starter_scenario(path: str = "scenario.yaml") -> str:
    """The starter scenario's YAML text (comments included)."""
    lines = [_HEADER.format(path=path).rstrip("\n")]
    for name, info in ScenarioSpec.model_fields.items():
        value = STARTER[name] if name in STARTER else _default(info)
        lines.append("")
        if info.description:
            lines += _comment(info.description, "")
        lines += _field(name, info.annotation, value, "", "")
    return "\n".join(lines) + "\n"
