"""The fit's parameters: which profile field each is, its prior, and how a parameter vector
becomes GPU and engine profiles. Parameters live in log space (all are positive)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

import numpy as np
import yaml

from fleetsim.catalog import load_gpu
from fleetsim.spec.engine import EngineProfile
from fleetsim.spec.profile import CalibrationProfile

PROFILE_DATE = "2026-12-01"  # fixed so regeneration writes the same files


def priors() -> dict:
    return yaml.safe_load(resources.files("fleetsim.calibrate.published").joinpath("priors.yaml").read_text())


@dataclass(frozen=True)
class Param:
    owner: str  # gpu or engine profile name
    name: str  # key in priors.yaml's gpu_parameters / engine_parameters / power_parameters
    mean: float
    sd: float  # of ln x
    lo: float
    hi: float

    @property
    def key(self) -> str:
        return f"{self.owner}:{self.name}"


def _p(owner: str, name: str, spec: dict, mean: float | None = None) -> Param:
    return Param(
        owner,
        name,
        float(mean if mean is not None else spec["mean"]),
        float(spec["sd"]),
        float(spec["lo"]),
        float(spec["hi"]),
    )


REFERENCE_HOST_GPU = "h100-sxm"  # its servers' CPU is the reference of host_time_scale
GLOBAL = "global"


def global_params(pri: dict) -> list[Param]:
    return [_p(GLOBAL, n, spec) for n, spec in pri["global_parameters"].items()]


def gpu_params(gpu: str, pri: dict) -> list[Param]:
    g = load_gpu(gpu)
    gp, pw = pri["gpu_parameters"], pri["power_parameters"]
    names = ["memory_eta", "compute_bf16", "compute_half_flops", "attention_eta", "kv_fp8"]
    if gpu != REFERENCE_HOST_GPU:
        names.append("host_time_scale")
    out = [_p(gpu, n, gp[n]) for n in names]
    for n, field in (("idle_fraction", "idle_w"), ("compute_fraction", "compute_w"), ("memory_fraction", "memory_w")):
        spec = pw[n]
        out.append(Param(gpu, field, spec["mean"] * g.tdp_w, spec["sd"], spec["lo"] * g.tdp_w, spec["hi"] * g.tdp_w))
    return out


ENGINE_FIELDS = ("host_iteration_s", "host_per_sequence_s", "per_layer_gpu_s", "allreduce_latency_s")


def overlaps(cfg: dict) -> bool:
    return bool(cfg["fixed"]["overlap"]) or bool(cfg.get("overlap_possible"))


def engine_params(name: str, cfg: dict, pri: dict) -> list[Param]:
    ep = pri["engine_parameters"]
    fields = list(ENGINE_FIELDS)
    if not cfg["fixed"].get("cuda_graphs", True):
        fields.append("per_layer_eager_s")
    if overlaps(cfg):
        fields.append("serial_fraction")
    if cfg.get("fit_scales"):
        fields += ["gemm_efficiency_scale", "attention_efficiency_scale"]
    elif cfg.get("fit_gemm_scale"):
        fields.append("gemm_efficiency_scale")
    if cfg.get("fit_streaming"):
        fields.append("per_streamed_sequence_s")
    if cfg.get("fit_moe"):
        fields.append("per_moe_layer_gpu_s")
    return [_p(name, f, ep[f]) for f in fields]


def transferred_values(values: dict, source: str, target: str, pri: dict | None = None) -> dict:
    """A fitted GPU's parameters carried to another GPU: the same kernel efficiencies on the target's
    datasheet (peaks, bandwidth); power coefficients scaled by the ratio of TDPs, or, for a part on
    the source's die at a lower board limit (priors.yaml gpus.same_die_lower_limit), the die's
    energy per FLOP and per byte (compute and memory coefficients scaled by the bf16 peak and HBM
    bandwidth ratios), the source's cap and the target's TDP as a board limit (see fleetsim.dvfs)."""
    src, tgt = load_gpu(source), load_gpu(target)
    ratio = tgt.tdp_w / src.tdp_w
    out = dict(values)
    for k in ("idle_w", "compute_w", "memory_w"):
        out[k] = values[k] * ratio
    if target in same_die_parts(pri) and tgt.tdp_w < src.tdp_w:
        out["compute_w"] = values["compute_w"] * tgt.peak_flops_per_s["bf16"] / src.peak_flops_per_s["bf16"]
        out["memory_w"] = values["memory_w"] * tgt.hbm_bandwidth_bytes_per_s / src.hbm_bandwidth_bytes_per_s
        out["cap_w"] = float(values.get("cap_w", src.tdp_w))
        out["board_limit_w"] = float(tgt.tdp_w)
    return out


def same_die_parts(pri: dict | None = None) -> set[str]:
    return set((pri or priors())["gpus"].get("same_die_lower_limit", []))


def transfer_notes(source: str, target: str, pri: dict | None = None) -> str:
    """The provenance note of a transferred profile (what was carried, and how)."""
    if target in same_die_parts(pri):
        how = (
            "power coefficients as the same die's energy per FLOP and per byte (scaled by the peak and bandwidth "
            f"ratios), the {source}'s cap, and this card's TDP as a board limit applied through the clock model"
        )
    else:
        how = "power coefficients scaled by the ratio of TDPs"
    return (
        f"Transferred from the {source} profile: its kernel efficiencies on this GPU's datasheet peaks and "
        f"bandwidth, {how}. No published figure of this GPU is in the fit; predictions on it lean on the transfer."
    )


def collectives(gpu: str, pri: dict) -> dict:
    table = pri["collectives"]
    if gpu in table:
        c = dict(table[gpu])
    else:  # no NVLink figure: PCIe-class all-reduce
        g = load_gpu(gpu)
        c = {
            "allreduce_bus_bytes_per_s": 0.8 * g.interconnect_bandwidth_bytes_per_s,
            "allreduce_latency_s": 3.0e-5,
            "source": "no published NCCL figure: 80% of the catalog interconnect bandwidth, 30 us latency",
        }
    return c


def make_gpu_profile(
    gpu: str,
    values: dict,
    pri: dict,
    *,
    kind: str = "fitted_to_published",
    sources=(),
    figures: int = 0,
    engines=(),
    notes: str = "",
    transferred_from: str | None = None,
    residuals: dict | None = None,
    figures_by_engine: dict | None = None,
    power_figures: int = 0,
) -> CalibrationProfile:
    g = load_gpu(gpu)
    half = values["compute_half_flops"]
    bf16 = values["compute_bf16"]
    compute = {"bf16": {"eta_max": bf16, "half_work": half}}
    for d in ("fp8", "fp4"):
        ratio = values.get(f"{d}_over_bf16")
        if ratio is not None and d in g.peak_flops_per_s:
            compute[d] = {"eta_max": min(bf16 * ratio, 0.97), "half_work": half}
    c = collectives(gpu, pri)
    data = {
        "schema_version": 2,
        "gpu": gpu,
        "provenance": {
            "kind": kind,
            "date": PROFILE_DATE,
            "sources": list(sources),
            "notes": notes,
            "figures": figures,
            "engines": list(engines),
            "transferred_from": transferred_from,
            "figures_by_engine": dict(figures_by_engine or {}),
            "power_figures": power_figures,
        },
        "memory": {"eta_max": values["memory_eta"], "half_work": 0.0},
        "compute": compute,
        "attention": {"prefill_eta": values["attention_eta"], "kv_read_efficiency": {"fp8": values["kv_fp8"]}},
        "collectives": {
            "allreduce_bus_bytes_per_s": c["allreduce_bus_bytes_per_s"],
            "allreduce_latency_s": c["allreduce_latency_s"],
            "source": c.get("source", ""),
        },
        "host_time_scale": values.get("host_time_scale", 1.0),
        "power": {
            "idle_w": values["idle_w"],
            "compute_w": values["compute_w"],
            "memory_w": values["memory_w"],
            "cap_w": float(values.get("cap_w", g.tdp_w)),
            **({"board_limit_w": values["board_limit_w"]} if "board_limit_w" in values else {}),
        },
        "fit_residuals": residuals or {},
    }
    return CalibrationProfile.model_validate(data)


def make_engine_profile(
    name: str,
    cfg: dict,
    values: dict,
    *,
    kind: str = "fitted_to_published",
    sources=(),
    figures: int = 0,
    notes: str = "",
    transferred_from: str | None = None,
    residuals: dict | None = None,
) -> EngineProfile:
    fixed = cfg["fixed"]
    engine = cfg.get("kind") or name.split("-", 1)[0]
    version = cfg.get("version") or name.split("-", 1)[1]
    data = {
        "schema_version": 2,
        "engine": engine,
        "version": str(version),
        "released": str(cfg["released"]),
        "provenance": {
            "kind": kind,
            "date": PROFILE_DATE,
            "sources": list(sources),
            "notes": notes or cfg.get("notes", ""),
            "figures": figures,
            "transferred_from": transferred_from,
        },
        "host": {
            "iteration_s": values["host_iteration_s"],
            "per_sequence_s": values["host_per_sequence_s"],
            "overlap": fixed["overlap"],
            "serial_fraction": values.get("serial_fraction", 0.0),
            "per_streamed_sequence_s": values.get("per_streamed_sequence_s", 0.0),
        },
        "launch": {
            "per_layer_gpu_s": values["per_layer_gpu_s"],
            "per_moe_layer_gpu_s": values.get("per_moe_layer_gpu_s", fixed.get("per_moe_layer_gpu_s", 0.0)),
            "per_layer_eager_s": values.get("per_layer_eager_s", fixed.get("per_layer_eager_s", 0.0)),
            "graph_replay_s": fixed["graph_replay_s"],
            "cuda_graphs": fixed["cuda_graphs"],
            "graph_max_batch": fixed["graph_max_batch"],
            "mixed_in_graph": fixed.get("mixed_in_graph", False),
        },
        "batching": {"kv_admission": fixed["kv_admission"], "prefill_alone": fixed.get("prefill_alone", "never")},
        "attention_compute_dtype": fixed.get("attention_compute_dtype", "bf16"),
        "attention_kernel": cfg.get("attention_kernel", ""),
        "gemm_efficiency_scale": values.get("gemm_efficiency_scale", 1.0),
        "attention_efficiency_scale": values.get("attention_efficiency_scale", 1.0),
        "allreduce_latency_s": values["allreduce_latency_s"],
        "fit_residuals": residuals or {},
    }
    return EngineProfile.model_validate(data)


class ParamVector:
    """Maps between a vector of ln-parameters and per-owner value dicts."""

    def __init__(self, params: list[Param]):
        self.params = params
        self.index = {p.key: i for i, p in enumerate(params)}

    def x0(self) -> np.ndarray:
        return np.array([math.log(p.mean) for p in self.params])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.array([math.log(p.lo) for p in self.params]), np.array([math.log(p.hi) for p in self.params]))

    def values(self, x: np.ndarray, owner: str) -> dict:
        return {p.name: float(math.exp(x[i])) for i, p in enumerate(self.params) if p.owner == owner}

    def prior_residuals(self, x: np.ndarray) -> np.ndarray:
        return np.array([(x[i] - math.log(p.mean)) / p.sd for i, p in enumerate(self.params)])
