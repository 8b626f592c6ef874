"""One error family. The CLI turns any FleetsimError into one line and exit status 2.

Messages read ``field.path: what is wrong (got VALUE); valid: ...``; a value echoed from the input
is capped (``shown``) so a hostile file cannot flood the terminal.
"""

from __future__ import annotations

import math

from pydantic import ValidationError

#: Characters of an input value echoed in an error message.
SHOWN_CHARS = 80


class FleetsimError(Exception):
    """Base of every error caused by input the user can fix."""


class SpecError(FleetsimError):
    """A scenario, catalog entry, profile or config file is malformed."""


class CatalogError(FleetsimError):
    """A model or GPU name is unknown, or a config cannot be interpreted."""


class CapacityError(FleetsimError):
    """The model does not fit, or the KV pool is empty, on the requested hardware."""


class DeviceError(FleetsimError):
    """No usable GPU for calibration."""


class WorkBudgetError(SpecError):
    """A run would take more requests, samples or memory than fleetsim's stated limits."""


class FleetsimWarning(UserWarning):
    """Input that fleetsim accepts but changes or reads in a way the user should know about
    (a trace cut at run.duration_s, a path that climbs out of the scenario's folder)."""


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` on one line, at most `limit` characters: the middle elided with '...'."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    keep = max(limit - 3, 2)
    head = keep - keep // 2
    return text[:head] + "..." + text[len(text) - keep // 2 :]


def shown(value, limit: int = SHOWN_CHARS) -> str:
    """A value as it is echoed in a message: repr, capped; a huge integer by its size."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"an integer of about {digits:,} digits"
    if isinstance(value, str | bytes) and len(value) > 4 * limit:
        value = value[: 2 * limit] + value[-2 * limit :]  # repr of a 16 MiB string is not built
    try:
        text = repr(value)
    except Exception:  # a repr that fails (e.g. int digits limit)
        text = f"a {type(value).__name__}"
    return shorten(text, limit)


_BOUND_WORDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def _number(x) -> str:
    """A bound as people read it: 10,000,000; 315,576,000; 0.001."""
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    if isinstance(x, float) and math.isfinite(x):
        return f"{int(x):,}" if x == int(x) and abs(x) < 1e18 else f"{x:g}"
    return str(x)


def _location(loc) -> str:
    return ".".join(shorten(str(p), 40) for p in loc)


def first_error_line(exc: ValidationError, prefix: str = "") -> str:
    """'field.path: what is wrong (got VALUE)' for the first error, on one line."""
    err = exc.errors(include_url=False)[0]
    loc = _location(err["loc"])
    loc = prefix + loc if loc else prefix.rstrip(".")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    head = f"{loc}: " if loc else ""  # a model-level check names its fields in its message
    if kind == "extra_forbidden":
        return f"{head}unknown key (check spelling; see `fleetsim schema`)"
    if kind == "missing":
        return f"{head}required field is missing"
    if kind in _BOUND_WORDS and "ctx" in err:
        bound = next(iter(ctx.values()), None)
        msg = f"must be {_BOUND_WORDS[kind]} {_number(bound)}"
    elif kind == "finite_number":
        msg = "must be a finite number, not inf or nan"
    elif kind == "int_parsing_size":
        msg = "is too large an integer"
    elif kind in ("float_type", "int_type") and isinstance(err.get("input"), int):
        msg = "is too large a number"
    elif kind == "int_from_float":
        msg = "must be a whole number"
    msg = shorten(msg, 200)
    got = err.get("input")
    if kind.startswith("union_tag") or kind == "literal_error" or "input" not in err or isinstance(got, dict):
        return f"{head}{msg}"
    return f"{head}{msg} (got {shown(got)})"
