"""Issue 11's GPUs: datasheet figures, transferred profiles graded so, and runs on each.

Expected figures are the vendors' published datasheet numbers, quoted beside each assertion.
"""

import json
import math

import pytest

from fleetsim.api import memory_plan
from fleetsim.catalog import load_gpu
from fleetsim.profile import load_profile

NEW = ["h100-nvl", "h200-nvl", "gh200", "gh200-144gb", "gb300", "b300", "mi325x", "mi355x"]
# Each new GPU's profile is transferred from the nearest fitted (or transferred) part.
SOURCE = {
    "h100-nvl": "h100-sxm",
    "h200-nvl": "h200",
    "gh200": "h200",
    "gh200-144gb": "h200",
    "gb300": "gb200",
    "b300": "b200",
    "mi325x": "mi300x",
    "mi355x": "mi300x",
}


def test_datasheet_figures():
    # NVIDIA H100 NVL: 94 GB HBM3, 3.9 TB/s, BF16 1,671 TFLOPS with sparsity, 350-400 W configurable.
    nvl = load_gpu("h100-nvl")
    assert nvl.memory_bytes == 94e9 and nvl.hbm_bandwidth_bytes_per_s == 3.9e12
    assert nvl.peak_flops("bf16") == pytest.approx(1671e12 / 2, rel=1e-3)
    assert (nvl.min_power_limit_w, nvl.max_power_limit_w) == (350, 400)
    # NVIDIA H200 NVL: 141 GB, 4.8 TB/s, up to 600 W.
    assert load_gpu("h200-nvl").tdp_w == 600
    # NVIDIA GH200: 96 GB HBM3 at 4 TB/s or 144 GB HBM3e at 4.9 TB/s; 480 GB LPDDR5X at 512 GB/s;
    # NVLink-C2C 900 GB/s bidirectional; module power 450-1000 W.
    gh, gh144 = load_gpu("gh200"), load_gpu("gh200-144gb")
    assert (gh.memory_bytes, gh144.memory_bytes) == (96e9, 144e9)
    assert (gh.hbm_bandwidth_bytes_per_s, gh144.hbm_bandwidth_bytes_per_s) == (4.0e12, 4.9e12)
    assert gh.host_memory_bytes == 480e9 and gh.host_memory_bandwidth_bytes_per_s == 512e9
    assert gh.host_link_bandwidth_bytes_per_s == 900e9 / 2
    assert (gh.min_power_limit_w, gh.max_power_limit_w) == (450, 1000)
    # GB300 NVL72: 1,080 PFLOPS dense FP4 per 72 GPUs, 288 GB HBM3e, 1400 W, a 72-GPU rack.
    gb300 = load_gpu("gb300")
    assert gb300.peak_flops("fp4") == pytest.approx(1080e15 / 72)
    assert gb300.memory_bytes == 288e9 and gb300.tdp_w == 1400 and gb300.gpus_per_server == 72
    assert gb300.server is not None and gb300.server.rack_scale
    # HGX B300: 108 PFLOPS dense FP4 per 8 GPUs.
    assert load_gpu("b300").peak_flops("fp4") == pytest.approx(108e15 / 8)
    # AMD: MI325X 256 GB at 6 TB/s, 1000 W; MI355X 288 GB at 8 TB/s, 1400 W, FP4 on CDNA 4 only.
    mi325, mi355 = load_gpu("mi325x"), load_gpu("mi355x")
    assert (mi325.memory_bytes, mi325.hbm_bandwidth_bytes_per_s, mi325.tdp_w) == (256e9, 6e12, 1000)
    assert (mi355.memory_bytes, mi355.hbm_bandwidth_bytes_per_s, mi355.tdp_w) == (288e9, 8e12, 1400)
    assert "fp4" in mi355.peak_flops_per_s and "fp4" not in mi325.peak_flops_per_s


@pytest.mark.parametrize("name", NEW)
def test_profile_is_transferred_from_the_nearest_fitted_gpu(name):
    prof = load_profile(name)
    assert prof.provenance.kind == "transferred"
    assert prof.provenance.transferred_from == SOURCE[name]
    src, gpu, src_gpu = load_profile(SOURCE[name]), load_gpu(name), load_gpu(SOURCE[name])
    # kernel efficiencies carried over; power scaled by the ratio of TDPs
    assert prof.compute["bf16"].eta_max == pytest.approx(src.compute["bf16"].eta_max)
    assert prof.power.idle_w == pytest.approx(src.power.idle_w * gpu.tdp_w / src_gpu.tdp_w, rel=2e-3)
    # the board's limit: its cap, or (a same-die card below its source's TDP: tests/test_board_limit.py)
    # the board limit the clock model applies under the die's cap
    board = prof.power.cap_w if prof.power.board_limit_w is None else prof.power.board_limit_w
    assert board == gpu.tdp_w


@pytest.mark.parametrize("name", NEW)
def test_memory_plan_on_each(name):
    plan = memory_plan("llama-3-8b", name)
    assert plan.kv_pool_bytes_per_gpu > 0
    assert plan.kv_pool_bytes_per_gpu < load_gpu(name).memory_bytes


def test_gpus_json_is_strict_and_lists_sources(capsys):
    from fleetsim.cli.catalog import gpus

    gpus(json_out=True)
    text = capsys.readouterr().out
    rows = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    by_name = {r["gpu"]: r for r in rows}
    assert set(NEW) <= set(by_name)
    for name in NEW:
        assert by_name[name]["sources"]["memory_bytes"]
        assert by_name[name]["server_kind"]
        assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in by_name[name].values())


@pytest.mark.parametrize("name", ["gh200", "gb300"])
def test_a_run_on_a_new_gpu_says_its_profile_is_transferred(name):
    from pathlib import Path

    import fleetsim

    scenario = Path(__file__).resolve().parents[1] / "scenarios" / "h100_llama3.yaml"
    overrides = {"fleet.gpu": name, "run.duration_s": 20, "cost.rental_usd_per_gpu_hour": 3.0}
    summary = fleetsim.simulate(fleetsim.load_scenario(scenario, overrides)).summary
    assert summary["fleet"]["gpu"] == name
    assert summary["throughput"]["output_tokens_per_s"] > 0
    assert any(f"transferred from {SOURCE[name]}" in w for w in summary["calibration"]["warnings"])


def test_shipped_transferred_profiles_are_the_transfer_of_their_shipped_sources():
    """calibration/research/transfer_profiles.py --check: every shipped transferred profile (the
    fit's own and issue 11's) equals the fit's transfer of its source's shipped profile, to 0.1%."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "calibration" / "research" / "transfer_profiles.py"
    spec = importlib.util.spec_from_file_location("transfer_profiles", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0
