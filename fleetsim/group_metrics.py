"""A mixed fleet's power, facility and cost: each GPU type of its replica groups, summed.

Per group, over the summary's window: GPU energy from the group's own cumulative meter in the time
series (gpu_energy_j.<group>), mean power per GPU = that energy / (window x the group's GPUs).
Servers are charged per GPU type: the groups on one GPU type share servers (their GPUs packed
together, as a one-type fleet of their summed GPUs), so server wall power, facility and owned cost
come from each type's GPU count and mean power exactly as a one-type fleet's (fleetsim.server_power,
facility, cost), and the fleet's figures are the types' sums. A group's share of its type's IT
power is its share of the type's GPU energy. Rental is per group: its GPUs x its price (its own
rental_usd_per_gpu_hour, else cost.rental_usd_per_gpu_hour, else the GPU's catalog price; none:
the one-line cost error of a one-type fleet). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fleetsim.cost import hourly_cost_usd
from fleetsim.errors import SpecError
from fleetsim.facility import FacilityBreakdown, facility_breakdown, it_power_kw, num_servers, server_overhead_w
from fleetsim.groups import ReplicaGroup
from fleetsim.server_power import wall_power_summary
from fleetsim.spec.economics import CostSpec
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
    it_kw: float  # its share of its GPU type's IT power
    usd_per_hour: float


@dataclass(frozen=True)
class TypePower:
    """The groups on one GPU type, as one fleet of their summed GPUs."""

    wall: dict[str, float]
    it_kw: float
    facility: FacilityBreakdown
    usd_per_hour: float


def group_cost_spec(scenario: ScenarioSpec, g: ReplicaGroup) -> CostSpec:
    """The scenario's cost, with the group's own rental price where it sets one."""
    price = (scenario.fleet.groups or ())[g.index].rental_usd_per_gpu_hour
    return scenario.cost if price is None else scenario.cost.model_copy(update={"rental_usd_per_gpu_hour": price})


def group_rental_usd_per_hour(scenario: ScenarioSpec, g: ReplicaGroup) -> float:
    """The group's GPUs x its rental price (one line naming both places to set a missing price)."""
    try:
        return hourly_cost_usd(group_cost_spec(scenario, g), g.gpu, g.gpus, 0.0, scenario.facility.pue).usd_per_hour
    except SpecError as exc:
        raise SpecError(f"{exc} (or fleet.groups[{g.index}].rental_usd_per_gpu_hour)") from None


def by_gpu_type(groups: list[ReplicaGroup]) -> dict[str, list[ReplicaGroup]]:
    """The groups with replicas, by GPU type (in order of first appearance)."""
    out: dict[str, list[ReplicaGroup]] = {}
    for g in groups:
        if g.replicas:
            out.setdefault(g.gpu.name, []).append(g)
    return out


def _window_delta(ts: pd.DataFrame, column: str, a: float, b: float) -> float:
    v = np.interp([a, b], ts["time_s"], ts[column])
    return float(v[1] - v[0])


def _type_power(scenario: ScenarioSpec, members: list[ReplicaGroup], energy_j: float, peak_w: float, span_s: float):
    gpu = members[0].gpu
    n = sum(g.gpus for g in members)
    mean_w = energy_j / (span_s * n)
    wall = wall_power_summary(gpu, n, mean_w, peak_w)
    fac = scenario.facility
    if fac.server_overhead_w is None:
        it_kw = wall["server_wall_kw"]
    else:
        overhead_w = server_overhead_w(gpu, fac.server_overhead_w)
        it_kw = it_power_kw(mean_w * n, num_servers(n, gpu.gpus_per_server), overhead_w)
    if scenario.cost.mode == "rental":  # linear in GPUs: each group at its own price
        usd = sum(group_rental_usd_per_hour(scenario, g) for g in members)
    else:
        usd = hourly_cost_usd(
            scenario.cost, gpu, n, it_kw, fac.pue, server_overhead_w=fac.server_overhead_w
        ).usd_per_hour
    return TypePower(wall, it_kw, facility_breakdown(fac, gpu, n, it_kw), usd)


def group_powers(
    scenario: ScenarioSpec,
    groups: list[ReplicaGroup],
    timeseries: pd.DataFrame,
    replicas: pd.DataFrame,
    requests: pd.DataFrame,
    window: tuple[float, float],
    windowed: bool,
    sim_s: float,
) -> tuple[list[GroupPower], list[TypePower]]:
    """Every group's and every GPU type's power and cost (`windowed`: the steady window, else the whole run)."""
    a, b = window
    span = max(b - a, 1e-12)
    done = requests[requests["status"] == "completed"]
    group_of = replicas["group"].to_numpy()
    done_group = group_of[done["replica"].to_numpy()] if len(done) else np.array([], dtype=object)
    use_meter = windowed and len(timeseries) > 1
    energy, peak, out_tps = {}, {}, {}
    for g in groups:
        mine = replicas[group_of == g.name]
        if use_meter:
            energy[g.name] = _window_delta(timeseries, f"gpu_energy_j.{g.name}", a, b)
            out_tps[g.name] = _window_delta(timeseries, f"output_tokens.{g.name}", a, b) / span
        else:
            energy[g.name] = float(mine["energy_j"].sum())
            served = float(done.loc[done_group == g.name, "output_tokens"].sum())
            out_tps[g.name] = served / sim_s if sim_s else 0.0
        peak[g.name] = float(mine["peak_power_w"].max()) if len(mine) else 0.0
    types, powers = [], []
    for members in by_gpu_type(groups).values():
        type_j = sum(energy[g.name] for g in members)
        t = _type_power(scenario, members, type_j, max(peak[g.name] for g in members), span)
        types.append(t)
        n_type = sum(g.gpus for g in members)
        for g in members:
            share = energy[g.name] / type_j if type_j > 0 else g.gpus / n_type
            rental = scenario.cost.mode == "rental"
            usd = group_rental_usd_per_hour(scenario, g) if rental else t.usd_per_hour * g.gpus / n_type
            powers.append(
                GroupPower(
                    group=g,
                    gpu_energy_j=energy[g.name],
                    gpu_mean_w=energy[g.name] / (span * g.gpus),
                    gpu_peak_w=peak[g.name],
                    output_tokens_per_s=out_tps[g.name],
                    requests_completed=int((done_group == g.name).sum()),
                    it_kw=t.it_kw * share,
                    usd_per_hour=usd,
                )
            )
    return powers, types


def fleet_totals(types: list[TypePower]) -> tuple[dict[str, float], float, FacilityBreakdown, float]:
    """(wall entries, IT kW, facility, $/hour) of the whole fleet: the GPU types' sums."""
    keys = ("server_wall_kw", "server_wall_peak_kw", "non_gpu_kw", "servers_charged")
    wall = {k: float(sum(t.wall[k] for t in types)) for k in keys}
    it_kw = float(sum(t.it_kw for t in types))
    f = [t.facility for t in types]
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
    return wall, it_kw, fac, float(sum(t.usd_per_hour for t in types))


def groups_block(powers: list[GroupPower], groups: list[ReplicaGroup]) -> list[dict]:
    """The summary's `groups`: one entry per group (a group of 0 replicas: zeros)."""
    by_name = {p.group.name: p for p in powers}
    out = []
    for g in groups:
        p = by_name.get(g.name)
        out.append(
            {
                "name": g.name,
                "gpu": g.gpu.name,
                "tp": g.tp,
                "replicas": g.replicas,
                "gpus": g.gpus,
                "kv_scale": g.kv_scale,
                "capacity_tokens_per_s_per_replica": g.capacity_per_s,
                "capacity_tokens_per_replica": g.plan.kv_capacity_tokens,
                "requests_completed": p.requests_completed if p else 0,
                "output_tokens_per_s": p.output_tokens_per_s if p else 0.0,
                "gpu_mean_w": p.gpu_mean_w if p else 0.0,
                "gpu_peak_w": p.gpu_peak_w if p else 0.0,
                "it_mean_kw": p.it_kw if p else 0.0,
                "usd_per_hour": p.usd_per_hour if p else 0.0,
            }
        )
    return out
