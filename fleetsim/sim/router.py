"""Routers spread arriving requests over replicas."""

from __future__ import annotations

import numpy as np

from fleetsim.errors import SpecError


class RoundRobin:
    def __init__(self, replicas, rng):
        self.replicas = replicas
        self.next = 0

    def pick(self, rid):
        r = self.replicas[self.next]
        self.next = (self.next + 1) % len(self.replicas)
        return r


class Random:
    def __init__(self, replicas, rng: np.random.Generator):
        self.replicas = replicas
        self.rng = rng
        self.draws: list[int] = []

    def pick(self, rid):
        if not self.draws:
            self.draws = self.rng.integers(0, len(self.replicas), 4096).tolist()
        return self.replicas[self.draws.pop()]


class LeastOutstanding:
    """Fewest requests queued or running (ties: lowest index)."""

    def __init__(self, replicas, rng):
        self.replicas = replicas

    def pick(self, rid):
        best, best_n = None, None
        for r in self.replicas:
            n = len(r.waiting) + len(r.prefilling) + len(r.running)
            if best_n is None or n < best_n:
                best, best_n = r, n
        return best


class MostFreeKv:
    """Most free KV memory, discounting what its queue will need."""

    def __init__(self, replicas, rng):
        self.replicas = replicas

    def pick(self, rid):
        return max(self.replicas, key=lambda r: r.free_bytes() - len(r.waiting) * r.engine.kv_start[rid])


class CentralQueue:
    """One fleet-wide FCFS queue: a request goes to a replica with a free running slot, else
    waits centrally until any replica finishes one (a global scheduler; with one slot per
    replica this is exactly the M/M/c discipline)."""

    central = True

    def __init__(self, replicas, rng):
        self.replicas = replicas

    def pick(self, rid):
        for r in self.replicas:
            if r.outstanding < r.max_running_seqs:
                return r
        return None


ROUTERS = {
    "round_robin": RoundRobin,
    "random": Random,
    "least_outstanding": LeastOutstanding,
    "most_free_kv": MostFreeKv,
    "central_queue": CentralQueue,
}


def make_router(name: str, replicas, rng):
    try:
        return ROUTERS[name](replicas, rng)
    except KeyError:
        raise SpecError(f"fleet.router: '{name}' is unknown; choose one of {', '.join(ROUTERS)}") from None
