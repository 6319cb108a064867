"""Every public function is documented with a formula and an example, and the example runs."""

import doctest
import inspect

import numpy as np
import pytest

import jaxloss
from jaxloss import (
    _classification,
    _contrastive,
    _distillation,
    _divergence,
    _large_vocab,
    _margins,
    _metric,
    _overlap,
    _parallel,
    _ranking,
    _reduction,
    _regression,
    _sparse,
)

PUBLIC = sorted(n for n in dir(jaxloss) if not n.startswith("_") and callable(getattr(jaxloss, n)))


@pytest.mark.parametrize(
    "module",
    [
        _classification,
        _contrastive,
        _divergence,
        _distillation,
        _reduction,
        _large_vocab,
        _parallel,
        _margins,
        _metric,
        _overlap,
        _ranking,
        _regression,
        _sparse,
    ],
)
def test_doctests(module):
    np.set_printoptions(precision=4, suppress=True)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("name", PUBLIC)
def test_public_function_is_documented(name):
    doc = inspect.getdoc(getattr(jaxloss, name))
    assert doc and ".. math::" in doc and "Example:" in doc and ">>>" in doc, name
    assert "Args:" in doc and "Returns:" in doc, name


@pytest.mark.parametrize("name", PUBLIC)
def test_options_are_keyword_only(name):
    params = list(inspect.signature(getattr(jaxloss, name)).parameters.values())
    positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    # At most the model's output and the target; for the fused losses, hidden states and
    # projections (of both models when distilling).
    assert len(positional) <= 4, name
    # Only a regression target may be left out (optax's `targets=None`: a target of zeros).
    optional = [p for p in positional if p.default is not p.empty]
    assert all(p.name == "targets" and p.default is None for p in optional), name
