"""Expert all-to-all across servers and two-batch overlap (fleetsim.expert_comm), issue 14."""

import itertools

import pytest

from fleetsim import load_scenario
from fleetsim.catalog import load_gpu, load_model
from fleetsim.errors import SpecError
from fleetsim.expert_comm import gpus_reached_per_token, remote_servers_per_token, two_batch_overlap_s
from fleetsim.profile import load_engine_profile, load_profile
from fleetsim.replica_model import replica_model

EP8 = "scenarios/h200_deepseek_v3_ep.yaml"
HIDDEN, TOP_K = 7168, 8  # DeepSeek-V3 config.json: hidden_size, num_experts_per_tok


def test_remote_servers_by_enumeration():
    # Every assignment of k experts' servers, equally likely: the mean count of other servers touched.
    for servers, k in [(2, 2), (3, 2), (4, 3)]:
        counts = [len(set(a) - {0}) for a in itertools.product(range(servers), repeat=k)]
        assert remote_servers_per_token(servers, k) == pytest.approx(sum(counts) / len(counts), rel=1e-12)
    assert remote_servers_per_token(1, 8) == 0.0
    # distinct GPUs reached: the same count with the sender's own GPU included
    counts = [len(set(a)) for a in itertools.product(range(4), repeat=3)]
    assert gpus_reached_per_token(4, 3) == pytest.approx(sum(counts) / len(counts), rel=1e-12)


def test_two_batch_overlap_closed_forms():
    # Communication-bound: the all-to-all sets the pace; the fill is one micro-batch's half-layer.
    assert two_batch_overlap_s(1.0, 2.0, 0.2, 1) == pytest.approx(2.0 + 0.5)
    # Compute-bound: compute loses the SMs the communication holds while it runs (0.2 x 1 s).
    assert two_batch_overlap_s(2.0, 1.0, 0.2, 1) == pytest.approx(2.2 + 0.5)
    assert two_batch_overlap_s(2.0, 1.0, 0.0, 10) == pytest.approx(2.0 + 1.0 / 20)
    assert two_batch_overlap_s(2.0, 0.0, 0.2, 10) == 2.0  # nothing to hide: no micro-batch cost


def _step(**over):
    s = load_scenario(EP8, over)
    engine = load_engine_profile(s.engine)
    return replica_model(s, load_model(s.model), load_gpu(s.fleet.gpu), load_profile(s.fleet.gpu), engine).step_model


def test_ep_across_four_servers_sends_each_token_once_per_other_server():
    step = _step(**{"fleet.tp": 32, "fleet.ep": 32, "fleet.dp_attention": True})
    a2a = step.internode
    assert a2a is not None
    # fp8 dispatch with an fp32 scale per 128 values, bf16 combine; a rank sends 1/32 of the tokens.
    per_copy = HIDDEN * ((1 + 4 / 128) + 2) / 32
    assert a2a.rdma_bytes_per_token == pytest.approx(3 * (1 - 0.75**TOP_K) * per_copy, rel=1e-12)
    assert a2a.nvlink_bytes_per_token == pytest.approx(32 * (1 - (31 / 32) ** TOP_K) * per_copy, rel=1e-12)
    # Over InfiniBand NDR (catalog: 50 GB/s x 0.9) the RDMA side binds for a large prefill.
    tokens = 524_288
    rdma_s = tokens * a2a.rdma_bytes_per_token / 45e9
    per_layer = 2 * a2a.latency_s + rdma_s * step.moe_imbalance(tokens)
    assert step.all_to_all_s(tokens) == pytest.approx(58 * per_layer, rel=1e-9)  # 58 MoE layers
    # Inside one server nothing changes: the NVLink all-to-all of every byte.
    assert _step().internode is None


def test_overlap_hides_the_all_to_all_and_decode_lines_agree_with_the_iteration():
    plain = _step(**{"fleet.tp": 32, "fleet.ep": 32, "fleet.dp_attention": True})
    tbo = _step(**{"fleet.tp": 32, "fleet.ep": 32, "fleet.dp_attention": True, "engine.two_batch_overlap": True})
    prompt = plain.breakdown(0, 0.0, 131_072, 131_072 * 4096 * 1e3, 32)
    hidden = tbo.breakdown(0, 0.0, 131_072, 131_072 * 4096 * 1e3, 32)
    compute = sum(prompt[k] for k in ("dense_s", "attention_prefill_s", "kv_write_s"))
    assert max(compute, prompt["comm_s"]) < hidden["time_s"] < prompt["time_s"]
    # A decode-only step: the run's first line equals the iteration (same terms, summed in another order).
    n, kv = 256, 256 * 2000 * tbo.kv_write_bytes_per_token
    lines, *_ = tbo.decode_run_lines(n, kv, n * tbo.kv_write_bytes_per_token)
    assert max(a for a, _ in lines) == pytest.approx(tbo.iteration(n, kv).time_s, rel=1e-12)


def test_two_batch_overlap_without_expert_parallelism_is_refused():
    with pytest.raises(SpecError, match=r"engine.two_batch_overlap.*fleet.ep is 1"):
        _step(**{"fleet.ep": 1, "fleet.dp_attention": False, "engine.two_batch_overlap": True})
