"""The fleet over time inside a run: an autoscaler (fleetsim.autoscaler) or failures
(fleetsim.failures) acting on the engine's replicas as SimPy processes.

Replicas are slots built once (autoscaling: max_replicas of them; failures: fleet.replicas), each
a DynamicReplica that is powered or not and serving or not; an autoscaler instance occupies a
slot from launch to release. Every request handed back by a halted replica (a failure, a drain
past its timeout) is re-dispatched through the router at once (its `requeues` count + 1), or waits
in the central queue when no replica serves, dispatched when one becomes ready.

Autoscaling, at each scrape (t = k x scrape_interval_s, k >= 1), the signal of the last interval:
- utilization: OFFERED load, arrivals / (ready x capacity_requests_per_s x interval). Not the busy
  fraction: a continuous-batching replica is busy whenever it holds one request, so its busy
  fraction is ~1 from a handful of requests to saturation and says nothing about headroom; a
  request-rate metric (requests per second per replica) is what such fleets scale on. The
  measured busy fraction is recorded beside it (timeseries `busy_fraction`).
- queue: waiting requests (fleet-wide; the autoscaler divides by the ready replicas).
- latency: the slo.percentile TTFT of the requests whose first token came in the interval (the
  previous value when none did).
A launched replica is powered (idle) and billed from the decision and serves after cold_start_s;
a removed one stops taking requests at once and is released (unpowered, billing ends) when it
holds nothing, or drain_timeout_s after the decision with what is left re-queued.

Failures (fleetsim.sim.outages): replica_outages over [0, 2 x the arrival period), seeded with (run.seed,
"failures") so the run's other random streams are unchanged; a down replica serves nothing and
draws nothing, and stays billed (rented GPUs are paid for while broken). With autoscaling the
outages fall on slots (packed onto servers by slot index): one without an instance loses nothing,
a launch takes a slot that is up when there is one (a launch on a down slot serves after its
repair), and an instance whose slot fails is terminated (billing ends) so the next scrape replaces
it, as a ReplicaSet reschedules a pod whose node died; the utilization signal divides by the
replicas actually serving. The slots are a fixed pool (max_replicas machines, each with its own
outages): with every slot down a replacement waits for a repair.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import pandas as pd

from fleetsim.autoscaler import Autoscaler, Signals, cold_start_s, replica_series
from fleetsim.bill import step_integral
from fleetsim.errors import SpecError
from fleetsim.failures import HOUR_S
from fleetsim.sim.dynamic_replica import DynamicReplica, ServingRouter
from fleetsim.sim.outages import Outages
from fleetsim.sim.router import make_router


def offered_capacity_per_s(engine) -> float:
    """Requests per second one replica serves with its batch kept full (fleetsim.steady)."""
    from fleetsim.steady import full_batch, request_lengths

    sc = engine.scenario
    lengths = request_lengths(sc.workload, sc.kv_cache.prefix_caching)
    est = full_batch(
        engine.step_model,
        engine.footprint,
        engine.plan,
        lengths,
        math.inf,
        sc.scheduler.max_running_seqs,
        sc.scheduler.max_batched_tokens,
        sc.scheduler.chunked_prefill,
    )
    return est.output_tokens_per_s / lengths.mean_output


class Lifecycle:
    def __init__(self, engine, env) -> None:
        sc = engine.scenario
        if engine.block_cache:
            raise SpecError(
                "kv_cache.prefix_cache: the block prefix cache (blocks, kv_cache.offload, router prefix_aware) is "
                "not simulated with autoscaling or failures yet; valid: per_class, or neither autoscaling nor failures"
            )
        self.engine, self.env = engine, env
        self.auto, self.failures = sc.autoscaling, sc.failures
        initial = sc.fleet.replicas
        slots = self.auto.max_replicas if self.auto is not None else initial
        engine.replicas = [
            DynamicReplica(env, i, engine, engine.pool_bytes, self, powered=i < initial) for i in range(slots)
        ]
        engine.router = ServingRouter(make_router(sc.fleet.router, engine.replicas, engine.rng), engine.replicas)
        self.replicas = engine.replicas
        self.requeued = 0
        self.requeues: dict[int, int] = {}
        self.ttfts: list[float] = []
        self.last_latency_s = 0.0
        self.log: list[tuple[float, int, int, int]] = []  # (time_s, serving, billed, powered) after each change
        self.busy_log: list[tuple[float, float]] = []  # (scrape time, busy fraction of the ready replicas)
        self.instance_of: dict[int, int] = {}  # slot -> autoscaler instance
        self.cancelled: set[int] = set()
        self.counts = {"scale_ups": 0, "scale_downs": 0, "cancelled": 0, "drain_timeouts": 0}
        self.outage = Outages(self) if self.failures is not None else None
        self.down_requeued = 0  # handed back by failed replicas (the rest of `requeued`: drain timeouts)
        self.scaler: Autoscaler | None = None
        self.cold_start_s = 0.0
        self.capacity_per_s = 0.0
        if self.auto is not None:
            weights_bytes = float(engine.plan.weights_bytes_per_gpu) * engine.tp
            self.cold_start_s = cold_start_s(self.auto, weights_bytes)
            self.scaler = Autoscaler(self.auto, initial, self.cold_start_s)
            self.instance_of = {i: i for i in range(initial)}
            if self.auto.signal == "utilization":
                self.capacity_per_s = self.auto.capacity_requests_per_s or offered_capacity_per_s(engine)
        self._record(0.0)

    # ------------------------------------------------------------------ counts
    def _billed(self) -> int:
        if self.scaler is None:
            return len(self.replicas)  # a fixed fleet is billed whole, down replicas included
        return len(self.instance_of)

    def _record(self, now: float) -> None:
        serving = sum(1 for r in self.replicas if r.serving)
        powered = sum(1 for r in self.replicas if r.powered)
        row = (now, serving, self._billed(), powered)
        if self.log and self.log[-1][0] == now:
            self.log[-1] = row
        else:
            self.log.append(row)

    # ------------------------------------------------------------------ processes
    def start(self, end_s: float, sampler, poll_s: float) -> None:
        """Start the processes; `stop` triggers when the run is over: the sampler has ended and no
        request is pending (checked after each completion, and every poll_s after the sampler
        ends). The run ends there rather than when no event is left: the scrapes and outages
        scheduled beyond it must not extend the simulated period."""
        self.end_s = end_s
        self.sampler = sampler
        self.stop = self.env.event()
        self.env.process(self._watch(poll_s))
        if self.scaler is not None:
            self.env.process(self._scrape())
        if self.outage is not None:
            self.env.process(self.outage.process(end_s))

    def _done(self) -> bool:
        return self.env.now >= self.end_s and self.engine.pending == 0

    def _watch(self, poll_s: float):
        yield self.sampler
        yield self.env.timeout(0)  # after what else happens this instant (an arrival at the end)
        while not self.stop.triggered:
            if self.engine.pending == 0:
                self.stop.succeed()
                return
            yield self.env.timeout(poll_s)

    def after_completion(self) -> None:
        if self.engine.pending == 0 and self.sampler.processed and not self.stop.triggered:
            self.stop.succeed()

    def _scrape(self):
        env, e, spec = self.env, self.engine, self.auto
        interval = spec.scrape_interval_s
        arrived_before, busy_before = 0, self._busy(0.0)
        while True:
            yield env.timeout(interval)
            if self._done():
                return
            now = env.now
            ready = [r for r in self.replicas if r.serving]
            arrived = bisect.bisect_right(e.arrival_s, now)
            busy = self._busy(now)
            if ready:
                self.busy_log.append(
                    (now, sum(busy[r.index] - busy_before[r.index] for r in ready) / (len(ready) * interval))
                )
            offered = (
                (arrived - arrived_before) / (max(len(ready), 1) * self.capacity_per_s * interval)
                if self.capacity_per_s
                else 0.0
            )
            if self.ttfts:
                self.last_latency_s = float(np.percentile(self.ttfts, e.scenario.slo.percentile))
                self.ttfts = []
            arrived_before, busy_before = arrived, busy
            signals = Signals(utilization=offered, queued=float(e.fleet.queued), latency_s=self.last_latency_s)
            for d in self.scaler.observe(now, signals):
                getattr(self, f"_{d.kind}")(d, now)
            self._record(now)

    def _busy(self, now: float) -> list[float]:
        return [r.busy_meter_s(now) for r in self.replicas]

    # ------------------------------------------------------------------ scaling decisions
    def _up(self, d, now: float) -> None:
        used = set(self.instance_of)
        free = [r for r in self.replicas if r.index not in used]
        down = self.outage.down if self.outage is not None else set()
        # A slot that is up if there is one (a down one serves after its repair).
        slot = next((r for r in free if r.index not in down), free[0])
        self.instance_of[slot.index] = d.instance_id
        if slot.index not in down:
            slot.switch(True, now)
        self.counts["scale_ups"] += 1
        if d.effective_s <= now:
            self._ready(slot, d.instance_id)
        else:
            self.env.timeout(d.effective_s - now).callbacks.append(lambda _ev: self._ready(slot, d.instance_id))

    def _ready(self, slot: DynamicReplica, instance: int) -> None:
        down = self.outage is not None and slot.index in self.outage.down
        if instance in self.cancelled or self.instance_of.get(slot.index) != instance or down:
            return  # cancelled, or down: it serves after the repair
        slot.serving = True
        self.engine.router.update(slot)
        self._record(self.env.now)
        self.drain_central()

    def _cancel(self, d, now: float) -> None:
        slot = self._slot_of(d.instance_id)
        self.cancelled.add(d.instance_id)
        del self.instance_of[slot.index]
        slot.switch(False, now)
        self.counts["cancelled"] += 1

    def _down(self, d, now: float) -> None:
        slot = self._slot_of(d.instance_id)
        self.counts["scale_downs"] += 1
        slot.serving = False
        self.engine.router.update(slot)
        if not slot.holds:
            self._release(slot, now)
            return
        slot.draining = True
        self.env.timeout(d.release_by_s - now).callbacks.append(lambda _ev: self._drain_timeout(slot, d.instance_id))

    def _drain_timeout(self, slot: DynamicReplica, instance: int) -> None:
        if self.instance_of.get(slot.index) != instance or not slot.draining:
            return  # drained in time
        self.counts["drain_timeouts"] += 1
        slot.halt(self.env.now)  # hands back the rest; handed_back releases it

    def instance_failed(self, slot_index: int, now: float) -> None:
        """An autoscaled instance's replica failed: the instance is terminated (billing ends) and
        the slot, once repaired, is free; the autoscaler replaces the instance at its next scrape."""
        instance = self.instance_of.pop(slot_index)
        assert self.scaler is not None and self.outage is not None
        self.scaler.failed(instance, now)
        self.outage.released(slot_index, now)  # its downtime ends with it: the cost is the replacement's cold start
        self.replicas[slot_index].switch(False, now)
        self._record(now)

    def _slot_of(self, instance: int) -> DynamicReplica:
        return next(self.replicas[s] for s, i in self.instance_of.items() if i == instance)

    def drained(self, slot: DynamicReplica, now: float) -> None:
        """A draining replica finished its last request."""
        self._release(slot, now)

    def _release(self, slot: DynamicReplica, now: float) -> None:
        slot.draining = False
        if self.outage is not None:
            self.outage.released(slot.index, now)
        instance = self.instance_of.pop(slot.index, None)  # None: it failed while draining
        assert self.scaler is not None  # only an autoscaled run drains
        if instance is not None:
            self.scaler.released(instance, now)
        slot.switch(False, now)
        self._record(now)

    # ------------------------------------------------------------------ requests handed back
    def handed_back(self, slot: DynamicReplica, rids: list[int], now: float) -> None:
        """A halted replica's requests, re-dispatched in arrival order."""
        e = self.engine
        if slot.draining:  # a drain past its timeout: the instance is released now
            self._release(slot, now)
        else:
            self.down_requeued += len(rids)
            self._record(now)
        rids.sort(key=lambda rid: (e.arrival_s[rid], rid))
        for rid in rids:
            self.requeues[rid] = self.requeues.get(rid, 0) + 1
            self.requeued += 1
            self._place(rid)

    def _place(self, rid: int) -> None:
        e = self.engine
        r = e.router.pick(rid)
        if r is None:
            e.central.append(rid)
            e.replica_of[rid] = -1
            e.fleet.change(self.env.now, queued=+1)
            return
        e.replica_of[rid] = r.index
        r.enqueue(rid)

    def serve(self, slot: DynamicReplica, now: float) -> None:
        """A slot back from repair serves again (powered on first)."""
        slot.switch(True, now)
        slot.serving = True
        self.engine.router.update(slot)
        self._record(now)
        self.drain_central()

    def drain_central(self) -> None:
        """Dispatch what waits centrally to the serving replicas, in queue order, while the router
        finds one."""
        e = self.engine
        while e.central:
            rid = e.central[0]
            r = e.router.pick(rid)
            if r is None:
                return
            e.central.popleft()
            e.fleet.change(self.env.now, queued=-1)
            e.replica_of[rid] = r.index
            r.enqueue(rid)

    def first_token(self, ttft_s: float) -> None:
        if self.auto is not None and self.auto.signal == "latency":
            self.ttfts.append(ttft_s)

    # ------------------------------------------------------------------ results
    def series(self) -> pd.DataFrame:
        """(time_s, replicas serving, replicas billed, replicas powered) after each change."""
        return pd.DataFrame(self.log, columns=["time_s", "replicas", "replicas_billed", "replicas_powered"])

    def add_columns(self, ts: pd.DataFrame) -> pd.DataFrame:
        """The time series with the replica counts holding at each sample, kv_used_fraction over the
        powered replicas' pools, and the measured busy fraction of the last scrape."""
        log = self.series()
        at = np.searchsorted(log["time_s"].to_numpy(), ts["time_s"].to_numpy(), side="right") - 1
        for col in ("replicas", "replicas_billed"):
            ts[col] = log[col].to_numpy()[at]
        powered = log["replicas_powered"].to_numpy()[at]
        ts["kv_used_fraction"] = ts["kv_used_fraction"] * len(self.replicas) / np.maximum(powered, 1)
        if self.busy_log:
            b = np.array(self.busy_log)
            k = np.searchsorted(b[:, 0], ts["time_s"].to_numpy(), side="right") - 1
            ts["busy_fraction"] = np.where(k >= 0, b[np.maximum(k, 0), 1], np.nan)
        return ts

    def lifetimes(self, horizon_s: float) -> pd.DataFrame:
        """One row per billed instance: instance_id, launched_s, ready_s, stopped_s, released_s."""
        if self.scaler is not None:
            return self.scaler.lifetimes(horizon_s)
        n = len(self.replicas)
        return pd.DataFrame(
            {
                "instance_id": range(n),
                "launched_s": [0.0] * n,
                "ready_s": [0.0] * n,
                "stopped_s": [math.nan] * n,
                "released_s": [horizon_s] * n,
            }
        )

    def blocks(self, horizon_s: float) -> dict:
        """The summary's `autoscaling` and/or `failures` blocks."""
        out: dict = {}
        if self.auto is not None:
            serving = self.series()["replicas"]
            billed = replica_series(self.lifetimes(horizon_s), horizon_s)
            out["autoscaling"] = {
                "signal": self.auto.signal,
                "target": self.auto.target,
                "cold_start_s": self.cold_start_s,
                **({"capacity_requests_per_s": self.capacity_per_s} if self.capacity_per_s else {}),
                **self.counts,
                "peak_replicas": int(serving.max()),
                "min_replicas": int(serving.min()),
                "replica_hours": step_integral(billed, "replicas", horizon_s) / HOUR_S,
                "requests_requeued": self.requeued - self.down_requeued,  # at drain timeouts
            }
        if self.outage is not None:
            out["failures"] = self.outage.block(horizon_s)
        return out
