"""Speculative decoding and multi-token prediction (MTP): tokens per step, step time, TPOT.

A step drafts k tokens, then the target model verifies all k + 1 positions of every sequence in
one forward pass. Draft token i is kept only if tokens 1..i-1 were; with chain acceptance a each
position is kept with probability a given the earlier ones, so the tokens one step produces are
1 (the target's own token) + the accepted run, with mean

    E[tokens] = 1 + a + a^2 + ... + a^k = (1 - a^(k+1)) / (1 - a)            (k + 1 at a = 1)

and, with an acceptance a_i per position, 1 + a_1 + a_1 a_2 + ... + a_1...a_k.

Step time = verify (the target over k + 1 tokens per sequence: every position is a GEMM row and a
logit; the KV is read once per sequence, attention FLOPs are k + 1 queries' worth) + draft
(a draft model: k decode steps of it; an MTP head: k passes of mtp_layers of the target's layers).
TPOT = step time / E[tokens]. The KV grows by E[tokens] per step; k lookahead slots are held
per sequence during the step (vLLM reserves num_lookahead_slots = k). Pure: no simpy, no I/O
beyond the catalog file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from fleetsim.errors import SpecError
from fleetsim.perf import StepModel
from fleetsim.spec.topology import SpeculativeSpec
from fleetsim.spec.yaml_file import loads

__all__ = [
    "SpeculativeStep",
    "build_step_model",
    "draft_memory_per_gpu",
    "drafter_memory_per_gpu",
    "draft_time_s",
    "verify_time_s",
    "expected_tokens_per_step",
    "expected_tokens_by_position",
    "implied_acceptance",
    "published_acceptance",
    "speculative_step",
    "mtp_pays_at_batch",
    "step_acceptance",
]


# --------------------------------------------------------------------------- acceptance
def expected_tokens_per_step(acceptance: float, draft_tokens: int) -> float:
    """(1 - a^(k+1)) / (1 - a): mean tokens one verify step yields (k + 1 at a = 1)."""
    _check_fraction("acceptance", acceptance)
    if draft_tokens < 0:
        raise SpecError(f"draft_tokens: {draft_tokens} is not valid; give an integer >= 0")
    if acceptance == 1.0:
        return float(draft_tokens + 1)
    return (1.0 - acceptance ** (draft_tokens + 1)) / (1.0 - acceptance)


def expected_tokens_by_position(acceptances: tuple[float, ...] | list[float]) -> float:
    """1 + a_1 + a_1 a_2 + ... + a_1...a_k: position i accepted with a_i given 1..i-1 were."""
    total, run = 1.0, 1.0
    for i, a in enumerate(acceptances):
        _check_fraction(f"acceptance_by_position[{i}]", a)
        run *= a
        total += run
    return total


def implied_acceptance(mean_tokens_per_step: float, draft_tokens: int) -> float:
    """The chain rate a whose (1 - a^(k+1)) / (1 - a) equals a published mean accepted length
    (bisection; the mean is increasing in a from 1 at a = 0 to k + 1 at a = 1)."""
    if not 1.0 <= mean_tokens_per_step <= draft_tokens + 1:
        raise SpecError(
            f"mean_tokens_per_step: {mean_tokens_per_step} is not valid for draft_tokens={draft_tokens}; "
            f"valid: 1 to {draft_tokens + 1}"
        )
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if expected_tokens_per_step(mid, draft_tokens) < mean_tokens_per_step:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _check_fraction(field: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise SpecError(f"{field}: {value} is not valid; an acceptance rate is from 0 to 1")


@cache
def _catalog() -> dict:
    text = resources.files("fleetsim.catalog").joinpath("speculative.yaml").read_text()
    return loads(text, "fleetsim/catalog/speculative.yaml")


def published_acceptance(entry: str | None = None, *, method: str = "mtp") -> float:
    """Chain acceptance of a catalog entry (fleetsim/catalog/speculative.yaml), or of the method's
    default entry; an entry given as a mean accepted length is inverted with implied_acceptance."""
    data = _catalog()
    name = entry or data["defaults"].get(method)
    if name not in data["entries"]:
        raise SpecError(f"speculative entry: '{name}' is unknown; valid: {', '.join(sorted(data['entries']))}")
    e = data["entries"][name]
    if e.get("acceptance") is not None:
        return float(e["acceptance"])
    if e.get("draft_tokens") is None:
        raise SpecError(f"speculative entry '{name}' gives a tree's mean length with no chain depth; give acceptance")
    return implied_acceptance(float(e["mean_tokens_per_step"]), int(e["draft_tokens"]))


def step_acceptance(spec: SpeculativeSpec, class_name: str | None = None) -> tuple[float, ...]:
    """Per-position acceptance of a step for one workload class: the class's own chain rate, else
    acceptance_by_position, else acceptance, else the method's published default."""
    k = spec.draft_tokens
    if class_name is not None and class_name in spec.acceptance_by_class:
        return (spec.acceptance_by_class[class_name],) * k
    if spec.acceptance_by_position is not None:
        return tuple(spec.acceptance_by_position)
    a = spec.acceptance if spec.acceptance is not None else published_acceptance(method=spec.method)
    return (a,) * k


# --------------------------------------------------------------------------- step time
@dataclass(frozen=True)
class SpeculativeStep:
    """One speculative step of `batch` sequences at `context_tokens` each, and what it yields."""

    batch: int
    context_tokens: int
    draft_tokens: int
    tokens_per_step: float  # mean, per sequence (the bonus token included)
    verify_s: float
    draft_s: float
    baseline_step_s: float  # a plain decode step of the same batch (no speculation)
    kv_growth_tokens_per_step: float  # mean tokens appended to each sequence's KV per step
    kv_lookahead_tokens: int  # slots held per sequence during the step (k)
    kv_growth_bytes_per_step_per_gpu: float  # of one sequence, target layers (the paged-block unit)
    draft_kv_bytes_per_token_per_gpu: float  # the draft's own cache (MTP head layers or draft model)
    draft_weight_bytes_per_gpu: float  # resident next to the target's weights

    @property
    def step_s(self) -> float:
        return self.verify_s + self.draft_s

    @property
    def tpot_s(self) -> float:
        return self.step_s / self.tokens_per_step

    @property
    def tokens_per_s_per_sequence(self) -> float:
        return self.tokens_per_step / self.step_s

    @property
    def baseline_tokens_per_s_per_sequence(self) -> float:
        return 1.0 / self.baseline_step_s

    @property
    def speedup(self) -> float:
        """Tokens per second with speculation / without (> 1: it pays)."""
        return self.tokens_per_s_per_sequence / self.baseline_tokens_per_s_per_sequence

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in ("step_s", "tpot_s", "tokens_per_s_per_sequence", "speedup"):
            d[k] = getattr(self, k)
        return d


def _kv_read_bytes(step: StepModel, batch: int, context_tokens: int) -> float:
    return batch * float(step.footprint.bytes_per_rank(context_tokens))


def verify_time_s(step: StepModel, batch: int, context_tokens: int, draft_tokens: int) -> float:
    """The target's verify pass: batch x (k + 1) tokens through the GEMMs (each a logit row), the
    KV of each sequence read once with k + 1 queries' attention FLOPs, k + 1 KV writes each."""
    q = draft_tokens + 1
    tokens = batch * q
    kv = _kv_read_bytes(step, batch, context_tokens)
    attention_s = max(kv / step.kv_rate, q * step.decode_flops_per_kv_byte * kv / step.attn_flop_rate)
    gpu_s = (
        step.dense_time_s(tokens, tokens)
        + attention_s
        + tokens * step.kv_write_bytes_per_token / step.mem_rate
        + step.comm_time_s(tokens)
    )
    # The engine's launch and host terms as StepModel combines them (graphs captured up to
    # graph_max_batch tokens; host cost per sequence, not per verified position).
    graph = step.graphs and tokens <= step.graph_max_batch
    return step.iteration_time_s(gpu_s, batch, graph)


def _decode_gpu_s(step: StepModel, batch: int, context_tokens: int) -> float:
    """GPU time of one plain decode step (no host, no launch): what one layer's share scales."""
    b = step.breakdown(batch, _kv_read_bytes(step, batch, context_tokens))
    return b["dense_s"] + b["attention_decode_s"] + b["kv_write_s"] + b["comm_s"] + b["layer_fixed_s"]


def draft_time_s(
    step: StepModel, spec: SpeculativeSpec, batch: int, context_tokens: int, draft: StepModel | None = None
) -> float:
    """k draft passes. mtp: each pass is mtp_layers of the target's num_layers layers (GPU time of a
    decode step scaled by that share; the head reads its own KV). draft_model: k decode steps of
    the draft model's StepModel (`draft`), its context growing by one each."""
    k = spec.draft_tokens
    if spec.method == "mtp":
        share = spec.mtp_layers / step.arch.num_layers
        return sum(share * _decode_gpu_s(step, batch, context_tokens + j) for j in range(k))
    if draft is None:
        raise SpecError("speculative.draft_model: a draft_model step needs the draft model's StepModel")
    return sum(draft.iteration(batch, _kv_read_bytes(draft, batch, context_tokens + j)).time_s for j in range(k))


def draft_memory_per_gpu(step: StepModel, spec: SpeculativeSpec, draft: StepModel | None = None) -> tuple[float, float]:
    """(weight bytes, KV bytes per token) the drafter adds on each GPU (drafter_memory_per_gpu of
    the step models' layouts)."""
    if spec.method == "draft_model" and draft is None:
        raise SpecError("speculative.draft_model: a draft_model step needs the draft model's StepModel")
    return drafter_memory_per_gpu(
        spec,
        step.arch,
        step.tp,
        step.weight_dtype,
        step.footprint.full_bytes_per_token_per_rank,
        None
        if draft is None
        else (draft.arch, draft.tp, draft.weight_dtype, draft.footprint.full_bytes_per_token_per_rank),
    )


def drafter_memory_per_gpu(
    spec: SpeculativeSpec,
    arch,
    tp: int,
    weight_dtype: str,
    kv_bytes_per_token_per_gpu: float,
    draft: tuple | None = None,
) -> tuple[float, float]:
    """(weight bytes, KV bytes per token) the drafter adds on each GPU. mtp: mtp_layers layers
    like the model's last (an MoE layer for DeepSeek-V3; embedding and LM head shared with the
    model), with their share of a token's KV. draft_model (`draft` = (arch, tp, weight dtype, KV
    bytes per token per GPU)): its weights over its TP and its KV."""
    from fleetsim.memory import weight_bytes
    from fleetsim.pipeline import layer_weight_bytes

    if spec.method == "mtp":
        n, m = arch.num_layers, spec.mtp_layers
        weights = layer_weight_bytes(arch, max(n - m, 0), m, weight_dtype) / tp
        return weights, kv_bytes_per_token_per_gpu * m / n
    if draft is None:
        raise SpecError("speculative.draft_model: a draft_model step needs the draft model's StepModel")
    d_arch, d_tp, d_dtype, d_kv = draft
    return weight_bytes(d_arch, d_dtype) / d_tp, d_kv


def speculative_step(
    step: StepModel,
    spec: SpeculativeSpec,
    batch: int,
    context_tokens: int,
    *,
    draft: StepModel | None = None,
    class_name: str | None = None,
) -> SpeculativeStep:
    """The step of `batch` sequences holding `context_tokens` each, and its yield."""
    if batch < 1:
        raise SpecError(f"batch: {batch} is not valid; give at least 1 sequence")
    if context_tokens < 1:
        raise SpecError(f"context_tokens: {context_tokens} is not valid; give at least 1 token")
    k = spec.draft_tokens
    tokens = expected_tokens_by_position(step_acceptance(spec, class_name))
    baseline = step.iteration(batch, _kv_read_bytes(step, batch, context_tokens)).time_s
    draft_weights, draft_kv = draft_memory_per_gpu(step, spec, draft)
    return SpeculativeStep(
        batch=batch,
        context_tokens=context_tokens,
        draft_tokens=k,
        tokens_per_step=tokens,
        verify_s=verify_time_s(step, batch, context_tokens, k),
        draft_s=draft_time_s(step, spec, batch, context_tokens, draft),
        baseline_step_s=baseline,
        kv_growth_tokens_per_step=tokens,
        kv_lookahead_tokens=k,
        kv_growth_bytes_per_step_per_gpu=tokens * step.footprint.full_bytes_per_token_per_rank,
        draft_kv_bytes_per_token_per_gpu=draft_kv,
        draft_weight_bytes_per_gpu=draft_weights,
    )


def mtp_pays_at_batch(
    step: StepModel, spec: SpeculativeSpec, batch: int, context_tokens: int, *, draft: StepModel | None = None
) -> tuple[bool, SpeculativeStep]:
    """Does speculation raise tokens/s per sequence at this batch? (answer, the step behind it).
    At small batches decode is memory-bound and the k extra positions are nearly free; at large
    batches the verify pass turns compute-bound and the rejected positions cost real time."""
    s = speculative_step(step, spec, batch, context_tokens, draft=draft)
    return s.speedup > 1.0, s


def build_step_model(
    model: str,
    gpu: str,
    *,
    tp: int = 1,
    weight_dtype: str = "bf16",
    kv=None,
    engine=None,
) -> StepModel:
    """A StepModel from catalog names (the shipped GPU profile and engine profile), as a replica
    of that layout runs: for a draft model, a pipeline stage or a what-if in a notebook."""
    from fleetsim.catalog import load_gpu, load_model
    from fleetsim.memory import kv_footprint
    from fleetsim.profile import load_engine_profile, load_profile
    from fleetsim.spec.engine import EngineSpec
    from fleetsim.spec.kvcache import KvCacheSpec

    arch = load_model(model)
    kv = kv or KvCacheSpec()
    return StepModel(
        arch,
        load_gpu(gpu),
        load_profile(load_gpu(gpu).name),
        load_engine_profile(engine or EngineSpec()),
        tp,
        weight_dtype,
        kv,
        kv_footprint(arch, kv, tp),
    )
