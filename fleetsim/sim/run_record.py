"""What a run records besides the request columns: the fleet's time series (sampled at planned
points) and the frames handed to metrics (requests, replicas). A mixin of Engine, so the fleet
variants (fleetsim.sim.mixed, fleetsim.sim.disaggregated) override a frame by name."""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
import pandas as pd

from fleetsim.sim.replica import fleet_meters

# request status codes (the engine's status column)
PENDING, DONE, REJECTED = 0, 1, 2
# Columns only the run needs (KV footprints, tokens generated so far): dropped before the table.
WORKING_COLUMNS = ("kv_start", "kv_growth", "kv_end", "prefix_read", "held_base", "generated", "kv_reserve")
# The table's status categories and each engine status code's index into them.
STATUS_CATEGORIES = ["completed", "rejected", "in_flight"]
STATUS_CODES = (2, 0, 1)  # PENDING -> in_flight, DONE -> completed, REJECTED -> rejected
# Stored columns taken from the engine as they are: (table name, engine column).
STORED_COLUMNS = (
    ("class", "req_class"),
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("shared_prefix_tokens", "prefix_tokens"),
    ("cached_prompt_tokens", "hit_tokens"),
    ("replica", "replica_of"),
    ("scheduled_s", "scheduled_s"),
    ("first_token_s", "first_token_s"),
    ("finish_s", "finish_s"),
    ("preemptions", "preemptions"),
)
# The table's columns after arrival_s, before the latencies, with the dtypes they widen to
# (None: categories from codes).
TABLE_COLUMNS = {
    "class": None,
    "input_tokens": np.int64,
    "output_tokens": np.int64,
    "shared_prefix_tokens": np.int64,
    "cached_prompt_tokens": np.int64,
    "replica": np.int32,
    "status": None,
    "scheduled_s": np.float64,
    "first_token_s": np.float64,
    "finish_s": np.float64,
    "preemptions": np.int32,
    "requeues": np.int32,
    "session_id": np.int64,
    "turn": np.int32,
}
MAX_SAMPLES = 800  # time-series rows kept without an explicit run.timeseries_interval_s


class RunRecord:
    # Set by the Engine this is mixed into (declared here for the type checker).
    arrival_s: Any
    block_cache: Any
    env: Any
    finish_s: Any
    first_token_s: Any
    fleet: Any
    hit_tokens: Any
    input_tokens: Any
    lifecycle: Any
    output_tokens: Any
    pending: Any
    pool_bytes: Any
    preemptions: Any
    prefix_tokens: Any
    progress: Any
    replica_of: Any
    replicas: Any
    req_class: Any
    scenario: Any
    scheduled_s: Any
    session_id: Any
    status: Any
    turn: Any

    def _sample_row(self, rows: list) -> None:
        now = self.env.now
        held, power_w, energy_j, tokens = fleet_meters(self.replicas, now)
        pool_total = self.pool_bytes * len(self.replicas)
        rows.append((now, self.fleet.running, self.fleet.queued, held / pool_total, power_w, energy_j, tokens))

    def _sample(self, interval_s: float, rows: list, end_s: float):
        """Sample the fleet's meters every interval_s up to the end of arrivals (the planned
        points). A drain after it is not sampled: the sampler keeps its clock (it ends the run at
        the same sample time as ever) and takes one last row there. An offline batch (all drain)
        or an explicit run.timeseries_interval_s is sampled throughout."""
        env = self.env
        explicit = bool(self.scenario.run.timeseries_interval_s)
        planned_only = end_s > 0 and not explicit
        draining = False
        n = 0  # rows a sampler through the drain would hold: its thinning sets the clock
        while True:
            if not draining:
                self._sample_row(rows)
            n += 1
            if self.progress is not None:
                self.progress(min(env.now / end_s, 1.0) if end_s else 1.0)
            if env.now >= end_s and self.pending == 0:
                if draining:
                    self._sample_row(rows)  # the end of the drain
                return
            if env.now >= end_s and planned_only:
                draining = True
            if n >= MAX_SAMPLES and not explicit:
                # A run longer than planned (an offline batch, a long drain): sample half as often
                # (and, for an offline batch, keep every other sample), so a run of any length
                # keeps <= MAX_SAMPLES.
                if not draining:
                    rows[:] = rows[::2]
                n = (n + 1) // 2
                interval_s *= 2.0
            yield env.timeout(interval_s)

    def timeseries_frame(self, rows: list) -> pd.DataFrame:
        return pd.DataFrame(
            rows,
            columns=["time_s", "running", "queued", "kv_used_fraction", "power_w", "gpu_energy_j", "output_tokens"],
        )

    def _request_frame(self) -> pd.DataFrame:
        """The per-request table, built once from the engine's columns, which it takes over: each
        column is emptied as its values move into the table, and the working columns (KV
        footprints, tokens generated) are dropped first, so the run's peak memory is the table's
        plus one column. The engine's columns start empty afterwards (an Engine runs once)."""
        return request_table(self._request_columns(), [c.name for c in self.scenario.workload.classes])

    def _request_columns(self) -> dict[str, np.ndarray]:
        """The table's stored columns (request_table derives the rest), in the engine's own
        narrow dtypes, "class" and "status" as category codes; taken over from the engine. A pod
        of a larger fleet (fleetsim.sim.pods) sends these, a third smaller than its table."""
        n = len(self.arrival_s)
        requeues = self._requeue_column(n)
        for name in WORKING_COLUMNS:
            col = getattr(self, name)
            setattr(self, name, array(col.typecode))
        take = self._take_column
        columns: dict[str, np.ndarray] = {"arrival_s": take("arrival_s", np.float64)}
        # status codes PENDING, DONE, REJECTED -> the categories' codes (no string per request)
        columns["status"] = np.array(STATUS_CODES, dtype=np.int8)[take("status", np.int8)]
        for table_name, name in STORED_COLUMNS:
            columns[table_name] = take(name)
        columns["requeues"] = requeues
        sessions = take("session_id", np.int64)
        turns = take("turn", np.int32)
        if len(sessions) and (sessions >= 0).any():  # multi-turn traffic: which conversation and turn (else left out)
            columns["session_id"] = sessions
            columns["turn"] = turns
        return columns

    def _take_column(self, name: str, dtype=None) -> np.ndarray:
        """A per-request column as a numpy array of `dtype` (default its own); the engine's column
        is emptied. (The array module's typecodes are numpy's.)"""
        col = getattr(self, name)
        values = np.frombuffer(col, dtype=col.typecode).astype(dtype or col.typecode)
        setattr(self, name, array(col.typecode))
        return values

    def _requeue_column(self, n: int) -> np.ndarray:
        """Times each of n requests was handed back by a halted replica and dispatched again."""
        col = np.zeros(n, dtype=np.int32)
        if self.lifecycle is not None and self.lifecycle.requeues:
            rids = np.fromiter(self.lifecycle.requeues.keys(), dtype=np.int64)
            col[rids] = np.fromiter(self.lifecycle.requeues.values(), dtype=np.int32)
        return col

    def _replica_frame(self, now: float) -> pd.DataFrame:
        rows = []
        for r in self.replicas:
            rows.append(
                {
                    "replica": r.index,
                    "energy_j": r.energy_j,
                    "busy_s": r.busy_s,
                    "prefill_s": r.prefill_s,
                    "decode_s": r.decode_s,
                    "kv_byte_s": r.kv_byte_s,
                    "preemptions": r.preemptions,
                    "iterations": r.it,
                    "peak_power_w": r.peak_power_w,
                    **(r.cache_counters() if self.block_cache else {}),
                }
            )
        return pd.DataFrame(rows)


def request_table(columns: dict[str, np.ndarray], classes: list[str]) -> pd.DataFrame:
    """The per-request table from its stored columns (RunRecord._request_columns; a fleet in pods:
    the pods' merged), which it takes over (`columns` is emptied): widened to the table's dtypes,
    the codes as categories, and the latencies of completed requests (NaN for the others; a
    1-token output has no TPOT)."""
    arrival = columns.pop("arrival_s")
    codes = columns.pop("status")
    undone = codes != STATUS_CODES[DONE]
    table: dict[str, Any] = {"arrival_s": arrival}
    for name, dtype in TABLE_COLUMNS.items():
        if name == "class":
            table[name] = pd.Categorical.from_codes(columns.pop(name), categories=classes)
        elif name == "status":
            table[name] = pd.Categorical.from_codes(codes, categories=STATUS_CATEGORIES)
        elif name in columns:  # session_id and turn are left out of traffic without sessions
            table[name] = columns.pop(name).astype(dtype, copy=False)
    del codes
    first, finish = table["first_token_s"], table["finish_s"]
    ttft = first - arrival
    ttft[undone] = np.nan
    e2e = finish - arrival
    e2e[undone] = np.nan
    table.update(ttft_s=ttft, e2e_s=e2e, queue_s=table["scheduled_s"] - arrival)
    out = table["output_tokens"]
    tpot = finish - first
    tpot /= np.where(out > 1, out - 1, np.nan)
    tpot[undone] = np.nan
    table["tpot_s"] = tpot
    df = pd.DataFrame(table, copy=False)  # no copy: one block per column
    df.index.name = "request_id"
    return df
