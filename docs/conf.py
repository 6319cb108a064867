"""Sphinx configuration of the jaxloss documentation.

Build from the repository root with::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The research notebooks live in ``notebooks/`` at the repository root; each build copies them
into ``docs/notebooks/`` (git-ignored) and executes them, so the site shows their outputs.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The reference and the executed pages both use the jaxloss of this source tree.
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
)

import jaxloss  # noqa: E402

# -- The notebooks: one source of truth in ../notebooks ---------------------------------------


def _sync_notebooks() -> None:
    """Mirrors ../notebooks/*.ipynb into docs/notebooks/, touching only what changed so that
    an incremental build re-executes only the notebooks that were edited."""
    src, dst = ROOT / "notebooks", DOCS / "notebooks"
    dst.mkdir(exist_ok=True)
    wanted = {p.name: p for p in src.glob("*.ipynb")}
    for stale in dst.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for name, path in wanted.items():
        target = dst / name
        if not target.exists() or not filecmp.cmp(path, target, shallow=False):
            shutil.copy2(path, target)


_sync_notebooks()

# -- The kernel that executes notebooks and guides: this interpreter --------------------------
# A kernel named "python3" may resolve to another Python (the first `python` on PATH, or a
# kernel installed elsewhere). Every notebook is run by a kernel spec that points at the
# interpreter running Sphinx, so the pages show this installation of jaxloss.

_KERNEL_DIR = DOCS / "_build" / "jupyter" / "kernels" / "jaxloss-docs"
_KERNEL_DIR.mkdir(parents=True, exist_ok=True)
(_KERNEL_DIR / "kernel.json").write_text(
    json.dumps(
        {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (jaxloss docs)",
            "language": "python",
        }
    )
)
os.environ["JUPYTER_PATH"] = os.pathsep.join(
    [str(_KERNEL_DIR.parent.parent), *filter(None, [os.environ.get("JUPYTER_PATH")])]
)
nb_kernel_rgx_aliases = {".*": "jaxloss-docs"}

# -- Project ----------------------------------------------------------------------------------

project = "jaxloss"
author = "the jaxloss authors"
copyright = "the jaxloss authors"
release = jaxloss.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
templates_path: list[str] = []

# -- API reference from the docstrings (Google style) -----------------------------------------

autodoc_typehints = "none"  # the signatures show names and defaults; Args say the rest
autodoc_preserve_defaults = True
autodoc_member_order = "bysource"
autosummary_generate = False  # the tables link to the hand-grouped family pages
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# -- Markdown, notebooks and their execution --------------------------------------------------

myst_enable_extensions = ["dollarmath", "amsmath", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "force"
nb_execution_timeout = 300  # seconds per cell
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# -- HTML -------------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"jaxloss {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
# MathJax is served from _static, so the pages render their formulas offline: es5/tex-svg.js
# of the npm package mathjax 3.2.2, with its LICENSE. The SVG output needs no web fonts,
# which browsers may refuse to load from file:// pages.
mathjax_path = "mathjax/tex-svg.js"
pygments_style = "friendly"
pygments_dark_style = "monokai"
