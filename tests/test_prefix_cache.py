"""Prefix cache that holds memory: LRU eviction (tail first), a host tier with reload-or-recompute,
and the hit rate of routers on a synthetic session trace whose answer is known by hand."""

import numpy as np
import pytest

from fleetsim.prefix_cache import (
    CacheFull,
    CacheTier,
    PrefixAwareRouter,
    PrefixCache,
    block_hashes,
    dynamo_kv_cost,
    llm_d_score,
    replay,
    replica_prefix_cache,
)
from fleetsim.spec.topology import RoutingSpec
from fleetsim.spec.workload import WorkloadSpec
from fleetsim.workload import generate_requests

B = 16


def sessions_batch(sessions, turns, x, y, think_s=5.0):
    """S sessions x T turns, all opening at t = 0, turns think_s apart on average (exponential:
    the sessions' turns interleave at random; the hit answer does not depend on the order)."""
    spec = WorkloadSpec(
        arrival={"kind": "offline", "requests": sessions},
        classes=[
            {
                "name": "chat",
                "input_tokens": {"kind": "fixed", "tokens": x},
                "output_tokens": {"kind": "fixed", "tokens": y},
                "session": {
                    "turns": {"kind": "fixed", "tokens": turns},
                    "think_time": {"kind": "exponential", "mean_s": think_s},
                },
            }
        ],
    )
    return generate_requests(spec, np.random.default_rng(0))


def caches(n, capacity=10**9):
    return [PrefixCache(capacity_blocks=capacity, block_tokens=B) for _ in range(n)]


def hand_hit_fraction(turns, x, y):
    """Turn j's prompt is j (x + y) + x tokens; the previous turn's prompt and answer, j (x + y)
    tokens, are cached in full blocks: floor(j (x + y) / B) x B of them hit."""
    prompts = [j * (x + y) + x for j in range(turns)]
    hits = [(j * (x + y)) // B * B for j in range(turns)]
    return sum(hits) / sum(prompts)


@pytest.mark.parametrize("x,y", [(64, 32), (70, 30)])
def test_affinity_hit_rate_is_the_hand_answer(x, y):
    batch = sessions_batch(sessions=12, turns=4, x=x, y=y)
    result = replay(batch, PrefixAwareRouter(caches(4), RoutingSpec(session_affinity=True)))
    assert result["requests"] == 48
    assert result["hit_fraction"] == pytest.approx(hand_hit_fraction(4, x, y))
    assert hand_hit_fraction(4, 64, 32) == pytest.approx(576 / 832)


def test_prefix_aware_finds_the_session_without_affinity():
    batch = sessions_batch(sessions=12, turns=4, x=64, y=32)
    spec = RoutingSpec(cache_weight=10.0, load_weight=1.0, session_affinity=False)
    result = replay(batch, PrefixAwareRouter(caches(4), spec))
    assert result["hit_fraction"] == pytest.approx(576 / 832)
    assert sum(result["requests_per_replica"]) == 48 and min(result["requests_per_replica"]) > 0
    dynamo = replay(batch, PrefixAwareRouter(caches(4), spec, scorer="dynamo"))
    assert dynamo["hit_fraction"] == pytest.approx(576 / 832)
    # a load-only router scatters a session's turns: fewer hits than the hand answer
    blind = replay(batch, PrefixAwareRouter(caches(4), RoutingSpec(kind="least_outstanding", session_affinity=False)))
    assert blind["hit_fraction"] < 576 / 832


def test_lru_evicts_the_tail_first_and_hits_hold_blocks():
    cache = PrefixCache(capacity_blocks=4, block_tokens=B)
    a = block_hashes(4 * B, B, request_id=1)
    b = block_hashes(2 * B, B, request_id=2)
    assert cache.acquire(a).computed_blocks == 4
    with pytest.raises(CacheFull):  # a is running and holds all 4 blocks
        cache.acquire(b)
    cache.release(a)
    cache.acquire(b)
    cache.release(b)
    assert cache.cached_prefix_blocks(a) == 2  # a's last two blocks were evicted, its first two kept
    hit = cache.acquire(a)
    assert (hit.gpu_hit_blocks, hit.computed_blocks) == (2, 2)
    assert cache.gpu_blocks_used() == 4


def test_host_tier_reload_or_recompute():
    block_bytes = 327_680 * B  # Llama-3-70B bf16 block
    tier = CacheTier("host", capacity_blocks=8, bandwidth_bytes_per_s=50e9, latency_s=1e-5)

    def run(recompute_s):
        cache = PrefixCache(4, B, block_bytes, tiers=[tier], recompute_s=recompute_s)
        a, b = block_hashes(4 * B, B, request_id=1), block_hashes(2 * B, B, request_id=2)
        cache.acquire(a)
        cache.release(a)
        cache.acquire(b)
        cache.release(b)
        assert cache.tier_blocks_used(1) == 2  # a's evicted tail went to host memory
        return cache.acquire(a)

    reload_s = 2 * block_bytes / 50e9 + 1e-5
    slow_gpu = run(lambda tokens, context: 1.0)
    assert (slow_gpu.gpu_hit_blocks, slow_gpu.reloaded_blocks, slow_gpu.computed_blocks) == (2, 2, 0)
    assert slow_gpu.reload_s == pytest.approx(reload_s)
    fast_gpu = run(lambda tokens, context: reload_s / 2)
    assert (fast_gpu.gpu_hit_blocks, fast_gpu.reloaded_blocks, fast_gpu.computed_blocks) == (2, 0, 2)


def test_router_formulas_by_hand():
    spec = RoutingSpec(cache_weight=2.0, load_weight=1.0)
    assert llm_d_score(3, 4, load=5, max_load=10, spec=spec) == pytest.approx(2 * 0.75 + 0.5)
    # Dynamo: 1.0 x (100 - 4 x 16) / 16 prefill blocks + (20 active + 100 / 16) decode blocks
    assert dynamo_kv_cost(4, 100, 16, 20) == pytest.approx(36 / 16 + 20 + 100 / 16)


def test_replica_cache_with_host_offload():
    from fleetsim.catalog import load_gpu, load_model
    from fleetsim.memory import plan_memory
    from fleetsim.spec.topology import KvOffloadSpec
    from fleetsim.speculative import build_step_model

    plan = plan_memory(load_model("llama-3-70b"), load_gpu("h100-sxm"), tp=4)
    step = build_step_model("llama-3-70b", "h100-sxm", tp=4)
    cache = replica_prefix_cache(plan, step, KvOffloadSpec(host_bytes=1e12))
    assert cache.capacity_blocks == plan.kv_blocks
    # a block is 16 tokens x 327,680 B / 4 ranks per GPU; 1 TB of host memory holds 1e12 / (16 x 327,680) blocks
    assert cache.block_bytes == 16 * 327_680 / 4
    assert cache.tiers[0].capacity_blocks == int(1e12 // (16 * 327_680))
    assert cache.tiers[0].bandwidth_bytes_per_s == pytest.approx(0.85 * 63e9)
    # reloading 1,000 tokens over PCIe Gen5 (~1.5 ms per GPU) beats recomputing them after 4,000 tokens of context
    reload_s = 1000 * 327_680 / 4 / (0.85 * 63e9)
    assert reload_s < cache.recompute_s(1000, 4000)
