"""One replica (a tensor-parallel group of GPUs) running vLLM-style continuous batching.

Each scheduler iteration serves every running (decoding) sequence one token, and spends what is
left of the token budget on prefill chunks, FCFS (or by class priority, then arrival). KV memory is accounted in bytes per GPU:
a sequence holds footprint(prompt) after admission and grows linearly to footprint(prompt +
output) over its decode steps (plus half a block of internal fragmentation on average).

Speed: between batch changes every decode iteration's time is known in advance, so a run of
many iterations is one SimPy timeout. Per-sequence progress is lazy: the replica counts its
iterations, each decoding sequence remembers the iteration it started decoding at and when it
will finish (a heap), and memory is two running sums (A + G * iteration).
An arrival that could be admitted interrupts a run at the next iteration boundary.
"""

from __future__ import annotations

import heapq

import simpy

from fleetsim.power import gpu_power_w
from fleetsim.sim.decode_run import DecodeRun
from fleetsim.sim.v0_scheduling import V0Scheduling


class Replica(V0Scheduling):
    serving = True  # a fixed fleet's replica always takes requests (fleetsim.sim.dynamic_replica)

    def __init__(self, env: simpy.Environment, index: int, engine, pool_bytes: float):
        self.env = env
        self.index = index
        self.engine = engine
        self.step = engine.step_model
        self.power = engine.step_model.power
        self.tp = engine.tp
        self.peak_flops = self.step.peak_flops
        self.bw = self.step.bw
        sched = engine.scenario.scheduler
        self.max_batched_tokens = sched.max_batched_tokens
        self.max_running_seqs = sched.max_running_seqs
        self.chunked_prefill = sched.chunked_prefill
        self.init_v0_scheduling(engine)
        self.pool_bytes = pool_bytes
        # Half a block of fragmentation per sequence (+ speculation's lookahead slots, 0 without)
        self.frag_bytes = 0.5 * engine.plan.block_bytes_per_gpu + engine.lookahead_bytes

        self.waiting = engine.new_queue()  # FCFS deque, or by class priority
        self.prefilling: dict[int, list] = {}  # rid -> [tokens_left, tokens_done]
        self.running: dict[int, tuple] = {}  # rid -> (start_it, growth, base) in admission order
        self.heap: list[tuple[int, int]] = []  # (finish_iteration, rid)
        self.it = 0
        # Held bytes per GPU = mem_a + mem_g * it ; KV read per iteration = read_a + mem_g * it.
        self.mem_a = 0.0
        self.mem_g = 0.0
        self.read_a = 0.0
        self.prefix_bytes = 0.0
        self.prefixes_stored: set[int] = set()
        self.reserved = 0.0  # KV reserved by admitted requests (reserve_full admission)
        self.reload_due_s = 0.0  # host-tier reload time the next prefill iteration waits for (block cache)

        # accounting
        self.energy_j = 0.0
        self.busy_s = 0.0
        self.prefill_s = 0.0
        self.decode_s = 0.0
        self.kv_byte_s = 0.0
        self.preemptions = 0
        self.peak_power_w = self.power.idle_w  # per GPU
        self._idle_since = 0.0
        self.current_power_w = self.power.idle_w * self.tp
        self.in_run = False
        self._seg_start = 0.0  # when the iteration or run in progress started (energy meter)
        # Power (whole replica) of a cut-short run's last step, booked ahead to _seg_start while
        # the replica waits for that step's end: the meter takes the part after `now` back out.
        self._ahead_w = 0.0
        self.tokens_out = 0  # output tokens emitted (first tokens and decoded ones)
        self._run: DecodeRun | None = None  # the decode run in progress (token meter)
        self._run_n = 0
        self.boundary_at = -1.0  # start time of a planned iteration (after a run was cut short)
        self.sleeping = True
        self.wakeup = env.event()
        self.process = env.process(self._loop())

    # ------------------------------------------------------------------ bookkeeping
    @property
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.prefilling) + len(self.running)

    def held_bytes(self) -> float:
        return self.mem_a + self.mem_g * self.it + self.prefix_bytes

    def free_bytes(self) -> float:
        return self.pool_bytes - self.held_bytes()

    def _admit_need(self, rid: int) -> float:
        """KV bytes a request needs to be admitted. On-demand engines (vLLM V1, SGLang) allocate
        blocks for the tokens scheduled this iteration: the first prefill chunk. The whole prompt
        is then held, and a shortfall later is met by preemption, as V1's scheduler does."""
        e = self.engine
        c = e.req_class[rid]
        extra = (
            e.class_prefix_bytes[c]
            if e.prefix_caching and e.prefix_tokens[rid] and c not in self.prefixes_stored
            else 0.0
        )
        full = e.kv_start[rid] + e.kv_growth[rid] * e.generated[rid]
        chunk = max(self.max_batched_tokens - (0 if self.prefill_exclusive else len(self.running)), 1)
        tokens = e.input_tokens[rid] + e.generated[rid]
        if tokens > chunk:
            full = min(full, e.footprint_bytes(chunk))
        return full + self.frag_bytes + extra

    def can_admit(self, rid: int) -> bool:
        if len(self.running) + len(self.prefilling) >= self.max_running_seqs:
            return False
        if self.engine.reserve_full:
            return self.reserved + self.engine.kv_reserve[rid] <= self.pool_bytes
        return self._admit_need(rid) <= self.free_bytes()

    # ------------------------------------------------------------------ arrivals
    def enqueue(self, rid: int) -> None:
        self.waiting.append(rid)
        self.engine.router.update(self)
        self.engine.fleet.change(self.env.now, queued=+1)
        if self.sleeping:
            self.sleeping = False
            self.wakeup.succeed()
        elif self.waiting[0] == rid:  # FCFS: the queue was empty; by priority: it went to the head
            self._replan_for_head()

    def _replan_for_head(self) -> None:
        """The head of the queue changed: a decode run, or an iteration planned to start at the
        next step boundary, would leave out a request vLLM's scheduler would take at that
        boundary: re-plan."""
        if (
            (self.in_run or self.env.now < self.boundary_at)
            and self.window_steps == 1  # a multi-step window runs to its end
            and self.can_admit(self.waiting[0])
        ):
            self.in_run = False
            self.boundary_at = -1.0
            self.process.interrupt()

    def drop_waiting(self, rid: int) -> None:
        """Take a waiting request out of the queue (its wait timed out)."""
        was_head = self.waiting[0] == rid
        self.waiting.remove(rid)
        self.engine.router.update(self)
        self.engine.fleet.change(self.env.now, queued=-1)
        if was_head and self.waiting:
            self._replan_for_head()

    # ------------------------------------------------------------------ main loop
    def _loop(self):
        env = self.env
        while True:
            if not (self.waiting or self.prefilling or self.running):
                self.sleeping = True
                self.current_power_w = self.power.idle_w * self.tp
                self._idle_since = env.now
                yield self.wakeup
                self.wakeup = env.event()
                self._account_idle(env.now - self._idle_since)
                self._idle_since = env.now
                continue
            if self.window_pos and not self.running:
                self.window_pos = 0  # the window's sequences are all done
            if not self.window_pos:
                self._schedule_admissions()
            # The next iteration grows every running sequence by a token: make room first.
            while (self.running or self.prefilling) and self.free_bytes() < self.mem_g:
                self._preempt(env.now)
            if self.prefilling:
                yield from self._prefill_iteration()
            elif self.running:
                yield from self._decode_run()
            else:
                yield from self._no_room()

    def _no_room(self):
        """Nothing admissible and nothing running: the head request can never fit; it is rejected.
        (A generator: a prefill replica of a P/D fleet waits here for its KV transfers instead.)"""
        rid = self.waiting.popleft()
        self.engine.router.update(self)
        self.engine.fleet.change(self.env.now, queued=-1)
        self.engine.reject(rid)
        yield from ()

    def _account_idle(self, gap_s: float) -> None:
        self.energy_j += gap_s * self.power.idle_w * self.tp
        self.kv_byte_s += gap_s * self.held_bytes()

    def _schedule_admissions(self) -> None:
        """Move waiting requests into prefill, in queue order, while slots and KV memory allow."""
        if not self.waiting:
            return
        e = self.engine
        decoding = 0 if self.prefill_exclusive else len(self.running)
        budget = self.max_batched_tokens - decoding - sum(p[0] for p in self.prefilling.values())
        while self.waiting and budget > 0 and self.can_admit(self.waiting[0]):
            rid = self.waiting.popleft()
            cached = self._cached_tokens(rid)
            if e.reserve_full:
                self.reserved += e.kv_reserve[rid]
            base = e.kv_start[rid] + e.kv_growth[rid] * e.generated[rid]
            e.held_base[rid] = base
            self.mem_a += base + self.frag_bytes
            tokens = e.input_tokens[rid] + e.generated[rid] - cached
            self.prefilling[rid] = [tokens, cached]
            budget -= tokens
            e.mark_scheduled(rid, self.env.now)
            e.fleet.change(self.env.now, queued=-1, running=+1)

    def _cached_tokens(self, rid: int) -> int:
        """Prompt tokens an admitted request finds cached (the per-class prefix model; the block
        cache of fleetsim.sim.block_cache overrides this)."""
        e = self.engine
        c = e.req_class[rid]
        cached = 0
        if e.prefix_caching and e.prefix_tokens[rid]:
            if c in self.prefixes_stored:
                cached = e.prefix_tokens[rid]  # prefix-cache hit: its KV is already here
            else:
                self.prefixes_stored.add(c)
                self.prefix_bytes += e.class_prefix_bytes[c]
        cached = max(cached, e.hit_tokens[rid])
        if e.prefix_caching and e.generated[rid]:
            # Recompute after preemption: the freed blocks stay in the prefix cache (evicted
            # last), so only the last, partial block is computed again.
            cached = max(cached, e.input_tokens[rid] + e.generated[rid] - 1)
        return cached

    # ------------------------------------------------------------------ one mixed iteration
    def _prefill_iteration(self, starts_at: float | None = None):
        """One iteration with prefill work. When a decode run was cut short by an arrival, the
        iteration is planned at once but starts at the run's next step boundary (`starts_at`);
        a further admissible arrival before then re-plans it."""
        env, e = self.env, self.engine
        chunked, footprint_bytes = self.chunked_prefill, e.footprint_bytes
        while True:
            n_dec = 0 if self.prefill_exclusive else len(self.running)
            budget = self.max_batched_tokens - n_dec
            chunks = []
            tokens = 0
            pair_bytes = 0.0
            for rid, state in self.prefilling.items():
                if budget <= 0:
                    break
                left, done = state
                if chunked:
                    c = left if left < budget else budget
                elif left <= budget or not chunks:
                    c = left  # without chunking a prompt goes whole (vLLM needs budget >= max_model_len)
                else:
                    break
                chunks.append((rid, c))
                budget -= c
                tokens += c
                # Attention of c query tokens over the context at mid-chunk (causal), per GPU.
                pair_bytes += c * footprint_bytes(done + 0.5 * c)
            read = 0.0 if self.prefill_exclusive else self.read_a + self.mem_g * self.it
            cost = self.step.iteration(n_dec, read, tokens, pair_bytes, len(chunks))
            t = cost.time_s + self.reload_due_s  # a block cache's host reloads load before the forward
            p = self._power(cost.flops, cost.bytes, t)
            self.current_power_w = p * self.tp
            self.in_run = False
            wait = 0.0
            if starts_at is not None and starts_at > env.now:
                wait = starts_at - env.now
                self.boundary_at = starts_at
            self._seg_start = env.now + wait
            try:
                yield env.timeout(wait + t)
            except simpy.Interrupt:
                self._schedule_admissions()
                continue
            self.boundary_at = -1.0
            break
        self.reload_due_s = 0.0
        self.energy_j += p * t * self.tp
        if p > self.peak_power_w:
            self.peak_power_w = p
        if n_dec:
            e.itl.add(t, n_dec, env.now)
        self.tokens_out += n_dec
        self.busy_s += t
        self.prefill_s += t * tokens / (tokens + n_dec)
        self.decode_s += t * n_dec / (tokens + n_dec)
        self.kv_byte_s += t * self.held_bytes()
        if self.prefill_exclusive:
            if self.running:  # they decode nothing this iteration: their next token waits for it
                self.stalls.append((t, len(self.running)))
        else:
            self.it += 1
        now = env.now
        for rid, c in chunks:
            state = self.prefilling[rid]
            state[0] -= c
            state[1] += c
            if state[0] == 0:
                del self.prefilling[rid]
                self._start_decode(rid, now)
        self._complete_due(now)

    def _start_decode(self, rid: int, now: float) -> None:
        """Prefill finished: the first output token is out; the rest is decode."""
        e = self.engine
        self.tokens_out += 1
        if e.generated[rid] == 0:
            e.mark_first_token(rid, now)
        e.generated[rid] += 1
        left = e.output_tokens[rid] - e.generated[rid]
        base = e.held_base[rid]
        if left <= 0:
            self.mem_a -= base + self.frag_bytes
            self._unreserve(rid)
            e.fleet.change(now, running=-1)
            e.complete(rid, now, self.index)
            return
        g = e.kv_growth[rid]
        # From here its memory grows by g per iteration: A + G * it bookkeeping.
        self.mem_a -= g * self.it
        self.mem_g += g
        self.read_a += base + e.prefix_read[rid] - g * self.it
        self.running[rid] = (self.it, g)
        heapq.heappush(self.heap, (self.it + left, rid))

    def _unreserve(self, rid: int) -> None:
        if self.engine.reserve_full:
            self.reserved -= self.engine.kv_reserve[rid]

    def _release(self, rid: int, start_it: int, g: float) -> None:
        self._unreserve(rid)
        e = self.engine
        base = e.held_base[rid]
        self.mem_a -= base + self.frag_bytes - g * start_it
        self.read_a -= base + e.prefix_read[rid] - g * start_it
        self.mem_g -= g

    def _complete_due(self, now: float) -> None:
        e = self.engine
        heap = self.heap
        while heap and heap[0][0] <= self.it:
            _, rid = heapq.heappop(heap)
            start_it, g = self.running.pop(rid)
            e.generated[rid] = e.output_tokens[rid]
            self._release(rid, start_it, g)
            e.fleet.change(now, running=-1)
            e.complete(rid, now, self.index)

    # ------------------------------------------------------------------ decode-only runs
    def _decode_run(self):
        env = self.env
        n = len(self.running)
        it, mem_g = self.it, self.mem_g
        k = self.heap[0][0] - it
        if mem_g > 0:
            room = self.pool_bytes - self.held_bytes()
            k_fill = int(room // mem_g)
            if k_fill < 1:
                self._preempt(env.now)
                return
            if k_fill < k:
                k = k_fill
        if self.window_steps > 1 and k > self.window_steps - self.window_pos:
            k = self.window_steps - self.window_pos
        run = DecodeRun(self.step, n, self.read_a + mem_g * it, mem_g, k)
        total = run.cum[-1]
        tp = self.tp
        self.current_power_w = run.power_at_start_w() * tp  # for the time series
        start = env.now
        self._seg_start = start
        self._run, self._run_n = run, n
        steps = k
        self.in_run = True
        try:
            yield env.timeout(total)
        except simpy.Interrupt:
            elapsed = env.now - start
            steps = run.steps_started_by(elapsed)
            if steps >= k:
                # Interrupted in the run's last step: the run still ends as planned (its time and
                # energy are booked to its end), so the next iteration starts there, not now.
                yield env.timeout(max(start + total - env.now, 0.0))
        self.in_run = False
        self._run = None
        self.tokens_out += n * steps
        dur, energy, peak, weighted, parts = run.settle(steps)
        if steps >= k:
            dur = total
        itl, now = self.engine.itl, env.now
        if self.window_steps > 1:
            window_end = self._advance_window(dur, steps)
        else:
            if self.stalls:
                parts = self._book_stalls(parts, n, itl, now)
            for mean_t, count in parts:
                itl.add(mean_t, n * count, now)
        held0 = self.held_bytes()
        self.energy_j += energy * tp
        if peak > self.peak_power_w:
            self.peak_power_w = peak
        self.busy_s += dur
        self.decode_s += dur
        # KV held grows linearly per iteration: integral = sum_j (held0 + G j) t_j.
        self.kv_byte_s += held0 * dur + self.mem_g * weighted
        self.it += steps
        if steps < k:
            # Cut short by an arrival: no sequence finishes before the run's end, so the next
            # iteration (with the new prefill) starts at the boundary of the step in progress.
            boundary = start + dur
            self._ahead_w = run.step_power_w(steps - 1) * tp
            self._seg_start = boundary  # booked up to there (the prefill plans from it too)
            self._schedule_admissions()
            if self.prefilling:
                yield from self._prefill_iteration(starts_at=boundary)
            else:  # the arrival no longer fits (memory moved): resume decoding at the boundary
                yield env.timeout(max(boundary - env.now, 0.0))
            return
        if self.window_steps > 1:
            self._complete_due(now)
            # Its tokens reach the client at the window's end, or at a sequence's last token.
            count = n if window_end else n - len(self.running)
            if count:
                itl.add(self.window_s, count, now)
            return
        self._complete_due(now)

    def _victim(self) -> int:
        """The sequence preempted: the tail of vLLM V1's running list (the last still prefilling,
        else the last decoding); with class priorities the tail among the lowest priority's."""
        e = self.engine
        if not e.prioritized:
            return next(reversed(self.prefilling)) if self.prefilling else next(reversed(self.running))
        prio, cls = e.class_priority, e.req_class
        low = min(prio[cls[r]] for group in (self.prefilling, self.running) for r in group)
        for group in (self.prefilling, self.running):
            for r in reversed(group):
                if prio[cls[r]] == low:
                    return r
        raise AssertionError("no sequence to preempt")

    def _preempt(self, now: float) -> None:
        """Out of KV blocks: evict a sequence (see _victim); it is recomputed later."""
        e = self.engine
        rid = self._victim()
        if rid in self.prefilling:
            del self.prefilling[rid]
            self.mem_a -= e.held_base[rid] + self.frag_bytes
            self._unreserve(rid)
            e.preempted(rid)
            self.preemptions += 1
            self.waiting.appendleft(rid)
            e.fleet.change(now, running=-1, queued=+1)
            return
        start_it, g = self.running.pop(rid)
        self.heap = [(f, r) for f, r in self.heap if r != rid]
        heapq.heapify(self.heap)
        produced = self.it - start_it
        self._release(rid, start_it, g)
        e.generated[rid] += produced
        e.preempted(rid)
        self.preemptions += 1
        self.waiting.appendleft(rid)
        e.fleet.change(now, running=-1, queued=+1)

    def metered_energy_j(self, now: float) -> float:
        """GPU energy up to `now` (J, whole replica): what is booked, plus the idle gap, the decode
        run in progress (DecodeRun.energy_by_j) or the iteration in progress at its power, less
        what a cut-short run booked past now. Never ahead of what the replica books later."""
        if self.sleeping:
            return self.energy_j + (now - self._idle_since) * self.power.idle_w * self.tp
        if self._run is not None:  # a decode run in progress: its steps' own powers, not the first's
            return self.meters(now)[0]
        if now >= self._seg_start:
            return self.energy_j + (now - self._seg_start) * self.current_power_w
        return self.energy_j - (self._seg_start - now) * self._ahead_w

    def meters(self, now: float) -> tuple[float, int]:
        """(metered_energy_j(now), output tokens of the decode run in progress emitted by now: its
        iterations begun, less the one in progress, times its batch), from one reading of the run."""
        run = self._run
        if run is None or self.sleeping:
            return self.metered_energy_j(now), 0
        started, run_energy_j = run.meter(now - self._seg_start)
        return self.energy_j + run_energy_j * self.tp, (started - 1) * self._run_n if started > 1 else 0

    def _power(self, flops, moved, t):
        u_c = flops / (t * self.peak_flops)
        u_m = moved / (t * self.bw)
        return gpu_power_w(self.power, u_c, u_m)


def fleet_meters(replicas, now: float) -> tuple[float, float, float, int]:
    """The fleet's meters at `now`, summed over the replicas in index order (one pass): KV bytes
    held per GPU, power (W), GPU energy (J: what is accounted, plus the idle gap or the iteration
    in progress at its current power) and output tokens emitted (the iterations finished, plus
    those of a decode run in progress that have finished by now)."""
    held, power, energy = [], [], []
    tokens = 0
    for r in replicas:
        held.append(r.mem_a + r.mem_g * r.it + r.prefix_bytes)
        power.append(r.current_power_w)
        energy_j, run_tokens = r.meters(now)
        energy.append(energy_j)
        tokens += r.tokens_out + run_tokens
    return sum(held), sum(power), sum(energy), tokens
