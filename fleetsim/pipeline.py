"""Pipeline parallelism and tensor parallelism across servers: the memory plan per stage, the
pipeline bubble, and the step time of a stage and of a TP group whose all-reduce crosses servers.

A replica of pp stages x tp GPUs holds its layers in pp consecutive stages (an even split when pp
divides the layers; otherwise `layers_per_stage` says how, as vLLM's VLLM_PP_LAYER_PARTITION
does, and leaving it out is a one-line error). Stage weights: its layers' share of the body
(the routed experts in the MoE layers, which are the last `moe_layers` layers as DeepSeek and
Mixtral place them; every other parameter spread evenly over the layers), plus the token
embedding on the first stage and the LM head on the last (a tied table is held by both when
pp > 1, as vLLM allocates it), split over tp. Stage KV: the layers' share of a token's KV
(exact for models whose layers all cache alike; a hybrid's kinds are spread in proportion).

Pipeline schedule (GPipe-style per step: m micro-batches through pp stages, then the next step):
    step time = (m + pp - 1) x stage time,  bubble = (pp - 1) / (m + pp - 1)
A stage's time is its layers' share of the GPU terms of the step plus the hand-off of the
micro-batch's activations (tokens x hidden x 2 B / tp per GPU) over the inter-stage link; the
engine's host time is paid once per step (overlapped with the pipeline when the engine overlaps).

TP across servers (tp > gpus_per_server): the two all-reduces per layer run as a ring whose
slowest hop is the inter-node link, so the all-reduce bus bandwidth is that link's effective
per-GPU bandwidth and its latency is added per all-reduce. Pure: no simpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fleetsim.errors import CapacityError, SpecError
from fleetsim.kv_transfer import Link, load_link, transfer_time_s
from fleetsim.memory import GIB, TABLE_DTYPE, kv_footprint, workspace_bytes
from fleetsim.perf import ACTIVATION_BYTES, StepModel
from fleetsim.precision import bytes_per_element
from fleetsim.spec.architecture import Architecture
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.kvcache import KvCacheSpec

__all__ = [
    "PipelinePlan",
    "PipelineStep",
    "StagePlan",
    "bubble_fraction",
    "layer_weight_bytes",
    "multinode_allreduce_s",
    "pipeline_plan",
    "pipeline_step",
    "plan_pipeline",
    "stage_layers",
    "stage_weight_bytes",
    "vllm_partition",
]


def bubble_fraction(stages: int, micro_batches: int) -> float:
    """(pp - 1) / (m + pp - 1): the share of a step each stage idles."""
    if stages < 1 or micro_batches < 1:
        raise SpecError(f"pp: {stages}, micro_batches: {micro_batches} are not valid; both must be >= 1")
    return (stages - 1) / (micro_batches + stages - 1)


def stage_layers(arch: Architecture, stages: int, layers_per_stage: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Layers of each stage: `layers_per_stage` if given (summing to the model's layers), else an
    even split; pp that does not divide the layers is one line naming a split that would work."""
    n = arch.num_layers
    if stages < 1:
        raise SpecError(f"fleet.pp: {stages} is not valid; give an integer >= 1")
    if stages > n:
        raise SpecError(f"fleet.pp: {stages} exceeds the {n} layers of {arch.name}; valid: 1 to {n}")
    if layers_per_stage is not None:
        if len(layers_per_stage) != stages or sum(layers_per_stage) != n or min(layers_per_stage) < 1:
            raise SpecError(
                f"pipeline.layers_per_stage: {list(layers_per_stage)} is not valid for pp={stages}; give {stages} "
                f"counts >= 1 summing to the {n} layers of {arch.name}"
            )
        return tuple(layers_per_stage)
    if n % stages:
        divisors = [d for d in range(1, min(n, 64) + 1) if n % d == 0]
        raise SpecError(
            f"fleet.pp: {stages} does not divide the {n} layers of {arch.name}; valid: "
            f"{', '.join(map(str, divisors))}, or give pipeline.layers_per_stage (e.g. {list(vllm_partition(n, stages))})"
        )
    return (n // stages,) * stages


def vllm_partition(layers: int, stages: int) -> tuple[int, ...]:
    """vLLM's default split of `layers` over `stages`: even, the leftover layers going to the
    stages before the last (which holds the LM head)."""
    base, extra = divmod(layers, stages)
    split = [base] * stages
    for i in range(extra):
        split[-2 - i if stages > 1 else 0] += 1
    return tuple(split)


def layer_weight_bytes(arch: Architecture, start: int, count: int, weight_dtype: str = "bf16") -> float:
    """Weight bytes of layers [start, start + count) without the embedding and LM-head tables:
    every non-routed parameter spread evenly over the layers, the routed experts over the MoE
    layers (the last `moe_layers`)."""
    n = arch.num_layers
    routed = arch.moe.routed_params if arch.moe is not None else 0
    moe_layers = arch.moe.moe_layers if arch.moe is not None else 0
    per_layer = (arch.total_params - arch.table_params - routed) / n
    moe_here = max(0, min(start + count, n) - max(start, n - moe_layers))
    routed_here = routed / moe_layers * moe_here if moe_layers else 0.0
    return (per_layer * count + routed_here) * float(bytes_per_element(weight_dtype))


def stage_weight_bytes(arch: Architecture, layers: tuple[int, ...], weight_dtype: str = "bf16") -> list[float]:
    """Weight bytes of each stage (whole stage, all its TP ranks)."""
    table = arch.token_table_params * float(max(bytes_per_element(weight_dtype), bytes_per_element(TABLE_DTYPE)))
    out = []
    start = 0
    for i, count in enumerate(layers):
        w = layer_weight_bytes(arch, start, count, weight_dtype)
        if i == 0:
            w += table  # token embedding
        if i == len(layers) - 1 and (len(layers) > 1 or not arch.tie_word_embeddings):
            w += table  # LM head (a tied table is shared on one stage, held twice across stages)
        out.append(w)
        start += count
    return out


@dataclass(frozen=True)
class StagePlan:
    index: int
    layers: int
    weights_bytes_per_gpu: int
    workspace_bytes_per_gpu: int
    kv_pool_bytes_per_gpu: int
    kv_bytes_per_token_per_gpu: float
    kv_capacity_tokens: int | None  # tokens of every running sequence this stage can hold


@dataclass(frozen=True)
class PipelinePlan:
    model: str
    gpu: str
    pp: int
    tp: int
    weight_dtype: str
    gpus: int
    servers: int  # gpus / gpus_per_server, rounded up
    tp_crosses_servers: bool
    gpu_memory_bytes: int
    usable_bytes_per_gpu: int
    context_tokens: int
    stages: tuple[StagePlan, ...]
    kv_capacity_tokens: int | None  # per replica: the tightest stage
    max_concurrent_sequences: int
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "stages"}
        d["stages"] = [s.__dict__.copy() for s in self.stages]
        d["notes"] = list(self.notes)
        return d


def plan_pipeline(
    arch: Architecture,
    gpu: GpuSpec,
    *,
    pp: int = 1,
    tp: int = 1,
    weight_dtype: str = "bf16",
    kv: KvCacheSpec = KvCacheSpec(),
    context_tokens: int = 1,
    gpu_memory_utilization: float = 0.9,
    block_tokens: int = 16,
    max_batched_tokens: int = 8192,
    max_running_seqs: int = 256,
    runtime_reserve_bytes: int = GIB,
    layers_per_stage: tuple[int, ...] | None = None,
) -> PipelinePlan:
    """The memory plan of every stage of a pp x tp replica; CapacityError (one line, the numbers)
    when a stage's weights and workspace leave no KV pool or it cannot hold one sequence."""
    if not 0 < gpu_memory_utilization <= 1:
        raise SpecError(f"gpu_memory_utilization: {gpu_memory_utilization} is not valid; it must be in (0, 1]")
    layers = stage_layers(arch, pp, layers_per_stage)
    fp = kv_footprint(arch, kv, tp)  # checks tp
    usable = int(gpu.memory_bytes * gpu_memory_utilization)
    workspace = workspace_bytes(arch, tp, max_batched_tokens, max_running_seqs, runtime_reserve_bytes)
    seq_fraction = (
        float(fp.bytes_per_rank(context_tokens)) / fp.full_bytes_per_token_per_rank
        if fp.full_bytes_per_token_per_rank
        else 0.0
    )
    stages = []
    max_seqs = math.inf
    for i, (count, w) in enumerate(zip(layers, stage_weight_bytes(arch, layers, weight_dtype))):
        weights = math.ceil(w / tp)
        pool = usable - weights - workspace
        if pool <= 0:
            raise CapacityError(
                f"{arch.name} ({weight_dtype}) pp={pp} x tp={tp} on {gpu.name}: stage {i} ({count} layers) needs "
                f"{(weights + workspace) / 1e9:.1f} GB per GPU (weights {weights / 1e9:.1f} GB + workspace "
                f"{workspace / 1e9:.1f} GB), {usable / 1e9:.1f} GB available; raise pp or tp"
            )
        per_token = fp.full_bytes_per_token_per_rank * count / arch.num_layers
        if per_token > 0:
            blocks = int(pool // (block_tokens * per_token))
            capacity: int | None = blocks * block_tokens
            seq_blocks = max(1, math.ceil(seq_fraction / block_tokens)) if seq_fraction else 1
            max_seqs = min(max_seqs, blocks // seq_blocks)
        else:
            capacity = None
        stages.append(StagePlan(i, count, weights, workspace, pool, per_token, capacity))
    if max_seqs < 1:
        raise CapacityError(
            f"{arch.name} pp={pp} x tp={tp} on {gpu.name}: a stage's KV pool cannot hold one sequence of "
            f"{context_tokens} tokens"
        )
    capacities = [s.kv_capacity_tokens for s in stages if s.kv_capacity_tokens is not None]
    gpus = pp * tp
    notes = []
    if tp > gpu.gpus_per_server:
        notes.append(
            f"tp={tp} spans {math.ceil(tp / gpu.gpus_per_server)} servers: all-reduce over the inter-node link"
        )
    return PipelinePlan(
        model=arch.name,
        gpu=gpu.name,
        pp=pp,
        tp=tp,
        weight_dtype=weight_dtype,
        gpus=gpus,
        servers=math.ceil(gpus / gpu.gpus_per_server),
        tp_crosses_servers=tp > gpu.gpus_per_server,
        gpu_memory_bytes=gpu.memory_bytes,
        usable_bytes_per_gpu=usable,
        context_tokens=context_tokens,
        stages=tuple(stages),
        kv_capacity_tokens=min(capacities) if capacities else None,
        max_concurrent_sequences=int(max_seqs) if max_seqs != math.inf else max_running_seqs,
        notes=tuple(notes),
    )


def pipeline_plan(
    model: str,
    gpu: str,
    *,
    pp: int = 1,
    tp: int = 1,
    weight_dtype: str = "bf16",
    kv: KvCacheSpec = KvCacheSpec(),
    context_tokens: int = 1,
    gpu_memory_utilization: float = 0.9,
    layers_per_stage: tuple[int, ...] | None = None,
) -> PipelinePlan:
    """plan_pipeline from catalog names (the API and `fleetsim memory --pp` entry point)."""
    from fleetsim.catalog import load_gpu, load_model
    from fleetsim.precision import WEIGHT_DTYPES, check_dtype

    check_dtype(weight_dtype, WEIGHT_DTYPES, "weight_dtype")
    return plan_pipeline(
        load_model(model),
        load_gpu(gpu),
        pp=pp,
        tp=tp,
        weight_dtype=weight_dtype,
        kv=kv,
        context_tokens=context_tokens,
        gpu_memory_utilization=gpu_memory_utilization,
        layers_per_stage=layers_per_stage,
    )


# --------------------------------------------------------------------------- step time
def multinode_allreduce_s(step: StepModel, tokens: float, link: Link) -> float:
    """The step's all-reduces (2 per layer) as a ring whose slowest hop is `link`:
    2 L x (latency + tokens x hidden x 2 B x 2 (tp - 1) / tp / effective bandwidth)."""
    tp = step.tp
    if tp == 1 or tokens == 0:
        return 0.0
    per_token = 2.0 * (tp - 1) / tp * step.arch.hidden_size * ACTIVATION_BYTES
    latency = max(link.latency_s, step.comm_latency_s)
    return 2 * step.arch.num_layers * (latency + tokens * per_token / link.effective_bytes_per_s)


def _decode_gpu_terms_s(step: StepModel, decode_seqs: int, kv_read_bytes: float, comm_s: float | None) -> float:
    b = step.breakdown(decode_seqs, kv_read_bytes)
    comm = b["comm_s"] if comm_s is None else comm_s
    return b["dense_s"] + b["attention_decode_s"] + b["kv_write_s"] + comm + b["layer_fixed_s"]


@dataclass(frozen=True)
class PipelineStep:
    """One decode step of `batch` sequences through a pp-stage replica in `micro_batches`."""

    pp: int
    micro_batches: int
    batch: int
    stage_s: float  # one micro-batch through the slowest stage, hand-off included
    handoff_s: float  # activations of one micro-batch to the next stage
    step_s: float  # (m + pp - 1) x stage_s + the host's share
    bubble_fraction: float

    @property
    def tpot_s(self) -> float:
        return self.step_s

    @property
    def tokens_per_s(self) -> float:
        return self.batch / self.step_s


def pipeline_step(
    step: StepModel,
    layers: tuple[int, ...],
    batch: int,
    context_tokens: int,
    *,
    micro_batches: int | None = None,
    stage_link: Link | None = None,
    tp_link: Link | None = None,
) -> PipelineStep:
    """Decode step time of a pp x tp replica. `step` is the whole model's StepModel at the stage
    TP; each stage does its layers' share of the GPU terms on batch / m sequences. `tp_link`
    replaces the all-reduce with multinode_allreduce_s (TP across servers)."""
    pp = len(layers)
    if batch < 1:
        raise SpecError(f"batch: {batch} is not valid; give at least 1 sequence")
    m = min(micro_batches or pp, batch)  # a micro-batch holds at least one sequence
    link = stage_link or load_link("infiniband-ndr")
    micro = max(1, math.ceil(batch / m))
    kv = micro * float(step.footprint.bytes_per_rank(context_tokens))
    comm = multinode_allreduce_s(step, micro, tp_link) if tp_link is not None else None
    gpu_s = _decode_gpu_terms_s(step, micro, kv, comm)
    handoff = transfer_time_s(micro * step.arch.hidden_size * ACTIVATION_BYTES / step.tp, link) if pp > 1 else 0.0
    stage_s = gpu_s * max(layers) / step.arch.num_layers + handoff
    host_s = step.host_time_s(batch)
    body_s = (m + pp - 1) * stage_s
    step_s = max(host_s, body_s) if step.overlap else host_s + body_s
    return PipelineStep(pp, m, batch, stage_s, handoff, step_s, bubble_fraction(pp, m))
