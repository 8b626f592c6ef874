"""Failures inside a run (fleetsim.sim.lifecycle): the outage timeline of fleetsim.failures
played as a SimPy process over the lifecycle's replica slots, and the summary's `failures` block.

Outages are drawn over [0, 2 x the arrival period) (the drain included) from a generator seeded
with (run.seed, "failures"), so the run's other random streams are unchanged. A failure halts the
slot's replica (its requests re-queued); the repair powers it on and it serves again. With
autoscaling a slot without an instance loses nothing, and an instance still starting when its
slot is repaired serves at its ready time.
"""

from __future__ import annotations

import numpy as np

from fleetsim.failures import HOUR_S, fleet_availability, outage_summary, processes_of, replica_outages

FAILURE_STREAM = int.from_bytes(b"failures", "little")  # second word of the failure draws' seed
FAILURE_HORIZON_FACTOR = 2.0  # outages drawn over this many arrival periods (the drain included)


class Outages:
    def __init__(self, lifecycle) -> None:
        self.lifecycle = lifecycle
        self.spec = lifecycle.failures
        self.down: set[int] = set()  # slots down now
        self.hit_since: dict[int, float] = {}  # slot -> when it failed holding a replica
        self.down_replica_s = 0.0  # replica-seconds down of outages that hit a replica (ended ones)
        self.hits = 0  # outages that took a replica down
        self.timeline = None  # failures.replica_outages frame, drawn when the process starts
        self.expected_availability = 1.0

    def process(self, end_s: float):
        lc = self.lifecycle
        env, e = lc.env, lc.engine
        slots = len(lc.replicas)
        gpu_p, server_p = processes_of(self.spec)
        rng = np.random.default_rng([e.scenario.run.seed, FAILURE_STREAM])
        per_server = e.gpu.gpus_per_server
        horizon_s = FAILURE_HORIZON_FACTOR * max(end_s, 1.0)
        self.timeline = out = replica_outages(
            rng, gpu_p, server_p, replicas=slots, tp=e.tp, gpus_per_server=per_server, horizon_s=horizon_s
        )
        self.expected_availability = fleet_availability(
            gpu_p, server_p, replicas=slots, tp=e.tp, gpus_per_server=per_server
        )
        events = sorted(
            [(float(u), 0, int(r)) for r, u in zip(out["replica"], out["up_s"])]
            + [(float(d), 1, int(r)) for r, d in zip(out["replica"], out["down_s"])]
        )
        for t, kind, r in events:
            if t > env.now:
                yield env.timeout(t - env.now)
            now = env.now
            if kind == 1:
                self.down.add(r)
                if lc.scaler is None or r in lc.instance_of:  # a slot without an instance: nothing fails
                    self.hit_since[r] = now
                    self.hits += 1
                    lc.replicas[r].halt(now)
                    if lc.scaler is not None and r in lc.instance_of:
                        lc.instance_failed(r, now)
                continue
            self.down.discard(r)
            self.released(r, now)
            if lc.scaler is not None:
                if r not in lc.instance_of:
                    continue
                if lc.scaler.instances[lc.instance_of[r]].ready_s > now:
                    lc.replicas[r].switch(True, now)
                    continue  # still starting: it serves at its ready time
            lc.serve(lc.replicas[r], now)

    def released(self, slot: int, now: float) -> None:
        """The slot's downtime ends now (repaired, or its instance released while down)."""
        since = self.hit_since.pop(slot, None)
        if since is not None:
            self.down_replica_s += now - since

    def block(self, horizon_s: float) -> dict:
        lc = self.lifecycle
        summary = outage_summary(self.timeline, len(lc.replicas), horizon_s)
        down_h = (self.down_replica_s + sum(horizon_s - t for t in self.hit_since.values())) / HOUR_S
        return {
            "source": self.spec.source,
            # outages that took a replica down (with autoscaling, a slot without an instance has
            # none to lose: `slot_outages` counts those too)
            "outages": self.hits,
            "slot_outages": summary["outages"],
            "by_cause": summary["by_cause"],
            "requests_requeued": lc.down_requeued,  # handed back by failed replicas
            "replica_hours_down": down_h,
            "gpu_hours_down": down_h * lc.engine.tp,
            "availability": summary["availability"],
            "availability_long_run": self.expected_availability,  # closed form, MTBF / (MTBF + MTTR)
            "billed_while_down": True,  # rented GPUs are paid for while broken
        }
