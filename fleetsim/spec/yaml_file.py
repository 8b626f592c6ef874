"""Reading a YAML mapping from a file (safe_load), with one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from fleetsim.errors import SpecError


def read_yaml(path: str | Path, what: str):
    """The document in a YAML file; SpecError with one line for a missing, unreadable or
    malformed file. `what` names the document (scenario, profile, ...)."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{what}: '{p}' does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{what}: cannot read '{p}' ({exc.__class__.__name__})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise SpecError(f"{p}: not valid YAML{at} ({problem})") from None
    return data


def read_mapping(path: str | Path, what: str) -> dict:
    """Like read_yaml, and the document must be a mapping."""
    p = Path(path)
    data = read_yaml(p, what)
    if not isinstance(data, dict):
        raise SpecError(f"{p}: a {what} must be a YAML mapping, not {type(data).__name__}")
    return data
