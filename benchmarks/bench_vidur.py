"""Vidur's own request list replayed in fleetsim, beside Vidur's figures for the same list.

The list (shared/peers/workloads/splitwise_conv_poisson0.75_n10000_seed42.csv, beside this
repository) is read in place; the configuration Vidur simulated it with (Llama-3-70B, A100-80GB,
TP 2, one replica, vLLM scheduler, batch cap 128, 4,096 tokens per iteration) is
benchmarks/vidur_splitwise.yaml. Vidur's figures are those given with the list
(shared/peers/README.md), measured on the same kind of 2-core machine.

    .venv/bin/python benchmarks/bench_vidur.py
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRACE = HERE.parents[1] / "shared" / "peers" / "workloads" / "splitwise_conv_poisson0.75_n10000_seed42.csv"
VIDUR = {  # shared/peers/README.md
    "simulation_s": 53.0,
    "process_s": 71.8,
    "peak_memory_gb": 1.64,
    "ttft_p50_s": 0.46,
    "ttft_p99_s": 2.77,
    "tpot_p50_s": 0.092,
    "output_tokens_per_s": 166.6,
}


def main() -> None:
    c_start = time.process_time()
    import fleetsim

    result = fleetsim.simulate(HERE / "vidur_splitwise.yaml", {"workload.arrival.path": str(TRACE)})
    process_cpu_s = time.process_time() - c_start
    sim_cpu_s = result.cpu_s["run_s"]
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    s = result.summary
    lat = s["latency_s"]
    ours = {
        "simulation_s": sim_cpu_s,
        "process_s": process_cpu_s,
        "peak_memory_gb": peak_gb,
        "ttft_p50_s": lat["ttft"]["p50"],
        "ttft_p99_s": lat["ttft"]["p99"],
        "tpot_p50_s": lat["tpot"]["p50"],
        "output_tokens_per_s": s["throughput"]["whole_run_output_tokens_per_s"],
    }
    print(
        f"{s['requests']['completed']:,} of {s['requests']['arrived']:,} requests completed; {s['simulated_s']:,.0f} s simulated"
    )
    print(
        f"CPU s: simulation {sim_cpu_s:.2f}, build {result.cpu_s['build_s']:.2f}, summary {result.cpu_s['summary_s']:.2f}"
    )
    print(f"{'':24} {'fleetsim':>10} {'Vidur':>10}")
    labels = {
        "simulation_s": "simulation CPU s",
        "process_s": "whole process CPU s",
        "peak_memory_gb": "peak memory GB",
        "ttft_p50_s": "TTFT p50 s",
        "ttft_p99_s": "TTFT p99 s",
        "tpot_p50_s": "TPOT p50 s",
        "output_tokens_per_s": "output tokens/s",
    }
    for key, label in labels.items():
        print(f"{label:24} {ours[key]:>10.3f} {VIDUR[key]:>10.3f}")
    print(f"simulation speed: {VIDUR['simulation_s'] / sim_cpu_s:,.0f}x Vidur's")


if __name__ == "__main__":
    main()
