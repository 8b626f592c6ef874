"""vLLM's ``vllm bench serve`` (benchmark_serving.py --save-result) and SGLang's ``bench_serving``
result objects, read into BenchPoints: both tools write benchmark_serving's field names, told
apart by the marker keys here. Its own module: one reader per tool's file format. Sources (file and commit) of the fields read: fleetsim/calibrate/bench/readers.py.
"""

import math

from fleetsim.calibrate.bench.point import (
    BenchPoint,
    _concurrency,
    _lengths,
    _lens,
    _load_missing,
    _ms,
    _needs_metric,
    _number,
    _point,
    _rate,
)
from fleetsim.errors import SpecError

_VLLM_MARKERS = frozenset(
    {"model_id", "tokenizer_id", "total_token_throughput", "mean_e2el_ms", "mean_latency_ms", "burstiness",
     "num_prompts", "request_goodput", "request_goodput:", "best_of", "use_beam_search", "endpoint_type"}
)  # fmt: skip
_SGLANG_MARKERS = frozenset(
    {"total_output_tokens_retokenized", "mean_e2e_latency_ms", "median_e2e_latency_ms", "server_info",
     "accept_length", "total_throughput", "random_range_ratio", "sharegpt_output_len", "dataset_name"}
)  # fmt: skip


def _serving(doc: dict, file: str, where: str, index: int, tool: str) -> BenchPoint:
    """vLLM and SGLang share benchmark_serving's field names."""
    completed = doc.get("completed")
    if completed is not None:
        completed = _concurrency(completed, "completed", where) if completed != 0 else 0
    if "request_rate" not in doc:
        _load_missing(where, "request_rate")
    if doc["request_rate"] == "trace":  # SGLang replaying a trace's timestamps
        raise SpecError(f"{where}: field 'request_rate' is \"trace\" (a replayed trace); valid: a rate or inf")
    rate = _rate(doc["request_rate"], "request_rate", where)
    conc = _concurrency(doc.get("max_concurrency"), "max_concurrency", where)
    if rate is None and conc is None:
        _load_missing(where, "request_rate")
    if rate is None:
        rate = math.inf
    mean_in, mean_out, ins, outs = _lengths(
        where,
        _number(doc, "total_input_tokens", where),
        _number(doc, "total_output_tokens", where),
        completed,
        _lens(doc, "input_lens", where),
        _lens(doc, "output_lens", where),
        ("total_input_tokens", "total_output_tokens"),
    )
    point = _point(
        tool,
        file,
        index,
        (conc, rate, completed),
        (mean_in, mean_out, ins, outs),
        output_tokens_per_s=_number(doc, "output_throughput", where),
        ttft_mean_s=_ms(doc, "mean_ttft_ms", where),
        ttft_p50_s=_ms(doc, "median_ttft_ms", where),
        ttft_p99_s=_ms(doc, "p99_ttft_ms", where),
        tpot_mean_s=_ms(doc, "mean_tpot_ms", where),
        tpot_p50_s=_ms(doc, "median_tpot_ms", where),
        itl_mean_s=_ms(doc, "mean_itl_ms", where),
        itl_p50_s=_ms(doc, "median_itl_ms", where),
        duration_s=_number(doc, "duration", where),
        model=str(doc["model_id"])[:200] if isinstance(doc.get("model_id"), str) else None,
    )
    return _needs_metric(point, where, "output_throughput")


def _vllm(doc: dict, file: str, where: str, index: int) -> BenchPoint:
    return _serving(doc, file, where, index, "vllm")


def _sglang(doc: dict, file: str, where: str, index: int) -> BenchPoint:
    return _serving(doc, file, where, index, "sglang")
