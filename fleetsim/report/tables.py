"""The report's table model: every number machine-checkable (data-col, data-value, data-scale)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def fmt_number(x: float) -> str:
    """A readable fixed-point rendering (never exponent notation) with about 4 significant digits."""
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    decimals = 1 if a >= 100 else 2 if a >= 10 else 3 if a >= 1 else min(12, 3 - math.floor(math.log10(a)))
    text = f"{x:,.{decimals}f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _py(v: Any) -> Any:
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


@dataclass
class Cell:
    text: str
    col: str = ""
    value: str | None = None  # raw value as written in data-value
    scale: float | None = None
    numeric: bool = False
    css: str = ""


@dataclass
class Row:
    key: str
    cells: list[Cell]
    overrides: str | None = None  # JSON: the overrides that reproduce a re-simulated row
    css: str = ""


@dataclass
class Table:
    id: str
    caption: str
    source: str
    columns: list[tuple[str, str]]  # (col key, heading)
    rows: list[Row] = field(default_factory=list)
    note: str = ""
    overrides: str | None = None


def cell(col: str, value: Any, kind: str = "num") -> Cell:
    """kind: num, int, pct (value is a fraction, shown x100 with %), bool, text, mb (bytes shown as MB)."""
    v = _py(value)
    if kind == "note":
        return Cell("" if v is None else str(v), col, css="src")
    if kind == "text" or isinstance(v, str):
        return Cell("" if v is None else str(v), col)
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return Cell("–", col, css="na")
    if kind == "bool" or isinstance(v, bool):
        return Cell("yes" if v else "no", col, value="true" if v else "false", css="ok" if v else "miss")
    if kind == "int":
        return Cell(f"{int(round(v)):,}", col, value=repr(v), numeric=True)
    if kind == "pct":
        return Cell(f"{100 * v:.2f}%", col, value=repr(float(v)), scale=100.0, numeric=True)
    if kind == "mb":
        return Cell(fmt_number(v / 1e6), col, value=repr(v), scale=1e-6, numeric=True)
    return Cell(fmt_number(float(v)), col, value=repr(float(v)) if isinstance(v, float) else repr(v), numeric=True)


def write_csv(table: Table, path: Path) -> Path:
    """One table as CSV: the headings, then each row's raw values (data-value) or its text."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["row", *[h for _, h in table.columns]])
        for r in table.rows:
            by_col = {c.col: c for c in r.cells}
            vals = []
            for col, _ in table.columns:
                c = by_col.get(col)
                vals.append("" if c is None else (c.value if c.value is not None else c.text))
            w.writerow([r.key, *vals])
    return path
