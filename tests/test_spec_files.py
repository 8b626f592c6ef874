"""Files that are not what they claim, and paths inside scenarios: one clear line, or a correct result."""

import os
import warnings
from pathlib import Path

import pytest
import yaml

from fleetsim.errors import FleetsimError, FleetsimWarning, SpecError
from fleetsim.scenario import load_scenario, parse_override
from fleetsim.spec.yaml_file import MAX_DEPTH, read_mapping, read_yaml

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "h100_llama3.yaml"


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    text = 'a: &a ["lol"]\n'
    prev = "a"
    for i in range(levels):
        name = f"l{i}"
        text += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * width) + "]\n"
        prev = name
    return text


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("deep.yaml", "[" * 50_000 + "]" * 50_000, f"nesting deeper than {MAX_DEPTH} levels"),
        ("deepmap.yaml", "".join("  " * i + f"k{i}:\n" for i in range(100)), "nesting deeper"),
        ("bomb.yaml", billion_laughs(), "alias bomb"),
        ("recursive.yaml", "a: &a [*a]\n", "recursive"),
        ("digits.yaml", "fleet: {replicas: " + "9" * 5000 + "}\n", "cannot be read"),
        ("date.yaml", "when: 2024-13-45\n", "month must be in 1..12"),
        ("latin1.yaml", "name: caf\xe9\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 9)"),
        ("nul.yaml", "name: a\x00b\n", "not valid YAML"),
        ("python.yaml", "x: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
        ("two.yaml", "a: 1\n---\nb: 2\n", "not valid YAML"),
    ],
)
def test_hostile_yaml_is_one_line(tmp_path, name, content, needle):
    path = write(tmp_path / name, content)
    with pytest.raises(SpecError) as exc:
        read_yaml(path, "scenario")
    assert needle in one_line(exc)


SHIPPED_YAML = sorted(p for folder in ("scenarios", "fleetsim", "calibration") for p in (ROOT / folder).rglob("*.y*ml"))


@pytest.mark.parametrize("path", SHIPPED_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_yaml_file_reads_as_before(path):
    """The bounded reader gives what yaml.safe_load gives (aliases included), except that a YAML
    1.2 float such as 1e3 is a number rather than the string '1e3'."""
    ours, theirs = read_yaml(path, "file"), yaml.safe_load(path.read_text(encoding="utf-8"))
    assert ours == theirs


def test_yaml_1_2_floats_are_numbers(tmp_path):
    data = read_yaml(write(tmp_path / "f.yaml", "a: 1e3\nb: -2.5E-3\nc: 10\nd: '1e3'\ne: 1_000\n"), "x")
    assert data == {"a": 1000.0, "b": -0.0025, "c": 10, "d": "1e3", "e": 1000}
    assert parse_override("run.duration_s=1e3") == ("run.duration_s", 1000.0)


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_devices_are_refused_before_reading(special):
    if not os.path.exists(special):
        pytest.skip(f"no {special}")
    with pytest.raises(SpecError, match="not a regular file"):
        read_mapping(special, "scenario")


def test_fifo_folder_and_size(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # nobody writes: a blocking open would hang
    with pytest.raises(SpecError, match="not a regular file"):
        read_mapping(fifo, "scenario")
    with pytest.raises(SpecError, match="is a folder"):
        read_mapping(tmp_path, "scenario")
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(17 * 1024 * 1024)  # sparse: no 17 MiB written
    with pytest.raises(SpecError, match=r"is 17,825,792 bytes; valid: a file of at most 16,777,216 bytes"):
        read_mapping(big, "scenario")


def test_missing_relative_file_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as exc:
        read_mapping("nope/s.yaml", "scenario")
    assert f"looked for {tmp_path / 'nope' / 's.yaml'}" in one_line(exc)


def test_values_echoed_are_capped(tmp_path):
    d = yaml.safe_load(SCENARIO.read_text())
    d["fleet"]["router"] = "x" * 10_000
    d["weight_dtype"] = "y" * 10_000
    for key in ("fleet", "weight_dtype"):
        one = yaml.safe_load(SCENARIO.read_text())
        one[key] = d[key]
        path = write(tmp_path / "s.yaml", yaml.safe_dump(one))
        with pytest.raises(SpecError) as exc:
            load_scenario(path)
        assert len(one_line(exc)) < 400
    one = yaml.safe_load(SCENARIO.read_text())
    one["x" * 5000] = 1
    with pytest.raises(SpecError) as exc:
        load_scenario(write(tmp_path / "k.yaml", yaml.safe_dump(one)))
    assert "unknown key" in one_line(exc)


# --------------------------------------------------------------------------- paths


def trace_scenario(folder: Path, trace: str) -> Path:
    d = yaml.safe_load(SCENARIO.read_text())
    d["workload"] = {"arrival": {"kind": "trace", "path": trace}}
    return write(folder / "scenario.yaml", yaml.safe_dump(d))


def test_relative_paths_are_relative_to_the_scenario_folder(tmp_path, monkeypatch):
    folder = tmp_path / "scen"
    (folder / "traces").mkdir(parents=True)
    write(folder / "traces" / "t.csv", "arrival_s,input_tokens,output_tokens\n0,10,2\n")
    write(tmp_path / "traces.csv", "arrival_s,input_tokens,output_tokens\n0,10,2\n")
    path = trace_scenario(folder, "traces/t.csv")
    for cwd in (tmp_path, folder / "traces"):  # never the working directory
        monkeypatch.chdir(cwd)
        assert load_scenario(path).workload.arrival.path == str(folder / "traces" / "t.csv")


def test_a_missing_relative_path_names_the_folder(tmp_path, monkeypatch):
    folder = tmp_path / "scen"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "t.csv", "arrival_s,input_tokens,output_tokens\n0,10,2\n")  # in the CWD only
    with pytest.raises(SpecError) as exc:
        load_scenario(trace_scenario(folder, "t.csv"))
    message = one_line(exc)
    assert message.startswith("workload.arrival.path: 't.csv' does not exist")
    assert f"looked for {folder / 't.csv'}" in message and "scenario file's folder" in message


def test_model_and_profile_paths_resolve_too(tmp_path):
    folder = tmp_path / "scen"
    folder.mkdir()
    config = ROOT / "tests" / "data" / "llama-3-8b.config.json"
    write(folder / "config.json", config.read_text())
    d = yaml.safe_load(SCENARIO.read_text())
    d["model"] = "./config.json"
    spec = load_scenario(write(folder / "s.yaml", yaml.safe_dump(d)))
    assert spec.model == str(folder / "config.json")
    d["model"] = "llama-3-8c"
    with pytest.raises(FleetsimError) as exc:
        load_scenario(write(folder / "s.yaml", yaml.safe_dump(d)))
    assert "model 'llama-3-8c' is unknown; did you mean: llama-3-8b" in one_line(exc)
    d["model"] = "meta-llama/Meta-Llama-3-8B"  # an alias, not a path
    assert load_scenario(write(folder / "s.yaml", yaml.safe_dump(d))).model == "meta-llama/Meta-Llama-3-8B"
    d["model"] = "llama-3-8b"
    d["fleet"]["profile"] = "profiles/mine.yaml"
    with pytest.raises(SpecError, match=r"fleet.profile: 'profiles/mine.yaml' does not exist \(looked for "):
        load_scenario(write(folder / "s.yaml", yaml.safe_dump(d)))


def test_a_path_that_climbs_out_is_allowed_with_a_warning(tmp_path):
    folder = tmp_path / "a" / "scen"
    folder.mkdir(parents=True)
    write(tmp_path / "shared.csv", "arrival_s,input_tokens,output_tokens\n0,10,2\n")
    path = trace_scenario(folder, "../../shared.csv")
    with pytest.warns(FleetsimWarning, match=r"climbs out of the scenario's folder .* reading .*shared.csv"):
        spec = load_scenario(path)
    assert spec.workload.arrival.path == str(tmp_path / "shared.csv")
    inside = trace_scenario(folder, "t.csv")
    write(folder / "t.csv", "arrival_s,input_tokens,output_tokens\n0,10,2\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_scenario(inside)


def test_a_mapping_in_python_keeps_its_paths():
    d = yaml.safe_load(SCENARIO.read_text())
    d["workload"] = {"arrival": {"kind": "trace", "path": "relative/t.csv"}}
    assert load_scenario(d).workload.arrival.path == "relative/t.csv"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("a=" + "[" * 1000 + "]" * 1000, "nesting deeper"),
        ("a." * 100 + "b=1", "not a dotted field path"),
        ("fleet..replicas=1", "not a dotted field path"),
        ("fleet.replicas=" + "9" * 5000, "cannot be read"),
    ],
)
def test_bad_set_values(text, needle):
    with pytest.raises(SpecError) as exc:
        parse_override(text)
    assert needle in one_line(exc)


def test_set_text_that_is_not_yaml_stays_text():
    assert parse_override("name=a: b: c") == ("name", "a: b: c")


@pytest.mark.parametrize(
    "field, value", [("fleet.gpu", "/dev/zero"), ("model", "/dev/urandom"), ("fleet.profile", "/dev/null")]
)
def test_a_device_named_in_a_scenario_is_refused_before_any_reader_opens_it(field, value):
    if not os.path.exists(value):
        pytest.skip(f"no {value}")
    d = yaml.safe_load(SCENARIO.read_text())
    with pytest.raises(SpecError) as exc:
        load_scenario(d, {field: value})
    assert one_line(exc) == f"{field}: '{value}' is not a regular file (a device, pipe or socket); valid: a file"


def test_a_fifo_named_as_the_model_is_refused(tmp_path):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    d = yaml.safe_load(SCENARIO.read_text())
    d["model"] = "./config.json"
    with pytest.raises(SpecError, match="model: .* is not a regular file"):
        load_scenario(write(tmp_path / "s.yaml", yaml.safe_dump(d)))
