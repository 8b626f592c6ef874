"""A lean core: nvidia-ml-py is only the `calibrate` extra's, nothing outside fleetsim/calibrate
imports it, and `fleetsim calibrate` without it is one line; the package ships its type marker."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Every module of the package but the calibration harness (and the `python -m` entry points, which run).
IMPORT_ALL = """
import pkgutil, importlib, sys
import fleetsim
names = [m.name for m in pkgutil.walk_packages(fleetsim.__path__, "fleetsim.")
         if not m.name.startswith("fleetsim.calibrate") and not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
"""


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_no_module_outside_calibrate_imports_pynvml():
    r = _python(IMPORT_ALL + "print(len(names), 'pynvml' in sys.modules)")
    assert r.returncode == 0, r.stderr
    count, imported = r.stdout.split()
    assert int(count) > 30 and imported == "False"


def test_the_package_imports_and_calibrate_says_what_to_install_without_nvidia_ml_py():
    blocked = "import sys\nsys.modules['pynvml'] = None  # as if nvidia-ml-py were not installed\n"
    run = "\nsys.argv = ['fleetsim', 'calibrate', '--gpu', '0']\nfrom fleetsim.cli import main\nmain()\n"
    r = _python(blocked + IMPORT_ALL + run)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == ["error: nvidia-ml-py is not installed: pip install 'fleetsim[calibrate]'"]


def test_nvidia_ml_py_is_an_extra_and_the_package_is_typed():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = project["project"]["dependencies"]
    extras = project["project"]["optional-dependencies"]
    assert not any(d.startswith("nvidia-ml-py") for d in deps)
    assert any(d.startswith("nvidia-ml-py") for d in extras["calibrate"])
    assert {"ruff", "mypy"} <= {d.split("~")[0].split(">")[0].split("=")[0] for d in extras["test"]}
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["fleetsim"]
    assert (ROOT / "fleetsim" / "py.typed").is_file()
    assert project["tool"]["mypy"]["files"] == ["fleetsim"]
