"""The machinery of `python -m bench.optax_suite` (the swap, the plugin, the records), on a tiny
generated test file; optax's own suite is not run here."""

import sys
import textwrap

import pytest

optax = pytest.importorskip("optax")
losses = pytest.importorskip("optax.losses")

import jaxloss  # noqa: E402
from bench import optax_suite  # noqa: E402


@pytest.fixture
def restored():
    """Undo `optax_suite.swap()`: optax's and optax.losses' names and sys.modules' entries."""
    saved = {m: dict(vars(m)) for m in (optax, losses)}
    entries = {k: v for k, v in sys.modules.items() if k.startswith("optax.losses.")}
    yield
    for module, names in saved.items():
        for name, value in names.items():
            setattr(module, name, value)
    sys.modules.update(entries)


def test_swap_replaces_the_public_names_only(restored):
    from optax.losses import _classification as real

    original = real.softmax_cross_entropy
    assert "softmax_cross_entropy" in optax_suite.swappable()
    assert "poly_loss_cross_entropy" not in optax_suite.swappable()
    done = optax_suite.swap()
    assert "softmax_cross_entropy" in done["optax.losses._classification"]

    from optax.losses import _classification

    ours = jaxloss.softmax_cross_entropy
    assert _classification is not real
    assert _classification.softmax_cross_entropy is ours
    assert sys.modules["optax.losses._classification"].softmax_cross_entropy is ours
    assert losses.softmax_cross_entropy is ours
    assert optax.softmax_cross_entropy is ours
    # Names jaxloss does not offer, and optax's helpers, stay optax's; so do the originals
    # and the module optax's own functions run in.
    assert _classification.poly_loss_cross_entropy is real.poly_loss_cross_entropy
    assert _classification.canonicalize_axis is real.canonicalize_axis
    assert _classification.__optax_module__ is real
    assert real.softmax_cross_entropy is original
    assert real.poly_loss_cross_entropy.__globals__["softmax_cross_entropy"] is original


PROBE = """
import jax
import numpy as np
import pytest
from optax.losses import _classification

AT_IMPORT = _classification.softmax_cross_entropy  # the swap precedes the import


def test_swapped_before_import():
    assert AT_IMPORT.__module__.startswith("{module}")


def test_no_strict_flags():
    assert not jax.config.jax_enable_x64


def test_positional_option():
    x = np.zeros((2, 3), np.float32)
    _classification.softmax_cross_entropy(x, x, -1)


def test_fails():
    assert 1 == 2, "boom"


def test_skipped():
    pytest.skip("not today")


@pytest.fixture
def broken():
    raise RuntimeError("no fixture")


def test_error(broken):
    pass
"""


def _run(tmp_path, swapped):
    probe = tmp_path / "_probe_test.py"
    probe.write_text(textwrap.dedent(PROBE.format(module="jaxloss" if swapped else "optax")))
    run = optax_suite.run_pytest([probe], swapped=swapped)
    assert "softmax_cross_entropy" in run["names"]
    return {r["test"].rsplit("::", 1)[-1]: r for r in run["tests"]}, run["exit_code"], run["output"]


def test_runner_reports_each_outcome(tmp_path):
    by_name, code, output = _run(tmp_path, swapped=True)
    assert code == 1, output
    outcome = {name: r["outcome"] for name, r in by_name.items()}
    assert outcome == {
        "test_swapped_before_import": "passed",
        "test_no_strict_flags": "passed",
        "test_positional_option": "failed",
        "test_fails": "failed",
        "test_skipped": "skipped",
        "test_error": "error",
    }
    assert {r["file"] for r in by_name.values()} == {"probe"}
    positional = by_name["test_positional_option"]
    assert positional["jaxloss"] == ["softmax_cross_entropy"]
    assert positional["message"].startswith("TypeError:")
    assert positional["cause"] == "keyword-only options"
    assert by_name["test_fails"]["message"] == "AssertionError: boom"
    assert by_name["test_fails"]["jaxloss"] == []
    assert by_name["test_fails"]["cause"] == "no jaxloss function"
    assert by_name["test_skipped"]["message"] == "not today"
    assert "RuntimeError: no fixture" in by_name["test_error"]["message"]

    rows = optax_suite.summary(list(by_name.values()))
    assert [r["file"] for r in rows] == ["probe", "total"]
    assert rows[-1] | {"file": "probe"} == rows[0]
    assert (rows[0]["tests"], rows[0]["passed"], rows[0]["failed"]) == (6, 2, 2)
    assert (rows[0]["error"], rows[0]["skipped"], rows[0]["no jaxloss"]) == (1, 1, 4)
    assert "test_fails" in optax_suite.failures(list(by_name.values()))


def test_cause_rules():
    def cause(message, test="T::test_x", ours=("kl_divergence",)):
        return optax_suite.cause({"test": test, "message": message, "jaxloss": list(ours)})

    assert cause("TypeError: f() takes 2 positional arguments but 3 were given") == (
        "keyword-only options"
    )
    unexpected = "TypeError: f() got an unexpected keyword argument 'labels'"
    assert cause(unexpected) == "parameter name"
    assert cause("AssertionError: x", test="T::test_mask0") == "where semantics"
    assert cause("AssertionError: x; Max relative difference: 1e-05") == "rounding"
    assert cause("AssertionError: x; Max relative difference: 0.5") == "values differ"
    assert cause("AssertionError: x", ours=()) == "no jaxloss function"
