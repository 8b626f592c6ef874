"""Scheduling that runs prompts apart from the decodes, as the parts of a replica's loop it changes
(fleetsim.sim.replica): vLLM V0's, and SGLang's prompt iterations.

- Prompt iterations run alone (engine profile batching.prefill_alone): vLLM V0 without chunked
  prefill (vllm/core/scheduler.py `_schedule_default`, "Don't schedule decodes if prefills are
  scheduled"), SGLang chunked or not (`get_next_batch_to_run`, "Run prefill first if possible").
  The decoding sequences wait; the wait is part of their next inter-token gap.
- Multi-step scheduling (batching.scheduler_steps, --num-scheduler-steps): the scheduler runs once
  per window of decode steps, so its host work is spread over them (fleetsim.perf), new prompts
  join only between windows, and a window's tokens stream out together at its end (the vLLM
  v0.6.0 release post: "they will receive batches of tokens").
"""

from __future__ import annotations


class V0Scheduling:
    prefill_exclusive: bool
    stalls: list[tuple[float, int]]
    window_steps: int
    window_pos: int
    window_s: float

    def init_v0_scheduling(self, engine) -> None:
        self.prefill_exclusive = engine.prefill_exclusive
        # the prompt-only iterations since the last decode step, as (iteration s, sequences waiting)
        self.stalls = []
        self.window_steps = engine.engine_profile.batching.scheduler_steps
        self.window_pos = 0  # decode steps into the current window
        self.window_s = 0.0  # its time so far: the gap before its tokens reach the client

    def _advance_window(self, dur_s: float, steps: int) -> bool:
        """A multi-step window ran `steps` more decode steps in dur_s: whether it ended. A window
        begins after the prompt iterations that the sequences waited for."""
        if self.window_pos == 0:
            self.window_s = sum(t for t, _ in self.stalls)
            self.stalls.clear()
        self.window_s += dur_s
        self.window_pos = (self.window_pos + steps) % self.window_steps
        return self.window_pos == 0

    def _book_stalls(self, parts: list, n: int, itl, now: float) -> list:
        """The first token of this run, for the sequences that waited through prompt-only
        iterations, came after those iterations too: their inter-token gap is the wait plus a
        step of the run (its first segment's mean, so the gaps still sum to the time). The waiting
        set only grows over the iterations, so the sequences that joined it at the j-th waited
        iterations j..last. Returns the parts less those tokens."""
        first_t, first_count = parts[0]
        left_s = sum(t for t, _ in self.stalls)
        before = booked = 0
        for t, count in self.stalls:
            count = min(count, n)
            if count > before:
                itl.add(first_t + left_s, count - before, now)
                booked += count - before
                before = count
            left_s -= t
        self.stalls.clear()
        if n * first_count > booked:
            itl.add(first_t, n * first_count - booked, now)
        return parts[1:]
