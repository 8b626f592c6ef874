"""A mixed fleet's replica groups, before the clock starts: each group's GPU, profile, memory plan
and replica model (fleetsim.replica_model, on the scenario as if the fleet were that group alone),
and how its KV bytes relate to the fleet's reference unit. Pure: no simpy.

KV bytes in a mixed fleet. The simulator keeps one set of per-request KV figures (bytes on one GPU
rank of the reference footprint: group 0's). Every group's per-rank footprint must be a constant
multiple of the reference one (`kv_scale`: the group's per-rank bytes per reference byte); the
group's pool and block are then held in reference bytes (divided by kv_scale), and the KV bytes
handed to its step model are multiplied back by kv_scale (ScaledStepModel). That is exact when the
footprints have the same terms (layer kinds, windows, eviction caps) and one ratio of per-token and
fixed bytes across all of them: any GPU types at the same tp (the footprint does not depend on
the GPU: kv_scale is 1), and attention heads split evenly at another tp (GQA with tp dividing the
KV heads; an MLA latent, replicated on every rank, has ratio 1 at any tp). A model whose layers
scale differently (Qwen3-Next at tp 4: its 2 KV heads replicate while the linear-attention state
splits) has no one ratio: such a pair of tp is refused (one line naming fleet.groups[i].tp). Block rounding is
not a problem: the pool is a byte budget and a block is block_tokens x per-token bytes, scaled alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from fleetsim.catalog import load_gpu
from fleetsim.errors import FleetsimError, SpecError
from fleetsim.memory import KvFootprint, MemoryPlan
from fleetsim.perf import StepCost, StepModel
from fleetsim.profile import load_profile
from fleetsim.replica_model import ReplicaModel, memory_plan_of, replica_model
from fleetsim.spec.architecture import Architecture
from fleetsim.spec.engine import EngineProfile
from fleetsim.spec.groups import GROUP_FIELDS
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.profile import CalibrationProfile
from fleetsim.spec.scenario import ScenarioSpec


@dataclass(frozen=True)
class ReplicaGroup:
    index: int
    name: str
    scenario: ScenarioSpec  # the scenario with this group as its whole fleet
    gpu: GpuSpec
    profile: CalibrationProfile
    plan: MemoryPlan
    model: ReplicaModel
    kv_scale: float  # this group's per-rank KV bytes per reference byte (1: group 0, or the same tp)
    capacity_per_s: float  # decode tokens/s of one full replica: the capacity_weighted router's weight

    @property
    def replicas(self) -> int:
        return self.scenario.fleet.replicas

    @property
    def tp(self) -> int:
        return self.scenario.fleet.tp

    @property
    def gpus(self) -> int:
        return self.replicas * self.tp

    @property
    def pool_ref_bytes(self) -> float:
        """The KV pool of one GPU of this group, in reference bytes."""
        return float(self.plan.kv_pool_bytes_per_gpu) / self.kv_scale

    @property
    def frag_ref_bytes(self) -> float:
        """Half a block (a sequence's mean internal fragmentation), in reference bytes."""
        return 0.5 * float(self.plan.block_bytes_per_gpu) / self.kv_scale


def group_scenario(scenario: ScenarioSpec, i: int) -> ScenarioSpec:
    """The scenario as if group i were the whole fleet (the top-level fields replaced by its own)."""
    fleet = scenario.fleet
    g = (fleet.groups or ())[i]
    update = {f: getattr(g, f) for f in GROUP_FIELDS}
    update["groups"] = None
    return scenario.model_copy(update={"fleet": fleet.model_copy(update=update)})


def _in_group(exc: FleetsimError, i: int) -> FleetsimError:
    """A capacity error of group i names its field there: fleet.tp -> fleet.groups[i].tp."""
    text = str(exc)
    for f in GROUP_FIELDS:
        text = text.replace(f"fleet.{f}", f"fleet.groups[{i}].{f}")
        if text.startswith(f"{f}: "):
            text = f"fleet.groups[{i}].{text}"
    if f"fleet.groups[{i}]" not in text:
        text = f"fleet.groups[{i}]: {text}"
    return type(exc)(text)  # the same kind of error (SpecError, CatalogError, CapacityError)


def kv_scale(footprint: KvFootprint, reference: KvFootprint, i: int) -> float:
    """The one ratio of a group's per-rank KV bytes to the reference's (see the module docstring)."""
    a, b = footprint.terms, reference.terms
    shape = [(t.kind, t.cap_tokens, t.prompt_cap_tokens, t.shareable) for t in a]
    ratios: set[Fraction] = set()
    if shape == [(t.kind, t.cap_tokens, t.prompt_cap_tokens, t.shareable) for t in b] and footprint.dp == reference.dp:
        for t, r in zip(a, b):
            for x, y in (
                (t.bytes_per_token_per_rank, r.bytes_per_token_per_rank),
                (t.fixed_bytes_per_rank, r.fixed_bytes_per_rank),
            ):
                if x or y:
                    ratios.add(Fraction(x) / Fraction(y) if y else Fraction(-1))
    if len(ratios) != 1 or min(ratios) <= 0:
        raise SpecError(
            f"fleet.groups[{i}].tp: {footprint.tp} splits the KV cache differently from group 0 (tp "
            f"{reference.tp}) with no one ratio of bytes per GPU (some layers' KV is replicated on every rank, "
            f"others split); valid: tp {reference.tp} as group 0, or a tp that splits every layer alike"
        )
    return float(ratios.pop())


class ScaledStepModel:
    """A group's step model fed reference KV bytes: they are scaled to the group's own per-rank bytes."""

    def __init__(self, step: StepModel, scale: float):
        self._step, self._scale = step, scale

    def __getattr__(self, name):
        return getattr(self._step, name)

    def iteration(
        self, decode_seqs, kv_read_bytes, prefill_tokens=0, prefill_pair_bytes=0.0, prefill_seqs=0
    ) -> StepCost:
        s = self._scale
        return self._step.iteration(
            decode_seqs, kv_read_bytes * s, prefill_tokens, prefill_pair_bytes * s, prefill_seqs
        )

    def decode_run_lines(self, n, kv0, growth):
        return self._step.decode_run_lines(n, kv0 * self._scale, growth * self._scale)


def decode_capacity_per_s(scenario: ScenarioSpec, model: ReplicaModel, plan: MemoryPlan) -> float:
    """Decode tokens/s of one replica running as many mean-length sequences as its slots and KV pool
    hold (at mid-output context): the replica's share of a saturated fleet's throughput."""
    from fleetsim.workbudget import _mean_tokens as mean_tokens

    mean_in, mean_out = mean_tokens(scenario)
    per_seq = float(model.footprint.bytes_per_rank(round(mean_in), round(mean_out / 2)))
    fit = math.floor(plan.kv_pool_bytes_per_gpu / per_seq) if per_seq > 0 else scenario.scheduler.max_running_seqs
    n = max(1, min(scenario.scheduler.max_running_seqs, fit))
    t = model.step_model.iteration(n, n * per_seq).time_s
    return n / t


def build_groups(scenario: ScenarioSpec, arch: Architecture, engine_profile: EngineProfile) -> list[ReplicaGroup]:
    """Every group of a mixed fleet, checked before the clock starts (errors name fleet.groups[i].<field>)."""
    groups: list[ReplicaGroup] = []
    reference: KvFootprint | None = None
    for i, spec in enumerate(scenario.fleet.groups or ()):
        sc = group_scenario(scenario, i)
        try:
            gpu = load_gpu(spec.gpu)
            profile = load_profile(gpu.name, spec.profile)
            plan = memory_plan_of(sc, arch, gpu)
            model = replica_model(sc, arch, gpu, profile, engine_profile, plan)
        except FleetsimError as exc:
            raise _in_group(exc, i) from None
        if reference is None:
            reference = model.footprint
        scale = kv_scale(model.footprint, reference, i)
        groups.append(
            ReplicaGroup(i, spec.name, sc, gpu, profile, plan, model, scale, decode_capacity_per_s(sc, model, plan))
        )
    return groups


def groups_calibration_status(groups: list[ReplicaGroup], engine: EngineProfile) -> dict:
    """calibration_status over a mixed fleet: each GPU type's profile and grade (joined by '+'), every
    group's warnings and notes once."""
    from fleetsim.calibration_status import calibration_status

    parts = [calibration_status(g.profile, engine, g.model.step_model) for g in groups if g.replicas]
    merged = dict(parts[0])
    merged["gpu_profile"] = "+".join(dict.fromkeys(p["gpu_profile"] for p in parts))
    merged["gpu_grade"] = " / ".join(dict.fromkeys(str(p["gpu_grade"]) for p in parts))
    merged["figures_of_this_gpu_and_engine"] = min(p["figures_of_this_gpu_and_engine"] for p in parts)
    merged["warnings"] = list(dict.fromkeys(w for p in parts for w in p["warnings"]))
    merged["notes"] = list(dict.fromkeys(n for p in parts for n in p["notes"]))
    return merged
