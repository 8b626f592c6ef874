"""The model and GPU catalogs, shipped as package data.

One YAML file per model (``models/<name>.yaml``: display name, source, aliases, published
parameter counts and the verbatim fields of the model's Hugging Face config.json) and one per GPU
(``gpus/<name>.yaml``: the fields of :class:`GpuSpec` with a source for every figure, and aliases).

    >>> from fleetsim.catalog import load_model, load_gpu
    >>> load_model("llama-3-8b").num_layers
    32
    >>> load_model("meta-llama/Meta-Llama-3-8B-Instruct").name
    'llama-3-8b'
    >>> load_gpu("H100 SXM5 80GB").peak_flops("bf16")
    989400000000000.0

A name is looked up as a catalog name, then as an alias (case, '-', '_' and spaces ignored; a
Hugging Face repo id also by its repo name alone), then as a path: ``load_model`` takes a
config.json, a folder holding one (a downloaded Hugging Face snapshot), or a YAML file in the
catalog's format. A name that is none of these is one line naming the closest catalog entries.
A file is read only if it is a regular file of a bounded size, as UTF-8, with bounded nesting
(:mod:`fleetsim.catalog.files`); every count a config gives is bounded before anything is built
from it (:mod:`fleetsim.catalog.hf`). Any problem is one CatalogError line.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from fleetsim.catalog.files import PATH_CHARS, read_catalog_yaml, read_config_json
from fleetsim.catalog.hf import (
    architecture_from_hf_config,
    supported_model_types,
    validation_message,
)
from fleetsim.catalog.names import build_index, check_aliases, display, escaped, normalize, unknown_message
from fleetsim.errors import CatalogError, SpecError
from fleetsim.spec.architecture import Architecture
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.yaml_file import loads

__all__ = [
    "Resolved",
    "architecture_from_entry",
    "architecture_from_hf_config",
    "clear_cache",
    "gpu_entry",
    "gpu_names",
    "load_gpu",
    "load_model",
    "model_entry",
    "model_names",
    "model_record",
    "resolve_gpu",
    "resolve_model",
    "supported_model_types",
]

_SUFFIXES = (".yaml", ".yml")
_FILE_SUFFIXES = (".json", *_SUFFIXES)
_LISTINGS = {"models": ("model", "models"), "gpus": ("gpu", "gpus")}


@dataclass(frozen=True)
class Resolved:
    """What a typed name turned out to be: a catalog ``name`` (how: "name" or "alias"), or a
    ``path`` (how: "path")."""

    how: str
    name: str | None = None
    path: Path | None = None


def model_names() -> list[str]:
    """Names of the catalog models, sorted."""
    return list(_names("models"))


def gpu_names() -> list[str]:
    """Names of the catalog GPUs, sorted."""
    return list(_names("gpus"))


def model_entry(name: str) -> dict:
    """The raw catalog entry of a model (display_name, source, aliases, counts, hf_config), a copy.
    Takes a catalog name or an alias."""
    return copy.deepcopy(_entry("models", _catalog_name("models", name)))


def gpu_entry(name: str) -> dict:
    """The raw catalog entry of a GPU, a copy. Takes a catalog name or an alias."""
    return copy.deepcopy(_entry("gpus", _catalog_name("gpus", name)))


def resolve_model(name_or_path: str | Path) -> Resolved:
    """Which catalog model, or which file, a typed name means (no file is read)."""
    return _resolve("models", name_or_path)


def resolve_gpu(name_or_path: str | Path) -> Resolved:
    """Which catalog GPU, or which GPU YAML file, a typed name means."""
    return _resolve("gpus", name_or_path)


def load_model(name_or_path: str | Path) -> Architecture:
    """A catalog model by name or alias, or the model a config.json / folder / catalog YAML describes."""
    found, entry = model_record(name_or_path)
    return architecture_from_entry(entry, where=found.name or str(found.path))


def model_record(name_or_path: str | Path) -> tuple[Resolved, dict]:
    """How a typed name resolved, and the model's entry in the catalog's format (name, source,
    hf_config and, where published, total_params/active_params); for a config.json, an entry
    around it named after the file."""
    found = resolve_model(name_or_path)
    if found.path is None:
        assert found.name is not None
        return found, _entry("models", found.name)
    path = found.path
    shown = display(path, PATH_CHARS)
    if _is_dir(path):
        path = path / "config.json"
        if not _exists(path):
            raise CatalogError(f"{shown}: folder has no config.json; pass a config.json or a catalog YAML")
    elif not _exists(path):
        raise CatalogError(f"{shown}: no such file; pass a config.json, a folder holding one, or a catalog YAML")
    # What is there (a regular file? of a readable size?) the bounded readers check before reading.
    if path.suffix.lower() in _SUFFIXES:
        return found, {"name": _stem(path), **read_catalog_yaml(path, "model file")}
    config = read_config_json(path)
    if not isinstance(config, dict):
        raise CatalogError(
            f"{display(path, PATH_CHARS)}: a config must be a JSON object (a dict), not {type(config).__name__}"
        )
    return found, {"name": _stem(path), "source": str(path), "hf_config": config}


def load_gpu(name_or_path: str | Path) -> GpuSpec:
    """A catalog GPU by name or alias, or a GPU YAML file in the catalog's format."""
    found = resolve_gpu(name_or_path)
    if found.path is not None:
        if not _exists(found.path):
            raise CatalogError(
                f"{display(found.path, PATH_CHARS)}: no such file; pass a catalog GPU name or a GPU YAML file"
            )
        data, where = read_catalog_yaml(found.path, "GPU file"), display(found.path, PATH_CHARS)
    else:
        assert found.name is not None
        data, where = gpu_entry(found.name), f"gpu '{found.name}'"
    data.pop("aliases", None)  # catalog metadata, not a GpuSpec field
    try:
        return GpuSpec.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"{where}: {validation_message(exc)}") from None


def clear_cache() -> None:
    """Forget the catalog files read so far (they are cached after the first read)."""
    _names.cache_clear()
    _read_package_file.cache_clear()
    _alias_index.cache_clear()


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


def _entry(kind: str, name: str) -> dict:
    where = f"catalog {kind}/{name}"
    try:
        data = loads(_read_package_file(kind, name), where)
    except SpecError as exc:
        raise CatalogError(escaped(str(exc))) from None
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: expected a mapping of fields, found {type(data).__name__}")
    return data


@cache
def _alias_index(kind: str) -> dict[str, str]:
    """normalized name or alias -> catalog name, over the whole catalog (checked unambiguous)."""
    aliases = {
        name: check_aliases(_entry(kind, name).get("aliases"), f"catalog {kind}/{name}") for name in _names(kind)
    }
    return build_index(_LISTINGS[kind][0], aliases)


def _catalog_name(kind: str, name: str) -> str:
    """The catalog name a name or alias means; CatalogError (with suggestions) for none."""
    if name in _names(kind):
        return name
    found = _alias_index(kind).get(normalize(str(name)))
    if found is None:
        label, listing = _LISTINGS[kind]
        raise CatalogError(unknown_message(label, str(name), _alias_index(kind), listing))
    return found


def _resolve(kind: str, name_or_path: str | Path) -> Resolved:
    if isinstance(name_or_path, Path):
        return Resolved("path", path=name_or_path)
    text = str(name_or_path)
    if text in _names(kind):
        return Resolved("name", name=text)
    found = _alias_index(kind).get(normalize(text))
    if found is not None:  # the name itself typed another way ("LLAMA_3_8B"), or an alias
        return Resolved("name" if normalize(text) == normalize(found) else "alias", name=found)
    path = _expand(Path(text))
    if _exists(path) or _looks_like_a_file(text):
        return Resolved("path", path=path)
    label, listing = _LISTINGS[kind]
    raise CatalogError(unknown_message(label, text, _alias_index(kind), listing))


def _looks_like_a_file(text: str) -> bool:
    """A name meant as a file (its error should say 'no such file'): a file suffix, or an explicit
    relative/absolute/home path. 'org/model' alone reads as a Hugging Face repo id, not a path."""
    return text.lower().endswith(_FILE_SUFFIXES) or text.startswith(("/", "./", "../", "~", "\\"))


def _expand(path: Path) -> Path:
    """`path` with a leading ~ expanded; as typed when there is no such home folder."""
    try:
        return path.expanduser()
    except RuntimeError:  # '~nosuchuser/x'
        return path


def _exists(path: Path) -> bool:
    """Whether something (a file, folder, device, FIFO) is at `path`; False for a path the OS
    cannot look up (too long, a NUL, no permission on a folder above)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _stem(path: Path) -> str:
    """A model name for a file: the folder of a config.json, else the file name less suffixes."""
    if path.name == "config.json":
        return path.resolve().parent.name
    name = path.name
    for suffix in (".json", *_SUFFIXES):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.removesuffix(".config")


def architecture_from_entry(entry: dict, *, where: str) -> Architecture:
    """The Architecture of a catalog-format entry (its hf_config, published counts where given)."""
    config = entry.get("hf_config")
    if not isinstance(config, dict):
        raise CatalogError(f"{where}: the entry has no 'hf_config' mapping (the fields of the model's config.json)")
    name = entry.get("name", where)
    # Active parameters follow one rule for every model (hf/shape.py: what a token's forward pass
    # multiplies, lookups excluded), so step times compare across models; publishers count them
    # differently (Meta and Mistral include the token table, DeepSeek does not), so a published
    # active count stays in the entry for display only.
    return architecture_from_hf_config(
        config,
        name=str(name),
        source=str(entry.get("source", "")),
        total_params=entry.get("total_params"),
        active_params=None,
    )
