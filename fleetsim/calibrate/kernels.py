"""The kernels the calibration measures: what each computes, the work it does, and the grid.

The case descriptions, the calibration grid and the work accounting (FLOPs, bytes, the KV bytes
the memory model predicts) are plain Python: the fit and the tests use them without torch. The
torch versions of the kernels are in fleetsim.calibrate.torch_kernels.

The work of a case is counted the way the simulator counts it (fleetsim.perf), not the way a
particular implementation happens to move bytes: decode attention reads every KV byte of every
sequence once, plus the query, the output and the block table; decode-attention FLOPs are the
step model's 4 x q_heads x head_dim per cached token (MLA: 2 x q_heads x (latent + rope +
latent)), prefill attention's the causal half of 2 x S^2 x (head_dim + value_dim) per head. The
torch implementations are reference kernels (gather -> unpack/convert -> scale -> matmul): they
move more bytes than a fused paged-attention kernel, and the fit says so (calibration/README.md).

KV precisions stored: bf16; fp8 (float8_e4m3fn, one per-tensor scale); int8 (one per-tensor
scale); int4 (two values per byte, offset-8 nibbles, low nibble first, one 16-bit scale per group
of 128 values along the head dimension: 4 + 16/128 = 4.125 bits, as fleetsim.precision counts).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from fleetsim.precision import bytes_per_element

BLOCK_SIZE = 16  # tokens per paged KV block (vLLM's default)
INT4_GROUP = 128  # values per int4 scale
KV_DTYPES = ("bf16", "fp8", "int8", "int4")
GEMM_DTYPES = ("bf16", "fp8")
FP8_M_MULTIPLE = 16  # torch._scaled_mm wants dimensions that are multiples of 16


@dataclass(frozen=True)
class AttentionLayout:
    """Heads and widths of one attention layer, as the KV memory model sees it."""

    name: str
    q_heads: int
    kv_heads: int
    head_dim: int  # width of a cached key per KV head; MLA: kv_lora_rank + rope dim
    value_dim: int  # width of a value (MLA: the latent part of the cached vector)
    mla: bool = False

    @property
    def group(self) -> int:
        return self.q_heads // self.kv_heads

    def kv_bytes_per_token(self, kv_dtype: str) -> float:
        """Bytes one token adds to one layer's cache (the memory model's formula)."""
        element = float(bytes_per_element(kv_dtype))
        if self.mla:  # one latent (+ rope key) per token, no K/V pair
            return self.head_dim * element
        return self.kv_heads * self.head_dim * 2 * element


LAYOUTS: dict[str, AttentionLayout] = {
    # Llama-2-7B-like MHA; Llama-3-8B GQA (group 4); Llama-3-70B GQA (group 8, 64 q heads);
    # DeepSeek-V3 MLA in absorbed-weights form: 128 heads over a 512 latent + 64 rope key.
    "mha": AttentionLayout("mha", q_heads=32, kv_heads=32, head_dim=128, value_dim=128),
    "gqa4": AttentionLayout("gqa4", q_heads=32, kv_heads=8, head_dim=128, value_dim=128),
    "gqa8": AttentionLayout("gqa8", q_heads=64, kv_heads=8, head_dim=128, value_dim=128),
    "mla": AttentionLayout("mla", q_heads=128, kv_heads=1, head_dim=576, value_dim=512, mla=True),
}
PREFILL_LAYOUTS = ("mha", "gqa4", "gqa8")  # MLA prefill runs in the non-absorbed form: not here


@dataclass(frozen=True)
class KernelCase:
    """One kernel at one shape and precision, with the work the simulator counts for it."""

    kernel: str  # decode_attention | kv_append | prefill_attention | gemm | launch | idle
    family: str  # decode_attention | kv_append | prefill_attention | gemm_decode | gemm_prefill | launch | idle
    layout: str = ""
    kv_dtype: str = ""
    compute_dtype: str = "bf16"
    batch: int = 0
    context_tokens: int = 0
    new_tokens: int = 0
    q_heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    m: int = 0
    n: int = 0
    k: int = 0
    flops: float = 0.0
    bytes: float = 0.0
    bytes_kv: float = 0.0  # the part of `bytes` that is KV-cache reads
    mem_predicted_bytes: float = 0.0  # cache bytes the KV memory model predicts for this case
    energy: bool = False  # also measure energy windows
    tag: str = ""  # distinguishes repeated cases (idle at start and at end)

    @property
    def case_id(self) -> str:
        parts = [self.kernel]
        if self.kernel in ("decode_attention", "kv_append"):
            parts += [self.layout, self.kv_dtype, f"b{self.batch}", f"ctx{self.context_tokens}"]
            if self.kernel == "kv_append":
                parts.append(f"new{self.new_tokens}")
        elif self.kernel == "prefill_attention":
            parts += [self.layout, f"b{self.batch}", f"s{self.context_tokens}"]
        elif self.kernel == "gemm":
            parts += [self.compute_dtype, f"m{self.m}", f"k{self.k}", f"n{self.n}"]
        if self.tag:
            parts.append(self.tag)
        return "/".join(parts)

    def row(self) -> dict:
        """The descriptive and work columns of this case's sample rows."""
        row = asdict(self)
        row.pop("energy")
        row.pop("tag")
        row["case_id"] = self.case_id
        if not self.mem_predicted_bytes:  # no KV cache in this case
            row["mem_predicted_bytes"] = float("nan")
        return row


# ---------------------------------------------------------------------------------------------
# Cases and their work


def blocks_per_sequence(tokens: int) -> int:
    return max(1, math.ceil(tokens / BLOCK_SIZE))


def decode_attention_case(layout: str, kv_dtype: str, batch: int, context_tokens: int) -> KernelCase:
    """One decode step of one layer: each of `batch` queries attends to its whole paged context."""
    lay = LAYOUTS[layout]
    blocks = batch * blocks_per_sequence(context_tokens)
    bytes_kv = batch * context_tokens * lay.kv_bytes_per_token(kv_dtype)
    io = batch * lay.q_heads * (lay.head_dim + lay.value_dim) * 2  # bf16 query in, output out
    table = blocks * 8  # int64 block table
    flops = 2.0 * batch * lay.q_heads * context_tokens * (lay.head_dim + lay.value_dim)
    return KernelCase(
        kernel="decode_attention",
        family="decode_attention",
        layout=layout,
        kv_dtype=kv_dtype,
        compute_dtype="bf16",
        batch=batch,
        context_tokens=context_tokens,
        q_heads=lay.q_heads,
        kv_heads=lay.kv_heads,
        head_dim=lay.head_dim,
        flops=flops,
        bytes=bytes_kv + io + table,
        bytes_kv=bytes_kv,
        mem_predicted_bytes=blocks * BLOCK_SIZE * lay.kv_bytes_per_token(kv_dtype),
    )


def kv_append_case(layout: str, kv_dtype: str, batch: int, new_tokens: int, context_tokens: int) -> KernelCase:
    """Quantize and scatter `new_tokens` per sequence into a paged cache of `context_tokens`."""
    lay = LAYOUTS[layout]
    tokens = batch * new_tokens
    blocks = batch * blocks_per_sequence(context_tokens + new_tokens)
    written = tokens * lay.kv_bytes_per_token(kv_dtype)
    read = tokens * lay.kv_bytes_per_token("bf16")  # the new K/V (or latent) arrive in bf16
    return KernelCase(
        kernel="kv_append",
        family="kv_append",
        layout=layout,
        kv_dtype=kv_dtype,
        compute_dtype="bf16",
        batch=batch,
        context_tokens=context_tokens,
        new_tokens=new_tokens,
        q_heads=lay.q_heads,
        kv_heads=lay.kv_heads,
        head_dim=lay.head_dim,
        flops=0.0,
        bytes=written + read + tokens * 8,  # + int64 slot indices
        bytes_kv=0.0,
        mem_predicted_bytes=blocks * BLOCK_SIZE * lay.kv_bytes_per_token(kv_dtype),
    )


def prefill_attention_case(layout: str, batch: int, seq_tokens: int) -> KernelCase:
    """Causal self-attention over a whole prompt (scaled_dot_product_attention), bf16."""
    lay = LAYOUTS[layout]
    width = lay.head_dim + lay.value_dim
    flops = float(batch) * lay.q_heads * seq_tokens * seq_tokens * width  # causal: half of 2*S^2*width
    bytes_ = 2.0 * batch * seq_tokens * (lay.q_heads + lay.kv_heads) * width
    return KernelCase(
        kernel="prefill_attention",
        family="prefill_attention",
        layout=layout,
        kv_dtype="bf16",
        compute_dtype="bf16",
        batch=batch,
        context_tokens=seq_tokens,
        q_heads=lay.q_heads,
        kv_heads=lay.kv_heads,
        head_dim=lay.head_dim,
        flops=flops,
        bytes=bytes_,
    )


def gemm_case(m: int, k: int, n: int, dtype: str, family: str) -> KernelCase:
    """Activations (m x k) times a weight (k x n); bf16 output. m is the batch of tokens."""
    element = 1 if dtype == "fp8" else 2
    return KernelCase(
        kernel="gemm",
        family=family,
        compute_dtype=dtype,
        m=m,
        n=n,
        k=k,
        flops=2.0 * m * n * k,
        bytes=float((m * k + k * n) * element + m * n * 2),
    )


def launch_case(tag: str = "") -> KernelCase:
    """A one-element kernel: the launch floor, the fixed time of one kernel call. The fit takes it
    off every one-kernel case; it is not a GPU-profile term (launch cost is an engine term)."""
    return KernelCase(kernel="launch", family="launch", compute_dtype="", bytes=0.0, tag=tag)


def idle_case(tag: str) -> KernelCase:
    """No work at all: the GPU's power at rest (energy windows only)."""
    return KernelCase(kernel="idle", family="idle", compute_dtype="", energy=True, tag=tag)


# ---------------------------------------------------------------------------------------------
# The grid


@dataclass(frozen=True)
class GridSpec:
    decode_batches: tuple[int, ...]
    decode_contexts: tuple[int, ...]
    kv_budget_bytes: float  # largest cache a decode case may allocate (bf16-equivalent)
    append_layouts: tuple[str, ...]
    append_shapes: tuple[tuple[int, int], ...]  # (batch, new tokens per sequence)
    append_context: int
    prefill_layouts: tuple[str, ...]
    prefill_seqs: tuple[int, ...]
    gemm_shapes: tuple[tuple[int, int], ...]  # (k, n) weight shapes
    gemm_decode_m: tuple[int, ...]
    gemm_prefill_m: tuple[int, ...]
    energy_gemm_shape: tuple[int, int]
    energy_decode_per_group: int  # energy on the largest N decode cases per (layout, kv dtype)
    energy_decode_dtypes: tuple[str, ...]
    energy_prefill_layouts: tuple[str, ...]


GiB = 1024**3

QUICK_GRID = GridSpec(
    decode_batches=(1, 16, 64),
    decode_contexts=(1024, 8192),
    kv_budget_bytes=2 * GiB,
    append_layouts=("gqa4", "mla"),
    append_shapes=((1, 1), (64, 1), (1, 2048)),
    append_context=4096,
    prefill_layouts=("mha", "gqa4"),
    prefill_seqs=(1024, 4096),
    gemm_shapes=((8192, 8192), (4096, 14336)),  # the energy shape first
    gemm_decode_m=(1, 16, 64, 256),
    gemm_prefill_m=(512, 2048, 8192),
    energy_gemm_shape=(8192, 8192),
    energy_decode_per_group=1,
    energy_decode_dtypes=("bf16", "int4"),
    energy_prefill_layouts=("gqa4",),
)

FULL_GRID = GridSpec(
    decode_batches=(1, 4, 16, 64, 256),
    decode_contexts=(512, 2048, 8192, 32768),
    kv_budget_bytes=8 * GiB,
    append_layouts=("mha", "gqa4", "gqa8", "mla"),
    append_shapes=((1, 1), (16, 1), (256, 1), (1, 512), (1, 4096)),
    append_context=4096,
    prefill_layouts=PREFILL_LAYOUTS,
    prefill_seqs=(512, 1024, 2048, 4096, 8192, 16384),
    gemm_shapes=((8192, 8192), (4096, 4096), (4096, 14336), (8192, 28672), (14336, 4096)),
    gemm_decode_m=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    gemm_prefill_m=(512, 1024, 2048, 4096, 8192),
    energy_gemm_shape=(8192, 8192),
    energy_decode_per_group=2,
    energy_decode_dtypes=KV_DTYPES,
    energy_prefill_layouts=("gqa4",),
)


def calibration_grid(quick: bool) -> list[KernelCase]:
    """Every case of a calibration run, in the order the harness measures them.

    Idle windows come first (a rested GPU) and last (after load); the launch floor is measured
    at the start, in the middle and at the end (its median is the fixed time of one kernel call;
    the spread shows drift). What every fitted term needs comes first, so that a run cut short
    (a time budget, Ctrl-C) still fits: GEMMs (memory and compute curves, power), then prefill
    attention, then decode attention per layout and KV precision; KV append (reported, not
    fitted) last.
    """
    spec = QUICK_GRID if quick else FULL_GRID
    cases: list[KernelCase] = [idle_case("start"), launch_case("start")]

    for k, n in spec.gemm_shapes:
        energy = (k, n) == spec.energy_gemm_shape
        for dtype in GEMM_DTYPES:
            for m in spec.gemm_decode_m:
                cases.append(_maybe_energy(gemm_case(m, k, n, dtype, "gemm_decode"), energy))
            for m in spec.gemm_prefill_m:
                cases.append(_maybe_energy(gemm_case(m, k, n, dtype, "gemm_prefill"), energy))

    for layout in spec.prefill_layouts:
        group = [prefill_attention_case(layout, 1, seq) for seq in spec.prefill_seqs]
        if layout in spec.energy_prefill_layouts:
            group[-1] = _with_energy(group[-1])
        cases += group

    cases.append(launch_case("mid"))
    for layout in LAYOUTS:
        lay = LAYOUTS[layout]
        for kv_dtype in KV_DTYPES:
            group = [
                decode_attention_case(layout, kv_dtype, batch, ctx)
                for batch in spec.decode_batches
                for ctx in spec.decode_contexts
                if batch * ctx * lay.kv_bytes_per_token("bf16") <= spec.kv_budget_bytes
            ]
            if kv_dtype in spec.energy_decode_dtypes:
                largest = sorted(group, key=lambda c: c.bytes_kv)[-spec.energy_decode_per_group :]
                group = [_with_energy(c) if c in largest else c for c in group]
            cases += group

    for layout in spec.append_layouts:
        per_token = LAYOUTS[layout].kv_bytes_per_token("bf16")
        for kv_dtype in KV_DTYPES:
            for batch, new in spec.append_shapes:
                if batch * (spec.append_context + new) * per_token <= spec.kv_budget_bytes:
                    cases.append(kv_append_case(layout, kv_dtype, batch, new, spec.append_context))

    cases += [launch_case("end"), idle_case("end")]
    return cases


def _with_energy(case: KernelCase) -> KernelCase:
    return replace(case, energy=True)


def _maybe_energy(case: KernelCase, energy: bool) -> KernelCase:
    return _with_energy(case) if energy else case
