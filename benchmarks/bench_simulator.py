"""Simulator speed and memory: 1,000,000 requests on 16 llama-3-8b h100-sxm replicas at ~70% load.

Capacity of this fleet on the h100_llama3 traffic is ~268 requests/s (measured by overloading it:
completions saturate there), so 190 requests/s is ~70%. Prints simulated requests per wall-clock
second (one core) and the process's peak resident memory.

    .venv/bin/python benchmarks/bench_simulator.py [--requests N] [--rate R]
"""

import argparse
import resource
import sys
import time
from pathlib import Path

import fleetsim

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=190.0)
    ap.add_argument("--replicas", type=int, default=16)
    args = ap.parse_args()
    t0 = time.perf_counter()
    result = fleetsim.simulate(
        ROOT / "scenarios" / "h100_llama3.yaml",
        {
            "fleet.replicas": args.replicas,
            "workload.arrival.rate_per_s": args.rate,
            "run.duration_s": None,
            "run.max_requests": args.requests,
        },
    )
    wall_s = time.perf_counter() - t0
    s = result.summary
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(
        f"requests: {s['requests']['arrived']:,} simulated in {wall_s:.1f} s wall ({s['simulated_s']:,.0f} s simulated)"
    )
    print(f"speed: {s['requests']['arrived'] / wall_s:,.0f} simulated requests per wall-clock second (one core)")
    print(f"peak memory: {peak_mb:,.0f} MB (max resident set)")
    print(
        f"load: mean running {s['concurrency']['mean_running']:.0f}, "
        f"p99 TTFT {s['latency_s']['ttft']['p99']:.3f} s, p99 TPOT {s['latency_s']['tpot']['p99']:.4f} s, "
        f"KV utilization {s['kv_cache']['mean_utilization']:.1%}"
    )
    target_ok = s["requests"]["arrived"] / wall_s >= 20_000 and peak_mb < 2048
    print(f"target (>= 20,000 req/s, < 2 GB): {'met' if target_ok else 'NOT met'}")
    sys.exit(0)


if __name__ == "__main__":
    main()
