"""What every command shares: the consoles, one-line errors, JSON and tables on stdout."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

# Piped output is not cut to 80 columns (names and numbers stay whole).
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


def error_line(message: str) -> None:
    """`error: MESSAGE` on stderr, one physical line (never wrapped to the terminal width)."""
    sys.stderr.write("error: " + " ".join(str(message).split()) + "\n")


def warning_line(message: str) -> None:
    """`warning: MESSAGE` on stderr, one physical line."""
    sys.stderr.write("warning: " + " ".join(str(message).split()) + "\n")


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """warnings.showwarning for the command line: `warning: MESSAGE`, one line, whatever the
    category (FleetsimWarning or a library's), never `file:line: Category: msg` and the source line."""
    warning_line(str(message))


def say(message: str) -> None:
    """A plain line on stdout (no rich markup: paths with brackets print as they are)."""
    sys.stdout.write(message + "\n")


def note_line(message: str) -> None:
    """A one-line remark on stderr (stdout stays the result alone)."""
    sys.stderr.write(" ".join(str(message).split()) + "\n")


def fail(message: str, status: int = 2) -> NoReturn:
    error_line(message)
    raise typer.Exit(status)


def overrides(values: list[str] | None) -> dict:
    """--set KEY=VALUE items as {dotted.path: value} (values read as YAML)."""
    from fleetsim.scenario import parse_override

    return dict(parse_override(v) for v in values or [])


def gb(x: float) -> str:
    return f"{x / 1e9:,.2f}"


def print_json(obj: Any, reasons: Mapping[str, str] | None = None) -> None:
    """obj as JSON on stdout through the one writer (fleetsim.output.json_text): never NaN or
    Infinity; nulls with a known reason say why."""
    from fleetsim.output import json_text

    sys.stdout.write(json_text(obj, reasons=reasons) + "\n")


def cell(value: Any, fmt: str = "{:,.4g}") -> str:
    """A table cell: '-' for a missing value (None, NaN), numbers formatted."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return fmt.format(value)
    return str(value)


def print_frame(df, title: str = "", floatfmt: str = "{:,.4g}") -> None:
    t = Table(title=title or None)
    for c in df.columns:
        t.add_column(str(c), overflow="fold")
    for row in df.itertuples(index=False):
        t.add_row(*(cell(v, floatfmt) for v in row))
    out.print(t)
