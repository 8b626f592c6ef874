"""Simulator speed and memory at 16, 128 and 1,024 replicas (Llama 3 8B on H100 SXM, ~65% load).

The machine this runs on is shared and its speed varies, so speed is also given as a ratio to bare
SimPy measured in the same process just before the simulation: 50 processes x 4,000
env.timeout(1) (200,000 events), in events per CPU-second. Each fleet size runs in a fresh child
process, so its peak resident memory is its own; bytes per request = (peak RSS - RSS before the
simulation) / requests.

Load: 16 replicas of this fleet saturate at ~268 requests/s on the h100_llama3 traffic (measured
by overloading it: completions level off there), ~16.75 requests/s per replica; 65% is 10.9/s
per replica.

    .venv/bin/python benchmarks/bench_simulator.py [--sizes 16,128,1024] [--requests N ...]

Memory at scale: one fleet size at several request counts prints the peak-RSS slope per request
and 10M requests from it (or measured, given 10,000,000):

    .venv/bin/python benchmarks/bench_simulator.py --sizes 16,16 --requests 1000000,3000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PER_REPLICA_RATE_PER_S = 0.65 * 16.75
TARGETS = {16: 0.06, 1024: 0.05}  # issue 12: ratio to bare SimPy
TARGET_BYTES_PER_REQUEST = 150
TEN_MILLION = 10_000_000


def bare_simpy_events_per_cpu_s(processes: int = 50, timeouts: int = 4000) -> float:
    import simpy

    env = simpy.Environment()

    def proc():
        for _ in range(timeouts):
            yield env.timeout(1)

    for _ in range(processes):
        env.process(proc())
    t0 = time.process_time()
    env.run()
    return processes * timeouts / (time.process_time() - t0)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def one(replicas: int, requests: int, pods: int) -> dict:
    """Child: bare SimPy, then the simulation; one JSON line on stdout."""
    import fleetsim

    bare = bare_simpy_events_per_cpu_s()
    overrides = {
        "fleet.replicas": replicas,
        "workload.arrival.rate_per_s": PER_REPLICA_RATE_PER_S * replicas,
        "run.duration_s": None,
        "run.max_requests": requests,
    }
    if pods > 1:
        overrides["fleet.pods"] = pods
    import fleetsim.simulation  # noqa: F401  (the modules a run needs, loaded before the baseline RSS)

    rss0 = rss_kib()
    w0, c0 = time.perf_counter(), time.process_time()
    result = fleetsim.simulate(ROOT / "scenarios" / "h100_llama3.yaml", overrides)
    wall_s, cpu_s = time.perf_counter() - w0, time.process_time() - c0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s += children.ru_utime + children.ru_stime  # pod workers, if any
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s = result.summary
    n = s["requests"]["arrived"]
    return {
        "replicas": replicas,
        "requests": n,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "requests_per_cpu_s": n / cpu_s,
        "bare_simpy_events_per_cpu_s": bare,
        "ratio": n / cpu_s / bare,
        "peak_rss_mb": peak_kib / 1024,
        "bytes_per_request": (peak_kib - rss0) * 1024 / n,
        "simulated_s": s["simulated_s"],
        "mean_running": s["concurrency"]["mean_running"],
        "ttft_p99_s": s["latency_s"]["ttft"]["p99"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="16,128,1024", help="replica counts, comma-separated")
    ap.add_argument("--requests", default="200000,200000,200000", help="requests per size, comma-separated")
    ap.add_argument("--pods", type=int, default=1, help="fleet.pods for every size (default 1)")
    ap.add_argument("--one", nargs=2, type=int, metavar=("REPLICAS", "REQUESTS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.pods)))
        return
    sizes = [int(x) for x in args.sizes.split(",")]
    counts = [int(x) for x in args.requests.split(",")]
    counts += [counts[-1]] * (len(sizes) - len(counts))
    print(
        f"{'replicas':>8} {'requests':>10} {'wall s':>8} {'CPU s':>8} {'req/CPU-s':>10} "
        f"{'bare SimPy ev/CPU-s':>19} {'ratio':>6} {'peak RSS MB':>11} {'B/request':>9}"
    )
    rows = []
    for replicas, n in zip(sizes, counts):
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(replicas), str(n), "--pods", str(args.pods)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            sys.exit(f"{replicas} replicas failed:\n{out.stderr[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(
            f"{r['replicas']:>8,} {r['requests']:>10,} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} "
            f"{r['requests_per_cpu_s']:>10,.0f} {r['bare_simpy_events_per_cpu_s']:>19,.0f} {r['ratio']:>6.3f} "
            f"{r['peak_rss_mb']:>11,.0f} {r['bytes_per_request']:>9,.0f}",
            flush=True,
        )
    for r in rows:
        target = TARGETS.get(r["replicas"])
        if target is not None:
            print(
                f"target ratio >= {target} at {r['replicas']:,} replicas: {'met' if r['ratio'] >= target else 'NOT met'}"
            )
    # The same fleet at two or more sizes: the marginal bytes per request (peak RSS slope), which
    # the fixed part (interpreter, modules, catalog) does not dilute, and 10M requests from it.
    by_size: dict[int, list[dict]] = {}
    for r in rows:
        by_size.setdefault(r["replicas"], []).append(r)
    for replicas, rs in by_size.items():
        if len({r["requests"] for r in rs}) < 2:
            continue
        rs = sorted(rs, key=lambda r: r["requests"])
        a, b = rs[0], rs[-1]
        slope = (b["peak_rss_mb"] - a["peak_rss_mb"]) * 1024**2 / (b["requests"] - a["requests"])
        at_10m = b["peak_rss_mb"] + slope * (TEN_MILLION - b["requests"]) / 1024**2
        print(
            f"{replicas:,} replicas, {a['requests']:,} -> {b['requests']:,} requests: {slope:,.0f} B/request "
            f"(peak RSS slope); 10M requests -> {at_10m / 1024:,.2f} GB peak RSS "
            f"({'measured' if b['requests'] >= TEN_MILLION else 'extrapolated'}; target < 2 GB: "
            f"{'met' if at_10m < 2048 else 'NOT met'})"
        )
    worst = max(r["bytes_per_request"] for r in rows)
    print(
        f"target <= {TARGET_BYTES_PER_REQUEST} B/request: {'met' if worst <= TARGET_BYTES_PER_REQUEST else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
