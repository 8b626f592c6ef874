"""Step time of one scheduler iteration of a replica: GPU kernels as rooflines, plus the serving
engine's own time. Every term is a named function of the batch (per GPU of a tensor-parallel
group: each rank does 1/tp of the FLOPs and reads 1/tp of the weights and its own KV shard):

  dense      = max(weights_read / (eta_m * BW), linear_flops / (eta_c[gemm dtype] * peak[gemm dtype]))
  attention  = decode:  max(kv_read / (eta_kv * eta_m * BW), decode_attn_flops / (eta_attn * peak[attn dtype]))
             + prefill: max(kv_ctx  / (eta_kv * eta_m * BW), prefill_attn_flops / (eta_attn * peak[attn dtype]))
             + kv_write / (eta_m * BW)
  comm       = 2 * layers * (allreduce_latency + tokens * hidden * 2 B * 2 (tp - 1) / tp / busbw)   (tp > 1)
  gpu        = dense + attention + comm + layers * per_layer_gpu + moe_layers * per_moe_layer_gpu
               (short kernels that take their time at any batch), then
               + graph_replay                         (decode-only batch captured as a CUDA graph)
               max(., layers * per_layer_eager)       (kernels launched one by one)
  host       = iteration + per_sequence * sequences
  t          = max(host + s gpu, gpu + s host) if the engine overlaps host and GPU work (s: the share
               that still serializes), else host + gpu

The dense (GEMM) and attention kernels run one after the other, so their times add: a large
decode batch whose GEMMs are compute-bound still streams its whole KV cache afterwards. FLOPs run
at the peak of the dtype they run in: GEMMs in the weights' compute dtype (fp8 weights on an H100
are fp8 GEMMs; on an A100, which has no fp8 tensor cores, they are weight-only fp8 with bf16
math), attention in bf16 unless the engine runs fp8 attention on an fp8 KV cache. MLA attention
is costed as engines run it: prefill in the non-absorbed form (per-head K/V up-projected from the
latent), decode absorbed (queries attend to the latent directly). The embedding table is a lookup,
not a GEMM; the LM head is a GEMM for the tokens that produce logits.

GPU kernel efficiencies come from a GPU profile (fleetsim.spec.profile), engine terms from an
engine profile (fleetsim.spec.engine). Pure: no simpy, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fleetsim.dvfs import ClockSetting
from fleetsim.expert_comm import InternodeAllToAll, overlap_fill_s, two_batch_overlap_s
from fleetsim.memory import KvFootprint, active_weight_bytes
from fleetsim.parallel import Layout, a2a_bytes_per_token, imbalance_factor, touched_experts
from fleetsim.precision import bytes_per_element
from fleetsim.spec.architecture import Architecture, AttentionLayers, MLALayers
from fleetsim.spec.engine import EngineProfile
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.kvcache import KvCacheSpec
from fleetsim.spec.profile import CalibrationProfile, PowerModel

ACTIVATION_BYTES = 2.0  # bf16 activations in the all-reduce


def attention_flops_per_context_token(arch: Architecture, phase: str = "decode") -> float:
    """FLOPs one query token spends attending to one cached token, summed over layers (all ranks).
    GQA/MHA: QK^T and PV, 2 multiply-adds each per head-dim element: 4 * q_heads * head_dim.
    MLA decode (absorbed weights): scores over kv_lora_rank + rope, values over kv_lora_rank.
    MLA prefill (non-absorbed, as engines run it): per head QK over nope + rope, PV over v_head_dim."""
    total = 0.0
    for g in arch.layers:
        if isinstance(g, AttentionLayers):
            total += g.count * 4 * g.q_heads * g.head_dim
        elif isinstance(g, MLALayers):
            if phase == "prefill":
                total += g.count * 2 * g.q_heads * (g.qk_nope_head_dim + g.qk_rope_head_dim + g.v_head_dim)
            else:
                total += g.count * 2 * g.q_heads * (2 * g.kv_lora_rank + g.qk_rope_head_dim)
    return total


@dataclass(frozen=True)
class GemmPlan:
    """Which tensor cores the GEMMs use for a weight format on a GPU."""

    compute_dtype: str
    weight_only: bool  # weights stored narrower than the math (dequantized in the kernel)
    note: str


def gemm_plan(weight_dtype: str, gpu: GpuSpec) -> GemmPlan:
    """fp8/fp4/int8 weights run on those tensor cores where the GPU has them; otherwise (and
    always for int4 AWQ/GPTQ checkpoints) the kernel dequantizes to bf16 (W4A16 / W8A16)."""
    native = {"bf16": "bf16", "fp16": "bf16", "fp8": "fp8", "fp4": "fp4", "int8": "int8"}.get(weight_dtype)
    if native is None:
        return GemmPlan("bf16", True, f"{weight_dtype} weights dequantized to bf16 in the GEMM (weight-only)")
    if native in gpu.peak_flops_per_s or native == "bf16":
        return GemmPlan(native, False, "")
    return GemmPlan(
        "bf16",
        True,
        f"{gpu.name} has no {native} tensor cores (it has {', '.join(sorted(gpu.peak_flops_per_s))}): "
        f"{weight_dtype} weights run weight-only with bf16 math",
    )


@dataclass(frozen=True)
class StepCost:
    time_s: float
    flops: float  # per GPU
    bytes: float  # per GPU


@dataclass
class StepModel:
    """Compiled per (architecture, GPU, profiles, tp, precisions): evaluates iterations fast."""

    arch: Architecture
    gpu: GpuSpec
    profile: CalibrationProfile
    engine: EngineProfile
    tp: int
    weight_dtype: str
    kv: KvCacheSpec
    footprint: KvFootprint
    streaming: bool = True  # responses stream token by token (online serving)
    # Per-GPU power of an iteration; None: the GPU profile's (a power limit or clock lock replaces it).
    power_override: PowerModel | None = None
    # A power limit or clock lock (fleetsim.dvfs): compute-bound time scales with the SM clock.
    clock: ClockSetting | None = None
    # Expert parallelism and DP attention (fleetsim.parallel); None: plain tensor parallelism.
    layout: Layout | None = None
    # EP across servers: DeepEP-style all-to-all (fleetsim.expert_comm; set with the cross-server link).
    internode: InternodeAllToAll | None = None
    _weights_cache: dict = field(default_factory=dict, repr=False)
    _decode_terms: dict = field(default_factory=dict, repr=False)  # n -> decode_run_lines' n-only terms

    @property
    def power(self) -> PowerModel:
        """Per-GPU power model the simulator evaluates for each iteration."""
        return self.power_override if self.power_override is not None else self.profile.power

    def __post_init__(self):
        p, e, g = self.profile, self.engine, self.gpu
        self.gemm = gemm_plan(self.weight_dtype, g)
        curve = p.compute_curve(self.gemm.compute_dtype)
        self.peak_flops = g.peak_flops(self.gemm.compute_dtype)  # utilisation reference for power
        self.bw = g.hbm_bandwidth_bytes_per_s
        self.mem_rate = p.memory.eta_max * self.bw
        self.mem_half = p.memory.half_work
        self.flop_rate = curve.eta_max * self.peak_flops * e.gemm_efficiency_scale
        self.flop_half = curve.half_work
        # Attention math: bf16, or fp8 when the engine runs fp8 attention on an fp8 KV cache.
        attn_dtype = "bf16"
        if e.attention_compute_dtype == "kv" and self.kv.key_dtype == "fp8" and "fp8" in g.peak_flops_per_s:
            attn_dtype = "fp8"
        self.attention_dtype = attn_dtype
        scale = e.attention_efficiency_scale
        self.attn_flop_rate = p.attention.prefill_eta * g.peak_flops(attn_dtype) * scale
        # KV read efficiency: key and value may differ; weight by their share of bytes.
        kb = float(bytes_per_element(self.kv.key_dtype))
        vb = float(bytes_per_element(self.kv.value_dtype))
        (ek, self.kv_fit_key), (ev, self.kv_fit_value) = (
            p.attention.kv_efficiency(self.kv.key_dtype),
            p.attention.kv_efficiency(self.kv.value_dtype),
        )
        self.kv_eff = (kb + vb) / (kb / ek + vb / ev)
        self.kv_rate = self.kv_eff * self.mem_rate * scale
        full = self.footprint.full_bytes_per_token_per_rank  # per rank
        dec = attention_flops_per_context_token(self.arch, "decode") / self.tp
        pre = attention_flops_per_context_token(self.arch, "prefill") / self.tp
        # FLOPs per KV byte read (per rank): both scale with the same cached tokens.
        self.decode_flops_per_kv_byte = dec / full if full > 0 else 0.0
        self.prefill_flops_per_kv_byte = pre / full if full > 0 else 0.0
        self.kv_write_bytes_per_token = full
        # Linear FLOPs: 2 per multiplied parameter per token (active_params: lookups excluded,
        # the LM head included once); the LM head (vocab x hidden) only runs for tokens that
        # produce logits.
        a = self.arch
        head = a.token_table_params
        self.body_flops_per_token = 2.0 * max(a.active_params - head, 0) / self.tp
        self.lm_head_flops_per_token = 2.0 * head / self.tp
        # All-reduce: two per layer (after attention and after the MLP).
        self.comm_layers = 2 * a.num_layers if self.tp > 1 else 0
        if self.tp > 1:
            c = p.collectives
            self.comm_bytes_per_token = 2.0 * (self.tp - 1) / self.tp * a.hidden_size * ACTIVATION_BYTES
            self.comm_rate = c.allreduce_bus_bytes_per_s
            self.comm_latency_s = e.allreduce_latency_s if e.allreduce_latency_s is not None else c.allreduce_latency_s
        else:
            self.comm_bytes_per_token, self.comm_rate, self.comm_latency_s = 0.0, 1.0, 0.0
        # Engine terms.
        launch = e.launch
        self.graphs = launch.cuda_graphs
        self.graph_max_batch = launch.graph_max_batch
        self.graph_s = launch.graph_replay_s
        self.eager_floor_s = a.num_layers * launch.per_layer_eager_s
        moe_layers = a.moe.moe_layers if a.moe is not None else 0
        self.layer_fixed_s = a.num_layers * launch.per_layer_gpu_s + moe_layers * launch.per_moe_layer_gpu_s
        self.mixed_in_graph = launch.mixed_in_graph
        self.host_iter_s = e.host.iteration_s * p.host_time_scale
        streamed = e.host.per_streamed_sequence_s if self.streaming else 0.0
        self.host_seq_s = (e.host.per_sequence_s + streamed) * p.host_time_scale
        self.overlap = e.host.overlap
        # Multi-step scheduling (vLLM V0): one scheduler call's host work per window of decode steps.
        self.decode_host_share = 1.0 / e.batching.scheduler_steps
        self.serial_fraction = e.host.serial_fraction
        self._parallel = self.layout is not None and not self.layout.plain
        # Two-batch overlap: only where there is an expert all-to-all to hide (replica_model checks).
        self.tbo = e.two_batch_overlap.enabled and self._parallel
        self.tbo_prefill_sm = e.two_batch_overlap.prefill_comm_sm_fraction
        if self._parallel:
            self._setup_layout()

    def _setup_layout(self) -> None:
        """EP / DP-attention terms (fleetsim.parallel): per-rank expert bytes and FLOPs, the
        all-to-all per MoE layer, all-reduces only inside attention-TP groups."""
        assert self.layout is not None and self.arch.moe is not None
        a, m, lay = self.arch, self.arch.moe, self.layout
        self.expert_bytes = m.params_per_expert * m.moe_layers * float(bytes_per_element(self.weight_dtype))
        self.expert_flops_per_token = 2.0 * m.experts_per_token * m.params_per_expert * m.moe_layers / self.tp
        self.a2a_bytes_per_token = a2a_bytes_per_token(a, lay, ACTIVATION_BYTES)
        self.moe_layers = m.moe_layers
        at = lay.attention_tp
        # Attention all-reduce in every layer and the dense-MLP one in non-MoE layers, over a DP
        # group's share of the tokens, when attention is tensor-split.
        self.comm_layers = (a.num_layers + a.num_layers - m.moe_layers) if at > 1 else 0
        self.comm_bytes_per_token = 2.0 * (at - 1) / at * a.hidden_size * ACTIVATION_BYTES / lay.dp if at > 1 else 0.0
        c = self.profile.collectives
        self.comm_rate = c.allreduce_bus_bytes_per_s
        lat = self.engine.allreduce_latency_s
        self.comm_latency_s = lat if lat is not None else c.allreduce_latency_s

    # ------------------------------------------------------------------ named terms
    def weight_bytes_per_gpu(self, tokens: int) -> float:
        """Weight bytes one iteration streams per GPU (MoE: the experts `tokens` touch)."""
        if self.arch.moe is None:
            tokens = 1
        w = self._weights_cache.get(tokens)
        if w is None:
            w = active_weight_bytes(self.arch, self.weight_dtype, tokens) / self.tp
            if self._parallel:
                assert self.layout is not None
                experts = touched_experts(self.arch, tokens) * self.expert_bytes
                total = w * self.tp
                w = (total - experts) / self.layout.attention_tp + experts / self.tp
            self._weights_cache[tokens] = w
        return w

    def dense_weight_bytes(self, tokens: int) -> float:
        """Weight bytes the GEMMs of one iteration stream: once, or once per micro-batch of two (TBO)."""
        if self.tbo and tokens > 1:
            return 2.0 * self.weight_bytes_per_gpu(-(-tokens // 2))
        return self.weight_bytes_per_gpu(tokens)

    def gpu_overlap_s(self, compute_s: float, comm_s: float, prefill: bool) -> float:
        """Compute and communication of an iteration: in sequence, or overlapped by TBO."""
        if not self.tbo:
            return compute_s + comm_s
        sm = self.tbo_prefill_sm if prefill else 0.0
        return two_batch_overlap_s(compute_s, comm_s, sm, self.moe_layers)

    def moe_imbalance(self, tokens: float) -> float:
        """Busiest expert-parallel rank's load over the mean (1 without EP)."""
        return imbalance_factor(self.arch, self.layout, tokens) if self._parallel and self.layout else 1.0

    def linear_flops(self, tokens: float, logit_tokens: float) -> float:
        return tokens * self.body_flops_per_token + logit_tokens * self.lm_head_flops_per_token

    def dense_time_s(self, tokens: float, logit_tokens: float, prefill_tokens: int = 0, prefill_seqs: int = 0) -> float:
        """The GEMMs of an iteration over `tokens` tokens: weights streamed once against the linear FLOPs."""
        weights = self.dense_weight_bytes(tokens)
        t_mem = (weights + self.mem_half) / self.mem_rate
        flops = self.linear_flops(tokens, logit_tokens)
        if self._parallel:
            flops += self.busiest_rank_extra_flops(tokens, prefill_tokens, prefill_seqs)
        t_cmp = (flops + self.flop_half) / self.flop_rate
        return max(t_mem, t_cmp)

    def busiest_rank_extra_flops(self, tokens: float, prefill_tokens: int = 0, prefill_seqs: int = 0) -> float:
        """GEMM FLOPs the busiest rank does above the mean (EP/DP layouts): its extra share of the
        expert work (MoE imbalance) and, with DP attention, of a prefill: a request's tokens run the
        attention projections and dense layers on the one DP rank that holds it."""
        extra = (self.moe_imbalance(tokens) - 1.0) * tokens * self.expert_flops_per_token
        skew = self.dp_prefill_skew(prefill_tokens, prefill_seqs)
        if skew > 1.0:
            extra += (skew - 1.0) * prefill_tokens * (self.body_flops_per_token - self.expert_flops_per_token)
        return extra

    def dp_prefill_skew(self, prefill_tokens: int, prefill_seqs: int) -> float:
        """Busiest DP rank's prefill tokens over the mean: dp / min(prefill sequences, dp), each
        request on one rank (1 without DP attention or prefill)."""
        if not self._parallel or not prefill_tokens or self.layout is None or self.layout.dp <= 1:
            return 1.0
        return self.layout.dp / min(max(prefill_seqs, 1), self.layout.dp)

    def comm_time_s(self, tokens: float) -> float:
        if self._parallel:
            return self.all_reduce_s(tokens) + self.all_to_all_s(tokens)
        if not self.comm_layers:
            return 0.0
        return self.comm_layers * (self.comm_latency_s + tokens * self.comm_bytes_per_token / self.comm_rate)

    def all_reduce_s(self, tokens: float) -> float:
        """Tensor-parallel all-reduces of an iteration (EP/DP layout: inside attention-TP groups)."""
        if not self.comm_layers:
            return 0.0
        return self.comm_layers * (self.comm_latency_s + tokens * self.comm_bytes_per_token / self.comm_rate)

    def all_to_all_s(self, tokens: float) -> float:
        """Expert-parallel dispatch + combine, two all-to-alls per MoE layer (0 without EP)."""
        if not self._parallel or not self.a2a_bytes_per_token:
            return 0.0
        if self.internode is not None:
            return self.moe_layers * self.internode.layer_s(self.moe_imbalance(tokens) * tokens)
        per_way = self.moe_imbalance(tokens) * tokens * self.a2a_bytes_per_token / self.comm_rate
        return 2 * self.moe_layers * (self.comm_latency_s + per_way)

    def host_time_s(self, sequences: int, decode_only: bool = False) -> float:
        """Host time of an iteration of `sequences` running sequences (a decode-only iteration under
        multi-step scheduling: its share of the window's)."""
        host = self.host_iter_s + self.host_seq_s * sequences
        return host * self.decode_host_share if decode_only else host

    def _graph(self, decode_seqs: int, prefill_tokens: int) -> bool:
        if not self.graphs:
            return False
        if prefill_tokens and not self.mixed_in_graph:
            return False
        return decode_seqs + prefill_tokens <= self.graph_max_batch

    def iteration_time_s(self, gpu_s: float, sequences: int, graph: bool, decode_only: bool = False) -> float:
        """An iteration's time from its GPU kernel time: fixed per-layer kernels, graph replay or the eager
        launch floor, then host time (overlapped or not) for `sequences` running sequences (host_time_s)."""
        gpu_s += self.layer_fixed_s
        gpu_s = gpu_s + self.graph_s if graph else max(gpu_s, self.eager_floor_s)
        host = self.host_time_s(sequences, decode_only)
        if not self.overlap:
            return host + gpu_s
        k = self.serial_fraction
        return max(host + k * gpu_s, gpu_s + k * host)

    def breakdown(
        self,
        decode_seqs: int,
        kv_read_bytes: float,
        prefill_tokens: int = 0,
        prefill_pair_bytes: float = 0.0,
        prefill_seqs: int = 0,
    ) -> dict[str, float]:
        """The named terms of one iteration, in seconds (what `iteration` adds up)."""
        tokens = decode_seqs + prefill_tokens
        logits = decode_seqs + (prefill_seqs or (1 if prefill_tokens else 0))
        ctx = prefill_pair_bytes / prefill_tokens if prefill_tokens else 0.0
        write = tokens * self.kv_write_bytes_per_token
        dec_flops = self.decode_flops_per_kv_byte * kv_read_bytes
        pre_flops = self.prefill_flops_per_kv_byte * prefill_pair_bytes
        skew = self.dp_prefill_skew(prefill_tokens, prefill_seqs)
        ctx, pre_flops = ctx * skew, pre_flops * skew
        terms = {
            "dense_s": self.dense_time_s(tokens, logits, prefill_tokens, prefill_seqs) if tokens else 0.0,
            "attention_decode_s": max(kv_read_bytes / self.kv_rate, dec_flops / self.attn_flop_rate),
            "attention_prefill_s": max(ctx / self.kv_rate, pre_flops / self.attn_flop_rate) if prefill_tokens else 0.0,
            "kv_write_s": write / self.mem_rate,
            "comm_s": self.comm_time_s(tokens) if tokens else 0.0,
        }
        gpu = sum(terms.values())
        if self.tbo and tokens:
            in_sequence = gpu
            gpu = self.gpu_overlap_s(gpu - terms["comm_s"], terms["comm_s"], bool(prefill_tokens))
            terms["tbo_hidden_s"] = in_sequence - gpu
        terms["layer_fixed_s"] = self.layer_fixed_s if tokens else 0.0
        graph = self._graph(decode_seqs, prefill_tokens)
        terms["launch_s"] = self.graph_s if graph else max(self.eager_floor_s - gpu - self.layer_fixed_s, 0.0)
        terms["host_s"] = self.host_time_s(decode_seqs + prefill_seqs, not prefill_tokens)
        terms["overlap"] = float(self.overlap)
        terms["time_s"] = (
            self.iteration_time_s(gpu, decode_seqs + prefill_seqs, graph, not prefill_tokens) if tokens else 0.0
        )
        return terms

    def iteration(
        self,
        decode_seqs: int,
        kv_read_bytes: float,
        prefill_tokens: int = 0,
        prefill_pair_bytes: float = 0.0,
        prefill_seqs: int = 0,
    ) -> StepCost:
        """One iteration: decode_seqs tokens of decode reading kv_read_bytes (per GPU) of cache,
        plus prefill_tokens of prefill (from prefill_seqs sequences) whose attention touches
        prefill_pair_bytes (per GPU, sum over prefill query tokens of the KV bytes each attends to)."""
        tokens = decode_seqs + prefill_tokens
        if tokens == 0:
            return StepCost(0.0, 0.0, 0.0)
        if prefill_tokens and not prefill_seqs:
            prefill_seqs = 1
        if self.clock is not None or self._parallel:
            return self._roofline(decode_seqs, kv_read_bytes, prefill_tokens, prefill_pair_bytes, prefill_seqs)[1]
        logits, weights, ctx, write, dec_flops, pre_flops = self._work(
            decode_seqs, kv_read_bytes, prefill_tokens, prefill_pair_bytes, prefill_seqs
        )
        gpu = (
            self.dense_time_s(tokens, logits)
            + max(kv_read_bytes / self.kv_rate, dec_flops / self.attn_flop_rate)
            + (max(ctx / self.kv_rate, pre_flops / self.attn_flop_rate) if prefill_tokens else 0.0)
            + write / self.mem_rate
            + self.comm_time_s(tokens)
        )
        graph = self._graph(decode_seqs, prefill_tokens)
        t = self.iteration_time_s(gpu, decode_seqs + prefill_seqs, graph, not prefill_tokens)
        flops = self.linear_flops(tokens, logits) + dec_flops + pre_flops
        return StepCost(t, flops, weights + kv_read_bytes + ctx + write)

    def _work(self, decode_seqs, kv_read_bytes, prefill_tokens, prefill_pair_bytes, prefill_seqs):
        """(logit tokens, weight bytes, context bytes per prefill token, KV bytes written, decode and
        prefill attention FLOPs) of an iteration."""
        tokens = decode_seqs + prefill_tokens
        weights = self.weight_bytes_per_gpu(tokens)
        ctx = prefill_pair_bytes / prefill_tokens if prefill_tokens else 0.0
        write = tokens * self.kv_write_bytes_per_token
        dec_flops = self.decode_flops_per_kv_byte * kv_read_bytes
        pre_flops = self.prefill_flops_per_kv_byte * prefill_pair_bytes
        return decode_seqs + prefill_seqs, weights, ctx, write, dec_flops, pre_flops

    # ------------------------------------------------------------------ under a clock setting
    def _roofline(self, decode_seqs, kv_read_bytes, prefill_tokens, prefill_pair_bytes, prefill_seqs):
        """(clock fraction, StepCost, dense (memory, compute-at-boost) times) of an iteration under
        the clock setting (s = 1 without one: EP/DP layouts) and the busiest rank of an EP/DP
        layout: each roofline term max(memory time, compute time / s), the rest unscaled."""
        tokens = decode_seqs + prefill_tokens
        logits, weights, ctx, write, dec_flops, pre_flops = self._work(
            decode_seqs, kv_read_bytes, prefill_tokens, prefill_pair_bytes, prefill_seqs
        )
        flops = self.linear_flops(tokens, logits) + dec_flops + pre_flops
        moved = weights + kv_read_bytes + ctx + write
        busiest = 0.0
        skew = 1.0
        if self._parallel:
            busiest = self.busiest_rank_extra_flops(tokens, prefill_tokens, prefill_seqs)
            skew = self.dp_prefill_skew(prefill_tokens, prefill_seqs)
        if self.tbo:
            streamed = self.dense_weight_bytes(tokens)
            moved += streamed - weights
            weights = streamed
        dense = (
            (weights + self.mem_half) / self.mem_rate,
            (self.linear_flops(tokens, logits) + busiest + self.flop_half) / self.flop_rate,
        )
        pairs = [dense, (kv_read_bytes / self.kv_rate, dec_flops / self.attn_flop_rate)]
        if prefill_tokens:
            pairs.append((ctx * skew / self.kv_rate, pre_flops * skew / self.attn_flop_rate))
        write_s, comm = write / self.mem_rate, self.comm_time_s(tokens)
        fixed = write_s + comm
        seqs, graph = decode_seqs + prefill_seqs, self._graph(decode_seqs, prefill_tokens)

        def time_at(s: float) -> float:
            compute = sum(max(m, c / s) for m, c in pairs)
            if self.tbo:
                gpu = self.gpu_overlap_s(compute + write_s, comm, bool(prefill_tokens))
                return self.iteration_time_s(gpu, seqs, graph, not prefill_tokens)
            return self.iteration_time_s(compute + fixed, seqs, graph, not prefill_tokens)

        s = 1.0 if self.clock is None else self.clock.clock_for(time_at, flops, moved, self.peak_flops, self.bw)
        return s, StepCost(time_at(s), flops, moved), dense

    def clock_fraction(self, decode_seqs: int, kv_read_bytes: float, *prefill) -> float:
        """SM clock (fraction of boost) an iteration (`iteration`'s arguments) runs at: 1 without a
        power limit or clock lock."""
        prefill_tokens, pair_bytes, prefill_seqs = (tuple(prefill) + (0, 0.0, 0)[len(prefill) :])[:3]
        if self.clock is None or decode_seqs + prefill_tokens == 0:
            return 1.0
        prefill_seqs = prefill_seqs or (1 if prefill_tokens else 0)
        return self._roofline(decode_seqs, kv_read_bytes, prefill_tokens, pair_bytes, prefill_seqs)[0]

    # ------------------------------------------------------------------ decode-only runs
    def decode_fixed_s(self, n: int, dense_s: float | None = None) -> float:
        """The part of a decode step of n sequences that does not grow with the KV read: the dense
        GEMMs (dense_s when given: a clocked figure), the KV write, the all-reduce and the fixed
        per-layer kernels."""
        dense = self.dense_time_s(n, n) if dense_s is None else dense_s
        return dense + n * self.kv_write_bytes_per_token / self.mem_rate + self.comm_time_s(n) + self.layer_fixed_s

    def decode_run_lines(self, decode_seqs: int, kv_read_bytes0: float, kv_growth_per_step: float):
        """Consecutive decode-only iterations of `decode_seqs` sequences whose KV read grows by
        kv_growth_per_step bytes per iteration, as lines in the step index j: t_j is the maximum
        of the returned (a, b) lines a + b j; FLOPs are f0 + f1 j and bytes m0 + m1 j. Lets a run
        of any length be summed in closed form (fleetsim.sim.decode_run). Under a power limit the
        run keeps the clock of its first iteration."""
        n = decode_seqs
        if self.clock is not None:
            return self._clocked_decode_run_lines(n, kv_read_bytes0, kv_growth_per_step)
        terms = self._decode_terms.get(n)
        if terms is None:
            terms = self._decode_terms[n] = self._decode_run_terms(n)
        fixed, host, lin, weights, write, q, graph, dense = terms
        mem = (kv_read_bytes0 / self.kv_rate, kv_growth_per_step / self.kv_rate)
        cmp = (kv_read_bytes0 * q, kv_growth_per_step * q)
        lines = self._run_lines(n, dense, graph, fixed, host, mem, cmp)
        return lines, *self._run_work(lin, weights, write, kv_read_bytes0, kv_growth_per_step)

    def _decode_run_terms(self, n: int) -> tuple[float, float, float, float, float, float, bool, float]:
        """The parts of decode_run_lines that depend on n alone (at boost clocks): cached per n, as
        a run is planned at every batch change (the model is not changed once built)."""
        dense = self.dense_time_s(n, n)
        fixed = self.decode_fixed_s(n, dense)
        q = self.decode_flops_per_kv_byte / self.attn_flop_rate
        weights = self.dense_weight_bytes(n)
        write = n * self.kv_write_bytes_per_token
        return fixed, self.host_time_s(n, True), self.linear_flops(n, n), weights, write, q, self._graph(n, 0), dense

    def _clocked_decode_run_lines(self, n: int, kv_read_bytes0: float, kv_growth_per_step: float):
        """decode_run_lines under a clock setting: the first iteration's clock fraction scales the
        compute-bound terms."""
        weights = self.dense_weight_bytes(n)
        write = n * self.kv_write_bytes_per_token
        s, _, (m, c) = self._roofline(n, kv_read_bytes0, 0, 0.0, 0)
        dense = self.dense_time_s(n, n) if s == 1.0 else max(m, c / s)
        fixed = self.decode_fixed_s(n, dense)
        mem = (kv_read_bytes0 / self.kv_rate, kv_growth_per_step / self.kv_rate)
        q = self.decode_flops_per_kv_byte / self.attn_flop_rate / s
        cmp = (kv_read_bytes0 * q, kv_growth_per_step * q)
        lines = self._run_lines(n, dense, self._graph(n, 0), fixed, self.host_time_s(n, True), mem, cmp)
        return lines, *self._run_work(self.linear_flops(n, n), weights, write, kv_read_bytes0, kv_growth_per_step)

    def _run_lines(self, n: int, dense: float, graph: bool, fixed: float, host: float, mem: tuple, cmp: tuple):
        """The step-time lines of a decode run of n sequences from its dense time, whether it runs
        as a CUDA graph, its fixed part, host time and the memory- and compute-bound attention lines."""
        if self.tbo:
            gpu = self._overlapped_decode_lines(n, dense, mem, cmp)
        else:
            gpu = [(fixed + mem[0], mem[1]), (fixed + cmp[0], cmp[1])]
        if graph:
            gpu = [(a + self.graph_s, b) for a, b in gpu]
        elif self.eager_floor_s > 0:
            gpu.append((self.eager_floor_s, 0.0))
        if self.overlap:
            # max(host + k gpu, gpu + k host) with gpu = max of lines: the max of both line sets.
            k = self.serial_fraction
            k_host = k * host
            lines = [(host + k * a, k * b) for a, b in gpu]
            lines.extend([(a + k_host, b) for a, b in gpu])
            return lines
        return [(a + host, b) for a, b in gpu]

    def _run_work(self, lin: float, weights: float, write: float, kv0: float, growth: float):
        """(f0, f1, m0, m1): a decode run's FLOPs f0 + f1 j and bytes m0 + m1 j per step."""
        dfk = self.decode_flops_per_kv_byte
        return lin + dfk * kv0, dfk * growth, weights + kv0 + write, growth

    def _overlapped_decode_lines(self, n: int, dense: float, mem: tuple, cmp: tuple) -> list[tuple[float, float]]:
        """decode_run_lines' GPU lines under two-batch overlap: max(all-to-all, compute) plus the fill
        (gpu_overlap_s with no SMs held: DeepEP's decode kernels), the fill taken at the run's first step."""
        comm = self.comm_time_s(n)
        compute = dense + n * self.kv_write_bytes_per_token / self.mem_rate
        first = compute + max(mem[0], cmp[0])
        fixed = self.layer_fixed_s + overlap_fill_s(first, comm, self.moe_layers)
        return [(comm + fixed, 0.0), (compute + mem[0] + fixed, mem[1]), (compute + cmp[0] + fixed, cmp[1])]

    def decode_run(self, decode_seqs: int, kv_read_bytes0: float, kv_growth_per_step: float, steps: int):
        """Times, FLOPs and bytes of `steps` consecutive decode-only iterations, per step (numpy)."""
        lines, f0, f1, m0, m1 = self.decode_run_lines(decode_seqs, kv_read_bytes0, kv_growth_per_step)
        j = np.arange(steps, dtype=np.float64)
        t = np.max(np.stack([a + b * j for a, b in lines]), axis=0)
        return t, f0 + f1 * j, m0 + m1 * j
