"""Diagnosis of issue 10's B200 large-batch miss (calibration/research/b200_large_batch.md): the
numbers of that note, from the shipped ML.ENERGY validation cases and the published figures.

    PYTHONPATH=. python calibration/research/b200_large_batch.py

Two tables, each row one ML.ENERGY vLLM 0.11 configuration:
1. the batch fleetsim's run reaches in the case's window (60-240 s) against the published
   avg_batch_size (vllm:num_requests_running averaged over the benchmark's steady state);
2. fleetsim's decode-only step at the published batch (no prefill in it) against the published
   median ITL and the published mean step (avg_batch_size / output tokens per s), with its host
   and GPU parts.
With --protocol, a third table replays the benchmark's own protocol (the 1,024-request list sent
k times concatenated, all at t = 0, repeats sharing a session id under the block prefix cache,
steady state from the B-th first token to the (N-B-1)-th completion, median ITL over every token).
Nothing here changes the model; a row takes a few seconds (table 1 simulates 240 s).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from fleetsim.sim.engine import Engine
from fleetsim.simulation import build
from fleetsim.validation.cases import load_cases
from fleetsim.validation.runner import build_case, scenario_data

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "fleetsim" / "validation" / "cases"
FIGURES = ROOT.parent / "shared" / "reference"
# (case id stem, figure id): the 70B rows of issue 10 and the 8B rows that share the engine.
ROWS = [
    ("mlenergy-70b-3.1-b200-tp2-bs512", "mlenergy_llama_3_1_70b_instruct_b200_tp2_bs512"),
    ("mlenergy-70b-3.1-b200-tp2-bs1024", "mlenergy_llama_3_1_70b_instruct_b200_tp2_bs1024"),
    ("mlenergy-70b-3.1-b200-tp2-bs1536", "mlenergy_llama_3_1_70b_instruct_b200_tp2_bs1536"),
    ("mlenergy-70b-3.1-b200-tp2-bs2048", "mlenergy_llama_3_1_70b_instruct_b200_tp2_bs2048"),
    ("mlenergy-70b-3.1-h100-sxm-tp4-bs512", "mlenergy_llama_3_1_70b_instruct_h100_tp4_bs512"),
    ("mlenergy-70b-3.1-h100-sxm-tp4-bs1024", "mlenergy_llama_3_1_70b_instruct_h100_tp4_bs1024"),
    ("mlenergy-b200-bs512", "mlenergy_llama_3_1_8b_instruct_b200_tp1_bs512"),
    ("mlenergy-b200-bs1024", "mlenergy_llama_3_1_8b_instruct_b200_tp1_bs1024"),
    ("mlenergy-b200-bs2048", "mlenergy_llama_3_1_8b_instruct_b200_tp1_bs2048"),
]
# Context (prompt + generated) of a running sequence the decode step is read at: the case's
# prompt mean plus the size-biased mean of the generated part (mean x (1 + CV^2) / 2, CV 1).
CONTEXT_TOKENS = 986


def published() -> dict[str, dict]:
    out = {}
    for name in ("calibration_figures.yaml", "public_figures.yaml"):
        data = yaml.safe_load((FIGURES / name).read_text())
        entries = data["entries"] if isinstance(data, dict) and "entries" in data else data
        for e in entries if isinstance(entries, list) else []:
            if isinstance(e, dict) and str(e.get("id", "")).startswith("mlenergy_"):
                out[e["id"]] = e
    return out


def engine_of(stem: str, duration_s: float) -> Engine:
    path = CASES / ("mlenergy-70b.yaml" if "70b" in stem else "mlenergy-8b.yaml")
    case = {c.id: c for c in load_cases(path)}[f"{stem}-tps"]
    data, base = scenario_data(case, path.parent)
    data["run"]["duration_s"] = duration_s
    data["run"]["drain"] = False
    spec = build_case(data, base, case.id)
    arch, gpu, profile, engine_profile, plan = build(spec)
    return Engine(spec, arch, gpu, profile, plan, engine_profile)


def reached_batch(stem: str, fig: dict) -> str:
    engine = engine_of(stem, 240.0)
    raw = engine.run()
    ts = raw.timeseries
    window = ts[(ts.time_s >= 60) & (ts.time_s <= 240)]
    tokens = np.interp([60.0, 240.0], ts.time_s, ts.output_tokens)
    rep = raw.replicas
    pub_tps = fig["related_measurements"]["output_throughput_tokens_per_s"]
    return (
        f"{stem:38s} running {window.running.mean():6.0f} (published {fig['conditions']['avg_batch_size']:6.1f})  "
        f"kv used {window.kv_used_fraction.mean():.3f}  preemptions {int(rep.preemptions.sum()):5d}  "
        f"prefill share of busy time {float(rep.prefill_s.sum() / rep.busy_s.sum()):.2f}  "
        f"tokens/s {(tokens[1] - tokens[0]) / 180.0:7.0f} (published {pub_tps:7.1f})"
    )


def step_at_published_batch(stem: str, fig: dict) -> str:
    engine = engine_of(stem, 60.0)
    n = int(round(fig["conditions"]["avg_batch_size"]))
    rel = fig["related_measurements"]
    mean_step_ms = 1e3 * fig["conditions"]["avg_batch_size"] / rel["output_throughput_tokens_per_s"]
    terms = engine.step_model.breakdown(n, n * engine.footprint.bytes_per_rank(CONTEXT_TOKENS, 0))
    gpu_ms = 1e3 * sum(terms[k] for k in ("dense_s", "attention_decode_s", "kv_write_s", "comm_s", "layer_fixed_s"))
    step_ms = 1e3 * terms["time_s"]
    return (
        f"{stem:38s} n {n:5d}  host {1e3 * terms['host_s']:6.1f}  gpu {gpu_ms:6.1f}  step {step_ms:6.1f} ms  "
        f"published median ITL {rel['median_itl_ms']:6.1f} ({100 * (step_ms / rel['median_itl_ms'] - 1):+4.0f}%)  "
        f"mean step {mean_step_ms:6.1f} ({100 * (step_ms / mean_step_ms - 1):+4.0f}%)"
    )


# num_request_repeats of each replayed configuration (calibration/conditions.yaml).
PROTOCOL_ROWS = [
    ("mlenergy-70b-3.1-b200-tp2-bs512", 2),
    ("mlenergy-70b-3.1-b200-tp2-bs1024", 2),
    ("mlenergy-70b-3.1-b200-tp2-bs1536", 3),
    ("mlenergy-70b-3.1-b200-tp2-bs2048", 3),
    ("mlenergy-70b-3.1-h100-sxm-tp4-bs1024", 2),
]
UNIQUE_PROMPTS = 1024


def _lengths(rng: np.random.Generator, dist: dict, n: int) -> np.ndarray:
    mu = np.log(dist["mean_tokens"]) - dist["sigma"] ** 2 / 2  # lognormal with the case's mean
    return np.clip(np.rint(rng.lognormal(mu, dist["sigma"], n)), dist.get("min_tokens", 1), dist["max_tokens"]).astype(
        int
    )


def protocol_replay(stem: str, repeats: int, folder: Path) -> str:
    path = CASES / ("mlenergy-70b.yaml" if "70b" in stem else "mlenergy-8b.yaml")
    case = {c.id: c for c in load_cases(path)}[f"{stem}-itl"]
    data, base = scenario_data(case, path.parent)
    batch = data["scheduler"]["max_running_seqs"]
    cls = data["workload"]["classes"][0]
    rng = np.random.default_rng(0)
    prompts = _lengths(rng, cls["input_tokens"], UNIQUE_PROMPTS)
    outputs = _lengths(rng, cls["output_tokens"], UNIQUE_PROMPTS * repeats)
    trace = folder / f"{stem}.csv"
    rows = [
        f"0,{prompts[i]},{outputs[k * UNIQUE_PROMPTS + i]},{i},{k}"
        for k in range(repeats)
        for i in range(UNIQUE_PROMPTS)
    ]
    trace.write_text("arrival_s,input_tokens,output_tokens,session_id,turn\n" + "\n".join(rows) + "\n")
    data["workload"] = {"arrival": {"kind": "trace", "path": str(trace)}, "classes": [{"name": "request"}]}
    data["kv_cache"]["prefix_cache"] = "blocks"
    data["run"]["duration_s"] = 7200.0
    spec = build_case(data, base, case.id)
    arch, gpu, profile, engine_profile, plan = build(spec)
    raw = Engine(spec, arch, gpu, profile, plan, engine_profile).run()
    req, ts = raw.requests, raw.timeseries
    n = len(req)
    start = float(np.sort(req["first_token_s"].to_numpy(float))[batch - 1])
    end = float(np.sort(req["finish_s"].to_numpy(float))[n - batch - 2])
    done = req[req["tpot_s"].notna()]
    tpot, weight = done["tpot_s"].to_numpy(float), (done["output_tokens"].to_numpy(float) - 1).clip(0)
    order = np.argsort(tpot)
    cum = np.cumsum(weight[order])
    itl_ms = 1e3 * float(tpot[order][np.searchsorted(cum, cum[-1] / 2)])  # median over tokens
    head = f"{stem:38s} window {start:6.1f}-{end:6.1f} s  median ITL {itl_ms:6.1f} ms  preemptions {int(raw.replicas.preemptions.sum()):5d}"
    if end <= start:
        return head + "  (the steady state never opens)"
    window = ts[(ts.time_s >= start) & (ts.time_s <= end)]
    tokens = np.interp([start, end], ts.time_s, ts.output_tokens)
    return head + f"  running {window.running.mean():6.0f}  tokens/s {(tokens[1] - tokens[0]) / (end - start):7.0f}"


def main() -> None:
    figs = published()
    print("1. batch reached in the case window (60-240 s) vs published avg_batch_size")
    for stem, fig_id in ROWS:
        print(reached_batch(stem, figs[fig_id]))
    print(f"\n2. decode-only step at the published batch (context {CONTEXT_TOKENS} tokens), ms")
    for stem, fig_id in ROWS:
        print(step_at_published_batch(stem, figs[fig_id]))
    if "--protocol" in sys.argv[1:]:
        print("\n3. the benchmark's protocol replayed")
        with tempfile.TemporaryDirectory() as folder:
            for stem, repeats in PROTOCOL_ROWS:
                print(protocol_replay(stem, repeats, Path(folder)))


if __name__ == "__main__":
    main()
