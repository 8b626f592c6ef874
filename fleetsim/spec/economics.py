"""Facility and cost assumptions a scenario carries (YAML keys `facility:` and `cost:`).

Every default carries its source: an entry id in the shared public-figures file
(reference/public_figures.yaml), a public page, or the word "assumption". The models that use
these specs are fleetsim/facility.py and fleetsim/cost.py.
"""

from typing import Annotated, Literal

from pydantic import Field

from fleetsim.spec.base import Spec

NonNeg = Annotated[float, Field(ge=0)]


class FacilitySpec(Spec):
    """The building around the GPUs: power overhead, water, rack power budget."""

    # Power usage effectiveness = facility power / IT power.
    # 1.3: pue_new_facilities_2024 (newer/larger facilities, Uptime Institute 2024 report).
    # Industry averages are higher: 1.56 (pue_uptime_2024), 1.58 (pue_uptime_2023);
    # hyperscale fleets lower: 1.09 (pue_google_2024).
    pue: Annotated[float, Field(ge=1.0)] = 1.3
    # Water usage effectiveness, litres of site water per kWh of IT energy (The Green Grid, 2011).
    # 1.8: industry average "1.8-1.9 L/kWh" (unanswered.io/guide/data-center-water-usage-effectiveness-wue,
    # low confidence, secondary); evaporative hyperscale 1.0-1.8 L/kWh, air-cooled 0.05-0.2 L/kWh
    # (miltonroy.com data-center-wue-sustainability). Not in public_figures.yaml.
    wue_l_per_kwh: NonNeg = 1.8
    # Power available per rack. 40 kW is an assumption for a GPU hall: above the practical
    # air-cooling ceiling of ~30 kW (rack_air_cooling_ceiling) and below a direct-liquid-cooled
    # HGX H100 rack (~60 kW, same entry) or a GB200 NVL72 rack (120 kW, power_gb200_nvl72_rack).
    # Most enterprise operators have no racks above 20 kW (rack_density_uptime_2023).
    # 40 kW holds 3 DGX H100 at 10.2 kW each (power_dgx_h100_system).
    rack_power_kw: Annotated[float, Field(gt=0)] = 40.0
    # Non-GPU power per server (CPUs, fans, NICs, PSU losses) at full load, in W.
    # None => GpuSpec.server_power_w - gpus_per_server * tdp_w when server_power_w is known
    # (DGX H100: 10,200 - 8 x 700 = 4,600 W, power_dgx_h100_system, spec_h100_sxm), else 0.
    server_overhead_w: NonNeg | None = None


class CostSpec(Spec):
    """How the fleet is paid for: rented by the GPU-hour, or owned (capex + energy + colocation).

    Fields of the mode not in use are ignored (so a sweep can flip `mode` alone).
    """

    mode: Literal["rental", "owned"] = "rental"
    # USD per GPU-hour, all-in (energy, cooling, space included in the price).
    # None => GpuSpec.rental_usd_per_gpu_hour from the catalog. Public H100 range 1.49-2.85
    # (price_h100_sxm_2026_range, price_h100_neocloud_range_q1_2026); volatile, low confidence.
    rental_usd_per_gpu_hour: NonNeg | None = None
    # Owned: purchase price per GPU including its share of the server (chassis, CPUs, NICs).
    # None => GpuSpec.capex_usd_per_gpu. E.g. DGX H100 $270,000 / 8 = $33,750 (capex_dgx_h100).
    capex_usd_per_gpu: NonNeg | None = None
    # Straight-line life of the hardware. Assumption (common 4-5 year server depreciation).
    amortization_years: Annotated[float, Field(gt=0)] = 4.0
    # Cost of capital for the capital-recovery factor. Assumption (a typical corporate WACC).
    interest_rate: NonNeg = 0.08
    # 8.3 c/kWh: elec_tco_calculator_assumption (value.eia_industrial_2024_avg, US industrial
    # average 2024). State figures: elec_eia2023_* (e.g. Virginia industrial 8.92 c/kWh).
    electricity_usd_per_kwh: NonNeg = 0.083
    # Wholesale colocation rent per kW of provisioned (critical IT) capacity per month, energy
    # metered separately. 150: mid-point of "$140-$160/kW/month in Tier 1 markets, 2026"
    # (v2-pseo-ai.pages.dev/colocation/pricing, low confidence); encoradvisors.com reports
    # ~$196/kW/month for 250-500 kW deployments in H2 2025. Not in public_figures.yaml.
    colocation_usd_per_kw_month: NonNeg = 150.0
