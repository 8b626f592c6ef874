"""GPU datasheet figures and the server each GPU ships in. Every number carries its source in the
catalog file."""

from typing import Annotated

from pydantic import Field, model_validator

from fleetsim.spec.base import INTEGER, NUMBER, Spec

# Bounds: about a thousand times today's largest parts (B200: 192 GB, 8 TB/s, 1.8 TB/s NVLink,
# 10 PFLOP/s fp4, 1 kW; a DGX at $500k), so byte and FLOP arithmetic stays finite and exact.
MAX_MEMORY_BYTES = 10**15
Bandwidth = Annotated[float, Field(gt=0, le=1e16), NUMBER]
Flops = Annotated[float, Field(gt=0, le=1e20), NUMBER]
Watts = Annotated[float, Field(gt=0, le=1e7), NUMBER]
NonNegativeWatts = Annotated[float, Field(ge=0, le=1e7), NUMBER]
Usd = Annotated[float, Field(gt=0, le=1e9), NUMBER]
# A power supply converts at 50-100% (80 PLUS Titanium: 90-96%).
Efficiency = Annotated[float, Field(ge=0.5, le=1.0), NUMBER]


class HostPart(Spec):
    """One non-GPU part of a server (CPUs, memory, NICs, fans, switches, storage): DC watts when
    the GPUs idle and when they run flat out; between, linear in the load fraction."""

    idle_w: NonNegativeWatts = Field(description="DC power of the part when the server is idle, W")
    max_w: NonNegativeWatts = Field(description="DC power of the part at full load, W (>= idle_w)")

    @model_validator(mode="after")
    def _idle_not_above_max(self) -> "HostPart":
        if self.idle_w > self.max_w:
            raise ValueError(f"idle_w {self.idle_w:g} is above max_w {self.max_w:g}; need idle_w <= max_w")
        return self


class ServerSpec(Spec):
    """The box a GPU ships in, as far as power goes: whole-server wall power is
    (GPUs + sum of host parts at the load) / psu_efficiency (fleetsim.server_power)."""

    kind: str = Field(description="the server or rack this GPU is sold in, e.g. 'NVIDIA DGX H100'")
    rack_scale: bool = Field(
        default=False,
        description="true for rack-scale systems (GB200/GB300 NVL72): a fleet is charged gpus / "
        "gpus_per_server of the rack's non-GPU power, not whole racks",
    )
    max_system_power_w: Watts | None = Field(
        default=None, description="the vendor's maximum system (or rack) power, W, for provisioning"
    )
    psu_efficiency: Efficiency = Field(description="AC-to-DC efficiency of the power supplies (0.5-1)")
    parts: dict[str, HostPart] = Field(
        description="non-GPU parts of ONE server (or rack) by name, DC watts idle and at full load"
    )
    sources: dict[str, str] = Field(default_factory=dict, description="where each figure comes from")


class GpuSpec(Spec):
    name: str = Field(description="catalog name of the GPU")
    vendor: str = Field(description="maker (NVIDIA, AMD)")
    description: str = Field(default="", description="one line: part, memory, power, interconnect")
    memory_bytes: Annotated[int, Field(ge=1, le=MAX_MEMORY_BYTES), INTEGER] = Field(
        description="usable HBM per GPU, bytes"
    )
    hbm_bandwidth_bytes_per_s: Bandwidth = Field(description="HBM bandwidth per GPU, bytes/s")
    # Dense (non-sparse) peak FLOP/s per dtype name: bf16, fp16, fp8, fp4, int8.
    peak_flops_per_s: dict[str, Flops] = Field(
        description="dense (no 2:4 sparsity) tensor peak FLOP/s by dtype: bf16, fp16, fp8, fp4, int8"
    )
    tdp_w: Watts = Field(description="board power (TDP/TGP) at the default power limit, W")
    min_power_limit_w: Watts | None = Field(
        default=None,
        description="lowest configurable board power limit (nvidia-smi 'Min Power Limit' or the vendor's), W",
    )
    max_power_limit_w: Watts | None = Field(
        default=None,
        description="highest configurable board power limit (nvidia-smi 'Max Power Limit' or the vendor's), W",
    )
    # Per-GPU, one-direction scale-up bandwidth used by tensor-parallel all-reduce.
    interconnect_bandwidth_bytes_per_s: Bandwidth = Field(
        description="per-GPU one-direction scale-up bandwidth (NVLink/xGMI/PCIe), bytes/s"
    )
    interconnect: str = Field(description="the scale-up fabric in words")
    gpus_per_server: Annotated[int, Field(ge=1, le=1024), INTEGER] = Field(
        default=8, description="GPUs per server (per NVL72 rack for rack-scale systems)"
    )
    # Whole-server wall power at full load (GPUs + CPUs + fans + NICs), for rack planning.
    server_power_w: Watts | None = Field(
        default=None, description="whole-server (or rack) maximum wall power, W, for rack planning"
    )
    server: ServerSpec | None = Field(
        default=None, description="the server's non-GPU parts and PSU efficiency (whole-server wall power)"
    )
    host_memory_bytes: Annotated[int, Field(ge=1, le=MAX_MEMORY_BYTES), INTEGER] | None = Field(
        default=None,
        description="CPU memory coherently attached to this GPU (GH200: Grace LPDDR5X), bytes; for KV offload",
    )
    host_memory_bandwidth_bytes_per_s: Bandwidth | None = Field(
        default=None, description="bandwidth of that CPU memory, bytes/s"
    )
    host_link_bandwidth_bytes_per_s: Bandwidth | None = Field(
        default=None,
        description="one-direction GPU-CPU link bandwidth (NVLink-C2C; PCIe otherwise), bytes/s",
    )
    rental_usd_per_gpu_hour: Usd | None = Field(default=None, description="published rental price, $/GPU-hour")
    capex_usd_per_gpu: Usd | None = Field(default=None, description="purchase price per GPU incl. its server share, $")
    sources: dict[str, str] = Field(default_factory=dict, description="where each figure comes from, by field")

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
