"""A scenario can point at any schema-2 GPU profile file; a malformed or schema-1 one is one clear line."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import fleetsim
from fleetsim.calibrate import read_profile, write_profile
from fleetsim.errors import SpecError
from fleetsim.profile import load_profile, profile_names

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "h100_llama3.yaml"
SHIPPED = ROOT / "fleetsim" / "profiles" / "gpus"


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-c", "from fleetsim.cli import main; main()", *map(str, args)], capture_output=True, text=True
    )


def shipped_data(name: str = "h100-sxm") -> dict:
    return yaml.safe_load((SHIPPED / f"{name}.yaml").read_text())


def test_every_catalog_gpu_has_a_shipped_profile():
    from fleetsim.catalog import gpu_names

    assert set(gpu_names()) <= set(profile_names())


def test_a_scenario_can_point_to_a_profile_file(tmp_path):
    data = shipped_data()
    data["memory"]["eta_max"] = data["memory"]["eta_max"] / 2  # HBM streams at half the rate
    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump(data))
    base = fleetsim.simulate(SCENARIO, {"run.duration_s": 20})
    other = fleetsim.simulate(SCENARIO, {"run.duration_s": 20, "fleet.profile": str(slow)})
    assert other.summary["latency_s"]["tpot"]["mean"] > 1.2 * base.summary["latency_s"]["tpot"]["mean"]


def test_a_measured_profile_written_by_the_harness_drives_a_run(tmp_path):
    shipped = load_profile("h100-sxm")
    measured = shipped.model_copy(
        update={"provenance": shipped.provenance.model_copy(update={"kind": "measured", "gpu_name": "NVIDIA H100"})}
    )
    path = write_profile(measured, tmp_path / "h100-sxm.yaml")
    assert read_profile(path) == load_profile("h100-sxm", path) == measured
    result = fleetsim.simulate(SCENARIO, {"run.duration_s": 10, "fleet.profile": str(path)})
    assert result.summary["latency_s"]["tpot"]["mean"] > 0


def test_malformed_profile_is_one_clear_line(tmp_path):
    data = shipped_data()
    data["memory"]["eta_max"] = 1.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    r = run_cli("run", SCENARIO, "--set", f"fleet.profile={bad}")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "memory.eta_max" in r.stderr
    missing = run_cli("run", SCENARIO, "--set", f"fleet.profile={tmp_path / 'none.yaml'}")
    assert missing.returncode == 2 and "none.yaml" in missing.stderr


def schema_1_profile() -> dict:
    """A profile as the harness wrote it before schema 2: overhead_s, one compute curve,
    kv_read_efficiency and tp at top level."""
    return {
        "gpu": "h100-sxm",
        "provenance": {"kind": "measured", "date": "2025-06-01", "gpu_name": "NVIDIA H100 80GB HBM3"},
        "overhead_s": 6.1e-6,
        "memory": {"eta_max": 0.82, "half_work": 1.6e7},
        "compute": {"eta_max": 0.68, "half_work": 8e9},
        "kv_read_efficiency": {"bf16": 1.0, "fp8": 0.9},
        "tp": {"allreduce_bus_bytes_per_s": 4.5e11, "allreduce_latency_s": 3e-5},
        "power": {"idle_w": 75.0, "compute_w": 420.0, "memory_w": 260.0, "cap_w": 700.0},
    }


def test_schema_1_profile_as_fleet_profile_is_one_clear_line(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(schema_1_profile()))
    r = run_cli("run", SCENARIO, "--set", f"fleet.profile={old}")
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert "schema-1" in line and "old.yaml" in line and "fleetsim calibrate" in line
    with pytest.raises(SpecError, match="schema-1"):
        fleetsim.simulate(SCENARIO, {"run.duration_s": 5, "fleet.profile": str(old)})


@pytest.mark.parametrize("name", profile_names())
def test_shipped_profiles_validate_and_name_their_provenance(name):
    p = load_profile(name, SHIPPED / f"{name}.yaml")
    assert p == load_profile(name) and p.schema_version == 2 and p.gpu == name
    assert p.provenance.kind in ("measured", "fitted_to_published", "transferred", "prior")
    assert p.provenance.sources or p.provenance.notes
    assert "bf16" in p.compute and p.collectives.allreduce_bus_bytes_per_s > 0
