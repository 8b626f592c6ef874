"""A mixed fleet's power, facility and cost: each replica group on its own GPU type, summed.

Per group, over the summary's window: GPU energy from the group's own cumulative meter in the time
series (gpu_energy_j.<group>), mean power per GPU = that energy / (window x the group's GPUs),
server wall power, facility and cost from the group's GPU type and GPU count exactly as a
one-type fleet's (fleetsim.server_power, facility, cost); the fleet's figures are the sums. A
group's rental price: its own rental_usd_per_gpu_hour, else cost.rental_usd_per_gpu_hour, else
the GPU's catalog price (none: the one-line cost error of a one-type fleet). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fleetsim.cost import CostBreakdown, hourly_cost_usd
from fleetsim.facility import FacilityBreakdown, facility_breakdown, it_power_kw, num_servers, server_overhead_w
from fleetsim.groups import ReplicaGroup
from fleetsim.server_power import wall_power_summary
from fleetsim.spec.scenario import ScenarioSpec


@dataclass(frozen=True)
class GroupPower:
    """One group's share of a run, over the summary's window."""

    group: ReplicaGroup
    gpu_energy_j: float  # in the window
    gpu_mean_w: float  # per GPU
    gpu_peak_w: float
    output_tokens_per_s: float
    requests_completed: int
    wall: dict[str, float]
    it_kw: float
    facility: FacilityBreakdown
    cost: CostBreakdown | None  # None: no replicas (nothing to price)


def group_cost(scenario: ScenarioSpec, g: ReplicaGroup, it_kw: float) -> CostBreakdown:
    price = (scenario.fleet.groups or ())[g.index].rental_usd_per_gpu_hour
    cost = scenario.cost if price is None else scenario.cost.model_copy(update={"rental_usd_per_gpu_hour": price})
    fac = scenario.facility
    return hourly_cost_usd(cost, g.gpu, g.gpus, it_kw, fac.pue, server_overhead_w=fac.server_overhead_w)


def _window_delta(ts: pd.DataFrame, column: str, a: float, b: float) -> float:
    v = np.interp([a, b], ts["time_s"], ts[column])
    return float(v[1] - v[0])


def group_powers(
    scenario: ScenarioSpec,
    groups: list[ReplicaGroup],
    timeseries: pd.DataFrame,
    replicas: pd.DataFrame,
    requests: pd.DataFrame,
    window: tuple[float, float],
    windowed: bool,
    sim_s: float,
) -> list[GroupPower]:
    """Every group's power, facility and cost (`windowed`: the steady window, else the whole run)."""
    a, b = window
    span = max(b - a, 1e-12)
    done = requests[requests["status"] == "completed"]
    group_of = replicas["group"].to_numpy()
    done_group = group_of[done["replica"].to_numpy()] if len(done) else np.array([], dtype=object)
    fac_spec = scenario.facility
    out = []
    for g in groups:
        mine = replicas[group_of == g.name]
        n = g.gpus
        if windowed and len(timeseries) > 1:
            energy = _window_delta(timeseries, f"gpu_energy_j.{g.name}", a, b)
            out_tps = _window_delta(timeseries, f"output_tokens.{g.name}", a, b) / span
        else:
            energy = float(mine["energy_j"].sum())
            out_tps = float(done.loc[done_group == g.name, "output_tokens"].sum()) / sim_s if sim_s else 0.0
        mean_w = energy / (span * n) if n else 0.0
        peak_w = float(mine["peak_power_w"].max()) if len(mine) else 0.0
        wall = wall_power_summary(g.gpu, n, mean_w, peak_w)
        if fac_spec.server_overhead_w is None:
            it_kw = wall["server_wall_kw"]
        else:
            overhead_w = server_overhead_w(g.gpu, fac_spec.server_overhead_w)
            it_kw = it_power_kw(mean_w * n, num_servers(n, g.gpu.gpus_per_server), overhead_w)
        out.append(
            GroupPower(
                group=g,
                gpu_energy_j=energy,
                gpu_mean_w=mean_w,
                gpu_peak_w=peak_w,
                output_tokens_per_s=out_tps,
                requests_completed=int((done_group == g.name).sum()),
                wall=wall,
                it_kw=it_kw,
                facility=facility_breakdown(fac_spec, g.gpu, n, it_kw),
                cost=group_cost(scenario, g, it_kw) if n else None,
            )
        )
    return out


def fleet_totals(powers: list[GroupPower]) -> tuple[dict[str, float], float, FacilityBreakdown, float]:
    """(wall entries, IT kW, facility, $/hour) of the whole fleet: the groups' sums."""
    keys = ("server_wall_kw", "server_wall_peak_kw", "non_gpu_kw", "servers_charged")
    wall = {k: float(sum(p.wall[k] for p in powers)) for k in keys}
    it_kw = float(sum(p.it_kw for p in powers))
    f = [p.facility for p in powers]
    fac = FacilityBreakdown(
        it_kw=it_kw,
        facility_kw=sum(x.facility_kw for x in f),
        heat_kw=sum(x.heat_kw for x in f),
        heat_btu_per_h=sum(x.heat_btu_per_h for x in f),
        heat_tons=sum(x.heat_tons for x in f),
        water_l_per_h=sum(x.water_l_per_h for x in f),
        provisioned_it_kw=sum(x.provisioned_it_kw for x in f),
        servers=sum(x.servers for x in f),
        racks=sum(x.racks for x in f),
    )
    usd = float(sum(p.cost.usd_per_hour for p in powers if p.cost is not None))
    return wall, it_kw, fac, usd


def groups_block(powers: list[GroupPower]) -> list[dict]:
    """The summary's `groups`: one entry per group."""
    return [
        {
            "name": p.group.name,
            "gpu": p.group.gpu.name,
            "tp": p.group.tp,
            "replicas": p.group.replicas,
            "gpus": p.group.gpus,
            "kv_scale": p.group.kv_scale,
            "capacity_tokens_per_s_per_replica": p.group.capacity_per_s,
            "capacity_tokens_per_replica": p.group.plan.kv_capacity_tokens,
            "requests_completed": p.requests_completed,
            "output_tokens_per_s": p.output_tokens_per_s,
            "gpu_mean_w": p.gpu_mean_w,
            "gpu_peak_w": p.gpu_peak_w,
            "it_mean_kw": p.it_kw,
            "usd_per_gpu_hour": p.cost.usd_per_gpu_hour if p.cost is not None else None,
            "usd_per_hour": p.cost.usd_per_hour if p.cost is not None else 0.0,
        }
        for p in powers
    ]
