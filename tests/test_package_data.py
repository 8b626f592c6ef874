"""Every data file the package reads ships in a wheel: each non-Python file under fleetsim/ matches a
package-data pattern in pyproject.toml (an editable install would hide a missing one)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is in the standard library from Python 3.11")
def test_every_data_file_is_package_data():
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["fleetsim"]
    pkg = ROOT / "fleetsim"
    data = [
        p.relative_to(pkg).as_posix()
        for p in pkg.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    shipped = {q.relative_to(pkg).as_posix() for pat in patterns for q in pkg.glob(pat)}  # setuptools' globbing
    missing = [f for f in data if f not in shipped]
    assert data and not missing, missing
