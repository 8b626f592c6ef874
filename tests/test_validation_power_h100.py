"""The 8x H100-SXM MLPerf Power cases (fleetsim/validation/cases/mlperf_power_h100.yaml) express
the published systems, and a DGX H100 at the runs' GPU power limit is within 10% of their wall power.

Published figures: MLPerf Inference v4.0 closed, NVIDIA "DGX-H100_H100-SXM-80GBx8_TRT_MaxQ",
llama2-70b-99.9: mean AC wall power 5,888.2 W (Offline) and 5,908.8 W (Server), the one-second
PTDaemon samples of closed/NVIDIA/results/DGX-H100_H100-SXM-80GBx8_TRT_MaxQ/llama2-70b-99.9/<scenario>/
performance/run_1/spl.txt between loadgen's power_begin and power_end (github.com/mlcommons/
inference_results_v4.0, commit 3c4a1cf1). The harness caps each GPU at 450 W
(closed/NVIDIA/configs/llama2-70b/{Offline,Server}/__init__.py, H100_SXM_80GB_TP2x4_MaxQ:
power_limit = 450, tensor_parallelism = 2, batch 896 Offline / 1024 Server, server_target_qps 13.5 * 4).
No 8x H100-SXM MLPerf Power run at the default 700 W is published (v3.0 to v5.0); 450 W is the
highest limit among them.
"""

import pytest

from fleetsim.catalog import load_gpu
from fleetsim.server_power import server_wall_w
from fleetsim.validation import load_cases, shipped_case_files

MLPERF_V40_DGX_H100_MAXQ_LLAMA2_W = {"offline": 5888.2, "server": 5908.8}
MAXQ_POWER_LIMIT_W = 450.0


def _cases() -> dict:
    path = next(f for f in shipped_case_files() if f.name == "mlperf_power_h100.yaml")
    return {c.id.rsplit("-", 2)[-2]: c for c in load_cases(path)}


def test_the_cases_express_the_published_systems():
    cases = _cases()
    assert sorted(cases) == ["offline", "server"]
    for scenario, case in cases.items():
        assert case.split == "holdout" and case.status == "ok" and case.group == "mlperf40-power-h100"
        assert (case.metric, case.unit) == ("server_wall_kw", "W")
        assert case.published_si == pytest.approx(MLPERF_V40_DGX_H100_MAXQ_LLAMA2_W[scenario] / 1000)
        o = case.overrides
        assert (o["fleet.gpu"], o["fleet.tp"], o["fleet.replicas"]) == ("h100-sxm", 2, 4)  # 8 GPUs, one server
        assert o["fleet.power_limit_w"] == MAXQ_POWER_LIMIT_W
    offline, server = cases["offline"].overrides, cases["server"].overrides
    assert offline["scheduler.max_running_seqs"] == 896 and offline["workload.arrival"]["kind"] == "offline"
    assert cases["offline"].window_s == "run"  # the published mean covers the whole Offline run
    assert server["scheduler.max_running_seqs"] == 1024
    assert server["workload.arrival"] == {"kind": "poisson", "rate_per_s": 54.0}


def test_a_dgx_h100_at_the_maxq_limit_is_within_10_percent_of_the_published_wall_power():
    # An Offline llama2-70b run keeps every GPU at its board power limit: 8 x 450 W.
    predicted_w = server_wall_w(8 * MAXQ_POWER_LIMIT_W, load_gpu("h100-sxm"))
    assert predicted_w == pytest.approx(MLPERF_V40_DGX_H100_MAXQ_LLAMA2_W["offline"], rel=0.10)
