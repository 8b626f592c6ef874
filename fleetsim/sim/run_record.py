"""What a run records besides the request columns: the fleet's time series (sampled at planned
points) and the frames handed to metrics (requests, replicas). A mixin of Engine, so the fleet
variants (fleetsim.sim.mixed, fleetsim.sim.disaggregated) override a frame by name."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fleetsim.sim.replica import fleet_meters

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
        status = np.array(self.status, dtype=np.int8)
        # status codes PENDING, DONE, REJECTED -> the categories' codes (no string per request)
        codes = np.array([2, 0, 1], dtype=np.int8)[status]
        classes = [c.name for c in self.scenario.workload.classes]
        df = pd.DataFrame(
            {
                "arrival_s": np.array(self.arrival_s),
                "class": pd.Categorical.from_codes(np.array(self.req_class, dtype=np.int64), categories=classes),
                "input_tokens": np.array(self.input_tokens, dtype=np.int64),
                "output_tokens": np.array(self.output_tokens, dtype=np.int64),
                "shared_prefix_tokens": np.array(self.prefix_tokens, dtype=np.int64),
                "cached_prompt_tokens": np.array(self.hit_tokens, dtype=np.int64),
                "replica": np.array(self.replica_of, dtype=np.int32),
                "status": pd.Categorical.from_codes(codes, categories=["completed", "rejected", "in_flight"]),
                "scheduled_s": np.array(self.scheduled_s),
                "first_token_s": np.array(self.first_token_s),
                "finish_s": np.array(self.finish_s),
                "preemptions": np.array(self.preemptions, dtype=np.int32),
                "requeues": self._requeue_column(),
            }
        )
        sessions = np.array(self.session_id, dtype=np.int64)
        if (sessions >= 0).any():  # multi-turn traffic: which conversation and turn (else left out)
            df["session_id"] = sessions
            df["turn"] = np.array(self.turn, dtype=np.int32)
        df["ttft_s"] = df["first_token_s"] - df["arrival_s"]
        df["e2e_s"] = df["finish_s"] - df["arrival_s"]
        df["queue_s"] = df["scheduled_s"] - df["arrival_s"]
        decode_tokens = (df["output_tokens"] - 1).where(df["output_tokens"] > 1)
        df["tpot_s"] = (df["finish_s"] - df["first_token_s"]) / decode_tokens
        df.loc[df["status"] != "completed", ["ttft_s", "e2e_s", "tpot_s"]] = np.nan
        df.index.name = "request_id"
        return df

    def _requeue_column(self) -> np.ndarray:
        """Times each request was handed back by a halted replica and dispatched again."""
        col = np.zeros(len(self.arrival_s), dtype=np.int32)
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
