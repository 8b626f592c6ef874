"""What one replica is, before the clock starts: its memory plan, the KV footprint of a sequence on
one rank, the step model and the per-GPU power model the simulator evaluates. Pure: the simulator,
the closed form and the fit all build a replica here, so a new parallel layout or power limit is
one change in one place, below the simulator."""

from __future__ import annotations

from dataclasses import dataclass

from fleetsim.memory import KvFootprint, MemoryPlan, kv_footprint, plan_memory
from fleetsim.perf import StepModel
from fleetsim.spec.architecture import Architecture
from fleetsim.spec.engine import EngineProfile
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.profile import CalibrationProfile, PowerModel
from fleetsim.spec.scenario import ScenarioSpec


@dataclass(frozen=True)
class ReplicaModel:
    plan: MemoryPlan
    footprint: KvFootprint
    step_model: StepModel

    @property
    def power(self) -> PowerModel:
        """Per-GPU power model of an iteration (the step model's: a power limit lives there)."""
        return self.step_model.power


def memory_plan_of(scenario: ScenarioSpec, arch: Architecture, gpu: GpuSpec) -> MemoryPlan:
    """The replica's memory plan. With fleet.kv_cache_free_memory_fraction (TensorRT-LLM's sizing) the
    pool is that fraction of what weights and workspace leave, i.e. the utilisation
    (weights + workspace + f x (memory - weights - workspace)) / memory."""
    s, fleet = scenario.scheduler, scenario.fleet

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
        )

    f = fleet.kv_cache_free_memory_fraction
    if f is None:
        return plan(fleet.gpu_memory_utilization)
    full = plan(1.0)
    used = full.weights_bytes_per_gpu + full.workspace_bytes_per_gpu
    return plan((used + f * (full.gpu_memory_bytes - used)) / full.gpu_memory_bytes)


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
    footprint = kv_footprint(arch, scenario.kv_cache, fleet.tp)
    step_model = StepModel(
        arch,
        gpu,
        profile,
        engine_profile,
        fleet.tp,
        scenario.weight_dtype,
        scenario.kv_cache,
        footprint,
        streaming=scenario.engine.streaming,
    )
    return ReplicaModel(plan or memory_plan_of(scenario, arch, gpu), footprint, step_model)
