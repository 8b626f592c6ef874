"""Step time of one scheduler iteration of a replica: a roofline per kind of kernel, with
calibrated efficiencies.

  t = overhead + t_dense + t_attention + tp_comm
  t_dense     = max(linear_flops / (eta_c * peak_flops[dtype]), weight_bytes / (eta_m * hbm_bw))
  t_attention = max(attention_flops / (eta_c * peak_flops[dtype]), (kv_read + kv_write) / (eta_m * hbm_bw))

per GPU of a tensor-parallel group (each rank does 1/tp of the FLOPs and reads 1/tp of the
weights and its own KV shard); the profile's half_work latency terms belong to the dense part.
The dense (GEMM) kernels and the attention kernels run one after the other, so their times add:
a large decode batch whose GEMMs are compute-bound still streams its whole KV cache in the
attention kernels afterwards. (Wherever both parts are bound by the same resource this equals
the whole-iteration roofline max(flops, bytes).) Decode bytes = weights read (MoE: the experts
the batch touches) + the KV of every running sequence + the KV written. Attention FLOPs are
proportional to KV bytes read for a homogeneous architecture, so they are carried as
flops-per-KV-byte.

Attention kernels (decode and prefill) run at the profile's kv_read_efficiency for the KV
precision relative to the dense kernels: it divides the KV bytes on the memory side (decode
attention streams the cache) and the attention FLOPs on the compute side (prefill attention is
compute-bound), so a stack whose attention is slow shows it in both phases. With an efficiency of
1 (bf16 in current stacks) attention runs exactly at the dense kernels' rates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fleetsim.memory import KvFootprint, active_weight_bytes
from fleetsim.precision import bytes_per_element, compute_dtype
from fleetsim.spec.architecture import Architecture, AttentionLayers, MLALayers
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.kvcache import KvCacheSpec
from fleetsim.spec.profile import CalibrationProfile


def attention_flops_per_context_token(arch: Architecture) -> float:
    """FLOPs one query token spends attending to one cached token, summed over layers (all ranks).
    GQA/MHA: QK^T and PV, 2 multiply-adds each per head-dim element: 4 * q_heads * head_dim.
    MLA (absorbed weights): scores over kv_lora_rank + rope, values over kv_lora_rank."""
    total = 0.0
    for g in arch.layers:
        if isinstance(g, AttentionLayers):
            total += g.count * 4 * g.q_heads * g.head_dim
        elif isinstance(g, MLALayers):
            total += g.count * 2 * g.q_heads * (2 * g.kv_lora_rank + g.qk_rope_head_dim)
    return total


@dataclass(frozen=True)
class StepCost:
    time_s: float
    flops: float  # per GPU
    bytes: float  # per GPU


@dataclass
class StepModel:
    """Compiled per (architecture, GPU, profile, tp, precisions): evaluates iterations fast."""

    arch: Architecture
    gpu: GpuSpec
    profile: CalibrationProfile
    tp: int
    weight_dtype: str
    kv: KvCacheSpec
    footprint: KvFootprint
    _weights_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        p = self.profile
        self.peak_flops = self.gpu.peak_flops(compute_dtype(self.weight_dtype))
        self.bw = self.gpu.hbm_bandwidth_bytes_per_s
        self.mem_rate = p.memory.eta_max * self.bw  # bytes/s achieved
        self.flop_rate = p.compute.eta_max * self.peak_flops
        self.mem_half = p.memory.half_work
        self.flop_half = p.compute.half_work
        # KV read efficiency: key and value may differ; weight by their share of bytes.
        kb = float(bytes_per_element(self.kv.key_dtype))
        vb = float(bytes_per_element(self.kv.value_dtype))
        ek, ev = p.kv_efficiency(self.kv.key_dtype), p.kv_efficiency(self.kv.value_dtype)
        self.kv_eff = (kb + vb) / (kb / ek + vb / ev)
        self.attn_flop_scale = 1.0 / self.kv_eff  # attention FLOPs cost this many GEMM FLOPs
        full = self.footprint.full_bytes_per_token_per_rank  # per rank
        # FLOPs per KV byte read (per rank): both scale with the same cached tokens.
        attn = attention_flops_per_context_token(self.arch) / self.tp
        self.flops_per_kv_byte = attn / full if full > 0 else 0.0
        self.kv_write_bytes_per_token = full
        # Linear FLOPs per token: 2 per active parameter (embedding lookups are not matmuls,
        # but the LM head is; the difference is ~1% and inside the calibrated efficiency).
        self.linear_flops_per_token = 2.0 * self.arch.active_params / self.tp
        # All-reduce: two per layer (after attention and after the MLP), ring algorithm.
        self.comm_layers = 2 * self.arch.num_layers if self.tp > 1 else 0
        if self.tp > 1:
            ring = 2.0 * (self.tp - 1) / self.tp
            self.comm_bytes_per_token = ring * self.arch.hidden_size * 2.0
            self.comm_rate = p.tp.link_efficiency * self.gpu.interconnect_bandwidth_bytes_per_s
        else:
            self.comm_bytes_per_token = 0.0
            self.comm_rate = 1.0

    def weight_bytes_per_gpu(self, tokens: int) -> float:
        if self.arch.moe is None:
            tokens = 1
        w = self._weights_cache.get(tokens)
        if w is None:
            w = active_weight_bytes(self.arch, self.weight_dtype, tokens) / self.tp
            self._weights_cache[tokens] = w
        return w

    def comm_time_s(self, tokens: float):
        if not self.comm_layers:
            return 0.0
        return self.comm_layers * (
            self.profile.tp.allreduce_latency_s + tokens * self.comm_bytes_per_token / self.comm_rate
        )

    def dense_time_s(self, tokens: float) -> float:
        """The dense (GEMM) kernels of an iteration over `tokens` tokens: their own roofline,
        weights streamed once against the linear FLOPs (with the profile's latency terms)."""
        weights = self.weight_bytes_per_gpu(tokens)
        t_mem = (weights + self.mem_half) / self.mem_rate
        t_cmp = (tokens * self.linear_flops_per_token + self.flop_half) / self.flop_rate
        return max(t_mem, t_cmp)

    def iteration(
        self, decode_seqs: int, kv_read_bytes: float, prefill_tokens: int = 0, prefill_pair_bytes: float = 0.0
    ) -> StepCost:
        """One iteration: decode_seqs tokens of decode reading kv_read_bytes (per GPU) of cache,
        plus prefill_tokens of prefill whose attention touches prefill_pair_bytes (per GPU,
        sum over prefill query tokens of the KV bytes each attends to)."""
        tokens = decode_seqs + prefill_tokens
        if tokens == 0:
            return StepCost(0.0, 0.0, 0.0)
        weights = self.weight_bytes_per_gpu(tokens)
        kv_bytes = kv_read_bytes + (prefill_tokens and prefill_pair_bytes / max(prefill_tokens, 1))
        write = tokens * self.kv_write_bytes_per_token
        bytes_moved = weights + kv_bytes + write
        linear = tokens * self.linear_flops_per_token
        attn = self.flops_per_kv_byte * (kv_read_bytes + prefill_pair_bytes)
        flops = linear + attn
        # Attention (and the KV-cache write) runs in its own kernels after the GEMMs: its own
        # roofline, added to the dense one rather than overlapped with it.
        t_attn = max((kv_bytes / self.kv_eff + write) / self.mem_rate, attn * self.attn_flop_scale / self.flop_rate)
        t = self.profile.overhead_s + self.dense_time_s(tokens) + t_attn + self.comm_time_s(tokens)
        return StepCost(t, flops, bytes_moved)

    def decode_run(self, decode_seqs: int, kv_read_bytes0: float, kv_growth_per_step: float, steps: int):
        """Times, FLOPs and bytes of `steps` consecutive decode-only iterations whose KV read
        grows by kv_growth_per_step bytes per iteration. Exact per step, vectorised."""
        j = np.arange(steps, dtype=np.float64)
        kv = kv_read_bytes0 + kv_growth_per_step * j
        weights = self.weight_bytes_per_gpu(decode_seqs)
        write = decode_seqs * self.kv_write_bytes_per_token
        bytes_moved = weights + kv + write
        linear = decode_seqs * self.linear_flops_per_token
        attn = self.flops_per_kv_byte * kv
        flops = linear + attn
        t_attn = np.maximum((kv / self.kv_eff + write) / self.mem_rate, attn * self.attn_flop_scale / self.flop_rate)
        t = self.profile.overhead_s + self.dense_time_s(decode_seqs) + t_attn + self.comm_time_s(decode_seqs)
        return t, flops, bytes_moved

    def decode_run_linear(self, decode_seqs: int, kv_read_bytes0: float, kv_growth_per_step: float):
        """The same iterations as decode_run, as linear coefficients in the step index j: the
        fixed part (overhead + all-reduce + the dense kernels, which do not change along a decode
        run), the attention's memory-bound time a_m + b_m j and compute-bound time a_c + b_c j
        (t_j = fixed + max of the two), FLOPs f0 + f1 j and bytes m0 + m1 j. Lets a run of any
        length be summed in closed form (fleetsim.sim.decode_run)."""
        weights = self.weight_bytes_per_gpu(decode_seqs)
        write = decode_seqs * self.kv_write_bytes_per_token
        fixed = self.profile.overhead_s + self.comm_time_s(decode_seqs) + self.dense_time_s(decode_seqs)
        a_m = (kv_read_bytes0 / self.kv_eff + write) / self.mem_rate
        b_m = kv_growth_per_step / self.kv_eff / self.mem_rate
        f0 = decode_seqs * self.linear_flops_per_token + self.flops_per_kv_byte * kv_read_bytes0
        f1 = self.flops_per_kv_byte * kv_growth_per_step
        a_c = self.flops_per_kv_byte * kv_read_bytes0 * self.attn_flop_scale / self.flop_rate
        b_c = f1 * self.attn_flop_scale / self.flop_rate
        m0 = weights + kv_read_bytes0 + write
        m1 = kv_growth_per_step
        return fixed, a_m, b_m, a_c, b_c, f0, f1, m0, m1
