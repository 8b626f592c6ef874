"""A speculative-decoding (or MTP) replica as the simulator runs it: a StepModel whose decode
iteration is one speculative step's share per token, and the memory its drafter takes
(fleetsim.sim.speculative_replica: the replica that credits a mixed iteration's extra tokens).

Design (deterministic, exact in expectation): the simulator keeps advancing every decoding
sequence one token per iteration; with speculation an "iteration" is 1/E of a speculative step,
E = (1 - a^(k+1)) / (1 - a) the mean tokens a step yields (fleetsim.speculative). So a decode
iteration takes (verify of k + 1 positions + drafting) / E, its FLOPs and bytes are the step's / E
(power unchanged), and the KV grows one token per iteration, E per step. A lone request's TPOT
and ITL are then exactly step / E, tokens and KV are counted as they are without speculation,
and the run stays one closed-form DecodeRun: no per-request random acceptance. Every sequence also holds k lookahead slots while decoding (vLLM's
num_lookahead_slots), and the drafter's weights and KV come out of the pool.

Per-class acceptance: the simulator uses one E per replica, the fleet's tokens per step in steady
state, sum_c w_c o_c / sum_c (w_c o_c / E_c) (class arrival share w_c, mean output o_c: a class's
sequences stay in the batch in proportion to o_c / E_c steps). Exact for one class; with classes
that accept differently every class sees the mixed rate. An iteration with prefill work is a
whole speculative step (the prefill chunk, k + 1 verified rows a decode, the drafting); the
replica counts its decodes a token each, as always, and credits them the E - 1 more in
expectation, a deterministic carry turning the fraction into whole tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from fleetsim.errors import CapacityError, SpecError
from fleetsim.memory import MemoryPlan, kv_footprint, sequences_that_fit
from fleetsim.perf import StepCost, StepModel
from fleetsim.spec.architecture import Architecture
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.spec.topology import SpeculativeSpec
from fleetsim.speculative import drafter_memory_per_gpu, expected_tokens_by_position, step_acceptance

__all__ = [
    "SpeculativeStepModel",
    "check_speculative",
    "draft_arch",
    "fleet_tokens_per_step",
    "speculative_memory_plan",
]


def check_speculative(scenario: ScenarioSpec) -> SpeculativeSpec:
    """The scenario's speculative spec; one line for combinations not modelled."""
    spec = scenario.speculative
    assert spec is not None
    fleet = scenario.fleet
    if fleet.pipeline.stages > 1:
        raise SpecError(
            "speculative: speculative decoding with fleet.pipeline.stages > 1 is not modelled; valid: 1 stage"
        )
    if fleet.power_limit_w is not None or fleet.clock_fraction is not None:
        raise SpecError(
            "speculative: speculative decoding with fleet.power_limit_w or fleet.clock_fraction is not modelled; "
            "valid: leave both null"
        )
    names = {c.name for c in scenario.workload.classes}
    for name in spec.acceptance_by_class:
        if name not in names:
            raise SpecError(
                f"speculative.acceptance_by_class: '{name[:80]}' is not a workload class; valid: "
                f"{', '.join(sorted(names))}"
            )
    return spec


def fleet_tokens_per_step(scenario: ScenarioSpec) -> float:
    """E of the replica: one class's expected tokens per step, or the steady mix over classes."""
    from fleetsim.workload import length_mean

    spec = check_speculative(scenario)
    wl = scenario.workload
    per_class = [expected_tokens_by_position(step_acceptance(spec, c.name)) for c in wl.classes]
    if len(set(per_class)) == 1:
        return per_class[0]
    # decode tokens a request of each class brings (a class without lengths, e.g. a trace's: 1)
    out = [
        w * (max(length_mean(c.output_tokens, exact=False) - 1.0, 1.0) if c.output_tokens is not None else 1.0)
        for w, c in zip(wl.class_weights, wl.classes)
    ]
    return sum(out) / sum(o / e for o, e in zip(out, per_class))


def draft_arch(scenario: ScenarioSpec) -> Architecture | None:
    spec = scenario.speculative
    if spec is None or spec.method != "draft_model":
        return None
    from fleetsim.catalog import load_model

    assert spec.draft_model is not None
    return load_model(spec.draft_model)


def speculative_memory_plan(plan: MemoryPlan, scenario: ScenarioSpec, arch: Architecture) -> MemoryPlan:
    """`plan` with the drafter's weights taken from the pool and its KV per token charged in
    the target's per-token units (the pool shrinks by target / (target + draft) per token)."""
    spec = check_speculative(scenario)
    tp = scenario.fleet.tp
    per_token = plan.footprint.full_bytes_per_token_per_rank
    d = draft_arch(scenario)
    draft = None
    if d is not None:
        d_tp = spec.draft_tp or tp
        d_fp = kv_footprint(d, scenario.kv_cache, d_tp)
        draft = (d, d_tp, scenario.weight_dtype, d_fp.full_bytes_per_token_per_rank)
    weights, kv = drafter_memory_per_gpu(spec, arch, tp, scenario.weight_dtype, per_token, draft)
    left = plan.kv_pool_bytes_per_gpu - weights
    pool = int(left * per_token / (per_token + kv)) if per_token > 0 else int(left)
    if pool <= 0:
        raise CapacityError(
            f"speculative: the drafter's weights ({weights / 1e9:.1f} GB per GPU) leave no KV pool "
            f"({plan.kv_pool_bytes_per_gpu / 1e9:.1f} GB per GPU before it); lower draft size or raise tp"
        )
    blocks = int(pool // plan.block_bytes_per_gpu) if plan.block_bytes_per_gpu else 0
    return replace(
        plan,
        weights_bytes_per_gpu=plan.weights_bytes_per_gpu + math.ceil(weights),
        kv_pool_bytes_per_gpu=pool,
        kv_blocks=blocks,
        kv_capacity_tokens=blocks * plan.block_tokens if plan.kv_capacity_tokens is not None else None,
        max_concurrent_sequences=min(
            plan.max_concurrent_sequences,
            sequences_that_fit(pool, blocks, plan.block_bytes_per_gpu, plan.sequence_bytes_per_gpu),
        ),
    )


@dataclass
class SpeculativeStepModel(StepModel):
    """A StepModel whose decode iteration is 1/E of a speculative step (see the module doc)."""

    draft_tokens: int = 1
    tokens_per_step: float = 1.0
    mtp_share: float = 0.0  # method mtp: the head's layers / the model's layers; 0 with a draft model
    draft: StepModel | None = None

    @property
    def lookahead_bytes(self) -> float:
        """KV bytes per GPU each decoding sequence holds for the k positions a step verifies."""
        return self.draft_tokens * self.footprint.full_bytes_per_token_per_rank

    def iteration(self, decode_seqs, kv_read_bytes, prefill_tokens=0, prefill_pair_bytes=0.0, prefill_seqs=0):
        args = (decode_seqs, kv_read_bytes, prefill_tokens, prefill_pair_bytes, prefill_seqs)
        if not decode_seqs:
            return StepModel.iteration(self, *args)
        if prefill_tokens:
            return self._mixed(StepModel.iteration(self, *args), decode_seqs, kv_read_bytes, prefill_tokens)
        lines, f0, _, m0, _ = self.decode_run_lines(decode_seqs, kv_read_bytes, 0.0)
        return StepCost(max(a for a, _ in lines), f0, m0)

    def _mixed(self, plain: StepCost, n: int, kv: float, prefill_tokens: int) -> StepCost:
        """A whole speculative step with prefill work (the replica credits its decodes the E - 1
        tokens beyond the one it counts, fleetsim.sim.speculative_replica): the plain iteration
        plus the k n extra verified rows (GEMMs, KV writes, all-reduce) and the drafting."""
        extra = self.draft_tokens * n
        rows, more = n + prefill_tokens, n + prefill_tokens + extra
        verify_s = (
            self.dense_time_s(more, n + extra)
            - self.dense_time_s(rows, n)
            + extra * self.kv_write_bytes_per_token / self.mem_rate
            + self.comm_time_s(more)
            - self.comm_time_s(rows)
        )
        lines, (f0, _, m0, _) = self._draft(n, kv, 0.0)
        draft_s = max(a for a, _ in lines)
        flops = self.linear_flops(extra, extra) + f0
        moved = extra * self.kv_write_bytes_per_token + m0
        return StepCost(plain.time_s + verify_s + draft_s, plain.flops + flops, plain.bytes + moved)

    def _verify_lines(self, n: int, kv0: float, g: float) -> list[tuple[float, float]]:
        """verify_time_s of the step at KV read kv0 + g j, as lines in j."""
        q = self.draft_tokens + 1
        nq = n * q
        alpha = max(1.0 / self.kv_rate, q * self.decode_flops_per_kv_byte / self.attn_flop_rate)
        fixed = self.dense_time_s(nq, nq) + nq * self.kv_write_bytes_per_token / self.mem_rate + self.comm_time_s(nq)
        gpu = [(fixed + alpha * kv0 + self.layer_fixed_s, alpha * g)]
        if self.graphs and nq <= self.graph_max_batch:
            gpu = [(a + self.graph_s, b) for a, b in gpu]
        elif self.eager_floor_s > 0:
            gpu.append((self.eager_floor_s, 0.0))
        host = self.host_time_s(n)
        if not self.overlap:
            return [(a + host, b) for a, b in gpu]
        k = self.serial_fraction
        return [(host + k * a, k * b) for a, b in gpu] + [(a + k * host, b) for a, b in gpu]

    def _draft(self, n: int, kv0: float, g: float) -> tuple[list[tuple[float, float]], tuple[float, ...]]:
        """draft_time_s as lines in j, and its (f0, f1, m0, m1)."""
        k = self.draft_tokens
        per_token = self.footprint.full_bytes_per_token_per_rank
        if self.draft is None:  # MTP head: k passes of its share of the model's layers
            s = self.mtp_share
            alpha = max(1.0 / self.kv_rate, self.decode_flops_per_kv_byte / self.attn_flop_rate)
            fixed = self.decode_fixed_s(n)
            a = k * s * fixed + s * alpha * (k * kv0 + n * per_token * k * (k - 1) / 2)
            work = (
                k * s * (self.linear_flops(n, n) + self.decode_flops_per_kv_byte * kv0),
                k * s * self.decode_flops_per_kv_byte * g,
                k * s * (self.weight_bytes_per_gpu(n) + kv0 + n * self.kv_write_bytes_per_token),
                k * s * g,
            )
            return [(a, s * alpha * k * g)], work
        d = self.draft
        ratio = d.footprint.full_bytes_per_token_per_rank / per_token if per_token else 0.0
        # k decode steps of the draft model, its context one token longer each: the mean offset.
        x0 = kv0 * ratio + n * d.footprint.full_bytes_per_token_per_rank * (k - 1) / 2
        lines, f0, f1, m0, m1 = d.decode_run_lines(n, x0, g * ratio)
        return [(k * a, k * b) for a, b in lines], (k * f0, k * f1, k * m0, k * m1)

    def decode_run_lines(self, decode_seqs, kv_read_bytes0, kv_growth_per_step):
        """Virtual decode iterations (one token each, 1/E of a step) as lines in the index j."""
        n, kv0, g = decode_seqs, kv_read_bytes0, kv_growth_per_step
        e = self.tokens_per_step
        draft_lines, (df0, df1, dm0, dm1) = self._draft(n, kv0, g)
        lines = [((va + da) / e, (vb + db) / e) for va, vb in self._verify_lines(n, kv0, g) for da, db in draft_lines]
        q = self.draft_tokens + 1
        f0 = self.linear_flops(n * q, n * q) + q * self.decode_flops_per_kv_byte * kv0 + df0
        f1 = q * self.decode_flops_per_kv_byte * g + df1
        m0 = self.weight_bytes_per_gpu(n * q) + kv0 + n * q * self.kv_write_bytes_per_token + dm0
        m1 = g + dm1
        return lines, f0 / e, f1 / e, m0 / e, m1 / e


def speculative_fields(scenario: ScenarioSpec, arch: Architecture, draft: StepModel | None) -> dict:
    """SpeculativeStepModel's own fields for the scenario."""
    spec = check_speculative(scenario)
    return {
        "draft_tokens": spec.draft_tokens,
        "tokens_per_step": fleet_tokens_per_step(scenario),
        "mtp_share": spec.mtp_layers / arch.num_layers if spec.method == "mtp" else 0.0,
        "draft": draft,
    }
