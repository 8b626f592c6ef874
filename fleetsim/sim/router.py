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
        return min(self.replicas, key=lambda r: r.outstanding)


class MostFreeKv:
    """Most free KV memory, discounting what its queue will need."""

    def __init__(self, replicas, rng):
        self.replicas = replicas

    def pick(self, rid):
        return max(self.replicas, key=lambda r: r.free_bytes() - len(r.waiting) * r.engine.kv_start[rid])


ROUTERS = {
    "round_robin": RoundRobin,
    "random": Random,
    "least_outstanding": LeastOutstanding,
    "most_free_kv": MostFreeKv,
}


def make_router(name: str, replicas, rng):
    try:
        return ROUTERS[name](replicas, rng)
    except KeyError:
        raise SpecError(f"fleet.router: '{name}' is unknown; choose one of {', '.join(ROUTERS)}") from None
