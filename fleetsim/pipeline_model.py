"""A pipeline-parallel replica as the simulator runs it: its memory plan (the tightest stage sets
the KV pool) and a StepModel whose iteration is a pipelined step (fleetsim.pipeline).

Memory: the simulator accounts a sequence's KV in bytes per GPU of the whole model's footprint
(every layer on one TP rank). A stage holds only its layers' share, so the replica's pool in
those units is the tightest stage's token capacity x the full per-token bytes: a sequence fits
when every stage has room for its layers' share.

Step: m micro-batches (at most one per sequence: a lone request cannot be split) through pp
stages, GPipe-style: (m + pp - 1) x stage time, bubble (pp - 1) / (m + pp - 1); a stage runs its
layers' share of the GPU terms of one micro-batch (the fullest stage's layer count over the
model's: layers weigh alike, so a stage holding an MoE model's dense first layers is a little
lighter than modelled) and hands its activations on over the stage
link; the host's time is paid once a step, overlapped when the engine overlaps (as
pipeline.pipeline_step). Pure: no simpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleetsim.errors import SpecError
from fleetsim.expert_comm import internode_all_to_all
from fleetsim.kv_transfer import Link, resolve_link, transfer_time_s
from fleetsim.memory import MemoryPlan, kv_footprint
from fleetsim.perf import ACTIVATION_BYTES, StepCost, StepModel
from fleetsim.pipeline import plan_pipeline, stage_layers
from fleetsim.spec.architecture import Architecture
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.scenario import ScenarioSpec

DEFAULT_TP_LINK = "infiniband-ndr"  # a TP group wider than a server all-reduces over its NICs


def check_pipeline(scenario: ScenarioSpec, arch: Architecture) -> tuple[int, ...]:
    """The layers of each stage; one line for what a pipelined replica does not model."""
    fleet = scenario.fleet
    pipe = fleet.pipeline
    try:
        layers = stage_layers(arch, pipe.stages, pipe.layers_per_stage)
    except SpecError as exc:
        text = str(exc).replace("fleet.pp:", "fleet.pipeline.stages:", 1)
        raise SpecError(text.replace(" pipeline.layers_per_stage", " fleet.pipeline.layers_per_stage")) from None
    if pipe.stages > 1:
        if (fleet.ep or 1) > 1 or fleet.dp_attention:
            raise SpecError(
                "fleet.pipeline.stages: pipeline stages with fleet.ep or fleet.dp_attention are not modelled; "
                "valid: stages 1, or tensor parallelism within each stage"
            )
        if fleet.power_limit_w is not None or fleet.clock_fraction is not None:
            raise SpecError(
                "fleet.pipeline.stages: pipeline stages with fleet.power_limit_w or fleet.clock_fraction are not "
                "modelled; valid: stages 1, or leave both null"
            )
    return layers


def pipeline_memory_plan(scenario: ScenarioSpec, arch: Architecture, gpu: GpuSpec, util: float) -> MemoryPlan:
    """The replica's MemoryPlan of a pipelined replica: weights and workspace of its fullest
    stage, the pool in whole-model per-token units of its tightest stage (see the module doc)."""
    s, fleet = scenario.scheduler, scenario.fleet
    layers = check_pipeline(scenario, arch)
    pp = plan_pipeline(
        arch,
        gpu,
        pp=fleet.pipeline.stages,
        tp=fleet.tp,
        weight_dtype=scenario.weight_dtype,
        kv=scenario.kv_cache,
        gpu_memory_utilization=util,
        block_tokens=s.block_tokens,
        max_batched_tokens=s.max_batched_tokens,
        max_running_seqs=s.max_running_seqs,
        layers_per_stage=layers,
    )
    fp = kv_footprint(arch, scenario.kv_cache, fleet.tp)
    per_token = fp.full_bytes_per_token_per_rank
    block_bytes = s.block_tokens * per_token
    capacity = pp.kv_capacity_tokens
    pool = capacity * per_token if capacity is not None else min(st.kv_pool_bytes_per_gpu for st in pp.stages)
    return MemoryPlan(
        model=arch.name,
        gpu=gpu.name,
        tp=fleet.tp,
        weight_dtype=scenario.weight_dtype,
        key_dtype=scenario.kv_cache.key_dtype,
        value_dtype=scenario.kv_cache.value_dtype,
        gpu_memory_utilization=util,
        block_tokens=s.block_tokens,
        gpu_memory_bytes=gpu.memory_bytes,
        usable_bytes_per_gpu=pp.usable_bytes_per_gpu,
        weights_bytes_per_gpu=max(st.weights_bytes_per_gpu for st in pp.stages),
        workspace_bytes_per_gpu=pp.stages[0].workspace_bytes_per_gpu,
        kv_pool_bytes_per_gpu=int(pool),
        block_bytes_per_gpu=block_bytes,
        kv_blocks=capacity // s.block_tokens if capacity is not None else 0,
        kv_capacity_tokens=capacity,
        context_tokens=1,
        sequence_bytes_per_gpu=float(fp.bytes_per_rank(1, 0)),
        max_concurrent_sequences=pp.max_concurrent_sequences,
        footprint=fp,
    )


def tp_link_of(scenario: ScenarioSpec, gpu: GpuSpec) -> Link | None:
    """The link a TP all-reduce crosses: fleet.tp_link (or infiniband-ndr) when tp exceeds a
    server, else None (the GPU profile's in-server all-reduce)."""
    fleet = scenario.fleet
    from fleetsim.kv_transfer import load_link

    # a link given is checked even where tp stays inside a server (a bad name is one line)
    given = resolve_link(fleet.tp_link, "fleet.tp_link") if fleet.tp_link is not None else None
    if fleet.tp <= gpu.gpus_per_server:
        return None
    return given or load_link(DEFAULT_TP_LINK, "fleet.tp_link.name")


def cross_server_all_reduce(step: StepModel, link: Link) -> None:
    """Make the step's all-reduces a ring whose slowest hop is `link` (pipeline.multinode_allreduce_s:
    the link's effective bandwidth, its latency where it exceeds the in-server one), and an expert
    group that spans servers a DeepEP-style all-to-all over it (fleetsim.expert_comm)."""
    if step.tp > 1:
        in_server_bytes_per_s = step.comm_rate
        step.comm_rate = link.effective_bytes_per_s
        step.comm_latency_s = max(link.latency_s, step.comm_latency_s)
        lay, moe = step.layout, step.arch.moe
        if lay is not None and moe is not None and lay.ep > step.gpu.gpus_per_server:
            # The expert all-to-all crosses servers too: RDMA once per server, NVLink inside it.
            step.internode = internode_all_to_all(
                ep=lay.ep,
                tp=lay.tp,
                gpus_per_server=step.gpu.gpus_per_server,
                experts_per_token=moe.experts_per_token,
                hidden_size=step.arch.hidden_size,
                fp8_dispatch=step.gemm.compute_dtype == "fp8",
                rdma_bytes_per_s=link.effective_bytes_per_s,
                nvlink_bytes_per_s=in_server_bytes_per_s,
                latency_s=step.comm_latency_s,
            )


@dataclass
class PipelineStepModel(StepModel):
    """A StepModel of the whole model at the stage TP whose iterations run as pipelined steps."""

    layers: tuple[int, ...] = (1,)
    micro_batches: int | None = None  # None: one per stage
    stage_link: Link | None = None

    def __post_init__(self):
        super().__post_init__()
        self.pp = len(self.layers)
        self.stage_share = max(self.layers) / self.arch.num_layers
        self.m_target = self.micro_batches or self.pp
        self.handoff_bytes_per_token = self.arch.hidden_size * ACTIVATION_BYTES / self.tp

    def micro_batches_for(self, sequences: int) -> int:
        """Micro-batches of a step of `sequences` sequences: the target, at most one a sequence."""
        return max(1, min(self.m_target, sequences))

    def _handoff_s(self, tokens: float) -> float:
        if self.pp == 1 or self.stage_link is None:
            return 0.0
        return transfer_time_s(tokens * self.handoff_bytes_per_token, self.stage_link)

    def _step_s(self, stage_s: float, host_s: float, m: int) -> float:
        body = (m + self.pp - 1) * stage_s
        return max(host_s, body) if self.overlap else host_s + body

    def iteration(self, decode_seqs, kv_read_bytes, prefill_tokens=0, prefill_pair_bytes=0.0, prefill_seqs=0):
        tokens = decode_seqs + prefill_tokens
        if tokens == 0:
            return StepCost(0.0, 0.0, 0.0)
        if prefill_tokens and not prefill_seqs:
            prefill_seqs = 1
        m = self.micro_batches_for(decode_seqs + prefill_seqs)
        # One micro-batch: 1/m of each term's work (whole sequences and tokens, rounded up).
        mb_dec, mb_pre = math.ceil(decode_seqs / m), math.ceil(prefill_tokens / m)
        mb_seqs = math.ceil(prefill_seqs / m) if prefill_seqs else 0
        b = self.breakdown(mb_dec, kv_read_bytes / m, mb_pre, prefill_pair_bytes / m, mb_seqs)
        gpu = sum(b[k] for k in ("dense_s", "attention_decode_s", "attention_prefill_s", "kv_write_s", "comm_s"))
        stage_s = (gpu + b["layer_fixed_s"]) * self.stage_share + self._handoff_s(mb_dec + mb_pre)
        t = self._step_s(stage_s, self.host_time_s(decode_seqs + prefill_seqs), m)
        whole = StepModel.iteration(self, decode_seqs, kv_read_bytes, prefill_tokens, prefill_pair_bytes, prefill_seqs)
        # Per GPU: a stage does its share of the work; the weights stream once per micro-batch.
        extra_weights = (m - 1) * self.weight_bytes_per_gpu(mb_dec + mb_pre)
        return StepCost(t, whole.flops * self.stage_share, (whole.bytes + extra_weights) * self.stage_share)

    def decode_run_lines(self, decode_seqs, kv_read_bytes0, kv_growth_per_step):
        """decode-only steps as lines in the step index (StepModel.decode_run_lines' contract)."""
        n = decode_seqs
        m = self.micro_batches_for(n)
        micro = math.ceil(n / m)
        attn_rate = max(1.0 / self.kv_rate, self.decode_flops_per_kv_byte / self.attn_flop_rate)
        fixed = self.decode_fixed_s(micro)
        share, depth = self.stage_share, m + self.pp - 1
        a = depth * (share * (fixed + attn_rate * kv_read_bytes0 / m) + self._handoff_s(micro))
        b = depth * share * attn_rate * kv_growth_per_step / m
        host = self.host_time_s(n)
        lines = [(host, 0.0), (a, b)] if self.overlap else [(a + host, b)]
        f0 = (self.linear_flops(n, n) + self.decode_flops_per_kv_byte * kv_read_bytes0) * share
        f1 = self.decode_flops_per_kv_byte * kv_growth_per_step * share
        m0 = (m * self.weight_bytes_per_gpu(micro) + kv_read_bytes0 + n * self.kv_write_bytes_per_token) * share
        m1 = kv_growth_per_step * share
        return lines, f0, f1, m0, m1


def pipeline_fields(scenario: ScenarioSpec, arch: Architecture) -> dict:
    """PipelineStepModel's own fields for the scenario's pipeline."""
    pipe = scenario.fleet.pipeline
    return {
        "layers": check_pipeline(scenario, arch),
        "micro_batches": pipe.micro_batches,
        "stage_link": resolve_link(pipe.link, "fleet.pipeline.link"),
    }


__all__ = [
    "DEFAULT_TP_LINK",
    "PipelineStepModel",
    "check_pipeline",
    "cross_server_all_reduce",
    "pipeline_memory_plan",
    "pipeline_fields",
    "tp_link_of",
]
