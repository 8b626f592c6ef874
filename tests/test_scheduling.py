"""Scheduling as the engines do it: vLLM V1's on-demand admission and tail preemption, TensorRT-LLM's
reserve-everything admission; and the closed-form steady state the fit uses, against the simulator."""

import pytest

import fleetsim
from fleetsim.calibrate.published.predict import Predictor
from fleetsim.profile import load_profile
from fleetsim.scenario import load_scenario
from fleetsim.sim.engine import Engine
from fleetsim.simulation import build
from fleetsim.steady import full_batch, single_request
from fleetsim.validation.cases import Case


def scenario(**over):
    base = {
        "name": "sched",
        "model": "llama-3-8b",
        "fleet": {"gpu": "h100-sxm", "replicas": 1},
        "scheduler": {"max_batched_tokens": 512, "max_running_seqs": 64},
        "workload": {
            "arrival": {"kind": "closed", "users": 1},
            "classes": [
                {
                    "name": "r",
                    "input_tokens": {"kind": "fixed", "tokens": 4096},
                    "output_tokens": {"kind": "fixed", "tokens": 64},
                }
            ],
        },
        "run": {"duration_s": 20, "seed": 0},
        "cost": {"rental_usd_per_gpu_hour": 1.0},
    }
    return load_scenario(base, over)


def engine_for(spec):
    arch, gpu, prof, eng, plan = build(spec)
    e = Engine(spec, arch, gpu, prof, plan, eng)
    return e


def test_on_demand_admission_needs_the_first_chunk_not_the_whole_prompt():
    spec = scenario()
    e = engine_for(spec)
    e.run()  # builds the replicas
    r = e.replicas[0]
    rid = e._add_requests([0.0], [4096], [64], [0], [0])
    chunk = spec.scheduler.max_batched_tokens - len(r.running)
    assert r._admit_need(rid) == pytest.approx(e.footprint_bytes(chunk) + r.frag_bytes)
    assert r._admit_need(rid) < e.kv_start[rid]


def test_reserve_full_admission_reserves_prompt_and_largest_output():
    spec = scenario(**{"engine.kind": "trtllm", "engine.version": "1.0", "workload.arrival.users": 40})
    e = engine_for(spec)
    raw = e.run()
    # The run's columns went into raw.requests (an engine's columns are empty after its run):
    # the reserve of one more request like the run's.
    per_request = e.kv_reserve[e._add_requests([0.0], [4096], [64], [0], [0])]
    # prompt 4096 + output 64 tokens of KV, exactly what the footprint gives (no sharing)
    assert per_request == pytest.approx(float(e.footprint.bytes_per_rank(4096, 64)))
    most = int(e.pool_bytes // per_request)
    assert raw.max_running <= max(most, 1)
    assert int(raw.replicas["preemptions"].sum()) == 0  # guaranteed no evict


def test_preemption_takes_the_most_recently_admitted_sequence_even_while_it_prefills():
    spec = scenario(**{"workload.arrival.users": 4})
    e = engine_for(spec)
    e.run()
    r = e.replicas[0]
    a = e._add_requests([0.0, 0.0], [100, 100], [10, 10], [0, 0], [0, 0])  # the first new id
    b = a + 1
    r.waiting.extend([a, b])
    r._schedule_admissions()
    assert list(r.prefilling) == [a, b]
    r._preempt(0.0)
    assert b not in r.prefilling and r.waiting[0] == b and a in r.prefilling


def test_preempted_requests_recompute_from_the_prefix_cache():
    spec = scenario(**{"kv_cache.prefix_caching": True})
    e = engine_for(spec)
    e.run()
    r = e.replicas[0]
    rid = e._add_requests([0.0], [300], [50], [0], [0])
    e.generated[rid] = 20  # it had produced 20 tokens when it was preempted
    r.waiting.append(rid)
    r._schedule_admissions()
    left, cached = r.prefilling[rid]
    assert left == 1 and cached == 300 + 20 - 1  # only the last, partial block is computed again


def test_a_run_finishes_every_request_under_kv_pressure():
    res = fleetsim.simulate(
        scenario(**{"fleet.gpu_memory_utilization": 0.25, "workload.arrival.users": 48, "run.duration_s": 30})
    )
    req = res.summary["requests"]
    assert req["arrived"] == req["completed"] + req["rejected"] + req["in_flight"]
    assert res.summary["kv_cache"]["preemptions"] > 0


def _predictor(spec) -> Predictor:
    case = Case.model_validate(
        {
            "id": "t",
            "metric": "output_tokens_per_s",
            "published": 1.0,
            "unit": "tokens/s",
            "source": {"entry": "test", "reference": "test"},
        }
    )
    p = Predictor.__new__(Predictor)
    p.case, p.spec = case, spec
    arch, gpu, prof, eng, plan = build(spec)
    from fleetsim.memory import kv_footprint
    from fleetsim.steady import request_lengths

    p.arch, p.gpu, p.plan = arch, gpu, plan
    p.footprint = kv_footprint(arch, spec.kv_cache, spec.fleet.tp)
    p.lengths = request_lengths(spec.workload, spec.kv_cache.prefix_caching)
    p.engine = eng
    return p


def closed_loop(users: int, **more):
    """`users` closed-loop users of 600-token prompts and lognormal answers, 200 s (50 s warm-up)."""
    return scenario(
        **{
            "scheduler.max_batched_tokens": 8192,
            "scheduler.max_running_seqs": 512,
            "workload": {
                "arrival": {"kind": "closed", "users": users},
                "classes": [
                    {
                        "name": "r",
                        "input_tokens": {"kind": "fixed", "tokens": 600},
                        "output_tokens": {"kind": "lognormal", "mean_tokens": 300, "sigma": 0.8, "max_tokens": 2000},
                    }
                ],
            },
            "run.duration_s": 200,
            "run.warmup_s": 50,
            **more,
        }
    )


@pytest.mark.parametrize("users", [8, 96, 320])
def test_the_closed_form_steady_state_agrees_with_the_simulator(users):
    spec = closed_loop(users)
    sim = fleetsim.simulate(spec).summary
    p = _predictor(spec)
    step = p.step_model(load_profile("h100-sxm"), p.engine)
    est = full_batch(step, p.footprint, p.plan, p.lengths, users, 512, 8192)
    assert est.output_tokens_per_s == pytest.approx(sim["throughput"]["output_tokens_per_s"], rel=0.04)
    assert est.gpu_power_w == pytest.approx(sim["power"]["gpu_mean_w"], rel=0.04)


def test_one_request_alone_is_exact():
    spec = scenario(**{"scheduler.max_batched_tokens": 8192, "run.duration_s": 30})
    sim = fleetsim.simulate(spec).summary["latency_s"]
    p = _predictor(spec)
    step = p.step_model(load_profile("h100-sxm"), p.engine)
    ttft, tpot = single_request(step, p.footprint, 4096, 64, 8192)
    assert sim["ttft"]["mean"] == pytest.approx(ttft, rel=1e-6)
    assert sim["tpot"]["mean"] == pytest.approx(tpot, rel=1e-6)
