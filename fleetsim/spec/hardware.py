"""GPU datasheet figures. Every number carries its source in the catalog file."""

from typing import Annotated

from pydantic import Field

from fleetsim.spec.base import INTEGER, NUMBER, Spec

# Bounds: about a thousand times today's largest parts (B200: 192 GB, 8 TB/s, 1.8 TB/s NVLink,
# 10 PFLOP/s fp4, 1 kW; a DGX at $500k), so byte and FLOP arithmetic stays finite and exact.
MAX_MEMORY_BYTES = 10**15
Bandwidth = Annotated[float, Field(gt=0, le=1e16), NUMBER]
Flops = Annotated[float, Field(gt=0, le=1e20), NUMBER]
Watts = Annotated[float, Field(gt=0, le=1e7), NUMBER]
Usd = Annotated[float, Field(gt=0, le=1e9), NUMBER]


class GpuSpec(Spec):
    name: str
    vendor: str
    description: str = ""
    memory_bytes: Annotated[int, Field(ge=1, le=MAX_MEMORY_BYTES), INTEGER]
    hbm_bandwidth_bytes_per_s: Bandwidth
    # Dense (non-sparse) peak FLOP/s per dtype name: bf16, fp16, fp8, fp4, int8.
    peak_flops_per_s: dict[str, Flops]
    tdp_w: Watts
    # Per-GPU, one-direction scale-up bandwidth used by tensor-parallel all-reduce.
    interconnect_bandwidth_bytes_per_s: Bandwidth
    interconnect: str
    gpus_per_server: Annotated[int, Field(ge=1, le=1024), INTEGER] = 8
    # Whole-server wall power at full load (GPUs + CPUs + fans + NICs), for rack planning.
    server_power_w: Watts | None = None
    rental_usd_per_gpu_hour: Usd | None = None
    capex_usd_per_gpu: Usd | None = None
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
