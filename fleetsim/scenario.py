"""Reading scenarios: YAML (safe_load) + dotted-path overrides, validated by pydantic."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fleetsim.errors import SpecError, first_error_line
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.spec.yaml_file import read_mapping


def parse_override(text: str) -> tuple[str, Any]:
    """'fleet.replicas=8' -> ('fleet.replicas', 8); the value is read as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise SpecError(f"--set: '{text}' is not KEY=VALUE (e.g. fleet.replicas=8)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise SpecError(f"--set: '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(data: dict, overrides: Mapping[str, Any]) -> dict:
    """Set each dotted path in a copy of the scenario mapping (intermediate mappings are created)."""
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise SpecError(f"--set {dotted}: '{'.'.join(parts[: i + 1])}' is not a mapping")
            node = nxt
        node[parts[-1]] = value
    return out


def _resolve_paths(data: dict, base: Path) -> None:
    """Paths inside a scenario are relative to the scenario file, not the working directory."""

    def fix(value):
        p = Path(value).expanduser()
        if not p.is_absolute() and (base / p).exists():
            return str(base / p)
        return str(p)

    arrival = (data.get("workload") or {}).get("arrival")
    if isinstance(arrival, dict) and isinstance(arrival.get("path"), str):
        arrival["path"] = fix(arrival["path"])
    fleet = data.get("fleet")
    if isinstance(fleet, dict) and isinstance(fleet.get("profile"), str):
        fleet["profile"] = fix(fleet["profile"])
    model = data.get("model")
    if isinstance(model, str) and ("/" in model or model.endswith((".json", ".yaml"))):
        data["model"] = fix(model)


def scenario_from_dict(
    data: Any, overrides: Mapping[str, Any] | None = None, where: str = "scenario", base: Path | None = None
) -> ScenarioSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a scenario must be a YAML mapping, not {type(data).__name__}")
    if overrides:
        data = apply_overrides(data, overrides)
    else:
        data = copy.deepcopy(data)
    if base is not None:
        _resolve_paths(data, base)
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{where}: {first_error_line(exc)}") from None


def load_scenario(path_or_spec, overrides: Mapping[str, Any] | None = None) -> ScenarioSpec:
    """A ScenarioSpec from a YAML path, a mapping, or a ScenarioSpec (overrides applied)."""
    if isinstance(path_or_spec, ScenarioSpec):
        if not overrides:
            return path_or_spec
        return scenario_from_dict(path_or_spec.model_dump(mode="json"), overrides)
    if isinstance(path_or_spec, Mapping):
        return scenario_from_dict(dict(path_or_spec), overrides)
    path = Path(path_or_spec)
    data = read_mapping(path, "scenario")
    spec = scenario_from_dict(data, overrides, where=str(path), base=path.parent.resolve())
    return spec
