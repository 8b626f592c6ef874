"""The steady state of a replica in closed form: what the simulator converges to when the batch
is kept full (closed-loop users, or an offline benchmark that submits everything at once), or
when one request runs alone. Used to fit calibration profiles (hundreds of evaluations per fit,
where a simulation per point would take hours) and checked against the simulator in tests.

Closed loop / offline, with B sequences running: every iteration serves every decoding sequence
one token, so B / E[O] requests finish (and as many join) per iteration on average. The number k
of prompts joining an iteration is taken as Poisson with that mean; iteration k prefills
min(k * E[I], budget) tokens and decodes the others, whose KV is the time-average context
E[I O] / E[O] + E[O (O - 1)] / (2 E[O]) (a sequence's weight in the batch is its lifetime).
B is capped by the users, max_running_seqs and the KV pool: held bytes on average (on-demand
admission, as vLLM and SGLang allocate) or prompt + largest output reserved per request
(TensorRT-LLM's GUARANTEED_NO_EVICT). Times, FLOPs and bytes come from StepModel.iteration and
power from fleetsim.power.gpu_power_w per iteration, exactly as the simulator computes them.
Pure: no simpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr
from scipy.stats import poisson

from fleetsim.memory import KvFootprint, MemoryPlan
from fleetsim.perf import StepModel
from fleetsim.power import gpu_power_w
from fleetsim.spec.engine import prefill_runs_alone
from fleetsim.spec.workload import EmpiricalLength, FixedLength, LognormalLength, UniformLength, WorkloadSpec

LOGNORMAL_TAIL_QUANTILE_SIGMAS = 8.0  # an unbounded lognormal is summed to mu + 8 sigma


def length_pmf(spec) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, probabilities) of a length distribution, as the workload generator draws it."""
    if isinstance(spec, FixedLength):
        return np.array([float(spec.tokens)]), np.array([1.0])
    if isinstance(spec, UniformLength):
        k = np.arange(spec.min_tokens, spec.max_tokens + 1, dtype=np.float64)
        return k, np.full(len(k), 1.0 / len(k))
    if isinstance(spec, EmpiricalLength):
        v = np.asarray(spec.values, dtype=np.float64)
        w = np.asarray(spec.weights, dtype=np.float64) if spec.weights else np.ones(len(v))
        return v, w / w.sum()
    if isinstance(spec, LognormalLength):
        mu, s = spec.mu, spec.sigma
        hi = spec.max_tokens or max(spec.min_tokens, int(math.exp(mu + LOGNORMAL_TAIL_QUANTILE_SIGMAS * s)) + 1)
        lo = spec.min_tokens
        k = np.arange(lo, hi + 1, dtype=np.float64)
        # P(round(X) = k): boundaries at k +- 1/2; the ends absorb the clipped mass.
        upper = np.where(k < hi, ndtr((np.log(k + 0.5) - mu) / s), 1.0)
        lower = np.where(k > lo, ndtr((np.log(np.maximum(k - 0.5, 1e-300)) - mu) / s), 0.0)
        return k, upper - lower
    raise TypeError(f"no length distribution for {type(spec).__name__}")


def max_output_tokens(spec) -> float:
    """The largest length a distribution draws (0 when it has no bound: the request's own is used)."""
    if isinstance(spec, FixedLength):
        return float(spec.tokens)
    if isinstance(spec, UniformLength):
        return float(spec.max_tokens)
    if isinstance(spec, EmpiricalLength):
        return float(max(spec.values))
    if isinstance(spec, LognormalLength):
        return float(spec.max_tokens or 0)
    return 0.0


@dataclass(frozen=True)
class Lengths:
    """Moments of the request mix that the steady state needs."""

    mean_input: float  # E[I], prompt tokens
    mean_prefill: float  # E[I - cached], tokens actually prefilled
    mean_output: float  # E[O]
    context_in_batch: float  # time-average KV context of a running sequence, tokens
    reserve_context: float  # time-average prompt + largest output (reserve_full admission)


def request_lengths(workload: WorkloadSpec, prefix_caching: bool = True) -> Lengths:
    weights = workload.class_weights
    e_i = e_pre = e_o = e_io = e_oo = e_res = 0.0
    for w, c in zip(weights, workload.classes):
        vi, pi = length_pmf(c.input_tokens)
        vo, po = length_pmf(c.output_tokens)
        mi, mo = float(vi @ pi), float(vo @ po)
        hit = c.prompt_cache_hit_fraction if prefix_caching else 0.0
        # A hit prefills one token; a shared prefix is prefilled once per replica (negligible).
        shared = c.shared_prefix_tokens if prefix_caching else 0
        pre = (1.0 - hit) * max(mi - shared, 1.0) + hit * 1.0
        e_i += w * mi
        e_pre += w * pre
        e_o += w * mo
        e_io += w * mi * mo
        e_oo += w * float((vo * (vo - 1.0)) @ po)
        e_res += w * (mi + float(vo.max())) * mo
    return Lengths(
        mean_input=e_i,
        mean_prefill=e_pre,
        mean_output=e_o,
        context_in_batch=e_io / e_o + e_oo / (2.0 * e_o),
        reserve_context=e_res / e_o,
    )


@dataclass(frozen=True)
class SteadyEstimate:
    output_tokens_per_s: float  # per replica
    running: float  # sequences in the batch
    step_s: float  # mean iteration time
    itl_median_s: float  # median inter-token latency (the step time a decoding token sees)
    tpot_s: float  # mean time per output token after the first
    ttft_s: float  # mean time to first token (prefill of a joining request)
    gpu_power_w: float  # mean per GPU
    energy_per_output_token_j: float  # GPU energy of the replica per output token
    limited_by: str  # users | max_running_seqs | kv_pool | prefill_budget | arrivals
    prefill_step_s: float = 0.0  # mean time of an iteration that prefills a joining request


def _power(step: StepModel, cost) -> float:
    if cost.time_s <= 0:
        return step.power.idle_w
    return gpu_power_w(step.power, cost.flops / (cost.time_s * step.peak_flops), cost.bytes / (cost.time_s * step.bw))


def single_request(
    step: StepModel, fp: KvFootprint, prompt_tokens: int, output_tokens: int, budget: int, chunked: bool = True
) -> tuple[float, float]:
    """(TTFT, mean TPOT) of one request alone on a replica, as the simulator runs it: prefill in
    chunks of the token budget (each chunk's attention over the context at mid-chunk), then
    output_tokens - 1 decode iterations whose KV read grows from footprint(prompt) to
    footprint(prompt + output)."""
    ttft, done, left = 0.0, 0, prompt_tokens
    while left > 0:
        c = min(left, budget) if chunked else left
        pair = c * float(fp.bytes_per_rank(int(done + 0.5 * c), 0))
        ttft += step.iteration(0, 0.0, c, pair, 1).time_s
        done += c
        left -= c
    steps = output_tokens - 1
    if steps <= 0:
        return ttft, 0.0
    start = float(fp.bytes_per_rank(prompt_tokens, 0))
    end = float(fp.bytes_per_rank(prompt_tokens, output_tokens))
    t, _, _ = step.decode_run(1, start, (end - start) / steps, steps)
    return ttft, float(np.sum(t)) / steps


def batch_limit(plan: MemoryPlan, fp: KvFootprint, lengths: Lengths, admission: str) -> float:
    """Sequences the KV pool holds in steady state."""
    if plan.kv_capacity_tokens is None and fp.full_bytes_per_token_per_rank == 0:
        per_seq = float(fp.bytes_per_rank(1, 0))  # fixed state only (SSM)
    else:
        ctx = lengths.reserve_context if admission == "reserve_full" else lengths.context_in_batch
        per_seq = float(fp.bytes_per_rank(ctx, 0)) + 0.5 * plan.block_bytes_per_gpu
    return plan.kv_pool_bytes_per_gpu / per_seq if per_seq > 0 else math.inf


def full_batch(
    step: StepModel,
    fp: KvFootprint,
    plan: MemoryPlan,
    lengths: Lengths,
    concurrency: float,
    max_running_seqs: int,
    max_batched_tokens: int,
    chunked: bool = True,
) -> SteadyEstimate:
    """Steady state with `concurrency` requests always outstanding (closed loop without think
    time; offline: concurrency = inf). Where prompt iterations run alone (engine batching.
    prefill_alone), an iteration k is the prompts' own iteration (if k > 0) then the decodes'."""
    admission = step.engine.batching.kv_admission
    alone = prefill_runs_alone(step.engine, chunked)
    limits = {
        "users": concurrency,
        "max_running_seqs": float(max_running_seqs),
        "kv_pool": batch_limit(plan, fp, lengths, admission),
    }
    # Prefill throughput caps the batch too: B / E[O] joins per step need B / E[O] * E[I] tokens
    # of a budget that decode tokens share (or that the prompts have to themselves).
    share = 0.0 if alone else 1.0
    limits["prefill_budget"] = max_batched_tokens / (share + lengths.mean_prefill / lengths.mean_output)
    limited_by = min(limits, key=limits.get)
    b = max(min(limits.values()), 1.0)
    lam = b / lengths.mean_output  # joins per iteration
    ctx = lengths.context_in_batch
    kv_per_seq = float(fp.bytes_per_rank(ctx, 0))
    prefill = lengths.mean_prefill
    pair = float(fp.bytes_per_rank(prefill * 0.5 + (lengths.mean_input - prefill), 0))
    k_max = int(poisson.ppf(1 - 1e-6, lam)) + 1
    ks = np.arange(0, k_max + 1)
    pk = poisson.pmf(ks, lam)
    pk = pk / pk.sum()
    times, powers, prompt_times = [], [], []
    for k in ks:
        dec = max(b - k, 0.0)
        n_dec = int(round(dec))
        if alone:
            tokens = min(k * prefill, float(max_batched_tokens))
            parts = [step.iteration(n_dec, dec * kv_per_seq)]
            if k:
                parts.append(step.iteration(0, 0.0, int(round(tokens)), tokens * pair, int(k)))
            t = sum(c.time_s for c in parts)
            times.append(t)
            prompt_times.append(parts[-1].time_s)
            powers.append(sum(c.time_s * _power(step, c) for c in parts) / t if t > 0 else step.power.idle_w)
        else:
            tokens = min(k * prefill, max(max_batched_tokens - dec, 0.0))
            cost = step.iteration(n_dec, dec * kv_per_seq, int(round(tokens)), tokens * pair, int(k))
            times.append(cost.time_s)
            powers.append(_power(step, cost))
    times, powers = np.array(times), np.array(powers)
    mean_t = float(pk @ times)
    # Decode tokens of iteration k: b - k; the ITL a token sees is its iteration's time.
    dec_w = pk * np.maximum(b - ks, 0.0)
    order = np.argsort(times)
    cdf = np.cumsum(dec_w[order]) / dec_w.sum()
    itl_median = float(times[order][np.searchsorted(cdf, 0.5)])
    tokens_per_s = b / mean_t
    energy_per_step = float(pk @ (times * powers)) * step.tp
    power = energy_per_step / (mean_t * step.tp)
    ttft = float(step.iteration(0, 0.0, int(round(prefill)), prefill * pair, 1).time_s)
    joined = pk[1:].sum()
    # the iteration a joining prompt's first token comes from: the mixed one, or its own
    prefill_times = np.array(prompt_times) if alone else times
    prefill_step = float(pk[1:] @ prefill_times[1:] / joined) if joined > 0 else ttft
    return SteadyEstimate(
        output_tokens_per_s=tokens_per_s,
        running=b,
        step_s=mean_t,
        itl_median_s=itl_median,
        tpot_s=mean_t,
        ttft_s=ttft,
        gpu_power_w=power,
        energy_per_output_token_j=energy_per_step / b,
        limited_by=limited_by,
        prefill_step_s=prefill_step,
    )


def open_loop(
    step: StepModel,
    fp: KvFootprint,
    plan: MemoryPlan,
    lengths: Lengths,
    rate_per_s: float,
    max_running_seqs: int,
    max_batched_tokens: int,
    chunked: bool = True,
) -> SteadyEstimate:
    """Poisson arrivals at `rate_per_s` on one replica: the batch B at which the replica emits the
    tokens that arrive (B / t(B) = rate x E[O], Little's law for tokens), found by bisection on the
    closed-loop steady state of B sequences. TTFT: half an iteration of waiting for the next
    boundary, then the iteration that prefills the request. Past the largest batch the replica
    holds, the queue grows without bound: TTFT is infinite and `limited_by` says what caps it."""
    demand = rate_per_s * lengths.mean_output

    def at(b: float) -> SteadyEstimate:
        return full_batch(step, fp, plan, lengths, b, max_running_seqs, max_batched_tokens, chunked)

    top = at(math.inf)
    if top.output_tokens_per_s < demand:
        return _with_rate(top, top.output_tokens_per_s, ttft_s=math.inf)
    lo, hi = 0.0, top.running
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if at(max(mid, 1e-3)).output_tokens_per_s < demand:
            lo = mid
        else:
            hi = mid
    est = at(max(hi, 1e-3))
    from dataclasses import replace

    return replace(est, output_tokens_per_s=demand, ttft_s=0.5 * est.step_s + est.prefill_step_s, limited_by="arrivals")


def offline_run(
    step: StepModel,
    fp: KvFootprint,
    plan: MemoryPlan,
    lengths: Lengths,
    requests: float,
    max_running_seqs: int,
    max_batched_tokens: int,
    fixed_lengths: bool,
    chunked: bool = True,
) -> SteadyEstimate:
    """An offline benchmark on one replica: `requests` submitted at once, throughput over the whole
    run (until the last request finishes), as MLPerf Offline and trtllm-bench report it.

    Fixed lengths: every request of a batch starts and ends together, so the run is a sequence of
    waves of B requests: their prompts are prefilled in budget-sized steps (the prompts already
    prefilled decoding alongside), then O - 1 decode iterations at batch B with the context
    growing from I to I + O. Varied lengths: the steady state of `full_batch`, plus the drain at
    the end (the last B requests finish over ~E[O] iterations with the batch falling linearly, an
    extra E[O] x t(0) / 2 over the steady rate)."""
    steady = full_batch(step, fp, plan, lengths, math.inf, max_running_seqs, max_batched_tokens, chunked)
    alone = prefill_runs_alone(step.engine, chunked)
    b = min(steady.running, requests)
    if not fixed_lengths:
        tokens = requests * lengths.mean_output
        t0 = step.iteration(1, float(fp.bytes_per_rank(lengths.context_in_batch, 0))).time_s
        total = tokens / steady.output_tokens_per_s + lengths.mean_output * t0 / 2.0
        return _with_rate(steady, tokens / total)
    i, o = lengths.mean_input, lengths.mean_output
    b = max(int(round(b)), 1)
    waves = requests / b
    pair = float(fp.bytes_per_rank(0.5 * i, 0))
    per_step = max(max_batched_tokens, int(i))  # a prompt longer than the budget goes whole
    prompts_per_step = max(per_step // int(i), 1)
    n_prefill = math.ceil(b / prompts_per_step)
    prefill_s = 0.0
    for k in range(n_prefill):
        done = k * prompts_per_step
        now = min(prompts_per_step, b - done)
        decoding = 0 if alone else done  # prompt iterations alone: the prefilled ones wait
        kv = decoding * float(fp.bytes_per_rank(i, 0))
        prefill_s += step.iteration(decoding, kv, int(now * i), now * i * pair, now).time_s
    decode_s = 0.0
    if o > 1:
        start = b * float(fp.bytes_per_rank(i + 1, 0))
        end = b * float(fp.bytes_per_rank(i + o, 0))
        t, _, _ = step.decode_run(b, start, (end - start) / max(o - 1, 1), int(o) - 1)
        decode_s = float(np.sum(t))
    total = waves * (prefill_s + decode_s)
    return _with_rate(
        steady, requests * o / total, running=float(b), step_s=(prefill_s + decode_s) / (n_prefill + o - 1)
    )


def _with_rate(est: SteadyEstimate, tokens_per_s: float, **changes) -> SteadyEstimate:
    from dataclasses import replace

    return replace(est, output_tokens_per_s=tokens_per_s, **changes)
