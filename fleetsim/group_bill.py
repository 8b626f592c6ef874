"""The bill of a mixed fleet: one bill per replica group (its GPU type, tp, replica count, price and
its own GPU energy meter, gpu_energy_j.<group> in the time series), summed. Pure."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from fleetsim.bill import Bill, bill, power_from_energy
from fleetsim.spec.dynamics import BillingSpec

_SUMMED = (
    "instances",
    "peak_replicas",
    "replica_hours",
    "gpu_hours_used",
    "gpu_hours_billed",
    "gpu_kwh",
    "it_kwh",
    "facility_kwh",
    "water_l",
    "carbon_kg",
)


def _sum_dicts(parts: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(sum(p[k] for p in parts)) for k in parts[0]} if parts else {}


def combine_bills(bills: list[Bill]) -> Bill:
    """One bill of several groups' bills: totals summed; a side (rent, own) any group cannot price
    is left out with the reason; the GPU-hour price is the billed-hours-weighted mean."""
    first = bills[0]
    unpriced: dict[str, str] = {}
    for b in bills:
        for k, why in b.unpriced.items():
            unpriced.setdefault(k, why)
    rent: dict[str, float] = {}
    if "rent" not in unpriced:
        rent = _sum_dicts([{k: v for k, v in b.rent_usd.items() if k != "usd_per_gpu_hour"} for b in bills])
        hours = sum(b.gpu_hours_billed for b in bills)
        rent = {"usd_per_gpu_hour": rent["on_demand_usd"] / hours if hours else 0.0, **rent}
    own = _sum_dicts([b.own_usd for b in bills]) if "own" not in unpriced else {}
    drop = {"rent": ("on_demand_usd", "reserved_usd", "spot_usd"), "own": ("own_usd",)}
    gone = {k for side in unpriced for k in drop.get(side, ())}

    def totals(parts: list[dict[str, float]]) -> dict[str, float]:
        keys = [k for k in parts[0] if k not in gone]
        return {k: float(sum(p.get(k, 0.0) for p in parts)) for k in keys}

    by_class = {
        c: {"share": v["share"], **{k: x for k, x in totals([b.by_class[c] for b in bills]).items() if k != "share"}}
        for c, v in first.by_class.items()
    }
    return Bill(
        period_s=first.period_s,
        granularity_s=first.granularity_s,
        minimum_charge_s=first.minimum_charge_s,
        **{k: sum(getattr(b, k) for b in bills) for k in _SUMMED},
        rent_usd=rent,
        own_usd=own,
        attribution=first.attribution,
        unpriced=unpriced,
        by_class=by_class,
        month=totals([b.month for b in bills]),
        year=totals([b.year for b in bills]),
    )


def mixed_bill(result, billing: BillingSpec = BillingSpec(), cold_start_s: float = 0.0) -> Bill:
    """The bill of a simulate() result of a mixed fleet (fleet.groups): one bill per GPU type (its
    groups' GPUs sharing servers, as fleetsim.group_metrics charges them; billed per GPU, at the
    GPU-weighted mean of the groups' prices), summed; instances and replica-hours count replicas."""
    from fleetsim.catalog import load_gpu

    scenario = result.scenario
    horizon_s = float(result.summary["simulated_s"])
    ts = result.timeseries
    time_s = np.concatenate([[0.0], ts["time_s"].to_numpy(dtype=float), [horizon_s]])
    keep = np.append(np.diff(time_s) > 0, True)
    types: dict[str, list] = {}
    for spec in scenario.fleet.groups:
        if spec.replicas:
            types.setdefault(load_gpu(spec.gpu).name, []).append(spec)
    bills = []
    for name, members in types.items():
        gpu = load_gpu(name)
        gpus = sum(g.replicas * g.tp for g in members)
        mine = result.replicas["gpu"] == name
        meter = sum(ts[f"gpu_energy_j.{g.name}"].to_numpy(dtype=float) for g in members)
        energy_j = np.concatenate([[0.0], meter, [float(result.replicas.loc[mine, "energy_j"].sum())]])
        cost = scenario.cost
        prices = [
            g.rental_usd_per_gpu_hour
            if g.rental_usd_per_gpu_hour is not None
            else (
                cost.rental_usd_per_gpu_hour
                if cost.rental_usd_per_gpu_hour is not None
                else gpu.rental_usd_per_gpu_hour
            )
            for g in members
        ]
        if all(p is not None for p in prices):
            mean = sum(p * g.replicas * g.tp for p, g in zip(prices, members)) / gpus  # type: ignore[operator]
            cost = cost.model_copy(update={"rental_usd_per_gpu_hour": mean})
        bills.append(
            bill(
                pd.DataFrame({"time_s": [0.0], "replicas": [gpus]}),
                power_from_energy(time_s[keep], energy_j[keep]),
                horizon_s=horizon_s,
                gpu=gpu,
                tp=1,
                cost=cost,
                facility=scenario.facility,
                billing=billing,
                requests=result.requests,
                cold_start_s=cold_start_s,
            )
        )
    replicas = sum(g.replicas for g in scenario.fleet.groups)
    return replace(
        combine_bills(bills), instances=replicas, peak_replicas=replicas, replica_hours=replicas * horizon_s / 3600.0
    )
