"""Reading a YAML document from a file: the one reader every scenario, profile, sweep and case
file goes through, hardened against files that are not what they claim.

- Only a regular file is read (a folder, /dev/zero, /dev/urandom or a FIFO is refused before a
  byte is read, and a file is opened non-blocking so a FIFO cannot hang the open), and at most
  ``MAX_FILE_BYTES``.
- The text must be UTF-8 (a byte-order mark is allowed).
- ``yaml.safe_load`` semantics (no Python objects), plus YAML 1.2 floats: ``1e3`` is the number
  1000.0, not the string '1e3' (PyYAML follows YAML 1.1, where an exponent needs a dot).
- Bounded structure: nesting at most ``MAX_DEPTH`` deep and at most ``MAX_NODES`` nodes once every
  alias is expanded, so an alias bomb ("billion laughs") or a recursive alias is refused before it
  is built, and nothing downstream (validation, copying, JSON) can blow up on it.
- Every problem is a SpecError of one line naming the file; text echoed from the file is capped.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from fleetsim.errors import SpecError, shorten

#: Largest file read, bytes (a scenario is ~2 KB; the shipped validation cases ~60 KB).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Deepest nesting of mappings and lists (a scenario nests ~6 deep).
MAX_DEPTH = 64
#: Nodes (scalars, mappings, lists) after expanding aliases.
MAX_NODES = 1_000_000


class _TooBig(Exception):
    pass


# YAML 1.2 floats that YAML 1.1 reads as strings: an exponent without a dot (1e3, 2E-5, -1e+9).
_FLOAT_12 = re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$")


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts nesting while composing and expanded size before constructing."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels at line {mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        _check_expanded_size(node)
        return node


_BoundedLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789"))


def _check_expanded_size(root) -> None:
    """Refuse a node graph whose alias-expanded tree exceeds MAX_NODES or MAX_DEPTH, or that is
    recursive. Iterative (no recursion), memoised per node, so it costs O(distinct nodes)."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            if size[key] > MAX_NODES:
                raise _TooBig(f"more than {MAX_NODES:,} values once aliases are expanded (an alias bomb?)")
            if height[key] > MAX_DEPTH:
                raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels once aliases are expanded")
            continue
        if key in size:
            continue
        if key in on_path:
            raise _TooBig("an alias refers to a node that contains it (a recursive structure)")
        on_path.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) not in size:
                stack.append((kid, False))


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def loads(text: str, where: str, *, bad_yaml_as_text: bool = False) -> Any:
    """The YAML document in `text` (safe, bounded as above); SpecError naming `where`.
    With `bad_yaml_as_text` (a --set value), text that is not YAML is returned as it is."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader subclass: no Python objects
    except _TooBig as exc:
        raise SpecError(f"{where}: refused: {exc}; valid: a plain YAML document") from None
    except yaml.YAMLError as exc:
        if bad_yaml_as_text:
            return text
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problem = shorten(getattr(exc, "problem", None) or exc, 120)
        raise SpecError(f"{where}: not valid YAML{at} ({problem})") from None
    except RecursionError:
        raise SpecError(f"{where}: refused: nesting too deep; valid: a plain YAML document") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # A scalar the constructor cannot build: an integer of more than 4,300 digits, a date
        # like 2024-13-45, bad base64 in !!binary.
        raise SpecError(f"{where}: not valid YAML (a value cannot be read: {shorten(exc, 120)})") from None


def open_regular_file(path: str | Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> BinaryIO:
    """A binary file object for a regular file of at most `max_bytes` (by its size now); SpecError
    with one line for a missing file, a folder, a device, a FIFO or a socket (opened non-blocking,
    so a FIFO cannot hang here) or a file too large. `what` names the document or field."""
    p = Path(path)
    shown = shorten(str(p), 160)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SpecError(f"{what}: '{shown}' does not exist{_where_resolved(p)}") from None
    except IsADirectoryError:
        raise SpecError(f"{what}: '{shown}' is a folder; valid: a file") from None
    except OSError as exc:
        raise SpecError(f"{what}: cannot read '{shown}' ({exc.strerror or exc.__class__.__name__})") from None
    except ValueError:  # a NUL character in the path
        raise SpecError(f"{what}: {shown!r} is not a valid path (it holds a NUL character)") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise SpecError(f"{what}: '{shown}' is a folder; valid: a file")
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(f"{what}: '{shown}' is not a regular file (a device, pipe or socket); valid: a file")
        if info.st_size > max_bytes:
            raise SpecError(
                f"{what}: '{shown}' is {info.st_size:,} bytes; valid: a file of at most {max_bytes:,} bytes"
            )
        return os.fdopen(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def read_text(path: str | Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `max_bytes`; SpecError with one line otherwise.
    `what` names the document (scenario, profile, ...) or the field that named the file."""
    shown = shorten(str(path), 160)
    try:
        with open_regular_file(path, what, max_bytes) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise SpecError(f"{what}: cannot read '{shown}' ({exc.strerror or exc.__class__.__name__})") from None
    if len(data) > max_bytes:
        raise SpecError(f"{what}: '{shown}' is over {max_bytes:,} bytes; valid: a file of at most {max_bytes:,} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{what}: '{shown}' is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start:,}); "
            "valid: a UTF-8 text file"
        ) from None


def _where_resolved(p: Path) -> str:
    """' (resolved to /abs/path)' when the path is relative (so the folder it was looked in shows)."""
    if p.is_absolute():
        return ""
    return f" (looked for {shorten(str(Path.cwd() / p), 160)})"


def read_yaml(path: str | Path, what: str):
    """The document in a YAML file; SpecError with one line for a missing, unreadable,
    oversized, non-UTF-8, malformed or unbounded file. `what` names the document."""
    p = Path(path)
    return loads(read_text(p, what), shorten(str(p), 160))


def read_mapping(path: str | Path, what: str) -> dict:
    """Like read_yaml, and the document must be a mapping."""
    p = Path(path)
    data = read_yaml(p, what)
    if not isinstance(data, dict):
        raise SpecError(f"{shorten(str(p), 160)}: a {what} must be a YAML mapping, not {type(data).__name__}")
    return data
