"""The kernels the calibration measures: what each computes, the work it does, and a torch version.

The case descriptions, the calibration grid and the work accounting (FLOPs, bytes, the KV bytes
the memory model predicts) are plain Python: the fit and the tests use them without torch.
`build` turns a case into a callable on a CUDA device; it receives the torch module, so this
module never imports torch itself.

The work of a case is counted the way the simulator counts it, not the way a particular
implementation happens to move bytes: decode attention reads every KV byte of every sequence
once, plus the query, the output and the block table. The torch implementations here are
reference kernels (gather -> unpack/convert -> scale -> matmul): they move more bytes than a
fused paged-attention kernel, and the fitted efficiencies say so. See calibration/README.md.

KV precisions stored: bf16; fp8 (float8_e4m3fn, one per-tensor scale); int8 (one per-tensor
scale); int4 (two values per byte, offset-8 nibbles, low nibble first, one 16-bit scale per group
of 128 values along the head dimension: 4 + 16/128 = 4.125 bits, as fleetsim.precision counts).
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
    """A one-element kernel: the launch floor, the fixed cost of any step (the fit's overhead)."""
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
    gemm_shapes=((4096, 14336), (8192, 8192)),
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
    gemm_shapes=((4096, 4096), (4096, 14336), (8192, 8192), (8192, 28672), (14336, 4096)),
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
    at the start, in the middle and at the end (its median pins overhead_s; the spread shows drift).
    """
    spec = QUICK_GRID if quick else FULL_GRID
    cases: list[KernelCase] = [idle_case("start"), launch_case("start")]

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

    cases.append(launch_case("mid"))
    for layout in spec.append_layouts:
        per_token = LAYOUTS[layout].kv_bytes_per_token("bf16")
        for kv_dtype in KV_DTYPES:
            for batch, new in spec.append_shapes:
                if batch * (spec.append_context + new) * per_token <= spec.kv_budget_bytes:
                    cases.append(kv_append_case(layout, kv_dtype, batch, new, spec.append_context))

    for layout in spec.prefill_layouts:
        group = [prefill_attention_case(layout, 1, seq) for seq in spec.prefill_seqs]
        if layout in spec.energy_prefill_layouts:
            group[-1] = _with_energy(group[-1])
        cases += group

    for k, n in spec.gemm_shapes:
        energy = (k, n) == spec.energy_gemm_shape
        for dtype in GEMM_DTYPES:
            for m in spec.gemm_decode_m:
                cases.append(_maybe_energy(gemm_case(m, k, n, dtype, "gemm_decode"), energy))
            for m in spec.gemm_prefill_m:
                cases.append(_maybe_energy(gemm_case(m, k, n, dtype, "gemm_prefill"), energy))

    cases += [launch_case("end"), idle_case("end")]
    return cases


def _with_energy(case: KernelCase) -> KernelCase:
    return replace(case, energy=True)


def _maybe_energy(case: KernelCase, energy: bool) -> KernelCase:
    return _with_energy(case) if energy else case


# ---------------------------------------------------------------------------------------------
# torch implementations (run on the GPU machine only)


class Unsupported(Exception):
    """The kernel cannot run on this GPU or torch build; the message is recorded as the reason."""


@dataclass
class BuiltKernel:
    fn: Callable[[], object]
    impl: str
    cache_bytes: float = float("nan")  # torch.cuda.memory_allocated growth for the KV cache


@dataclass
class PagedCache:
    """K and V (or the MLA latent, in `k`) in blocks of BLOCK_SIZE tokens, as stored."""

    k: object  # (num_blocks, BLOCK_SIZE, kv_heads, stored width) tensor
    v: object | None  # None for MLA
    k_scale: object | None  # int4 group scales: (num_blocks, BLOCK_SIZE, kv_heads, groups) bf16
    v_scale: object | None
    scale: float  # per-tensor scale for fp8 / int8
    kv_dtype: str
    width: int  # logical width per head (head_dim)


def build(case: KernelCase, torch, device, *, compile_kernels: bool = False) -> BuiltKernel:
    """A callable that runs `case` once on `device`, with its inputs already resident."""
    builders = {
        "decode_attention": _build_decode_attention,
        "kv_append": _build_kv_append,
        "prefill_attention": _build_prefill_attention,
        "gemm": _build_gemm,
        "launch": _build_launch,
    }
    if case.kernel not in builders:
        raise Unsupported(f"no kernel to build for '{case.kernel}'")
    built = builders[case.kernel](case, torch, device)
    if compile_kernels and case.kernel in ("decode_attention", "kv_append"):
        built = _compiled(built, torch, device)
    return built


def _compiled(built: BuiltKernel, torch, device) -> BuiltKernel:
    """torch.compile the kernel (fuses gather + unpack + scale); eager if compile fails."""
    if not hasattr(torch, "compile"):
        return BuiltKernel(built.fn, built.impl + " (torch.compile unavailable)", built.cache_bytes)
    try:
        fn = torch.compile(built.fn, dynamic=False)
        fn()
        torch.cuda.synchronize(device)
    except Exception as error:  # any compiler failure: keep the eager kernel, say why
        reason = type(error).__name__
        return BuiltKernel(built.fn, f"{built.impl} (compile failed: {reason})", built.cache_bytes)
    return BuiltKernel(fn, built.impl + "+compile", built.cache_bytes)


def _generator(torch, device, seed: int = 0):
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _stored_width(kv_dtype: str, width: int) -> int:
    return width // 2 if kv_dtype == "int4" else width


def _int4_groups(width: int) -> int:
    return math.ceil(width / INT4_GROUP)


def _random_storage(torch, shape, kv_dtype: str, device, gen):
    """Random cache contents in the stored dtype (fp8 as its uint8 bits), built in chunks."""
    if kv_dtype == "bf16":
        return torch.randn(shape, dtype=torch.bfloat16, device=device, generator=gen)
    if kv_dtype == "int8":
        return torch.randint(-64, 64, shape, dtype=torch.int8, device=device, generator=gen)
    if kv_dtype == "int4":
        return torch.randint(0, 256, shape, dtype=torch.uint8, device=device, generator=gen)
    if kv_dtype == "fp8":
        out = torch.empty(shape, dtype=torch.uint8, device=device)
        rows = shape[0]
        per_row = max(1, math.prod(shape[1:]))
        step = max(1, (1 << 26) // per_row)  # about 64M values (128 MB of bf16) at a time
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            chunk = torch.randn((stop - start, *shape[1:]), dtype=torch.bfloat16, device=device, generator=gen)
            out[start:stop] = chunk.to(torch.float8_e4m3fn).view(torch.uint8)
        return out
    raise Unsupported(f"kv dtype '{kv_dtype}' is not measured")


def allocate_cache(torch, device, num_blocks: int, layout: AttentionLayout, kv_dtype: str, gen) -> PagedCache:
    """A paged cache of `num_blocks` blocks holding random values in the stored precision."""
    heads, width = layout.kv_heads, layout.head_dim
    shape = (num_blocks, BLOCK_SIZE, heads, _stored_width(kv_dtype, width))
    k = _random_storage(torch, shape, kv_dtype, device, gen)
    v = None if layout.mla else _random_storage(torch, shape, kv_dtype, device, gen)
    k_scale = v_scale = None
    if kv_dtype == "int4":
        scale_shape = (num_blocks, BLOCK_SIZE, heads, _int4_groups(width))
        k_scale = (torch.rand(scale_shape, dtype=torch.bfloat16, device=device, generator=gen) + 1) * 0.01
        if not layout.mla:
            v_scale = (torch.rand(scale_shape, dtype=torch.bfloat16, device=device, generator=gen) + 1) * 0.01
    scale = {"bf16": 1.0, "fp8": 0.02, "int8": 0.02, "int4": 1.0}[kv_dtype]
    return PagedCache(k, v, k_scale, v_scale, scale, kv_dtype, width)


def dequantize(torch, stored, kv_dtype: str, scale: float, group_scales, width: int):
    """Stored cache values -> bf16 (..., width): unpack / convert, then scale."""
    if kv_dtype == "bf16":
        return stored
    if kv_dtype == "fp8":
        return stored.view(torch.float8_e4m3fn).to(torch.bfloat16) * scale
    if kv_dtype == "int8":
        return stored.to(torch.bfloat16) * scale
    if kv_dtype == "int4":
        low = stored & 0x0F
        high = stored >> 4
        nibbles = torch.stack((low, high), dim=-1).flatten(-2)  # (..., width), low nibble first
        values = nibbles.to(torch.bfloat16) - 8
        per_value = group_scales.repeat_interleave(INT4_GROUP, dim=-1)[..., :width]
        return values * per_value
    raise Unsupported(f"kv dtype '{kv_dtype}' is not measured")


def quantize(torch, values, kv_dtype: str, scale: float):
    """bf16 (..., width) -> (stored values, int4 group scales or None), the cache's format."""
    if kv_dtype == "bf16":
        return values, None
    if kv_dtype == "fp8":
        return (values * (1.0 / scale)).to(torch.float8_e4m3fn).view(torch.uint8), None
    if kv_dtype == "int8":
        return (values * (1.0 / scale)).round().clamp(-127, 127).to(torch.int8), None
    if kv_dtype == "int4":
        width = values.shape[-1]
        groups = _int4_groups(width)
        padded = values.float()
        if groups * INT4_GROUP != width:
            padded = torch.nn.functional.pad(padded, (0, groups * INT4_GROUP - width))
        grouped = padded.reshape(*values.shape[:-1], groups, INT4_GROUP)
        scales = grouped.abs().amax(dim=-1).clamp_min(1e-6) / 7.0
        levels = (grouped / scales.unsqueeze(-1)).round().clamp(-8, 7) + 8
        levels = levels.reshape(*values.shape[:-1], groups * INT4_GROUP)[..., :width].to(torch.uint8)
        packed = levels[..., 0::2] | (levels[..., 1::2] << 4)
        return packed, scales.to(torch.bfloat16)
    raise Unsupported(f"kv dtype '{kv_dtype}' is not measured")


def _gather(cache_tensor, block_table, batch: int, slots: int, tokens: int):
    """Rows of the paged tensor for each sequence, in order: (batch, tokens, heads, width)."""
    gathered = cache_tensor[block_table]  # (batch, blocks, BLOCK_SIZE, heads, width)
    return gathered.reshape(batch, slots, *cache_tensor.shape[2:])[:, :tokens]


def decode_attention_fn(torch, q, cache: PagedCache, block_table, tokens: int, layout: AttentionLayout):
    """The decode-attention callable: q (batch, q_heads, head_dim) bf16 -> (batch, q_heads, value_dim)."""
    batch = q.shape[0]
    slots = block_table.shape[1] * BLOCK_SIZE
    sm_scale = 1.0 / math.sqrt(layout.head_dim)
    kv_dtype, scale, width = cache.kv_dtype, cache.scale, cache.width

    def read(stored, scales):
        values = _gather(stored, block_table, batch, slots, tokens)
        group_scales = None if scales is None else _gather(scales, block_table, batch, slots, tokens)
        return dequantize(torch, values, kv_dtype, scale, group_scales, width)

    if layout.mla:

        def mla():
            latent = read(cache.k, cache.k_scale)[:, :, 0]  # (batch, tokens, latent + rope)
            scores = torch.matmul(q, latent.transpose(1, 2))  # (batch, heads, tokens)
            probs = torch.softmax(scores.float() * sm_scale, dim=-1).to(torch.bfloat16)
            return torch.matmul(probs, latent[..., : layout.value_dim])  # (batch, heads, latent)

        return mla

    heads, group = layout.kv_heads, layout.group

    def attention():
        keys = read(cache.k, cache.k_scale)  # (batch, tokens, kv_heads, head_dim)
        values = read(cache.v, cache.v_scale)
        grouped_q = q.reshape(batch, heads, group, layout.head_dim)
        scores = torch.matmul(grouped_q, keys.permute(0, 2, 3, 1))  # (batch, kv_heads, group, tokens)
        probs = torch.softmax(scores.float() * sm_scale, dim=-1).to(torch.bfloat16)
        out = torch.matmul(probs, values.permute(0, 2, 1, 3))  # (batch, kv_heads, group, value_dim)
        return out.reshape(batch, layout.q_heads, layout.value_dim)

    return attention


def _block_table(torch, device, batch: int, blocks_each: int, gen):
    """A random (non-contiguous) assignment of physical blocks to sequences, int64."""
    order = torch.randperm(batch * blocks_each, device=device, generator=gen)
    return order.reshape(batch, blocks_each)


def _allocated(torch, device) -> int:
    torch.cuda.synchronize(device)
    return torch.cuda.memory_allocated(device)


def _build_decode_attention(case: KernelCase, torch, device) -> BuiltKernel:
    layout = LAYOUTS[case.layout]
    gen = _generator(torch, device)
    blocks_each = blocks_per_sequence(case.context_tokens)
    before = _allocated(torch, device)
    cache = allocate_cache(torch, device, case.batch * blocks_each, layout, case.kv_dtype, gen)
    cache_bytes = _allocated(torch, device) - before
    table = _block_table(torch, device, case.batch, blocks_each, gen)
    q = torch.randn((case.batch, layout.q_heads, layout.head_dim), dtype=torch.bfloat16, device=device, generator=gen)
    fn = decode_attention_fn(torch, q, cache, table, case.context_tokens, layout)
    return BuiltKernel(fn, "torch eager (gather, dequantize, matmul)", float(cache_bytes))


def _build_kv_append(case: KernelCase, torch, device) -> BuiltKernel:
    layout = LAYOUTS[case.layout]
    gen = _generator(torch, device)
    blocks_each = blocks_per_sequence(case.context_tokens + case.new_tokens)
    before = _allocated(torch, device)
    cache = allocate_cache(torch, device, case.batch * blocks_each, layout, case.kv_dtype, gen)
    cache_bytes = _allocated(torch, device) - before
    table = _block_table(torch, device, case.batch, blocks_each, gen)
    positions = torch.arange(case.context_tokens, case.context_tokens + case.new_tokens, device=device)
    blocks = table[:, positions // BLOCK_SIZE]  # (batch, new_tokens)
    slots = (blocks * BLOCK_SIZE + positions % BLOCK_SIZE).reshape(-1)
    tokens = case.batch * case.new_tokens
    heads, width = layout.kv_heads, layout.head_dim
    stored_width = _stored_width(case.kv_dtype, width)
    new_k = torch.randn((tokens, heads, width), dtype=torch.bfloat16, device=device, generator=gen)
    new_v = (
        None if layout.mla else torch.randn((tokens, heads, width), dtype=torch.bfloat16, device=device, generator=gen)
    )

    def write(cache_tensor, scale_tensor, values):
        stored, group_scales = quantize(torch, values, case.kv_dtype, cache.scale)
        cache_tensor.view(-1, heads, stored_width).index_copy_(0, slots, stored)
        if group_scales is not None:
            scale_tensor.view(-1, heads, group_scales.shape[-1]).index_copy_(0, slots, group_scales)

    def append():
        write(cache.k, cache.k_scale, new_k)
        if new_v is not None:
            write(cache.v, cache.v_scale, new_v)

    return BuiltKernel(append, "torch eager (quantize, index_copy_)", float(cache_bytes))


def _build_prefill_attention(case: KernelCase, torch, device) -> BuiltKernel:
    layout = LAYOUTS[case.layout]
    gen = _generator(torch, device)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    shape_q = (case.batch, layout.q_heads, case.context_tokens, layout.head_dim)
    shape_kv = (case.batch, layout.kv_heads, case.context_tokens, layout.head_dim)
    q = torch.randn(shape_q, dtype=torch.bfloat16, device=device, generator=gen)
    k = torch.randn(shape_kv, dtype=torch.bfloat16, device=device, generator=gen)
    v = torch.randn(shape_kv, dtype=torch.bfloat16, device=device, generator=gen)
    if layout.group == 1:
        return BuiltKernel(lambda: sdpa(q, k, v, is_causal=True), "sdpa causal")
    try:
        sdpa(q, k, v, is_causal=True, enable_gqa=True)
        return BuiltKernel(lambda: sdpa(q, k, v, is_causal=True, enable_gqa=True), "sdpa causal gqa")
    except TypeError:  # torch < 2.5 has no enable_gqa: repeat the KV heads once, outside the timing
        k_full = k.repeat_interleave(layout.group, dim=1)
        v_full = v.repeat_interleave(layout.group, dim=1)
        return BuiltKernel(lambda: sdpa(q, k_full, v_full, is_causal=True), "sdpa causal (kv heads repeated)")


def _build_gemm(case: KernelCase, torch, device) -> BuiltKernel:
    gen = _generator(torch, device)
    linear = torch.nn.functional.linear
    if case.compute_dtype == "bf16":
        x = torch.randn((case.m, case.k), dtype=torch.bfloat16, device=device, generator=gen)
        w = torch.randn((case.n, case.k), dtype=torch.bfloat16, device=device, generator=gen) * 0.02
        return BuiltKernel(lambda: linear(x, w), "torch linear bf16")
    if case.compute_dtype != "fp8":
        raise Unsupported(f"GEMM dtype '{case.compute_dtype}' is not measured")
    if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        raise Unsupported(f"torch {torch.__version__} has no torch._scaled_mm / float8_e4m3fn")
    capability = torch.cuda.get_device_capability(device)
    if tuple(capability) < (8, 9):
        raise Unsupported(
            f"fp8 GEMM needs compute capability 8.9 or newer; this GPU has {capability[0]}.{capability[1]}"
        )
    m = max(FP8_M_MULTIPLE, math.ceil(case.m / FP8_M_MULTIPLE) * FP8_M_MULTIPLE)
    a = torch.randn((m, case.k), dtype=torch.bfloat16, device=device, generator=gen).to(torch.float8_e4m3fn)
    b = (torch.randn((case.n, case.k), dtype=torch.bfloat16, device=device, generator=gen) * 0.02).to(
        torch.float8_e4m3fn
    )
    one = torch.ones((), dtype=torch.float32, device=device)

    def scaled_mm():
        return torch._scaled_mm(a, b.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

    try:
        scaled_mm()
        torch.cuda.synchronize(device)
    except (RuntimeError, TypeError) as error:
        raise Unsupported(f"torch._scaled_mm failed: {' '.join(str(error).split())[:200]}") from None
    impl = "torch._scaled_mm fp8" + (f" (M padded to {m})" if m != case.m else "")
    return BuiltKernel(scaled_mm, impl)


def _build_launch(case: KernelCase, torch, device) -> BuiltKernel:
    x = torch.zeros(1, dtype=torch.float32, device=device)
    return BuiltKernel(lambda: x.add_(1.0), "one-element add_")


def self_check(torch, device) -> list[str]:
    """Check the torch kernels against plain references on tiny inputs; returns problems found.

    - quantize -> dequantize keeps values (fp8, int8, int4 incl. a partial int4 group);
    - paged decode attention (GQA, a context that ends mid-block; MLA) equals attention
      computed on the same values laid out contiguously.
    """
    problems: list[str] = []
    gen = _generator(torch, device, seed=1)
    x = torch.randn((3, 2, 576), dtype=torch.bfloat16, device=device, generator=gen)
    tolerance = {"fp8": 0.08, "int8": 0.02, "int4": 0.2}
    for kv_dtype, tol in tolerance.items():
        scale = float(x.abs().max()) / (448.0 if kv_dtype == "fp8" else 127.0)
        stored, group_scales = quantize(torch, x, kv_dtype, scale)
        back = dequantize(torch, stored, kv_dtype, scale, group_scales, x.shape[-1]).float()
        error = float((back - x.float()).norm() / x.float().norm())
        if not error < tol:
            problems.append(f"{kv_dtype} quantize/dequantize relative error {error:.3f} > {tol}")

    small = {
        "gqa": AttentionLayout("gqa-check", q_heads=8, kv_heads=2, head_dim=128, value_dim=128),
        "mla": AttentionLayout("mla-check", q_heads=4, kv_heads=1, head_dim=576, value_dim=512, mla=True),
    }
    batch, tokens = 2, 37
    for name, layout in small.items():
        blocks_each = blocks_per_sequence(tokens)
        cache = allocate_cache(torch, device, batch * blocks_each, layout, "bf16", gen)
        table = _block_table(torch, device, batch, blocks_each, gen)
        q = torch.randn((batch, layout.q_heads, layout.head_dim), dtype=torch.bfloat16, device=device, generator=gen)
        got = decode_attention_fn(torch, q, cache, table, tokens, layout)().float()
        want = torch.empty_like(got)
        for b in range(batch):
            keys = cache.k[table[b]].reshape(-1, layout.kv_heads, layout.head_dim)[:tokens].float()
            values = (
                keys[..., : layout.value_dim]
                if layout.mla
                else cache.v[table[b]].reshape(-1, layout.kv_heads, layout.head_dim)[:tokens].float()
            )
            for h in range(layout.q_heads):
                kv_head = h // layout.group
                scores = keys[:, kv_head] @ q[b, h].float() / math.sqrt(layout.head_dim)
                want[b, h] = torch.softmax(scores, dim=0) @ values[:, kv_head]
        error = float((got - want).abs().max())
        if not error < 5e-2:
            problems.append(f"paged decode attention ({name}) differs from the reference by {error:.3g}")
    return problems
