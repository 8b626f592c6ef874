"""A replica running speculative decoding (fleetsim.speculative_model). Decode-only runs need
nothing here: the step model makes each iteration 1/E of a speculative step. An iteration with
prefill work is a whole speculative step, in which each decoding sequence gains E tokens in
expectation, not the one the replica counts: the E - 1 more are credited after it, as whole
tokens through a deterministic carry (the same run, the same credits), each sequence at most up
to its output length. A credit moves the sequence's start and finish iteration back by the
tokens credited, which keeps the A + G x iteration memory bookkeeping exact (its KV grows by
those tokens). The credited tokens are counted in the token meter; they add no ITL samples
(they arrive with the step's first token).
"""

from __future__ import annotations

import heapq

from fleetsim.sim.replica import Replica


class SpeculativeReplica(Replica):
    def __init__(self, env, index: int, engine, pool_bytes: float):
        super().__init__(env, index, engine, pool_bytes)
        self.extra_tokens_per_step = engine.step_model.tokens_per_step - 1.0
        self._carry = 0.0

    def _prefill_iteration(self, starts_at: float | None = None):
        # the sequences this iteration decodes (none when prompt iterations run alone)
        decoding = [] if self.prefill_exclusive else list(self.running)
        yield from super()._prefill_iteration(starts_at)
        if not decoding:
            return
        self._carry += self.extra_tokens_per_step
        credit = int(self._carry)
        if credit:
            self._carry -= credit
            self._credit(decoding, credit)

    def _credit(self, rids: list[int], tokens: int) -> None:
        """Credit `tokens` more decoded tokens to each of `rids` still running (at most what it
        has left), then complete those that are done."""
        finish = {rid: f for f, rid in self.heap}
        moved: dict[int, int] = {}
        for rid in rids:
            state = self.running.get(rid)
            if state is None:
                continue  # finished in the iteration
            c = min(tokens, finish[rid] - self.it)
            if c <= 0:
                continue
            start_it, g = state
            self.running[rid] = (start_it - c, g)
            self.mem_a += g * c
            self.read_a += g * c
            moved[rid] = c
        if not moved:
            return
        self.heap = [(f - moved.get(rid, 0), rid) for f, rid in self.heap]
        heapq.heapify(self.heap)
        self.tokens_out += sum(moved.values())
        self._complete_due(self.env.now)
