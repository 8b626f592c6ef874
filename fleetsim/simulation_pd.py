"""simulate() for a prefill/decode-disaggregated scenario: check the topology, build both pools,
run them on one clock, and summarize with every GPU of both pools counted (power, cost, facility,
the bill) plus a `disaggregation` block."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from fleetsim.bill import bill_of
from fleetsim.calibration_status import calibration_status
from fleetsim.catalog import load_gpu, load_model
from fleetsim.disaggregation import (
    accounting_scenario,
    check_disaggregation,
    disaggregation_summary,
    pool_scenario,
)
from fleetsim.memory import sequences_that_fit
from fleetsim.metrics import summarize
from fleetsim.profile import load_engine_profile, load_profile
from fleetsim.replica_model import memory_plan_of
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.workbudget import check_run


def build_disaggregated(scenario: ScenarioSpec):
    """The P/D counterpart of simulation.build: the topology checked (fleetsim.disaggregation),
    the catalog entries resolved, the decode pool's memory plan, the work budget of both pools."""
    spec = scenario.disaggregation
    assert spec is not None
    topology = check_disaggregation(scenario)
    arch = load_model(scenario.model)
    gpu = load_gpu(spec.decode.gpu)
    profile = load_profile(gpu.name, scenario.fleet.profile)
    engine_profile = load_engine_profile(scenario.engine)
    decode_view = pool_scenario(scenario, "decode")
    plan = memory_plan_of(decode_view, arch, gpu)
    both = decode_view.fleet.model_copy(update={"replicas": spec.prefill.replicas + spec.decode.replicas})
    check_run(decode_view.model_copy(update={"fleet": both}), arch, gpu, plan)
    return arch, gpu, profile, engine_profile, plan, topology


def simulate_disaggregated(scenario: ScenarioSpec, progress: Callable[[float], None] | None = None):
    from fleetsim.sim.disaggregated import DisaggregatedEngine
    from fleetsim.simulation import SimulationResult

    t0 = time.process_time()
    arch, gpu, profile, engine_profile, plan, topology = build_disaggregated(scenario)
    engine = DisaggregatedEngine(scenario, arch, gpu, profile, engine_profile, topology.transfer.link)
    engine.progress = progress
    t1 = time.process_time()
    raw = engine.run()
    t2 = time.process_time()
    status = calibration_status(profile, engine_profile, engine.decode.step_model)
    acct = accounting_scenario(scenario)
    summary = summarize(raw, acct, arch, gpu, plan, calibration=status)
    pools = {"prefill": engine.prefill, "decode": engine.decode}
    _per_pool_figures(summary, raw, pools)
    summary["disaggregation"] = disaggregation_summary(
        scenario, raw.requests, raw.replicas, raw.simulated_s, topology.transfer.link.name
    )
    result = SimulationResult(scenario, summary, raw.requests, raw.timeseries, raw.replicas, plan, {})
    summary["bill"] = bill_of(dataclasses.replace(result, scenario=acct)).as_dict()
    result.cpu_s.update(build_s=t1 - t0, run_s=t2 - t1, summary_s=time.process_time() - t2)
    return result


def _per_pool_figures(summary: dict, raw, pools: dict) -> None:
    """The fleet and KV figures summarize() takes from one pool, restated for two: replicas of
    both pools (fleet.tp: the decode pool's), the KV utilization over both pools' memory, the
    sequences the decode pool holds at the mean request's length."""
    dec = pools["decode"]
    n_pre, n_dec = len(pools["prefill"].replicas), len(dec.replicas)
    summary["fleet"].update(replicas=n_pre + n_dec, tp=dec.scenario.fleet.tp)
    sim_s = raw.simulated_s
    pool_byte_s = sum(p.plan.kv_pool_bytes_per_gpu * len(p.replicas) for p in pools.values()) * sim_s
    kv = summary["kv_cache"]
    kv["mean_utilization"] = float(raw.replicas["kv_byte_s"].sum() / pool_byte_s) if pool_byte_s else 0.0
    kv["capacity_tokens_per_replica"] = dec.plan.kv_capacity_tokens  # a decode replica's
    req = raw.requests
    mean_in = round(float(req["input_tokens"].mean())) if len(req) else 1
    mean_out = round(float(req["output_tokens"].mean())) if len(req) else 1
    plan = dec.plan
    per_seq = float(plan.footprint.bytes_per_rank(mean_in, mean_out))
    fit = sequences_that_fit(plan.kv_pool_bytes_per_gpu, plan.kv_blocks, plan.block_bytes_per_gpu, per_seq)
    summary["concurrency"]["max_by_memory"] = int(fit * n_dec)
