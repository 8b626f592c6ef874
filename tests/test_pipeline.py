"""Pipeline parallelism and multi-node TP: the bubble (pp - 1) / (m + pp - 1), per-stage memory by
hand, the 405B and DeepSeek-V3 bf16 layouts that need more than one server."""

import pytest

from fleetsim.catalog import load_model
from fleetsim.errors import CapacityError, SpecError
from fleetsim.kv_transfer import Link, load_link
from fleetsim.memory import weight_bytes
from fleetsim.pipeline import (
    bubble_fraction,
    multinode_allreduce_s,
    pipeline_plan,
    pipeline_step,
    stage_layers,
    stage_weight_bytes,
)
from fleetsim.speculative import build_step_model


def test_bubble_fraction_by_hand():
    assert bubble_fraction(1, 1) == 0.0
    assert bubble_fraction(2, 1) == pytest.approx(1 / 2)
    assert bubble_fraction(4, 4) == pytest.approx(3 / 7)
    assert bubble_fraction(4, 16) == pytest.approx(3 / 19)
    # idle share of a GPipe schedule counted slot by slot: pp stages x (m + pp - 1) slots, m x pp busy
    pp, m = 3, 5
    slots = pp * (m + pp - 1)
    assert bubble_fraction(pp, m) == pytest.approx((slots - m * pp) / slots)


def test_stage_weights_sum_to_the_model():
    for model in ("llama-3-70b", "deepseek-v3", "mixtral-8x7b"):
        arch = load_model(model)
        n = arch.num_layers
        layers = (n // 2 + n % 2, n // 2)
        assert sum(stage_weight_bytes(arch, layers)) == pytest.approx(weight_bytes(arch, "bf16"), rel=1e-9)
        assert sum(stage_weight_bytes(arch, (n,))) == pytest.approx(weight_bytes(arch, "bf16"), rel=1e-9)


def test_llama_405b_bf16_fits_pp2_tp8_on_h100():
    plan = pipeline_plan("llama-3.1-405b", "h100-sxm", pp=2, tp=8, context_tokens=8192)
    assert plan.gpus == 16 and plan.servers == 2 and not plan.tp_crosses_servers
    assert [s.layers for s in plan.stages] == [63, 63]
    # ~405e9 x 2 B / 16 GPUs = 50.7 GB per GPU (each stage adds one 128,256 x 16,384 bf16 table / 8)
    body = (405_853_388_800 - 2 * 128_256 * 16_384) * 2 / 16  # published parameter count (catalog)
    table = 128_256 * 16_384 * 2 / 8
    for s in plan.stages:
        assert s.weights_bytes_per_gpu == pytest.approx(body + table, rel=1e-6)
        assert 48e9 < s.weights_bytes_per_gpu < 53e9
        assert s.kv_pool_bytes_per_gpu > 15e9
    # 126 layers x 8 KV heads x 128 x 4 B / (2 stages x 8 ranks) KV bytes per token per GPU
    assert plan.stages[0].kv_bytes_per_token_per_gpu == pytest.approx(63 * 1 * 128 * 4)
    assert plan.max_concurrent_sequences >= 1
    with pytest.raises(CapacityError, match="pp=1 x tp=8 on h100-sxm: stage 0 .* raise pp or tp"):
        pipeline_plan("llama-3.1-405b", "h100-sxm", pp=1, tp=8)


def test_deepseek_v3_bf16_across_servers():
    with pytest.raises(CapacityError):
        pipeline_plan("deepseek-v3", "h200", pp=1, tp=8)  # 1.34 TB of bf16 weights on one server
    with pytest.raises(SpecError, match=r"fleet.pp: 2 does not divide the 61 layers of deepseek-v3; .*\[31, 30\]"):
        pipeline_plan("deepseek-v3", "h200", pp=2, tp=8)
    plan = pipeline_plan("deepseek-v3", "h200", pp=2, tp=8, layers_per_stage=(31, 30), context_tokens=4096)
    assert plan.servers == 2
    # stage 0: 3 dense + 28 MoE layers; each GPU ~ 671e9 x 2 / 16 = 84 GB give or take a stage's share
    for s in plan.stages:
        assert 75e9 < s.weights_bytes_per_gpu < 95e9
    # TP 16 across two H200 servers also fits (MLA latent replicated on every rank)
    wide = pipeline_plan("deepseek-v3", "h200", pp=1, tp=16)
    assert wide.tp_crosses_servers and wide.servers == 2


def test_bad_pp_is_one_line():
    with pytest.raises(SpecError, match="fleet.pp: 3 does not divide the 80 layers") as e:
        stage_layers(load_model("llama-3-70b"), 3)
    assert "\n" not in str(e.value)
    with pytest.raises(SpecError, match="layers_per_stage"):
        stage_layers(load_model("llama-3-70b"), 2, (40, 39))
    with pytest.raises(SpecError, match="exceeds the 32 layers"):
        stage_layers(load_model("llama-3-8b"), 33)


def test_pipeline_step_and_multinode_tp():
    step = build_step_model("llama-3.1-405b", "h100-sxm", tp=8)
    one = pipeline_step(step, (126,), 64, 2000)
    two = pipeline_step(step, (63, 63), 64, 2000, micro_batches=2)
    assert one.bubble_fraction == 0 and two.bubble_fraction == pytest.approx(1 / 3)
    # the two stages each take half the layers on half the batch; (2 + 1) x stage time per step
    assert two.step_s >= 3 * two.stage_s - 1e-12
    assert two.handoff_s == pytest.approx(5e-6 + 32 * 16_384 * 2 / 8 / (0.9 * 50e9))
    # all-reduce over NDR vs NVLink: 2 x 126 all-reduces of 64 tokens x 16,384 x 2 B x 2 x 15/16
    wide = build_step_model("llama-3.1-405b", "h100-sxm", tp=16)
    ndr = load_link("infiniband-ndr")
    expected = 2 * 126 * (max(ndr.latency_s, wide.comm_latency_s) + 64 * 2 * 15 / 16 * 16_384 * 2 / (0.9 * 50e9))
    assert multinode_allreduce_s(wide, 64, ndr) == pytest.approx(expected)
    assert multinode_allreduce_s(wide, 64, ndr) > wide.comm_time_s(64)
    slow = pipeline_step(wide, (126,), 64, 2000, tp_link=ndr)
    fast = pipeline_step(wide, (126,), 64, 2000, tp_link=Link("x", "inter_node", 450e9, 3e-6))
    assert slow.step_s > fast.step_s
