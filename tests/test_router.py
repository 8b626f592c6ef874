"""The fast routers pick exactly what a scan of the replicas in index order picks, on random
sequences of enqueues, completions and rejections (ties included: counts are small integers)."""

import numpy as np
import pytest

from fleetsim.sim.router import CentralQueue, LeastOutstanding


class FakeReplica:
    def __init__(self, index: int, max_running_seqs: int):
        self.index = index
        self.max_running_seqs = max_running_seqs
        self.waiting: list[int] = []
        self.prefilling: dict[int, list] = {}
        self.running: dict[int, tuple] = {}

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.prefilling) + len(self.running)


def scan_least_outstanding(replicas):
    best, best_n = None, None
    for r in replicas:
        n = len(r.waiting) + len(r.prefilling) + len(r.running)
        if best_n is None or n < best_n:
            best, best_n = r, n
    return best


def scan_central(replicas):
    for r in replicas:
        if r.outstanding < r.max_running_seqs:
            return r
    return None


@pytest.mark.parametrize("kind", ["least_outstanding", "central_queue"])
@pytest.mark.parametrize("seed", range(6))
def test_fast_pick_equals_the_scan(kind, seed):
    rng = np.random.default_rng(seed)
    n_replicas = int(rng.integers(1, 40))
    cap = int(rng.integers(1, 5))
    replicas = [FakeReplica(i, cap) for i in range(n_replicas)]
    router = (LeastOutstanding if kind == "least_outstanding" else CentralQueue)(replicas, rng)
    scan = scan_least_outstanding if kind == "least_outstanding" else scan_central
    next_rid = 0
    for _ in range(2000):
        expected = scan(replicas)
        got = router.pick(next_rid)
        assert got is expected
        event = rng.random()
        if event < 0.5 and got is not None:  # the arrival goes where the router said
            got.waiting.append(next_rid)
            next_rid += 1
            router.update(got)
        elif event < 0.6:  # an admission or a preemption moves a request: no count change
            r = replicas[int(rng.integers(n_replicas))]
            if r.waiting:
                r.prefilling[r.waiting.pop(0)] = [1, 0]
            elif r.prefilling:
                rid = next(iter(r.prefilling))
                del r.prefilling[rid]
                r.running[rid] = (0, 0.0)
        else:  # a completion or a rejection from a queue somewhere
            r = replicas[int(rng.integers(n_replicas))]
            for part in (r.running, r.prefilling):
                if part:
                    del part[next(iter(part))]
                    break
            else:
                if r.waiting:
                    r.waiting.pop(0)
            router.update(r)
    if kind == "least_outstanding":
        assert len(router.heap) <= router.limit  # stale entries are bounded
    else:
        assert len(router.heap) <= n_replicas
