"""The example notebook runs top to bottom (nbclient) and is kept in git without outputs."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import ROOT

NOTEBOOK = ROOT / "docs" / "examples" / "seed-comparison.ipynb"
KERNEL = "alloctrace-tests"


def _read() -> Any:
    read: Callable[..., Any] = nbformat.read  # nbformat is not annotated
    return read(NOTEBOOK, as_version=4)


def test_notebook_is_stored_without_outputs() -> None:
    nb = _read()
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "the notebook has code"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec running this interpreter (the venv's python) with ipykernel."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "alloctrace (tests)", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # no deprecation warning from jupyter_core
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return KERNEL


def test_notebook_runs(kernel: str) -> None:
    nb = _read()
    client = NotebookClient(
        nb,
        kernel_name=kernel,
        timeout=180,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", "")) for out in outputs
    )
    assert re.search(r"'glibc[^']*': 8, 'jemalloc[^']*': 3\d", text), "8 mmaps against 30-odd"
    assert "jemalloc 5." in text and "libjemalloc.so.2" in text
    assert "glibc arena heap" in text
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 3, "the upfront chart and two address-space maps"
