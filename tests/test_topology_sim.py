"""Pipeline parallelism, TP across servers and speculative decoding / MTP in the simulator: lone
requests against closed forms computed here, the 405B PP2 x TP8 memory plan by hand from the
model's config, the shipped scenarios conserve requests and repeat per seed, bad topologies are
one line and exit 2."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

import fleetsim
from fleetsim.catalog import load_gpu, load_model
from fleetsim.kv_transfer import load_link, transfer_time_s
from fleetsim.pipeline import multinode_allreduce_s, pipeline_step
from fleetsim.replica_model import memory_plan_of, replica_model
from fleetsim.scenario import load_scenario
from fleetsim.simulation import build
from fleetsim.spec.topology import SpeculativeSpec
from fleetsim.speculative import build_step_model, speculative_step

ROOT = Path(__file__).resolve().parents[1]
PP_SCENARIO = ROOT / "scenarios" / "h100_llama31_405b_pp2_tp8.yaml"
MTP_SCENARIO = ROOT / "scenarios" / "h200_deepseek_v3_mtp.yaml"
PROMPT, OUTPUT = 500, 201


def lone(model, gpu, tp, dtype="bf16", **extra):
    """One request, alone on one replica: every decode step is a batch of one."""
    fleet = {"gpu": gpu, "tp": tp, **extra.pop("fleet", {})}
    return {
        "name": "lone",
        "model": model,
        "weight_dtype": dtype,
        "fleet": fleet,
        "workload": {
            "arrival": {"kind": "offline", "requests": 1},
            "classes": [
                {
                    "name": "q",
                    "input_tokens": {"kind": "fixed", "tokens": PROMPT},
                    "output_tokens": {"kind": "fixed", "tokens": OUTPUT},
                }
            ],
        },
        "run": {"duration_s": None, "max_requests": 1},
        **extra,
    }


def decode_gpu_s(step, context_tokens):
    """GPU time of one plain decode step of one sequence (the kernel terms, no host)."""
    b = step.breakdown(1, float(step.footprint.bytes_per_rank(context_tokens)))
    return b["dense_s"] + b["attention_decode_s"] + b["kv_write_s"] + b["comm_s"] + b["layer_fixed_s"]


# ------------------------------------------------------------------ pipeline
def test_lone_request_step_is_its_stage_over_one_minus_the_bubble():
    pp, m = 2, 1  # a lone request is one micro-batch, whatever micro_batches says
    result = fleetsim.simulate(lone("llama-3.1-405b", "h100-sxm", 8, fleet={"pipeline": {"stages": pp}}))
    tpot = float(result.requests["tpot_s"].iloc[0])
    bubble = (pp - 1) / (m + pp - 1)
    whole = build_step_model("llama-3.1-405b", "h100-sxm", tp=8)
    # a stage: half the layers' GPU time at the mid-decode context + one token's activations
    # (16,384 x 2 B / 8 ranks) over InfiniBand NDR (50 GB/s x 0.9, 5 us)
    handoff = 5e-6 + 16_384 * 2 / 8 / (50e9 * 0.9)
    stage = decode_gpu_s(whole, PROMPT + OUTPUT // 2) * 63 / 126 + handoff
    assert tpot == pytest.approx(stage / (1 - bubble), rel=1e-3)
    assert handoff == pytest.approx(transfer_time_s(16_384 * 2 / 8, load_link("infiniband-ndr")))


def test_micro_batches_fill_the_pipeline_as_the_closed_form_says():
    spec = load_scenario(PP_SCENARIO, {"fleet.pipeline.micro_batches": 4})
    arch, gpu, profile, engine, plan = build(spec)
    step = replica_model(spec, arch, gpu, profile, engine, plan).step_model
    pp, m, batch, ctx = 2, 4, 16, 1000
    kv = batch * float(step.footprint.bytes_per_rank(ctx))
    t = step.iteration(batch, kv).time_s
    whole = build_step_model("llama-3.1-405b", "h100-sxm", tp=8)
    b = whole.breakdown(batch // m, kv / m)
    micro_gpu = b["dense_s"] + b["attention_decode_s"] + b["kv_write_s"] + b["comm_s"] + b["layer_fixed_s"]
    stage = micro_gpu / 2 + transfer_time_s(batch // m * 16_384 * 2 / 8, load_link("infiniband-ndr"))
    assert t == pytest.approx((m + pp - 1) * stage, rel=1e-9)
    busy = m * stage / t
    assert 1 - busy == pytest.approx((pp - 1) / (m + pp - 1), rel=1e-9)
    # the simulator's step is the pure model's (fleetsim.pipeline.pipeline_step)
    pure = pipeline_step(whole, (63, 63), batch, ctx, micro_batches=m)
    assert t == pytest.approx(pure.step_s, rel=1e-9) and pure.bubble_fraction == pytest.approx(1 - busy)


def test_405b_bf16_pp2_tp8_memory_per_stage_by_hand():
    spec = load_scenario(PP_SCENARIO)
    arch, gpu = load_model(spec.model), load_gpu(spec.fleet.gpu)
    plan = memory_plan_of(spec, arch, gpu)
    # config.json: 126 layers, hidden 16,384, vocab 128,256, untied; 405,853,388,800 parameters
    table = 128_256 * 16_384
    body_per_layer = (405_853_388_800 - 2 * table) / 126
    stage_weights = math.ceil((63 * body_per_layer + table) * 2 / 8)  # either stage: 63 layers + one table
    assert plan.weights_bytes_per_gpu == stage_weights
    assert 48e9 < stage_weights < 53e9
    usable = int(81_559 * 2**20 * 0.9)  # H100 SXM: 81,559 MiB as nvidia-smi reports it, at utilization 0.9
    workspace = 2**30 + 8192 * 16_384 * 2 * 16 // 8 + 128 * 128_256 * 4  # runtime + activations + logits
    stage_pool = usable - stage_weights - workspace
    # KV of a token on a stage GPU: 63 layers x 8 KV heads / 8 ranks x 128 x (K + V) x 2 B
    stage_token = 63 * 1 * 128 * 2 * 2
    capacity = int(stage_pool // (16 * stage_token)) * 16
    assert plan.kv_capacity_tokens == capacity
    # in the simulator's whole-model units (126 layers a token per rank)
    assert plan.kv_pool_bytes_per_gpu == capacity * 126 * 128 * 2 * 2


def test_pp_scenario_bills_sixteen_gpus_on_two_servers():
    s = fleetsim.simulate(PP_SCENARIO, {"run.duration_s": 10}).summary
    assert s["fleet"]["gpus"] == 16 and s["fleet"]["pp"] == 2 and s["fleet"]["servers"] == 2
    assert s["bill"]["gpu_hours_used"] == pytest.approx(16 * s["simulated_s"] / 3600, rel=1e-9)


def test_tp_across_servers_all_reduces_over_the_inter_node_link():
    spec = load_scenario(lone("llama-3.1-405b", "h100-sxm", 16))
    arch, gpu, profile, engine, plan = build(spec)
    step = replica_model(spec, arch, gpu, profile, engine, plan).step_model
    ndr = load_link("infiniband-ndr")
    in_server = build_step_model("llama-3.1-405b", "h100-sxm", tp=16)
    assert fleetsim.simulate(spec).summary["fleet"]["tp_link"] == "infiniband-ndr"  # the default, stated
    for tokens in (1, 64, 4096):
        assert step.comm_time_s(tokens) == pytest.approx(multinode_allreduce_s(in_server, tokens, ndr), rel=1e-12)
    # by hand, one token: 2 x 126 all-reduces of 16,384 x 2 B x 2 x 15 / 16 at 45 GB/s, each paying
    # the larger of NDR's 5 us and the engine's own all-reduce latency
    latency = max(5e-6, in_server.comm_latency_s)
    assert step.comm_time_s(1) == pytest.approx(252 * (latency + 16_384 * 2 * 2 * 15 / 16 / 45e9), rel=1e-9)


# ------------------------------------------------------------------ speculative decoding / MTP
@pytest.mark.parametrize("a, k", [(0.6, 3), (0.875, 1)])
def test_mtp_tpot_of_a_lone_request_is_step_over_expected_tokens(a, k):
    spec = {"method": "mtp", "draft_tokens": k, "acceptance": a}
    result = fleetsim.simulate(lone("deepseek-v3", "h200", 8, "fp8", speculative=spec))
    tpot = float(result.requests["tpot_s"].iloc[0])
    e = sum(a**i for i in range(k + 1))
    assert e == pytest.approx((1 - a ** (k + 1)) / (1 - a))
    step = build_step_model("deepseek-v3", "h200", tp=8, weight_dtype="fp8")
    s = speculative_step(step, SpeculativeSpec(**spec), 1, PROMPT + OUTPUT // 2)
    assert tpot == pytest.approx(s.step_s / e, rel=1e-3)
    assert result.summary["latency_s"]["itl"]["mean"] == pytest.approx(s.step_s / e, rel=1e-3)
    plain = fleetsim.simulate(lone("deepseek-v3", "h200", 8, "fp8"))
    assert float(plain.requests["tpot_s"].iloc[0]) == pytest.approx(s.baseline_step_s, rel=1e-3)


def test_draft_model_tpot_of_a_lone_request():
    spec = {"method": "draft_model", "draft_model": "llama-3.1-8b", "draft_tokens": 4, "acceptance": 0.7}
    result = fleetsim.simulate(lone("llama-3.1-70b", "h100-sxm", 4, speculative=spec))
    tpot = float(result.requests["tpot_s"].iloc[0])
    e = 1 + 0.7 + 0.7**2 + 0.7**3 + 0.7**4
    target = build_step_model("llama-3.1-70b", "h100-sxm", tp=4)
    draft = build_step_model("llama-3.1-8b", "h100-sxm", tp=4)
    s = speculative_step(target, SpeculativeSpec(**spec), 1, PROMPT + OUTPUT // 2, draft=draft)
    assert tpot == pytest.approx(s.step_s / e, rel=2e-3)


def test_mixed_steps_credit_tokens_and_keep_the_books_under_preemption():
    # prefill mixed with decodes (each such step credits E - 1 more tokens a sequence) and a pool
    # small enough to preempt: every token counted once, the KV pool empty at the end
    over = {"workload.arrival.rate_per_s": 60, "run.duration_s": 10, "fleet.gpu_memory_utilization": 0.62}
    result = fleetsim.simulate(MTP_SCENARIO, over)
    s, ts = result.summary, result.timeseries
    assert s["requests"]["completed"] == s["requests"]["arrived"] and s["kv_cache"]["preemptions"] > 0
    assert ts["output_tokens"].iloc[-1] == result.requests["output_tokens"].sum()
    assert ts["kv_used_fraction"].iloc[-1] == pytest.approx(0.0, abs=1e-9)


def test_classes_that_accept_differently_share_the_steady_tokens_per_step():
    from fleetsim.speculative_model import fleet_tokens_per_step

    classes = [
        {"name": "code", "weight": 1.0, "output_tokens": {"kind": "fixed", "tokens": 401}},
        {"name": "chat", "weight": 3.0, "output_tokens": {"kind": "fixed", "tokens": 101}},
    ]
    for c in classes:
        c["input_tokens"] = {"kind": "fixed", "tokens": 100}
    sc = lone("deepseek-v3", "h200", 8, "fp8", speculative={"method": "mtp", "acceptance_by_class": {"code": 0.9}})
    sc["speculative"]["acceptance"] = 0.5
    sc["workload"]["classes"] = classes
    e_code, e_chat = 1.9, 1.5  # k = 1: 1 + a
    # a sequence stays (o - 1) / E steps: the batch's tokens per step is the output-weighted harmonic mean
    code, chat = 0.25 * 400, 0.75 * 100
    assert fleet_tokens_per_step(load_scenario(sc)) == pytest.approx((code + chat) / (code / e_code + chat / e_chat))


def test_drafter_and_lookahead_take_kv_memory():
    spec = load_scenario(MTP_SCENARIO)
    arch, gpu = load_model(spec.model), load_gpu(spec.fleet.gpu)
    with_mtp = memory_plan_of(spec, arch, gpu)
    without = memory_plan_of(load_scenario(MTP_SCENARIO, {"speculative": None}), arch, gpu)
    # the MTP head: one MoE layer of 61 (~ 671e9 / 61 x 1 B fp8 / 8 GPUs ~ 1.4 GB a GPU) and
    # 1/61 more KV per token
    drop = without.kv_pool_bytes_per_gpu - with_mtp.kv_pool_bytes_per_gpu * 62 / 61
    assert 0.8e9 < drop < 2.0e9
    _, _, profile, engine, plan = build(spec)
    model = replica_model(spec, arch, gpu, profile, engine, plan)
    assert model.lookahead_bytes == model.footprint.full_bytes_per_token_per_rank  # k = 1 slot


# ------------------------------------------------------------------ shipped scenarios, bad input
@pytest.mark.parametrize("path", [PP_SCENARIO, MTP_SCENARIO], ids=lambda p: p.name)
def test_shipped_topologies_conserve_requests_and_repeat(path):
    one = fleetsim.simulate(path, {"run.duration_s": 10})
    two = fleetsim.simulate(path, {"run.duration_s": 10})
    r = one.summary["requests"]
    assert r["arrived"] > 0 and r["arrived"] == r["completed"] + r["rejected"] + r["in_flight"]
    assert one.summary["latency_s"] == two.summary["latency_s"]
    assert one.requests["finish_s"].equals(two.requests["finish_s"])
    if path == MTP_SCENARIO:
        # DeepSeek-V3 Technical Report (arXiv 2412.19437) sec. 5.4.3: the second token is accepted
        # 85-90% of the time; the midpoint 0.875 at k = 1 is 1.875 tokens a step
        assert one.summary["fleet"]["speculative_tokens_per_step"] == pytest.approx(1 + 0.875)


@pytest.mark.parametrize(
    "override, message",
    [
        ("fleet.pipeline.stages=4", "fleet.pipeline.stages: 4 does not divide the 126 layers of llama-3.1-405b"),
        ("fleet.power_limit_w=500", "fleet.pipeline.stages: pipeline stages with fleet.power_limit_w"),
        ("fleet.tp_link={name: bogus}", "fleet.tp_link.name: 'bogus' is not a known link; valid: "),
    ],
)
def test_bad_topology_is_one_line_and_exit_2(override, message):
    proc = subprocess.run(
        [sys.executable, "-m", "fleetsim", "run", str(PP_SCENARIO), "--set", override],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_plan_pipelines_a_model_no_server_holds():
    from fleetsim.plan import plan_fleet

    result = plan_fleet(
        PP_SCENARIO,
        ["h100-sxm"],
        overrides={"fleet.pipeline.stages": 1, "run.duration_s": 20},
        max_replicas=2,
        progress=False,
    )
    row = result.table.iloc[0]
    assert bool(row["met"]) and int(row["tp"]) == 8 and int(row["pp"]) == 2 and int(row["gpus"]) == 16
    assert "tp=8 x pp=2 (16 GPUs" in result.recommendation()
    assert result.fleet_overrides(row.to_dict())["fleet.pipeline.stages"] == 2


def test_speculation_with_the_block_cache_is_refused_in_one_line():
    from fleetsim.errors import SpecError

    with pytest.raises(SpecError, match="speculative: speculative decoding with the block prefix cache") as e:
        fleetsim.simulate(MTP_SCENARIO, {"run.duration_s": 5, "kv_cache.prefix_cache": "blocks"})
    assert "\n" not in str(e.value)


def test_mixed_fleets_refuse_pipelines_and_speculation_in_one_line():
    from fleetsim.errors import SpecError

    groups = [{"name": "a", "gpu": "h200", "tp": 8, "replicas": 1}, {"name": "b", "gpu": "h100-sxm", "tp": 8}]
    for over, message in (
        ({"fleet": {"groups": groups}}, "speculative is set beside fleet.groups"),
        ({"fleet": {"groups": groups, "pipeline": {"stages": 2}}, "speculative": None}, "pipeline or tp_link is set"),
    ):
        with pytest.raises(SpecError, match=message) as e:
            load_scenario(MTP_SCENARIO, over)
        assert "\n" not in str(e.value)
