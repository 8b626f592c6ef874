"""One override setter (fleetsim.scenario.apply_overrides / set_path): dotted paths, list items by
index, the same for --set, sweep grid points and validation case overrides."""

import json
from pathlib import Path

import pytest
import yaml
from test_cli_memory import run_in_process

import fleetsim
from fleetsim.errors import SpecError
from fleetsim.scenario import apply_overrides, set_path
from fleetsim.validation.runner import _set_dotted

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "h100_llama3.yaml"


def base() -> dict:
    return yaml.safe_load(SCENARIO.read_text())


def test_a_list_item_is_set_by_its_index_and_the_base_is_left_as_it_was():
    data = base()
    out = apply_overrides(data, {"workload.classes.0.output_tokens.mean_tokens": 300, "fleet.replicas": 8})
    assert out["workload"]["classes"][0]["output_tokens"]["mean_tokens"] == 300
    assert out["workload"]["classes"][0]["output_tokens"]["sigma"] == 0.7  # the rest of the item kept
    assert out["fleet"]["replicas"] == 8
    assert data == base()  # a copy was changed, not the caller's mapping


def test_missing_mappings_are_created_and_values_are_copied():
    value = {"kind": "fixed", "tokens": 16}
    out = apply_overrides({}, {"workload.classes": [{"name": "a", "output_tokens": value}]})
    out2 = apply_overrides(out, {"workload.classes.0.output_tokens.tokens": 32})
    assert value["tokens"] == 16 and out["workload"]["classes"][0]["output_tokens"]["tokens"] == 16
    assert out2["workload"]["classes"][0]["output_tokens"]["tokens"] == 32


@pytest.mark.parametrize(
    "path, needles",
    [
        ("workload.classes.3.weight", ("--set workload.classes.3.weight:", "needs an index below 1", "0 to 0")),
        ("workload.classes.first.weight", ("'workload.classes.first'", "needs an index below 1")),
        ("model.name", ("--set model.name:", "'model' is a value ('llama-3-8b')", "not a mapping or list")),
        ("workload.classes.\u00b2.weight", ("needs an index below 1",)),  # a superscript two: not an index
        ("workload.classes." + "9" * 5000 + ".weight", ("needs an index below 1", "...")),  # cut, never int()'d
    ],
)
def test_a_path_that_cannot_be_set_is_one_line_naming_it(path, needles):
    with pytest.raises(SpecError) as exc:
        apply_overrides(base(), {path: 1})
    message = str(exc.value)
    assert "\n" not in message and len(message) < 400
    for needle in needles:
        assert needle in message, message


def test_the_scenario_api_takes_list_indices():
    spec = fleetsim.load_scenario(SCENARIO, {"workload.classes.0.input_tokens.max_tokens": 4096})
    assert spec.workload.classes[0].input_tokens.max_tokens == 4096


def test_cli_set_reaches_into_a_list_item(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    r = run_in_process(
        monkeypatch,
        capsys,
        "run",
        SCENARIO,
        "--set",
        "workload.classes.0.output_tokens.mean_tokens=300",
        "--set",
        "run.duration_s=5",
        "--json",
        "--out",
        out,
    )
    assert r.returncode == 0, r.stderr
    scenario = json.loads((out / "scenario.json").read_text())
    assert scenario["workload"]["classes"][0]["output_tokens"]["mean_tokens"] == 300


def test_cli_set_with_an_index_out_of_range_is_one_line_and_exit_2(monkeypatch, capsys):
    r = run_in_process(monkeypatch, capsys, "run", SCENARIO, "--set", "workload.classes.2.weight=2")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "workload.classes.2.weight" in lines[0] and "needs an index below 1" in lines[0]


def test_validation_case_overrides_use_the_same_setter():
    data = base()
    _set_dotted(data, "workload.classes.0.input_tokens", {"kind": "fixed", "tokens": 128}, "case 'c1'")
    assert data["workload"]["classes"][0]["input_tokens"] == {"kind": "fixed", "tokens": 128}
    with pytest.raises(SpecError, match=r"^case 'c1': overrides\.workload\.classes\.4\.weight: .*index below 1"):
        _set_dotted(data, "workload.classes.4.weight", 1, "case 'c1'")
    with pytest.raises(SpecError, match=r"^case 'c1': overrides\.model\.x: 'model' is a value"):
        _set_dotted(data, "model.x", 1, "case 'c1'")


def test_set_path_sets_in_place():
    data = {"fleet": {"replicas": 1}}
    set_path(data, "fleet.replicas", 4)
    assert data == {"fleet": {"replicas": 4}}
