"""The notebooks run top to bottom in a fresh kernel (this interpreter's), from notebooks/."""

import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("01_kv_architectures", "02_fleet_what_if", "03_procurement")


def test_the_shipped_notebooks_are_stored_without_outputs():
    found = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert found == sorted(NAMES)
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name} has stored outputs"
                # Only the public API: fleetsim and its sweep/plan/report entry points.
                for line in cell.source.splitlines():
                    if line.startswith(("import fleetsim.", "from fleetsim")):
                        assert line.split()[1] in ("fleetsim.sweep", "fleetsim.plan", "fleetsim.report.html"), line


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    elapsed = time.perf_counter() - t0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    # The kernel is this virtual environment's Python (the package under test).
    probe = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.prefix)")])
    nbclient.NotebookClient(probe, timeout=60, kernel_name="python3").execute()
    assert probe.cells[0].outputs[0]["text"].strip() == sys.prefix
    assert elapsed < 240, f"{name} took {elapsed:.0f} s"
