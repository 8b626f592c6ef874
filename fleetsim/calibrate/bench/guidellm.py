"""GuideLLM's ``benchmarks.json`` report read into BenchPoints, one per benchmark (its strategy
gives the load). Its own module: one reader per tool's file format. Sources (file and commit) of the fields read: fleetsim/calibrate/bench/readers.py.
"""

import math
from typing import Any

from fleetsim.calibrate.bench.point import (
    MAX_RUNS_PER_FILE,
    BenchPoint,
    _concurrency,
    _lengths,
    _load_missing,
    _needs_metric,
    _number,
    _point,
    _rate,
)
from fleetsim.errors import SpecError, shorten


def _guidellm(doc: dict, file: str, where: str) -> list[BenchPoint]:
    benchmarks = doc.get("benchmarks")
    if not isinstance(benchmarks, list) or not benchmarks:
        raise SpecError(f"{where}: missing field 'benchmarks' (a list of GuideLLM benchmarks)")
    if len(benchmarks) > MAX_RUNS_PER_FILE:
        raise SpecError(f"{where}: {len(benchmarks):,} benchmarks; valid: at most {MAX_RUNS_PER_FILE:,}")
    return [_guidellm_one(b, file, f"{where} benchmarks[{i}]", i) for i, b in enumerate(benchmarks)]


def _dist(metrics: dict, name: str, where: str, status: str = "successful") -> dict | None:
    m = metrics.get(name)
    if m is None:
        return None
    if not isinstance(m, dict):
        raise SpecError(f"{where}: field 'metrics.{name}' is not a mapping")
    d = m.get(status)
    if d is None:
        return None
    if not isinstance(d, dict):
        raise SpecError(f"{where}: field 'metrics.{name}.{status}' is not a mapping")
    return d


def _stat(d: dict | None, key: str, where: str, field: str, scale: float = 1.0):
    if d is None:
        return None
    if key == "p99":
        pct = d.get("percentiles")
        if not isinstance(pct, dict):
            return None
        x = _number(pct, "p99", f"{where} ({field}.percentiles)")
    else:
        x = _number(d, key, f"{where} ({field})")
    return None if x is None else x * scale


def _guidellm_one(b: Any, file: str, where: str, index: int) -> BenchPoint:
    if not isinstance(b, dict):
        raise SpecError(f"{where}: a benchmark is a mapping, not {type(b).__name__}")
    holder = b.get("config") if isinstance(b.get("config"), dict) else b.get("args")
    strategy = holder.get("strategy") if isinstance(holder, dict) else None
    if not isinstance(strategy, dict) or not isinstance(strategy.get("type_"), str):
        _load_missing(where, "config.strategy.type_")
    kind = strategy["type_"]
    conc: int | None = None
    rate: float | None = None
    if kind == "synchronous":
        conc = 1
    elif kind == "concurrent":
        conc = _concurrency(strategy.get("streams"), "config.strategy.streams", where)
        if conc is None:
            _load_missing(where, "config.strategy.streams")
    elif kind == "throughput":
        conc = _concurrency(strategy.get("max_concurrency"), "config.strategy.max_concurrency", where)
        rate = math.inf
    elif kind in ("constant", "poisson"):
        rate = _rate(strategy.get("rate"), "config.strategy.rate", where)
        if rate is None:
            _load_missing(where, "config.strategy.rate")
        conc = _concurrency(strategy.get("max_concurrency"), "config.strategy.max_concurrency", where)
    else:
        raise SpecError(
            f"{where}: strategy '{shorten(kind, 40)}' has no fleetsim workload; "
            "valid: synchronous, concurrent, throughput, constant, poisson"
        )
    metrics = b.get("metrics")
    if not isinstance(metrics, dict):
        raise SpecError(f"{where}: missing field 'metrics'")
    totals = metrics.get("request_totals", b.get("request_totals"))
    completed = None
    if isinstance(totals, dict) and totals.get("successful") is not None:
        completed = _concurrency(totals["successful"], "request_totals.successful", where)
    prompt = _dist(metrics, "prompt_token_count", where)
    output = _dist(metrics, "output_token_count", where)
    mean_in = _stat(prompt, "mean", where, "metrics.prompt_token_count.successful")
    mean_out = _stat(output, "mean", where, "metrics.output_token_count.successful")
    ins = outs = None
    requests = b.get("requests")
    done = requests.get("successful") if isinstance(requests, dict) else None
    if isinstance(done, list) and done and completed is not None and len(done) == completed:
        # every successful request is listed (GuideLLM samples them unless told not to)
        pi = [r.get("prompt_tokens") if isinstance(r, dict) else None for r in done]
        po = [r.get("output_tokens") if isinstance(r, dict) else None for r in done]
        if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pi + po):
            mean_in, mean_out, ins, outs = _lengths(where, None, None, None, tuple(pi), tuple(po), ("", ""))
    if mean_in is None or mean_in <= 0:
        raise SpecError(f"{where}: missing field 'metrics.prompt_token_count.successful.mean'")
    if mean_out is None or mean_out <= 0:
        raise SpecError(f"{where}: missing field 'metrics.output_token_count.successful.mean'")
    tput = _dist(metrics, "output_tokens_per_second", where, "total") or _dist(
        metrics, "output_tokens_per_second", where
    )
    ttft = _dist(metrics, "time_to_first_token_ms", where)
    itl = _dist(metrics, "inter_token_latency_ms", where)
    point = _point(
        "guidellm",
        file,
        index,
        (conc, rate, completed),
        (mean_in, mean_out, ins, outs),
        output_tokens_per_s=_stat(tput, "mean", where, "metrics.output_tokens_per_second"),
        ttft_mean_s=_stat(ttft, "mean", where, "metrics.time_to_first_token_ms", 1e-3),
        ttft_p50_s=_stat(ttft, "median", where, "metrics.time_to_first_token_ms", 1e-3),
        ttft_p99_s=_stat(ttft, "p99", where, "metrics.time_to_first_token_ms", 1e-3),
        tpot_mean_s=_stat(itl, "mean", where, "metrics.inter_token_latency_ms", 1e-3),
        tpot_p50_s=_stat(itl, "median", where, "metrics.inter_token_latency_ms", 1e-3),
        duration_s=_number(b, "duration", where) if isinstance(b.get("duration"), (int, float)) else None,
    )
    return _needs_metric(point, where, "metrics.output_tokens_per_second")
