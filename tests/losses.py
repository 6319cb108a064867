"""One registry of every public loss, so contract tests run over all of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

import jaxloss


class Case(NamedTuple):
    name: str
    fn: Callable[..., Any]
    target: str  # "probs" (softmax rows), "binary" (elementwise in [0,1]), "labels", "logits"
    per: str  # "example" (class axis reduced) or "element"
    kwargs: dict


CASES = [
    Case("softmax_cross_entropy", jaxloss.softmax_cross_entropy, "probs", "example", {}),
    Case(
        "softmax_cross_entropy[smooth]",
        jaxloss.softmax_cross_entropy,
        "probs",
        "example",
        {"label_smoothing": 0.1},
    ),
    Case("integer_ce", jaxloss.softmax_cross_entropy_with_integer_labels, "labels", "example", {}),
    Case(
        "integer_ce[all options]",
        jaxloss.softmax_cross_entropy_with_integer_labels,
        "labels",
        "example",
        {"label_smoothing": 0.1, "z_loss": 1e-3, "class_weights": "w", "ignore_index": 0},
    ),
    Case("nll_loss", jaxloss.nll_loss, "labels", "example", {"class_weights": "w"}),
    Case(
        "sigmoid_binary_cross_entropy",
        jaxloss.sigmoid_binary_cross_entropy,
        "binary",
        "element",
        {"pos_weight": "w", "label_smoothing": 0.1},
    ),
    Case("binary_cross_entropy", jaxloss.binary_cross_entropy, "binary", "element", {}),
    Case("sigmoid_focal_loss", jaxloss.sigmoid_focal_loss, "binary", "element", {"alpha": 0.25}),
    Case("softmax_focal_loss", jaxloss.softmax_focal_loss, "labels", "example", {"gamma": 2.0}),
    Case("poly1_cross_entropy", jaxloss.poly1_cross_entropy, "labels", "example", {"epsilon": 1.0}),
    Case("kl_divergence", jaxloss.kl_divergence, "probs", "example", {}),
    Case("js_divergence", jaxloss.js_divergence, "logits", "example", {}),
    Case("entropy", jaxloss.entropy, "none", "example", {}),
]

REDUCIBLE = [c for c in CASES if c.name != "entropy"]


def inputs(case: Case, logits: np.ndarray, rng: np.random.Generator, dtype=jnp.float64):
    """(args, kwargs) for `case` on logits of shape [..., C]."""
    c = logits.shape[-1]
    x = jnp.asarray(logits, dtype)
    if case.name == "binary_cross_entropy":
        x = jnp.asarray(1 / (1 + np.exp(-logits)), dtype)
    if case.name == "nll_loss":
        x = jnp.asarray(logits - np.log(np.exp(logits).sum(-1, keepdims=True)), dtype)
    kwargs = {
        k: (jnp.asarray(rng.uniform(0.5, 2.0, c), dtype) if v == "w" else v)
        for k, v in case.kwargs.items()
    }
    if case.target == "probs":
        p = rng.dirichlet(np.ones(c), logits.shape[:-1])
        return (x, jnp.asarray(p, dtype)), kwargs
    if case.target == "binary":
        return (x, jnp.asarray(rng.uniform(size=logits.shape), dtype)), kwargs
    if case.target == "labels":
        return (x, jnp.asarray(rng.integers(0, c, logits.shape[:-1]))), kwargs
    if case.target == "logits":
        return (x, jnp.asarray(rng.normal(size=logits.shape) * 2, dtype)), kwargs
    return (x,), kwargs
