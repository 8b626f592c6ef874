"""Waiting queues of a replica (and of a central router): FCFS is a deque; with class priorities
a heap ordered by fleetsim.admission.ClassPolicies.schedule_key (higher priority, then earlier
arrival, then lower request id). Both answer the deque calls the scheduler makes. And the count
of requests refused, per class and reason."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator


class PriorityQueue:
    """A heap of (key, rid) with the deque calls the scheduler uses: a preempted request put back
    (`appendleft`) takes its place by its key, as vLLM V1's priority scheduler re-queues it."""

    def __init__(self, key: Callable[[int], tuple]) -> None:
        self.key = key
        self.heap: list[tuple[tuple, int]] = []

    def __len__(self) -> int:
        return len(self.heap)

    def __bool__(self) -> bool:
        return bool(self.heap)

    def __getitem__(self, i: int) -> int:
        if i != 0:
            raise IndexError("PriorityQueue: only the head ([0]) is indexed")
        return self.heap[0][1]

    def __iter__(self) -> Iterator[int]:
        return (rid for _, rid in sorted(self.heap))

    def append(self, rid: int) -> None:
        heapq.heappush(self.heap, (self.key(rid), rid))

    appendleft = append

    def popleft(self) -> int:
        return heapq.heappop(self.heap)[1]

    def remove(self, rid: int) -> None:
        i = next(i for i, (_, r) in enumerate(self.heap) if r == rid)
        last = self.heap.pop()
        if i < len(self.heap):
            self.heap[i] = last
            heapq.heapify(self.heap)


def rejections_by_class(counts: dict[tuple[int, str], int], class_names: list[str]) -> dict[str, dict[str, int]]:
    """{(class index, reason): n} as {class name: {reason: n}}, sorted."""
    out: dict[str, dict[str, int]] = {}
    for (c, reason), n in sorted(counts.items()):
        out.setdefault(class_names[c], {})[reason] = n
    return out


def merge_rejections(parts: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """Sum {class name: {reason: n}} tables (the pods of a fleet)."""
    out: dict[str, dict[str, int]] = {}
    for part in parts:
        for name, reasons in part.items():
            into = out.setdefault(name, {})
            for reason, n in reasons.items():
                into[reason] = into.get(reason, 0) + n
    return {name: dict(sorted(r.items())) for name, r in sorted(out.items())}
