"""Options several commands take, declared once: the same flag, metavar and help everywhere."""

from __future__ import annotations

from typing import Any

import typer

# Metavars: what to type, never a type placeholder such as <list[str]>.
KEY_VALUE = "KEY=VALUE"
DIR = "DIR"
FILE = "FILE"

KV_DTYPES_HELP = "bf16, fp16, fp8, int8, int4, q8_0 (8.5 bits), q4_0 (4.5 bits)"
EVICTION_HELP = (
    "Token eviction: none, h2o (needs --heavy, --recent), snapkv (--budget), pyramidkv (--budget), "
    "streamingllm (--window)."
)


def set_option(what: str = "the scenario") -> Any:
    return typer.Option(
        None,
        "--set",
        metavar=KEY_VALUE,
        help=f"Override a field of {what} by its dotted path (the value is read as YAML), e.g. "
        "--set fleet.replicas=8; repeat for more. Default: none.",
    )


PERIOD_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def period_s(text: str) -> float:
    """A period such as 24h, 30m, 3600s, 1d or 90 (seconds), in seconds; SpecError otherwise."""
    import math

    from fleetsim.errors import SpecError

    t = text.strip().lower()
    unit = PERIOD_UNITS_S.get(t[-1:], None)
    number = t[:-1] if unit is not None else t
    try:
        value = float(number) * (unit or 1.0)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise SpecError(
            f"--period: {text[:40]!r} is not a period; valid: a number > 0 with s, m, h or d (24h, 30m, 3600s, 1d)"
        )
    return value


def json_option(what: str = "one JSON object") -> Any:
    return typer.Option(
        False, "--json", help=f"Print {what} on stdout, no tables (a missing value is null, never NaN)."
    )


def key_dtype_option() -> Any:
    return typer.Option("bf16", "--key-dtype", metavar="DTYPE", help=f"Precision of cached keys: {KV_DTYPES_HELP}.")


def value_dtype_option() -> Any:
    return typer.Option("bf16", "--value-dtype", metavar="DTYPE", help=f"Precision of cached values: {KV_DTYPES_HELP}.")


def eviction_option() -> Any:
    return typer.Option("none", "--eviction", metavar="POLICY", help=EVICTION_HELP)


def tokens_option(flag: str, help: str, default: int | None = None) -> Any:
    suffix = "" if default is not None else " Default: none (needed only by that policy)."
    return typer.Option(default, flag, metavar="TOKENS", help=help + suffix)
