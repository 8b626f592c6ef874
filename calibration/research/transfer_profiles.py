"""Write the transferred GPU profiles of the GPUs named in priors.yaml `gpus.transferred`, from the
SHIPPED profile of each one's source, by the code path `python -m fleetsim.calibrate.published`
uses (params.transferred_values + params.make_gpu_profile + write._dump), without refitting.

The full fit rewrites every profile (and moves existing results); this writes only the GPUs asked
for. The source's fit parameters are read back from its shipped profile (the inverse of
make_gpu_profile for the terms a transfer carries). The shipped figures are rounded to 4
significant digits, so a value may differ from the full fit's in the 4th digit; `--check`
rebuilds the already shipped transferred profiles this way and fails if any number differs by
more than 0.1%, which tests the inversion.

    python calibration/research/transfer_profiles.py gh200 h200-nvl ...   # write these
    python calibration/research/transfer_profiles.py --check              # shipped ones reproduce
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from fleetsim.calibrate.published.params import make_gpu_profile, priors, transfer_notes, transferred_values
from fleetsim.calibrate.published.write import _dump, _sig

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "fleetsim" / "profiles" / "gpus"


def shipped_values(gpu: str) -> dict:
    """The fit parameters a transfer carries, read back from a shipped GPU profile."""
    p = yaml.safe_load((PROFILES / f"{gpu}.yaml").read_text())
    bf16 = p["compute"]["bf16"]["eta_max"]
    values = {
        "compute_bf16": bf16,
        "compute_half_flops": p["compute"]["bf16"]["half_work"],
        "memory_eta": p["memory"]["eta_max"],
        "attention_eta": p["attention"]["prefill_eta"],
        "kv_fp8": p["attention"]["kv_read_efficiency"]["fp8"],
        "host_time_scale": p.get("host_time_scale", 1.0),
        **{k: p["power"][k] for k in ("idle_w", "compute_w", "memory_w")},
    }
    for d in ("fp8", "fp4"):
        if d in p["compute"]:
            values[f"{d}_over_bf16"] = p["compute"][d]["eta_max"] / bf16
    return values


def _close(a, b, rel: float = 1e-3) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rel) for k in a)
    if isinstance(a, float) and isinstance(b, (int, float)):
        return abs(a - b) <= rel * max(abs(a), abs(b))
    return a == b


def build(gpu: str, pri: dict):
    src = pri["gpus"]["transferred"][gpu]
    vals = transferred_values(shipped_values(src), src, gpu, pri)
    notes = transfer_notes(src, gpu, pri)
    return make_gpu_profile(gpu, vals, pri, kind="transferred", transferred_from=src, notes=notes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gpus", nargs="*", help="transferred GPUs to write (names in priors.yaml gpus.transferred)")
    ap.add_argument("--check", action="store_true", help="rebuild the shipped transferred profiles and compare")
    args = ap.parse_args(argv)
    pri = priors()
    if args.check:
        bad = []
        for gpu in pri["gpus"]["transferred"]:
            if not (PROFILES / f"{gpu}.yaml").exists() or gpu in args.gpus:
                continue
            rebuilt = _sig(build(gpu, pri).model_dump(mode="json", exclude_none=True))
            shipped = yaml.safe_load((PROFILES / f"{gpu}.yaml").read_text())
            if not _close(rebuilt, shipped):
                bad.append(gpu)
        print("reproduced" if not bad else f"differ: {', '.join(bad)}", file=sys.stderr)
        return 1 if bad else 0
    for gpu in args.gpus:
        print(_dump(PROFILES / f"{gpu}.yaml", "GPU", gpu, build(gpu, pri)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
