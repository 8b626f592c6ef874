"""simulate() for a prefill/decode-disaggregated scenario: check the topology, build both pools,
run them on one clock, and summarize with every GPU of both pools counted (power, cost, facility,
the bill) plus a `disaggregation` block."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from fleetsim.bill import bill_of
from fleetsim.catalog import load_gpu, load_model
from fleetsim.cost import hourly_cost_usd
from fleetsim.disaggregation import (
    ROLES,
    accounting_scenario,
    check_disaggregation,
    disaggregation_summary,
    in_pools,
    pool_scenario,
)
from fleetsim.errors import FleetsimError, SpecError
from fleetsim.groups import ReplicaGroup, decode_capacity_per_s, groups_calibration_status
from fleetsim.memory import sequences_that_fit
from fleetsim.metrics import summarize
from fleetsim.profile import load_engine_profile, load_profile
from fleetsim.replica_model import memory_plan_of
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.workbudget import check_run


def build_disaggregated(scenario: ScenarioSpec):
    """The P/D counterpart of simulation.build: the topology checked (fleetsim.disaggregation),
    the catalog entries resolved, each pool's GPU and profile, the decode pool's memory plan (what
    build() hands back as the fleet's), the work budget of both pools."""
    spec = scenario.disaggregation
    assert spec is not None
    topology = check_disaggregation(scenario)
    arch = load_model(scenario.model)
    gpus = {role: load_gpu(getattr(spec, role).gpu) for role in ROLES}
    profiles = {role: load_profile(gpus[role].name, scenario.fleet.profile) for role in ROLES}
    engine_profile = load_engine_profile(scenario.engine)
    decode_view = pool_scenario(scenario, "decode")
    plan = memory_plan_of(decode_view, arch, gpus["decode"])
    both = decode_view.fleet.model_copy(update={"replicas": spec.prefill.replicas + spec.decode.replicas})
    check_run(decode_view.model_copy(update={"fleet": both}), arch, gpus["decode"], plan)
    if scenario.cost.mode == "rental":  # each pool priced before the clock starts
        for role in ROLES:
            pool = getattr(spec, role)
            price = pool.rental_usd_per_gpu_hour
            cost = (
                scenario.cost if price is None else scenario.cost.model_copy(update={"rental_usd_per_gpu_hour": price})
            )
            try:
                hourly_cost_usd(cost, gpus[role], pool.replicas * pool.tp, 0.0, scenario.facility.pue)
            except SpecError as exc:
                raise SpecError(f"{exc} (or disaggregation.{role}.rental_usd_per_gpu_hour)") from None
    return arch, gpus, profiles, engine_profile, plan, topology


def simulate_disaggregated(scenario: ScenarioSpec, progress: Callable[[float], None] | None = None):
    from fleetsim.sim.disaggregated import DisaggregatedEngine
    from fleetsim.simulation import SimulationResult

    t0 = time.process_time()
    arch, gpus, profiles, engine_profile, plan, topology = build_disaggregated(scenario)
    engine = DisaggregatedEngine(scenario, arch, gpus, profiles, engine_profile, topology.transfer.link)
    engine.progress = progress
    t1 = time.process_time()
    raw = engine.run()
    t2 = time.process_time()
    # The pools as the groups of a mixed fleet: power, servers, facility, cost and the bill per GPU
    # type (fleetsim.group_metrics, fleetsim.group_bill); each pool keeps its own KV bytes (scale 1).
    groups = [
        ReplicaGroup(
            i,
            role,
            pool.scenario,
            gpus[role],
            profiles[role],
            pool.plan,
            pool.model,
            1.0,
            decode_capacity_per_s(pool.scenario, pool.model, pool.plan),
        )
        for i, (role, pool) in enumerate((("prefill", engine.prefill), ("decode", engine.decode)))
    ]
    status = groups_calibration_status(groups, engine_profile)
    acct = accounting_scenario(scenario)
    try:
        summary = summarize(raw, acct, arch, gpus["decode"], plan, calibration=status, groups=groups)
    except FleetsimError as exc:  # e.g. a pool's GPU without a price
        raise in_pools(exc) from None
    _decode_pool_figures(summary, raw, engine.decode)
    summary["disaggregation"] = disaggregation_summary(
        scenario, raw.requests, raw.replicas, raw.simulated_s, topology.transfer.link.name
    )
    result = SimulationResult(scenario, summary, raw.requests, raw.timeseries, raw.replicas, plan, {})
    summary["bill"] = bill_of(dataclasses.replace(result, scenario=acct)).as_dict()
    result.cpu_s.update(build_s=t1 - t0, run_s=t2 - t1, summary_s=time.process_time() - t2)
    return result


def _decode_pool_figures(summary: dict, raw, dec) -> None:
    """Where a request's whole sequence lives: the decode pool. The KV capacity per replica and the
    sequences held at the mean request's length are the decode pool's (a prefill replica holds
    prompts only)."""
    summary["kv_cache"]["capacity_tokens_per_replica"] = dec.plan.kv_capacity_tokens
    req = raw.requests
    mean_in = round(float(req["input_tokens"].mean())) if len(req) else 1
    mean_out = round(float(req["output_tokens"].mean())) if len(req) else 1
    plan = dec.plan
    per_seq = float(plan.footprint.bytes_per_rank(mean_in, mean_out))
    fit = sequences_that_fit(plan.kv_pool_bytes_per_gpu, plan.kv_blocks, plan.block_bytes_per_gpu, per_seq)
    summary["concurrency"]["max_by_memory"] = int(fit * len(dec.replicas))
