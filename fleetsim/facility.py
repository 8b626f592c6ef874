"""From IT power to the building: facility power, heat to remove, water, servers and racks.

- Facility power = IT power x PUE.
- Heat load = IT power: every watt the servers draw ends up as heat in the room. Units:
  1 W = 3.41214 BTU/h (International Table BTU, 1 BTU_IT = 1055.05585 J: 3600 / 1055.05585 =
  3.41214), so 1 kW = 3412.14 BTU/h; 1 ton of refrigeration = 12,000 BTU/h = 3.517 kW
  (12,000 / 3412.14 = 3.51685, rounded to 3.517 as HVAC tables and DESIGN.md do). Heat of the
  facility's own overhead (UPS, transformer losses) is outside this figure.
- Water = WUE (L per kWh of IT energy) x IT kWh.
- Racks: whole servers per rack within the rack's power budget, sized on provisioned (full-load)
  server power, never on the mean.

Pure functions of specs and numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleetsim.server_power import is_rack_scale, servers_for
from fleetsim.spec.economics import FacilitySpec
from fleetsim.spec.hardware import GpuSpec

BTU_PER_H_PER_KW = 3412.14
KW_PER_TON_OF_REFRIGERATION = 3.517


def facility_power_kw(it_kw: float, pue: float) -> float:
    """Total facility power (IT + cooling + power distribution losses), in kW."""
    if pue < 1:
        raise ValueError(f"pue must be >= 1, got {pue}")
    return it_kw * pue


def heat_load(it_kw: float) -> dict[str, float]:
    """Heat the cooling plant must remove: {'kw', 'btu_per_h', 'tons'} (tons of refrigeration)."""
    return {
        "kw": it_kw,
        "btu_per_h": BTU_PER_H_PER_KW * it_kw,
        "tons": it_kw / KW_PER_TON_OF_REFRIGERATION,
    }


def water_l_per_h(it_kw: float, wue_l_per_kwh: float) -> float:
    """Site water use in litres per hour: an hour at it_kw is it_kw kWh of IT energy."""
    return it_kw * wue_l_per_kwh


def server_overhead_w(gpu: GpuSpec, override_w: float | None = None) -> float:
    """Non-GPU power of one server at full load, in W.

    `override_w` (FacilitySpec.server_overhead_w) wins; else GpuSpec.server_power_w minus the
    GPUs' TDP (DGX H100: 10,200 - 8 x 700 = 4,600 W), floored at 0; else 0 when unknown.
    """
    if override_w is not None:
        return float(override_w)
    if gpu.server_power_w is None:
        return 0.0
    return max(0.0, gpu.server_power_w - gpu.gpus_per_server * gpu.tdp_w)


def server_power_kw(gpu: GpuSpec, overhead_w: float) -> float:
    """Provisioned (full-load) power of one full server, in kW."""
    return (gpu.gpus_per_server * gpu.tdp_w + overhead_w) / 1000.0


def num_servers(num_gpus: int, gpus_per_server: int) -> int:
    if num_gpus < 0 or gpus_per_server <= 0:
        raise ValueError(f"need num_gpus >= 0 and gpus_per_server > 0, got {num_gpus}, {gpus_per_server}")
    return -(-num_gpus // gpus_per_server)


# Air-cooled rack density ceiling used for the density class: ~30-40 kW (rack_air_cooling_ceiling).
AIR_COOLED_MAX_RACK_KW = 40.0


def provisioned_it_kw(gpu: GpuSpec, num_gpus: int, overhead_w: float) -> float:
    """IT capacity to provision: every GPU at TDP plus the non-GPU power of the servers it takes
    (whole servers; the fraction of a rack-scale system)."""
    return (num_gpus * gpu.tdp_w + servers_for(num_gpus, gpu) * overhead_w) / 1000.0


def density_class(gpu: GpuSpec, overhead_w: float, rack_power_kw: float) -> tuple[str, str]:
    """('air' | 'liquid', warning or ''): rack-scale systems and servers whose full-load power
    packs a rack past the air-cooled ceiling are liquid-cooled; a system whose own power exceeds
    the rack budget gets a warning naming both."""
    kw = server_power_kw(gpu, overhead_w)
    cls = "liquid" if is_rack_scale(gpu) or kw > AIR_COOLED_MAX_RACK_KW else "air"
    warn = ""
    if kw > rack_power_kw:
        warn = (
            f"one {gpu.name} system draws {kw:,.1f} kW at full load, above the {rack_power_kw:g} kW rack "
            f"budget (facility.rack_power_kw): it needs a {cls}-cooled rack of at least {kw:,.0f} kW"
        )
    return cls, warn


def carbon_g_per_million_tokens(facility_kw: float, tokens_per_s: float, grid_g_per_kwh: float) -> float | None:
    """Location-based operational CO2: facility kWh per million tokens x grid g CO2/kWh."""
    if tokens_per_s <= 0:
        return None
    return facility_kw * 1e6 / (tokens_per_s * 3600.0) * grid_g_per_kwh


def tokens_per_s_per_mw(tokens_per_s: float, facility_kw: float) -> float | None:
    return tokens_per_s / (facility_kw / 1000.0) if facility_kw > 0 else None


def it_power_kw(gpu_power_w: float, servers: int, overhead_w: float) -> float:
    """IT power from the GPUs' summed power plus the servers' non-GPU power, in kW.

    The non-GPU part is taken at its full-load value (CPUs, fans and NICs swing far less than
    GPUs), which errs on the high side.
    """
    return (gpu_power_w + servers * overhead_w) / 1000.0


def servers_and_racks(
    num_gpus: int, gpus_per_server: int, server_power_kw: float, rack_power_kw: float
) -> tuple[int, int]:
    """(servers, racks): servers = ceil(gpus / gpus_per_server); servers per rack =
    floor(rack_power_kw / server_power_kw), at least 1 (a server above the rack budget still
    takes a rack of its own); racks = ceil(servers / servers_per_rack)."""
    if server_power_kw <= 0 or rack_power_kw <= 0:
        raise ValueError("server_power_kw and rack_power_kw must be > 0")
    servers = num_servers(num_gpus, gpus_per_server)
    # The relative nudge keeps exact ratios exact (0.3 kW / 0.1 kW is 2.9999999999999996 in floats).
    per_rack = max(1, math.floor(rack_power_kw / server_power_kw * (1 + 1e-12)))
    racks = -(-servers // per_rack)
    return servers, racks


@dataclass(frozen=True)
class FacilityBreakdown:
    it_kw: float  # mean IT power (GPUs + server overhead)
    facility_kw: float  # it_kw x PUE
    heat_kw: float
    heat_btu_per_h: float
    heat_tons: float  # tons of refrigeration
    water_l_per_h: float
    provisioned_it_kw: float  # full-load IT capacity (what racks and colocation are sized on)
    servers: int
    racks: int


def facility_breakdown(spec: FacilitySpec, gpu: GpuSpec, num_gpus: int, it_kw: float) -> FacilityBreakdown:
    """Everything the building sees for `num_gpus` GPUs drawing `it_kw` of IT power on average.

    Pass the peak IT power as `it_kw` to size the cooling plant instead of reporting the mean.
    """
    overhead_w = server_overhead_w(gpu, spec.server_overhead_w)
    servers, racks = servers_and_racks(
        num_gpus, gpu.gpus_per_server, server_power_kw(gpu, overhead_w), spec.rack_power_kw
    )
    heat = heat_load(it_kw)
    return FacilityBreakdown(
        it_kw=it_kw,
        facility_kw=facility_power_kw(it_kw, spec.pue),
        heat_kw=heat["kw"],
        heat_btu_per_h=heat["btu_per_h"],
        heat_tons=heat["tons"],
        water_l_per_h=water_l_per_h(it_kw, spec.wue_l_per_kwh),
        provisioned_it_kw=provisioned_it_kw(gpu, num_gpus, overhead_w),
        servers=servers,
        racks=racks,
    )
