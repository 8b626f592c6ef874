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
