"""What one replica is, before the clock starts: its memory plan, the KV footprint of a sequence on
one rank, the step model and the per-GPU power model the simulator evaluates. Pure: the simulator,
the closed form and the fit all build a replica here, so a new parallel layout or power limit is
one change in one place, below the simulator."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fleetsim.dvfs import ClockSetting, clocked_power_model, hbm_share
from fleetsim.errors import FleetsimWarning, SpecError
from fleetsim.memory import KvFootprint, MemoryPlan, kv_footprint, plan_memory
from fleetsim.parallel import layout_of
from fleetsim.perf import StepModel
from fleetsim.spec.architecture import Architecture
from fleetsim.spec.engine import EngineProfile
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.profile import CalibrationProfile, ClockModel
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.spec.yaml_file import read_mapping


@dataclass(frozen=True)
class ReplicaModel:
    plan: MemoryPlan
    footprint: KvFootprint
    step_model: StepModel  # its .power is the per-GPU power model (a power limit lives there)
    lookahead_bytes: float = 0.0  # KV per GPU a decoding sequence holds beyond its tokens (speculation)


def memory_plan_of(scenario: ScenarioSpec, arch: Architecture, gpu: GpuSpec) -> MemoryPlan:
    """The replica's memory plan. With fleet.kv_cache_free_memory_fraction (TensorRT-LLM's sizing) the
    pool is that fraction of what weights and workspace leave, i.e. the utilisation
    (weights + workspace + f x (memory - weights - workspace)) / memory."""
    s, fleet = scenario.scheduler, scenario.fleet
    layout = layout_of(arch, fleet.tp, fleet.ep, fleet.dp_attention)

    def plan(util: float) -> MemoryPlan:
        return plan_memory(
            arch,
            gpu,
            tp=fleet.tp,
            weight_dtype=scenario.weight_dtype,
            kv=scenario.kv_cache,
            gpu_memory_utilization=util,
            block_tokens=s.block_tokens,
            max_batched_tokens=s.max_batched_tokens,
            max_running_seqs=s.max_running_seqs,
            layout=layout,
        )

    if fleet.pipeline.stages > 1:
        from fleetsim.pipeline_model import pipeline_memory_plan

        def plan(util: float) -> MemoryPlan:  # noqa: F811 (a pipelined replica's plan)
            return pipeline_memory_plan(scenario, arch, gpu, util)

    f = fleet.kv_cache_free_memory_fraction
    if f is None:
        return _with_drafter(plan(fleet.gpu_memory_utilization), scenario, arch)
    full = plan(1.0)
    used = full.weights_bytes_per_gpu + full.workspace_bytes_per_gpu
    return _with_drafter(plan((used + f * (full.gpu_memory_bytes - used)) / full.gpu_memory_bytes), scenario, arch)


def mtp_head_layers(model: str) -> int:
    """Layers of the model's own multi-token-prediction head, from its config.json
    (num_nextn_predict_layers: DeepSeek-V3; mtp_num_hidden_layers: Qwen3.5); 0 without one."""
    from fleetsim.catalog import model_record
    from fleetsim.catalog.hf.fields import merged_fields

    config = merged_fields(model_record(model)[1].get("hf_config") or {})
    return int(config.get("num_nextn_predict_layers") or config.get("mtp_num_hidden_layers") or 0)


def _with_drafter(plan: MemoryPlan, scenario: ScenarioSpec, arch: Architecture) -> MemoryPlan:
    if scenario.speculative is None:
        return plan
    if scenario.speculative.method == "mtp" and mtp_head_layers(scenario.model) == 0:
        raise SpecError(
            f"speculative.method: mtp needs a model with an MTP head, and '{scenario.model}' has none (no "
            "num_nextn_predict_layers or mtp_num_hidden_layers in its config.json); valid: method draft_model with "
            "a draft model, or a model with a head (deepseek-v3, qwen3.5-27b, ...)"
        )
    from fleetsim.speculative_model import speculative_memory_plan

    return speculative_memory_plan(plan, scenario, arch)


def replica_model(
    scenario: ScenarioSpec,
    arch: Architecture,
    gpu: GpuSpec,
    profile: CalibrationProfile,
    engine_profile: EngineProfile,
    plan: MemoryPlan | None = None,
) -> ReplicaModel:
    """Build one replica of the scenario's fleet (plan given: reuse it, else plan it here)."""
    fleet = scenario.fleet
    clock = clock_setting(scenario, gpu, profile)
    layout = layout_of(arch, fleet.tp, fleet.ep, fleet.dp_attention)
    if engine_profile.two_batch_overlap.enabled and layout.ep <= 1:
        raise SpecError(
            f"engine.two_batch_overlap: true overlaps the expert all-to-all, but fleet.ep is {layout.ep}; "
            "valid: fleet.ep > 1 on a mixture-of-experts model, or two_batch_overlap false"
        )
    check_scheduler_steps(scenario, engine_profile)
    footprint = kv_footprint(arch, scenario.kv_cache, fleet.tp, layout.dp)
    cls, extra = _step_model_kind(scenario, arch, gpu, profile, engine_profile)
    step_model = cls(
        arch,
        gpu,
        profile,
        engine_profile,
        fleet.tp,
        scenario.weight_dtype,
        scenario.kv_cache,
        footprint,
        streaming=scenario.engine.streaming,
        power_override=clocked_power_model(clock) if clock is not None else None,
        clock=clock,
        layout=None if layout.plain else layout,
        **extra,
    )
    if fleet.tp > gpu.gpus_per_server or fleet.tp_link is not None:
        from fleetsim.pipeline_model import cross_server_all_reduce, tp_link_of

        link = tp_link_of(scenario, gpu)  # None: tp inside a server (the link given is checked)
        if link is not None:
            cross_server_all_reduce(step_model, link)
    lookahead = getattr(step_model, "lookahead_bytes", 0.0)
    return ReplicaModel(plan or memory_plan_of(scenario, arch, gpu), footprint, step_model, lookahead)


def check_scheduler_steps(scenario: ScenarioSpec, engine_profile: EngineProfile) -> None:
    """Multi-step scheduling is vLLM V0's (v0.6.0: without chunked prefill), on a plain replica."""
    steps = engine_profile.batching.scheduler_steps
    if steps == 1:
        return
    if engine_profile.batching.prefill_alone != "unchunked" or scenario.scheduler.chunked_prefill:
        raise SpecError(
            f"engine.scheduler_steps: {steps} is vLLM V0's multi-step scheduling; valid: a V0 profile (engine.kind "
            "vllm, engine.version below 0.7) with scheduler.chunked_prefill false, or 1"
        )
    others = {
        "fleet.pipeline": scenario.fleet.pipeline.stages > 1,
        "speculative": scenario.speculative is not None,
        "disaggregation": scenario.disaggregation is not None,
    }
    other = next((name for name, on in others.items() if on), None)
    if other is not None:
        raise SpecError(f"engine.scheduler_steps: {steps} together with {other} is not modelled; valid: 1")


def _step_model_kind(scenario, arch, gpu, profile, engine_profile) -> tuple[type[StepModel], dict]:
    """The StepModel class of the scenario's replica and its own fields: plain, pipelined
    (fleetsim.pipeline_model) or speculative (fleetsim.speculative_model)."""
    if scenario.fleet.pipeline.stages > 1:
        from fleetsim.pipeline_model import PipelineStepModel, pipeline_fields

        return PipelineStepModel, pipeline_fields(scenario, arch)
    if scenario.speculative is not None:
        from fleetsim.speculative_model import SpeculativeStepModel, draft_arch, speculative_fields

        d = draft_arch(scenario)
        draft = None
        if d is not None:
            d_tp = scenario.speculative.draft_tp or scenario.fleet.tp
            fp = kv_footprint(d, scenario.kv_cache, d_tp)
            draft = StepModel(
                d,
                gpu,
                profile,
                engine_profile,
                d_tp,
                scenario.weight_dtype,
                scenario.kv_cache,
                fp,
                streaming=scenario.engine.streaming,
            )
        return SpeculativeStepModel, speculative_fields(scenario, arch, draft)
    return StepModel, {}


@cache
def clock_model(gpu_name: str) -> ClockModel:
    """The DVFS figures of a GPU (fleetsim/profiles/dvfs.yaml: its own entry, else `default`)."""
    path = resources.files("fleetsim.profiles").joinpath("dvfs.yaml")
    with resources.as_file(path) as f:
        data = read_mapping(f, "DVFS data")
    entry = data.get(gpu_name, data["default"])
    return ClockModel.model_validate(entry)


def clock_setting(scenario: ScenarioSpec, gpu: GpuSpec, profile: CalibrationProfile) -> ClockSetting | None:
    """The fleet's power limit and clock lock on one GPU, checked against the GPU (None: neither set
    and no board limit below the profile's cap). A limit below the GPU's minimum power limit
    (GpuSpec.min_power_limit_w, else the profile's idle power) or a clock below the model's lowest
    is one line; a limit at or above the board limit does nothing. A profile whose power model
    has a board_limit_w (a same-die part sold at a lower limit than the silicon it was fitted on)
    runs under that limit by default."""
    fleet = scenario.fleet
    limit, lock = fleet.power_limit_w, fleet.clock_fraction
    power = profile.power
    board_w = power.cap_w if power.board_limit_w is None else min(power.cap_w, power.board_limit_w)
    if limit is None and lock is None and board_w >= power.cap_w:
        return None
    model = clock_model(gpu.name)
    if limit is not None:
        floor = getattr(gpu, "min_power_limit_w", None)
        what = "minimum power limit" if floor is not None else "idle power"
        if floor is None:
            floor = power.idle_w
        top = getattr(gpu, "max_power_limit_w", None) or board_w
        if limit < floor:
            raise SpecError(
                f"fleet.power_limit_w: {limit:g} W is below the {gpu.name}'s {what} ({floor:g} W); "
                f"valid: {floor:g} to {top:g} W"
            )
        if limit > board_w:
            warnings.warn(
                f"fleet.power_limit_w: {limit:g} W is above the {gpu.name}'s board limit "
                f"({board_w:g} W TDP): no effect",
                FleetsimWarning,
                stacklevel=2,
            )
        if limit >= board_w and lock is None and board_w >= power.cap_w:
            return None  # the board limit already applies: exactly the default model
    if lock is not None and lock < model.min_clock_fraction:
        raise SpecError(
            f"fleet.clock_fraction: {lock:g} is below the lowest clock modelled for the {gpu.name}; "
            f"valid: {model.min_clock_fraction:g} to 1"
        )
    return ClockSetting(
        model=model,
        power=power,
        limit_w=min(limit, board_w) if limit is not None else board_w,
        lock_fraction=1.0 if lock is None else lock,
        hbm_share=hbm_share(model, power, gpu.hbm_bandwidth_bytes_per_s),
    )
