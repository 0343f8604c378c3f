"""Source notebooks: a tagged parameters cell first among code cells, no
outputs, and each paired with its jupytext percent script and in sync with it.
Execution of each notebook with its defaults is checked by nbval (`--nbval-lax`)."""

import json

import pytest

from bsr.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_and_no_outputs(path):
    nb = json.loads(path.read_text())
    cells = code_cells(nb)
    assert cells, "no code cells"
    assert "parameters" in cells[0].get("metadata", {}).get("tags", []), \
        "the first code cell must be tagged 'parameters' (papermill injects after it)"
    assert not any(c.get("outputs") for c in cells), "source notebooks must be stripped of outputs"
    assert all(c.get("execution_count") is None for c in cells)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_paired_script_in_sync(path):
    assert path.with_suffix(".py").is_file(), \
        f"{path.name} has no paired script: run `jupytext --set-formats ipynb,py:percent {path}`"
    nb = json.loads(path.read_text())
    assert "py:percent" in nb.get("metadata", {}).get("jupytext", {}).get("formats", ""), \
        f"{path.name} is not paired in its metadata: run `jupytext --set-formats ipynb,py:percent {path}`"
    jupytext = pytest.importorskip("jupytext")
    from_py = jupytext.read(path.with_suffix(".py"))
    src = lambda cells: [("".join(c["source"]) if isinstance(c["source"], list) else c["source"]).strip()
                         for c in cells]
    assert src(nb["cells"]) == src(from_py["cells"]), \
        f"{path.name} differs from {path.with_suffix('.py').name}: run `jupytext --sync {path}`"
