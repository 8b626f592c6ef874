"""Routers spread arriving requests over replicas.

Every pick is O(1) or O(log R) amortized (R replicas), with the same result and the same
tie-breaking as a scan of the replicas in index order. A replica tells the router when its count
of outstanding requests (queued, prefilling or running) changes: `update(replica)` right after an
enqueue, a completion or a rejection from its queue, before anything else can pick.
"""

from __future__ import annotations

import heapq

import numpy as np

from fleetsim.errors import SpecError
from fleetsim.sim.block_cache import PrefixAware


class _Router:
    central = False

    def __init__(self, replicas, rng):
        self.replicas = replicas

    def update(self, replica) -> None:
        """The replica's outstanding count changed (nothing to do for a router that ignores it)."""


class RoundRobin(_Router):
    def __init__(self, replicas, rng):
        super().__init__(replicas, rng)
        self.next = 0

    def pick(self, rid):
        r = self.replicas[self.next]
        self.next = (self.next + 1) % len(self.replicas)
        return r


class Random(_Router):
    def __init__(self, replicas, rng: np.random.Generator):
        super().__init__(replicas, rng)
        self.rng = rng
        self.draws: list[int] = []

    def pick(self, rid):
        if not self.draws:
            self.draws = self.rng.integers(0, len(self.replicas), 4096).tolist()
        return self.replicas[self.draws.pop()]


class LeastOutstanding(_Router):
    """Fewest requests queued or running (ties: lowest index).

    A min-heap of (key, index) with lazy deletion: each change pushes the replica's new entry; an
    entry whose key is no longer the replica's is dropped when it reaches the top. The top valid
    entry is then the scan's answer (smallest key, lowest index among equals). The key is the
    count here; a subclass may weigh it (fleetsim.sim.mixed.CapacityWeighted)."""

    def __init__(self, replicas, rng):
        super().__init__(replicas, rng)
        self._rebuild()

    def _key(self, r) -> float:
        return r.outstanding

    def _rebuild(self) -> None:
        key = self._key
        self.heap = [(key(r), r.index) for r in self.replicas]
        heapq.heapify(self.heap)
        self.limit = 4 * len(self.replicas) + 64  # stale entries kept before a rebuild

    def update(self, replica) -> None:
        heapq.heappush(self.heap, (self._key(replica), replica.index))
        if len(self.heap) > self.limit:
            self._rebuild()

    def pick(self, rid):
        heap, replicas, key = self.heap, self.replicas, self._key
        while True:
            k, i = heap[0]
            r = replicas[i]
            if key(r) == k:
                return r
            heapq.heappop(heap)


class MostFreeKv(_Router):
    """Most free KV memory, discounting what its queue will need (ties: lowest index).

    Still a scan (O(R)): free memory moves with every iteration of every replica, and the
    discount depends on the arriving request."""

    def pick(self, rid):
        return max(self.replicas, key=lambda r: r.free_bytes() - len(r.waiting) * r.engine.kv_start[rid])


class CentralQueue(_Router):
    """One fleet-wide FCFS queue: a request goes to a replica with a free running slot, else
    waits centrally until any replica finishes one (a global scheduler; with one slot per
    replica this is exactly the M/M/c discipline).

    The lowest-indexed replica with a free slot comes from a min-heap of indices holding every
    replica with a free slot (and perhaps some that filled since: dropped when on top)."""

    central = True

    def __init__(self, replicas, rng):
        super().__init__(replicas, rng)
        self.heap = [r.index for r in replicas if r.outstanding < r.max_running_seqs]
        self.listed = [False] * len(replicas)
        for i in self.heap:
            self.listed[i] = True

    def update(self, replica) -> None:
        i = replica.index
        if not self.listed[i] and replica.outstanding < replica.max_running_seqs:
            self.listed[i] = True
            heapq.heappush(self.heap, i)

    def pick(self, rid):
        heap, replicas = self.heap, self.replicas
        while heap:
            r = replicas[heap[0]]
            if r.outstanding < r.max_running_seqs:
                return r
            self.listed[heapq.heappop(heap)] = False
        return None


ROUTERS = {
    "round_robin": RoundRobin,
    "random": Random,
    "least_outstanding": LeastOutstanding,
    "most_free_kv": MostFreeKv,
    "central_queue": CentralQueue,
    "prefix_aware": PrefixAware,  # reads the replicas' block caches (fleetsim.sim.block_cache)
    # One GPU type: every replica has the same capacity, so fewest in flight per unit of capacity is
    # fewest in flight (a mixed fleet's weighted router: fleetsim.sim.mixed).
    "capacity_weighted": LeastOutstanding,
}


def make_router(name: str, replicas, rng):
    try:
        return ROUTERS[name](replicas, rng)
    except KeyError:
        raise SpecError(f"fleet.router: '{name}' is unknown; choose one of {', '.join(ROUTERS)}") from None
