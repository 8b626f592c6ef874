"""What a fleet costs per hour, per million tokens, and how that splits between input and output.

Two modes (CostSpec.mode):
- rental: GPUs x $/GPU-hour. The price is all-in: energy, cooling and space are the provider's,
  so energy and colocation are 0 in the breakdown.
- owned: total cost of ownership per hour =
    capex:       num_gpus x capex_usd_per_gpu x CRF(interest_rate, amortization_years) / 8760 h
    energy:      mean IT kW x PUE x $/kWh  (the metered bill: the whole facility's draw)
    colocation:  provisioned IT kW x $/kW-month / 730 h
  Colocation is billed on provisioned critical-IT kW (every GPU at TDP + each server's non-GPU
  power), NOT multiplied by PUE: wholesale colocation is quoted per kW of critical IT capacity
  with the cooling plant inside the rate, while energy is metered separately (and carries the
  PUE through the energy term).

Pure functions; a missing price raises SpecError naming the field to set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from fleetsim.errors import SpecError
from fleetsim.facility import provisioned_it_kw
from fleetsim.facility import server_overhead_w as resolve_server_overhead_w
from fleetsim.spec.economics import CostSpec
from fleetsim.spec.hardware import GpuSpec

HOURS_PER_YEAR = 8760.0  # 365 days
HOURS_PER_MONTH = HOURS_PER_YEAR / 12  # 730 h


def capital_recovery_factor(rate: float, years: float) -> float:
    """Fraction of a principal paid each year to repay it with interest over `years`:
    r (1+r)^n / ((1+r)^n - 1), and 1/n at r = 0. (8%, 4 years: 0.30192.)"""
    if years <= 0:
        raise ValueError(f"years must be > 0, got {years}")
    if rate <= -1:
        raise ValueError(f"rate must be > -1, got {rate}")
    if rate == 0:
        return 1.0 / years
    # Same formula as r / (1 - (1+r)^-n), written with expm1/log1p so tiny rates stay accurate.
    return rate / -math.expm1(-years * math.log1p(rate))


@dataclass(frozen=True)
class CostBreakdown:
    mode: Literal["rental", "owned"]
    num_gpus: int
    usd_per_hour: float  # the sum of the four parts below
    rental_usd_per_hour: float  # rental mode only
    capex_usd_per_hour: float  # owned mode only
    energy_usd_per_hour: float  # owned mode only (rental prices include energy)
    colocation_usd_per_hour: float  # owned mode only
    provisioned_it_kw: float  # what colocation is billed on
    it_kw_mean: float
    pue: float

    @property
    def usd_per_gpu_hour(self) -> float:
        return self.usd_per_hour / self.num_gpus if self.num_gpus else 0.0


def _price(spec_value: float | None, catalog_value: float | None, field: str, gpu: GpuSpec) -> float:
    if spec_value is not None:
        return spec_value
    if catalog_value is not None:
        return catalog_value
    raise SpecError(f"cost.{field}: no price for gpu {gpu.name!r}; set cost.{field}")


def hourly_cost_usd(
    spec: CostSpec,
    gpu: GpuSpec,
    num_gpus: int,
    it_kw_mean: float,
    pue: float,
    *,
    server_overhead_w: float | None = None,
) -> CostBreakdown:
    """Cost per hour of `num_gpus` GPUs drawing `it_kw_mean` of IT power on average.

    `it_kw_mean` is the whole IT load (GPUs + servers' non-GPU power, see facility.it_power_kw);
    `pue` is the facility's (FacilitySpec.pue). `server_overhead_w` is FacilitySpec's override;
    None derives it from the GPU's server power (facility.server_overhead_w). Prices missing from
    both `spec` and the GPU catalog entry raise SpecError naming the field.
    """
    if num_gpus < 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
    if it_kw_mean < 0:
        raise ValueError(f"it_kw_mean must be >= 0, got {it_kw_mean}")
    if pue < 1:
        raise ValueError(f"pue must be >= 1, got {pue}")
    overhead_w = resolve_server_overhead_w(gpu, server_overhead_w)
    provisioned_kw = provisioned_it_kw(gpu, num_gpus, overhead_w)
    rental = capex = energy = colocation = 0.0
    if spec.mode == "rental":
        price = _price(spec.rental_usd_per_gpu_hour, gpu.rental_usd_per_gpu_hour, "rental_usd_per_gpu_hour", gpu)
        rental = num_gpus * price
    else:
        capex_per_gpu = _price(spec.capex_usd_per_gpu, gpu.capex_usd_per_gpu, "capex_usd_per_gpu", gpu)
        crf = capital_recovery_factor(spec.interest_rate, spec.amortization_years)
        capex = num_gpus * capex_per_gpu * crf / HOURS_PER_YEAR
        energy = it_kw_mean * pue * spec.electricity_usd_per_kwh
        colocation = provisioned_kw * spec.colocation_usd_per_kw_month / HOURS_PER_MONTH
    return CostBreakdown(
        mode=spec.mode,
        num_gpus=num_gpus,
        usd_per_hour=rental + capex + energy + colocation,
        rental_usd_per_hour=rental,
        capex_usd_per_hour=capex,
        energy_usd_per_hour=energy,
        colocation_usd_per_hour=colocation,
        provisioned_it_kw=provisioned_kw,
        it_kw_mean=it_kw_mean,
        pue=pue,
    )


def usd_per_million_tokens(usd_per_hour: float, tokens_per_s: float) -> float:
    """$ per 10^6 tokens at a sustained rate: usd_per_hour / (tokens_per_s x 3600) x 10^6.

    Pass output tokens/s for $ per million output tokens, input + output for $ per million
    tokens. No tokens => inf.
    """
    if tokens_per_s <= 0:
        return math.inf
    return usd_per_hour * 1e6 / (tokens_per_s * 3600.0)


def split_input_output_cost(usd_total: float, prefill_gpu_s: float, decode_gpu_s: float) -> tuple[float, float]:
    """(usd for input, usd for output) in proportion to GPU time in prefill vs decode.

    With no GPU time at all (an idle fleet) the whole cost goes to output, as in the
    "$ per million output tokens" convention.
    """
    if prefill_gpu_s < 0 or decode_gpu_s < 0:
        raise ValueError("prefill_gpu_s and decode_gpu_s must be >= 0")
    total_s = prefill_gpu_s + decode_gpu_s
    if total_s == 0:
        return 0.0, usd_total
    input_usd = usd_total * (prefill_gpu_s / total_s)
    return input_usd, usd_total - input_usd


# --------------------------------------------------------------------------- buyable fleets
@dataclass(frozen=True)
class RentalOffer:
    """How one provider rents a GPU: whole instances of `gpus_per_instance` GPUs (per-instance price)."""

    gpu: str
    provider: str
    gpus_per_instance: int
    usd_per_instance_hour: float
    source: str = ""
    date: str = ""

    @property
    def usd_per_gpu_hour(self) -> float:
        return self.usd_per_instance_hour / self.gpus_per_instance


@dataclass(frozen=True)
class RentalCost:
    offer: RentalOffer
    instances: int
    billed_gpus: int  # instances x GPUs per instance (>= the GPUs the fleet uses)
    usd_per_hour: float


def rental_fleet_cost(num_gpus: int, offer: RentalOffer) -> RentalCost:
    """Rent whole instances: ceil(num_gpus / gpus_per_instance) x the instance price."""
    if num_gpus < 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
    n = -(-num_gpus // offer.gpus_per_instance)
    return RentalCost(offer, n, n * offer.gpus_per_instance, n * offer.usd_per_instance_hour)


def cheapest_rental(num_gpus: int, offers: list[RentalOffer]) -> RentalCost | None:
    costs = [rental_fleet_cost(num_gpus, o) for o in offers]
    return min(costs, key=lambda c: (c.usd_per_hour, c.billed_gpus)) if costs else None


@dataclass(frozen=True)
class OwnedCost:
    """Owned TCO per hour of a buyable fleet: per-GPU parts (capex) in GPUs bought, per-server
    parts (non-GPU power, colocation of it) in servers (whole, or a rack-scale fraction)."""

    servers: float
    billed_gpus: int  # GPUs bought: whole servers' worth, or the GPUs themselves in a rack-scale system
    capex_usd: float
    capex_usd_per_hour: float
    energy_usd_per_hour: float
    colocation_usd_per_hour: float
    provisioned_it_kw: float

    @property
    def usd_per_hour(self) -> float:
        return self.capex_usd_per_hour + self.energy_usd_per_hour + self.colocation_usd_per_hour

    @property
    def running_usd_per_hour(self) -> float:
        """What owning costs per hour on top of the purchase: energy and colocation."""
        return self.energy_usd_per_hour + self.colocation_usd_per_hour


def owned_fleet_cost(
    spec: CostSpec, gpu: GpuSpec, num_gpus: int, it_kw_mean: float, pue: float, overhead_w: float
) -> OwnedCost:
    """TCO per hour of owning the servers `num_gpus` GPUs need (server_power.servers_for)."""
    from fleetsim.server_power import is_rack_scale, servers_for

    capex_per_gpu = _price(spec.capex_usd_per_gpu, gpu.capex_usd_per_gpu, "capex_usd_per_gpu", gpu)
    servers = servers_for(num_gpus, gpu)
    billed = num_gpus if is_rack_scale(gpu) else round(servers) * gpu.gpus_per_server
    capex_usd = billed * capex_per_gpu
    crf = capital_recovery_factor(spec.interest_rate, spec.amortization_years)
    prov_kw = (billed * gpu.tdp_w + servers * overhead_w) / 1000.0
    return OwnedCost(
        servers=servers,
        billed_gpus=billed,
        capex_usd=capex_usd,
        capex_usd_per_hour=capex_usd * crf / HOURS_PER_YEAR,
        energy_usd_per_hour=it_kw_mean * pue * spec.electricity_usd_per_kwh,
        colocation_usd_per_hour=prov_kw * spec.colocation_usd_per_kw_month / HOURS_PER_MONTH,
        provisioned_it_kw=prov_kw,
    )


def break_even_utilization(rental_usd_per_hour: float, owned: OwnedCost) -> float | None:
    """Fraction of hours the fleet must be needed for owning to cost no more than renting it only
    then: rent x u = capex + colocation (paid every hour) + energy x u  =>  u = fixed / (rent - energy).
    None when renting never costs more (rent <= energy per hour)."""
    fixed = owned.capex_usd_per_hour + owned.colocation_usd_per_hour
    margin = rental_usd_per_hour - owned.energy_usd_per_hour
    return fixed / margin if margin > 0 else None


def break_even_hours(rental_usd_per_hour: float, owned: OwnedCost) -> float | None:
    """Hours of continuous use after which the purchase price is repaid by not renting:
    capex / (rent - running costs). None when owning never catches up."""
    margin = rental_usd_per_hour - owned.running_usd_per_hour
    return owned.capex_usd / margin if margin > 0 else None
