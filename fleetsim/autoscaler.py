"""A horizontal autoscaler as a pure, steppable object (no simpy): the simulator calls
``Autoscaler.observe(now_s, signals)`` at each scrape and applies the decisions it returns at their
effective times.

The recommendation is Kubernetes' Horizontal Pod Autoscaler's
(kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale, "Algorithm details"):

    desired = ceil(ready_replicas x signal / target)

left at the current count while |signal / target - 1| <= tolerance, then clamped to
[min_replicas, max_replicas]. Stabilization follows the HPA's behavior rules (KEP-853,
"configurable HPA scale velocity"; HPAScalingRules.stabilizationWindowSeconds): the scale-up
candidate is the LOWEST recommendation of the last ``scale_up_stabilization_s`` and the scale-down
candidate the HIGHEST of the last ``scale_down_stabilization_s`` (the current one included, older
ones kept when newer than now - window), so a dip shorter than the window never removes a replica;
optional rate limits cap a scrape's scale-up at the larger of a percent and a count (the HPA's
scaleUp policies, selectPolicy Max, one scrape per period).

A scale-up launches instances at once (billed from then) that serve after the cold start:

    cold_start_s = provisioning_delay_s + weights_bytes / weights_load_bandwidth_bytes_per_s + engine_start_s

A scale-down first cancels instances still starting (newest first), then stops routing to the
newest ready ones at once; each is released (and stops billing) when its requests are done, which
the simulator reports with ``released(instance_id, now_s)``, and at the latest drain_timeout_s
after the decision.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from fleetsim.errors import SpecError
from fleetsim.spec.dynamics import AutoscalingSpec


def cold_start_s(spec: AutoscalingSpec, weights_bytes: float) -> float:
    """Seconds from a scale-up decision until the new replica serves: provisioning, the weights
    over the load path (`weights_bytes` is the whole replica's, memory.weight_bytes; its GPUs
    share the one path), and the engine's own start."""
    if weights_bytes < 0 or not math.isfinite(weights_bytes):
        raise SpecError(f"weights_bytes: {weights_bytes!r} is not a byte count; valid: a finite number >= 0")
    return spec.provisioning_delay_s + weights_bytes / spec.weights_load_bandwidth_bytes_per_s + spec.engine_start_s


@dataclass(frozen=True)
class Signals:
    """What one scrape sees. `utilization` is the offered work over the ready replicas' capacity
    (a busy fraction; a simulator that only sees busy time reports at most 1, and the HPA then
    grows by 1/target per scrape); `queued` the waiting requests; `latency_s` the tracked TTFT
    percentile. Only the one the policy's signal names is read."""

    utilization: float | None = None
    queued: float | None = None
    latency_s: float | None = None


@dataclass(frozen=True)
class ScaleDecision:
    """One instance's change. up: launched at decided_s (billed from then), serves from
    effective_s. down: no new requests from effective_s (= decided_s); released when drained, at
    the latest release_by_s. cancel: a still-starting instance stopped at decided_s."""

    kind: Literal["up", "down", "cancel"]
    instance_id: int
    decided_s: float
    effective_s: float
    release_by_s: float


@dataclass
class Instance:
    instance_id: int
    launched_s: float
    ready_s: float
    stopped_s: float | None = None  # routing stopped (scale-down) or cancelled
    released_s: float | None = None  # billing ends

    def billed_until(self, horizon_s: float) -> float:
        return horizon_s if self.released_s is None else min(self.released_s, horizon_s)


class Autoscaler:
    """The policy's state over one replica group. ``initial_replicas`` are ready at t = 0 (launched
    before the run, billed from 0)."""

    def __init__(self, spec: AutoscalingSpec, initial_replicas: int, cold_start_s: float) -> None:
        if not spec.min_replicas <= initial_replicas <= spec.max_replicas:
            raise SpecError(
                f"initial replicas = {initial_replicas:,}; valid: min_replicas ({spec.min_replicas:,}) to "
                f"max_replicas ({spec.max_replicas:,})"
            )
        if cold_start_s < 0 or not math.isfinite(cold_start_s):
            raise SpecError(f"cold_start_s: {cold_start_s!r}; valid: a finite number of seconds >= 0")
        self.spec = spec
        self.cold_start_s = cold_start_s
        self.instances: list[Instance] = [Instance(i, 0.0, 0.0) for i in range(initial_replicas)]
        self._history: deque[tuple[float, int]] = deque()
        self._last_s = -math.inf

    # ---------------------------------------------------------------- state
    def _active(self) -> list[Instance]:
        return [i for i in self.instances if i.stopped_s is None]

    def committed(self) -> int:
        """Replicas launched and not stopped: ready plus starting (the HPA's current replicas)."""
        return len(self._active())

    def ready(self, now_s: float) -> int:
        """Replicas serving at now_s (ready, not yet stopped; past times read the record)."""
        return sum(1 for i in self.instances if i.ready_s <= now_s and (i.stopped_s is None or i.stopped_s > now_s))

    # ---------------------------------------------------------------- the policy
    def recommend(self, ready: int, signals: Signals) -> int:
        """The HPA's raw recommendation (before stabilization) from one scrape."""
        spec = self.spec
        value = {"utilization": signals.utilization, "queued": signals.queued, "latency": signals.latency_s}[
            "queued" if spec.signal == "queue" else spec.signal
        ]
        current = self.committed()
        if value is None or not math.isfinite(value) or value < 0:
            raise SpecError(f"signals.{spec.signal}: {value!r}; valid: a finite number >= 0 at each scrape")
        if spec.signal == "queue":
            ratio = value / (max(ready, 1) * spec.target)
        else:
            ratio = value / spec.target
        if abs(ratio - 1.0) <= spec.tolerance:
            desired = current
        elif spec.signal == "queue":
            desired = math.ceil(value / spec.target)
        else:
            desired = math.ceil(max(ready, 1) * ratio * (1 - 1e-12))  # 0.7/0.7 x 3 is 3, not 4
        return min(spec.max_replicas, max(spec.min_replicas, desired))

    def observe(self, now_s: float, signals: Signals) -> list[ScaleDecision]:
        """One scrape at now_s: the decisions (empty when nothing changes), each with its times."""
        if now_s < self._last_s:
            raise SpecError(f"now_s = {now_s!r} is before the previous scrape at {self._last_s!r}; valid: increasing")
        self._last_s = now_s
        spec = self.spec
        rec = self.recommend(self.ready(now_s), signals)
        self._history.append((now_s, rec))
        horizon = max(spec.scale_up_stabilization_s, spec.scale_down_stabilization_s)
        while self._history and self._history[0][0] <= now_s - horizon and len(self._history) > 1:
            self._history.popleft()
        up_recs = [r for t, r in self._history if t > now_s - spec.scale_up_stabilization_s] + [rec]
        down_recs = [r for t, r in self._history if t > now_s - spec.scale_down_stabilization_s] + [rec]
        current = self.committed()
        target = max(current, min(up_recs))
        target = min(target, max(down_recs), self._up_limit(current))
        if target > current:
            return [self._launch(now_s) for _ in range(target - current)]
        if target < current:
            return self._remove(now_s, current - target)
        return []

    def _up_limit(self, current: int) -> int:
        """Most replicas after one scrape's scale-up: the larger of the percent and count limits
        (HPA behavior.scaleUp policies with selectPolicy Max); no limit when neither is set."""
        spec = self.spec
        limits = []
        if spec.scale_up_max_percent is not None:
            limits.append(math.floor(current * (1 + spec.scale_up_max_percent / 100)))
        if spec.scale_up_max_replicas is not None:
            limits.append(current + spec.scale_up_max_replicas)
        return max(limits) if limits else spec.max_replicas

    def _launch(self, now_s: float) -> ScaleDecision:
        inst = Instance(len(self.instances), now_s, now_s + self.cold_start_s)
        self.instances.append(inst)
        return ScaleDecision("up", inst.instance_id, now_s, inst.ready_s, math.inf)

    def _remove(self, now_s: float, count: int) -> list[ScaleDecision]:
        starting = sorted((i for i in self._active() if i.ready_s > now_s), key=lambda i: -i.launched_s)
        serving = sorted((i for i in self._active() if i.ready_s <= now_s), key=lambda i: -i.launched_s)
        out = []
        for inst in (starting + serving)[:count]:
            inst.stopped_s = now_s
            if inst.ready_s > now_s:
                inst.released_s = now_s
                out.append(ScaleDecision("cancel", inst.instance_id, now_s, now_s, now_s))
            else:
                inst.released_s = now_s + self.spec.drain_timeout_s
                out.append(ScaleDecision("down", inst.instance_id, now_s, now_s, inst.released_s))
        return out

    def released(self, instance_id: int, now_s: float) -> None:
        """The simulator's report that a draining instance finished its last request at now_s."""
        inst = self.instances[instance_id]
        if inst.stopped_s is None or now_s < inst.stopped_s:
            raise SpecError(f"instance {instance_id}: released at {now_s!r} before it was stopped")
        inst.released_s = min(inst.released_s if inst.released_s is not None else math.inf, now_s)

    def failed(self, instance_id: int, now_s: float) -> None:
        """The simulator's report that an instance's replica failed at now_s: it stops and is
        released (terminated, billing ends), so the next scrape sees one replica fewer and
        replaces it, as a ReplicaSet reschedules a pod whose node died."""
        inst = self.instances[instance_id]
        if inst.stopped_s is None:
            inst.stopped_s = now_s
        inst.released_s = min(inst.released_s if inst.released_s is not None else math.inf, now_s)

    # ---------------------------------------------------------------- results
    def lifetimes(self, horizon_s: float) -> pd.DataFrame:
        """One row per instance: launched_s, ready_s, stopped_s, released_s (billing end, capped at
        the horizon), the input of bill.gpu_hours."""
        rows = [
            (i.instance_id, i.launched_s, i.ready_s, i.stopped_s, i.billed_until(horizon_s))
            for i in self.instances
            if i.launched_s < horizon_s
        ]
        return pd.DataFrame(rows, columns=["instance_id", "launched_s", "ready_s", "stopped_s", "released_s"])


def replica_series(lifetimes: pd.DataFrame, horizon_s: float, *, serving: bool = False) -> pd.DataFrame:
    """Step series (time_s, replicas) from instance lifetimes: billed instances (launch to
    release), or with ``serving`` those taking requests (ready to stopped). The count holds from
    each time_s to the next."""
    start = lifetimes["ready_s"] if serving else lifetimes["launched_s"]
    end = lifetimes["stopped_s"].fillna(horizon_s) if serving else lifetimes["released_s"]
    end = end.clip(upper=horizon_s)
    keep = start < end
    events = (
        pd.concat([pd.Series(1, index=start[keep].to_numpy()), pd.Series(-1, index=end[keep].to_numpy())])
        .groupby(level=0)
        .sum()
    )
    times = sorted(set(events.index) | {0.0})
    counts = events.reindex(times, fill_value=0).cumsum()
    return pd.DataFrame({"time_s": [float(t) for t in times], "replicas": counts.to_numpy().astype(int)})


def follow_load(
    spec: AutoscalingSpec,
    load_per_s,
    capacity_per_replica_per_s: float,
    horizon_s: float,
    *,
    initial_replicas: int,
    cold_start_s: float,
) -> Autoscaler:
    """Drive the policy against a fluid load (requests/s as a function of time): at each scrape
    the utilization signal is load / (ready x capacity), uncapped. The analytic companion of the
    simulator's wiring, used by the tests' hand calculations."""
    if capacity_per_replica_per_s <= 0:
        raise SpecError(f"capacity_per_replica_per_s = {capacity_per_replica_per_s!r}; valid: > 0")
    scaler = Autoscaler(spec, initial_replicas, cold_start_s)
    n = int(math.floor(horizon_s / spec.scrape_interval_s))
    for k in range(n + 1):
        t = k * spec.scrape_interval_s
        ready = scaler.ready(t)
        util = load_per_s(t) / (max(ready, 1) * capacity_per_replica_per_s)
        scaler.observe(t, Signals(utilization=util, queued=None))
    return scaler
