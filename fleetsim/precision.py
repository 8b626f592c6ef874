"""Storage precisions: bits per element including block-scale overhead.

q8_0 / q4_0 are llama.cpp block formats: 32 elements share one fp16 scale, so
q8_0 = (32*8 + 16) / 32 = 8.5 bits and q4_0 = (32*4 + 16) / 32 = 4.5 bits.
int4 weights use group-wise fp16 scales over 128 elements (GPTQ/AWQ default): 4.125 bits.
fp4 is NVFP4: an fp8 scale per 16 elements, 4.5 bits. fp8/int8 use per-tensor scales,
whose overhead is negligible.
"""

from fractions import Fraction

from fleetsim.errors import SpecError

BITS_PER_ELEMENT: dict[str, Fraction] = {
    "fp32": Fraction(32),
    "bf16": Fraction(16),
    "fp16": Fraction(16),
    "fp8": Fraction(8),
    "int8": Fraction(8),
    "q8_0": Fraction(8 * 32 + 16, 32),
    "int4": Fraction(4 * 128 + 16, 128),
    "q4_0": Fraction(4 * 32 + 16, 32),
    "fp4": Fraction(4 * 16 + 8, 16),
}

KV_DTYPES = ("bf16", "fp16", "fp8", "int8", "int4", "q8_0", "q4_0")
WEIGHT_DTYPES = ("bf16", "fp16", "fp8", "int8", "int4", "fp4")


def bytes_per_element(dtype: str) -> Fraction:
    """Exact bytes per stored element, as a Fraction so totals stay exact."""
    try:
        return BITS_PER_ELEMENT[dtype] / 8
    except KeyError:
        valid = ", ".join(BITS_PER_ELEMENT)
        raise SpecError(f"dtype '{dtype}' is unknown; valid: {valid}") from None


def check_dtype(dtype: str, allowed: tuple[str, ...], field: str) -> str:
    if dtype not in allowed:
        raise SpecError(f"{field}: '{dtype}' is not valid; choose one of {', '.join(allowed)}")
    return dtype


def compute_dtype(weight_dtype: str) -> str:
    """The tensor-core dtype a weight format runs its GEMMs in (int4/q formats dequantize to bf16)."""
    return {"fp8": "fp8", "fp4": "fp4", "int8": "int8"}.get(weight_dtype, "bf16")
