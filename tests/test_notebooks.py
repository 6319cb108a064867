"""Executes every research notebook top to bottom; a cell that raises fails its test.

The kernel is this interpreter (``sys.executable``), started from a kernel spec written to a
temporary directory, so the notebooks run against the same installation as the tests whatever
kernels are installed elsewhere. The notebooks run with ``notebooks/`` as working directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install jaxloss[notebooks]")
nbclient = pytest.importorskip("nbclient", reason="pip install jaxloss[notebooks]")
pytest.importorskip("ipykernel", reason="pip install jaxloss[notebooks]")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    spec_dir = tmp_path_factory.mktemp("kernels") / "python3"
    spec_dir.mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (test interpreter)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(spec_dir.parent)], ensure_native_kernel=False)


def test_notebooks_exist() -> None:
    names = {p.name for p in PATHS}
    assert {
        "01_cross_entropy_nll_entropy_kl.ipynb",
        "02_training_with_optax.ipynb",
        "03_large_vocabularies_and_distillation.ipynb",
        "04_distillation.ipynb",
        "05_contrastive_learning.ipynb",
        "06_ctc_digit_strips.ipynb",
        "07_sparse_outputs_and_margins.ipynb",
    } <= names


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    for cell in code:
        assert cell.outputs == [], f"{path.name}: a cell was saved with outputs"
        assert cell.execution_count is None, f"{path.name}: a cell was saved with a count"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs(path: Path, kernel_spec_manager: KernelSpecManager) -> None:
    nb = nbformat.read(path, as_version=4)
    # One extra cell reports the kernel's interpreter, to check it is this one.
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    before = sorted(p.name for p in NOTEBOOKS.iterdir())
    km = KernelManager(kernel_name="python3", kernel_spec_manager=kernel_spec_manager)
    client = nbclient.NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError naming the cell if any cell raises

    stdout = "".join(
        out.get("text", "") for out in nb.cells[-1].outputs if out.get("name") == "stdout"
    )
    assert Path(stdout.strip()) == Path(sys.executable)
    assert sorted(p.name for p in NOTEBOOKS.iterdir()) == before, "a notebook wrote files"
