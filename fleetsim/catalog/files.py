"""The files a user names for a model or a GPU: a Hugging Face config.json, a catalog-format YAML.

Both go through the bounded reader of :mod:`fleetsim.spec.yaml_file`: only a regular file is
opened (a folder, /dev/zero, a FIFO or a socket is refused before a byte is read, and a FIFO
cannot hang the open), at most ``MAX_FILE_BYTES`` of it, as UTF-8 text. A YAML document is
parsed with that module's bounded loader (nesting, alias expansion); a JSON document with
``json.loads`` under a nesting guard of the same depth. Every problem is one
:class:`~fleetsim.errors.CatalogError` line naming the file; nothing of its contents is echoed
but a short parser message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fleetsim.catalog.names import display, escaped
from fleetsim.errors import CatalogError, SpecError, shorten
from fleetsim.spec.yaml_file import MAX_DEPTH, read_mapping, read_text

__all__ = ["read_catalog_yaml", "read_config_json"]

#: Characters of a path shown in a message.
PATH_CHARS = 160


def read_config_json(path: Path, what: str = "model config") -> Any:
    """The JSON document of a config.json (any JSON value: the caller checks it is an object)."""
    shown = display(path, PATH_CHARS)
    try:
        text = read_text(path, what)
    except SpecError as exc:
        raise CatalogError(escaped(str(exc))) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{shown}: not valid JSON (line {exc.lineno}: {shorten(exc.msg, 80)})") from None
    except RecursionError:
        raise CatalogError(
            f"{shown}: refused: nesting deeper than {MAX_DEPTH} levels; valid: a plain JSON object"
        ) from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise CatalogError(f"{shown}: not valid JSON (a value cannot be read: {shorten(exc, 80)})") from None
    if _depth_exceeds(data, MAX_DEPTH):
        raise CatalogError(f"{shown}: refused: nesting deeper than {MAX_DEPTH} levels; valid: a plain JSON object")
    return data


def read_catalog_yaml(path: Path, what: str) -> dict:
    """The mapping in a catalog-format YAML file (a model or GPU entry)."""
    try:
        return read_mapping(path, what)
    except SpecError as exc:
        raise CatalogError(escaped(str(exc))) from None


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` deep (iterative: no recursion)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
