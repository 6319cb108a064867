"""Analytic gradients, and numerical checks with respect to the targets, in float64.

check_grads with respect to the logits of every loss is part of the contract
(test_contract.py::test_check_grads)."""

import jax
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxloss

from . import reference as ref


def test_softmax_cross_entropy_gradient_is_softmax_minus_targets(rng):
    x, y = rng.normal(size=(5, 6)), ref.softmax(rng.normal(size=(5, 6)))
    g = jax.grad(lambda x: jaxloss.softmax_cross_entropy(x, y).sum())(x)
    np.testing.assert_allclose(g, ref.softmax(x) - y, rtol=1e-10, atol=1e-14)


def test_integer_cross_entropy_gradient_is_softmax_minus_one_hot(rng):
    x, labels = rng.normal(size=(5, 6)), rng.integers(0, 6, 5)
    g = jax.grad(lambda x: jaxloss.softmax_cross_entropy_with_integer_labels(x, labels).sum())(x)
    np.testing.assert_allclose(g, ref.softmax(x) - np.eye(6)[labels], rtol=1e-10, atol=1e-14)
    # With smoothing and z-loss: softmax - smoothed one-hot + 2·z·lse·softmax.
    eps, z = 0.2, 0.01
    g = jax.grad(
        lambda x: jaxloss.softmax_cross_entropy_with_integer_labels(
            x, labels, label_smoothing=eps, z_loss=z
        ).sum()
    )(x)
    lse = np.log(np.exp(x).sum(-1, keepdims=True))
    want = ref.softmax(x) * (1 + 2 * z * lse) - ((1 - eps) * np.eye(6)[labels] + eps / 6)
    np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-14)


def test_sigmoid_bce_gradient_is_sigmoid_minus_targets(rng):
    x, y = rng.normal(size=(4, 3)) * 3, rng.uniform(size=(4, 3))
    g = jax.grad(lambda x: jaxloss.sigmoid_binary_cross_entropy(x, y).sum())(x)
    np.testing.assert_allclose(g, ref.sigmoid(x) - y, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("seed", range(6))
def test_check_grads_with_respect_to_targets(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(3, 4)), ref.softmax(rng.normal(size=(3, 4)))
    check_grads(lambda y: jaxloss.kl_divergence(x, y), (y,), order=2, eps=1e-5, atol=1e-5)
    check_grads(lambda y: jaxloss.softmax_cross_entropy(x, y), (y,), order=2, eps=1e-5, atol=1e-5)
    t = rng.uniform(0.1, 0.9, (3, 4))
    check_grads(lambda t: jaxloss.sigmoid_binary_cross_entropy(x, t), (t,), order=2, eps=1e-5)
