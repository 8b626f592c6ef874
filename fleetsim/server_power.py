"""Whole-server wall power: the GPUs plus the server's own parts, through its power supplies.

The model (DESIGN.md, "Power"), per server:

    wall_w = (gpu_w + sum over parts of (idle_w + (max_w - idle_w) x load)) / psu_efficiency

- `gpu_w` is the board power of the server's GPUs (what NVML reports and fleetsim.power models);
- the parts (CPUs, memory, NICs, NVSwitch/NVLink switch trays, storage, fans) are the catalog's
  `server.parts`, DC watts when idle and at full load; between they follow the load linearly;
- `load` is the fraction of the GPUs' board power range in use, (gpu_w/gpu - gpu_idle_w) /
  (tdp_w - gpu_idle_w) clipped to [0, 1], with gpu_idle_w = 10% of TDP (H100 SXM idles at
  ~70 W of 700): host work and fan speed follow the GPUs' heat;
- psu_efficiency converts DC to AC at the wall (MLPerf Power measures AC at the wall).

Rack-scale systems (GB200/GB300 NVL72, `server.rack_scale`) are one 72-GPU "server"; a fleet of
n GPUs is charged n / 72 of the rack's non-GPU power (`servers_for` is fractional), not a whole
rack. Other systems are charged whole servers: ceil(n / gpus_per_server).

API (pure functions of a GpuSpec and numbers; no simpy, no I/O):

- ``servers_for(num_gpus, gpu) -> float``: servers (racks) charged: whole, or fractional for rack scale.
- ``load_fraction(gpu_w_per_gpu, gpu) -> float``: the load in [0, 1] from per-GPU board power.
- ``non_gpu_power_w(gpu, load) -> float``: DC power of ONE server's non-GPU parts at that load.
- ``server_wall_w(gpu_power_w, gpu, servers=1.0, load=None) -> float``: AC wall power of
  `servers` servers whose GPUs draw `gpu_power_w` in all; load defaults to the one that power gives.
- ``fleet_wall_kw(num_gpus, gpu, gpu_w_per_gpu) -> float``: a fleet's wall power, kW.
- ``wall_power_summary(gpu, num_gpus, gpu_mean_w, gpu_peak_w) -> dict``: the run summary's
  ``power.server_wall_kw`` / ``server_wall_peak_kw`` / ``non_gpu_kw`` / ``servers_charged`` entries
  from the per-GPU mean and peak board power the summary already has.

A GPU whose catalog entry has no `server` block falls back to its `server_power_w` (full-load wall
power) with the GPUs' TDP taken off as a constant host load at unit PSU efficiency, which is what
fleetsim used before this model.
"""

from __future__ import annotations

import math

from fleetsim.spec.hardware import GpuSpec, ServerSpec

#: Board power of an idle GPU as a fraction of TDP when the catalog gives none (H100 SXM idles at
#: ~70 W of 700; A100 at ~50-60 W of 400).
DEFAULT_GPU_IDLE_FRACTION = 0.1


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


def servers_for(num_gpus: int, gpu: GpuSpec) -> float:
    """Servers (racks for rack-scale systems) a fleet of `num_gpus` is charged for.

    Whole servers, ceil(num_gpus / gpus_per_server), for ordinary servers; num_gpus /
    gpus_per_server for rack-scale systems, so 8 GB200s are 8/72 of an NVL72 rack.
    """
    if num_gpus < 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
    if is_rack_scale(gpu):
        return num_gpus / gpu.gpus_per_server
    return float(-(-num_gpus // gpu.gpus_per_server))


RACK_SCALE_MIN_GPUS = 9  # more GPUs than an 8-GPU board: one NVLink domain across trays


def is_rack_scale(gpu: GpuSpec) -> bool:
    """A rack-scale system (GB200 NVL72: the catalog's "server" is the 72-GPU rack): the catalog's
    server.rack_scale where given, else more GPUs than an 8-GPU board."""
    if gpu.server is not None:
        return bool(gpu.server.rack_scale)
    return gpu.gpus_per_server >= RACK_SCALE_MIN_GPUS


def gpu_idle_w(gpu: GpuSpec) -> float:
    """Board power of one idle GPU used as the zero of the load fraction, W."""
    return DEFAULT_GPU_IDLE_FRACTION * gpu.tdp_w


def load_fraction(gpu_w_per_gpu: float, gpu: GpuSpec) -> float:
    """How loaded the server is, in [0, 1], from its GPUs' mean board power (per GPU)."""
    idle_w = gpu_idle_w(gpu)
    span_w = gpu.tdp_w - idle_w
    return _clip01((gpu_w_per_gpu - idle_w) / span_w) if span_w > 0 else 1.0


def non_gpu_power_w(gpu: GpuSpec, load: float) -> float:
    """DC power of ONE server's (rack's) non-GPU parts at `load` in [0, 1], W.

    Falls with load: every part's idle_w <= max_w. Without a `server` block: the catalog's
    full-load server_power_w minus the GPUs' TDP, at every load (0 when unknown).
    """
    server = gpu.server
    if server is None:
        if gpu.server_power_w is None:
            return 0.0
        return max(0.0, gpu.server_power_w - gpu.gpus_per_server * gpu.tdp_w)
    u = _clip01(load)
    return math.fsum(p.idle_w + (p.max_w - p.idle_w) * u for p in server.parts.values())


def psu_efficiency(gpu: GpuSpec) -> float:
    return 1.0 if gpu.server is None else gpu.server.psu_efficiency


def server_wall_w(gpu_power_w: float, gpu: GpuSpec, servers: float = 1.0, load: float | None = None) -> float:
    """AC wall power of `servers` servers whose GPUs draw `gpu_power_w` W in all.

    `load` defaults to load_fraction(gpu_power_w / GPUs in those servers).
    """
    if gpu_power_w < 0 or servers < 0:
        raise ValueError(f"need gpu_power_w >= 0 and servers >= 0, got {gpu_power_w}, {servers}")
    if load is None:
        gpus = servers * gpu.gpus_per_server
        load = load_fraction(gpu_power_w / gpus, gpu) if gpus > 0 else 0.0
    return (gpu_power_w + servers * non_gpu_power_w(gpu, load)) / psu_efficiency(gpu)


def fleet_wall_kw(num_gpus: int, gpu: GpuSpec, gpu_w_per_gpu: float) -> float:
    """Wall power of a fleet of `num_gpus` GPUs each drawing `gpu_w_per_gpu` on average, kW.

    The load is that of the fleet's GPUs; a part-filled server's idle slots draw nothing.
    """
    servers = servers_for(num_gpus, gpu)
    load = load_fraction(gpu_w_per_gpu, gpu)
    return server_wall_w(gpu_w_per_gpu * num_gpus, gpu, servers, load) / 1000.0


def wall_power_summary(gpu: GpuSpec, num_gpus: int, gpu_mean_w: float, gpu_peak_w: float) -> dict[str, float]:
    """The run summary's whole-server entries from the per-GPU mean (steady window) and peak power.

    server_wall_kw: mean wall power of the servers charged; server_wall_peak_kw: the same with
    every GPU at the peak power (an upper bound: GPUs rarely peak together); non_gpu_kw: the
    non-GPU parts at the mean load (DC); servers_charged: fractional for rack-scale systems.
    """
    servers = servers_for(num_gpus, gpu)
    load = load_fraction(gpu_mean_w, gpu)
    return {
        "server_wall_kw": fleet_wall_kw(num_gpus, gpu, gpu_mean_w),
        "server_wall_peak_kw": fleet_wall_kw(num_gpus, gpu, gpu_peak_w),
        "non_gpu_kw": servers * non_gpu_power_w(gpu, load) / 1000.0,
        "servers_charged": servers,
    }


def describe(server: ServerSpec) -> str:
    """One line: the server kind and its non-GPU power range."""
    idle_w = math.fsum(p.idle_w for p in server.parts.values())
    max_w = math.fsum(p.max_w for p in server.parts.values())
    scale = "rack" if server.rack_scale else "server"
    return f"{server.kind}: non-GPU {idle_w:,.0f}-{max_w:,.0f} W per {scale}, PSU {server.psu_efficiency:.0%}"
