"""Builds a fleet from a scenario and runs it. Every capacity error is raised before the clock
starts; the run itself records flat per-request rows and time-weighted fleet levels."""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import simpy

from fleetsim.admission import Admission, ClassPolicies
from fleetsim.errors import SpecError
from fleetsim.memory import MemoryPlan
from fleetsim.profile import load_engine_profile
from fleetsim.replica_model import replica_model
from fleetsim.sim.block_cache import BlockCacheReplica, BlockChains, block_cache_on
from fleetsim.sim.queues import PriorityQueue, rejections_by_class
from fleetsim.sim.replica import Replica
from fleetsim.sim.router import make_router
from fleetsim.sim.run_record import DONE, PENDING, REJECTED, RunRecord
from fleetsim.sketch import LogHistogram
from fleetsim.spec.architecture import Architecture
from fleetsim.spec.engine import EngineProfile, prefill_runs_alone
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.profile import CalibrationProfile
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.workload import LengthSampler, RequestBatch, generate_requests, load_trace, think_time_sampler

ADD_CHUNK_ROWS = 1 << 16  # rows whose KV columns are computed at once (bounds the temporaries)


def _append(column: array, values, dtype) -> None:
    """Append numpy values to a typed column (same machine type: a byte copy, no Python objects)."""
    column.frombytes(np.ascontiguousarray(values, dtype=dtype).tobytes())


class FleetLevels:
    """Fleet-wide counts of running and queued sequences, with exact time integrals."""

    def __init__(self):
        self.running = 0
        self.queued = 0
        self.last_s = 0.0
        self.running_area = 0.0
        self.queued_area = 0.0
        self.max_running = 0
        self.max_queued = 0

    def change(self, now: float, queued: int = 0, running: int = 0) -> None:
        dt = now - self.last_s
        if dt:
            self.running_area += self.running * dt
            self.queued_area += self.queued * dt
            self.last_s = now
        self.running += running
        self.queued += queued
        if self.running > self.max_running:
            self.max_running = self.running
        if self.queued > self.max_queued:
            self.max_queued = self.queued


AUTO_WARMUP_FRACTION = 0.1  # without run.warmup_s, at least the first 10% of the arrival period is warm-up


@dataclass(frozen=True)
class RawRun:
    """What a run produced, before metrics: data only."""

    arrivals_end_s: float  # when arrivals stop (0 for an offline batch: everything at t = 0)
    warmup_s: float  # the scenario's warm-up (0: chosen from the run, see metrics.steady_window)
    itl: LogHistogram  # inter-token latencies after the warm-up, one sample per decoded token

    requests: pd.DataFrame
    timeseries: pd.DataFrame
    replicas: pd.DataFrame
    simulated_s: float
    running_area: float
    queued_area: float
    max_running: int
    max_queued: int
    trace_dropped_after_duration: int = 0  # trace requests left out: they arrive after run.duration_s
    # requests rejected, per class name and reason: too_large (never fits the model length or the KV
    # pool), queue_full (scheduler.max_queue), rate_limited (admission.token_bucket), timeout
    # (admission.queue_timeout_s)
    rejected_by_reason: dict[str, dict[str, int]] = field(default_factory=dict)
    # autoscaling / failures (fleetsim.sim.lifecycle): instance lifetimes and the summary blocks
    lifetimes: pd.DataFrame | None = None
    dynamics: dict = field(default_factory=dict)


class Engine(RunRecord):
    def __init__(
        self,
        scenario: ScenarioSpec,
        arch: Architecture,
        gpu: GpuSpec,
        profile: CalibrationProfile,
        plan: MemoryPlan | None = None,
        engine_profile: EngineProfile | None = None,
    ):
        self.scenario = scenario
        self.arch, self.gpu, self.profile = arch, gpu, profile
        fleet = scenario.fleet
        self.tp = fleet.gpus_per_replica  # GPUs whose power a replica draws (stages x tp)
        kv = scenario.kv_cache
        sched = scenario.scheduler
        if engine_profile is None:
            engine_profile = load_engine_profile(scenario.engine)
        model = replica_model(scenario, arch, gpu, profile, engine_profile, plan)
        self.plan, self.footprint, self.step_model = model.plan, model.footprint, model.step_model
        self.lookahead_bytes = model.lookahead_bytes
        self.engine_profile = engine_profile
        self.prefix_caching = kv.prefix_caching
        # The block prefix cache (opt-in: fleetsim.sim.block_cache); off: the per-class model.
        self.block_cache = block_cache_on(scenario, self.engine_profile, self.plan)
        if self.block_cache and scenario.speculative is not None:
            raise SpecError(
                "speculative: speculative decoding with the block prefix cache (kv_cache.prefix_cache blocks, "
                "kv_cache.offload or the prefix_aware router) is not modelled; valid: one of the two"
            )
        self.block_tokens = sched.block_tokens
        self.reserve_full = self.engine_profile.batching.kv_admission == "reserve_full"
        # An iteration with prompt work runs it alone (SGLang; vLLM V0 without chunked prefill)
        self.prefill_exclusive = prefill_runs_alone(self.engine_profile, sched.chunked_prefill)
        self.kv_reserve: array[float] = array("d")
        self.class_max_output: list[float] = []
        if self.reserve_full:
            from fleetsim.steady import max_output_tokens  # on use: fleetsim.steady imports scipy

            self.class_max_output = [max_output_tokens(c.output_tokens) for c in scenario.workload.classes]
        self.rng = np.random.default_rng(scenario.run.seed)
        self.fleet = FleetLevels()
        self.max_len = sched.max_model_len or arch.max_context_tokens
        self._fp_cache: dict[int, float] = {}
        classes = scenario.workload.classes
        self.class_prefix_bytes = [
            self.footprint.prefix_bytes_per_rank(c.shared_prefix_tokens)
            if self.prefix_caching and not self.block_cache
            else 0.0
            for c in classes
        ]
        if scenario.workload.arrival.kind == "trace":
            load_trace(scenario.workload.arrival.path)  # fail before the clock starts
        # Per-request columns, typed (array module: 8 bytes a value or less, not a Python object
        # each; scalar access in the hot path stays cheap). Token counts are int32: every length
        # source is bounded by MAX_TOKENS (fleetsim.spec.base), far below 2**31.
        self.arrival_s: array[float] = array("d")
        self.input_tokens: array[int] = array("i")
        self.output_tokens: array[int] = array("i")
        self.req_class: array[int] = array("b" if len(scenario.workload.classes) < 128 else "i")
        self.prefix_tokens: array[int] = array("i")
        self.hit_tokens: array[int] = array("i")  # prompt tokens found in the prefix cache (repeats)
        # With the block cache, hits come from the cache's content, not from a drawn fraction.
        self.hit_fraction = [
            c.prompt_cache_hit_fraction if kv.prefix_caching and not self.block_cache else 0.0 for c in classes
        ]
        # Session columns only when some request is in a session (or the block cache reads them).
        self.session_id: array[int] = array("q")  # -1: not in a session
        self.turn: array[int] = array("i")
        self.block_chains = BlockChains(self) if self.block_cache else None
        self.kv_start: array[float] = array("d")
        self.kv_growth: array[float] = array("d")
        self.kv_end: array[float] = array("d")
        self.prefix_read: array[float] = array("d")  # shared KV each decode step reads besides its own
        self.held_base: array[float] = array("d")
        self.generated: array[int] = array("i")
        self.scheduled_s: array[float] = array("d")
        self.first_token_s: array[float] = array("d")
        self.finish_s: array[float] = array("d")
        self.replica_of: array[int] = array("i")
        self.preemptions: array[int] = array("i")
        self.status: array[int] = array("b")
        self.outcomes_later = False  # Engine.run adds the outcome columns once its batch is freed
        self.user_of: dict[int, int] = {}
        self.pending = 0
        self.policies = ClassPolicies(scenario.classes, scenario.slo.ttft_s, scenario.slo.tpot_s)
        self.class_priority = [self.policies.of(c.name).priority for c in classes]
        # Priority scheduling only when classes differ: equal priorities are FCFS, the deque path.
        self.prioritized = len(set(self.class_priority)) > 1
        self.rejections: dict[tuple[int, str], int] = {}
        self.progress: Callable[[float], None] | None = None
        self.lifecycle = None  # fleetsim.sim.lifecycle.Lifecycle with autoscaling or failures

    # ------------------------------------------------------------------ request table
    def footprint_bytes(self, tokens: float) -> float:
        key = int(tokens)
        v = self._fp_cache.get(key)
        if v is None:
            v = float(self.footprint.bytes_per_rank(key, 0))
            self._fp_cache[key] = v
        return v

    def _add_requests(self, arrival_s, inputs, outputs, classes, prefix, session_id=None, turn=None) -> int:
        """Append request rows (numpy columns); returns the first new request id. The derived KV
        columns are computed a chunk of rows at a time, so a batch's temporaries stay small."""
        first = len(self.arrival_s)
        inputs = np.asarray(inputs, dtype=np.int64)
        outputs = np.asarray(outputs, dtype=np.int64)
        prefix = np.asarray(prefix, dtype=np.int64)
        cls = np.asarray(classes, dtype=np.int64)
        n = len(inputs)
        hit = None
        if any(self.hit_fraction):
            # Drawn only when some class has hits, so other scenarios' random streams are unchanged.
            hit = self.rng.random(n) < np.array(self.hit_fraction)[cls]
        _append(self.arrival_s, arrival_s, np.float64)
        for a in range(0, n, ADD_CHUNK_ROWS):
            rows = slice(a, a + ADD_CHUNK_ROWS)
            self._add_kv_rows(inputs[rows], outputs[rows], cls[rows], prefix[rows], None if hit is None else hit[rows])
        self._add_session_rows(first, n, session_id, turn)
        if not self.outcomes_later:
            self._add_outcome_rows(n)
        return first

    def _add_kv_rows(self, inputs, outputs, cls, prefix, hit) -> None:
        """Token, class and KV-footprint columns of a chunk of new requests."""
        shared = prefix if self.prefix_caching else np.zeros_like(prefix)
        hits = np.zeros_like(inputs) if hit is None else np.where(hit, inputs - 1, 0)
        fp = self.footprint
        held_shared = np.maximum(shared, hits)
        if self.block_cache:
            # A prompt's full blocks live in the replica's block cache (counted there, once).
            held_shared = inputs // self.block_tokens * self.block_tokens
        start = np.atleast_1d(fp.bytes_per_rank(inputs, 0, held_shared))
        end = np.atleast_1d(fp.bytes_per_rank(inputs, outputs, held_shared))
        if self.reserve_full:
            # TensorRT-LLM's GUARANTEED_NO_EVICT admits a request only if its prompt and its
            # largest possible output (the client's max tokens: the class's length bound) fit.
            cap = np.array(self.class_max_output, dtype=np.float64)[cls]
            reserve = np.atleast_1d(fp.bytes_per_rank(inputs, np.maximum(outputs, cap), held_shared))
            _append(self.kv_reserve, reserve, np.float64)
        growth = (end - start) / np.maximum(outputs - 1, 1)
        pread = np.array(self.class_prefix_bytes, dtype=np.float64)[cls]
        if self.block_cache:
            end = np.atleast_1d(fp.bytes_per_rank(inputs, outputs))  # whole, for the fits-at-all check
            pread = np.atleast_1d(fp.bytes_per_rank(held_shared, 0))  # cached blocks read each decode step
        if hit is not None and hits.any():
            # A cached prompt is still read by every decode step of the request.
            hit_read = np.atleast_1d(fp.bytes_per_rank(hits, 0)) * (hits > 0)
            pread = np.maximum(pread, hit_read)
        _append(self.input_tokens, inputs, np.int32)
        _append(self.output_tokens, outputs, np.int32)
        _append(self.req_class, cls, self.req_class.typecode)
        _append(self.prefix_tokens, shared, np.int32)
        _append(self.hit_tokens, hits, np.int32)
        _append(self.kv_start, start, np.float64)
        _append(self.kv_growth, growth, np.float64)
        _append(self.kv_end, end, np.float64)
        _append(self.prefix_read, pread, np.float64)

    def _add_session_rows(self, first: int, n: int, session_id, turn) -> None:
        """Session columns, kept only once some request is in a session or the block cache runs
        (rows before that are filled in as outside any session)."""
        given = session_id is not None and bool((np.asarray(session_id) >= 0).any())
        if not (given or self.block_cache or len(self.session_id)):
            return
        if len(self.session_id) < first:
            missing = first - len(self.session_id)
            self.session_id.extend(array("q", [-1]) * missing)
            self.turn.extend(array("i", [0]) * missing)
        _append(self.session_id, np.full(n, -1) if session_id is None else session_id, np.int64)
        _append(self.turn, np.zeros(n) if turn is None else turn, np.int32)

    def _add_outcome_rows(self, n: int) -> None:
        """What the run fills in for n new requests: not yet scheduled, no tokens, pending."""
        self.held_base.extend(array("d", [0.0]) * n)
        self.generated.extend(array("i", [0]) * n)
        nan = float("nan")
        self.scheduled_s.extend(array("d", [nan]) * n)
        self.first_token_s.extend(array("d", [nan]) * n)
        self.finish_s.extend(array("d", [nan]) * n)
        self.replica_of.extend(array("i", [-1]) * n)
        self.preemptions.extend(array("i", [0]) * n)
        self.status.extend(array("b", [PENDING]) * n)

    def new_queue(self) -> deque[int] | PriorityQueue:
        """A waiting queue: FCFS, or by class priority then arrival when classes differ in priority."""
        if not self.prioritized:
            return deque()
        prio, cls, arrival = self.class_priority, self.req_class, self.arrival_s
        return PriorityQueue(lambda rid: (-prio[cls[rid]], arrival[rid], rid))

    # ------------------------------------------------------------------ callbacks from replicas
    def mark_scheduled(self, rid: int, now: float) -> None:
        if self.scheduled_s[rid] != self.scheduled_s[rid]:  # NaN: first admission
            self.scheduled_s[rid] = now

    def mark_first_token(self, rid: int, now: float) -> None:
        self.first_token_s[rid] = now

    def preempted(self, rid: int) -> None:
        self.preemptions[rid] += 1

    def complete(self, rid: int, now: float, replica: int) -> None:
        self.finish_s[rid] = now
        self.status[rid] = DONE
        self.pending -= 1
        self.router.update(self.replicas[replica])
        if self.central and self.replicas[replica].serving:  # not to a replica draining or halting
            nxt = self.central.popleft()
            self.fleet.change(now, queued=-1)
            self.replica_of[nxt] = replica
            self.replicas[replica].enqueue(nxt)
        self._after(rid)

    def reject(self, rid: int, reason: str = "too_large") -> None:
        if self.block_chains is not None:
            self.block_chains.forget(rid)
        key = (self.req_class[rid], reason)
        self.rejections[key] = self.rejections.get(key, 0) + 1
        self.status[rid] = REJECTED
        self.finish_s[rid] = self.env.now
        self.pending -= 1
        self._after(rid)

    def _after(self, rid: int) -> None:
        user = self.user_of.pop(rid, None)
        if user is not None and self.env.now < self.closed_until_s:
            think = self.think()
            if think > 0:
                self.env.timeout(think).callbacks.append(lambda _ev, u=user: self._issue(u))
            else:
                self._issue(user)

    # ------------------------------------------------------------------ arrivals
    def dispatch(self, rid: int) -> None:
        self.pending += 1
        total = self.input_tokens[rid] + self.output_tokens[rid]
        if (self.max_len is not None and total > self.max_len) or (
            self.kv_end[rid] + self.class_prefix_bytes[self.req_class[rid]] > self.pool_bytes
        ):
            self.reject(rid)
            return
        replica = self.router.pick(rid)
        queue = self.central if replica is None else replica.waiting  # None: every replica is full
        refused = self.admission.check(self.env.now, len(queue))
        if refused is not None:
            self.reject(rid, refused)
            return
        if self.queue_timeout_s is not None:
            self.env.timeout(self.queue_timeout_s).callbacks.append(lambda _ev, r=rid: self._expire(r))
        self.enqueue_at(rid, replica)

    def enqueue_at(self, rid: int, replica: Replica | None) -> None:
        """Queue a request at the replica its router picked (None: the central queue)."""
        if replica is None:
            self.central.append(rid)
            self.fleet.change(self.env.now, queued=+1)
            return
        self.replica_of[rid] = replica.index
        replica.enqueue(rid)

    def _expire(self, rid: int) -> None:
        """admission.queue_timeout_s after its arrival: a request never scheduled is rejected (one
        preempted and re-queued has been scheduled: it stays)."""
        if self.status[rid] != PENDING or self.scheduled_s[rid] == self.scheduled_s[rid]:
            return
        replica = self.replica_of[rid]
        if replica < 0:
            self.central.remove(rid)
            self.fleet.change(self.env.now, queued=-1)
        else:
            self.replicas[replica].drop_waiting(rid)
        self.reject(rid, "timeout")

    def _open_loop(self, times: np.ndarray, chunk: int = 65536):
        """Dispatch each request at its arrival time, read from the numpy column a chunk at a time
        (Python floats for the clock, never a list of every arrival)."""
        env = self.env
        rid = 0
        for first in range(0, len(times), chunk):
            for t in times[first : first + chunk].tolist():
                if t > env.now:
                    yield env.timeout(t - env.now)
                self.dispatch(rid)
                rid += 1

    def _issue(self, user: int) -> None:
        i, o, c, p = self.sampler.next()
        rid = self._add_requests([self.env.now], [i], [o], [c], [p])
        self.user_of[rid] = user
        self.dispatch(rid)

    # ------------------------------------------------------------------ run
    def make_replicas(self, env: simpy.Environment) -> list[Replica]:
        """The fleet's replicas (a mixed fleet builds its groups': fleetsim.sim.mixed)."""
        replica_kind = BlockCacheReplica if self.block_cache else Replica
        if self.scenario.speculative is not None:  # credits a mixed iteration's extra tokens
            from fleetsim.sim.speculative_replica import SpeculativeReplica

            replica_kind = SpeculativeReplica
        return [replica_kind(env, i, self, self.pool_bytes) for i in range(self.scenario.fleet.replicas)]

    def make_router(self):
        return make_router(self.scenario.fleet.router, self.replicas, self.rng)

    def run(self, batch: RequestBatch | None = None, end_s: float | None = None) -> RawRun:
        """Run the scenario. A pod of a larger fleet (fleetsim.sim.pods) is handed its share of the
        fleet's arrivals (`batch`, perhaps empty) and the fleet's end of arrivals (`end_s`)."""
        sc = self.scenario
        run = sc.run
        wl = sc.workload
        self.env = env = simpy.Environment()
        self.pool_bytes = float(self.plan.kv_pool_bytes_per_gpu)
        self.admission = Admission(sc.admission, sc.scheduler.max_queue)
        self.queue_timeout_s = sc.admission.queue_timeout_s
        if sc.autoscaling is not None or sc.failures is not None:
            from fleetsim.sim.lifecycle import Lifecycle

            self.lifecycle = Lifecycle(self, env)  # builds the replica slots and the router
        else:
            self.replicas = self.make_replicas(env)
            self.router = self.make_router()
        self.central = self.new_queue()
        duration = run.duration_s
        self.closed_until_s = -1.0
        self.trace_dropped_after_duration = 0  # a closed loop replays no trace
        if wl.arrival.kind == "closed":
            if duration is None:
                raise SpecError("run.duration_s: a closed-loop workload needs a duration")
            self.closed_until_s = duration
            self.sampler = LengthSampler(wl, self.rng)
            self.think = think_time_sampler(wl, self.rng)
            for user in range(wl.arrival.users):
                self._issue(user)
            end_s = duration
        else:
            pod = batch is not None
            if batch is None:
                batch = generate_requests(wl, self.rng, duration_s=duration, max_requests=run.max_requests)
            self.trace_dropped_after_duration = batch.dropped_after_duration
            if len(batch) == 0 and not pod:
                raise SpecError(
                    "workload: the arrival process produced no requests in the run; "
                    "raise run.duration_s or the arrival rate"
                )
            if end_s is None:
                end_s = duration if duration is not None else float(batch.arrival_s[-1])
            n = len(batch)
            self.outcomes_later = True  # allocated below, once the batch's columns are freed
            self._add_requests(
                batch.arrival_s,
                batch.input_tokens,
                batch.output_tokens,
                batch.class_index,
                batch.shared_prefix_tokens,
                batch.session_id,
                batch.turn,
            )
            self.outcomes_later = False
            del batch  # its columns are copied
            self._add_outcome_rows(n)
            # The open loop reads the arrival column in place (nothing appends to it in an open
            # loop, so the exported buffer is never resized).
            env.process(self._open_loop(np.frombuffer(self.arrival_s, dtype=np.float64)))
        interval = run.timeseries_interval_s or max(end_s / 400.0, 1e-3)
        rows: list = []
        sampler = env.process(self._sample(interval, rows, end_s))
        if self.lifecycle is not None:
            self.lifecycle.start(end_s, sampler, interval)
        self.arrivals_end_s = 0.0 if wl.arrival.kind == "offline" else end_s
        warm = run.warmup_s or AUTO_WARMUP_FRACTION * self.arrivals_end_s
        self.itl = LogHistogram(warm, self.arrivals_end_s) if self.arrivals_end_s else LogHistogram()
        if run.drain:
            # With a lifecycle the run ends when it is over (Lifecycle.stop): its scrapes and
            # outages would run on.
            env.run(until=self.lifecycle.stop if self.lifecycle is not None else None)
        else:
            env.run(until=end_s)
        now = env.now
        self.fleet.change(now)
        for r in self.replicas:
            # Close each replica's last idle gap so its energy covers [0, now] exactly.
            if r.sleeping:
                r._account_idle(now - r._idle_since)
                r._idle_since = now
            elif not run.drain:
                # Cut mid-iteration: the segment in progress counts up to now at its power (and
                # what a cut-short run booked past now is taken out), as the time series' energy
                # meter reads it (Replica.metered_energy_j), so the table and the meter agree.
                r.energy_j = r.metered_energy_j(now)
        timeseries = self.timeseries_frame(rows)
        if self.lifecycle is None:
            timeseries["replicas"] = timeseries["replicas_billed"] = len(self.replicas)
        else:
            timeseries = self.lifecycle.add_columns(timeseries)
        return RawRun(
            arrivals_end_s=self.arrivals_end_s,
            warmup_s=run.warmup_s,
            itl=self.itl,
            requests=self._request_frame(),
            timeseries=timeseries,
            replicas=self._replica_frame(now),
            simulated_s=now,
            running_area=self.fleet.running_area,
            queued_area=self.fleet.queued_area,
            max_running=self.fleet.max_running,
            max_queued=self.fleet.max_queued,
            trace_dropped_after_duration=self.trace_dropped_after_duration,
            rejected_by_reason=rejections_by_class(self.rejections, [c.name for c in wl.classes]),
            lifetimes=None if self.lifecycle is None else self.lifecycle.lifetimes(now),
            dynamics={} if self.lifecycle is None else self.lifecycle.blocks(now),
        )
