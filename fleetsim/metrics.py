"""Summary metrics: pure functions of a run's frames and the scenario's assumptions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fleetsim.admission import ClassPolicies, class_summary, completed_rows, slo_met
from fleetsim.cost import hourly_cost_usd, split_input_output_cost, usd_per_million_tokens
from fleetsim.facility import facility_breakdown, heat_load, it_power_kw, num_servers, server_overhead_w
from fleetsim.memory import MemoryPlan, kv_size, sequences_that_fit
from fleetsim.server_power import wall_power_summary
from fleetsim.sim.block_cache import prefix_cache_summary
from fleetsim.sim.engine import RawRun
from fleetsim.sketch import RELATIVE_ERROR, LogHistogram
from fleetsim.spec.architecture import Architecture
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.scenario import ScenarioSpec

PERCENTILES = (50, 90, 99)


def _clean(x: float) -> float | None:
    """JSON-safe float: NaN/inf become None."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return float(x)


# Latency samples up to this many: exact percentiles (numpy's, linear interpolation). Above it, a
# LogHistogram filled a chunk at a time, so a run of 10M+ requests makes no sorted copy of each
# column; its percentiles are within fleetsim.sketch.RELATIVE_ERROR (0.25%) of a sample adjacent to
# the exact one, and the summary's latency_s.percentiles block says so.
EXACT_PERCENTILES_MAX_SAMPLES = 1_000_000
SKETCH_CHUNK_ROWS = 1 << 20


def latency_stats(values, rows: np.ndarray | None = None, percentiles=PERCENTILES) -> dict:
    """Mean and percentiles of `values` (NaN left out) at `rows` (a boolean mask; all when None)."""
    x = np.asarray(values, dtype=np.float64)
    n = int(rows.sum()) if rows is not None else len(x)
    if n > EXACT_PERCENTILES_MAX_SAMPLES:
        return _sketched_stats(x, rows, percentiles)
    keep = ~np.isnan(x)
    if rows is not None:
        keep &= rows
    v = x[keep]  # the one copy: the mean first, then the percentiles partition it in place
    del keep
    if len(v) == 0:
        return {"mean": None, **{f"p{p:g}": None for p in percentiles}}
    out = {"mean": float(v.mean())}
    for p, q in zip(percentiles, np.percentile(v, percentiles, overwrite_input=True)):
        out[f"p{p:g}"] = float(q)
    return out


def _sketched_stats(x: np.ndarray, rows: np.ndarray | None, percentiles) -> dict:
    h = LogHistogram()
    for a in range(0, len(x), SKETCH_CHUNK_ROWS):
        chunk = x[a : a + SKETCH_CHUNK_ROWS]
        h.add_values(chunk if rows is None else chunk[rows[a : a + SKETCH_CHUNK_ROWS]])
    return {"mean": h.mean, **{f"p{p:g}": h.quantile(p / 100.0) for p in percentiles}}


def percentile_method(samples: int) -> dict | None:
    """The summary's note on how latency percentiles were computed: None (exact) up to
    EXACT_PERCENTILES_MAX_SAMPLES samples, else the sketch and its error bound."""
    if samples <= EXACT_PERCENTILES_MAX_SAMPLES:
        return None
    return {
        "method": "log_histogram",
        "relative_error": RELATIVE_ERROR,
        "samples": samples,
        "exact_up_to_samples": EXACT_PERCENTILES_MAX_SAMPLES,
    }


def slo_mask(requests: pd.DataFrame, ttft_s: float, tpot_s: float) -> pd.Series:
    """True where a request completed within both targets (a 1-token output has no TPOT)."""
    done = requests["status"] == "completed"
    tpot_ok = requests["tpot_s"].isna() | (requests["tpot_s"] <= tpot_s)
    return done & (requests["ttft_s"] <= ttft_s) & tpot_ok


def emitted_tokens(requests: pd.DataFrame, t: float, step_s: float) -> float:
    """Output tokens the requests of a run had emitted by time t. A request emits its first token
    at first_token_s and the rest one per iteration until finish_s (spread evenly over that span);
    one that had not finished when the run stopped is taken at one token per `step_s` from its
    first token, capped at its length."""
    first = requests["first_token_s"].to_numpy(dtype=float)
    finish = requests["finish_s"].to_numpy(dtype=float)
    out = requests["output_tokens"].to_numpy(dtype=float)
    started = np.isfinite(first) & (first <= t)
    done = np.isfinite(finish) & completed_rows(requests)
    span = np.where(done & (finish > first), finish - first, 1.0)
    after_first = np.where(
        done,
        (out - 1.0) * np.clip((t - first) / span, 0.0, 1.0),
        np.minimum(out - 1.0, np.floor(np.maximum(t - first, 0.0) / step_s)),
    )
    return float(np.sum(np.where(started, 1.0 + after_first, 0.0)))


STEADY_COMPLETION_RATIO = 0.95  # completions below this share of arrivals, with a growing queue: not steady
AUTO_WARMUP_FRACTION = 0.1
FILLED_FRACTION = 0.9


def steady_window(raw: RawRun) -> tuple[float, float] | None:
    """The steady-state window: from the warm-up to the end of arrivals (the drain after it
    excluded). The warm-up is run.warmup_s, or else the first time after 10% of the arrival
    period at which the running count reaches 90% of its median over the second half (capped at
    half the period): a fleet still filling up completes fewer requests than arrive. An offline
    batch (every request at t = 0) has no steady state of arrivals: None, the whole run."""
    end = raw.arrivals_end_s
    if end <= 0:
        return None
    if raw.warmup_s > 0:
        return (raw.warmup_s, end) if raw.warmup_s < end else None
    ts = raw.timeseries
    start = AUTO_WARMUP_FRACTION * end
    late = ts.loc[(ts["time_s"] >= 0.5 * end) & (ts["time_s"] <= end), "running"]
    if len(late):
        target = FILLED_FRACTION * float(late.median())
        filled = ts.loc[(ts["time_s"] >= start) & (ts["running"] >= target), "time_s"]
        if len(filled):
            start = min(max(start, float(filled.iloc[0])), 0.5 * end)
    return (start, end)


def steady_state(raw: RawRun, n_gpus: int) -> dict:
    """Rates over the steady-state window (warm-up and drain excluded): tokens as emitted in the
    window (a streaming counter's view), GPU energy from the metered cumulative energy at the
    window's ends. A window whose queue grew while completions fell behind arrivals is flagged:
    the fleet is overloaded and the rates are those of a queue that never drains."""
    req, sim_s = raw.requests, raw.simulated_s
    window = steady_window(raw)
    a, b = window if window else (0.0, sim_s)
    span = max(b - a, 1e-12)
    tpot = req.loc[req["status"] == "completed", "tpot_s"]
    step = float(tpot.median()) if tpot.notna().any() else span
    ts = raw.timeseries
    if window and len(ts) > 1 and "output_tokens" in ts:
        # The replicas' token meters, sampled: exact up to a sample interval at each end.
        t = np.interp([a, b], ts["time_s"], ts["output_tokens"])
        out_tok = float(t[1] - t[0])
    else:
        out_tok = emitted_tokens(req, b, step) - emitted_tokens(req, a, step)
    first = req["first_token_s"].to_numpy(dtype=float)
    started = np.isfinite(first) & (first >= a) & (first < b)
    in_tok = float(req.loc[started, "input_tokens"].sum())
    finish = req["finish_s"].to_numpy(dtype=float)
    done = completed_rows(req) & (finish >= a) & (finish < b)
    arrivals = int(((req["arrival_s"] >= a) & (req["arrival_s"] < b)).sum())
    if window and len(ts) > 1:
        e = np.interp([a, b], ts["time_s"], ts["gpu_energy_j"])
        energy = float(e[1] - e[0])
        q0, q1 = np.interp([a, b], ts["time_s"], ts["queued"])
    else:
        energy = float(raw.replicas["energy_j"].sum())
        q0 = q1 = 0.0
    completions = int(done.sum())
    steady, warning = True, None
    if (
        window
        and arrivals
        and completions < STEADY_COMPLETION_RATIO * arrivals
        and q1 > q0 + max(10.0, 0.05 * arrivals)
    ):
        steady = False
        warning = (
            f"not in steady state: the queue grew from {q0:,.0f} to {q1:,.0f} requests over the window while "
            f"{completions:,} of {arrivals:,} arrivals completed; the fleet is overloaded (latencies and "
            "throughput are those of a queue that never drains)"
        )
    return {
        "window_s": [a, b],
        "basis": "steady_state" if window else "whole_run",
        "output_tokens_per_s": out_tok / span,
        "input_tokens_per_s": in_tok / span,
        "requests_per_s": completions / span,
        "offered_requests_per_s": arrivals / span if window else None,
        "gpu_power_w": energy / (span * n_gpus) if n_gpus else 0.0,
        "gpu_energy_j": energy,
        "joules_per_output_token": _clean(energy / out_tok) if out_tok > 0 else None,
        "steady": steady,
        "warning": warning,
    }


def _topology_fields(scenario: ScenarioSpec, gpu: GpuSpec) -> dict:
    """What a pipelined, cross-server or speculative replica ran with (nothing for a plain one)."""
    out: dict = {}
    if scenario.fleet.tp > gpu.gpus_per_server:
        from fleetsim.pipeline_model import tp_link_of

        link = tp_link_of(scenario, gpu)
        out["tp_link"] = link.name if link is not None else None
    if scenario.speculative is not None:
        from fleetsim.speculative_model import fleet_tokens_per_step

        out["speculative_tokens_per_step"] = fleet_tokens_per_step(scenario)
    return out


def summarize(
    raw: RawRun,
    scenario: ScenarioSpec,
    arch: Architecture,
    gpu: GpuSpec,
    plan: MemoryPlan,
    calibration: dict | None = None,
    groups: list | None = None,
) -> dict:
    """The run's summary. A mixed fleet (`groups`: fleetsim.groups.ReplicaGroup) sums its power,
    facility, cost and KV capacity over the groups (fleetsim.group_metrics) and adds `groups`."""
    req = raw.requests
    sim_s = raw.simulated_s
    fleet = scenario.fleet
    # stages x tp GPUs a replica
    n_gpus = fleet.replicas * fleet.gpus_per_replica if not groups else sum(g.gpus for g in groups)
    status = req["status"]
    # Masks over the request table, never a copy of it (a 10M-request table is ~1 GB).
    done = completed_rows(req)
    steady = steady_state(raw, n_gpus)
    a, b = steady["window_s"]
    window_s = max(b - a, 1e-12)
    in_window = (
        (req["arrival_s"] >= a) & (req["arrival_s"] <= b)
        if steady["basis"] == "steady_state"
        else req["arrival_s"] >= 0
    ).to_numpy()
    measured = done & in_window  # completed requests that arrived in the window
    out_tps = steady["output_tokens_per_s"]
    in_tps = steady["input_tokens_per_s"]
    out_tok = out_tps * window_s
    in_tok = in_tps * window_s

    # --- power and energy: GPU power over the window; energy totals over the whole run
    gpu_energy_j = float(raw.replicas["energy_j"].sum())
    gpu_mean_w = steady["gpu_power_w"]
    gpu_peak_w = float(raw.replicas["peak_power_w"].max()) if len(raw.replicas) else 0.0
    if groups:
        from fleetsim.group_metrics import fleet_totals, group_powers, groups_block

        powers, types = group_powers(
            scenario, groups, raw.timeseries, raw.replicas, req, (a, b), steady["basis"] == "steady_state", sim_s
        )
        wall, it_kw, fac, mixed_usd_per_hour = fleet_totals(types)
    else:
        wall = wall_power_summary(gpu, n_gpus, gpu_mean_w, gpu_peak_w)
        if scenario.facility.server_overhead_w is None:
            # IT power is what the servers draw at the wall: GPUs + load-dependent host parts, through
            # the PSUs (fleetsim.server_power); rack-scale systems charged their fraction of a rack.
            it_kw = wall["server_wall_kw"]
        else:  # the scenario's own constant non-GPU power per server
            overhead_w = server_overhead_w(gpu, scenario.facility.server_overhead_w)
            it_kw = it_power_kw(gpu_mean_w * n_gpus, num_servers(n_gpus, gpu.gpus_per_server), overhead_w)
        fac = facility_breakdown(scenario.facility, gpu, n_gpus, it_kw)
    it_energy_kwh = it_kw * sim_s / 3600.0
    all_out = float(req["output_tokens"].to_numpy()[done].sum())

    # --- cost
    if groups:
        cost_mode, usd_per_hour = scenario.cost.mode, mixed_usd_per_hour
    else:
        cost = hourly_cost_usd(
            scenario.cost,
            gpu,
            n_gpus,
            it_kw,
            scenario.facility.pue,
            server_overhead_w=scenario.facility.server_overhead_w,
        )
        cost_mode, usd_per_hour = cost.mode, cost.usd_per_hour
    prefill_s = float(raw.replicas["prefill_s"].sum())
    decode_s = float(raw.replicas["decode_s"].sum())
    usd_window = usd_per_hour * window_s / 3600.0
    usd_in, usd_out = split_input_output_cost(usd_window, prefill_s, decode_s)

    # --- SLO
    slo = scenario.slo
    arrived = int(in_window.sum())
    if scenario.classes:  # each class against its own targets (the scenario's slo for the others)
        ok = slo_met(req, ClassPolicies(scenario.classes, slo.ttft_s, slo.tpot_s)).to_numpy()
    else:
        ok = slo_mask(req, slo.ttft_s, slo.tpot_s).to_numpy()
    attainment = float(ok[in_window].mean()) if arrived else 0.0
    del ok
    q = slo.percentile
    n_measured = int(measured.sum())
    ttft_q = latency_stats(req["ttft_s"], measured, (q,))[f"p{q:g}"] if n_measured else math.inf
    tpot_q = latency_stats(req["tpot_s"], measured, (q,))[f"p{q:g}"]
    tpot_q = 0.0 if tpot_q is None else tpot_q
    latency = {
        "ttft": latency_stats(req["ttft_s"], measured),
        "tpot": latency_stats(req["tpot_s"], measured),
        "itl": {k: _clean(v) for k, v in raw.itl.stats().items()},
        "e2e": latency_stats(req["e2e_s"], measured),
    }
    method = percentile_method(n_measured)
    if method is not None:
        latency["percentiles"] = method

    mean_in = float(req["input_tokens"].mean()) if len(req) else 1.0
    mean_out = float(req["output_tokens"].mean()) if len(req) else 1.0
    mean_ctx = max(1, round(mean_in + mean_out))
    size = kv_size(arch, mean_ctx, scenario.kv_cache)
    fp = plan.footprint
    per_seq = float(fp.bytes_per_rank(round(mean_in), round(mean_out)))
    by_memory = (
        sequences_that_fit(plan.kv_pool_bytes_per_gpu, plan.kv_blocks, plan.block_bytes_per_gpu, per_seq)
        * fleet.replicas
    )
    pool_byte_s = plan.kv_pool_bytes_per_gpu * fleet.replicas * sim_s
    prefix_cache = prefix_cache_summary(raw.replicas)  # None unless the block cache ran
    if groups:  # per group, its own pool; the replicas' byte-seconds are in reference bytes
        by_memory = 0
        pool_byte_s = 0.0
        for g in groups:
            fp = g.model.footprint
            each = float(fp.bytes_per_rank(round(mean_in), round(mean_out)))
            p = g.plan
            by_memory += (
                sequences_that_fit(p.kv_pool_bytes_per_gpu, p.kv_blocks, p.block_bytes_per_gpu, each) * g.replicas
            )
            pool_byte_s += g.pool_ref_bytes * g.replicas * sim_s
    summary = {
        "scenario": scenario.name,
        "seed": scenario.run.seed,
        "simulated_s": sim_s,
        "requests": {
            "arrived": int(len(req)),
            "completed": int(done.sum()),
            "rejected": int((status == "rejected").sum()),
            "in_flight": int((status == "in_flight").sum()),
            "trace_dropped_after_duration": int(raw.trace_dropped_after_duration),
        },
        # Per class: priority and targets, SLO attainment over arrivals (a rejection is a miss),
        # goodput (output tokens of requests meeting their class's SLO), rejections by reason.
        "classes": class_summary(
            req, scenario, (a, b) if steady["basis"] == "steady_state" and b > a else None, raw.rejected_by_reason
        ),
        "window": {
            "start_s": a,
            "end_s": b,
            "basis": steady["basis"],
            "steady": steady["steady"],
            "warning": steady["warning"],
        },
        "throughput": {
            "output_tokens_per_s": out_tps,
            "input_tokens_per_s": in_tps,
            "requests_per_s": steady["requests_per_s"],
            "offered_requests_per_s": steady["offered_requests_per_s"],
            "whole_run_output_tokens_per_s": all_out / sim_s if sim_s else 0.0,
        },
        "latency_s": latency,
        "concurrency": {
            "mean_running": raw.running_area / sim_s if sim_s else 0.0,
            "max_running": raw.max_running,
            "max_by_memory": int(by_memory),
            "mean_queued": raw.queued_area / sim_s if sim_s else 0.0,
        },
        "kv_cache": {
            "bytes_per_token": size.bytes_per_token,
            "capacity_tokens_per_replica": plan.kv_capacity_tokens,
            "mean_utilization": float(raw.replicas["kv_byte_s"].sum() / pool_byte_s) if pool_byte_s else 0.0,
            "preemptions": int(raw.replicas["preemptions"].sum()),
        },
        **({"prefix_cache": prefix_cache} if prefix_cache is not None else {}),
        "power": {
            "gpu_mean_w": gpu_mean_w,
            "whole_run_gpu_mean_w": gpu_energy_j / (sim_s * n_gpus) if sim_s > 0 and n_gpus else 0.0,
            "gpu_peak_w": gpu_peak_w,
            "it_mean_kw": it_kw,
            "facility_mean_kw": fac.facility_kw,
            "energy_kwh": it_energy_kwh,
            "gpu_energy_kwh": gpu_energy_j / 3.6e6,
            "joules_per_output_token": steady["joules_per_output_token"],
            "whole_run_joules_per_output_token": _clean(gpu_energy_j / all_out) if all_out else None,
            **wall,
        },
        "cooling": {
            "heat_load_kw": fac.heat_kw,
            "btu_per_h": fac.heat_btu_per_h,
            "tons": fac.heat_tons,
            "water_l_per_h": fac.water_l_per_h,
            # What the plant must be sized for: every GPU at the run's peak power, at the wall.
            "peak_heat_load_kw": wall["server_wall_peak_kw"],
            "tons_at_peak": heat_load(wall["server_wall_peak_kw"])["tons"],
        },
        "fleet": {
            "gpu": gpu.name if not groups else "+".join(dict.fromkeys(g.gpu.name for g in groups if g.replicas)),
            "gpus": n_gpus,
            "replicas": fleet.replicas if not groups else sum(g.replicas for g in groups),
            "tp": fleet.tp if not groups else (groups[0].tp if len({g.tp for g in groups}) == 1 else None),
            **({"pp": fleet.pipeline.stages} if fleet.pipeline.stages > 1 else {}),
            **_topology_fields(scenario, gpu),
            "servers": fac.servers,
            "racks": fac.racks,
            "provisioned_it_kw": fac.provisioned_it_kw,
        },
        "cost": {
            "mode": cost_mode,
            "usd_per_hour": usd_per_hour,
            "usd_per_million_output_tokens": _clean(usd_per_million_tokens(usd_per_hour, out_tps)),
            "usd_per_million_tokens": _clean(usd_per_million_tokens(usd_per_hour, out_tps + in_tps)),
            "usd_per_million_input_tokens_by_gpu_time": _clean(usd_in / in_tok * 1e6) if in_tok else None,
            "usd_per_million_output_tokens_by_gpu_time": _clean(usd_out / out_tok * 1e6) if out_tok else None,
        },
        "calibration": calibration or {},
        "slo": {
            "ttft_s": slo.ttft_s,
            "tpot_s": slo.tpot_s,
            "percentile": q,
            f"ttft_p{q:g}_s": _clean(ttft_q),
            f"tpot_p{q:g}_s": _clean(tpot_q),
            "attainment": attainment,
            "attainment_target": slo.attainment_target,
            "met": bool(attainment >= slo.attainment_target),
        },
    }
    if groups:
        summary["groups"] = groups_block(powers, groups)
    return summary
