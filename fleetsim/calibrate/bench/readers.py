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

Pure: no simulation, no fitting. This module finds the documents in a file and the tool that wrote
each; the readers are one module per format (serving_bench: vLLM and SGLang, guidellm,
nvidia_perf: genai-perf and AIPerf), building the BenchPoint of fleetsim.calibrate.bench.point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fleetsim.calibrate.bench.guidellm import _guidellm
from fleetsim.calibrate.bench.nvidia_perf import _aiperf, _genai_perf
from fleetsim.calibrate.bench.point import MAX_RUNS_PER_FILE, BenchPoint
from fleetsim.calibrate.bench.serving_bench import _SGLANG_MARKERS, _VLLM_MARKERS, _sglang, _vllm
from fleetsim.errors import SpecError, shorten
from fleetsim.spec.yaml_file import read_text

__all__ = [
    "BENCH_FORMATS",
    "MAX_BENCH_BYTES",
    "MAX_RUNS_PER_FILE",
    "BenchPoint",
    "detect_format",
    "read_bench_file",
    "read_bench_files",
]

#: Largest result file read (a vLLM ``--save-detailed`` file of 10,000 requests is ~50 MB).
MAX_BENCH_BYTES = 256 * 1024 * 1024

BENCH_FORMATS = ("vllm", "sglang", "guidellm", "genai-perf", "aiperf")


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
