"""torch versions of the calibration kernels (fleetsim.calibrate.kernels describes the cases).

Every function receives the torch module, so nothing here imports torch at module import. The
kernels run on a CUDA device as measured, and on the CPU wherever they have a CPU form (paged
decode attention, KV append, prefill SDPA, bf16 GEMMs), which is how the tests exercise them
without a GPU; fp8 GEMMs (torch._scaled_mm) need CUDA and report Unsupported elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from fleetsim.calibrate.kernels import (
    BLOCK_SIZE,
    FP8_M_MULTIPLE,
    INT4_GROUP,
    LAYOUTS,
    AttentionLayout,
    KernelCase,
    blocks_per_sequence,
)


def is_cuda(device) -> bool:
    """True for a CUDA device (a torch.device or a string such as 'cuda:0')."""
    kind = getattr(device, "type", None) or str(device).split(":")[0]
    return kind == "cuda"


def synchronize(torch, device) -> None:
    """Wait for the device (CPU work is already done when a call returns)."""
    if is_cuda(device):
        torch.cuda.synchronize(device)


class Unsupported(Exception):
    """The kernel cannot run on this GPU or torch build; the message is recorded as the reason."""


@dataclass
class BuiltKernel:
    fn: Callable[[], object]
    impl: str
    cache_bytes: float = float("nan")  # memory the KV cache took (CUDA: allocator growth)


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
        synchronize(torch, device)
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


def _allocated(torch, device) -> int | None:
    """Bytes the CUDA allocator holds (None on other devices)."""
    if not is_cuda(device):
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.memory_allocated(device)


def _cache_bytes(torch, device, before: int | None, cache: PagedCache) -> float:
    """Memory the cache took: the CUDA allocator's growth, else the bytes of its tensors."""
    if before is not None:
        return float(_allocated(torch, device) - before)
    tensors = (cache.k, cache.v, cache.k_scale, cache.v_scale)
    return float(sum(t.numel() * t.element_size() for t in tensors if t is not None))


def _build_decode_attention(case: KernelCase, torch, device) -> BuiltKernel:
    layout = LAYOUTS[case.layout]
    gen = _generator(torch, device)
    blocks_each = blocks_per_sequence(case.context_tokens)
    before = _allocated(torch, device)
    cache = allocate_cache(torch, device, case.batch * blocks_each, layout, case.kv_dtype, gen)
    cache_bytes = _cache_bytes(torch, device, before, cache)
    table = _block_table(torch, device, case.batch, blocks_each, gen)
    q = torch.randn((case.batch, layout.q_heads, layout.head_dim), dtype=torch.bfloat16, device=device, generator=gen)
    fn = decode_attention_fn(torch, q, cache, table, case.context_tokens, layout)
    return BuiltKernel(fn, "torch eager (gather, dequantize, matmul)", cache_bytes)


def _build_kv_append(case: KernelCase, torch, device) -> BuiltKernel:
    layout = LAYOUTS[case.layout]
    gen = _generator(torch, device)
    blocks_each = blocks_per_sequence(case.context_tokens + case.new_tokens)
    before = _allocated(torch, device)
    cache = allocate_cache(torch, device, case.batch * blocks_each, layout, case.kv_dtype, gen)
    cache_bytes = _cache_bytes(torch, device, before, cache)
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

    return BuiltKernel(append, "torch eager (quantize, index_copy_)", cache_bytes)


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
    if not is_cuda(device):
        raise Unsupported(f"fp8 GEMM (torch._scaled_mm) needs a CUDA GPU; this run is on {device}")
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
        synchronize(torch, device)
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
