"""The serving engine: which one a scenario runs (`engine:`), and what an engine profile holds.

A GPU profile (fleetsim.spec.profile) says how fast the GPU's kernels run; an engine profile says
what the serving stack adds around them: CPU time per scheduler iteration and per running
sequence, kernel-launch cost per layer with and without CUDA graphs, whether host work overlaps
the GPU, how batches form and how KV memory is admitted. The step model (fleetsim.perf) combines
the two; every term is a named field here with its unit.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from fleetsim.spec.base import INTEGER, Spec

ENGINE_KINDS = ("vllm", "sglang", "trtllm", "custom")
MAX_SCHEDULER_STEPS = 64
NonNeg = Annotated[float, Field(ge=0, le=10.0, allow_inf_nan=False)]
_VERSION = re.compile(r"^\d+(\.\d+){0,2}$")


def version_key(version: str) -> tuple[int, ...]:
    """'0.11' -> (0, 11, 0): comparable release order."""
    parts = tuple(int(p) for p in version.split("."))
    return parts + (0,) * (3 - len(parts))


class EngineSpec(Spec):
    """The serving engine a scenario runs, as a scenario names it."""

    kind: Literal["vllm", "sglang", "trtllm", "custom"] = Field(
        default="vllm",
        description="Serving engine: vllm, sglang, trtllm (TensorRT-LLM), or custom (another stack, whose "
        "profile `engine.profile` names).",
    )
    version: str | None = Field(
        default=None,
        description="Engine release, e.g. '0.11' (vLLM), '0.4' (SGLang), '1.0' (TensorRT-LLM). "
        "The shipped profile of the newest release at or below it is used; null: the newest shipped.",
    )
    profile: str | None = Field(
        default=None,
        description="Path to an engine profile YAML (e.g. one fitted by `fleetsim calibrate --from-bench`) or "
        "the name of a shipped one (e.g. vllm-0.11); null: the shipped profile for kind and version.",
    )
    cuda_graphs: bool | None = Field(
        default=None,
        description="Override the profile: run decode iterations as captured CUDA graphs (true) or eagerly "
        "(false, as with --enforce-eager); null: the profile's setting.",
    )

    async_scheduling: bool | None = Field(
        default=None,
        description="Override the profile: the next iteration is scheduled while the GPU runs this one "
        "(vLLM --async-scheduling, SGLang's overlap scheduler); null: the profile's setting.",
    )
    streaming: bool = Field(
        default=True,
        description="Responses stream token by token to clients (online serving, as latency benchmarks measure "
        "TTFT and TPOT); false for offline batch runs (MLPerf Offline, trtllm-bench), which skip that host work.",
    )
    kv_admission: Literal["on_demand", "reserve_full"] | None = Field(
        default=None,
        description="Override the profile's KV admission: on_demand (blocks allocated as tokens are scheduled) "
        "or reserve_full (prompt + largest output reserved at admission); null: the profile's.",
    )

    scheduler_steps: Annotated[int, Field(ge=1, le=MAX_SCHEDULER_STEPS), INTEGER] | None = Field(
        default=None,
        description="vLLM V0's multi-step scheduling (--num-scheduler-steps): schedule once, then run this many "
        "decode steps, so the host work of one iteration is spread over them, new prompts join only between "
        f"windows and each window's tokens stream out together; 1 to {MAX_SCHEDULER_STEPS}, needs a V0 profile "
        "(vllm below 0.7) without chunked prefill. Null: the profile's (1).",
    )
    mixed_chunk: bool | None = Field(
        default=None,
        description="Override the profile: prompt chunks run in the same iteration as the decodes (true, as "
        "SGLang's --enable-mixed-chunk) or alone while the decodes wait (false); null: the profile's.",
    )
    two_batch_overlap: bool | None = Field(
        default=None,
        description="Override the profile: run MoE layers as two micro-batches whose expert all-to-all overlaps "
        "the other's compute (SGLang --enable-two-batch-overlap; needs fleet.ep > 1); null: the profile's.",
    )

    @model_validator(mode="after")
    def _custom_needs_profile(self):
        if self.kind == "custom" and self.profile is None:
            raise ValueError("engine.kind custom needs engine.profile (a file or a shipped profile name)")
        return self

    @field_validator("version")
    @classmethod
    def _version(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = str(v).strip().lstrip("vV")
        if not _VERSION.match(v):
            raise ValueError(f"'{v[:40]}' is not a release number like 0.11 or 1.0")
        return v


class HostTime(Spec):
    """CPU time the engine spends per scheduler iteration (schedule, prepare inputs, sample, detokenize)."""

    iteration_s: NonNeg = Field(description="Fixed host time per iteration, s.")
    per_sequence_s: NonNeg = Field(description="Host time per sequence in the iteration's batch, s.")
    overlap: bool = Field(
        description="Host work of the next iteration runs while the GPU executes this one "
        "(async scheduling / overlap scheduler): an iteration takes max(host + s GPU, GPU + s host) with "
        "s = serial_fraction, instead of host + GPU."
    )
    per_streamed_sequence_s: NonNeg = Field(
        default=0.0,
        description="Extra host time per sequence in an iteration when responses stream token by token "
        "(online serving: detokenize and send each token), s; offline benchmarks do not stream.",
    )
    serial_fraction: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = Field(
        default=0.0,
        description="With overlap, the share of the shorter of host and GPU time that still serializes "
        "(synchronization, output processing on the critical path); 0: perfect overlap.",
    )


class LaunchCost(Spec):
    """Kernel-launch cost: per layer when kernels are launched one by one, fixed for a graph replay."""

    per_layer_gpu_s: NonNeg = Field(
        default=0.0,
        description="GPU time per layer that does not shrink with the batch: the short kernels (norms, rotary "
        "embedding, activations, quantization) take a few microseconds each at any size, s.",
    )
    per_moe_layer_gpu_s: NonNeg = Field(
        default=0.0,
        description="Extra GPU time per mixture-of-experts layer that does not shrink with the batch: routing, "
        "token permutation and the grouped expert GEMMs' launch and tail, s.",
    )
    per_layer_eager_s: NonNeg = Field(
        description="Time to launch one layer's kernels from the host, s (a GPU step cannot be shorter)."
    )
    graph_replay_s: NonNeg = Field(description="Fixed cost of replaying a captured CUDA graph, s.")
    cuda_graphs: bool = Field(description="Decode-only iterations run as captured CUDA graphs.")
    graph_max_batch: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        description="Largest decode batch captured as a graph (larger ones run eagerly)."
    )
    mixed_in_graph: bool = Field(
        default=False,
        description="Iterations with prefill tokens also replay graphs (piecewise graphs around attention).",
    )


class Batching(Spec):
    """How the engine forms batches and admits KV memory."""

    kv_admission: Literal["on_demand", "reserve_full"] = Field(
        description="on_demand: blocks are allocated as tokens are scheduled (vLLM, SGLang); "
        "reserve_full: a request is admitted only if its prompt + full output fit (TensorRT-LLM "
        "GUARANTEED_NO_EVICT)."
    )
    preemption: Literal["recompute"] = Field(
        default="recompute", description="What happens to a sequence evicted for memory: recomputed later."
    )
    prefill_alone: Literal["never", "unchunked", "always"] = Field(
        default="never",
        description="When an iteration with prompt work runs it alone, the decoding sequences waiting for the next "
        "one. never: decodes ride along (vLLM V1, TensorRT-LLM in-flight batching, SGLang --enable-mixed-chunk); "
        "unchunked: only without chunked prefill (vLLM V0's _schedule_default: 'Don't schedule decodes if "
        "prefills are scheduled'); always: chunked or not (SGLang's get_next_batch_to_run: 'Run prefill first "
        "if possible').",
    )
    scheduler_steps: Annotated[int, Field(ge=1, le=MAX_SCHEDULER_STEPS)] = Field(
        default=1,
        description="Decode steps per scheduler call (vLLM V0 --num-scheduler-steps; engine.scheduler_steps "
        "overrides): host work per iteration is spread over them and new prompts wait for the window's end.",
    )


class EngineProvenance(Spec):
    kind: Literal["fitted_to_published", "fitted_to_benchmark", "prior", "transferred"]
    date: str
    sources: tuple[str, ...] = ()
    notes: str = ""
    figures: Annotated[int, Field(ge=0)] = Field(default=0, description="Published figures the fit used.")
    transferred_from: str | None = None


class TwoBatchOverlap(Spec):
    """Two-batch overlap of the expert all-to-all with compute (fleetsim.expert_comm)."""

    enabled: bool = Field(
        default=False,
        description="A batch runs as two micro-batches, one's MoE dispatch/combine overlapping the other's "
        "compute (SGLang --enable-two-batch-overlap); needs fleet.ep > 1.",
    )
    prefill_comm_sm_fraction: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = Field(
        default=24 / 132,
        description="Share of the GPU's SMs the all-to-all kernels hold in iterations with prefill (DeepEP's "
        "normal kernels: 24 of an H100's 132 SMs, DeepEP docs/legacy.md); decode uses DeepEP's low-latency "
        "kernels, which receive through a hook with no SMs.",
    )


class EngineProfile(Spec):
    """The engine terms of the step model, per engine release."""

    schema_version: Literal[2] = 2
    engine: Literal["vllm", "sglang", "trtllm", "custom"]
    version: str
    released: str = Field(description="Release date of this version (YYYY-MM).")
    provenance: EngineProvenance
    host: HostTime
    launch: LaunchCost
    batching: Batching
    attention_compute_dtype: Literal["bf16", "kv"] = Field(
        default="bf16",
        description="Prefill attention math runs in bf16, or in the KV dtype when that is fp8 and the GPU "
        "has fp8 tensor cores (FlashAttention-3 / TensorRT-LLM fp8 FMHA).",
    )
    gemm_efficiency_scale: Annotated[float, Field(gt=0, le=2)] = Field(
        default=1.0, description="This engine's GEMM throughput relative to the GPU profile's curves."
    )
    attention_efficiency_scale: Annotated[float, Field(gt=0, le=2)] = Field(
        default=1.0,
        description="This engine's attention kernels (FlashAttention-2/3, FlashInfer, TensorRT-LLM XQA, "
        "paged attention v1) relative to the GPU profile's attention efficiencies.",
    )
    attention_kernel: str = Field(default="", description="The attention kernel family, for the record.")
    allreduce_latency_s: NonNeg | None = Field(
        default=None,
        description="Latency of one small all-reduce with this engine's implementation (custom one-shot "
        "kernels); null: the GPU profile's NCCL latency.",
    )
    two_batch_overlap: TwoBatchOverlap = Field(default_factory=TwoBatchOverlap)
    fit_residuals: dict[str, float] = Field(default_factory=dict)

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not _VERSION.match(v):
            raise ValueError(f"'{v[:40]}' is not a release number like 0.11")
        return v

    @property
    def name(self) -> str:
        return f"{self.engine}-{self.version}"

    @property
    def grade(self) -> str:
        """A one-line calibration status for tables and warnings."""
        p = self.provenance
        if p.kind == "transferred":
            return f"transferred from {p.transferred_from}"
        if p.kind == "prior":
            return "prior values (not fitted)"
        what = "published figures" if p.kind == "fitted_to_published" else "benchmark results"
        return f"fitted to {p.figures} {what}" if p.figures else f"fitted to {what}"


def prefill_runs_alone(profile: EngineProfile, chunked_prefill: bool) -> bool:
    """Whether an iteration with prompt work runs it without the decodes (batching.prefill_alone)."""
    mode = profile.batching.prefill_alone
    return mode == "always" or (mode == "unchunked" and not chunked_prefill)
