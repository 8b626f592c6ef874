"""BenchPoint, one benchmark run normalized to SI units, and the field readers every tool's reader
builds one with (numbers, ms, rates, concurrency, per-request lengths, the load and metric
checks). Its own module: what a run is, apart from which tool's file it came from.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetsim.errors import SpecError, shorten

#: Runs (JSON Lines objects, GuideLLM benchmarks) read from one file.
MAX_RUNS_PER_FILE = 10_000


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
