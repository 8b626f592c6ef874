"""fleetsim against published measurements: the shipped validation cases meet the acceptance
bounds, case files are checked with one clear error, and `fleetsim validate` speaks JSON."""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fleetsim.errors import SpecError
from fleetsim.validation import (
    MEDIAN_BOUND_PCT,
    WORST_BOUND_PCT,
    load_cases,
    run_validation,
    shipped_cases_path,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped():
    start = time.perf_counter()
    result = run_validation()
    return result, time.perf_counter() - start


def test_shipped_cases_meet_the_acceptance_bounds(shipped):
    result, _ = shipped
    assert result.bound_violations() == []
    by_metric = {r["metric"]: r for r in result.metric_summary()}
    for metric in ("output_tokens_per_s", "ttft_s", "tpot_s", "itl_s", "gpu_power_w"):
        row = by_metric[metric]
        assert row["cases"] > 0, metric
        assert row["median_abs_error_pct"] <= MEDIAN_BOUND_PCT, row
    for case in result.cases:
        if case.status == "ok":
            assert case.abs_error_pct <= WORST_BOUND_PCT, (case.id, case.error_pct)


def test_shipped_cases_cover_the_published_sources(shipped):
    result, _ = shipped
    ids = [c.id for c in result.cases]
    assert len(ids) == len(set(ids))
    for prefix in (
        "vllm-itl-h100-bf16kv",
        "vllm-itl-h100-fp8kv",
        "splitwise-h100-tp8",
        "splitwise-a100-tp8",
        "mlenergy-h100",
        "mlenergy-b200",
    ):
        assert any(i.startswith(prefix) for i in ids), prefix
    for case in result.cases:
        assert case.source_entry and case.source_reference
        assert math.isfinite(case.predicted) and case.predicted > 0, case.id
        if case.status == "unsupported":
            assert case.reason.strip(), case.id
    # Splitwise at TP8: TTFT for 512/2048/8192-token prompts and TPOT, on H100 and A100.
    for gpu in ("h100", "a100"):
        for p in (512, 2048, 8192):
            for m in ("ttft", "tpot"):
                assert f"splitwise-{gpu}-tp8-p{p}-b1-{m}" in ids
    # ML.ENERGY throughput, power and energy per token on both GPUs.
    for metric in ("output_tokens_per_s", "gpu_power_w", "energy_per_output_token_j"):
        assert {c.gpu for c in result.cases if c.metric == metric} == {"h100-sxm", "b200"}


def test_result_saves_csv_json_and_markdown(shipped, tmp_path):
    result, _ = shipped
    out = result.save(tmp_path / "v")
    assert (out / "validation.csv").read_text().startswith("id,")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bounds"]["met"] is True and len(summary["cases"]) == len(result.cases)
    md = (out / "VALIDATION.md").read_text()
    assert f"fleetsim {result.version}" in md and result.date in md
    assert "| output_tokens_per_s |" in md


def write_cases(path, cases):
    path.write_text(yaml.safe_dump({"cases": cases}, sort_keys=False))
    return path


GOOD = {
    "id": "tiny-itl",
    "base": "builtin",
    "overrides": {
        "workload.classes.0.input_tokens": {"kind": "fixed", "tokens": 256},
        "workload.classes.0.output_tokens": {"kind": "fixed", "tokens": 32},
        "run.duration_s": 2,
    },
    "metric": "itl_s",
    "published": 6.45,
    "unit": "ms",
    "source": {"entry": "vllm_itl_model_llama31_8b_h100_bf16kv", "reference": "vLLM blog"},
}


def test_a_small_case_file_runs_and_converts_units(tmp_path):
    result = run_validation([write_cases(tmp_path / "c.yaml", [GOOD])])
    (case,) = result.cases
    assert case.unit == "ms" and 5.0 < case.predicted < 8.0
    assert case.error_pct == pytest.approx((case.predicted / 6.45 - 1) * 100)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"metric": "latency_s"}, "metric"),
        ({"unit": "tokens/s"}, "unit"),
        ({"published": -1.0}, "published"),
        ({"status": "unsupported"}, "reason"),
        ({"source": {"entry": "x"}}, "source.reference"),
        ({"statistic": "p50", "metric": "gpu_power_w", "unit": "W"}, "statistic"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_malformed_case_names_the_case_and_the_field(tmp_path, change, field):
    bad = {**GOOD, "id": "broken-case", **change}
    path = write_cases(tmp_path / "bad.yaml", [GOOD | {"id": "fine"}, bad])
    with pytest.raises(SpecError) as info:
        load_cases(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert "case 'broken-case' (#2)" in msg and field in msg, msg


def test_a_case_without_an_id_is_named_by_its_index(tmp_path):
    bad = {k: v for k, v in GOOD.items() if k != "id"}
    path = write_cases(tmp_path / "bad.yaml", [GOOD, bad])
    with pytest.raises(SpecError, match=r"case #2: id: required field is missing"):
        load_cases(path)


def test_bad_overrides_and_files_are_spec_errors(tmp_path):
    path = write_cases(tmp_path / "c.yaml", [GOOD | {"overrides": {"workload.classes.3.input_tokens": 5}}])
    with pytest.raises(SpecError, match=r"case 'tiny-itl': overrides.workload.classes.3.input_tokens"):
        run_validation([path])
    path = write_cases(tmp_path / "d.yaml", [GOOD | {"overrides": {"fleet.gpu": "h100-sxm", "fleet.tp": 3}}])
    with pytest.raises(SpecError, match=r"^case 'tiny-itl': "):
        run_validation([path])
    (tmp_path / "e.yaml").write_text("cases: [\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_cases(tmp_path / "e.yaml")
    with pytest.raises(SpecError, match="does not exist"):
        load_cases(tmp_path / "missing.yaml")
    write_cases(tmp_path / "f.yaml", [GOOD, GOOD])
    with pytest.raises(SpecError, match="duplicate case id 'tiny-itl'"):
        load_cases(tmp_path / "f.yaml")


def test_shipped_case_file_loads():
    cases = load_cases(shipped_cases_path())
    assert len(cases) >= 60
    assert all(c.source.entry for c in cases)


def cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-c", "from fleetsim.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_cli_validate_json_prints_one_json_object():
    proc = cli("validate", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # exactly one JSON document on stdout
    assert isinstance(data, dict)
    assert data["bounds"]["met"] is True
    assert {"fleetsim_version", "date", "summary", "cases"} <= set(data)


def test_cli_validate_reports_a_malformed_file_in_one_line(tmp_path):
    path = write_cases(tmp_path / "bad.yaml", [GOOD | {"metric": "speed"}])
    proc = cli("validate", str(path), "--json")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "case 'tiny-itl' (#1)" in lines[0] and "metric" in lines[0]
    assert proc.stdout == ""
