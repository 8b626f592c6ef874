"""The model and GPU catalogs, shipped as package data.

One YAML file per model (``models/<name>.yaml``: display name, source, published parameter
counts and the verbatim fields of the model's Hugging Face config.json) and one per GPU
(``gpus/<name>.yaml``: exactly the fields of :class:`GpuSpec`, with a source for every figure).

    >>> from fleetsim.catalog import load_model, load_gpu
    >>> load_model("llama-3-8b").num_layers
    32
    >>> load_gpu("h100-sxm").peak_flops("bf16")
    989400000000000.0

``load_model`` also takes a path: a config.json, a folder holding one (a downloaded Hugging
Face snapshot), or a YAML file in the catalog's format.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from fleetsim.catalog.hf import (
    architecture_from_hf_config,
    supported_model_types,
    validation_message,
)
from fleetsim.errors import CatalogError
from fleetsim.spec.architecture import Architecture
from fleetsim.spec.hardware import GpuSpec

__all__ = [
    "architecture_from_hf_config",
    "clear_cache",
    "gpu_entry",
    "gpu_names",
    "load_gpu",
    "load_model",
    "model_entry",
    "model_names",
    "supported_model_types",
]

_SUFFIXES = (".yaml", ".yml")


def model_names() -> list[str]:
    """Names of the catalog models, sorted."""
    return list(_names("models"))


def gpu_names() -> list[str]:
    """Names of the catalog GPUs, sorted."""
    return list(_names("gpus"))


def model_entry(name: str) -> dict:
    """The raw catalog entry of a model (display_name, source, counts, hf_config), a copy."""
    return copy.deepcopy(_entry("models", name, "model"))


def gpu_entry(name: str) -> dict:
    """The raw catalog entry of a GPU, a copy."""
    return copy.deepcopy(_entry("gpus", name, "gpu"))


def load_model(name_or_path: str | Path) -> Architecture:
    """A catalog model by name, or the model a config.json / folder / catalog YAML describes."""
    if not isinstance(name_or_path, Path) and str(name_or_path) in _names("models"):
        return _architecture_from_entry(model_entry(str(name_or_path)), where=str(name_or_path))
    path = Path(name_or_path)
    if isinstance(name_or_path, Path) or path.exists():
        return _model_from_path(path)
    raise CatalogError(
        f"model '{name_or_path}' is unknown; known: {', '.join(model_names())} or pass a path to a config.json"
    )


def load_gpu(name_or_path: str | Path) -> GpuSpec:
    """A catalog GPU by name, or a GPU YAML file in the catalog's format."""
    if not isinstance(name_or_path, Path) and str(name_or_path) in _names("gpus"):
        data = gpu_entry(str(name_or_path))
        where = f"gpu '{name_or_path}'"
    else:
        path = Path(name_or_path)
        if not (isinstance(name_or_path, Path) or path.exists()):
            raise CatalogError(
                f"gpu '{name_or_path}' is unknown; known: {', '.join(gpu_names())} or pass a path to a GPU YAML file"
            )
        data = _read_yaml_file(path)
        where = str(path)
    try:
        return GpuSpec(**data)
    except ValidationError as exc:
        raise CatalogError(f"{where}: {validation_message(exc)}") from None
    except TypeError as exc:
        raise CatalogError(f"{where}: {exc}") from None


def clear_cache() -> None:
    """Forget the catalog files read so far (they are cached after the first read)."""
    _names.cache_clear()
    _read_package_file.cache_clear()


# --------------------------------------------------------------------------------------------


@cache
def _names(kind: str) -> tuple[str, ...]:
    folder = resources.files(__name__) / kind
    return tuple(
        sorted(
            entry.name.rsplit(".", 1)[0]
            for entry in folder.iterdir()
            if entry.is_file() and entry.name.endswith(_SUFFIXES)
        )
    )


@cache
def _read_package_file(kind: str, name: str) -> str:
    folder = resources.files(__name__) / kind
    for suffix in _SUFFIXES:
        entry = folder / f"{name}{suffix}"
        if entry.is_file():
            return entry.read_text(encoding="utf-8")
    raise FileNotFoundError(f"{kind}/{name}")


def _entry(kind: str, name: str, label: str) -> dict:
    if name not in _names(kind):
        known = ", ".join(_names(kind))
        hint = "or pass a path to a config.json" if kind == "models" else "or pass a path to a GPU YAML file"
        raise CatalogError(f"{label} '{name}' is unknown; known: {known} {hint}")
    return _parse_yaml(_read_package_file(kind, name), f"catalog {kind}/{name}")


def _parse_yaml(text: str, where: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{where}: not valid YAML ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: expected a mapping of fields, found {type(data).__name__}")
    return data


def _read_yaml_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return _parse_yaml(text, str(path))


def _model_from_path(path: Path) -> Architecture:
    if path.is_dir():
        candidate = path / "config.json"
        if not candidate.is_file():
            raise CatalogError(f"{path}: folder has no config.json; pass a config.json or a catalog YAML")
        path = candidate
    if not path.is_file():
        raise CatalogError(f"{path}: no such file; pass a config.json, a folder holding one, or a catalog YAML")
    if path.suffix.lower() in _SUFFIXES:
        return _architecture_from_entry(_read_yaml_file(path), where=str(path), default_name=_stem(path))
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except OSError as exc:
        raise CatalogError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return architecture_from_hf_config(config, name=_stem(path), source=str(path))


def _stem(path: Path) -> str:
    """A model name for a file: the folder of a config.json, else the file name less suffixes."""
    if path.name == "config.json":
        return path.resolve().parent.name
    name = path.name
    for suffix in (".json", *_SUFFIXES):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.removesuffix(".config")


def _architecture_from_entry(entry: dict, *, where: str, default_name: str | None = None) -> Architecture:
    config = entry.get("hf_config")
    if not isinstance(config, dict):
        raise CatalogError(f"{where}: the entry has no 'hf_config' mapping (the fields of the model's config.json)")
    name = entry.get("name", default_name or where)
    return architecture_from_hf_config(
        config,
        name=str(name),
        source=str(entry.get("source", "")),
        total_params=entry.get("total_params"),
        active_params=entry.get("active_params"),
    )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
