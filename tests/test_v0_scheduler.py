"""vLLM V0's default scheduler (engine profile batching.prefill_alone unchunked, without chunked prefill):
an iteration that schedules prompts runs them alone, and the decoding sequences wait for it
(vllm/core/scheduler.py `_schedule_default`: "Don't schedule decodes if prefills are scheduled").

The expected figures are built from one iteration's cost of the step model, which is not what is
tested here: what is tested is which iterations the scheduler runs and how their time reaches each
request's TPOT and the inter-token latencies."""

from __future__ import annotations

from pathlib import Path

import pytest

import fleetsim
from fleetsim.catalog import load_gpu, load_model
from fleetsim.memory import kv_footprint
from fleetsim.perf import StepModel
from fleetsim.profile import load_engine_profile, load_profile
from fleetsim.scenario import load_scenario
from fleetsim.steady import full_batch

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "h100_llama3.yaml"
LONG_PROMPT = 1000


def _overrides(trace: Path, version: str) -> dict:
    return {
        "engine": {"kind": "vllm", "version": version},
        "fleet.replicas": 1,
        "scheduler.chunked_prefill": False,
        "scheduler.max_batched_tokens": 2048,
        "workload.arrival": {"kind": "trace", "path": str(trace)},
        "workload.classes": [{"name": "chat", "weight": 1.0}],
        "run.duration_s": 10,
        "run.warmup_s": 1e-6,  # (0 would mean the automatic steady-state window)
    }


def _run(tmp_path: Path, rows: list[tuple[float, int, int]], version: str = "0.6"):
    trace = tmp_path / f"t{len(rows)}.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{a!r},{i},{o}\n" for a, i, o in rows))
    return fleetsim.simulate(SCENARIO, _overrides(trace, version), workers=1)


V0 = {"kind": "vllm", "version": "0.6"}


def _engine_profile(engine: dict):
    return load_engine_profile(load_scenario(SCENARIO, {"engine": engine}).engine)


def _step_model(engine: dict, **more):
    """(StepModel, KV footprint) of the scenario's replica under `engine` (and `more` overrides)."""
    s = load_scenario(SCENARIO, {"engine": engine, **more})
    arch, gpu = load_model(s.model), load_gpu(s.fleet.gpu)
    fp = kv_footprint(arch, s.kv_cache, s.fleet.tp)
    step = StepModel(arch, gpu, load_profile(gpu.name), load_engine_profile(s.engine), s.fleet.tp, s.weight_dtype,
                     s.kv_cache, fp)  # fmt: skip
    return step, fp


def _prompt_alone_s(engine: dict = V0) -> float:
    """One iteration that prefills the long prompt and decodes nothing."""
    step, fp = _step_model(engine)
    pair = LONG_PROMPT * float(fp.bytes_per_rank(0.5 * LONG_PROMPT, 0))
    return step.iteration(0, 0.0, LONG_PROMPT, pair, 1).time_s


def test_the_shipped_v0_profile_runs_prompts_alone():
    v0, v1 = _engine_profile(V0), _engine_profile({"kind": "vllm", "version": "0.11"})
    assert v0.batching.prefill_alone == "unchunked" and v1.batching.prefill_alone == "never"
    # V0 captures CUDA graphs for decode-only batches of up to 256 sequences (worker/model_runner.py)
    assert not v0.launch.mixed_in_graph and v0.launch.graph_max_batch == 256


def test_a_prompt_arriving_mid_decode_stalls_the_decoding_request_by_its_own_iteration(tmp_path):
    """Request A decodes 50 tokens alone; B (a 1,000-token prompt answered by its first token)
    arrives meanwhile. A's decode span grows by exactly B's prompt-only iteration, and A's
    inter-token gaps still add up to its decode span (the stall is one of them: the largest)."""
    late = (5.0, 16, 1)  # long after A ends: keeps the latency window open past A's tokens
    alone = _run(tmp_path, [(0.0, 100, 51), late])
    both = _run(tmp_path, [(0.0, 100, 51), (0.1, LONG_PROMPT, 1), late])
    a0, a1 = alone.requests.iloc[0], both.requests.iloc[0]
    assert (both.requests.status == "completed").all()
    span0 = a0.finish_s - a0.first_token_s
    span1 = a1.finish_s - a1.first_token_s
    assert span1 - span0 == pytest.approx(_prompt_alone_s(), rel=1e-6)
    itl = both.summary["latency_s"]["itl"]
    assert itl["mean"] * 50 == pytest.approx(span1, rel=1e-9)
    assert both.summary["latency_s"]["itl"]["mean"] > alone.summary["latency_s"]["itl"]["mean"]
    # B's time to first token ends with the same iteration: its own prompt, alone
    b = both.requests.iloc[1]
    assert b.first_token_s - b.arrival_s >= _prompt_alone_s() * (1 - 1e-9)


def test_with_chunked_prefill_the_prompt_is_mixed_with_the_decode(tmp_path):
    """The flag has no effect with chunked prefill: the same two requests, A's span grows by less
    than a whole prompt-only iteration plus a decode step."""
    rows = [(0.0, 100, 51), (0.1, LONG_PROMPT, 1)]
    trace = tmp_path / "c.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{a!r},{i},{o}\n" for a, i, o in rows))
    chunked = fleetsim.simulate(SCENARIO, {**_overrides(trace, "0.6"), "scheduler.chunked_prefill": True}, workers=1)
    unchunked = _run(tmp_path, rows)
    a_mixed, a_alone = chunked.requests.iloc[0], unchunked.requests.iloc[0]
    # mixed: 50 tokens in 50 iterations, one of them carrying the prompt; alone: 51 iterations
    assert a_mixed.finish_s - a_mixed.first_token_s < a_alone.finish_s - a_alone.first_token_s


def test_a_burst_decodes_nothing_until_every_prompt_is_in(tmp_path):
    """Eight prompts at once, two per 2,048-token iteration: the first four iterations prefill
    only, so every request's first token comes before any second token, and the requests
    prefilled first wait out the later prompt iterations (their first gap is the longest)."""
    rows = [(0.0, 1000, 20)] * 8
    r = _run(tmp_path, rows).requests
    assert (r.status == "completed").all()
    firsts = sorted(r.first_token_s)
    assert firsts[1] == firsts[0] and firsts[2] > firsts[1]  # two prompts per iteration
    # 4 prompt iterations, then 19 decode steps: the mean gap of the first two requests holds the
    # three later prompt iterations, the last two none
    tpot = (r.finish_s - r.first_token_s) / 19
    assert tpot.iloc[0] > tpot.iloc[7]
    assert (r.finish_s - r.finish_s.iloc[0]).abs().max() < 1e-12  # they finish in the same step


# --------------------------------------------------------------------------- multi-step scheduling


def _steps(tmp_path: Path, rows, steps: int, version: str = "0.6", **more):
    trace = tmp_path / f"m{steps}_{len(rows)}.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{a!r},{i},{o}\n" for a, i, o in rows))
    ov = _overrides(trace, version)
    ov["engine"] = {**ov["engine"], "scheduler_steps": steps}
    return fleetsim.simulate(SCENARIO, {**ov, **more}, workers=1)


def test_multi_step_spreads_one_iterations_host_time_over_the_window(tmp_path):
    """One request decoding alone: every decode step pays host(1) = iteration + per-sequence host
    time once per step, or once per window of 10 steps: TPOT falls by 0.9 host(1). Its 100 tokens
    after the first stream out in 10 chunks of a window each."""
    rows = [(0.0, 100, 101), (5.0, 16, 1)]  # the second keeps the latency window open
    one, ten = _steps(tmp_path, rows, 1), _steps(tmp_path, rows, 10)
    prof = _engine_profile(V0)
    host_1_s = prof.host.iteration_s + prof.host.per_sequence_s + prof.host.per_streamed_sequence_s
    tpot_1, tpot_10 = one.requests.tpot_s.iloc[0], ten.requests.tpot_s.iloc[0]
    assert tpot_1 - tpot_10 == pytest.approx(0.9 * host_1_s, rel=1e-6)
    a = ten.requests.iloc[0]
    assert ten.summary["latency_s"]["itl"]["mean"] == pytest.approx((a.finish_s - a.first_token_s) / 10, rel=1e-9)


def test_a_prompt_arriving_mid_window_waits_for_the_windows_end(tmp_path):
    """A decodes in windows of 10 steps from its first token; B arrives 2.5 steps into the first
    window and is prefilled only after the window's tenth step."""
    alone = _steps(tmp_path, [(0.0, 100, 101), (5.0, 16, 1)], 10)
    a = alone.requests.iloc[0]
    step_s = (a.finish_s - a.first_token_s) / 100  # one decode step of A alone
    arrive_s = float(a.first_token_s + 2.5 * step_s)
    both = _steps(tmp_path, [(0.0, 100, 101), (arrive_s, LONG_PROMPT, 1), (5.0, 16, 1)], 10)
    b = both.requests.iloc[1]
    window_end_s = a.first_token_s + 10 * step_s
    # step_s is the mean over A's 100 steps, which lengthen a little as its KV grows: 0.1%
    assert b.first_token_s - _prompt_alone_s() == pytest.approx(window_end_s, rel=1e-3)
    # (without windows it would start at the third step's end, 7 steps earlier)
    assert b.first_token_s - _prompt_alone_s() > a.first_token_s + 9 * step_s


@pytest.mark.parametrize(
    ("version", "more", "needle"),
    [
        ("0.11", {}, "a V0 profile"),
        ("0.6", {"scheduler.chunked_prefill": True}, "chunked_prefill false"),
    ],
)
def test_multi_step_outside_vllm_v0_is_one_clear_line(tmp_path, version, more, needle):
    from fleetsim.errors import SpecError

    with pytest.raises(SpecError, match="engine.scheduler_steps: 10") as info:
        _steps(tmp_path, [(0.0, 100, 11)], 10, version, **more)
    assert needle in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- SGLang: prompts alone, chunked too


def test_sglang_runs_prompt_chunks_alone_unless_mixed_chunk_is_on(tmp_path):
    """SGLang's scheduler runs a prefill batch when there is one, else the decode batch
    (python/sglang/srt/managers/scheduler.py get_next_batch_to_run), with chunked prefill too;
    --enable-mixed-chunk (engine.mixed_chunk) puts the chunk beside the decodes."""
    rows = [(0.0, 100, 51), (0.1, LONG_PROMPT, 1), (5.0, 16, 1)]
    trace = tmp_path / "s.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{a!r},{i},{o}\n" for a, i, o in rows))
    base = {
        **_overrides(trace, "0.4"),
        "engine": {"kind": "sglang", "version": "0.4"},
        "scheduler.chunked_prefill": True,
    }
    alone_run = fleetsim.simulate(SCENARIO, base, workers=1)
    mixed_run = fleetsim.simulate(SCENARIO, {**base, "engine": {**base["engine"], "mixed_chunk": True}}, workers=1)
    quiet = fleetsim.simulate(SCENARIO, {**base, "workload.arrival": {"kind": "trace", "path": str(_only_a(tmp_path))}},
                              workers=1)  # fmt: skip
    span = [(r.finish_s - r.first_token_s) for r in (x.requests.iloc[0] for x in (quiet, alone_run, mixed_run))]
    assert span[1] - span[0] == pytest.approx(_prompt_alone_s({"kind": "sglang", "version": "0.4"}), rel=1e-6)
    assert span[0] < span[2] < span[1]  # mixed: the prompt lengthens one decode step, by less


def _only_a(tmp_path: Path) -> Path:
    p = tmp_path / "a.csv"
    p.write_text("arrival_s,input_tokens,output_tokens\n0.0,100,51\n5.0,16,1\n")
    return p


@pytest.mark.parametrize("users", [96, 320])
def test_the_closed_form_with_prompts_alone_agrees_with_the_simulator(users):
    """fleetsim.steady.full_batch where prompt iterations run alone (SGLang), against the
    simulator: throughput and mean TPOT (the decode step plus the prompt iterations it waits out)."""
    from test_scheduling import _predictor, closed_loop

    spec = closed_loop(users, engine={"kind": "sglang", "version": "0.4"})
    sim = fleetsim.simulate(spec).summary
    p = _predictor(spec)
    step = p.step_model(load_profile("h100-sxm"), p.engine)
    est = full_batch(step, p.footprint, p.plan, p.lengths, users, 512, 8192, True)
    # (mixed chunks would give 8% more tokens/s at 96 users, 2% at 320: the bounds are tighter)
    assert est.output_tokens_per_s == pytest.approx(sim["throughput"]["output_tokens_per_s"], rel=0.015)
    assert est.tpot_s == pytest.approx(sim["latency_s"]["tpot"]["mean"], rel=0.025)


def test_the_closed_forms_decode_iteration_takes_the_windows_host_share_too():
    """StepModel.iteration of a decode-only iteration (what fleetsim.steady sums) and the decode
    run's step (what the simulator books) agree under multi-step scheduling; an iteration with
    prompt work pays the whole host time."""
    times = {}
    for steps in (1, 10):
        step, fp = _step_model({**V0, "scheduler_steps": steps}, **{"scheduler.chunked_prefill": False})
        kv = 8 * float(fp.bytes_per_rank(1000, 0))
        decode = step.iteration(8, kv).time_s
        assert decode == pytest.approx(float(step.decode_run(8, kv, 0.0, 1)[0][0]), rel=1e-12)
        times[steps] = (decode, step.iteration(8, kv, 100, 100 * float(fp.bytes_per_rank(50, 0)), 1).time_s)
    prof = _engine_profile(V0)
    host_8_s = prof.host.iteration_s + 8 * (prof.host.per_sequence_s + prof.host.per_streamed_sequence_s)
    assert times[1][0] - times[10][0] == pytest.approx(0.9 * host_8_s, rel=1e-9)
    assert times[1][1] == times[10][1]


def test_what_multi_step_scheduling_buys_matches_lambdas_published_gain():
    """Lambda's vLLM v0.6.0 runs (LambdaLabsML/vllm-benchmark benchmark_v0.md, commit 0e8fc5d0:
    ShareGPT, 5,000 prompts at rate inf, max-num-seqs 256) at --num-scheduler-steps 10 against 1:
    8,088.35 / 3,958.4 tokens/s on 8B TP1, 3,542.88 / 2,291.0 on 70B TP4, 1,714.07 / 1,331.25 on
    405B FP8 TP8. fleetsim's absolute level is 1.6-1.8x above these (README, fidelity), but the
    gain of ten steps over one, which is what the engine model adds, is within 5%."""
    from fleetsim.validation.cases import load_cases
    from fleetsim.validation.runner import run_cases

    path = Path(__file__).resolve().parents[1] / "fleetsim" / "validation" / "cases" / "external-vllm.yaml"
    wanted = {f"lambda-vllm060-llama-3-1-{m}-h100-steps-{s}-tps" for m in ("8b-tp1", "70b-tp4") for s in (1, 10)}
    cases = [c for c in load_cases(path) if c.id in wanted]
    assert len(cases) == 4
    got = {r.id: r.predicted for r in run_cases([(path, cases)], workers=1)}
    published_gain = {"8b-tp1": 8088.35 / 3958.4, "70b-tp4": 3542.88 / 2291.0}
    for m, gain in published_gain.items():
        predicted = (
            got[f"lambda-vllm060-llama-3-1-{m}-h100-steps-10-tps"]
            / got[f"lambda-vllm060-llama-3-1-{m}-h100-steps-1-tps"]
        )
        assert predicted == pytest.approx(gain, rel=0.05)
