"""A replica that can stop serving, fail and be switched off or on (autoscaling and failures), and
the router wrapper that never picks one that does not serve.

Only runs with `autoscaling` or `failures` build these (fleetsim.sim.lifecycle); a fixed fleet
runs fleetsim.sim.replica.Replica untouched, so its hot path carries none of the checks here.

Halting (a failure, or a drain that ran past its timeout) hands back every waiting, prefilling and
running request: tokens already emitted stay emitted, the KV is lost (each is recomputed wherever
it is re-queued, as after a preemption). The replica's SimPy process is told by an interrupt; the
interrupt handlers of Replica re-plan through `_schedule_admissions`, which here raises `_Halt`
once halting, so the process unwinds to `_loop`, tears down and sleeps, never resuming the cut
iteration. An unpowered replica (switched off, or down) has the same power model with zero idle
draw: idle accounting, the fleet meters and the end-of-run closure then read zero without a hook.
"""

from __future__ import annotations

import simpy

from fleetsim.sim.replica import Replica
from fleetsim.sim.router import MostFreeKv, Random, RoundRobin

NOT_SERVING = 1 << 40  # outstanding count a non-serving replica shows routers: never the least


class _Halt(Exception):
    """Unwinds a halting replica's process from wherever it re-plans."""


class DynamicReplica(Replica):
    def __init__(self, env: simpy.Environment, index: int, engine, pool_bytes: float, lifecycle, *, powered: bool):
        super().__init__(env, index, engine, pool_bytes)
        self.lifecycle = lifecycle
        self.serving = powered  # the router may pick it
        self.halting = False  # a halt is pending (the process tears down at its next step)
        self.draining = False  # scale-down: finish what it holds, then release
        self._in_prefill = False
        self._on = self.power
        self._off = self.power.model_copy(update={"idle_w": 0.0})
        if not powered:
            self.power = self._off
            self.current_power_w = 0.0

    # ------------------------------------------------------------------ state seen by routers
    @property
    def outstanding(self) -> int:
        n = len(self.waiting) + len(self.prefilling) + len(self.running)
        return n if self.serving else NOT_SERVING + n

    @property
    def holds(self) -> int:
        """Requests it holds (waiting, prefilling, running), serving or not."""
        return len(self.waiting) + len(self.prefilling) + len(self.running)

    @property
    def powered(self) -> bool:
        return self.power is self._on

    def busy_meter_s(self, now: float) -> float:
        """Busy seconds so far, the iteration or decode run in progress counted up to now."""
        if self.sleeping:
            return self.busy_s
        return self.busy_s + max(now - self._seg_start, 0.0)

    # ------------------------------------------------------------------ power
    @property
    def asleep(self) -> bool:
        """Its process waits on `wakeup` (perhaps already triggered by an enqueue this instant)."""
        return self.sleeping or self.wakeup.triggered

    def switch(self, on: bool, now: float) -> None:
        """Power on or off (the idle gap so far at the old power when asleep)."""
        if self.asleep:
            self._account_idle(now - self._idle_since)
            self._idle_since = now
            self.current_power_w = (self._on if on else self._off).idle_w * self.tp
        self.power = self._on if on else self._off

    # ------------------------------------------------------------------ halting
    def halt(self, now: float) -> None:
        """Stop at once and hand back everything it holds (to lifecycle.handed_back), unpowered."""
        e = self.engine
        self.serving = False
        e.router.update(self)
        if self.asleep:  # at most a queue (nothing admitted yet): no process step needed
            rids = list(self.waiting)
            if rids:
                e.fleet.change(now, queued=-len(rids))
                self.waiting = e.new_queue()
            self.switch(False, now)
            e.router.update(self)
            self.lifecycle.handed_back(self, rids, now)
            return
        if not self.halting:
            self.halting = True
            self.process.interrupt("halt")

    def _schedule_admissions(self) -> None:
        if self.halting:
            raise _Halt
        super()._schedule_admissions()

    def _complete_due(self, now: float) -> None:
        self._in_prefill = False  # the iteration is accounted by now
        super()._complete_due(now)
        if self.halting:
            raise _Halt
        if self.draining and not self.holds:
            self.lifecycle.drained(self, now)
        self.lifecycle.after_completion()

    def _start_decode(self, rid: int, now: float) -> None:
        e = self.engine
        if e.generated[rid] == 0:
            self.lifecycle.first_token(now - e.arrival_s[rid])
        super()._start_decode(rid, now)
        self.lifecycle.after_completion()

    def _prefill_iteration(self, starts_at: float | None = None):
        self._in_prefill = True
        yield from super()._prefill_iteration(starts_at)
        self._in_prefill = False

    def _loop(self):
        while True:
            try:
                yield from super()._loop()
            except (_Halt, simpy.Interrupt):
                # A second interrupt of the same instant (an arrival's re-plan and a halt) finds
                # the replica already torn down and asleep: nothing to do.
                if self.halting:
                    self._teardown(self.env.now)

    def _teardown(self, now: float) -> None:
        e = self.engine
        if self._in_prefill and now > self._seg_start:
            self.energy_j += (now - self._seg_start) * self.current_power_w  # the cut iteration so far
        self._in_prefill = False
        if self._run is not None:
            self._book_run(self._run, now)
        rids = list(self.waiting)
        if rids:
            e.fleet.change(now, queued=-len(rids))
        for rid in self.prefilling:
            self._unreserve(rid)
            rids.append(rid)
        for rid, (start_it, _g) in self.running.items():
            self._unreserve(rid)
            e.generated[rid] += self.it - start_it  # emitted tokens stay emitted
            rids.append(rid)
        held = len(self.prefilling) + len(self.running)
        if held:
            e.fleet.change(now, running=-held)
        self.waiting = e.new_queue()
        self.prefilling, self.running, self.heap = {}, {}, []
        self.mem_a = self.mem_g = self.read_a = self.prefix_bytes = self.reserved = 0.0
        self.prefixes_stored = set()
        self.in_run, self.boundary_at, self._run = False, -1.0, None
        self.window_pos, self.window_s = 0, 0.0
        self.stalls.clear()
        self.wakeup = self.env.event()
        self.halting = False
        self.power = self._off
        self.current_power_w = 0.0
        e.router.update(self)
        self.lifecycle.handed_back(self, rids, now)

    def _book_run(self, run, now: float) -> None:
        """Book the steps begun by now of a decode run the halt cut before Replica booked it (a
        second interrupt while it waited for its last step's end)."""
        steps = min(run.steps_started_by(now - self._seg_start), run.k)
        energy, peak = run.energy_j(steps)
        self.energy_j += energy * self.tp
        self.peak_power_w = max(self.peak_power_w, peak)
        self.tokens_out += self._run_n * steps
        dur = run.time_s(steps)
        self.busy_s += dur
        self.decode_s += dur
        self.it += steps


class ServingRouter:
    """A router over the fleet that never returns a replica that does not serve (None when none
    does: the request waits in the engine's central queue). Least-outstanding and central-queue
    routers already pass over one (it shows NOT_SERVING outstanding); round robin and random skip
    it (the next in turn, another draw); most-free-KV scans the serving ones."""

    def __init__(self, inner, replicas):
        self.inner = inner
        self.replicas = replicas
        self.central = inner.central

    def update(self, replica) -> None:
        self.inner.update(replica)

    def pick(self, rid):
        r = self.inner.pick(rid)
        if r is None or r.serving:
            return r
        serving = [x for x in self.replicas if x.serving]
        if not serving:
            return None
        if isinstance(self.inner, (RoundRobin, Random)):
            while not r.serving:
                r = self.inner.pick(rid)
            return r
        if isinstance(self.inner, MostFreeKv):
            return max(serving, key=lambda x: x.free_bytes() - len(x.waiting) * x.engine.kv_start[rid])
        return min(serving, key=lambda x: (x.outstanding, x.index))
