"""GPU and server failures as alternating up/down renewal processes, and the replica outages they cause.

Each GPU and each server is a unit that is up for a time drawn from its time-to-failure law
(exponential, or Weibull of shape k with the same mean: scale = MTBF / Gamma(1 + 1/k)), then down
for a repair time (fixed, or exponential with the mean), then up again, and so on. A replica (a
tensor-parallel group of `tp` GPUs, packed onto servers of `gpus_per_server` in order) is down
while ANY of its GPUs or any server it spans is down: its outages are the union of its units'.

Closed forms (alternating renewal theory: the long-run fraction of time up is
E[up] / (E[up] + E[down]) whatever the laws):
    A_unit = MTBF / (MTBF + MTTR);  A_replica = A_gpu^tp x A_server^(servers it spans)
(units independent). Draws come from the caller's numpy Generator: same seed, same timeline.

Rates come from fleetsim/catalog/reliability.yaml (FailureSpec.source): MTBF of one unit =
unit-hours watched / failures counted in the study. Pure: no simpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from fleetsim.errors import SpecError
from fleetsim.spec.dynamics import FailureSpec
from fleetsim.spec.yaml_file import read_mapping

RELIABILITY_FILE = Path(__file__).parent / "catalog" / "reliability.yaml"
HOUR_S = 3600.0


@dataclass(frozen=True)
class FailureProcess:
    """One kind of unit's failure law: mean up time (MTBF) and mean repair time, seconds."""

    mtbf_s: float
    repair_s: float
    distribution: Literal["exponential", "weibull"] = "exponential"
    weibull_shape: float = 1.0
    repair_distribution: Literal["fixed", "exponential"] = "exponential"

    def __post_init__(self) -> None:
        for name in ("mtbf_s", "repair_s", "weibull_shape"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise SpecError(f"failure process {name} = {value!r}; valid: a finite number > 0")

    @property
    def availability(self) -> float:
        """Long-run fraction of time up: MTBF / (MTBF + MTTR)."""
        return self.mtbf_s / (self.mtbf_s + self.repair_s)

    def draw_up_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.distribution == "weibull":
            scale = self.mtbf_s / math.gamma(1.0 + 1.0 / self.weibull_shape)
            return scale * rng.weibull(self.weibull_shape, n)
        return rng.exponential(self.mtbf_s, n)

    def draw_down_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.repair_distribution == "fixed":
            return np.full(n, self.repair_s)
        return rng.exponential(self.repair_s, n)


# --------------------------------------------------------------------------- published rates


@cache
def _studies() -> dict:
    return read_mapping(RELIABILITY_FILE, "reliability catalog")["studies"]


def study_names() -> list[str]:
    return sorted(_studies())


def study_mtbf_h(name: str) -> dict[str, float | None]:
    """{'gpu_mtbf_h', 'server_mtbf_h', 'gpu_repair_h', 'server_repair_h'} of a study: unit-hours
    watched / failures counted per process (None where the study has no such process)."""
    studies = _studies()
    if name not in studies:
        raise SpecError(f"failures.source: {name!r} is not in reliability.yaml; valid: {', '.join(study_names())}")
    s = studies[name]
    hours = s.get("period_days", 0) * 24.0
    out: dict[str, float | None] = {
        "gpu_mtbf_h": None,
        "server_mtbf_h": None,
        "gpu_repair_h": s.get("gpu_repair_h"),
        "server_repair_h": s.get("server_repair_h"),
    }
    if "breakdown" in s:
        counts = {p: sum(b["count"] for b in s["breakdown"] if b["process"] == p) for p in ("gpu", "server")}
        units = {"gpu": s["gpus"], "server": s["gpus"] // s["gpus_per_server"]}
        for p, count in counts.items():
            if count:
                out[f"{p}_mtbf_h"] = units[p] * hours / count
    elif "job_mttf_h_by_gpus" in s:
        gpus = s["rate_from_gpus"]
        out["gpu_mtbf_h"] = gpus * float(s["job_mttf_h_by_gpus"][gpus])
    return out


def processes_of(spec: FailureSpec) -> tuple[FailureProcess | None, FailureProcess | None]:
    """(GPU process, server process) of a FailureSpec: the study's figures, overridden field by
    field; a process without an MTBF is None (that kind of unit never fails)."""
    rates = study_mtbf_h(spec.source)

    def process(kind: str) -> FailureProcess | None:
        mtbf_h = getattr(spec, f"{kind}_mtbf_h") or rates[f"{kind}_mtbf_h"]
        if mtbf_h is None:
            return None
        repair_h = getattr(spec, f"{kind}_repair_h") or rates[f"{kind}_repair_h"] or rates["gpu_repair_h"]
        if repair_h is None:
            raise SpecError(
                f"failures.{kind}_repair_h: {spec.source!r} gives no repair time; set failures.{kind}_repair_h"
            )
        return FailureProcess(
            mtbf_h * HOUR_S, float(repair_h) * HOUR_S, spec.distribution, spec.weibull_shape, spec.repair_distribution
        )

    return process("gpu"), process("server")


# --------------------------------------------------------------------------- timelines


def unit_outages(rng: np.random.Generator, process: FailureProcess, units: int, horizon_s: float) -> pd.DataFrame:
    """Down intervals of `units` independent units over [0, horizon_s), each up (new) at 0:
    columns unit, down_s, up_s (up_s may pass the horizon)."""
    if units < 0 or not (math.isfinite(horizon_s) and horizon_s >= 0):
        raise SpecError(f"units = {units!r}, horizon_s = {horizon_s!r}; valid: units >= 0, a finite horizon >= 0")
    cycle_s = process.mtbf_s + process.repair_s
    rows_unit, rows_down, rows_up = [], [], []
    for unit in range(units):
        n = int(horizon_s / cycle_s * 1.3) + 8
        t = 0.0
        while t < horizon_s:
            ups, downs = process.draw_up_s(rng, n), process.draw_down_s(rng, n)
            starts = t + np.cumsum(ups + downs) - downs  # failure times
            ends = starts + downs
            keep = starts < horizon_s
            rows_unit.append(np.full(int(keep.sum()), unit))
            rows_down.append(starts[keep])
            rows_up.append(ends[keep])
            t = float(ends[-1])
    if not rows_down:
        return pd.DataFrame({"unit": np.array([], int), "down_s": np.array([]), "up_s": np.array([])})
    return pd.DataFrame(
        {"unit": np.concatenate(rows_unit), "down_s": np.concatenate(rows_down), "up_s": np.concatenate(rows_up)}
    )


def replica_servers(replica: int, tp: int, gpus_per_server: int) -> range:
    """Servers replica `replica` spans when replicas are packed onto servers in order."""
    first = replica * tp // gpus_per_server
    last = (replica * tp + tp - 1) // gpus_per_server
    return range(first, last + 1)


def _merge(intervals: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    out: list[tuple[float, float, str]] = []
    for down, up, cause in sorted(intervals):
        if out and down <= out[-1][1]:
            prev = out[-1]
            out[-1] = (prev[0], max(prev[1], up), prev[2])
        else:
            out.append((down, up, cause))
    return out


def replica_outages(
    rng: np.random.Generator,
    gpu: FailureProcess | None,
    server: FailureProcess | None,
    *,
    replicas: int,
    tp: int,
    gpus_per_server: int,
    horizon_s: float,
) -> pd.DataFrame:
    """The fleet's replica down/up timeline: one row per outage (replica, down_s, up_s, cause:
    the unit kind that failed first), overlapping failures of one replica merged. The simulator
    takes a replica out at down_s (its in-flight requests re-queued) and back at up_s."""
    if tp < 1 or gpus_per_server < 1:
        raise SpecError(f"tp = {tp!r}, gpus_per_server = {gpus_per_server!r}; valid: both >= 1")
    n_gpus = replicas * tp
    n_servers = -(-n_gpus // gpus_per_server)
    per_replica: list[list[tuple[float, float, str]]] = [[] for _ in range(replicas)]
    if gpu is not None:
        g = unit_outages(rng, gpu, n_gpus, horizon_s)
        for unit, down, up in zip(g["unit"].to_numpy() // tp, g["down_s"], g["up_s"]):
            per_replica[int(unit)].append((float(down), float(up), "gpu"))
    if server is not None:
        s = unit_outages(rng, server, n_servers, horizon_s)
        by_server: dict[int, list[tuple[float, float]]] = {}
        for unit, down, up in zip(s["unit"], s["down_s"], s["up_s"]):
            by_server.setdefault(int(unit), []).append((float(down), float(up)))
        for r in range(replicas):
            for srv in replica_servers(r, tp, gpus_per_server):
                per_replica[r].extend((d, u, "server") for d, u in by_server.get(srv, []))
    rows = [(r, d, u, c) for r in range(replicas) for d, u, c in _merge(per_replica[r])]
    return pd.DataFrame(rows, columns=["replica", "down_s", "up_s", "cause"])


def replica_availability(
    gpu: FailureProcess | None, server: FailureProcess | None, *, replica: int, tp: int, gpus_per_server: int
) -> float:
    """Closed-form long-run availability of one replica: A_gpu^tp x A_server^(servers spanned)."""
    a = gpu.availability**tp if gpu is not None else 1.0
    if server is not None:
        a *= server.availability ** len(replica_servers(replica, tp, gpus_per_server))
    return a


def fleet_availability(
    gpu: FailureProcess | None, server: FailureProcess | None, *, replicas: int, tp: int, gpus_per_server: int
) -> float:
    """Expected fraction of replicas up, the mean of replica_availability over the fleet."""
    return sum(
        replica_availability(gpu, server, replica=r, tp=tp, gpus_per_server=gpus_per_server) for r in range(replicas)
    ) / max(replicas, 1)


def downtime_s(outages: pd.DataFrame, horizon_s: float) -> float:
    """Replica-seconds down within [0, horizon_s) of a replica_outages timeline."""
    return float((outages["up_s"].clip(upper=horizon_s) - outages["down_s"]).clip(lower=0).sum())


def spot_reclaim_process(reclaims_per_instance_hour: float, cold_start_s: float) -> FailureProcess | None:
    """Spot reclaims as a failure process of whole instances (one per replica): a reclaim every
    1 / rate hours on average, the replica back after a cold start on a fresh instance. None at
    rate 0. Feed it to replica_outages as the `server` process with gpus_per_server = tp."""
    if reclaims_per_instance_hour < 0 or not math.isfinite(reclaims_per_instance_hour):
        raise SpecError(f"billing.spot_interruptions_per_instance_hour = {reclaims_per_instance_hour!r}; valid: >= 0")
    if reclaims_per_instance_hour == 0:
        return None
    return FailureProcess(HOUR_S / reclaims_per_instance_hour, max(cold_start_s, 1e-9), repair_distribution="fixed")


def outage_summary(outages: pd.DataFrame, replicas: int, horizon_s: float) -> dict:
    """Measured availability of a replica_outages timeline over [0, horizon_s): outages (count,
    and by cause), replica-hours down, and the fraction of replica-time up."""
    inside = outages[outages["down_s"] < horizon_s]
    down = downtime_s(inside, horizon_s)
    return {
        "outages": int(len(inside)),
        "by_cause": {str(k): int(v) for k, v in inside["cause"].value_counts().sort_index().items()},
        "replica_hours_down": down / HOUR_S,
        "availability": 1.0 - down / (replicas * horizon_s) if replicas and horizon_s > 0 else 1.0,
    }
