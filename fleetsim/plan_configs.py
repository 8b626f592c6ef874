"""The configurations a plan tries for one GPU type (tp x pipeline stages x weight dtype x KV
precision), split into those that fit and are priced and those that do not (with why). Its own
module: what is a candidate is decided before, and apart from, any simulation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleetsim.catalog import load_gpu, load_model
from fleetsim.errors import CapacityError, FleetsimError, SpecError
from fleetsim.memory import valid_tp_degrees
from fleetsim.pipeline import vllm_partition
from fleetsim.precision import KV_DTYPES, WEIGHT_DTYPES
from fleetsim.scenario import load_scenario
from fleetsim.simulation import build
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.study.sources import rental_offers

PIPELINE_OPTIONS = (2, 4)  # pipeline stages plan tries for a model that fits no server


def _kv_pair(kv: Any) -> tuple[str, str]:
    """'fp8' -> ('fp8', 'fp8'); 'q8_0/q4_0' or ('q8_0', 'q4_0') -> keys q8_0, values q4_0."""
    if isinstance(kv, (tuple, list)) and len(kv) == 2:
        k, v = kv
    elif isinstance(kv, str) and "/" in kv:
        k, v = kv.split("/", 1)
    else:
        k = v = kv
    for d in (k, v):
        if d not in KV_DTYPES:
            raise SpecError(
                f"plan: KV precision '{d}' is unknown; choose one of {', '.join(KV_DTYPES)} "
                "(or KEY/VALUE, e.g. q8_0/q4_0)"
            )
    return str(k), str(v)


def configs(
    base: ScenarioSpec, gpu_name: str, tp_options, weight_dtypes, kv_dtypes, price: float | None = None
) -> tuple[list[dict], list[dict]]:
    """Configurations of one GPU type that fit in memory, and those that do not (with why)."""
    arch = load_model(base.model)
    gpu = load_gpu(gpu_name)
    tps = list(tp_options) if tp_options else valid_tp_degrees(arch, limit=gpu.gpus_per_server)
    wds = list(weight_dtypes) if weight_dtypes else [base.weight_dtype]
    kvs = [_kv_pair(k) for k in kv_dtypes] if kv_dtypes else [(base.kv_cache.key_dtype, base.kv_cache.value_dtype)]
    fits: list[dict] = []
    misfits: list[dict] = []
    for wd in wds:
        if wd not in WEIGHT_DTYPES:
            raise SpecError(f"plan: weight dtype '{wd}' is unknown; choose one of {', '.join(WEIGHT_DTYPES)}")
        for kd, vd in kvs:
            layouts = [(int(tp), 1) for tp in tps]
            if not tp_options and tps and base.fleet.pipeline.stages == 1:
                # A model no server holds: the widest in-server tp over 2 or 4 pipeline stages
                # (tried only when every in-server tp is short of memory).
                layouts += [(int(max(tps)), pp) for pp in PIPELINE_OPTIONS]
            found = False
            for tp, pp in layouts:
                if pp > 1 and (found or any(not m["capacity"] for m in misfits)):
                    break
                cfg = {
                    "fleet.gpu": gpu_name,
                    "fleet.tp": tp,
                    "weight_dtype": wd,
                    "kv_cache.key_dtype": kd,
                    "kv_cache.value_dtype": vd,
                }
                if pp > 1:
                    cfg["fleet.pipeline.stages"] = pp
                    if arch.num_layers % pp:
                        cfg["fleet.pipeline.layers_per_stage"] = list(vllm_partition(arch.num_layers, pp))
                if price is not None:
                    cfg["cost.rental_usd_per_gpu_hour"] = price
                try:
                    spec = load_scenario(base, {**cfg, "fleet.replicas": 1})
                    build(spec)
                    # A price is needed to compare fleets: a GPU without one is a row with the reason.
                    _check_price(spec, gpu)
                except FleetsimError as exc:
                    misfits.append({**cfg, "reason": str(exc), "capacity": isinstance(exc, CapacityError)})
                    continue
                fits.append(cfg)
                found = True
    return fits, misfits


def _check_price(spec: ScenarioSpec, gpu) -> None:
    if spec.cost.mode == "rental" and not rental_offers(gpu, spec.cost.rental_usd_per_gpu_hour):
        raise SpecError(
            f"no rental price; give --price {gpu.name}=USD_PER_GPU_HOUR (or set cost.rental_usd_per_gpu_hour)"
        )
    if spec.cost.mode == "owned" and spec.cost.capex_usd_per_gpu is None and gpu.capex_usd_per_gpu is None:
        raise SpecError(f"no purchase price for {gpu.name}: set cost.capex_usd_per_gpu")


def option_cols(cfg: Mapping) -> dict:
    pp = {"pp": cfg["fleet.pipeline.stages"]} if "fleet.pipeline.stages" in cfg else {}
    return {
        "gpu": cfg["fleet.gpu"],
        "tp": cfg["fleet.tp"],
        **pp,
        "weight_dtype": cfg["weight_dtype"],
        "key_dtype": cfg["kv_cache.key_dtype"],
        "value_dtype": cfg["kv_cache.value_dtype"],
    }
