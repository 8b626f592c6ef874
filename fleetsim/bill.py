"""The bill of a simulated period: GPU-hours as billed, energy, water, carbon, and dollars rented and owned.

Inputs are data: a replica-count step series (time_s, replicas: the count holds from each time
to the next; or the instance lifetimes the autoscaler records) and the fleet's GPU power
(time_s, power_w), over [0, horizon_s).

- GPU-hours used = tp x the time integral of the replica count. Billed: each instance lifetime
  rounded up to the billing granularity, at least the minimum charge (a series without lifetimes
  is split into instances last-in first-out: a scale-down releases the newest).
- GPU kWh = the integral of the power series (a step series, or trapezoids between samples).
  IT kWh is wall power: the GPUs plus the charged servers' load-dependent host parts through the
  PSUs (fleetsim.server_power; a scenario's facility.server_overhead_w is a constant instead); facility kWh = IT x PUE, water = WUE x IT kWh (facility.py),
  carbon = facility kWh x facility.grid_carbon_g_per_kwh (one carbon intensity for run, plan and report).
- Rent: on-demand = billed GPU-hours x the GPU-hour price (cost.py); reserved = the peak fleet's
  GPUs for the whole period at (1 - reserved_discount) of it (a reservation is paid whether used
  or not); spot = billed GPU-hours at (1 - spot_discount) of it, plus each interruption's
  re-billed cold start (interruptions per instance-hour x instance-hours x cold_start_s).
- Own: the peak fleet owned (capex x capital-recovery factor, energy, colocation by
  cost.hourly_cost_usd), over the period, with the integrated mean IT power.
- Per class: every total split by the class's share of tokens served (input + output tokens of
  its completed requests), or by `gpu_time`: its share of replica residence time (finish_s -
  scheduled_s summed over its completed requests).
- Month and year: the period scaled to 730 h, month k x (1 + growth)^(k-1), a year the sum of 12
  (costs taken as proportional to traffic, which holds for an autoscaled fleet, not a fixed one).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from fleetsim.admission import class_codes, completed_rows
from fleetsim.cost import HOURS_PER_MONTH, hourly_cost_usd
from fleetsim.errors import SpecError
from fleetsim.facility import facility_power_kw, it_power_kw, num_servers, server_overhead_w, water_l_per_h
from fleetsim.server_power import load_fraction, server_wall_w, servers_for
from fleetsim.spec.dynamics import BillingSpec
from fleetsim.spec.economics import CostSpec, FacilitySpec
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.yaml_file import read_mapping

BILLING_FILE = Path(__file__).parent / "catalog" / "billing.yaml"


@cache
def _providers() -> dict:
    return read_mapping(BILLING_FILE, "billing catalog")["providers"]


def granularity_of(spec: BillingSpec) -> tuple[float, float]:
    """(granularity_s, minimum_charge_s): the provider's from billing.yaml, else the spec's."""
    if spec.provider is None:
        return spec.granularity_s, spec.minimum_charge_s
    providers = _providers()
    if spec.provider not in providers:
        raise SpecError(
            f"billing.provider: {spec.provider!r} is not in billing.yaml; valid: {', '.join(sorted(providers))}"
        )
    p = providers[spec.provider]
    return float(p["granularity_s"]), float(p["minimum_charge_s"])


# --------------------------------------------------------------------------- time integrals


def _check_series(series: pd.DataFrame, column: str, horizon_s: float) -> tuple[np.ndarray, np.ndarray]:
    t = series["time_s"].to_numpy(dtype=float)
    v = series[column].to_numpy(dtype=float)
    if not (math.isfinite(horizon_s) and horizon_s >= 0):
        raise SpecError(f"horizon_s = {horizon_s!r}; valid: a finite number >= 0")
    if len(t) == 0 or t[0] > 0 or np.any(np.diff(t) < 0) or not np.all(np.isfinite(v)) or np.any(v < 0):
        raise SpecError(f"{column} series: needs time_s increasing from <= 0 and finite values >= 0")
    return t, v


def step_integral(series: pd.DataFrame, column: str, horizon_s: float) -> float:
    """Integral over [0, horizon_s) of a step series (each value holds until the next time_s)."""
    t, v = _check_series(series, column, horizon_s)
    ends = np.append(t[1:], horizon_s)
    span = np.clip(np.minimum(ends, horizon_s) - np.maximum(t, 0.0), 0.0, None)
    return float(np.sum(v * span))


def trapezoid_integral(series: pd.DataFrame, column: str, horizon_s: float) -> float:
    """Integral over [0, horizon_s) of a series linear between samples (held flat past the last)."""
    t, v = _check_series(series, column, horizon_s)
    grid = np.unique(np.concatenate([np.clip(t, 0.0, horizon_s), [0.0, horizon_s]]))
    values = np.interp(grid, t, v)
    return float(np.sum((values[1:] + values[:-1]) * np.diff(grid)) / 2.0)


def instance_lifetimes(replicas: pd.DataFrame, horizon_s: float) -> pd.DataFrame:
    """(launched_s, released_s) of each instance of a replica-count step series, last in first out."""
    t, v = _check_series(replicas, "replicas", horizon_s)
    alive: list[float] = []
    rows: list[tuple[float, float]] = []
    for time_s, count in zip(np.maximum(t, 0.0), v.astype(int)):
        if time_s >= horizon_s:
            break
        while len(alive) > count:
            rows.append((alive.pop(), float(time_s)))
        alive.extend([float(time_s)] * (count - len(alive)))
    rows.extend((start, horizon_s) for start in alive)
    return pd.DataFrame(rows, columns=["launched_s", "released_s"])


def billed_s(lifetime_s: np.ndarray, granularity_s: float, minimum_charge_s: float) -> np.ndarray:
    """Billed seconds of each lifetime: rounded up to the granularity, at least the minimum; a
    lifetime of 0 is not billed."""
    steps = np.ceil(lifetime_s / granularity_s * (1 - 1e-12))  # 3600 s is one hour, not two
    return np.where(lifetime_s > 0, np.maximum(steps * granularity_s, minimum_charge_s), 0.0)


def power_from_energy(time_s: np.ndarray, energy_j: np.ndarray) -> pd.DataFrame:
    """The step power series whose integral is a cumulative energy meter sampled at time_s."""
    dt = np.diff(time_s)
    power = np.where(dt > 0, np.diff(energy_j) / np.where(dt > 0, dt, 1.0), 0.0)
    return pd.DataFrame({"time_s": time_s, "power_w": np.append(power, 0.0)})


# --------------------------------------------------------------------------- the bill


@dataclass(frozen=True)
class Bill:
    period_s: float
    granularity_s: float
    minimum_charge_s: float
    instances: int
    peak_replicas: int
    replica_hours: float
    gpu_hours_used: float
    gpu_hours_billed: float
    gpu_kwh: float
    it_kwh: float
    facility_kwh: float
    water_l: float
    carbon_kg: float
    rent_usd: dict[str, float]
    own_usd: dict[str, float]
    attribution: str
    unpriced: dict[str, str] = field(default_factory=dict)  # 'rent'/'own': why it has no price
    by_class: dict[str, dict[str, float]] = field(default_factory=dict)
    month: dict[str, float] = field(default_factory=dict)
    year: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def class_shares(requests: pd.DataFrame | None, method: Literal["gpu_time", "tokens"]) -> dict[str, float]:
    """Each class's share of the bill: of tokens served, or of replica residence time."""
    if requests is None or len(requests) == 0:
        return {}
    done = completed_rows(requests)  # a mask, not a copy of the table
    codes, names = class_codes(requests)
    if method == "tokens":
        weight = requests["input_tokens"].to_numpy()[done]
        weight += requests["output_tokens"].to_numpy()[done]
    else:
        weight = requests["finish_s"].to_numpy()[done]
        weight -= requests["scheduled_s"].to_numpy()[done]
        np.clip(weight, 0, None, out=weight)
    # Summed per class by groupby (its compensated sum), then in the order of the names.
    per = pd.Series(weight).groupby(codes[done], sort=True).sum()
    per = per.set_axis([names[k] for k in per.index]).sort_index()
    total = float(per.sum())
    return {str(k): float(v) / total for k, v in per.items()} if total > 0 else {}


def bill(
    replicas: pd.DataFrame,
    power: pd.DataFrame,
    *,
    horizon_s: float,
    gpu: GpuSpec,
    tp: int,
    cost: CostSpec,
    facility: FacilitySpec,
    billing: BillingSpec = BillingSpec(),
    lifetimes: pd.DataFrame | None = None,
    requests: pd.DataFrame | None = None,
    power_interpolation: Literal["step", "trapezoid"] = "step",
    cold_start_s: float = 0.0,
) -> Bill:
    """The bill of [0, horizon_s): see the module docstring for every term."""
    if horizon_s <= 0:
        raise SpecError(f"horizon_s = {horizon_s!r}; valid: a simulated period > 0 s")
    hours = horizon_s / 3600.0
    gran_s, min_s = granularity_of(billing)
    life = lifetimes if lifetimes is not None else instance_lifetimes(replicas, horizon_s)
    span = (life["released_s"].clip(upper=horizon_s) - life["launched_s"].clip(lower=0)).clip(lower=0).to_numpy()
    replica_s = step_integral(replicas, "replicas", horizon_s)
    billed_gpu_h = float(billed_s(span, gran_s, min_s).sum()) * tp / 3600.0
    peak = int(replicas["replicas"].max())

    integrate = step_integral if power_interpolation == "step" else trapezoid_integral
    gpu_kwh = integrate(power, "power_w", horizon_s) / 3.6e6
    t, v = _check_series(replicas, "replicas", horizon_s)
    gpu_w_mean = gpu_kwh * 3.6e6 / horizon_s
    if facility.server_overhead_w is None:
        # Wall power (fleetsim.server_power): the GPUs plus the mean charged servers' host parts at the
        # GPUs' mean load, through the PSUs; rack-scale systems charged their fraction of a rack.
        servers = pd.DataFrame({"time_s": t, "servers": [servers_for(int(n) * tp, gpu) for n in v]})
        servers_mean = step_integral(servers, "servers", horizon_s) / horizon_s
        gpus_mean = replica_s * tp / horizon_s
        load = load_fraction(gpu_w_mean / gpus_mean, gpu) if gpus_mean > 0 else 0.0
        it_kw_mean = server_wall_w(gpu_w_mean, gpu, servers=servers_mean, load=load) / 1000.0
    else:  # the scenario's constant non-GPU power per (partly) occupied server
        overhead_w = server_overhead_w(gpu, facility.server_overhead_w)
        servers = pd.DataFrame({"time_s": t, "servers": [num_servers(int(n) * tp, gpu.gpus_per_server) for n in v]})
        server_s = step_integral(servers, "servers", horizon_s)
        it_kw_mean = it_power_kw(gpu_w_mean, 1, overhead_w * server_s / horizon_s)
    it_kwh = it_kw_mean * hours
    facility_kwh = facility_power_kw(it_kw_mean, facility.pue) * hours
    water_l = water_l_per_h(it_kw_mean, facility.wue_l_per_kwh) * hours

    unpriced: dict[str, str] = {}
    rent: dict[str, float] = {}
    try:
        rental = CostSpec(mode="rental", rental_usd_per_gpu_hour=cost.rental_usd_per_gpu_hour)
        price = hourly_cost_usd(rental, gpu, 1, 0.0, facility.pue).rental_usd_per_hour
    except SpecError as exc:  # a GPU file without a rental price: the rest of the bill stands
        unpriced["rent"] = str(exc)
    else:
        spot_price = price * (1 - billing.spot_discount)
        interruptions = billing.spot_interruptions_per_instance_hour * float(span.sum()) / 3600.0
        rent = {
            "usd_per_gpu_hour": price,
            "on_demand_usd": billed_gpu_h * price,
            "reserved_usd": peak * tp * hours * price * (1 - billing.reserved_discount),
            "spot_usd": billed_gpu_h * spot_price + interruptions * cold_start_s / 3600.0 * tp * spot_price,
            "spot_interruptions": interruptions,
        }
    own: dict[str, float] = {}
    try:
        owned = hourly_cost_usd(
            cost.model_copy(update={"mode": "owned"}),
            gpu,
            peak * tp,
            it_kw_mean,
            facility.pue,
            server_overhead_w=facility.server_overhead_w,
        )
    except SpecError as exc:  # no capex for the GPU
        unpriced["own"] = str(exc)
    else:
        own = {
            "capex_usd": owned.capex_usd_per_hour * hours,
            "energy_usd": owned.energy_usd_per_hour * hours,
            "colocation_usd": owned.colocation_usd_per_hour * hours,
            "total_usd": owned.usd_per_hour * hours,
        }
    totals = {
        "gpu_hours_billed": billed_gpu_h,
        "facility_kwh": facility_kwh,
        "carbon_kg": facility_kwh * facility.grid_carbon_g_per_kwh / 1000.0,
        "water_l": water_l,
        **{k: rent[k] for k in ("on_demand_usd", "reserved_usd", "spot_usd") if k in rent},
        **({"own_usd": own["total_usd"]} if own else {}),
    }
    shares = class_shares(requests, billing.attribution)
    by_class = {c: {"share": s, **{k: s * x for k, x in totals.items()}} for c, s in shares.items()}
    scale = HOURS_PER_MONTH / hours
    g = billing.growth_per_month
    year_factor = sum((1 + g) ** k for k in range(12))
    return Bill(
        period_s=horizon_s,
        granularity_s=gran_s,
        minimum_charge_s=min_s,
        instances=len(life),
        peak_replicas=peak,
        replica_hours=replica_s / 3600.0,
        gpu_hours_used=replica_s * tp / 3600.0,
        gpu_hours_billed=billed_gpu_h,
        gpu_kwh=gpu_kwh,
        it_kwh=it_kwh,
        facility_kwh=facility_kwh,
        water_l=water_l,
        carbon_kg=totals["carbon_kg"],
        rent_usd=rent,
        own_usd=own,
        attribution=billing.attribution,
        unpriced=unpriced,
        by_class=by_class,
        month={k: x * scale for k, x in totals.items()},
        year={k: x * scale * year_factor for k, x in totals.items()},
    )


def bill_of(
    result,
    billing: BillingSpec = BillingSpec(),
    *,
    replicas: pd.DataFrame | None = None,
    lifetimes: pd.DataFrame | None = None,
    cold_start_s: float = 0.0,
) -> Bill:
    """The bill of a simulate() result: GPU energy from the run's cumulative meter (timeseries
    gpu_energy_j, the step power whose integral is that meter), the request table for the
    per-class split, and the fleet: fleet.replicas for the whole simulated period (a fixed fleet,
    what simulate() runs today), or the `replicas` step series / instance `lifetimes` an
    autoscaled run records."""
    from fleetsim.catalog import load_gpu

    scenario = result.scenario
    if scenario.fleet.groups and replicas is None and lifetimes is None:
        from fleetsim.group_bill import mixed_bill  # a mixed fleet: one bill per group, summed

        return mixed_bill(result, billing, cold_start_s)
    horizon_s = float(result.summary["simulated_s"])
    ts = result.timeseries
    time_s = np.concatenate([[0.0], ts["time_s"].to_numpy(dtype=float), [horizon_s]])
    energy_j = np.concatenate(
        [[0.0], ts["gpu_energy_j"].to_numpy(dtype=float), [float(result.replicas["energy_j"].sum())]]
    )
    keep = np.append(np.diff(time_s) > 0, True)  # each time once, the later sample kept
    power = power_from_energy(time_s[keep], energy_j[keep])
    if replicas is None:
        replicas = pd.DataFrame({"time_s": [0.0], "replicas": [scenario.fleet.replicas]})
    return bill(
        replicas,
        power,
        horizon_s=horizon_s,
        gpu=load_gpu(scenario.fleet.gpu),
        tp=scenario.fleet.gpus_per_replica,  # GPUs a replica (pipeline stages x tp)
        cost=scenario.cost,
        facility=scenario.facility,
        billing=billing,
        lifetimes=lifetimes,
        requests=result.requests,
        cold_start_s=cold_start_s,
    )
