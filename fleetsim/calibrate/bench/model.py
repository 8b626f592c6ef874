"""A benchmark point as a fast prediction: the scenario's model, GPU, TP and precisions with the
point's workload, compiled once and evaluated for any candidate engine profile (the GPU profile
stays the scenario's). The fit calls this hundreds of times, so every path is a closed form or
a short explicit sum over iterations built on fleetsim.perf.StepModel, the step times the
simulator itself uses.

How each kind of point is predicted:

- one user (closed loop, concurrency 1 per replica): each request runs alone
  (fleetsim.steady.single_request: prefill in budget chunks, then its decode iterations);
  throughput = output tokens / (TTFT + (O - 1) TPOT), the loop having no think time.
- closed loop, N users: the steady state of fleetsim.steady.full_batch (B = the batch the
  replica holds: users, max_running_seqs, the KV pool or the prefill budget). TPOT is its mean
  iteration time, the median ITL its token-weighted median iteration. TTFT is the prefill S of a
  joining request alongside the B - 1 running decodes (in budget-sized chunks), plus the wait for
  the prefills ahead of it, joins arriving as Poisson (as full_batch takes them) at lambda =
  request throughput: M/D/1, rho S / (2 (1 - rho)) with rho = lambda S; plus, when the users
  exceed B, the wait for a slot by Little's law: (N - B) / lambda.
- every request at once (``request_rate inf`` without a concurrency cap, GuideLLM throughput):
  a burst of the point's requests (the per-request lengths when the file lists them) when the
  replica holds them all at once: prompts prefilled first come first served in budget-sized
  iterations (decodes of prefilled requests ride along when prefill is chunked; without chunked
  prefill, as vLLM V0 schedules, prefill iterations run alone), then decode iterations in
  segments between completions (StepModel.decode_run). TTFT, TPOT and every inter-token gap
  come from that timeline; requests the file lists with 0 output tokens are prefilled and
  count with TTFT 0, as benchmark_serving's mean does. A burst larger than the replica holds
  is fleetsim.steady.offline_run (throughput, TPOT, ITL; its TTFT is queueing and is not
  predicted).
- a finite request rate: no closed form; not fitted, checked by simulation (fleetsim.simulate).

Replicas: users, requests and rates split evenly over them; throughput is per replica x replicas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fleetsim.calibrate.bench.readers import BenchPoint
from fleetsim.catalog import load_gpu, load_model
from fleetsim.memory import kv_footprint
from fleetsim.perf import StepModel
from fleetsim.profile import load_engine_profile, with_overrides
from fleetsim.replica_model import memory_plan_of
from fleetsim.scenario import load_scenario
from fleetsim.spec.engine import EngineProfile, prefill_runs_alone
from fleetsim.spec.profile import CalibrationProfile
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.steady import full_batch, offline_run, request_lengths, single_request

METRICS = ("output_tokens_per_s", "ttft_s", "tpot_s", "itl_s")
#: Distinct (input, output) pairs kept as request classes (one class each, exact joint moments);
#: beyond it the two lengths are drawn independently from their empirical distributions.
MAX_PAIR_CLASSES = 1000
#: Requests of a one-user point evaluated one by one (an even subsample beyond it).
MAX_SINGLE_REQUESTS = 200
#: Largest share of time the prefill of joining requests may keep busy in the TTFT's wait term.
PREFILL_OCCUPANCY_CAP = 0.95


@dataclass(frozen=True)
class Target:
    """One measured number of a point: metric, statistic (mean | p50), value in SI units."""

    metric: str
    statistic: str
    published: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.metric, self.statistic)


def targets(point: BenchPoint) -> list[Target]:
    """What a point measured that a fit can use: throughput; TTFT, TPOT (mean, else median); ITL
    (median, else mean)."""
    out = []
    if point.output_tokens_per_s:
        out.append(Target("output_tokens_per_s", "mean", point.output_tokens_per_s))
    for metric, first, second in (
        ("ttft_s", ("mean", point.ttft_mean_s), ("p50", point.ttft_p50_s)),
        ("tpot_s", ("mean", point.tpot_mean_s), ("p50", point.tpot_p50_s)),
        ("itl_s", ("p50", point.itl_p50_s), ("mean", point.itl_mean_s)),
    ):
        for stat, value in (first, second):
            if value:
                out.append(Target(metric, stat, value))
                break
    return out


def _pairs(point: BenchPoint) -> list[tuple[int, int]] | None:
    """(input, output) per request as listed (0-output entries kept), or None."""
    if point.input_lens is None or point.output_lens is None:
        return None
    return [(max(int(i), 1), int(o)) for i, o in zip(point.input_lens, point.output_lens)]


def workload_of(point: BenchPoint) -> dict:
    """The scenario `workload:` mapping of a point: its load and its request lengths."""
    pairs = [(i, o) for i, o in (_pairs(point) or []) if o >= 1]
    if pairs:
        counts: dict[tuple[int, int], int] = {}
        for p in pairs:
            counts[p] = counts.get(p, 0) + 1
        if len(counts) <= MAX_PAIR_CLASSES:
            classes = [
                {"name": f"r{n}", "weight": float(w), "input_tokens": {"kind": "fixed", "tokens": i},
                 "output_tokens": {"kind": "fixed", "tokens": o}}
                for n, ((i, o), w) in enumerate(sorted(counts.items()))
            ]  # fmt: skip
        else:
            classes = [{"name": "bench", "input_tokens": _empirical([i for i, _ in pairs]),
                        "output_tokens": _empirical([o for _, o in pairs])}]  # fmt: skip
    else:
        classes = [
            {"name": "bench", "input_tokens": {"kind": "fixed", "tokens": max(int(round(point.mean_input_tokens)), 1)},
             "output_tokens": {"kind": "fixed", "tokens": max(int(round(point.mean_output_tokens)), 1)}}
        ]  # fmt: skip
    mode = point.mode
    if mode == "closed":
        arrival = {"kind": "closed", "users": int(point.concurrency)}
    elif mode == "offline":
        n = len(_pairs(point) or []) or point.completed or 1
        arrival = {"kind": "offline", "requests": int(n)}
    else:
        arrival = {"kind": "poisson", "rate_per_s": float(point.request_rate_per_s)}
    return {"arrival": arrival, "classes": classes}


def _empirical(values: list[int]) -> dict:
    counts: dict[int, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    keys = sorted(counts)
    return {"kind": "empirical", "values": keys, "weights": [float(counts[k]) for k in keys]}


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cdf = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cdf, 0.5 * cdf[-1])])


class PointModel:
    """One benchmark point compiled against the scenario: `predict(engine_profile)` gives every
    target it can in SI units (keys (metric, statistic)); `unpredicted` says why the others are not."""

    def __init__(self, point: BenchPoint, scenario: ScenarioSpec, gpu_profile: CalibrationProfile):
        self.point = point
        replicas = scenario.fleet.replicas
        self.spec = load_scenario(scenario, {"workload": workload_of(point)})
        s = self.spec
        self.replicas = replicas
        self.arch = load_model(s.model)
        self.gpu = load_gpu(s.fleet.gpu)
        self.gpu_profile = gpu_profile
        self.plan = memory_plan_of(s, self.arch, self.gpu)
        self.footprint = kv_footprint(self.arch, s.kv_cache, s.fleet.tp)
        self.lengths = request_lengths(s.workload, s.kv_cache.prefix_caching)
        self.targets = targets(point)
        self.unpredicted: dict[tuple[str, str], str] = {}
        mode = point.mode
        sched = s.scheduler
        self.kind = mode
        if mode == "poisson":
            for t in self.targets:
                self.unpredicted[t.key] = "request-rate point: no closed form (checked by simulation, not fitted)"
        elif mode == "closed" and point.concurrency / replicas <= 1:
            self.kind = "single"
            pairs = [(i, o) for i, o in (_pairs(point) or []) if o >= 1]
            if not pairs:
                pairs = [(max(int(round(point.mean_input_tokens)), 1), max(int(round(point.mean_output_tokens)), 1))]
            if len(pairs) > MAX_SINGLE_REQUESTS:
                pairs = pairs[:: math.ceil(len(pairs) / MAX_SINGLE_REQUESTS)]
            self.single_pairs = pairs
        elif mode == "offline":
            pairs = _pairs(point)
            if pairs is None:
                n = point.completed or 1
                pairs = [
                    (max(int(round(point.mean_input_tokens)), 1), max(int(round(point.mean_output_tokens)), 1))
                ] * n
            self.burst_pairs = pairs[::replicas]
            if self._burst_fits(self.burst_pairs, sched.max_running_seqs):
                self.kind = "burst"
                # planned before any candidate profile: the scenario's engine says how prompts batch
                alone = prefill_runs_alone(load_engine_profile(s.engine), sched.chunked_prefill)
                self.burst = BurstPlan(self.footprint, self.burst_pairs, sched, alone)
            else:
                self.kind = "offline"
                self.offline_requests = len(pairs) / replicas
                for t in self.targets:
                    if t.metric == "ttft_s":
                        self.unpredicted[t.key] = (
                            "a burst larger than the replica holds: its TTFT is queueing, not in the closed form"
                        )
        classes = s.workload.classes
        self.fixed = len(classes) == 1 and classes[0].input_tokens.kind == classes[0].output_tokens.kind == "fixed"

    def _burst_fits(self, pairs, max_running_seqs: int) -> bool:
        """All requests of the burst run at once: within max_running_seqs and the KV pool at
        their full length (half a block of rounding each)."""
        if len(pairs) > max_running_seqs:
            return False
        fp, plan = self.footprint, self.plan
        held = sum(float(fp.bytes_per_rank(i, o)) + 0.5 * plan.block_bytes_per_gpu for i, o in pairs)
        return held <= plan.kv_pool_bytes_per_gpu

    def step_model(self, engine: EngineProfile) -> StepModel:
        s = self.spec
        eng = with_overrides(engine, s.engine)
        return StepModel(
            self.arch, self.gpu, self.gpu_profile, eng, s.fleet.tp, s.weight_dtype, s.kv_cache, self.footprint
        )

    def predict(self, engine: EngineProfile) -> dict[tuple[str, str], float]:
        if self.kind == "poisson":
            return {}
        step = self.step_model(engine)
        if self.kind == "single":
            pred = self._single(step)
        elif self.kind == "closed":
            pred = self._closed(step)
        elif self.kind == "burst":
            pred = self.burst.evaluate(step)
            pred[("output_tokens_per_s", "mean")] *= self.replicas
        else:
            pred = self._offline(step)
        return {t.key: pred[t.key] for t in self.targets if t.key in pred and t.key not in self.unpredicted}

    # ------------------------------------------------------------------ kinds
    def _single(self, step: StepModel) -> dict:
        sched = self.spec.scheduler
        ttfts, tpots, busy, tokens = [], [], 0.0, 0
        for i, o in self.single_pairs:
            ttft, tpot = single_request(step, self.footprint, i, o, sched.max_batched_tokens, sched.chunked_prefill)
            ttfts.append(ttft)
            if o > 1:
                tpots.append(tpot)
            busy += ttft + (o - 1) * tpot
            tokens += o
        tpot_mean = float(np.mean(tpots)) if tpots else 0.0
        tpot_p50 = float(np.median(tpots)) if tpots else 0.0
        return {
            ("output_tokens_per_s", "mean"): self.replicas * tokens / busy,
            ("ttft_s", "mean"): float(np.mean(ttfts)),
            ("ttft_s", "p50"): float(np.median(ttfts)),
            ("tpot_s", "mean"): tpot_mean,
            ("tpot_s", "p50"): tpot_p50,
            ("itl_s", "mean"): tpot_mean,
            ("itl_s", "p50"): tpot_p50,
        }

    def _closed(self, step: StepModel) -> dict:
        sched, L, fp = self.spec.scheduler, self.lengths, self.footprint
        users = self.point.concurrency / self.replicas
        est = full_batch(
            step, fp, self.plan, L, users, sched.max_running_seqs, sched.max_batched_tokens, sched.chunked_prefill
        )
        prefill = joining_prefill_s(step, fp, L, est.running, sched.max_batched_tokens, sched.chunked_prefill)
        requests_per_s = est.output_tokens_per_s / L.mean_output
        # Joins arrive as the closed form takes them, Poisson: a prompt waits for the prefills
        # ahead of it (M/D/1, occupancy capped at PREFILL_OCCUPANCY_CAP), and, when the users
        # exceed the batch, for a free slot (Little's law on the queue).
        rho = min(requests_per_s * prefill, PREFILL_OCCUPANCY_CAP)
        ttft = prefill + rho * prefill / (2.0 * (1.0 - rho))
        ttft += max(users - est.running, 0.0) / requests_per_s
        return {
            ("output_tokens_per_s", "mean"): est.output_tokens_per_s * self.replicas,
            ("ttft_s", "mean"): ttft,
            ("ttft_s", "p50"): ttft,
            ("tpot_s", "mean"): est.tpot_s,
            ("tpot_s", "p50"): est.tpot_s,
            ("itl_s", "mean"): est.tpot_s,
            ("itl_s", "p50"): est.itl_median_s,
        }

    def _offline(self, step: StepModel) -> dict:
        sched = self.spec.scheduler
        est = offline_run(
            step,
            self.footprint,
            self.plan,
            self.lengths,
            self.offline_requests,
            sched.max_running_seqs,
            sched.max_batched_tokens,
            self.fixed,
            sched.chunked_prefill,
        )
        return {
            ("output_tokens_per_s", "mean"): est.output_tokens_per_s * self.replicas,
            ("tpot_s", "mean"): est.step_s,
            ("tpot_s", "p50"): est.step_s,
            ("itl_s", "mean"): est.step_s,
            ("itl_s", "p50"): est.itl_median_s,
        }


def joining_prefill_s(step: StepModel, fp, lengths, running: float, budget: int, chunked: bool) -> float:
    """Time from a request's admission to its first token in a batch of `running` sequences: its
    prompt prefilled in chunks of what the budget leaves beside the running - 1 decodes (or of
    the whole budget in iterations of its own, where the engine runs prompts alone)."""
    dec = 0.0 if prefill_runs_alone(step.engine, chunked) else max(running - 1.0, 0.0)
    n_dec = int(round(dec))
    kv_dec = dec * float(fp.bytes_per_rank(lengths.context_in_batch, 0))
    left = lengths.mean_prefill
    done = lengths.mean_input - lengths.mean_prefill
    total = 0.0
    while left > 0.5:
        c = min(left, max(budget - n_dec, 1)) if chunked else left
        pair = c * float(fp.bytes_per_rank(done + 0.5 * c, 0))
        total += step.iteration(n_dec, kv_dec, int(round(c)), pair, 1).time_s
        done += c
        left -= c
    return total


class BurstPlan:
    """Every request of `pairs` (input, output tokens) arriving at once on one replica that holds
    them all. The order of iterations does not depend on their durations (nothing else arrives),
    so it is planned once here; `evaluate(step)` times it with a candidate step model."""

    def __init__(self, fp, pairs: list[tuple[int, int]], sched, alone: bool | None = None):
        budget, self.chunked = sched.max_batched_tokens, sched.chunked_prefill
        if alone is None:  # prompt iterations without the decodes (engine batching.prefill_alone)
            alone = not self.chunked
        n = len(pairs)
        inp = np.array([p[0] for p in pairs], dtype=np.int64)
        out = np.array([p[1] for p in pairs], dtype=np.int64)
        self.out = out
        gen = np.zeros(n, dtype=np.int64)  # tokens produced so far
        self.first_idx = np.zeros(n, dtype=np.int64)  # step giving the first token
        self.last_idx = np.zeros(n, dtype=np.int64)  # step giving the last token
        iterations = []  # (decodes, KV bytes they read, prefill tokens, prefill pair bytes, prefill sequences)
        weights = []  # tokens of the step whose gap is the step's own time
        nxt, done_tokens = 0, 0  # next request with prompt left, and its prompt tokens already prefilled
        while nxt < n:
            active = np.empty(0, dtype=np.int64) if alone else np.flatnonzero((gen >= 1) & (gen < out))
            room = budget - len(active)
            chunks: list[tuple[int, int, int]] = []  # (request, tokens, already prefilled)
            while nxt < n and room > 0:
                left = int(inp[nxt]) - done_tokens
                if self.chunked:
                    c = min(left, room)
                elif chunks and left > room:
                    break
                else:
                    c = left  # a whole prompt (one longer than the budget goes alone)
                chunks.append((nxt, c, done_tokens))
                room -= c
                if c == left:
                    nxt, done_tokens = nxt + 1, 0
                else:
                    done_tokens += c
            k = len(iterations)
            kv = float(np.sum(fp.bytes_per_rank(inp[active], gen[active]))) if len(active) else 0.0
            pair = sum(c * float(fp.bytes_per_rank(d + 0.5 * c, 0)) for _, c, d in chunks)
            iterations.append((len(active), kv, sum(c for _, c, _ in chunks), pair, len(chunks)))
            weights.append(float(len(active)))
            gen[active] += 1
            self.last_idx[active] = k
            for r, c, d in chunks:
                if c + d == inp[r]:
                    self.first_idx[r] = self.last_idx[r] = k
                    gen[r] = 1 if out[r] >= 1 else 0
        self.iterations = iterations
        self.prefill_steps = len(iterations)
        # Decode-only iterations, in segments between completions: (sequences, KV read at the
        # first step, growth per step, steps).
        self.segments = []
        step = len(iterations)
        active = np.flatnonzero(gen < out)
        self.stalled = active.copy() if alone else np.empty(0, dtype=np.int64)
        while len(active):
            s = int((out[active] - gen[active]).min())
            kv0 = float(np.sum(fp.bytes_per_rank(inp[active], gen[active])))
            kv1 = float(np.sum(fp.bytes_per_rank(inp[active], gen[active] + s)))
            self.segments.append((len(active), kv0, (kv1 - kv0) / s, s))
            weights.extend([float(len(active))] * s)
            gen[active] += s
            step += s
            ended = active[gen[active] >= out[active]]
            self.last_idx[ended] = step - 1
            active = active[gen[active] < out[active]]
        self.weights = np.array(weights)
        if len(self.stalled) and len(self.weights) > self.prefill_steps:
            # With prompt iterations alone the requests prefilled first wait out the later prefill
            # iterations: their first decode gap is counted apart (below), not as the step's own time.
            self.weights[self.prefill_steps] -= len(self.stalled)

    def evaluate(self, step: StepModel) -> dict:
        times = [step.iteration(*it).time_s for it in self.iterations]
        parts = [np.array(times)]
        for seqs, kv0, growth, steps in self.segments:
            parts.append(step.decode_run(seqs, kv0, growth, steps)[0])
        t = np.concatenate(parts)
        clock = np.cumsum(t)
        out = self.out
        served = out >= 1
        first = clock[self.first_idx]
        last = clock[self.last_idx]
        ttfts = np.where(served, first, 0.0)  # a request that returned no token counts with TTFT 0
        multi = out >= 2
        tpots = (last[multi] - first[multi]) / (out[multi] - 1)
        gaps, weights = t, self.weights
        if len(self.stalled):
            stalled_gaps = clock[self.prefill_steps] - first[self.stalled]
            gaps = np.concatenate([t, stalled_gaps])
            weights = np.concatenate([self.weights, np.ones(len(self.stalled))])
        keep = weights > 0
        gaps, weights = gaps[keep], weights[keep]
        makespan = float(last[served].max()) if served.any() else float(clock[-1])
        return {
            ("output_tokens_per_s", "mean"): float(out.sum()) / makespan if makespan > 0 else math.nan,
            ("ttft_s", "mean"): float(ttfts.mean()),
            ("ttft_s", "p50"): float(np.median(ttfts)),
            ("tpot_s", "mean"): float(tpots.mean()) if len(tpots) else math.nan,
            ("tpot_s", "p50"): float(np.median(tpots)) if len(tpots) else math.nan,
            ("itl_s", "mean"): float(np.sum(gaps * weights) / np.sum(weights)) if len(gaps) else math.nan,
            ("itl_s", "p50"): _weighted_median(gaps, weights) if len(gaps) else math.nan,
        }


def burst_prediction(step: StepModel, fp, pairs: list[tuple[int, int]], sched) -> dict:
    """The metrics a benchmark client computes for a burst of `pairs` (see BurstPlan)."""
    return BurstPlan(fp, pairs, sched).evaluate(step)
