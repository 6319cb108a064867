"""The README stays true: its Python example runs, and its test command is the one CI runs."""

import re
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_python_example_runs_and_trains():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    scope: dict = {}
    # optax itself needs the default promotion rules, which the test run makes strict.
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        for block in blocks:
            exec(compile(block, "README.md", "exec"), scope)
        first = float(scope["loss"])
        params, state = scope["params"], scope["state"]
        for _ in range(20):
            params, state, loss = scope["step"](params, state, scope["x"], scope["y"])
    assert np.isfinite(first) and float(loss) < first


def test_readme_commands_match_ci():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m bench" in README
    test_command = re.search(r"pip install -e \"\.\[dev\]\" && (pytest[^\n]*)", README).group(1)
    assert test_command.strip() in ci.splitlines()


def test_the_table_of_losses_names_every_public_function():
    import jaxloss

    table = README.split("## The losses", 1)[1].split("\n## ", 1)[0]
    public = [n for n in dir(jaxloss) if not n.startswith("_") and callable(getattr(jaxloss, n))]
    missing = [n for n in public if f"`{n}(" not in table]
    assert not missing, f"add rows for {missing} to the README's table of losses"
