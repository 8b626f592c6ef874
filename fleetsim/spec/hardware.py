"""GPU datasheet figures. Every number carries its source in the catalog file."""

from typing import Annotated

from pydantic import Field

from fleetsim.spec.base import Spec

Positive = Annotated[float, Field(gt=0)]


class GpuSpec(Spec):
    name: str
    vendor: str
    description: str = ""
    memory_bytes: Annotated[int, Field(gt=0)]
    hbm_bandwidth_bytes_per_s: Positive
    # Dense (non-sparse) peak FLOP/s per dtype name: bf16, fp16, fp8, fp4, int8.
    peak_flops_per_s: dict[str, Positive]
    tdp_w: Positive
    # Per-GPU, one-direction scale-up bandwidth used by tensor-parallel all-reduce.
    interconnect_bandwidth_bytes_per_s: Positive
    interconnect: str
    gpus_per_server: Annotated[int, Field(gt=0)] = 8
    # Whole-server wall power at full load (GPUs + CPUs + fans + NICs), for rack planning.
    server_power_w: Positive | None = None
    rental_usd_per_gpu_hour: Positive | None = None
    capex_usd_per_gpu: Positive | None = None
    sources: dict[str, str] = Field(default_factory=dict)

    def peak_flops(self, dtype: str) -> float:
        """Peak for a compute dtype, falling back to the next wider format the GPU has."""
        for candidate in _FALLBACK.get(dtype, (dtype,)):
            if candidate in self.peak_flops_per_s:
                return self.peak_flops_per_s[candidate]
        return self.peak_flops_per_s["bf16"]


# A GPU without fp8/fp4 units runs those weights at the next wider precision.
_FALLBACK = {
    "fp4": ("fp4", "fp8", "bf16"),
    "int4": ("int8", "fp8", "bf16"),
    "fp8": ("fp8", "bf16"),
    "int8": ("int8", "fp8", "bf16"),
    "fp16": ("fp16", "bf16"),
    "bf16": ("bf16", "fp16"),
}
