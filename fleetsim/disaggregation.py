"""Prefill/decode disaggregation, before and after the clock: the checks of a P/D scenario, the
scenario each pool's replicas are built from, the whole-fleet view power, cost and the bill
count GPUs by (the pools as a mixed fleet's groups), and the summary's `disaggregation` block. Pure: no simpy.

A P/D scenario names its pools in `disaggregation` (fleetsim.spec.topology.DisaggregationSpec);
the top-level fleet.gpu, fleet.tp and fleet.replicas are not read. What the simulator does with
them: fleetsim.sim.disaggregated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fleetsim.catalog import load_gpu
from fleetsim.errors import FleetsimError, SpecError
from fleetsim.kv_transfer import DisaggregationPlan, plan_disaggregation
from fleetsim.spec.groups import ReplicaGroupSpec
from fleetsim.spec.scenario import FleetSpec, ScenarioSpec

ROLES = ("prefill", "decode")


def check_disaggregation(scenario: ScenarioSpec) -> DisaggregationPlan:
    """Refuse what a P/D run does not model (one line each, naming the field) and check the
    topology: each pool's GPU and tp hold the model, the decode pool holds one sequence of the
    scenario's longest context (scheduler.max_model_len, else one token), the link exists."""
    spec = scenario.disaggregation
    assert spec is not None
    fleet, kv = scenario.fleet, scenario.kv_cache
    for name in ("tp", "replicas"):
        if getattr(fleet, name) != 1:  # a value other than the default: meant for a pool, but which?
            raise SpecError(
                f"fleet.{name}: {getattr(fleet, name)} is ambiguous with disaggregation (each pool has its own); "
                f"valid: leave fleet.{name} out and set disaggregation.prefill.{name} / disaggregation.decode.{name} "
                "(to size the pools: fleetsim plan --pd)"
            )
    gpus = {role: load_gpu(getattr(spec, role).gpu).name for role in ROLES}
    if fleet.gpu != FleetSpec().gpu and {load_gpu(fleet.gpu).name} != set(gpus.values()):
        raise SpecError(
            f"fleet.gpu: '{fleet.gpu}' is not the pools' GPU ({' / '.join(dict.fromkeys(gpus.values()))}); "
            "valid: leave fleet.gpu out with disaggregation (each pool names its own)"
        )
    if fleet.profile is not None and gpus["prefill"] != gpus["decode"]:
        raise SpecError(
            f"fleet.profile: one GPU's profile, but the pools are {gpus['prefill']} and {gpus['decode']}; "
            "valid: leave it out (each GPU's shipped profile) or give both pools one GPU type"
        )
    refused = {
        "fleet.pods": (fleet.pods > 1, f"{fleet.pods}", "1 (one process runs both pools)"),
        "fleet.groups": (bool(fleet.groups), "a mixed fleet", "none (each pool is its own group of one GPU type)"),
        "kv_cache.prefix_cache": (
            kv.prefix_cache == "blocks" or kv.offload is not None or fleet.router == "prefix_aware",
            "the block cache (prefix_cache blocks, offload or the prefix_aware router)",
            "per_class and no offload (the block cache is not modelled with P/D yet)",
        ),
        **{
            name: (getattr(scenario, name) is not None, "set", "null (not modelled with P/D yet)")
            for name in ("speculative", "autoscaling", "failures")
        },
        "workload.classes": (
            scenario.kv_cache.prefix_caching
            and any(c.shared_prefix_tokens or c.prompt_cache_hit_fraction for c in scenario.workload.classes),
            "a shared prefix or prompt-cache hits",
            "none, or kv_cache.prefix_caching false (prefix caching is not modelled with P/D yet)",
        ),
        "admission.queue_timeout_s": (
            scenario.admission.queue_timeout_s is not None,
            f"{scenario.admission.queue_timeout_s}",
            "null (not modelled with P/D yet)",
        ),
    }
    for field, (bad, value, valid) in refused.items():
        if bad:
            raise SpecError(f"{field}: {value} is not supported with disaggregation; valid: {valid}")
    return plan_disaggregation(
        scenario.model,
        spec,
        context_tokens=scenario.scheduler.max_model_len or 1,
        weight_dtype=scenario.weight_dtype,
        kv=scenario.kv_cache,
        gpu_memory_utilization=fleet.gpu_memory_utilization,
    )


def pool_scenario(scenario: ScenarioSpec, role: str) -> ScenarioSpec:
    """The scenario one pool's replicas are built from: the fleet is the pool (its gpu, tp,
    replicas), everything else the scenario's."""
    pool = getattr(scenario.disaggregation, role)
    fleet = scenario.fleet.model_copy(update={"gpu": pool.gpu, "tp": pool.tp, "replicas": pool.replicas})
    return scenario.model_copy(update={"fleet": fleet, "disaggregation": None})


def accounting_scenario(scenario: ScenarioSpec) -> ScenarioSpec:
    """The fleet as power, cost, facility and the bill count it: the two pools as the groups of a
    mixed fleet (fleet.groups `prefill` and `decode`: each its GPU type, tp, replicas, priced and
    powered per GPU type by fleetsim.group_metrics and fleetsim.group_bill)."""
    spec = scenario.disaggregation
    assert spec is not None
    fleet = scenario.fleet
    groups = tuple(
        ReplicaGroupSpec(
            name=role,
            gpu=getattr(spec, role).gpu,
            tp=getattr(spec, role).tp,
            replicas=getattr(spec, role).replicas,
            profile=fleet.profile,
            power_limit_w=fleet.power_limit_w,
            rental_usd_per_gpu_hour=getattr(spec, role).rental_usd_per_gpu_hour,
        )
        for role in ROLES
    )
    return scenario.model_copy(update={"fleet": fleet.model_copy(update={"groups": groups}), "disaggregation": None})


def in_pools(exc: FleetsimError) -> FleetsimError:
    """An error of the accounting view names the pool: fleet.groups[0] / [1] -> disaggregation.prefill / .decode."""
    text = str(exc)
    for i, role in enumerate(ROLES):
        text = text.replace(f"fleet.groups[{i}]", f"disaggregation.{role}")
    return type(exc)(text)


def _stats(values: np.ndarray) -> dict:
    v = values[np.isfinite(values)]
    if not len(v):
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0}
    return {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99))}


def disaggregation_summary(
    scenario: ScenarioSpec, requests: pd.DataFrame, replicas: pd.DataFrame, simulated_s: float, link: str
) -> dict:
    """The summary's `disaggregation` block: per pool its replicas, GPUs, busy fraction and mean
    batch (sequences admitted to a replica, time-averaged over the run: completed ones); the KV transfers (time after the
    prefill, NIC queueing included; bytes each prefill rank sends) and the hand-off (prefill end
    to decode admission: transfer plus the wait for decode memory)."""
    spec = scenario.disaggregation
    assert spec is not None
    out: dict = {"link": link, "layer_pipelined": spec.layer_pipelined, "ttft_at": spec.ttft_at}
    prefill_end = requests["prefill_end_s"].to_numpy(dtype=float)
    decode_start = prefill_end + requests["handoff_s"].to_numpy(dtype=float)
    # Sequence-seconds in each pool (Little's law: their sum over the run is the mean batch).
    held = {
        "prefill": prefill_end - requests["scheduled_s"].to_numpy(dtype=float),
        "decode": requests["finish_s"].to_numpy(dtype=float) - decode_start,
    }
    for role in ROLES:
        pool = getattr(spec, role)
        rows = replicas[replicas["pool"] == role]
        span = max(simulated_s, 1e-12) * pool.replicas
        out[role] = {
            "gpu": load_gpu(pool.gpu).name,
            "tp": pool.tp,
            "replicas": pool.replicas,
            "gpus": pool.replicas * pool.tp,
            "busy_fraction": float(rows["busy_s"].sum()) / span,
            "mean_batch": float(np.nansum(held[role])) / span,
        }
    moved = requests["transfer_s"].notna()
    out["transfer_s"] = _stats(requests.loc[moved, "transfer_s"].to_numpy(dtype=float))
    out["handoff_s"] = _stats(requests["handoff_s"].to_numpy(dtype=float))
    out["transfer_bytes_per_request"] = float(requests.loc[moved, "transfer_bytes"].mean()) if moved.any() else 0.0
    out["transfers"] = int(moved.sum())
    return out
