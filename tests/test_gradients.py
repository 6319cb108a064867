"""Analytic gradients, and numerical checks to second order in float64 (reverse and forward)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxloss

from . import reference as ref
from .losses import CASES, inputs

RNG = np.random.default_rng(7)


def test_softmax_cross_entropy_gradient_is_softmax_minus_targets():
    x, y = RNG.normal(size=(5, 6)), ref.softmax(RNG.normal(size=(5, 6)))
    g = jax.grad(lambda x: jaxloss.softmax_cross_entropy(x, y).sum())(x)
    np.testing.assert_allclose(g, ref.softmax(x) - y, rtol=1e-10, atol=1e-14)


def test_integer_cross_entropy_gradient_is_softmax_minus_one_hot():
    x, labels = RNG.normal(size=(5, 6)), RNG.integers(0, 6, 5)
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


def test_sigmoid_bce_gradient_is_sigmoid_minus_targets():
    x, y = RNG.normal(size=(4, 3)) * 3, RNG.uniform(size=(4, 3))
    g = jax.grad(lambda x: jaxloss.sigmoid_binary_cross_entropy(x, y).sum())(x)
    np.testing.assert_allclose(g, ref.sigmoid(x) - y, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_check_grads_second_order(case):
    args, kwargs = inputs(case, RNG.normal(size=(3, 4)), RNG)
    if case.name == "binary_cross_entropy":
        args = (jnp.clip(args[0], 0.05, 0.95), *args[1:])
    f = lambda x: case.fn(x, *args[1:], **kwargs)  # noqa: E731
    check_grads(f, (args[0],), order=2, modes=("fwd", "rev"), eps=1e-5, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_check_grads_with_respect_to_targets(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(3, 4)), ref.softmax(rng.normal(size=(3, 4)))
    check_grads(lambda y: jaxloss.kl_divergence(x, y), (y,), order=2, eps=1e-5, atol=1e-5)
    check_grads(lambda y: jaxloss.softmax_cross_entropy(x, y), (y,), order=2, eps=1e-5, atol=1e-5)
    t = rng.uniform(0.1, 0.9, (3, 4))
    check_grads(lambda t: jaxloss.sigmoid_binary_cross_entropy(x, t), (t,), order=2, eps=1e-5)
