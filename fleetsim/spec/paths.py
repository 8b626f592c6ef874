"""Dotted field paths of the scenario schema: what types an annotation admits, what fields and list
items a spec type has, and every path of ScenarioSpec (for did-you-mean).

Schema logic only, read from the pydantic models; `fleetsim sweep` checks its grid keys with it
(check_field_path) and `fleetsim init` walks the schema with it to write the starter scenario.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from fleetsim.errors import SpecError, shorten

__all__ = ["admitted_types", "all_paths", "check_field_path", "field_types", "list_index"]

#: How deep all_paths descends (the scenario schema is shallower).
MAX_PATH_DEPTH = 6
#: Digits a list index of a dotted path may have (no scenario list is longer).
_MAX_INDEX_DIGITS = 9


def list_index(part: str) -> int | None:
    """The list index a part of a dotted path names ('0', '12'), or None where it is not one
    (a name, a sign, a digit other than 0-9, or more digits than any list has)."""
    if 0 < len(part) <= _MAX_INDEX_DIGITS and part.isascii() and part.isdigit():
        return int(part)
    return None


def admitted_types(annotation: Any) -> list:
    """The concrete types an annotation admits: Annotated, Optional and unions unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return admitted_types(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [t for a in typing.get_args(annotation) for t in admitted_types(a)]
    return [] if annotation is type(None) else [annotation]


def field_types(candidates: list) -> tuple[dict[str, list], list, bool]:
    """(named fields {name: [annotations]}, list item annotations, takes any key) of the types a
    dotted path has reached."""
    named: dict[str, list] = {}
    items: list = []
    any_key = False
    for t in candidates:
        origin = typing.get_origin(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            for name, info in t.model_fields.items():
                named.setdefault(name, []).append(info.annotation)
        elif origin in (tuple, list):
            items += [a for a in typing.get_args(t) if a is not Ellipsis]
        elif origin is dict or t is dict:
            any_key = True
    return named, items, any_key


def all_paths(t: Any = None, prefix: str = "", depth: int = 0) -> list[str]:
    """Every dotted field path of a spec type (default: ScenarioSpec), list items as .0."""
    if t is None:
        from fleetsim.spec.scenario import ScenarioSpec

        t = ScenarioSpec
    named, items, _ = field_types(admitted_types(t))
    out = []
    for name, anns in named.items():
        out.append(prefix + name)
        if depth < MAX_PATH_DEPTH:
            for a in anns:
                out += all_paths(a, f"{prefix}{name}.", depth + 1)
    if items and depth < MAX_PATH_DEPTH:
        out += all_paths(items[0], f"{prefix}0.", depth + 1)
    return list(dict.fromkeys(out))


def _where(parts: list[str]) -> str:
    return f"'{'.'.join(parts)}'" if parts else "a scenario"


def _did_you_mean(parts: list[str], i: int, named: Mapping[str, list]) -> str:
    """'did you mean fleet.replicas? (valid: ...)' for the unknown part i of a dotted key."""
    part = parts[i]
    near = [n for n in named if n.startswith(part)] or difflib.get_close_matches(part, list(named), n=1, cutoff=0.6)
    guess = ".".join([*parts[:i], near[0], *parts[i + 1 :]]) if near else None
    if guess is None:  # a field put under the wrong section: fleet.replicas given as replicas
        rest = ".".join(parts[i:])
        guess = next((p for p in all_paths() if p.endswith("." + rest)), None)
    hint = f"did you mean {guess}? " if guess else ""
    return f"{hint}(valid: {', '.join(named)}; see fleetsim schema)"


def check_field_path(key: str, base: Any = None, label: str = "--grid") -> None:
    """SpecError (one line starting `{label} {key}:`, with a did-you-mean) unless key is a field
    path of ScenarioSpec; list items by index (workload.classes.0.weight), which must exist in the
    scenario mapping `base` where it is given."""
    from fleetsim.spec.scenario import ScenarioSpec

    candidates: list = [ScenarioSpec]
    node: Any = base
    parts = key.split(".")
    head = f"{label} {shorten(key)}"
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        above = ".".join(parts[:i])
        named, items, any_key = field_types(candidates)
        if part in named:
            candidates = [t for a in named[part] for t in admitted_types(a)]
        elif items and (index := list_index(part)) is not None:
            if isinstance(node, list) and index >= len(node):
                raise SpecError(
                    f"{head}: '{above}' has {len(node)} item(s) in the scenario; "
                    f"index {part} is out of range (valid: 0 to {len(node) - 1})"
                )
            candidates = [t for a in items for t in admitted_types(a)]
        elif any_key:
            candidates = []
        elif not named and not items:
            raise SpecError(f"{head}: '{above}' is a value, it has no field '{shorten(part)}'")
        elif items:
            raise SpecError(f"{head}: '{above}' is a list; '{shorten(part)}' must be an item index (0, 1, ...)")
        else:
            raise SpecError(
                f"{head}: '{shorten(here)}' is not a field of {_where(parts[:i])}; {_did_you_mean(parts, i, named)}"
            )
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and (index := list_index(part)) is not None and index < len(node):
            node = node[index]
        else:
            node = None
