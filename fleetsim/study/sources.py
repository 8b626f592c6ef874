"""The economics data files: rental offers (catalog/offers.yaml), citations (catalog/citations.yaml)
and grid carbon intensity (catalog/carbon.yaml), and `--price GPU=USD` parsing."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import yaml

from fleetsim.catalog import load_gpu
from fleetsim.cost import RentalOffer
from fleetsim.errors import SpecError
from fleetsim.spec.hardware import GpuSpec

CATALOG = Path(__file__).resolve().parents[1] / "catalog"


@cache
def _yaml(name: str) -> dict:
    return yaml.safe_load((CATALOG / name).read_text(encoding="utf-8")) or {}


def citations() -> dict[str, dict]:
    return dict(_yaml("citations.yaml"))


def default_grid_carbon() -> tuple[float, str]:
    """(g CO2 per kWh, citation key) of the default grid."""
    d = _yaml("carbon.yaml")
    g = d["grids"][d["default"]]
    return float(g["g_co2_per_kwh"]), str(g["source"])


def rental_offers(gpu: GpuSpec, usd_per_gpu_hour: float | None = None) -> list[RentalOffer]:
    """Offers for one GPU: a given per-GPU price (scenario or --price) is one 1-GPU offer; else the
    offers file; else the catalog price as a 1-GPU offer; else none."""
    if usd_per_gpu_hour is not None:
        return [RentalOffer(gpu.name, "price given", 1, float(usd_per_gpu_hour), "scenario or --price", "")]
    offers = [
        RentalOffer(
            gpu=o["gpu"],
            provider=o["provider"],
            gpus_per_instance=int(o["gpus_per_instance"]),
            usd_per_instance_hour=float(o["usd_per_instance_hour"]),
            source=str(o.get("source", "")),
            date=str(o.get("date", "")),
        )
        for o in _yaml("offers.yaml").get("offers", [])
        if o["gpu"] == gpu.name
    ]
    if not offers and gpu.rental_usd_per_gpu_hour is not None:
        offers = [RentalOffer(gpu.name, "catalog price", 1, gpu.rental_usd_per_gpu_hour, "catalog", "")]
    return offers


def parse_prices(items: Iterable[str] | None, what: str = "--price") -> dict[str, float]:
    """['h100-sxm=2.10', 'h200=3'] -> {'h100-sxm': 2.1, 'h200': 3.0} (catalog names resolved)."""
    out: dict[str, float] = {}
    for item in items or []:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            m = re.fullmatch(r"([^=\s]+)\s*=\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)", part)
            if not m:
                raise SpecError(f"{what}: '{part}' is not GPU=USD (e.g. {what} h100-sxm=2.10)")
            value = float(m.group(2))
            if not 0 < value <= 1e6:
                raise SpecError(f"{what}: {part!r}: the price must be > 0 and <= 1,000,000")
            out[load_gpu(m.group(1)).name] = value
    return out


def cite(text: str, refs: dict[str, int]) -> str:
    """Replace every citation key in `text` by [n] (numbered in `refs`, first use first)."""
    known = citations()

    def sub(m: re.Match) -> str:
        key = m.group(0)
        if key not in known:
            return key
        if key not in refs:
            refs[key] = len(refs) + 1
        return f"[{refs[key]}]"

    return re.sub(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", sub, text)


def reference_list(refs: Mapping[str, int]) -> list[dict]:
    """The cited entries in number order: n, title, url (or None), where, date, confidence."""
    known = citations()
    return [{"n": n, "key": k, **known[k]} for k, n in sorted(refs.items(), key=lambda kv: kv[1])]
