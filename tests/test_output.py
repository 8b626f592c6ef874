"""fleetsim.output: JSON that parses, output locations checked first, folders and files written whole."""

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import fleetsim
from fleetsim.errors import SpecError
from fleetsim.output import (
    check_output_dir,
    check_output_file,
    json_text,
    output_directory,
    output_file,
    write_json,
)

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "h100_llama3.yaml"


def strict(text: str):
    def reject(name):
        raise AssertionError(f"{name} in JSON")

    return json.loads(text, parse_constant=reject)


# --------------------------------------------------------------------------- JSON
def test_non_finite_floats_become_null_with_a_reason_and_numpy_scalars_plain_numbers():
    doc = strict(
        json_text(
            {
                "cost": {"usd_per_hour": math.inf, "usd": np.float64(2.5), "n": np.int64(3), "ok": np.bool_(True)},
                "rows": [{"x": -math.inf}, {"x": np.float32("nan")}],
                "kept": None,
            }
        )
    )
    assert doc["cost"] == {
        "usd_per_hour": None,
        "usd": 2.5,
        "n": 3,
        "ok": True,
        "usd_per_hour_reason": doc["null_fields"]["cost.usd_per_hour"],
    }
    assert "infinite" in doc["null_fields"]["cost.usd_per_hour"]
    assert doc["rows"] == [
        {"x": None, "x_reason": doc["null_fields"]["rows.0.x"]},
        {"x": None, "x_reason": "undefined (NaN)"},
    ]
    assert doc["kept"] is None and "kept" not in doc["null_fields"]  # a null with no known reason stays as it is


def test_reasons_explain_nulls_and_only_nulls():
    doc = strict(json_text({"a": {"b": None, "c": 1.0}}, reasons={"a.b": "no tokens", "a.c": "ignored", "z": "absent"}))
    assert doc == {"a": {"b": None, "b_reason": "no tokens", "c": 1.0}, "null_fields": {"a.b": "no tokens"}}
    flat = strict(json_text({"a": {"b": None}}, reasons={"a.b": "no tokens"}, siblings=False))
    assert flat == {"a": {"b": None}, "null_fields": {"a.b": "no tokens"}}


def test_a_list_document_gets_nulls_but_no_note_and_no_nulls_means_no_note():
    assert strict(json_text([1.0, math.nan])) == [1.0, None]
    assert strict(json_text({"a": 1})) == {"a": 1}


def test_a_value_json_cannot_hold_fails_loudly():
    with pytest.raises(TypeError, match="a.b"):
        json_text({"a": {"b": object()}})


# --------------------------------------------------------------------------- locations
def test_check_output_dir_accepts_new_empty_and_fleetsim_folders(tmp_path):
    check_output_dir(tmp_path / "new" / "deeper")
    check_output_dir(tmp_path)  # empty
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "summary.json").write_text("{}")
    check_output_dir(tmp_path)  # a fleetsim folder: replaced whole
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_check_output_dir_rejects_files_paths_under_files_and_foreign_folders(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    for path, needle in ((f, "is a file"), (f / "sub" / "dir", f"'{f}' is a file")):
        with pytest.raises(SpecError, match="--out") as exc:
            check_output_dir(path)
        assert needle in str(exc.value) and "\n" not in str(exc.value)
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(SpecError, match="not empty and was not written by fleetsim"):
        check_output_dir(foreign)
    check_output_dir(foreign, replace=False)  # a sweep adds files; it replaces nothing


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc: no folder can be made there, even by root")
def test_an_unwritable_place_is_named():
    with pytest.raises(SpecError, match="cannot write in '/proc'"):
        check_output_dir("/proc/fleetsim-out")
    with pytest.raises(SpecError, match="-o /proc/report.html: cannot write"):
        check_output_file("/proc/report.html")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_folder_is_named(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(SpecError, match="cannot write"):
            check_output_dir(ro / "run")
    finally:
        ro.chmod(0o700)


def test_check_output_file_rejects_a_folder(tmp_path):
    with pytest.raises(SpecError, match="is a folder; give a file path"):
        check_output_file(tmp_path)


# --------------------------------------------------------------------------- whole writes
def test_output_directory_writes_the_manifest_last_and_replaces_a_folder_whole(tmp_path):
    out = tmp_path / "run"
    with output_directory(out, scenario={"model": "m"}) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".run.")
        (tmp / "a.txt").write_text("first")
        (tmp / "old.txt").write_text("only in the first")
        assert not out.exists()  # nothing at the final path until the block ends
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "manifest.json", "old.txt"]
    with output_directory(out, scenario={"model": "m"}) as tmp:
        (tmp / "a.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "manifest.json"]
    assert (out / "a.txt").read_text() == "second"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"] == [{"path": "a.txt", "bytes": 6}] and manifest["completed"] is True
    assert manifest["fleetsim_version"] == fleetsim.__version__
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary sibling left


def test_a_failed_write_leaves_the_earlier_folder_as_it_was(tmp_path):
    out = tmp_path / "run"
    with output_directory(out) as tmp:
        (tmp / "a.txt").write_text("kept")
    with pytest.raises(KeyboardInterrupt):
        with output_directory(out) as tmp:
            (tmp / "a.txt").write_text("half")
            raise KeyboardInterrupt
    assert (out / "a.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_link_to_a_run_folder_stays_a_link(tmp_path):
    real = tmp_path / "real"
    with output_directory(real) as tmp:
        (tmp / "a.txt").write_text("1")
    (tmp_path / "link").symlink_to(real)
    with output_directory(tmp_path / "link") as tmp:
        (tmp / "a.txt").write_text("2")
    assert (tmp_path / "link").is_symlink() and (real / "a.txt").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_plan_files_go_through_the_one_writer(tmp_path, monkeypatch):
    import pandas as pd

    from fleetsim.plan import PlanResult

    monkeypatch.setattr(PlanResult, "to_dict", lambda self: {"best": {"usd_per_hour": math.inf}, "n": np.int64(1)})
    empty = pd.DataFrame({"gpu": []})
    plan = PlanResult(fleetsim.load_scenario(SCENARIO), {"run.seed": 3}, empty, empty, empty)
    plan.save(tmp_path)
    doc = strict((tmp_path / "plan.json").read_text())
    assert doc["best"]["usd_per_hour"] is None and doc["n"] == 1
    assert "not finite" in doc["null_fields"]["best.usd_per_hour"]
    assert '(base + overrides {"run.seed": 3})' in (tmp_path / "scenario.yaml").read_text()


def test_validation_summary_goes_through_the_one_writer(tmp_path):
    from fleetsim.validation.table import ValidationResult

    ValidationResult(cases=[], sources=[], elapsed_s=math.nan).save(tmp_path)
    doc = strict((tmp_path / "summary.json").read_text())
    assert doc["elapsed_s"] is None and doc["elapsed_s_reason"] == "undefined (NaN)"
    assert doc["null_fields"] == {"elapsed_s": "undefined (NaN)"}


def test_a_results_to_json_is_the_one_writers_text():
    r = fleetsim.simulate(SCENARIO, {"scheduler.max_model_len": 1, "run.duration_s": 2})  # nothing completes
    r.summary["power"]["gpu_mean_w"] = math.nan
    doc = strict(r.to_json())
    assert doc["power"]["gpu_mean_w"] is None and doc["null_fields"]["power.gpu_mean_w"] == "undefined (NaN)"
    assert doc["cost"]["usd_per_million_tokens_reason"] == "no tokens in the measured window"


def test_output_file_replaces_whole_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "report.html"
    with output_file(target) as tmp:
        tmp.write_text("<html>1</html>")
    with pytest.raises(RuntimeError):
        with output_file(target) as tmp:
            tmp.write_text("<html>half")
            raise RuntimeError("render failed")
    assert target.read_text() == "<html>1</html>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_write_json_is_strict_and_whole(tmp_path):
    path = write_json(tmp_path / "x.json", {"a": math.nan})
    assert strict(path.read_text()) == {
        "a": None,
        "a_reason": "undefined (NaN)",
        "null_fields": {"a": "undefined (NaN)"},
    }


def test_simulation_result_save_is_a_whole_folder(tmp_path):
    r = fleetsim.simulate(SCENARIO, {"run.duration_s": 5})
    out = r.save(tmp_path / "r")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["manifest.json", "summary.json", "scenario.json", "requests.parquet", "timeseries.parquet", "replicas.parquet"]
    )
    assert strict((out / "summary.json").read_text())["requests"] == r.summary["requests"]
