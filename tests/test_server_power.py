"""Whole-server wall power (fleetsim.server_power) against hand calculations and published figures.

Published figures used:
- MLPerf Inference v4.1 closed, NVIDIA "H200-SXM-141GBx8_TRT_MaxQ" (8x H200 SXM on the DGX H100
  host: 2x Xeon 8480C, 2 TB, 10x 400G), llama2-70b-99 Offline: mean AC wall power 6,153 W over the
  performance run, GPUs power-limited to 500 W (github.com/mlcommons/inference_results_v4.1,
  commit 198fc467, closed/NVIDIA/results/H200-SXM-141GBx8_TRT_MaxQ/llama2-70b-99/Offline/
  performance/run_1/spl.txt, averaged between power_begin and power_end; reference id
  mlperf41_power_h200_sxm_141gbx8_trt_maxq_llama2_70b_offline). An Offline llama2-70b run keeps
  every GPU at its board power limit, so the GPUs draw 8 x 500 W.
- NVIDIA DGX H100 datasheet: 10.2 kW maximum system power (reference id power_dgx_h100_system).
"""

import math

import pytest

from fleetsim.catalog import gpu_names, load_gpu
from fleetsim.errors import CatalogError
from fleetsim.server_power import (
    fleet_wall_kw,
    load_fraction,
    non_gpu_power_w,
    server_wall_w,
    servers_for,
    wall_power_summary,
)
from fleetsim.spec.hardware import HostPart

MLPERF_V41_H200_MAXQ_LLAMA2_OFFLINE_W = 6153.0
DGX_H100_MAX_SYSTEM_W = 10_200.0


def _parts_w(gpu, at: str) -> float:
    return math.fsum(getattr(p, at) for p in gpu.server.parts.values())


def test_full_load_is_gpus_plus_every_part_at_max_over_the_psu():
    h100 = load_gpu("h100-sxm")
    by_hand = (8 * 700 + _parts_w(h100, "max_w")) / h100.server.psu_efficiency
    assert server_wall_w(8 * 700.0, h100) == pytest.approx(by_hand)
    # the idle reference (10% of TDP per GPU) puts the load at 0: every part at idle
    idle_by_hand = (8 * 70 + _parts_w(h100, "idle_w")) / h100.server.psu_efficiency
    assert server_wall_w(8 * 70.0, h100) == pytest.approx(idle_by_hand)


def test_8x_gh100_server_at_its_power_limit_is_within_10_percent_of_mlperf_v41():
    h200 = load_gpu("h200")
    predicted_w = server_wall_w(8 * 500.0, h200)
    assert predicted_w == pytest.approx(MLPERF_V41_H200_MAXQ_LLAMA2_OFFLINE_W, rel=0.10)


def test_8x_h100_at_full_load_is_below_the_datasheet_maximum():
    # The datasheet maximum is what a facility provisions for (worst-case ambient, fans flat out,
    # power excursions); a full-load inference run sits below it, within a quarter.
    full_w = server_wall_w(8 * 700.0, load_gpu("h100-sxm"))
    assert 0.75 * DGX_H100_MAX_SYSTEM_W < full_w < DGX_H100_MAX_SYSTEM_W


@pytest.mark.parametrize("name", gpu_names())
def test_non_gpu_power_falls_with_load(name):
    gpu = load_gpu(name)
    loads = [0.0, 0.25, 0.5, 0.75, 1.0]
    watts = [non_gpu_power_w(gpu, u) for u in loads]
    assert watts == sorted(watts)
    assert watts[0] < watts[-1]
    assert gpu.server is not None
    assert server_wall_w(gpu.gpus_per_server * gpu.tdp_w, gpu) > gpu.gpus_per_server * gpu.tdp_w


def test_rack_scale_systems_are_charged_a_fraction_of_the_rack():
    gb200 = load_gpu("gb200")
    assert servers_for(8, gb200) == pytest.approx(8 / 72)
    rack_non_gpu_w = non_gpu_power_w(gb200, 1.0)
    eight_kw = fleet_wall_kw(8, gb200, gb200.tdp_w)
    by_hand_kw = (8 * 1200 + 8 / 72 * rack_non_gpu_w) / gb200.server.psu_efficiency / 1000
    assert eight_kw == pytest.approx(by_hand_kw)
    assert eight_kw < rack_non_gpu_w / 1000  # far below a whole rack's overhead
    # ordinary servers are charged whole: 9 H100s take two DGX-class servers
    assert servers_for(9, load_gpu("h100-sxm")) == 2
    assert servers_for(0, load_gpu("h100-sxm")) == 0


def test_load_fraction_is_clipped_and_linear_in_gpu_power():
    h100 = load_gpu("h100-sxm")
    assert load_fraction(0.0, h100) == 0.0
    assert load_fraction(900.0, h100) == 1.0
    assert load_fraction((70 + 700) / 2, h100) == pytest.approx(0.5)


def test_summary_entries_from_mean_and_peak_power():
    h100 = load_gpu("h100-sxm")
    out = wall_power_summary(h100, 16, gpu_mean_w=400.0, gpu_peak_w=700.0)
    assert out["servers_charged"] == 2
    assert out["server_wall_kw"] == pytest.approx(2 * server_wall_w(8 * 400.0, h100) / 1000)
    assert out["server_wall_peak_kw"] == pytest.approx(2 * server_wall_w(8 * 700.0, h100) / 1000)
    assert out["server_wall_kw"] < out["server_wall_peak_kw"]
    assert all(math.isfinite(v) for v in out.values())


def test_a_part_idling_above_its_maximum_is_refused(tmp_path):
    with pytest.raises(ValueError, match="idle_w 500 is above max_w 100"):
        HostPart(idle_w=500, max_w=100)
    gpu_file = tmp_path / "gpu.yaml"
    text = (
        "name: x\nvendor: y\nmemory_bytes: 80000000000\nhbm_bandwidth_bytes_per_s: 3.0e+12\n"
        "peak_flops_per_s: {bf16: 1.0e+15}\ntdp_w: 700\ninterconnect_bandwidth_bytes_per_s: 4.5e+11\n"
        "interconnect: z\nserver: {kind: k, psu_efficiency: 0.94, parts: {fans: {idle_w: 900, max_w: 100}}}\n"
    )
    gpu_file.write_text(text)
    with pytest.raises(CatalogError) as err:
        load_gpu(str(gpu_file))
    assert "\n" not in str(err.value) and "idle_w" in str(err.value)
