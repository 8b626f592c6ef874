"""The names people type for catalog entries: catalog names, aliases, Hugging Face repo ids.

Names match ignoring case and '-', '_' and white space ("H100 SXM5 80GB" = "h100-sxm5-80gb").
An alias that is a Hugging Face repo id ("meta-llama/Llama-3.1-8B-Instruct") also matches by its
repo name alone ("Llama-3.1-8B-Instruct"). Two entries may not claim the same name.
"""

from __future__ import annotations

import difflib
import re

from fleetsim.errors import CatalogError, shorten

_IGNORED = re.compile(r"[-_\s]+")


def escaped(text: str) -> str:
    """`text` as it is when printable, else with backslash escapes (a newline, an ANSI escape, a
    NUL or a lone surrogate reaches no terminal raw)."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def display(text: object, limit: int = 120) -> str:
    """A typed name or a path as a message shows it: one line, escaped, at most `limit` chars."""
    return shorten(escaped(str(text)), limit)


def normalize(name: str) -> str:
    """The form names are compared in: lower case, without '-', '_' or white space."""
    return _IGNORED.sub("", name.strip().lower())


def keys_of(name: str, aliases: list[str]) -> set[str]:
    """Every normalized form an entry answers to."""
    keys = {normalize(name)}
    for alias in aliases:
        keys.add(normalize(alias))
        if "/" in alias:  # a repo id also answers to its repo name
            keys.add(normalize(alias.rsplit("/", 1)[1]))
    return keys


def build_index(label: str, entries: dict[str, list[str]]) -> dict[str, str]:
    """normalized name -> catalog name; CatalogError when two entries claim one name."""
    index: dict[str, str] = {}
    for name in sorted(entries):
        for key in sorted(keys_of(name, entries[name])):
            other = index.setdefault(key, name)
            if other != name:
                raise CatalogError(
                    f"catalog {label}s: the name '{key}' is claimed by both '{other}' and '{name}'; "
                    "aliases must be unique (compared ignoring case, '-', '_' and spaces)"
                )
    return index


def check_aliases(value: object, where: str) -> list[str]:
    """An entry's ``aliases`` field: absent, or a list of non-empty strings."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(a, str) and normalize(a) for a in value):
        raise CatalogError(f"{where}: 'aliases' must be a list of non-empty names, like [h100, H100-SXM]")
    return value


def suggestions(query: str, index: dict[str, str], count: int = 3) -> list[str]:
    """Catalog names closest to what was typed (difflib over names and aliases)."""
    close = difflib.get_close_matches(normalize(query), list(index), n=4 * count, cutoff=0.5)
    names: list[str] = []
    for key in close:
        if index[key] not in names:
            names.append(index[key])
    return names[:count]


def unknown_message(label: str, query: str, index: dict[str, str], listing: str) -> str:
    """One line for a name that matches nothing, with the closest catalog names."""
    shown = display(query, 120)
    near = suggestions(query, index)
    if near:
        return f"{label} '{shown}' is unknown; did you mean: {', '.join(near)}? (fleetsim {listing} lists all)"
    return f"{label} '{shown}' is unknown (fleetsim {listing} lists all)"
