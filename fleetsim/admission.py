"""Admission control, class priorities and goodput: pure objects the scheduler calls, and metrics
of a request table.

- Token bucket: `rate_per_s` tokens a second refill a bucket holding at most `burst`; a request
  takes one token or is refused. Kept in exact rational arithmetic (fractions.Fraction of the
  float inputs), so admitting at exactly the refill instant never depends on rounding.
- Queue limit: a request arriving to `max_queue` waiting requests is refused (the scenario's
  scheduler.max_queue: one field, read here and by the simulator).
- Timeout: a request still waiting `queue_timeout_s` after its arrival is refused then.
- Priorities: higher `priority` is scheduled first (ties: earlier arrival, then lower request
  id) and preempted last (within a priority the most recently scheduled goes first, as vLLM's
  recompute preemption takes the newest running request). vLLM's own `--scheduling-policy
  priority` orders by a lower value first; fleetsim's field reads the other way, higher first.
- Goodput: output tokens of completed requests that met their class's TTFT and TPOT targets
  (a one-token output has no TPOT), in total, per class, and per second of a window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

from fleetsim.errors import SpecError
from fleetsim.spec.dynamics import AdmissionSpec, ClassPolicySpec, TokenBucketSpec


class TokenBucket:
    """A token bucket, full at the first request."""

    def __init__(self, spec: TokenBucketSpec) -> None:
        self.rate_per_s = Fraction(spec.rate_per_s)
        self.burst = Fraction(spec.burst)
        self._tokens = self.burst
        self._last_s: Fraction | None = None

    def tokens_at(self, now_s: float) -> Fraction:
        """Tokens in the bucket at now_s (no request taken)."""
        now = Fraction(now_s)
        if self._last_s is None:
            return self._tokens
        if now < self._last_s:
            raise SpecError(f"token bucket: time {now_s!r} is before the last request at {float(self._last_s)!r}")
        return min(self.burst, self._tokens + (now - self._last_s) * self.rate_per_s)

    def admit(self, now_s: float) -> bool:
        """Take a token at now_s if there is one."""
        tokens = self.tokens_at(now_s)
        self._last_s = Fraction(now_s)
        if tokens >= 1:
            self._tokens = tokens - 1
            return True
        self._tokens = tokens
        return False


class Admission:
    """The door of one queue: `check(now_s, queued)` says whether an arrival is admitted, and if
    not why ('queue_full' or 'rate_limited'); `expired(arrival_s, now_s)` whether a waiting
    request has timed out. `max_queue` is scheduler.max_queue (None: unbounded)."""

    def __init__(self, spec: AdmissionSpec, max_queue: int | None = None) -> None:
        if max_queue is not None and max_queue < 0:
            raise SpecError(f"scheduler.max_queue = {max_queue!r}; valid: an integer >= 0 or null")
        self.spec = spec
        self.max_queue = max_queue
        self.bucket = TokenBucket(spec.token_bucket) if spec.token_bucket is not None else None

    def check(self, now_s: float, queued: int) -> str | None:
        """None when admitted, else the reason. The queue limit is checked first, so a request
        refused for a full queue takes no token."""
        if self.max_queue is not None and queued >= self.max_queue:
            return "queue_full"
        if self.bucket is not None and not self.bucket.admit(now_s):
            return "rate_limited"
        return None

    def deadline_s(self, arrival_s: float) -> float:
        """When a request arriving at arrival_s is refused if still waiting (inf without a timeout)."""
        timeout = self.spec.queue_timeout_s
        return math.inf if timeout is None else arrival_s + timeout

    def expired(self, arrival_s: float, now_s: float) -> bool:
        return now_s >= self.deadline_s(arrival_s)


# --------------------------------------------------------------------------- priorities


@dataclass(frozen=True)
class ClassTargets:
    priority: int
    ttft_s: float
    tpot_s: float


class ClassPolicies:
    """Priorities and latency targets per class; a class not listed gets priority 0 and the
    scenario's SLO."""

    def __init__(self, policies: Sequence[ClassPolicySpec], default_ttft_s: float, default_tpot_s: float) -> None:
        names = [p.name for p in policies]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SpecError(f"classes: {dupes[0]!r} is listed twice; valid: each class once")
        self.default = ClassTargets(0, default_ttft_s, default_tpot_s)
        self.by_name = {
            p.name: ClassTargets(
                p.priority,
                p.ttft_s if p.ttft_s is not None else default_ttft_s,
                p.tpot_s if p.tpot_s is not None else default_tpot_s,
            )
            for p in policies
        }

    def of(self, name: str) -> ClassTargets:
        return self.by_name.get(name, self.default)

    def schedule_key(self, name: str, arrival_s: float, request_id: int) -> tuple[int, float, int]:
        """Sort key of the waiting queue (smallest first): higher priority, earlier arrival, lower id."""
        return (-self.of(name).priority, arrival_s, request_id)

    def preemption_order(self, running: Iterable[tuple[str, float, int]]) -> list[int]:
        """Request ids of (class, scheduled_s, request_id) running requests in the order they are
        preempted: lowest priority first, within it the most recently scheduled first."""
        return [rid for _, _, rid in sorted(running, key=lambda r: (self.of(r[0]).priority, -r[1], -r[2]))]


# --------------------------------------------------------------------------- goodput


def class_codes(requests: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Each row's class as a code into a list of names: a categorical column's own codes (no
    string per row, no copy of the table), else the codes of its values as text."""
    cls = requests["class"]
    if isinstance(cls.dtype, pd.CategoricalDtype):
        codes = cls.cat.codes.to_numpy()
        if not (codes < 0).any():
            return codes, [str(c) for c in cls.cat.categories]
    codes, names = pd.factorize(cls.astype(str))
    return codes, [str(c) for c in names]


def completed_rows(requests: pd.DataFrame) -> np.ndarray:
    """True where a request completed (status compared as text, without a string per row)."""
    return (requests["status"] == "completed").to_numpy()


def _per_row(values: list[float], codes: np.ndarray) -> float | np.ndarray:
    """A per-class value for each row: one number when every class has the same (no array)."""
    if len(set(values)) == 1:
        return float(values[0])
    return np.array(values, dtype=np.float64)[codes]


def slo_met(requests: pd.DataFrame, policies: ClassPolicies) -> pd.Series:
    """True where a request completed within its class's TTFT and TPOT targets."""
    codes, names = class_codes(requests)
    ttft_target = _per_row([policies.of(c).ttft_s for c in names], codes)
    tpot_target = _per_row([policies.of(c).tpot_s for c in names], codes)
    tpot = requests["tpot_s"]
    tpot_ok = tpot.isna() | (tpot <= tpot_target)
    return pd.Series(completed_rows(requests), index=requests.index) & (requests["ttft_s"] <= ttft_target) & tpot_ok


def goodput(requests: pd.DataFrame, policies: ClassPolicies, window_s: tuple[float, float] | None = None) -> dict:
    """Goodput of a request table (the simulator's per-request columns): over the requests that
    arrived in `window_s` (all of them when None), per class and in total: arrived, completed,
    rejected, met (completed within their class's targets), output_tokens (of completed ones),
    goodput_tokens (output tokens of those that met), and goodput_tokens_per_s over the window
    (null without one). Counted over masks of the table's columns, never a copy of the table."""
    codes, names = class_codes(requests)
    completed = completed_rows(requests)
    rejected = (requests["status"] == "rejected").to_numpy()
    met = slo_met(requests, policies).to_numpy()
    out = requests["output_tokens"].to_numpy()
    if window_s is not None:
        a, b = window_s
        if not b > a:
            raise SpecError(f"window_s = {window_s!r}; valid: (start, end) with end > start")
        arrival = requests["arrival_s"].to_numpy()
        rows = (arrival >= a) & (arrival < b)
        codes, completed, rejected, met, out = codes[rows], completed[rows], rejected[rows], met[rows], out[rows]
    span = (window_s[1] - window_s[0]) if window_s is not None else None

    def row(mask: np.ndarray | None) -> dict:
        sel = (lambda x: x) if mask is None else (lambda x: x & mask)
        good = int(out[sel(met)].sum())
        return {
            "arrived": int(len(codes) if mask is None else mask.sum()),
            "completed": int(sel(completed).sum()),
            "rejected": int(sel(rejected).sum()),
            "met": int(sel(met).sum()),
            "output_tokens": int(out[sel(completed)].sum()),
            "goodput_tokens": good,
            "goodput_tokens_per_s": good / span if span else None,
        }

    present = sorted({names[k] for k in np.unique(codes)})  # the classes arrived, by name
    index = {name: k for k, name in enumerate(names)}
    by_class = {name: row(codes == index[name]) for name in present}
    return {"total": row(None), "by_class": by_class}


def class_summary(
    requests: pd.DataFrame,
    scenario,
    window_s: tuple[float, float] | None = None,
    rejected_by_reason: dict[str, dict[str, int]] | None = None,
) -> dict:
    """The per-class block of a run's summary: goodput (see `goodput`) with each class's
    priority and targets, its SLO attainment (met / arrived, so a rejection counts as a miss)
    and, given the run's rejected_by_reason (RawRun), its rejections by reason over the whole
    run. `scenario` is the ScenarioSpec (its workload classes, `classes` policies and slo)."""
    policies = ClassPolicies(scenario.classes, scenario.slo.ttft_s, scenario.slo.tpot_s)
    out = goodput(requests, policies, window_s)
    for name, row in out["by_class"].items():
        targets = policies.of(name)
        row.update(priority=targets.priority, ttft_target_s=targets.ttft_s, tpot_target_s=targets.tpot_s)
    for row in (out["total"], *out["by_class"].values()):
        row["slo_attainment"] = row["met"] / row["arrived"] if row["arrived"] else None
    if rejected_by_reason is not None:
        for name, row in out["by_class"].items():
            row["rejected_by_reason"] = dict(rejected_by_reason.get(name, {}))
    return out
