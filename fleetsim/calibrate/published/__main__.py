"""Regenerate every shipped profile from the fit split of the shipped validation cases.

python -m fleetsim.calibrate.published [--out fleetsim/profiles] [--report calibration/PUBLISHED.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fleetsim.calibrate.published.fit import Fit, fit_cases
from fleetsim.calibrate.published.params import priors
from fleetsim.calibrate.published.write import write_all

HERE = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fit the shipped GPU and engine profiles to published figures.")
    ap.add_argument("--out", type=Path, default=HERE / "profiles", help="profiles folder (gpus/, engines/)")
    ap.add_argument("--report", type=Path, default=None, help="write the fit report (Markdown) here")
    ap.add_argument("--max-evaluations", type=int, default=400, help="least-squares function evaluations")
    args = ap.parse_args(argv)
    pri = priors()
    t0 = time.perf_counter()
    write_all(args.out, pri, None)  # prior profiles first: every case's engine and GPU must resolve
    cases = fit_cases()
    fit = Fit(cases, pri)
    print(f"fitting {len(fit.vec.params)} parameters to {len(cases)} published figures", file=sys.stderr)
    result = fit.run(max_nfev=args.max_evaluations)
    written = write_all(args.out, pri, result, report=args.report)
    print(
        f"wrote {len(written)} profiles in {time.perf_counter() - t0:.0f} s (cost {result.cost:.1f}, "
        f"{result.nfev} evaluations)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
