"""Expert parallelism and data-parallel attention (fleet.ep, fleet.dp_attention; fleetsim.parallel), issue 11."""

import math

import pytest

from fleetsim import load_scenario
from fleetsim.catalog import load_gpu, load_model
from fleetsim.errors import SpecError
from fleetsim.memory import kv_footprint, weight_bytes
from fleetsim.profile import load_engine_profile, load_profile
from fleetsim.replica_model import replica_model

TP8 = "scenarios/h200_deepseek_v3.yaml"
EP8 = "scenarios/h200_deepseek_v3_ep.yaml"

# DeepSeek-V3 config.json (huggingface.co/deepseek-ai/DeepSeek-V3): num_hidden_layers 61,
# first_k_dense_replace 3, kv_lora_rank 512, qk_rope_head_dim 64, hidden_size 7168,
# n_routed_experts 256, num_experts_per_tok 8, moe_intermediate_size 2048.
LAYERS, DENSE_LAYERS, LORA, ROPE, HIDDEN = 61, 3, 512, 64, 7168
EXPERTS, TOP_K, MOE_FF = 256, 8, 2048


def _replica(path, overrides=None, **kw):
    s = load_scenario(path, {**(overrides or {}), **kw})
    return replica_model(
        s, load_model(s.model), load_gpu(s.fleet.gpu), load_profile(s.fleet.gpu), load_engine_profile(s.engine)
    )


def test_latent_and_expert_bytes_per_rank_by_hand():
    tp, ep = _replica(TP8), _replica(EP8)
    latent_per_token = LAYERS * (LORA + ROPE) * 2  # bf16: 70,272 B, one latent per token
    # TP 8 replicates the latent on every rank; DP attention stores each sequence on one rank.
    assert tp.footprint.full_bytes_per_token_per_rank == latent_per_token
    assert ep.footprint.full_bytes_per_token_per_rank == latent_per_token / 8
    # Routed experts: 256 x (3 x 7168 x 2048) parameters in each of the 58 MoE layers, fp8 (1 B),
    # split over 8 ranks; the rest (attention, dense layers, shared experts, tables) whole per rank.
    expert_params = 3 * HIDDEN * MOE_FF
    experts_per_rank = EXPERTS * expert_params * (LAYERS - DENSE_LAYERS) / 8
    assert experts_per_rank == pytest.approx(81.74e9, rel=1e-3)
    total = weight_bytes(load_model("deepseek-v3"), "fp8")
    rest = total - EXPERTS * expert_params * (LAYERS - DENSE_LAYERS)
    assert ep.plan.weights_bytes_per_gpu == math.ceil(rest + experts_per_rank)
    assert tp.plan.weights_bytes_per_gpu == math.ceil(total / 8)


def test_dp_attention_holds_8x_the_sequences_per_byte_of_pool():
    tp, ep = _replica(TP8).plan, _replica(EP8).plan
    per_byte = (ep.kv_capacity_tokens / ep.kv_pool_bytes_per_gpu) / (tp.kv_capacity_tokens / tp.kv_pool_bytes_per_gpu)
    assert per_byte == pytest.approx(8.0, rel=1e-3)
    # The replicated attention weights (~19 GB per GPU instead of ~2.4 GB) shrink the pool, so the
    # whole replica holds ~5x the tokens of TP 8 in this layout.
    assert 4.5 < ep.kv_capacity_tokens / tp.kv_capacity_tokens < 8.0
    assert (ep.ep, ep.dp, tp.ep, tp.dp) == (8, 8, 1, 1)
    assert kv_footprint(load_model("deepseek-v3"), tp=8, dp=8).prefix_bytes_per_rank(100) == pytest.approx(
        100 * LAYERS * (LORA + ROPE) * 2
    )  # a shared prefix is held by every DP rank


def test_the_step_time_includes_the_all_to_all():
    sm = _replica(EP8).step_model
    prof = load_profile("h200")
    tokens = 256
    # Dispatch + combine per MoE layer: tokens / 8 per rank x top-8 x 7168 x 2 B x 7/8 each way,
    # at the busiest rank's load 1 + sqrt(2 ln 8 / mu), mu = 256 x 8 / 8 pairs per rank.
    imbalance = 1 + math.sqrt(2 * math.log(8) / (tokens * TOP_K / 8))
    per_way_bytes = imbalance * tokens / 8 * TOP_K * HIDDEN * 2 * 7 / 8
    latency = load_engine_profile(load_scenario(EP8).engine).allreduce_latency_s or prof.collectives.allreduce_latency_s
    expected = 2 * (LAYERS - DENSE_LAYERS) * (latency + per_way_bytes / prof.collectives.allreduce_bus_bytes_per_s)
    assert sm.all_to_all_s(tokens) == pytest.approx(expected, rel=1e-9)
    assert sm.all_reduce_s(tokens) == 0.0  # attention TP 1: no all-reduce
    kv = tokens * 1000 * sm.footprint.full_bytes_per_token_per_rank
    assert sm.breakdown(tokens, kv)["comm_s"] == pytest.approx(expected)
    # TP 8 all-reduces twice per layer instead.
    assert _replica(TP8).step_model.breakdown(tokens, kv)["comm_s"] > 0


def test_experts_read_per_rank_follow_the_tokens_in_the_step():
    sm = _replica(EP8).step_model
    expert_bytes = 3 * HIDDEN * MOE_FF * (LAYERS - DENSE_LAYERS)  # fp8, one expert in every MoE layer
    one, many = sm.weight_bytes_per_gpu(1), sm.weight_bytes_per_gpu(4096)
    # 1 token touches 8 experts per layer; 4096 tokens all 256 (1 - (1 - 8/256)^4096 ~ 1); per rank / 8.
    touched = EXPERTS * (1 - (1 - TOP_K / EXPERTS) ** 4096)
    assert many - one == pytest.approx((touched - TOP_K) * expert_bytes / 8, rel=1e-9)


@pytest.mark.parametrize(
    "path, overrides, message",
    [
        (EP8, {"fleet.ep": 7}, "fleet.ep: 7 does not divide the 256 routed experts"),
        (EP8, {"fleet.ep": 16}, "fleet.ep: 16 does not divide the 8 GPUs"),
        (TP8, {"fleet.ep": 8, "fleet.tp": 4}, "fleet.ep: 8 does not divide the 4 GPUs"),
        ("scenarios/h100_llama3.yaml", {"fleet.dp_attention": True}, "needs a mixture-of-experts model"),
        ("scenarios/h100_llama3.yaml", {"fleet.ep": 2}, "needs a mixture-of-experts model"),
        (EP8, {"fleet.tp": 1, "fleet.ep": 1}, "needs fleet.tp > 1"),
    ],
)
def test_bad_layouts_are_one_line(path, overrides, message):
    with pytest.raises(SpecError, match=message) as e:
        _replica(path, overrides)
    assert "\n" not in str(e.value)


def test_a_prefill_runs_its_attention_and_dense_layers_on_one_dp_rank():
    # Each request lives on one DP rank (SGLang's DP controller assigns it), and the MoE layers'
    # all-to-alls make every rank wait for the busiest: one 4,096-token prompt puts all its
    # non-expert work on one of 8 ranks, eight 512-token prompts spread it.
    sm = _replica(EP8).step_model
    assert (sm.dp_prefill_skew(4096, 1), sm.dp_prefill_skew(4096, 2), sm.dp_prefill_skew(4096, 16)) == (8, 4, 1)
    pair = 4096 * sm.footprint.full_bytes_per_token_per_rank * 256
    one, spread = sm.iteration(0, 0.0, 4096, pair, 1), sm.iteration(0, 0.0, 4096, pair, 8)
    assert one.time_s > 3 * spread.time_s
    # The mean work (what power sees) is the same but for the logits of 1 against 8 sequences.
    assert one.flops == pytest.approx(spread.flops - 7 * sm.lm_head_flops_per_token)
    assert _replica(TP8).step_model.dp_prefill_skew(4096, 1) == 1.0


def test_the_ep_scenario_runs_and_holds_more_kv_than_tp8():
    from fleetsim import simulate

    short = {"run.duration_s": 10}
    tp, ep = (simulate(load_scenario(p, short)).summary for p in (TP8, EP8))
    assert ep["requests"]["completed"] == ep["requests"]["arrived"] > 0
    cap = ep["kv_cache"]["capacity_tokens_per_replica"] / tp["kv_cache"]["capacity_tokens_per_replica"]
    assert cap == pytest.approx(_replica(EP8).plan.kv_capacity_tokens / _replica(TP8).plan.kv_capacity_tokens)
    assert ep["kv_cache"]["mean_utilization"] < tp["kv_cache"]["mean_utilization"]
