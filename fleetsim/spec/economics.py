"""Facility and cost assumptions a scenario carries (YAML keys `facility:` and `cost:`).

Every default carries its source: an entry id in the shared public-figures file
(reference/public_figures.yaml), a public page, or the word "assumption". The models that use
these specs are fleetsim/facility.py and fleetsim/cost.py.
"""

from functools import cache
from importlib.resources import files
from typing import Annotated, Literal

import yaml
from pydantic import Field, model_validator

from fleetsim.spec.base import NUMBER, Spec

MAX_PUE = 5.0
MAX_WUE_L_PER_KWH = 100.0
MIN_RACK_POWER_KW = 0.1  # a 100 W rack budget; below it the rack count is not finite
MAX_RACK_POWER_KW = 10_000.0
MAX_SERVER_OVERHEAD_W = 1_000_000.0
MAX_USD_PER_GPU_HOUR = 10_000.0
MAX_CAPEX_USD_PER_GPU = 100_000_000.0
MIN_AMORTIZATION_YEARS = 0.1  # about five weeks; shorter divides the capex by ~0
MAX_AMORTIZATION_YEARS = 100.0
MAX_INTEREST_RATE = 1.0
MAX_USD_PER_KWH = 100.0
MAX_COLOCATION_USD_PER_KW_MONTH = 100_000.0
MAX_GRID_CARBON_G_PER_KWH = 2_000.0


@cache
def cooling_types() -> dict[str, dict]:
    """Water use by cooling type, with sources (fleetsim/catalog/cooling.yaml, shipped data)."""
    return yaml.safe_load(files("fleetsim.catalog").joinpath("cooling.yaml").read_text(encoding="utf-8"))


class FacilitySpec(Spec):
    """The building around the GPUs: power overhead, water, rack power budget."""

    # Power usage effectiveness = facility power / IT power.
    # 1.3: pue_new_facilities_2024 (newer/larger facilities, Uptime Institute 2024 report).
    # Industry averages are higher: 1.56 (pue_uptime_2024), 1.58 (pue_uptime_2023);
    # hyperscale fleets lower: 1.09 (pue_google_2024).
    pue: Annotated[float, Field(ge=1.0, le=MAX_PUE), NUMBER] = Field(
        default=1.3, description=f"Power usage effectiveness, facility power / IT power; 1 to {MAX_PUE:g}. Default 1.3."
    )
    # Water usage effectiveness, litres of site water per kWh of IT energy (The Green Grid, 2011).
    # 1.8: industry average "1.8-1.9 L/kWh" (unanswered.io/guide/data-center-water-usage-effectiveness-wue,
    # low confidence, secondary); evaporative hyperscale 1.0-1.8 L/kWh, air-cooled 0.05-0.2 L/kWh
    # (miltonroy.com data-center-wue-sustainability). Not in public_figures.yaml.
    cooling: Literal["evaporative", "air_cooled", "liquid_closed_loop"] = Field(
        default="evaporative",
        description="How heat leaves the building: evaporative (cooling towers, WUE 1.8 L/kWh), air_cooled "
        "(dry coolers / air-cooled chillers, 0.2 L/kWh) or liquid_closed_loop (direct-to-chip liquid, dry "
        "coolers, 0 L/kWh); sets wue_l_per_kwh unless given (fleetsim/catalog/cooling.yaml, sourced). "
        "Default evaporative.",
    )
    wue_l_per_kwh: Annotated[float, Field(ge=0.0, le=MAX_WUE_L_PER_KWH), NUMBER] = Field(
        default=1.8,
        description=f"Water usage effectiveness, litres of site water per kWh of IT energy; 0 to "
        f"{MAX_WUE_L_PER_KWH:g}. Default: the cooling type's (1.8, the industry average, for evaporative).",
    )

    @model_validator(mode="before")
    @classmethod
    def _water_from_cooling(cls, data):
        if isinstance(data, dict) and "wue_l_per_kwh" not in data and isinstance(data.get("cooling"), str):
            table = cooling_types()
            if data["cooling"] in table:  # an unknown type is the Literal's own error
                data = {**data, "wue_l_per_kwh": table[data["cooling"]]["wue_l_per_kwh"]}
        return data

    # Power available per rack. 40 kW is an assumption for a GPU hall: above the practical
    # air-cooling ceiling of ~30 kW (rack_air_cooling_ceiling) and below a direct-liquid-cooled
    # HGX H100 rack (~60 kW, same entry) or a GB200 NVL72 rack (120 kW, power_gb200_nvl72_rack).
    # Most enterprise operators have no racks above 20 kW (rack_density_uptime_2023).
    # 40 kW holds 3 DGX H100 at 10.2 kW each (power_dgx_h100_system).
    rack_power_kw: Annotated[float, Field(ge=MIN_RACK_POWER_KW, le=MAX_RACK_POWER_KW), NUMBER] = Field(
        default=40.0,
        description=f"Power available per rack, kW; {MIN_RACK_POWER_KW:g} to {MAX_RACK_POWER_KW:,.0f}. Default 40.",
    )
    # Non-GPU power per server (CPUs, fans, NICs, PSU losses) at full load, in W.
    # None => GpuSpec.server_power_w - gpus_per_server * tdp_w when server_power_w is known
    # (DGX H100: 10,200 - 8 x 700 = 4,600 W, power_dgx_h100_system, spec_h100_sxm), else 0.
    server_overhead_w: Annotated[float, Field(ge=0.0, le=MAX_SERVER_OVERHEAD_W), NUMBER] | None = Field(
        default=None,
        description=f"Non-GPU power per server at full load (CPUs, fans, NICs, PSU losses), W; 0 to "
        f"{MAX_SERVER_OVERHEAD_W:,.0f}. Default null: the catalog server's power minus its GPUs' TDP (else 0).",
    )

    # Location-based grid carbon intensity, g CO2 per kWh consumed: 367 = US average 2023, EIA FAQ
    # "0.81 lb CO2 per kWh" (grid_carbon_us_eia_2023 in catalog/citations.yaml; catalog/carbon.yaml).
    grid_carbon_g_per_kwh: Annotated[float, Field(ge=0.0, le=MAX_GRID_CARBON_G_PER_KWH), NUMBER] = Field(
        default=367.0,
        description=f"Grid carbon intensity, g CO2 per kWh of facility energy (location-based); 0 to "
        f"{MAX_GRID_CARBON_G_PER_KWH:,.0f}. Default 367 (US average 2023, EIA).",
    )


class CostSpec(Spec):
    """How the fleet is paid for: rented by the GPU-hour, or owned (capex + energy + colocation).

    Fields of the mode not in use are ignored (so a sweep can flip `mode` alone).
    """

    mode: Literal["rental", "owned"] = Field(
        default="rental",
        description="rental ($ per GPU-hour, all-in) or owned (capex + energy + colocation). Default rental.",
    )
    # USD per GPU-hour, all-in (energy, cooling, space included in the price).
    # None => GpuSpec.rental_usd_per_gpu_hour from the catalog. Public H100 range 1.49-2.85
    # (price_h100_sxm_2026_range, price_h100_neocloud_range_q1_2026); volatile, low confidence.
    rental_usd_per_gpu_hour: Annotated[float, Field(ge=0.0, le=MAX_USD_PER_GPU_HOUR), NUMBER] | None = Field(
        default=None,
        description=f"Rental: USD per GPU-hour, all-in; 0 to {MAX_USD_PER_GPU_HOUR:,.0f}. "
        "Default null: the catalog GPU's price.",
    )
    # Owned: purchase price per GPU including its share of the server (chassis, CPUs, NICs).
    # None => GpuSpec.capex_usd_per_gpu. E.g. DGX H100 $270,000 / 8 = $33,750 (capex_dgx_h100).
    capex_usd_per_gpu: Annotated[float, Field(ge=0.0, le=MAX_CAPEX_USD_PER_GPU), NUMBER] | None = Field(
        default=None,
        description=f"Owned: purchase price per GPU with its share of the server, USD; 0 to "
        f"{MAX_CAPEX_USD_PER_GPU:,.0f}. Default null: the catalog GPU's capex.",
    )
    # Straight-line life of the hardware. Assumption (common 4-5 year server depreciation).
    amortization_years: Annotated[float, Field(ge=MIN_AMORTIZATION_YEARS, le=MAX_AMORTIZATION_YEARS), NUMBER] = Field(
        default=4.0,
        description=f"Owned: straight-line life of the hardware, years; {MIN_AMORTIZATION_YEARS:g} to "
        f"{MAX_AMORTIZATION_YEARS:g}. Default 4.",
    )
    # Cost of capital for the capital-recovery factor. Assumption (a typical corporate WACC).
    interest_rate: Annotated[float, Field(ge=0.0, le=MAX_INTEREST_RATE), NUMBER] = Field(
        default=0.08,
        description="Owned: annual cost of capital for the capital-recovery factor, a fraction; 0 to 1. Default 0.08.",
    )
    # 8.3 c/kWh: elec_tco_calculator_assumption (value.eia_industrial_2024_avg, US industrial
    # average 2024). State figures: elec_eia2023_* (e.g. Virginia industrial 8.92 c/kWh).
    electricity_usd_per_kwh: Annotated[float, Field(ge=0.0, le=MAX_USD_PER_KWH), NUMBER] = Field(
        default=0.083,
        description=f"Owned: electricity price, USD per kWh; 0 to {MAX_USD_PER_KWH:g}. Default 0.083 (US industrial "
        "average 2024).",
    )
    # Wholesale colocation rent per kW of provisioned (critical IT) capacity per month, energy
    # metered separately. 150: mid-point of "$140-$160/kW/month in Tier 1 markets, 2026"
    # (v2-pseo-ai.pages.dev/colocation/pricing, low confidence); encoradvisors.com reports
    # ~$196/kW/month for 250-500 kW deployments in H2 2025. Not in public_figures.yaml.
    colocation_usd_per_kw_month: Annotated[float, Field(ge=0.0, le=MAX_COLOCATION_USD_PER_KW_MONTH), NUMBER] = Field(
        default=150.0,
        description=f"Owned: colocation rent per kW of provisioned IT capacity per month, USD; 0 to "
        f"{MAX_COLOCATION_USD_PER_KW_MONTH:,.0f}. Default 150.",
    )
