"""The block prefix cache inside the simulator (fleetsim.sim.block_cache): hit rates of routers on
synthetic session traffic with a hand answer, LRU eviction in a small pool, host offload with
reload or recompute on either side of the closed-form threshold, conservation, determinism."""

import math
from pathlib import Path

import pytest

import fleetsim
from fleetsim.errors import SpecError
from fleetsim.spec.scenario import ScenarioSpec

ROOT = Path(__file__).resolve().parents[1]
B = 16  # scheduler.block_tokens
X, Y = 64, 32  # each turn's new message and answer, tokens


def scenario(**over) -> dict:
    return {
        "model": "llama-3-8b",
        "fleet": {"gpu": "h100-sxm", "replicas": 2, "router": "prefix_aware"},
        "scheduler": {"block_tokens": B},
        "workload": {
            "arrival": {"kind": "offline", "requests": 6},
            "classes": [
                {
                    "name": "chat",
                    "input_tokens": {"kind": "fixed", "tokens": X},
                    "output_tokens": {"kind": "fixed", "tokens": Y},
                    # every turn long finished (milliseconds) before the next arrives
                    "session": {"turns": {"kind": "fixed", "tokens": 4}, "think_time": {"kind": "fixed", "value_s": 5}},
                }
            ],
        },
        "run": {"duration_s": 100, "seed": 1},
        **over,
    }


def run(spec: dict):
    return fleetsim.simulate(ScenarioSpec.model_validate(spec))


def kv_hit(prev_turn: int) -> int:
    """Tokens cached by turn `prev_turn` of a session: its prompt and answer, (prev_turn + 1)(X + Y)
    tokens, less the last answer token (sampled, never fed back), in full blocks."""
    return ((prev_turn + 1) * (X + Y) - 1) // B * B


def prompt(turn: int) -> int:
    return turn * (X + Y) + X


def test_affinity_hit_rate_is_the_hand_answer():
    r = run(scenario())
    req = r.requests
    assert len(req) == 24 and (req["status"] == "completed").all()
    expected = {j: (kv_hit(j - 1) if j else 0) for j in range(4)}  # 0, 80, 176, 272
    assert expected == {0: 0, 1: 80, 2: 176, 3: 272}
    assert all(req["cached_prompt_tokens"] == req["turn"].map(expected))
    assert all(req.groupby("session_id")["replica"].nunique() == 1)  # session affinity
    pc = r.summary["prefix_cache"]
    assert pc["prompt_tokens"] == 6 * sum(prompt(j) for j in range(4))
    assert pc["hit_rate"] == pytest.approx(528 / 832)  # (80 + 176 + 272) / (64 + 160 + 256 + 352)
    assert pc["host_hit_tokens"] == 0 and pc["evicted_blocks"] == 0


@pytest.mark.parametrize("scorer", ["llm_d", "dynamo"])
def test_prefix_score_finds_the_session_without_affinity(scorer):
    """No affinity, cache weight 10: a later turn's cached share (turn 1: 5 of 10 blocks, score
    5 for llm-d; 5 fewer blocks to prefill x 10 for Dynamo) outweighs any load difference (at most
    1 here), so the score alone sends it home: the affinity answer again."""
    spec = scenario()
    spec["fleet"]["routing"] = {"cache_weight": 10.0, "session_affinity": False, "scorer": scorer}
    r = run(spec)
    assert r.summary["prefix_cache"]["hit_rate"] == pytest.approx(528 / 832)
    assert r.requests.groupby("replica").size().min() > 0


def test_round_robin_hit_rate_by_hand():
    """3 sessions, 2 replicas, round robin in arrival order: at time 5j the sessions' turn j
    arrive in session order, so request j * 3 + s goes to replica (3j + s) mod 2: a session's
    turns alternate replicas, and turn j finds what turn j - 2 cached (turn 1: nothing)."""
    spec = scenario(kv_cache={"prefix_cache": "blocks"})
    spec["fleet"] = {"gpu": "h100-sxm", "replicas": 2, "router": "round_robin"}
    spec["workload"]["arrival"]["requests"] = 3
    req = run(spec).requests
    for s in range(3):
        for j in range(4):
            row = req[(req["session_id"] == s) & (req["turn"] == j)].iloc[0]
            assert row["replica"] == (3 * j + s) % 2
            assert row["cached_prompt_tokens"] == (kv_hit(j - 2) if j >= 2 else 0)
    hits = 3 * (kv_hit(0) + kv_hit(1))  # turns 2 and 3
    assert req["cached_prompt_tokens"].sum() == hits
    # with 2 sessions (even) every turn comes back to its replica: the affinity answer
    spec["workload"]["arrival"]["requests"] = 2
    assert run(spec).summary["prefix_cache"]["hit_rate"] == pytest.approx(528 / 832)


# ---------------------------------------------------------------------------- a small pool
def small_pool_spec(tmp_path, blocks_b: int, offload: dict | None = None) -> dict:
    """One replica with a pool of a few hundred blocks, fed a trace: session A (40 blocks),
    session B (blocks_b blocks), then A's second turn (48 blocks); one output token each, so a
    request holds only its prompt's blocks (and the half-block fragmentation allowance)."""
    path = tmp_path / "trace.csv"
    path.write_text(
        "arrival_s,input_tokens,output_tokens,session_id,turn\n"
        f"0,{40 * B},1,0,0\n1,{blocks_b * B},1,1,0\n2,{48 * B},1,0,1\n"
    )
    kv: dict = {"prefix_cache": "blocks"}
    if offload is not None:
        kv["offload"] = offload
    return {
        "model": "llama-3-8b",
        "kv_cache": kv,
        "fleet": {"gpu": "h100-sxm", "replicas": 1, "kv_cache_free_memory_fraction": 0.004},
        "scheduler": {"block_tokens": B},
        "workload": {"arrival": {"kind": "trace", "path": str(path)}, "classes": [{"name": "chat"}]},
        "run": {"duration_s": 10},
    }


def cache_blocks(plan) -> int:
    """Blocks the cache may fill while a request is admitted: the pool less its half block."""
    return math.floor(plan.kv_pool_bytes_per_gpu / plan.block_bytes_per_gpu - 0.5)


def test_lru_eviction_in_a_small_pool_by_hand(tmp_path):
    probe = run(small_pool_spec(tmp_path, 10))
    c = cache_blocks(probe.plan)
    assert 100 < c < 1000
    # B needs c - 30 blocks: 10 of A's 40 cached blocks go, the chain's tail first (blocks 30-39);
    # A's second turn then finds blocks 0-29 and evicts 18 of B's for its 18 new blocks.
    r = run(small_pool_spec(tmp_path, c - 30))
    req = r.requests
    assert req["session_id"].tolist() == [0, 1, 0] and req["turn"].tolist() == [0, 0, 1]  # from the trace
    assert req["cached_prompt_tokens"].tolist() == [0, 0, 30 * B]
    pc = r.summary["prefix_cache"]
    assert pc["evicted_blocks"] == 10 + 18 and pc["offloaded_bytes"] == 0
    assert r.summary["kv_cache"]["preemptions"] == 0


@pytest.mark.parametrize("fast", [True, False])
def test_offload_reloads_when_the_link_beats_recompute(tmp_path, fast):
    """A's 10 evicted blocks go to host memory. Reloading them takes 10 x block bytes / bandwidth;
    recomputing them is a 160-token prefill (tens of microseconds at least, far below a second).
    A link of 1e15 B/s reloads (20 ns); one of 1e3 B/s (hours) recomputes."""
    probe = run(small_pool_spec(tmp_path, 10))
    c = cache_blocks(probe.plan)
    bw = 1e15 if fast else 1e3
    link = {"bandwidth_bytes_per_s": bw, "latency_s": 0.0}
    r = run(small_pool_spec(tmp_path, c - 30, {"host_bytes": 1e12, "link": link}))
    pc = r.summary["prefix_cache"]
    block_bytes = probe.plan.block_bytes_per_gpu
    assert pc["offloaded_bytes"] == pytest.approx((10 + 18) * block_bytes)
    a1 = r.requests.iloc[2]
    slow_link = {"host_bytes": 1e12, "link": {"bandwidth_bytes_per_s": 1e3, "latency_s": 0.0}}
    if fast:  # reloading 10 blocks in 20 ns beats prefilling their 160 tokens: a shorter TTFT
        recomputed = run(small_pool_spec(tmp_path, c - 30, slow_link)).requests.iloc[2]
        assert a1["ttft_s"] < recomputed["ttft_s"]
        assert a1["cached_prompt_tokens"] == 40 * B and pc["host_hit_tokens"] == 10 * B
        assert pc["reload_s"] == pytest.approx(10 * block_bytes / bw)
    else:
        assert a1["cached_prompt_tokens"] == 30 * B and pc["host_hit_tokens"] == 0 and pc["reload_s"] == 0


# ---------------------------------------------------------------------------- whole runs
def short_shipped(**over):
    spec = fleetsim.load_scenario(ROOT / "scenarios/h100_llama3_multiturn_offload.yaml").model_dump()
    spec["run"]["duration_s"] = 30
    for k, v in over.items():
        a, b = k.split("__")
        spec[a][b] = v
    return ScenarioSpec.model_validate(spec)


def test_shipped_scenario_conserves_and_repeats():
    a = fleetsim.simulate(short_shipped())
    b = fleetsim.simulate(short_shipped())
    assert a.summary == b.summary
    req = a.requests
    n = a.summary["requests"]
    assert n["arrived"] == len(req) == n["completed"] + n["rejected"] + n["in_flight"]
    assert n["in_flight"] == 0
    done = req[req["status"] == "completed"]
    assert (done["cached_prompt_tokens"] <= done["input_tokens"] - 1).all()
    pc = a.summary["prefix_cache"]
    assert pc["hit_tokens"] == int(done["cached_prompt_tokens"].sum())
    assert pc["gpu_hit_tokens"] + pc["host_hit_tokens"] == pc["hit_tokens"]
    # later turns hit far more than first turns (the conversation is cached)
    assert (
        done[done["turn"] > 0]["cached_prompt_tokens"].mean()
        > 4 * done[done["turn"] == 0]["cached_prompt_tokens"].mean()
    )
    rr = fleetsim.simulate(short_shipped(fleet__router="round_robin", fleet__routing=None))
    assert rr.summary["prefix_cache"]["hit_rate"] < pc["hit_rate"]
    assert fleetsim.simulate(short_shipped(run__seed=8)).summary != a.summary


def test_small_pool_under_load_evicts_then_preempts_and_conserves():
    """A pool of ~10k tokens against growing conversations: cached blocks are evicted first, and
    preemption still comes when running sequences alone fill the pool; nothing is lost and the
    pool is never over-full."""
    r = fleetsim.simulate(
        short_shipped(
            fleet__gpu_memory_utilization=0.23,
            workload__arrival={"kind": "poisson", "rate_per_s": 12.0},
            run__duration_s=30,
        )
    )
    n = r.summary["requests"]
    assert n["arrived"] == n["completed"] + n["rejected"] and n["in_flight"] == 0
    assert r.summary["kv_cache"]["preemptions"] > 0 and r.summary["prefix_cache"]["evicted_blocks"] > 0
    assert r.timeseries["kv_used_fraction"].max() <= 1.0 + 1e-9


def test_block_cache_spec_errors():
    spec = scenario(kv_cache={"prefix_cache": "per_class"})
    with pytest.raises(Exception, match="per_class"):
        ScenarioSpec.model_validate(spec)
    spec = scenario()
    spec["fleet"] = {"router": "round_robin", "routing": {"cache_weight": 2}}
    with pytest.raises(Exception, match="fleet.routing is read by router prefix_aware only"):
        ScenarioSpec.model_validate(spec)
    spec = scenario(engine={"kind": "trtllm"})
    with pytest.raises(SpecError, match="reserve_full"):
        run(spec)
    spec = scenario(model="mamba-2.8b")
    with pytest.raises(SpecError, match="has SSM state"):
        run(spec)
