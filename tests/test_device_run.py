"""calibration/device_run.sh, the one command for a lent GPU machine: its dry run here (no GPU, no
torch), with a fake wheel folder and the install skipped; its refusals, one line each; and the
download command of calibration/fetch_wheels.sh."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "calibration" / "device_run.sh"
WHEELS = (
    "simpy-4.1.2-py3-none-any.whl",
    "pydantic-2.14.4-py3-none-any.whl",
    "pydantic_core-2.50.5-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
    "annotated_types-0.8.0-py3-none-any.whl",
    "typing_inspection-0.4.5-py3-none-any.whl",
    "typing_extensions-4.16.0-py3-none-any.whl",
    "setuptools-80.9.0-py3-none-any.whl",
)

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and coreutils timeout"
)


def fake_wheels(folder: Path, names=WHEELS) -> Path:
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"")  # names only: the install is skipped
    return folder


def device_run(*args, wheels: Path, **env) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "PYTHON": sys.executable,
        "FLEETSIM_WHEELS": str(wheels),
        "FLEETSIM_SKIP_INSTALL": "1",
        **env,
    }
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=environment)


def test_dry_run_checks_everything_but_the_gpu_and_says_what_it_would_run(tmp_path):
    out = tmp_path / "out"
    r = device_run("--dry-run", out, wheels=fake_wheels(tmp_path / "wheels"))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "device_run.sh: dry run ok (nothing touched a GPU)" in lines
    summary = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in lines if line.startswith("  ")}
    assert summary["python"].startswith(sys.executable)
    assert summary["wheels"].startswith(f"{tmp_path / 'wheels'} (7:") and "pydantic_core-2.50.5" in summary["wheels"]
    assert summary["install"].startswith("skipped (FLEETSIM_SKIP_INSTALL=1")
    assert "fleetsim=0.1.0" in summary["imports"] and "`fleetsim calibrate` parses" in summary["imports"]
    run = summary["would run"]
    assert run.startswith("timeout -s TERM -k 30 ") and run.endswith(
        f"-m fleetsim calibrate --gpu 0 --quick --out {out}/profile.yaml"
    )
    assert int(run.split()[5]) <= 360  # the measurement's budget: the whole run stays under 8 minutes
    assert "profile.samples.csv" in summary["would write"] and "nvidia-smi.txt" in summary["would write"]
    assert sorted(p.name for p in out.iterdir()) == ["device_run.log"]  # nothing measured, nothing else written
    assert "dry run ok" in (out / "device_run.log").read_text()


def test_dry_run_names_the_gpu_to_measure(tmp_path):
    r = device_run("--dry-run", tmp_path / "out", wheels=fake_wheels(tmp_path / "wheels"), FLEETSIM_GPU="3")
    assert r.returncode == 0 and "calibrate --gpu 3 --quick" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "no output folder"),
        (("--dry-run", "a", "b"), "one output folder"),
        (("--fast", "out"), "unknown option --fast"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, args, message):
    r = device_run(*args, wheels=fake_wheels(tmp_path / "wheels"))
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert message in line and "usage: bash calibration/device_run.sh [--dry-run] OUT" in line


def test_a_missing_wheel_folder_or_wheel_is_one_line(tmp_path):
    r = device_run("--dry-run", tmp_path / "out", wheels=tmp_path / "none")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert "no wheel folder" in line and "calibration/fetch_wheels.sh" in line
    partial = fake_wheels(tmp_path / "partial", [w for w in WHEELS if not w.startswith("simpy")])
    r = device_run("--dry-run", tmp_path / "out", wheels=partial)
    assert r.returncode == 2 and "has no simpy wheel" in r.stderr


def test_wheels_for_another_python_stop_an_install(tmp_path):
    other = [w.replace("cp312", "cp399") for w in WHEELS]
    r = device_run(
        "--dry-run", tmp_path / "out", wheels=fake_wheels(tmp_path / "wheels", other), FLEETSIM_SKIP_INSTALL="0"
    )
    assert r.returncode == 2 and "is not for cp3" in r.stderr and "fetch_wheels.sh" in r.stderr


def test_a_real_run_without_torch_or_a_gpu_stops_in_one_line(tmp_path):
    pytest.importorskip("pynvml")
    try:
        import torch  # noqa: F401

        pytest.skip("torch is installed here: this checks the refusal without it")
    except ImportError:
        pass
    r = device_run(tmp_path / "out", wheels=fake_wheels(tmp_path / "wheels"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("device_run.sh: torch is not importable")


def test_fetch_wheels_downloads_binary_wheels_for_the_gpu_machine(tmp_path):
    r = subprocess.run(
        ["bash", str(ROOT / "calibration" / "fetch_wheels.sh"), str(tmp_path / "w")],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP": "echo pip"},  # print the command instead of downloading
    )
    assert r.returncode == 0, r.stderr
    command = r.stdout.splitlines()[0].split()
    assert command[:2] == ["pip", "download"]
    for flag in ("--only-binary=:all:", "manylinux2014_x86_64", "3.12", str(tmp_path / "w")):
        assert flag in command
    for package in (
        "simpy==",
        "pydantic==",
        "pydantic-core==",
        "annotated-types==",
        "typing-inspection==",
        "setuptools==",
    ):
        assert any(word.startswith(package) for word in command), package


def test_the_wheel_folder_is_not_committed():
    assert "/calibration/wheels/" in (ROOT / ".gitignore").read_text().splitlines()
