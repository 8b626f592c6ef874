"""NVIDIA genai-perf's and AIPerf's ``profile_export_*.json`` read into BenchPoints: the same metric
entries ``{unit, avg, p50, ...}`` in either, with each tool's input_config for the load and the
lengths. Its own module: one reader per tool's file format. Sources (file and commit) of the fields read: fleetsim/calibrate/bench/readers.py.
"""

import math
from typing import Any

from fleetsim.calibrate.bench.point import (
    BenchPoint,
    _concurrency,
    _load_missing,
    _needs_metric,
    _number,
    _point,
    _rate,
)
from fleetsim.errors import SpecError, shorten

_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0}
# genai-perf metrics/statistics.py _add_units; AIPerf common/enums/metric_enums.py (GenericMetricUnit,
# MetricOverTimeUnit): counts and rates taken as they are.
_COUNT_UNITS = frozenset(
    {"", "count", "requests", "tokens", "tokens/sec", "tokens/s", "requests/sec", "tokens/sec/user"}
)


def _metric(doc: dict, name: str, where: str, stat: str = "avg") -> float | None:
    """A genai-perf / AIPerf metric entry {unit, avg, p50, ...} in SI (seconds; tokens/s as is)."""
    entry = doc.get(name)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: field '{name}' is not a metric entry {{unit, avg, ...}}")
    value = _number(entry, stat, f"{where} ({name})")
    if value is None:
        return None
    unit = str(entry.get("unit", "")).strip()
    if unit in _TIME_UNITS:
        return value * _TIME_UNITS[unit]
    if unit in _COUNT_UNITS:
        return value
    raise SpecError(f"{where}: field '{name}.unit' is {shorten(repr(unit), 40)}; valid: ns, us, ms, s, tokens/sec")


def _dig(doc: Any, *keys: str):
    for k in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(k)
    return doc


def _nvidia(doc: dict, file: str, where: str, index: int, tool: str, conc_raw, rate_raw, conc_field, rate_field,
            config_in, config_out) -> BenchPoint:  # fmt: skip
    conc = _concurrency(conc_raw, conc_field, where)
    rate = _rate(rate_raw, rate_field, where)
    if conc is None and rate is None:
        _load_missing(where, f"{conc_field} or {rate_field}")
    if rate is None:
        rate = math.inf
    mean_in = _metric(doc, "input_sequence_length", where)
    mean_out = _metric(doc, "output_sequence_length", where)
    fields = ("input_sequence_length", "output_sequence_length")
    if not mean_in:
        mean_in = config_in if isinstance(config_in, (int, float)) and not isinstance(config_in, bool) else None
    if not mean_out:
        mean_out = config_out if isinstance(config_out, (int, float)) and not isinstance(config_out, bool) else None
    for value, field in ((mean_in, fields[0]), (mean_out, fields[1])):
        if value is None or not math.isfinite(value) or value <= 0:
            raise SpecError(f"{where}: missing field '{field}' (the request lengths a fit needs)")
    count = _metric(doc, "request_count", where)
    point = _point(
        tool,
        file,
        index,
        (conc, rate, int(count) if count else None),
        (float(mean_in), float(mean_out), None, None),
        output_tokens_per_s=_metric(doc, "output_token_throughput", where),
        ttft_mean_s=_metric(doc, "time_to_first_token", where),
        ttft_p50_s=_metric(doc, "time_to_first_token", where, "p50"),
        ttft_p99_s=_metric(doc, "time_to_first_token", where, "p99"),
        tpot_mean_s=_metric(doc, "inter_token_latency", where),
        tpot_p50_s=_metric(doc, "inter_token_latency", where, "p50"),
        itl_mean_s=_metric(doc, "inter_chunk_latency", where),
        itl_p50_s=_metric(doc, "inter_chunk_latency", where, "p50"),
        duration_s=_metric(doc, "benchmark_duration", where),
        model=_model_name(doc),
    )
    return _needs_metric(point, where, "output_token_throughput")


def _model_name(doc: dict) -> str | None:
    config = doc.get("input_config")
    names = _dig(config, "endpoint", "model_names") or _dig(config, "model_names") or _dig(config, "model")
    if isinstance(names, list) and names and isinstance(names[0], str):
        return names[0][:200]
    return names[:200] if isinstance(names, str) else None


def _genai_perf(doc: dict, file: str, where: str, index: int) -> BenchPoint:
    config = doc.get("input_config")
    if not isinstance(config, dict):
        raise SpecError(f"{where}: missing field 'input_config'")
    stimulus = _dig(config, "perf_analyzer", "stimulus")
    if isinstance(stimulus, dict):  # genai-perf with config files
        conc_raw, rate_raw = stimulus.get("concurrency"), stimulus.get("request_rate")
        fields = ("input_config.perf_analyzer.stimulus.concurrency", "input_config.perf_analyzer.stimulus.request_rate")
        config_in = _dig(config, "input", "synthetic_tokens", "mean")
        config_out = _dig(config, "input", "output_tokens", "mean")
    else:  # earlier genai-perf: the command-line arguments, flat
        conc_raw, rate_raw = config.get("concurrency"), config.get("request_rate")
        fields = ("input_config.concurrency", "input_config.request_rate")
        config_in, config_out = config.get("synthetic_input_tokens_mean"), config.get("output_tokens_mean")
    return _nvidia(doc, file, where, index, "genai-perf", conc_raw, rate_raw, *fields, config_in, config_out)


def _aiperf(doc: dict, file: str, where: str, index: int) -> BenchPoint:
    config = doc.get("input_config")
    if not isinstance(config, dict):
        raise SpecError(f"{where}: missing field 'input_config'")
    loadgen = config.get("loadgen") if isinstance(config.get("loadgen"), dict) else {}
    prompt = _dig(config, "input", "prompt")
    return _nvidia(
        doc,
        file,
        where,
        index,
        "aiperf",
        loadgen.get("concurrency"),
        loadgen.get("request_rate"),
        "input_config.loadgen.concurrency",
        "input_config.loadgen.request_rate",
        _dig(prompt, "input_tokens", "mean"),
        _dig(prompt, "output_tokens", "mean"),
    )
