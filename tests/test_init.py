"""`fleetsim init`: a commented starter scenario that loads, runs, and lists every field."""

import json
import typing

import pytest
import yaml
from pydantic import BaseModel
from test_cli_memory import run_in_process

import fleetsim
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.sweep import admitted_types


@pytest.fixture
def fleetsim_cli(monkeypatch, capsys):
    return lambda *args: run_in_process(monkeypatch, capsys, *args)


def test_init_writes_a_scenario_that_loads_and_runs(tmp_path, fleetsim_cli):
    path = tmp_path / "my.yaml"
    r = fleetsim_cli("init", path)
    assert r.returncode == 0, r.stderr
    assert f"wrote {path}" in r.stdout and f"fleetsim run {path}" in r.stdout
    spec = fleetsim.load_scenario(path)
    assert spec.model == "llama-3-8b" and spec.fleet.replicas == 2
    run = fleetsim_cli("run", path, "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["requests"]["completed"] > 0 and summary["fleet"]["gpu"] == "h100-sxm"


def test_init_defaults_to_scenario_yaml_in_the_working_folder(tmp_path, monkeypatch, fleetsim_cli):
    monkeypatch.chdir(tmp_path)
    assert fleetsim_cli("init").returncode == 0
    assert fleetsim.load_scenario(tmp_path / "scenario.yaml").name == "my-scenario"


def test_init_refuses_to_overwrite_without_force(tmp_path, fleetsim_cli):
    path = tmp_path / "mine.yaml"
    path.write_text("# my own scenario\n")
    r = fleetsim_cli("init", path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and "--force" in lines[0]
    assert path.read_text() == "# my own scenario\n"  # untouched, and not echoed
    assert "my own scenario" not in r.stderr
    assert fleetsim_cli("init", path, "--force").returncode == 0
    fleetsim.load_scenario(path)


def test_init_under_a_file_is_one_line(tmp_path, fleetsim_cli):
    (tmp_path / "f").write_text("x")
    r = fleetsim_cli("init", tmp_path / "f" / "s.yaml")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "is a file" in r.stderr


def _spec_of(annotation, value):
    models = [t for t in admitted_types(annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
    if not isinstance(value, dict) or not models:
        return None
    return next(
        (m for m in models if m.model_fields.get("kind") and m.model_fields["kind"].default == value.get("kind")),
        models[0],
    )


def _missing(model, data, path=""):
    """Fields of the spec (and of the kinds the file chose) that the file leaves out."""
    missing = []
    for name, info in model.model_fields.items():
        if name not in data:
            missing.append(path + name)
            continue
        sub = _spec_of(info.annotation, data[name])
        if sub is not None:
            missing += _missing(sub, data[name], f"{path}{name}.")
        for t in admitted_types(info.annotation):
            if typing.get_origin(t) in (tuple, list) and isinstance(data[name], list):
                item = _spec_of(typing.get_args(t)[0], {})
                for i, v in enumerate(data[name]):
                    if item is not None:
                        missing += _missing(item, v, f"{path}{name}.{i}.")
    return missing


def test_the_starter_lists_every_field_each_with_a_comment_above_it(tmp_path, fleetsim_cli):
    path = tmp_path / "s.yaml"
    fleetsim_cli("init", path)
    text = path.read_text()
    assert _missing(ScenarioSpec, yaml.safe_load(text)) == []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            assert lines[i - 1].strip().startswith("#"), f"line {i + 1} has no comment above it: {line!r}"
    for unit in ("seconds", "tokens", "requests per second", "USD per GPU-hour", "kW"):
        assert unit in text
