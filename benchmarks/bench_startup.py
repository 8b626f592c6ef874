"""Start-up overhead of `fleetsim run` on a small scenario: the CPU seconds of the whole command
beyond the simulation's event loop (imports, scenario and catalog, memory plan, summary, output).

Each repeat runs `python -m fleetsim run SCENARIO --json` in a fresh child process through a
wrapper that records simulate()'s own stage times (SimulationResult.cpu_s) and the process CPU
at exit, so the overhead is measured on the real command, not on a copy of it. The median over
the repeats is printed (the machine is shared: CPU seconds, not wall). The module import cost
alone is given beside it, and the ten slowest imports (python -X importtime) of one run.

    .venv/bin/python benchmarks/bench_startup.py [--repeats 5] [--scenario PATH] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_OVERHEAD_S = 0.5  # issue 12

CHILD = """
import json, os, resource, sys, time
t0 = time.process_time()
import fleetsim.cli
import fleetsim.simulation as sim
imported_s = time.process_time() - t0
stages = {}
plain = sim.simulate
def timed(*a, **k):
    r = plain(*a, **k)
    stages.update(r.cpu_s)
    return r
sim.simulate = timed
import fleetsim.cli.simulation as cli_sim
if hasattr(cli_sim, "simulate"):
    cli_sim.simulate = timed
sys.argv = ["fleetsim", "run", *json.loads(os.environ["BENCH_ARGS"])]
out = sys.stdout
sys.stdout = open(os.devnull, "w")
try:
    fleetsim.cli.main()
except SystemExit:
    pass
ru = resource.getrusage(resource.RUSAGE_SELF)
out.write(json.dumps({"total_s": ru.ru_utime + ru.ru_stime, "imported_s": imported_s, **stages}) + "\\n")
"""


def one(args: list[str]) -> dict:
    env = {"BENCH_ARGS": json.dumps(args), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0 or not out.stdout.strip():
        sys.exit(f"fleetsim run failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def slowest_imports(args: list[str], n: int = 10) -> list[tuple[float, str]]:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-X", "importtime", "-m", "fleetsim", "run", *args]
    err = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT).stderr
    rows = []
    for line in err.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        depth = (len(parts[2]) - len(parts[2].lstrip()) - 1) // 2  # two spaces a level
        if depth <= 1:
            rows.append((int(parts[1]) / 1e6, parts[2].strip()))
    return sorted(rows, reverse=True)[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "h100_llama3.yaml"))
    ap.add_argument("--set", action="append", default=None, help="override (default run.duration_s=5)")
    a = ap.parse_args()
    sets = a.set if a.set is not None else ["run.duration_s=5"]
    args = [a.scenario, "--json", *[x for s in sets for x in ("--set", s)]]
    runs = [one(args) for _ in range(a.repeats)]
    med = {k: statistics.median(r[k] for r in runs) for k in ("total_s", "imported_s", "build_s", "run_s", "summary_s")}
    overhead = statistics.median(r["total_s"] - r["run_s"] for r in runs)
    print(f"fleetsim run {' '.join(args[:1] + args[2:])}: median of {a.repeats} fresh processes, CPU s")
    print(
        f"  whole command {med['total_s']:.2f}  event loop {med['run_s']:.2f}  overhead {overhead:.2f} "
        f"(imports {med['imported_s']:.2f}, build {med['build_s']:.2f}, summary {med['summary_s']:.2f})"
    )
    print(f"  target overhead < {TARGET_OVERHEAD_S} s: {'met' if overhead < TARGET_OVERHEAD_S else 'NOT met'}")
    print("  slowest top-level imports of one run (cumulative wall s, python -X importtime):")
    for s, name in slowest_imports(args):
        print(f"    {s:6.3f}  {name}")


if __name__ == "__main__":
    main()
