"""Prefill/decode disaggregation in the simulator: the KV transfer of each request against the
closed form from bytes, bandwidth and latency, TTFT from the prefill pool and TPOT from the
decode pool, NIC queueing, conservation, determinism, both pools' GPUs in power and cost, and
bad topologies as one line and exit status 2."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fleetsim import simulate

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "scenarios" / "h100_llama3_70b_pd.yaml"

# Llama 3 70B (config.json): 80 layers, 8 KV heads of 128 dims; bf16 K and V.
LAYERS, KV_HEADS, HEAD_DIM, BF16_BYTES = 80, 8, 128, 2
KV_BYTES_PER_TOKEN = LAYERS * KV_HEADS * HEAD_DIM * 2 * BF16_BYTES  # 327,680: K and V
BANDWIDTH, LATENCY_S = 25e9, 2e-5  # the scenario's own link, efficiency 1
PREFILL_TP, DECODE_TP = 2, 4


def lone(prompt=1000, output=16, requests=1, pipelined=False) -> dict:
    """Requests of one fixed shape at t = 0 on one prefill and one decode replica."""
    return {
        "name": "pd-lone",
        "model": "llama-3-70b",
        "weight_dtype": "bf16",
        "kv_cache": {"key_dtype": "bf16", "value_dtype": "bf16"},
        "disaggregation": {
            "prefill": {"gpu": "h100-sxm", "tp": PREFILL_TP, "replicas": 1},
            "decode": {"gpu": "h100-sxm", "tp": DECODE_TP, "replicas": 1},
            "link": {"bandwidth_bytes_per_s": BANDWIDTH, "latency_s": LATENCY_S, "efficiency": 1.0},
            "layer_pipelined": pipelined,
        },
        "workload": {
            "arrival": {"kind": "offline", "requests": requests},
            "classes": [
                {
                    "name": "r",
                    "input_tokens": {"kind": "fixed", "tokens": prompt},
                    "output_tokens": {"kind": "fixed", "tokens": output},
                }
            ],
        },
        "run": {"seed": 1},
        "cost": {"mode": "rental", "rental_usd_per_gpu_hour": 2.0},
    }


def aggregated(tp: int, prompt=1000, output=16) -> dict:
    """The same request on one ordinary replica of `tp` GPUs."""
    s = lone(prompt, output)
    del s["disaggregation"]
    s["fleet"] = {"gpu": "h100-sxm", "tp": tp, "replicas": 1}
    return s


def closed_form_transfer_s(prompt: int) -> float:
    # Each decode rank holds 8/4 = 2 KV heads; the 2 prefill ranks send the decode replica's
    # whole KV between them: the senders are the busier side.
    per_decode_rank = prompt * KV_BYTES_PER_TOKEN / DECODE_TP
    per_sender = prompt * KV_BYTES_PER_TOKEN / PREFILL_TP
    return LATENCY_S + max(per_decode_rank, per_sender) / BANDWIDTH


def test_transfer_of_a_lone_request_is_the_closed_form():
    r = simulate(lone(prompt=1000)).requests.iloc[0]
    assert r["transfer_s"] == pytest.approx(closed_form_transfer_s(1000), rel=1e-9)
    assert r["transfer_bytes"] == pytest.approx(1000 * KV_BYTES_PER_TOKEN, rel=1e-12)
    # Nothing else waits on a decode replica: the hand-off is the transfer.
    assert r["handoff_s"] == pytest.approx(r["transfer_s"], rel=1e-9)


def test_layer_pipelined_transfer_exposes_one_layer_after_a_longer_prefill():
    res = simulate(lone(prompt=1000, pipelined=True))
    r = res.requests.iloc[0]
    wire_s = closed_form_transfer_s(1000) - LATENCY_S
    prefill_s = r["first_token_s"] - r["scheduled_s"]
    assert prefill_s > wire_s  # the prefill outlasts the transfer: only the last layer's share is left
    assert r["transfer_s"] == pytest.approx(LATENCY_S + wire_s / LAYERS, rel=1e-9)


def test_ttft_is_the_prefill_pools_and_tpot_the_decode_pools():
    pd_row = simulate(lone(prompt=1000, output=16)).requests.iloc[0]
    on_prefill_gpus = simulate(aggregated(PREFILL_TP)).requests.iloc[0]
    on_decode_gpus = simulate(aggregated(DECODE_TP)).requests.iloc[0]
    # The first token comes from the prefill replica: no transfer in the TTFT.
    assert pd_row["ttft_s"] == pytest.approx(on_prefill_gpus["ttft_s"], rel=1e-9)
    # After the hand-off, 15 steps on the decode replica (the first over the prefill's token).
    decode_span = pd_row["finish_s"] - pd_row["first_token_s"] - pd_row["handoff_s"]
    assert decode_span == pytest.approx(on_decode_gpus["finish_s"] - on_decode_gpus["first_token_s"], rel=0.02)
    assert pd_row["tpot_s"] == pytest.approx((decode_span + pd_row["handoff_s"]) / 15, rel=1e-9)


def test_ttft_at_handoff_counts_the_transfer_and_tpot_leaves_it_out():
    s = lone(prompt=1000, output=16)
    s["disaggregation"]["ttft_at"] = "handoff"
    r = simulate(s).requests.iloc[0]
    on_prefill_gpus = simulate(aggregated(PREFILL_TP)).requests.iloc[0]
    assert r["ttft_s"] == pytest.approx(on_prefill_gpus["ttft_s"] + closed_form_transfer_s(1000), rel=1e-9)
    assert r["prefill_end_s"] == pytest.approx(on_prefill_gpus["first_token_s"], rel=1e-9)
    on_decode_gpus = simulate(aggregated(DECODE_TP)).requests.iloc[0]
    assert r["tpot_s"] == pytest.approx(on_decode_gpus["tpot_s"], rel=0.02)


def test_transfers_of_one_prefill_replica_queue_on_its_nics():
    rows = simulate(lone(prompt=1000, requests=2)).requests
    # Both prompts are prefilled in one iteration; the second transfer waits for the first.
    assert rows["first_token_s"].nunique() == 1
    t = closed_form_transfer_s(1000)
    assert sorted(rows["transfer_s"]) == pytest.approx([t, 2 * t], rel=1e-9)


def test_both_pools_gpus_are_counted_in_power_and_cost():
    s = lone()
    pd_summary = simulate(s).summary
    gpus = 1 * PREFILL_TP + 1 * DECODE_TP
    assert pd_summary["fleet"]["gpus"] == gpus
    assert pd_summary["cost"]["usd_per_hour"] == pytest.approx(2.0 * gpus, rel=1e-9)
    block = pd_summary["disaggregation"]
    assert (block["prefill"]["gpus"], block["decode"]["gpus"]) == (PREFILL_TP, DECODE_TP)
    assert block["transfers"] == 1


def test_pools_of_two_gpu_types_each_run_and_are_priced_as_their_own(tmp_path):
    # Splitwise-style: prompts on H100s, tokens on A100s.
    from fleetsim.catalog import load_gpu

    def write(data, name):
        (tmp_path / name).write_text(yaml.safe_dump(data))
        return tmp_path / name

    s = lone(prompt=1000, output=16)
    s["disaggregation"]["decode"]["gpu"] = "a100-80gb"
    del s["cost"]["rental_usd_per_gpu_hour"]  # H100 at its catalog price; the A100 has none
    out = fleetsim_cli("run", write(s, "unpriced.yaml"))
    assert out.returncode == 2 and "disaggregation.decode.rental_usd_per_gpu_hour" in out.stderr
    s["disaggregation"]["decode"]["rental_usd_per_gpu_hour"] = 1.5
    res = simulate(s)
    row = res.requests.iloc[0]
    on_h100 = simulate(aggregated(PREFILL_TP)).requests.iloc[0]
    on_a100 = aggregated(DECODE_TP)
    on_a100["fleet"]["gpu"] = "a100-80gb"
    on_a100_row = simulate(on_a100).requests.iloc[0]
    assert row["ttft_s"] == pytest.approx(on_h100["ttft_s"], rel=1e-9)
    decode_span = row["finish_s"] - row["prefill_end_s"] - row["handoff_s"]
    assert decode_span == pytest.approx(on_a100_row["finish_s"] - on_a100_row["first_token_s"], rel=0.02)
    usd = PREFILL_TP * load_gpu("h100-sxm").rental_usd_per_gpu_hour + DECODE_TP * 1.5
    assert res.summary["cost"]["usd_per_hour"] == pytest.approx(usd, rel=1e-9)
    assert res.summary["fleet"]["gpu"] == "h100-sxm+a100-80gb"
    assert sorted(res.replicas["gpu"]) == ["a100-80gb", "h100-sxm"]


def short_shipped(**run) -> dict:
    s = yaml.safe_load(SHIPPED.read_text())
    s["run"].update({"duration_s": 15, **run})
    return s


def test_shipped_scenario_conserves_requests_and_is_deterministic():
    s = short_shipped(drain=False)
    a = simulate(copy.deepcopy(s))
    n = a.summary["requests"]
    assert n["arrived"] == n["completed"] + n["rejected"] + n["in_flight"]
    assert n["completed"] > 0
    assert a.summary == simulate(copy.deepcopy(s)).summary
    reqs = a.requests
    done = reqs[reqs["status"] == "completed"]
    assert (done["prefill_replica"] >= 0).all() and (done["decode_replica"] >= 0).all()
    assert (done["transfer_s"] > 0).all() and (done["handoff_s"] >= done["transfer_s"] - 1e-12).all()


def fleetsim_cli(*args):
    return subprocess.run(
        [sys.executable, "-c", "from fleetsim.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        # 70B in bf16 is ~141 GB: one 80 GB H100 cannot hold the weights, let alone a sequence.
        (lambda s: s["disaggregation"]["decode"].update(tp=1), "disaggregation.decode"),
        # At tp 2 the weights fit but ~4 GB of KV per GPU is less than one 32k-token sequence.
        (
            lambda s: (s["disaggregation"]["decode"].update(tp=2), s.update(scheduler={"max_model_len": 32768})),
            "cannot hold one sequence",
        ),
        (lambda s: s["disaggregation"].update(link={"name": "warp-drive"}), "disaggregation.link.name"),
        # 8 KV heads and 64 query heads: tp 3 divides neither.
        (lambda s: s["disaggregation"]["prefill"].update(tp=3), "disaggregation.prefill"),
        (lambda s: s.update(fleet={"tp": 4}), "fleet.tp"),
        (lambda s: s.update(fleet={"gpu": "a100-80gb"}), "fleet.gpu"),
    ],
)
def test_bad_topology_is_one_line_and_exit_2(tmp_path, change, field):
    s = lone()
    change(s)
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(s))
    out = fleetsim_cli("run", p)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], out.stderr


# DeepSeek-V3 (config.json): 61 layers, one MLA latent of kv_lora_rank 512 + rope 64 per token and
# layer; bf16. With DP attention a request's latent lives on one GPU of each replica.
MLA_BYTES_PER_TOKEN = 61 * (512 + 64) * BF16_BYTES  # 70,272


def dp_attention(requests: int) -> dict:
    s = lone(prompt=1000, output=4, requests=requests)
    s.update(model="deepseek-v3", weight_dtype="fp8", fleet={"ep": 8, "dp_attention": True})
    for role in ("prefill", "decode"):  # 671 GB of fp8 weights: 8 H200s hold them, 8 H100s do not
        s["disaggregation"][role].update(gpu="h200", tp=8)
    return s


def test_with_dp_attention_one_rank_sends_and_each_rank_has_its_own_nic():
    rows = simulate(dp_attention(requests=2)).requests
    t = LATENCY_S + 1000 * MLA_BYTES_PER_TOKEN / BANDWIDTH
    assert rows["first_token_s"].nunique() == 1
    # Two requests prefilled together go out over two ranks' NICs at once: no queueing.
    assert list(rows["transfer_s"]) == pytest.approx([t, t], rel=1e-9)


def test_the_disaggregated_validation_case_is_a_pd_scenario():
    from fleetsim.scenario import scenario_from_dict
    from fleetsim.validation import load_cases, shipped_case_files
    from fleetsim.validation.runner import scenario_data

    path = next(f for f in shipped_case_files() if f.name == "disaggregated.yaml")
    cases = {c.status: c for c in load_cases(path)}
    assert {c.group for c in cases.values()} == {"disaggregated"}
    case = cases["ok"]
    assert case.split == "holdout"
    data, _ = scenario_data(case, path.parent)
    spec = scenario_from_dict(data)
    assert spec.disaggregation is not None and spec.disaggregation.prefill.tp == 32
    # SGLang's 16,384 tokens per device over the 32-GPU prefill instance.
    assert spec.scheduler.max_batched_tokens == 16_384 * 32


def test_prompts_wait_for_transfers_to_free_prefill_memory_and_none_is_rejected():
    # ~2.4 GB of KV per GPU on the prefill replica: three 4,000-token prompts; a 0.2 GB/s link
    # holds each prompt's KV there for seconds. Arrivals wait for memory rather than being refused.
    s = lone(prompt=4000, output=50)
    s["workload"]["arrival"] = {"kind": "poisson", "rate_per_s": 1.0}
    s["run"] = {"seed": 2, "duration_s": 20}
    s["disaggregation"]["link"] = {"bandwidth_bytes_per_s": 2e8, "latency_s": 1e-4, "efficiency": 1.0}
    s["fleet"] = {"gpu_memory_utilization": 0.88}
    res = simulate(s)
    n = res.summary["requests"]
    assert n["rejected"] == 0 and n["completed"] == n["arrived"] > 10
    req = res.requests
    t = 1e-4 + 4000 * KV_BYTES_PER_TOKEN / PREFILL_TP / 2e8  # 3.3 s each
    ends = sorted(req["first_token_s"] + req["transfer_s"])
    assert min(b - a for a, b in zip(ends, ends[1:])) >= t * (1 - 1e-9)  # one replica's NICs: one at a time
    # The energy meter of the time series ends at the replicas' total (idle while blocked included).
    assert res.timeseries["gpu_energy_j"].iloc[-1] == pytest.approx(res.replicas["energy_j"].sum(), rel=1e-9)


def test_cli_run_prints_the_pools_and_the_transfer(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(lone()))
    out = fleetsim_cli("run", p)
    assert out.returncode == 0, out.stderr
    assert "(1 prefill x tp2 + 1 decode x tp4)" in out.stdout
    assert "P/D over custom" in out.stdout and "KV transfer 327.7 MB per request" in out.stdout
