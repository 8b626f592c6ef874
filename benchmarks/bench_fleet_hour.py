"""One simulated hour of a 1,024-GPU Llama 3 8B H100 fleet at ~65% load, in pods over both cores.

Issue 12's acceptance: it finishes on the project's 2-core machine in under 30 minutes. The fleet
is scenarios/h100_llama3.yaml at 1,024 replicas (tp 1) behind `--pods` gateways, one pod per
process (`--workers`, default one per CPU), Poisson arrivals at 65% of the fleet's saturated rate
(16.75 requests/s per replica on this traffic, as benchmarks/bench_simulator.py measured), for
`--duration-s` simulated seconds. Prints requests, wall and CPU seconds (this process and the pod
workers), simulated requests per CPU-second, the ratio to bare SimPy measured in the same process,
peak RSS of the parent (and its growth per request over the run) and of the largest worker, the
request table's own size, and the run's headline figures.

    .venv/bin/python benchmarks/bench_fleet_hour.py [--replicas 1024] [--pods 2] [--duration-s 3600]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from bench_simulator import PER_REPLICA_RATE_PER_S, bare_simpy_events_per_cpu_s

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=1024)
    ap.add_argument("--pods", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None, help="pod processes (default: one per CPU)")
    ap.add_argument("--duration-s", type=float, default=3600.0, help="simulated seconds of arrivals")
    args = ap.parse_args()

    import fleetsim

    bare = bare_simpy_events_per_cpu_s()
    overrides = {
        "fleet.replicas": args.replicas,
        "fleet.pods": args.pods,
        "workload.arrival.rate_per_s": PER_REPLICA_RATE_PER_S * args.replicas,
        "run.duration_s": args.duration_s,
        "run.max_requests": None,
    }
    import fleetsim.sim.pods  # noqa: F401 - imported before the baseline, so the growth is the run's

    rss0_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # imports and the bare SimPy loop
    w0, c0 = time.perf_counter(), time.process_time()
    r = fleetsim.simulate(ROOT / "scenarios" / "h100_llama3.yaml", overrides, workers=args.workers)
    wall_s, cpu_self_s = time.perf_counter() - w0, time.process_time() - c0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = cpu_self_s + kids.ru_utime + kids.ru_stime
    s = r.summary
    n = s["requests"]["arrived"]
    print(f"fleet: {args.replicas:,} x H100 (Llama 3 8B), {args.pods} pods, {args.duration_s:,.0f} s of arrivals")
    print(f"requests           {n:,} arrived, {s['requests']['completed']:,} completed")
    print(f"wall               {wall_s:,.0f} s ({wall_s / 60:.1f} min)")
    print(
        f"CPU                {cpu_s:,.0f} s (this process {cpu_self_s:,.0f} s, pod workers {cpu_s - cpu_self_s:,.0f} s)"
    )
    print(f"req per CPU-second {n / cpu_s:,.0f}   bare SimPy {bare:,.0f} events/CPU-s   ratio {n / cpu_s / bare:.3f}")
    parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak RSS           parent {parent_mb:,.0f} MB ({(parent_mb - rss0_mb) * 2**20 / n:,.0f} B/request above "
        f"the {rss0_mb:,.0f} MB before the run), largest pod worker {kids.ru_maxrss / 1024:,.0f} MB"
    )
    table_b = r.requests.memory_usage(index=True, deep=True).sum()
    print(f"request table      {table_b / 2**20:,.0f} MB ({table_b / n:,.0f} B/request)")
    lat = s["latency_s"]
    print(
        f"TTFT p50/p99       {lat['ttft']['p50']:.3f} / {lat['ttft']['p99']:.3f} s;  "
        f"TPOT p50 {lat['tpot']['p50'] * 1e3:.1f} ms;  mean running {s['concurrency']['mean_running']:,.0f}"
    )
    if args.duration_s >= 3600:
        print(f"target: one simulated hour under 30 min wall on 2 cores: {'met' if wall_s < 1800 else 'NOT met'}")
    else:  # a shorter run: the hour by proportion (arrivals and work scale with the period; the drain does not)
        hour_min = wall_s * 3600 / args.duration_s / 60
        print(f"one simulated hour, in proportion: ~{hour_min:.0f} min wall (not run; target 30 min)")


if __name__ == "__main__":
    main()
