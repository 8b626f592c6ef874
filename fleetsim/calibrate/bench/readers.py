"""Result files of the serving benchmarks people already run, read into one BenchPoint each.

    points = read_bench_files([Path("c1.json"), Path("c5.json")])        # tool detected per file
    points = read_bench_file(Path("run.jsonl"), bench_format="sglang")   # or forced

One BenchPoint per run: how the load was offered (``concurrency`` users, or ``request_rate_per_s``,
``math.inf`` when every request was sent at once), the request lengths (means, and the
per-request lists when the file has them), and what was measured, in SI units (seconds,
tokens/s). A file that is not one of these formats, or lacks what a fit needs (a load, the
request lengths, one measured metric), raises SpecError with one line naming the file and the
missing field; the CLI turns it into exit status 2.

Formats and the source each reader follows (field names as the tools write them):

- ``vllm``: ``vllm bench serve`` / ``benchmarks/benchmark_serving.py --save-result`` JSON (JSON
  Lines with ``--append-result``). vllm-project/vllm ``vllm/benchmarks/serve.py`` (commit
  def9ce85ba1079af970a58ed3d42dd861ae35d58: ``result_json`` = date, backend, model_id,
  num_prompts, request_rate (a number or the string "inf"), burstiness, max_concurrency, then
  duration, completed, total_input_tokens, total_output_tokens, output_throughput,
  {mean,median,std,p99}_{ttft,tpot,itl,e2el}_ms and, with ``--save-detailed``, input_lens and
  output_lens) and ``benchmarks/benchmark_serving.py`` (commit
  0049e29c41fd383bda519a3f250e3227713081ef, the same fields). TPOT is per request
  (latency - TTFT) / (output tokens - 1); ITL is every gap between streamed chunks.
- ``sglang``: ``python -m sglang.bench_serving --output-file F.jsonl``: one JSON object appended
  per run. sgl-project/sglang ``python/sglang/bench_serving.py`` (commit
  50a613687fe1ffc6f1bb630c684a24c428a54a74: backend, dataset_name, request_rate,
  total_input_tokens, total_output_tokens, total_output_tokens_retokenized,
  median_ttft_ms, median_itl_ms, output_throughput, duration, completed; later versions add
  max_concurrency, mean/std/p99 of ttft, tpot, itl, server_info, accept_length) and
  ``docs/developer_guide/bench_serving.md`` ("JSONL output format"; ``--output-details`` adds
  input_lens, output_lens). A request rate of ``inf`` is written as the JSON constant Infinity.
- ``guidellm``: GuideLLM's ``benchmarks.json`` report. vllm-project/guidellm
  ``src/guidellm/benchmark/schemas/report.py``, ``schemas/benchmark.py``, ``schemas/metrics.py``
  and ``scheduler/strategies.py`` (commit ee7a77457ba668b4b5ccb40f110518829893b36a; v0.3.0's
  ``benchmark/benchmark.py`` for the older ``args`` key): ``benchmarks[]`` each with
  ``config.strategy`` (``args.strategy`` before v0.4) of ``type_`` synchronous / concurrent
  (``streams``) / throughput (``max_concurrency``) / constant / poisson (``rate``), and
  ``metrics.{prompt_token_count, output_token_count, time_to_first_token_ms,
  inter_token_latency_ms, output_tokens_per_second}.{successful,total}.{mean, median,
  percentiles.p99}``. GuideLLM's inter_token_latency_ms is per request (last - first token) /
  (output tokens - 1), i.e. vLLM's TPOT, and is read as TPOT (GuideLLM reports no per-gap ITL;
  its time_per_output_token_ms includes the first token and is not used).
- ``genai-perf``: NVIDIA genai-perf ``profile_export_genai_perf.json``.
  triton-inference-server/perf_analyzer ``genai-perf/genai_perf/export_data/json_exporter.py``
  and ``metrics/statistics.py`` (commit 263c5f6e0c7a6c15472a54409174981f67930cfe): one entry per
  metric ``{unit, avg, p50, p99, ...}`` (time_to_first_token, inter_token_latency,
  output_token_throughput, input_sequence_length, output_sequence_length, request_count) and
  ``input_config``: ``perf_analyzer.stimulus.{concurrency|request_rate}`` and
  ``input.{synthetic_tokens,output_tokens}.mean`` (genai-perf >= the config-file rework,
  9fd79801), or flat ``concurrency``, ``request_rate``, ``synthetic_input_tokens_mean``,
  ``output_tokens_mean`` before it (commit a186b900ab7fd266f0743cdb8acff6e60ac775f9).
  genai-perf's inter_token_latency is per request (latency - TTFT) / (output tokens - 1)
  (``profile_data_parser/llm_profile_data_parser.py``): read as TPOT.
- ``aiperf``: NVIDIA AIPerf ``profile_export_aiperf.json``. ai-dynamo/aiperf
  ``aiperf/exporters/json_exporter.py`` and ``aiperf/common/models/export_models.py`` (commit
  db4f6397d11ee2d4cfbb41f70b2327315163dcf0): the genai-perf metric entries (same names,
  ``{unit, avg, p50, p99, ...}``), ``inter_chunk_latency`` for the per-gap ITL,
  ``input_config.loadgen.{concurrency|request_rate}``,
  ``input_config.input.prompt.{input_tokens,output_tokens}.mean``, ``was_cancelled``,
  ``error_summary``. AIPerf's inter_token_latency is (request latency - TTFT) / (OSL - 1)
  (``aiperf/metrics/types/inter_token_latency_metric.py``): read as TPOT.

Pure: no simulation, no fitting.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetsim.errors import SpecError, shorten
from fleetsim.spec.yaml_file import read_text

#: Largest result file read (a vLLM ``--save-detailed`` file of 10,000 requests is ~50 MB).
MAX_BENCH_BYTES = 256 * 1024 * 1024
#: Runs (JSON Lines objects, GuideLLM benchmarks) read from one file.
MAX_RUNS_PER_FILE = 10_000

BENCH_FORMATS = ("vllm", "sglang", "guidellm", "genai-perf", "aiperf")

_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0}
# genai-perf metrics/statistics.py _add_units; AIPerf common/enums/metric_enums.py (GenericMetricUnit,
# MetricOverTimeUnit): counts and rates taken as they are.
_COUNT_UNITS = frozenset(
    {"", "count", "requests", "tokens", "tokens/sec", "tokens/s", "requests/sec", "tokens/sec/user"}
)
_VLLM_MARKERS = frozenset(
    {"model_id", "tokenizer_id", "total_token_throughput", "mean_e2el_ms", "mean_latency_ms", "burstiness",
     "num_prompts", "request_goodput", "request_goodput:", "best_of", "use_beam_search", "endpoint_type"}
)  # fmt: skip
_SGLANG_MARKERS = frozenset(
    {"total_output_tokens_retokenized", "mean_e2e_latency_ms", "median_e2e_latency_ms", "server_info",
     "accept_length", "total_throughput", "random_range_ratio", "sharegpt_output_len", "dataset_name"}
)  # fmt: skip


@dataclass(frozen=True)
class BenchPoint:
    """One benchmark run, normalized. Times in seconds, throughput in output tokens/s (whole
    deployment the tool measured); None where the file does not say."""

    tool: str
    file: str
    index: int  # run within the file (JSON Lines line, GuideLLM benchmark), from 0
    concurrency: int | None  # users kept in flight (closed loop)
    request_rate_per_s: float | None  # offered rate; math.inf: every request sent at once
    completed: int | None
    mean_input_tokens: float
    mean_output_tokens: float
    # Per request as the file lists them, when it does (an output of 0: no token came back; the
    # means above leave those requests out).
    input_lens: tuple[int, ...] | None = None
    output_lens: tuple[int, ...] | None = None
    output_tokens_per_s: float | None = None
    ttft_mean_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p99_s: float | None = None
    tpot_mean_s: float | None = None
    tpot_p50_s: float | None = None
    itl_mean_s: float | None = None
    itl_p50_s: float | None = None
    duration_s: float | None = None
    model: str | None = None  # as the tool recorded it

    @property
    def mode(self) -> str:
        """closed (users kept in flight), offline (every request at t = 0), or poisson (a rate)."""
        rate = self.request_rate_per_s
        if rate is not None and math.isfinite(rate):
            return "poisson"
        if self.concurrency is not None:
            return "closed"
        return "offline"

    @property
    def label(self) -> str:
        name = Path(self.file).name
        return f"{name}#{self.index}" if self.index else name

    @property
    def load(self) -> str:
        """The offered load in words: 'concurrency 5', 'all 320 at once', 'rate 2.5/s'."""
        if self.mode == "closed":
            return f"concurrency {self.concurrency}"
        if self.mode == "offline":
            return f"all {self.completed} at once" if self.completed else "all at once"
        cap = f", at most {self.concurrency} in flight" if self.concurrency else ""
        return f"rate {self.request_rate_per_s:g}/s{cap}"


# --------------------------------------------------------------------------- files


def read_bench_files(paths, bench_format: str = "auto") -> list[BenchPoint]:
    """Every run of every file, in order."""
    out: list[BenchPoint] = []
    for p in paths:
        out.extend(read_bench_file(p, bench_format))
    return out


def read_bench_file(path, bench_format: str = "auto") -> list[BenchPoint]:
    """The runs in one result file (JSON, or JSON Lines of one run per line); the tool is
    detected from the content unless `bench_format` names it."""
    if bench_format != "auto" and bench_format not in BENCH_FORMATS:
        raise SpecError(
            f"--bench-format: '{shorten(bench_format)}' is unknown; valid: auto, {', '.join(BENCH_FORMATS)}"
        )
    path = Path(path)
    shown = shorten(str(path), 160)
    docs = _documents(read_text(path, "--from-bench", MAX_BENCH_BYTES), shown)
    points: list[BenchPoint] = []
    for n, doc in enumerate(docs):
        where = shown if len(docs) == 1 else f"{shown} (run {n + 1})"
        tool = bench_format if bench_format != "auto" else detect_format(doc)
        if tool is None:
            raise SpecError(
                f"{where}: not a result file of {', '.join(BENCH_FORMATS)} ({_keys_hint(doc)}); "
                "pass --bench-format to name the tool"
            )
        if not isinstance(doc, dict):
            raise SpecError(f"{where}: a {tool} result is a JSON object, not {type(doc).__name__}")
        if tool == "guidellm":
            points.extend(_guidellm(doc, str(path), where))
        else:
            reader = {"vllm": _vllm, "sglang": _sglang, "genai-perf": _genai_perf, "aiperf": _aiperf}[tool]
            points.append(reader(doc, str(path), where, len(points)))
    if not points:
        raise SpecError(f"{shown}: no benchmark runs in the file")
    return points


def _documents(text: str, shown: str) -> list[Any]:
    """One JSON document, or JSON Lines (one document per non-empty line)."""
    stripped = text.strip()
    if not stripped:
        raise SpecError(f"{shown}: empty file; valid: a benchmark result (JSON or JSON Lines)")
    try:
        return [json.loads(stripped)]
    except RecursionError:
        raise SpecError(f"{shown}: refused: JSON nested too deep") from None
    except ValueError as whole:
        lines = [(i + 1, s) for i, s in enumerate(stripped.splitlines()) if s.strip()]
        if len(lines) < 2:
            raise SpecError(f"{shown}: not JSON ({_json_problem(whole)}); valid: a benchmark result file") from None
    if len(lines) > MAX_RUNS_PER_FILE:
        raise SpecError(f"{shown}: {len(lines):,} lines; valid: at most {MAX_RUNS_PER_FILE:,} runs per file")
    docs = []
    for number, line in lines:
        try:
            docs.append(json.loads(line))
        except RecursionError:
            raise SpecError(f"{shown}: refused: JSON nested too deep at line {number}") from None
        except ValueError as exc:
            raise SpecError(
                f"{shown}: not JSON nor JSON Lines (line {number}: {_json_problem(exc)}); "
                "valid: a benchmark result file"
            ) from None
    return docs


def _json_problem(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return shorten(str(exc), 80)


def _keys_hint(doc: Any) -> str:
    if not isinstance(doc, dict):
        return f"the document is a JSON {type(doc).__name__}"
    keys = sorted(str(k) for k in doc)[:6]
    return "its keys: " + shorten(", ".join(keys), 100) if keys else "an empty object"


def detect_format(doc: Any) -> str | None:
    """Which tool wrote this JSON document (None: none of them)."""
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("benchmarks"), list):
        return "guidellm"
    config = doc.get("input_config")
    if isinstance(config, dict) and any(_is_metric(v) for v in doc.values()):
        if "loadgen" in config or "was_cancelled" in doc or "error_summary" in doc:
            return "aiperf"
        return "genai-perf"
    keys = set(doc)
    if "output_throughput" in keys or "completed" in keys:
        if keys & _SGLANG_MARKERS:
            return "sglang"
        if keys & _VLLM_MARKERS:
            return "vllm"
    return None


def _is_metric(v: Any) -> bool:
    return isinstance(v, dict) and "unit" in v and ("avg" in v or "p50" in v)


# --------------------------------------------------------------------------- values


def _number(doc: dict, key: str, where: str, *, required: bool = False, positive: bool = False):
    """doc[key] as a finite float (None when absent or null, unless required)."""
    value = doc.get(key)
    if value is None:
        if required:
            raise SpecError(f"{where}: missing field '{key}'")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where}: field '{key}' is {shorten(repr(value), 40)}; valid: a number")
    x = float(value)
    if not math.isfinite(x) or x < 0 or (positive and x == 0):
        raise SpecError(f"{where}: field '{key}' is {value!r}; valid: a finite number {'> 0' if positive else '>= 0'}")
    return x


def _ms(doc: dict, key: str, where: str):
    x = _number(doc, key, where)
    return None if x is None else x * 1e-3


def _rate(value: Any, key: str, where: str) -> float | None:
    """A request rate: a number, "inf"/Infinity (everything at once), or null."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() in ("inf", "infinity"):
            return math.inf
        raise SpecError(f"{where}: field '{key}' is {shorten(repr(value), 40)}; valid: a number or \"inf\"")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value <= 0:
        raise SpecError(f"{where}: field '{key}' is {shorten(repr(value), 40)}; valid: a rate > 0 or \"inf\"")
    return float(value)


def _concurrency(value: Any, key: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 1:
        raise SpecError(f"{where}: field '{key}' is {shorten(repr(value), 40)}; valid: an integer >= 1")
    if value != int(value) or value > 10_000_000:
        raise SpecError(f"{where}: field '{key}' is {value!r}; valid: an integer from 1 to 10,000,000")
    return int(value)


def _lens(doc: dict, key: str, where: str) -> tuple[int, ...] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10_000_000 for v in value
    ):
        raise SpecError(f"{where}: field '{key}' must be a list of token counts (integers from 0 to 10,000,000)")
    return tuple(value)


def _lengths(
    where: str,
    total_in: float | None,
    total_out: float | None,
    completed: int | None,
    input_lens,
    output_lens,
    fields: tuple[str, str],
) -> tuple[float, float, tuple | None, tuple | None]:
    """Mean input and output tokens: from the per-request lists when the file has them (the
    means over requests that returned a token; the lists are kept whole, zeros included, for the
    fit to see what the tool counted), else the totals over the completed requests."""
    if input_lens is not None and output_lens is not None:
        if len(input_lens) != len(output_lens):
            raise SpecError(
                f"{where}: '{fields[0]}' has {len(input_lens)} entries but the output lengths have "
                f"{len(output_lens)}; valid: one of each per request"
            )
        pairs = [(i, o) for i, o in zip(input_lens, output_lens) if o >= 1 and i >= 1]
        if pairs:
            ins, outs = zip(*pairs)
            return sum(ins) / len(ins), sum(outs) / len(outs), tuple(input_lens), tuple(output_lens)
    if total_in is None or total_out is None or not completed:
        missing = fields[0] if total_in is None else fields[1] if total_out is None else "completed"
        raise SpecError(f"{where}: missing field '{missing}' (the request lengths a fit needs)")
    if total_out <= 0 or total_in <= 0:
        raise SpecError(f"{where}: '{fields[0]}' / '{fields[1]}' are 0; valid: requests that produced tokens")
    return total_in / completed, total_out / completed, None, None


def _point(tool: str, file: str, index: int, load: tuple, lengths: tuple, **measured) -> BenchPoint:
    """A BenchPoint from (concurrency, rate, completed), (mean in, mean out, input lens, output lens)
    and the measured numbers."""
    conc, rate, completed = load
    mean_in, mean_out, ins, outs = lengths
    return BenchPoint(
        tool=tool,
        file=file,
        index=index,
        concurrency=conc,
        request_rate_per_s=rate,
        completed=completed,
        mean_input_tokens=mean_in,
        mean_output_tokens=mean_out,
        input_lens=ins,
        output_lens=outs,
        **measured,
    )


def _needs_metric(point: BenchPoint, where: str, fields: str) -> BenchPoint:
    measured = (point.output_tokens_per_s, point.ttft_mean_s, point.ttft_p50_s, point.tpot_mean_s,
                point.tpot_p50_s, point.itl_mean_s, point.itl_p50_s)  # fmt: skip
    if all(m is None for m in measured):
        raise SpecError(f"{where}: missing field '{fields}' (no throughput or latency to fit)")
    return point


def _load_missing(where: str, fields: str):
    raise SpecError(f"{where}: missing field '{fields}' (how the load was offered)")


# --------------------------------------------------------------------------- vLLM, SGLang


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


# --------------------------------------------------------------------------- GuideLLM


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


# --------------------------------------------------------------------------- genai-perf, AIPerf


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
