"""`plan --pd`: the cheapest prefill:decode ratio meeting the SLO, with one fewer of each missing."""

import json
import subprocess
import sys

import pytest
import yaml

from fleetsim.errors import SpecError
from fleetsim.plan_pd import plan_pd


def small() -> dict:
    """Llama 3 70B, 40 requests/s of 500 + 300 tokens, for 10 s: one TP2 prefill replica cannot
    keep TTFT under 1 s (20k prompt tokens/s), one TP4 decode replica cannot keep TPOT under 20 ms."""
    return {
        "name": "pd-plan",
        "model": "llama-3-70b",
        "weight_dtype": "bf16",
        "kv_cache": {"key_dtype": "bf16", "value_dtype": "bf16"},
        "fleet": {"router": "least_outstanding"},
        "disaggregation": {
            "prefill": {"gpu": "h100-sxm", "tp": 2},
            "decode": {"gpu": "h100-sxm", "tp": 4},
            "link": {"name": "infiniband-ndr"},
        },
        "workload": {
            "arrival": {"kind": "poisson", "rate_per_s": 40.0},
            "classes": [
                {
                    "name": "chat",
                    "input_tokens": {"kind": "fixed", "tokens": 500},
                    "output_tokens": {"kind": "fixed", "tokens": 300},
                }
            ],
        },
        "slo": {"ttft_s": 1.0, "tpot_s": 0.02, "percentile": 90, "attainment_target": 0.9},
        "cost": {"mode": "rental"},
        "run": {"duration_s": 10, "seed": 3},
    }


def test_cheapest_ratio_meets_the_slo_and_one_fewer_of_each_misses():
    result = plan_pd(small())
    best = result.best
    assert best is not None and best["met"]
    p, d = best["prefill_replicas"], best["decode_replicas"]
    assert best["gpus"] == 2 * p + 4 * d
    assert {(e["prefill_replicas"], e["decode_replicas"]) for e in result.evidence} == {
        (p2, d2) for p2, d2 in ((p, d - 1), (p - 1, d)) if p2 >= 1 and d2 >= 1
    }
    assert result.evidence and not any(e["met"] for e in result.evidence)
    # Rental: every fleet costs the same per GPU-hour, so the cheapest meeting the SLO has the fewest GPUs.
    rows = result.evaluations
    per_gpu = {round(r["usd_per_hour"] / r["gpus"], 9) for r in rows}
    assert len(per_gpu) == 1
    assert best["gpus"] == min(r["gpus"] for r in rows if r["met"])
    assert "Cheapest P:D" in result.recommendation()


def test_plan_pd_needs_a_pd_scenario():
    s = small()
    del s["disaggregation"]
    s["model"] = "llama-3-8b"
    with pytest.raises(SpecError, match="disaggregation"):
        plan_pd(s)


def test_cli_plan_pd_json_and_refused_options(tmp_path):
    p = tmp_path / "s.yaml"
    s = small()
    s["workload"]["arrival"]["rate_per_s"] = 5.0
    p.write_text(yaml.safe_dump(s))
    run = [sys.executable, "-c", "from fleetsim.cli import main; main()", "plan", str(p), "--pd"]
    out = subprocess.run([*run, "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["best"]["met"] and data["best"]["ratio"] == "1:1"
    bad = subprocess.run([*run, "--gpus", "h200"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--gpus" in bad.stderr


def test_a_tpot_no_fleet_can_meet_ends_the_search_with_no_answer():
    s = small()
    s["slo"]["tpot_s"] = 0.001  # below one decode step of a 70B model at any batch
    result = plan_pd(s, max_decode_replicas=2)
    assert result.best is None and result.evidence == []
    assert "No P:D ratio" in result.recommendation()
    assert len(result.per_prefill) <= 2  # decode-bound: more prefill replicas are not tried
