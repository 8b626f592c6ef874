"""What one fleet costs to rent and to own, in buyable units, and what the building sees, with
intervals over the seeds of its runs.

Units: rental in whole instances of the cheapest offer (catalog/offers.yaml), ownership in whole
servers (a fraction of a rack-scale system), per-GPU parts (capex, GPU power) in GPUs, per-server
parts (non-GPU power, its colocation) in servers. Facility: IT power mean (energy, cost) and peak
(cooling and power provisioning), density class, carbon per million tokens, tokens/s per MW.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fleetsim.cost import (
    break_even_hours,
    break_even_utilization,
    cheapest_rental,
    owned_fleet_cost,
    usd_per_million_tokens,
)
from fleetsim.errors import FleetsimError
from fleetsim.facility import (
    KW_PER_TON_OF_REFRIGERATION,
    carbon_g_per_million_tokens,
    density_class,
    server_overhead_w,
    server_power_kw,
    servers_and_racks,
    tokens_per_s_per_mw,
)
from fleetsim.server_power import servers_for
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.study.intervals import t_interval
from fleetsim.study.sources import rental_offers

HOURS_PER_MONTH = 730.0


def _interval_cols(name: str, values: Sequence[float | None], confidence: float) -> dict[str, Any]:
    xs = [v for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return {name: None, f"{name}_lo": None, f"{name}_hi": None}
    iv = t_interval(xs, confidence)
    return {name: iv.mean, f"{name}_lo": iv.lo, f"{name}_hi": iv.hi}


def fleet_it_kw(summary: dict, gpu: GpuSpec, num_gpus: int, overhead_w: float, *, peak: bool = False) -> float:
    """IT power in the fleet's units: GPUs' mean (or peak) power plus servers_for x non-GPU power.
    The peak is the highest per-GPU power any replica reached (never below the mean)."""
    p = summary["power"]
    gpu_w = max(p["gpu_peak_w"], p["gpu_mean_w"]) if peak else p["gpu_mean_w"]
    return (gpu_w * num_gpus + servers_for(num_gpus, gpu) * overhead_w) / 1000.0


def fleet_economics(
    spec: ScenarioSpec,
    gpu: GpuSpec,
    summaries: list[dict],
    *,
    spares: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Flat columns for one fleet (spec's tp and replicas, + `spares` hot-spare replicas priced and
    powered like the others) from its runs over seeds."""
    tp, replicas = spec.fleet.gpus_per_replica, spec.fleet.replicas  # GPUs a replica (stages x tp)
    total_replicas = replicas + spares
    n = total_replicas * tp
    scale = total_replicas / replicas
    fac = spec.facility
    overhead = server_overhead_w(gpu, fac.server_overhead_w)
    it_kw = [fleet_it_kw(s, gpu, replicas * tp, overhead) * scale for s in summaries]
    it_peak_kw = [fleet_it_kw(s, gpu, replicas * tp, overhead, peak=True) * scale for s in summaries]
    tps = [s["throughput"]["output_tokens_per_s"] + s["throughput"]["input_tokens_per_s"] for s in summaries]
    out_tps = [s["throughput"]["output_tokens_per_s"] for s in summaries]
    # prefill vs decode GPU-time share: the attribution of cost to input and output tokens
    in_share: list[float | None] = []
    for s in summaries:
        c = s["cost"]
        u_in, u_out = (
            c.get("usd_per_million_input_tokens_by_gpu_time"),
            c.get("usd_per_million_output_tokens_by_gpu_time"),
        )
        thr = s["throughput"]
        if u_in is None or u_out is None:
            in_share.append(None)
            continue
        usd_in = u_in * thr["input_tokens_per_s"]
        usd_out = u_out * thr["output_tokens_per_s"]
        in_share.append(usd_in / (usd_in + usd_out) if usd_in + usd_out > 0 else None)

    cols: dict[str, Any] = {"spares": spares, "replicas_with_spares": total_replicas, "gpus_with_spares": n}
    servers, racks = servers_and_racks(n, gpu.gpus_per_server, server_power_kw(gpu, overhead), fac.rack_power_kw)
    cls, warn = density_class(gpu, overhead, fac.rack_power_kw)
    cols.update(
        servers=servers_for(n, gpu),
        racks=racks,
        cooling_class=cls,
        rack_warning=warn,
    )
    cols.update(_interval_cols("it_kw", it_kw, confidence))
    cols.update(_interval_cols("it_peak_kw", it_peak_kw, confidence))
    peak = max(it_peak_kw)
    mean_kw = sum(it_kw) / len(it_kw)
    cols["facility_kw"] = mean_kw * fac.pue
    cols["facility_peak_kw"] = peak * fac.pue
    cols["cooling_tons"] = peak / KW_PER_TON_OF_REFRIGERATION  # sized on peak IT power
    cols["cooling_tons_at_mean"] = mean_kw / KW_PER_TON_OF_REFRIGERATION
    cols["water_l_per_h"] = mean_kw * fac.wue_l_per_kwh
    cols.update(_interval_cols("tokens_per_s", tps, confidence))
    cols.update(
        _interval_cols(
            "carbon_g_per_million_tokens",
            [carbon_g_per_million_tokens(k * fac.pue, t, fac.grid_carbon_g_per_kwh) for k, t in zip(it_kw, tps)],
            confidence,
        )
    )
    cols.update(
        _interval_cols(
            "tokens_per_s_per_mw", [tokens_per_s_per_mw(t, k * fac.pue) for k, t in zip(it_kw, tps)], confidence
        )
    )

    by_seed: dict[str, list[float]] = {}  # $/Mtok per seed, for paired comparisons of options
    # rent: whole instances of the cheapest offer
    offers = rental_offers(gpu, spec.cost.rental_usd_per_gpu_hour)
    rent = cheapest_rental(n, offers)
    if rent is None:
        cols.update(rental_reason=f"no rental price for {gpu.name}: set cost.rental_usd_per_gpu_hour or --price")
        cols.update({k: None for k in ("rental_usd_per_hour", "rental_instances", "rental_billed_gpus")})
        cols.update(_interval_cols("rental_usd_per_million_tokens", [], confidence))
    else:
        cols.update(
            rental_reason="",
            rental_provider=rent.offer.provider,
            rental_source=rent.offer.source,
            rental_gpus_per_instance=rent.offer.gpus_per_instance,
            rental_instances=rent.instances,
            rental_billed_gpus=rent.billed_gpus,
            rental_usd_per_hour=rent.usd_per_hour,
        )
        by_seed["rental"] = [usd_per_million_tokens(rent.usd_per_hour, t) for t in tps]
        cols.update(_interval_cols("rental_usd_per_million_tokens", by_seed["rental"], confidence))
    # own: whole servers (a rack-scale fraction)
    owned_cost = spec.cost.model_copy(update={"mode": "owned"})
    try:
        owned = [owned_fleet_cost(owned_cost, gpu, n, k, fac.pue, overhead) for k in it_kw]
    except FleetsimError as exc:
        owned = []
        cols["owned_reason"] = str(exc)
    if owned:
        o = owned[0]
        cols.update(
            owned_reason="",
            owned_billed_gpus=o.billed_gpus,
            owned_capex_usd=o.capex_usd,
            owned_usd_per_hour=sum(x.usd_per_hour for x in owned) / len(owned),
            owned_provisioned_it_kw=o.provisioned_it_kw,
        )
        by_seed["owned"] = [usd_per_million_tokens(x.usd_per_hour, t) for x, t in zip(owned, tps)]
        cols.update(_interval_cols("owned_usd_per_million_tokens", by_seed["owned"], confidence))
    else:
        cols.update({k: None for k in ("owned_usd_per_hour", "owned_capex_usd", "owned_billed_gpus")})
        cols.update(_interval_cols("owned_usd_per_million_tokens", [], confidence))
    if rent is not None and owned:
        u = break_even_utilization(rent.usd_per_hour, owned[0])
        h = break_even_hours(rent.usd_per_hour, owned[0])
        cols["break_even_utilization"] = u
        cols["break_even_months"] = h / HOURS_PER_MONTH if h is not None else None
    else:
        cols["break_even_utilization"] = cols["break_even_months"] = None

    # the scenario's own mode ranks the options
    mode = spec.cost.mode
    cols["cost_mode"] = mode
    cols["usd_per_hour"] = cols.get(f"{mode}_usd_per_hour")
    for suffix in ("", "_lo", "_hi"):
        cols[f"usd_per_million_tokens{suffix}"] = cols.get(f"{mode}_usd_per_million_tokens{suffix}")
    cols["usd_per_million_tokens_by_seed"] = by_seed.get(mode)
    # input vs output $/Mtok, attributed by the GPU time spent in prefill vs decode
    share = [x for x in in_share if x is not None]
    usd_h = cols["usd_per_hour"]
    if share and usd_h is not None:
        f = sum(share) / len(share)
        in_tps = sum(tps) / len(tps) - sum(out_tps) / len(out_tps)
        cols["usd_per_million_input_tokens_by_gpu_time"] = (
            usd_per_million_tokens(usd_h * f, in_tps) if in_tps > 0 else None
        )
        cols["usd_per_million_output_tokens_by_gpu_time"] = usd_per_million_tokens(
            usd_h * (1 - f), sum(out_tps) / len(out_tps)
        )
    else:
        cols["usd_per_million_input_tokens_by_gpu_time"] = cols["usd_per_million_output_tokens_by_gpu_time"] = None
    return cols


def floor_usd_per_hour(spec: ScenarioSpec, gpu: GpuSpec, num_gpus: int) -> float:
    """A floor under the scenario-mode cost of any fleet of `num_gpus` (no energy, no rounding up
    to instances or servers): the planner prunes configurations with it."""
    if spec.cost.mode == "rental":
        offers = rental_offers(gpu, spec.cost.rental_usd_per_gpu_hour)
        return num_gpus * min(o.usd_per_gpu_hour for o in offers) if offers else math.inf
    capex = spec.cost.capex_usd_per_gpu or gpu.capex_usd_per_gpu or 0.0
    from fleetsim.cost import HOURS_PER_YEAR, capital_recovery_factor

    return (
        num_gpus
        * capex
        * capital_recovery_factor(spec.cost.interest_rate, spec.cost.amortization_years)
        / HOURS_PER_YEAR
    )
