"""A sweep's grid and its points: parsing --grid items (value lists and inclusive ranges), checking
keys against the scenario schema, the cartesian product, and each point's scenario and stable id.
Its own module: what is swept is settled, and named, before anything runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from fleetsim.errors import SpecError
from fleetsim.scenario import apply_overrides
from fleetsim.spec.paths import check_field_path
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.spec.yaml_file import read_mapping

_GRID_FORMS = (
    "use KEY=V1,V2,... or KEY=START:STOP:STEP (inclusive range), e.g. fleet.gpu=h100-sxm,h200 or fleet.replicas=4:64:4"
)
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*:\s*({_NUMBER})\s*:\s*({_NUMBER})\s*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|\d+))*$")  # list items by index
MAX_RANGE_VALUES = 100_000


def _grid_error(item: str, why: str) -> SpecError:
    return SpecError(f"--grid '{item}': {why}; {_GRID_FORMS}")


def _scalar(text: str) -> Any:
    """One grid value read as a YAML scalar (numbers, booleans, null, strings)."""
    text = text.strip()
    if ":" in text:  # YAML 1.1 would read 1:30 as the base-60 number 90
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (dict, list)):
        return text
    return value


def _range(item: str, start: str, stop: str, step: str) -> list:
    integral = all(re.fullmatch(r"[+-]?\d+", s) for s in (start, stop, step))
    try:
        a, b, d = (Decimal(s) for s in (start, stop, step))
    except InvalidOperation:  # pragma: no cover - the regex admits only numbers
        raise _grid_error(item, "range bounds are not numbers") from None
    if d <= 0:
        raise _grid_error(item, f"STEP must be > 0 (got {step})")
    if b < a:
        raise _grid_error(item, f"STOP ({stop}) is below START ({start})")
    n = int((b - a) / d) + 1
    if n > MAX_RANGE_VALUES:
        raise _grid_error(item, f"the range has {n:,} values (at most {MAX_RANGE_VALUES:,})")
    values = [a + i * d for i in range(n)]
    return [int(v) for v in values] if integral else [float(v) for v in values]


def parse_grid(items: Iterable[str]) -> dict[str, list]:
    """['fleet.gpu=h100-sxm,h200', 'fleet.replicas=4:64:4'] -> {'fleet.gpu': ['h100-sxm', 'h200'],
    'fleet.replicas': [4, 8, ..., 64]}. Ranges are inclusive; floats allowed (0.5:2.0:0.5).
    Bad syntax raises SpecError (one line naming the item and the valid forms)."""
    grid: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise _grid_error(item, "no '='")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not _KEY.match(key):
            raise _grid_error(item, f"'{key}' is not a dotted field path")
        if key in grid:
            raise _grid_error(item, f"'{key}' is given twice")
        m = _RANGE.match(raw)
        if m:
            values = _range(item, *m.groups())
        else:
            parts = [p.strip() for p in raw.split(",")]
            if not raw.strip() or any(p == "" for p in parts):
                raise _grid_error(item, "empty value")
            if len(parts) == 1 and re.fullmatch(rf"\s*{_NUMBER}\s*:.*", raw):
                raise _grid_error(item, f"'{raw}' is not a START:STOP:STEP range of three numbers")
            values = [_scalar(p) for p in parts]
        if len(set(map(_canonical, values))) != len(values):
            raise _grid_error(item, "a value is repeated")
        grid[key] = values
    if not grid:
        raise SpecError(f"--grid: no grid given; {_GRID_FORMS}")
    return grid


# --------------------------------------------------------------------------- grid keys (the schema)
def check_grid_key(key: str, base: Mapping | None = None) -> None:
    """SpecError (one line, with a did-you-mean) unless key is a field path of a scenario
    (fleetsim.spec.scenario.ScenarioSpec); list items by index (workload.classes.0.weight), which
    must exist in `base` where it is given."""
    check_field_path(key, base, label="--grid")


def _with_point(base: dict, params: Mapping[str, Any]) -> dict:
    """A copy of the base scenario with the point's values set (keys checked by check_grid_key)."""
    return apply_overrides(base, params, prefix="--grid ")


# --------------------------------------------------------------------------- points and ids
def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _base_data(scenario: Any) -> tuple[dict, Path | None]:
    """The base scenario as a plain mapping (its content, for hashing) and its directory."""
    if isinstance(scenario, ScenarioSpec):
        return scenario.model_dump(mode="json"), None
    if isinstance(scenario, Mapping):
        return json.loads(_canonical(dict(scenario))), None
    path = Path(scenario)
    data = read_mapping(path, "scenario")
    return data, path.parent.resolve()


def point_id(base: Mapping, params: Mapping[str, Any]) -> str:
    """Stable id of a point: a hash of the base scenario's content (with the sweep's overrides
    applied) and the point's values."""
    text = _canonical({"base": base, "point": dict(params)})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _points(grid: Mapping[str, list]) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _shown_value(value: Any) -> str:
    return value if isinstance(value, str) else _canonical(value)
