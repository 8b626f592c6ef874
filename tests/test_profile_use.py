"""A scenario can point at any calibration profile file; a malformed one is one clear error."""

import subprocess
import sys
from pathlib import Path

import yaml

import fleetsim
from fleetsim.profile import load_profile, profile_names

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "h100_llama3.yaml"


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-c", "from fleetsim.cli import main; main()", *map(str, args)], capture_output=True, text=True
    )


def test_every_catalog_gpu_has_a_shipped_profile():
    from fleetsim.catalog import gpu_names

    assert set(gpu_names()) <= set(profile_names())


def test_a_scenario_can_point_to_a_profile_file(tmp_path):
    data = yaml.safe_load((ROOT / "fleetsim/catalog/profiles/h100-sxm.yaml").read_text())
    # A profile with twice the per-iteration overhead must slow every iteration down.
    data["overhead_s"] = data["overhead_s"] * 2 + 0.005
    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump(data))
    base = fleetsim.simulate(SCENARIO, {"run.duration_s": 20})
    other = fleetsim.simulate(SCENARIO, {"run.duration_s": 20, "fleet.profile": str(slow)})
    assert other.summary["latency_s"]["tpot"]["mean"] > base.summary["latency_s"]["tpot"]["mean"] + 0.004


def test_malformed_profile_is_one_clear_line(tmp_path):
    data = yaml.safe_load((ROOT / "fleetsim/catalog/profiles/h100-sxm.yaml").read_text())
    data["memory"]["eta_max"] = 1.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    r = run_cli("run", SCENARIO, "--set", f"fleet.profile={bad}")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "memory.eta_max" in r.stderr
    missing = run_cli("run", SCENARIO, "--set", f"fleet.profile={tmp_path / 'none.yaml'}")
    assert missing.returncode == 2 and "none.yaml" in missing.stderr


def test_shipped_profiles_validate_and_name_their_provenance():
    for name in profile_names():
        p = load_profile(name.split("-splitwise")[0], ROOT / "fleetsim/catalog/profiles" / f"{name}.yaml")
        assert p.provenance.kind in ("measured", "fitted_to_published", "transferred")
        assert p.provenance.sources or p.provenance.notes
