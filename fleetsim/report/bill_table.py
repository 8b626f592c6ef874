"""The bill of the reference run as a report table: the simulated period, a month and a year at
that load, rented (on demand, reserved, spot) beside owned, from the run summary's `bill`
(fleetsim.bill). Every cell reads one summary path, so the table can be checked against a run."""

from __future__ import annotations

import json

from fleetsim.report.tables import Cell, Row, Table, cell
from fleetsim.sweep import flatten_summary

# (label, kind, period path, month/year key): paths under the summary's `bill`.
BILL_ROWS: tuple[tuple[str, str, str, str | None], ...] = (
    ("GPU-hours used", "num", "gpu_hours_used", None),
    ("GPU-hours billed", "num", "gpu_hours_billed", "gpu_hours_billed"),
    ("GPU energy (kWh)", "num", "gpu_kwh", None),
    ("IT energy (kWh)", "num", "it_kwh", None),
    ("facility energy (kWh)", "num", "facility_kwh", "facility_kwh"),
    ("water (L)", "num", "water_l", "water_l"),
    ("carbon (kg CO2)", "num", "carbon_kg", "carbon_kg"),
    ("rent, on demand ($)", "num", "rent_usd.on_demand_usd", "on_demand_usd"),
    ("rent, reserved ($)", "num", "rent_usd.reserved_usd", "reserved_usd"),
    ("rent, spot ($)", "num", "rent_usd.spot_usd", "spot_usd"),
    ("own: capex + energy + colocation ($)", "num", "own_usd.total_usd", "own_usd"),
)
COLUMNS = (("period", "simulated period"), ("month", "a month"), ("year", "a year"))


def bill_paths(row_period_path: str) -> dict[str, str | None]:
    """Flat summary path of each column of one row (None: the bill has no such figure)."""
    for _, _, period, scaled in BILL_ROWS:
        if period == row_period_path:
            return {
                "period": f"bill.{period}",
                "month": None if scaled is None else f"bill.month.{scaled}",
                "year": None if scaled is None else f"bill.year.{scaled}",
            }
    raise KeyError(row_period_path)


def bill_table(
    summary: dict, label: str, overrides: dict, table_id: str = "t-bill", what: str = "the reference run"
) -> Table | None:
    """The table of `summary`'s bill (None when the run has none)."""
    bill = summary.get("bill")
    if not bill:
        return None
    hours = bill["period_s"] / 3600.0
    t = Table(
        table_id,
        f"The bill of {what} ({label}): {hours:,.2f} h simulated, then a month and a year at that load",
        "summary",
        [("quantity", "quantity"), *COLUMNS],
        overrides=json.dumps(overrides, sort_keys=True),
        note=(
            "Rent on demand bills each instance's lifetime rounded up to the provider's granularity; reserved pays "
            "the peak fleet for the whole period; own is the peak fleet's amortized capex, energy and colocation. "
            "A month is 730 h at the simulated load (with the workload's growth per month), a year twelve of them."
        ),
    )
    flat = flatten_summary(summary)
    for label_, kind, period, _ in BILL_ROWS:
        cells = [Cell(label_, "quantity")]
        for col, path in bill_paths(period).items():
            cells.append(cell(col, None if path is None else flat.get(path), kind))
        t.rows.append(Row(period, cells))
    return t
