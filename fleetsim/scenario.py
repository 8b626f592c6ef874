"""Reading scenarios: YAML (the bounded reader in fleetsim.spec.yaml_file) + dotted-path
overrides, validated by pydantic.

Paths inside a scenario file are relative to the scenario file's folder, always (never the
working directory): the trace (workload.arrival.path), the GPU and engine profiles
(fleet.profile, engine.profile), and the model or GPU when they name a file rather than a
catalog entry. A mapping given in Python has no folder; its relative paths are left to the
working directory.
"""

from __future__ import annotations

import copy
import os
import stat
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleetsim.errors import CatalogError, FleetsimWarning, SpecError, first_error_line, shorten, shown
from fleetsim.spec.base import path_text_problem
from fleetsim.spec.paths import list_index
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.spec.yaml_file import MAX_DEPTH, loads, read_mapping

#: Fields that always hold a path.
PATH_FIELDS = ("workload.arrival.path", "fleet.profile")
#: Fields that hold a catalog name or alias (model, GPU) or a shipped profile name
#: (engine.profile), or else a path.
NAME_OR_PATH_FIELDS = ("model", "fleet.gpu", "engine.profile")


def parse_override(text: str) -> tuple[str, Any]:
    """'fleet.replicas=8' -> ('fleet.replicas', 8); the value is read as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise SpecError(f"--set: '{shorten(text)}' is not KEY=VALUE (e.g. fleet.replicas=8)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise SpecError(f"--set: '{shorten(text)}' has an empty key")
    if key.count(".") >= MAX_DEPTH or any(not part for part in key.split(".")):
        raise SpecError(f"--set: '{shorten(key)}' is not a dotted field path (e.g. fleet.replicas)")
    value = loads(raw, f"--set {shorten(key)}", bad_yaml_as_text=True) if raw.strip() else ""
    return key, value


def set_path(data: dict, dotted: str, value: Any, *, prefix: str = "--set ") -> None:
    """Set one dotted path in the scenario mapping `data`, in place (a copy of value): a part
    indexes a list where the node is one (workload.classes.0.input_tokens), and missing mappings
    on the way are created. SpecError (one line starting `{prefix}{dotted}:`) for an index out of
    range or a path through a value."""
    parts = str(dotted).split(".")
    named = shorten(str(dotted))
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        here = shorten(".".join(parts[: i + 1]))
        if isinstance(node, list):
            key: Any = list_index(part)
            if key is None or key >= len(node):
                above = shorten(".".join(parts[:i]))
                valid = f"valid: 0 to {len(node) - 1}" if node else "it is empty"
                raise SpecError(
                    f"{prefix}{named}: '{here}' needs an index below {len(node)} "
                    f"('{above}' is a list of {len(node)} item(s); {valid})"
                )
        elif isinstance(node, dict):
            key = part
            if not last and node.get(part) is None:
                node[part] = {}
        else:
            raise SpecError(
                f"{prefix}{named}: '{shorten('.'.join(parts[:i]))}' is a value ({shown(node)}), "
                f"not a mapping or list, so it has no '{shorten(part)}'"
            )
        if last:
            node[key] = copy.deepcopy(value)
            return
        node = node[key]


def apply_overrides(data: dict, overrides: Mapping[str, Any], *, prefix: str = "--set ") -> dict:
    """A copy of the scenario mapping with each dotted path set (set_path: list items by index,
    intermediate mappings created); error lines start `{prefix}{dotted}:`."""
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        set_path(out, str(dotted), value, prefix=prefix)
    return out


def _get(data: dict, dotted: str):
    node: Any = data
    for part in dotted.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]  # a list entry (fleet.groups.0.profile)
            continue
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _set(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value


def _group_fields(data: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(path fields, name-or-path fields) of a mixed fleet's groups: each group's profile and gpu."""
    groups = _get(data, "fleet.groups")
    n = len(groups) if isinstance(groups, list) else 0
    ok = [i for i in range(n) if isinstance(groups[i], dict)]
    return tuple(f"fleet.groups.{i}.profile" for i in ok), tuple(f"fleet.groups.{i}.gpu" for i in ok)


def _looks_like_a_file(text: str) -> bool:
    """As the catalog reads a name: a file suffix or an explicit path ('org/model' alone is a
    Hugging Face repo id, an alias, not a path)."""
    return text.lower().endswith((".json", ".yaml", ".yml")) or text.startswith(("/", "./", "../", "~", "\\"))


def _is_catalog_entry(field: str, value: str) -> bool:
    """True when `value` names a catalog model/GPU (by name or alias) or a shipped engine profile."""
    from fleetsim.catalog import resolve_gpu, resolve_model

    if field == "engine.profile":
        from fleetsim.profile import engine_profile_names

        return value in engine_profile_names()
    resolve = resolve_model if field == "model" else resolve_gpu
    try:
        if resolve(value).how in ("name", "alias"):
            return True
    except CatalogError:
        pass
    return False


def _resolve(field: str, value: str, base: Path) -> str:
    """`value` resolved against the scenario folder `base`; SpecError naming the folder if it is
    not there. A relative path that climbs out of the folder (`../traces/a.csv`) is allowed, with
    a FleetsimWarning naming where it lands: shared trace and profile folders beside a scenario
    folder are ordinary, and fleetsim reads files with the user's own rights, so refusing would
    protect nothing that an absolute path (always allowed) does not already reach."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    resolved = Path(os.path.normpath(base / p))
    if not _exists(resolved):
        raise SpecError(
            f"{field}: '{shorten(value, 160)}' does not exist (looked for {shorten(str(resolved), 200)}: "
            "a relative path is relative to the scenario file's folder)"
        )
    if not resolved.is_relative_to(base):
        warnings.warn(
            f"{field}: '{shorten(value, 160)}' climbs out of the scenario's folder {shorten(str(base), 160)}; "
            f"reading {shorten(str(resolved), 200)}",
            FleetsimWarning,
            stacklevel=4,
        )
    return str(resolved)


#: Largest model config, GPU file or profile a scenario may name (a trace: see load_trace).
_MAX_SPEC_FILE_BYTES = 16 * 1024 * 1024


def _check_files(data: dict) -> None:
    """Every file a scenario names is a regular file (a folder only for the model: a Hugging Face
    snapshot) of a readable size, checked by stat before any reader opens it, so /dev/zero, a FIFO
    or a 100 GB file given as a model or GPU cannot hang or exhaust the readers."""
    from fleetsim.workload import MAX_TRACE_BYTES

    for field in (*PATH_FIELDS, *NAME_OR_PATH_FIELDS, *sum(_group_fields(data), ())):
        value = _get(data, field)
        if not isinstance(value, str) or not value or path_text_problem(value):
            continue
        try:
            info = Path(value).expanduser().stat()
        except (OSError, ValueError):
            continue  # not a file: a catalog name, or missing (its reader says so)
        limit = MAX_TRACE_BYTES if field == "workload.arrival.path" else _MAX_SPEC_FILE_BYTES
        if stat.S_ISDIR(info.st_mode) and field == "model":
            continue
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, pipe or socket)"
            raise SpecError(f"{field}: '{shorten(value, 160)}' is {kind}; valid: a file")
        if info.st_size > limit:
            raise SpecError(
                f"{field}: '{shorten(value, 160)}' is {info.st_size:,} bytes; valid: a file of at most {limit:,} bytes"
            )


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long, a NUL: nothing is there
        return False


def _path_value(data: dict, field: str) -> str | None:
    """The string at `field`, checked to be usable as a path or name (None when absent or not a
    string: the schema reports those)."""
    value = _get(data, field)
    if not isinstance(value, str) or not value:
        return None
    problem = path_text_problem(value)
    if problem:
        raise SpecError(f"{field}: {problem} (got {shown(value)})")
    return value


def _resolve_paths(data: dict, base: Path) -> None:
    """Resolve every path of a scenario mapping (in place) against its file's folder `base`."""
    base = Path(os.path.normpath(base.resolve()))
    group_paths, group_names = _group_fields(data)
    for field in (*PATH_FIELDS, *group_paths):
        value = _path_value(data, field)
        if value is not None:
            _set(data, field, _resolve(field, value, base))
    for field in (*NAME_OR_PATH_FIELDS, *group_names):
        value = _path_value(data, field)
        if value is None or _is_catalog_entry(field, value):
            continue
        if field == "engine.profile" or _looks_like_a_file(value) or _exists(base / Path(value).expanduser()):
            _set(data, field, _resolve(field, value, base))
        else:
            _unknown_name(field, value)


def _unknown_name(field: str, value: str) -> None:
    """The catalog's one line (with did-you-mean) for a name that is neither an entry nor a file in
    the scenario's folder; never looked up in the working directory."""
    from fleetsim.catalog import gpu_entry, model_entry

    (model_entry if field == "model" else gpu_entry)(value)  # raises CatalogError
    raise SpecError(f"{field}: '{shorten(value)}' is not a catalog name nor a file")  # pragma: no cover


def scenario_from_dict(
    data: Any, overrides: Mapping[str, Any] | None = None, where: str = "scenario", base: Path | None = None
) -> ScenarioSpec:
    """A ScenarioSpec from a mapping (overrides applied; relative paths resolved against `base`,
    the scenario file's folder, when given); SpecError with one line otherwise."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a scenario must be a YAML mapping, not {type(data).__name__}")
    if overrides:
        data = apply_overrides(data, overrides)
        _check_group_overrides(data, overrides)
    else:
        data = copy.deepcopy(data)
    if base is not None:
        _resolve_paths(data, base)
    _check_files(data)
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{where}: {first_error_line(exc)}") from None
    except RecursionError:
        raise SpecError(f"{where}: nested too deep; valid: a scenario mapping (see `fleetsim schema`)") from None


def _check_group_overrides(data: dict, overrides: Mapping[str, Any]) -> None:
    """An override of a one-type fleet field (fleet.gpu, tp, replicas, profile, power_limit_w) on a
    mixed fleet is refused unless the same overrides set fleet.groups too: even at its default
    value it would otherwise be silently replaced by the groups (a plan or sweep over fleet.gpu)."""
    from fleetsim.spec.groups import GROUP_FIELDS

    if not _get(data, "fleet.groups") or "fleet.groups" in overrides:
        return
    for key in overrides:
        if key in {f"fleet.{f}" for f in GROUP_FIELDS}:
            raise SpecError(
                f"{key}: set on a mixed fleet (fleet.groups); valid: set it per group (fleet.groups[i].{key[6:]}), "
                "or fleet.groups=null for a one-type fleet"
            )


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
    return scenario_from_dict(data, overrides, where=shorten(str(path), 160), base=path.parent.resolve())
