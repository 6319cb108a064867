"""Divergences on log-targets and on unnormalised measures, and label smoothing as a function:
float64 oracles, identities, and the -inf / zero-target cases where optax gives NaN."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import log_softmax

import jaxloss

from . import reference as ref
from .conftest import assert_close


def test_kl_with_log_targets_is_kl_of_the_targets(rng):
    x, t = rng.normal(size=(4, 6)) * 2, rng.normal(size=(4, 6)) * 2
    log_p = log_softmax(t, -1)
    ours = jaxloss.kl_divergence_with_log_targets(x, log_p)
    assert_close(ours, ref.kl_log_targets(log_softmax(x, -1), log_p), rtol=1e-13)
    assert_close(ours, jaxloss.kl_divergence(x, np.exp(log_p)), rtol=1e-13)
    theirs = optax.losses.kl_divergence_with_log_targets(log_softmax(x, -1), log_p)
    assert_close(ours, theirs, rtol=1e-13)


def test_kl_with_minus_inf_log_targets_is_finite_where_optax_gives_nan():
    log_q = jnp.log(jnp.array([[0.25, 0.25, 0.5]]))
    log_p = jnp.log(jnp.array([[0.5, 0.5, 0.0]]))
    assert np.isnan(optax.losses.kl_divergence_with_log_targets(log_q, log_p)).all()
    f = jaxloss.kl_divergence_with_log_targets
    assert_close(f(log_q, log_p), [np.log(2.0)], rtol=1e-15)
    gq, gp = jax.grad(lambda q, p: jnp.sum(f(q, p)), argnums=(0, 1))(log_q, log_p)
    assert_close(gq, np.exp(log_q) - np.exp(log_p), rtol=1e-15)  # q - p
    assert np.all(np.isfinite(gp)) and gp[0, 2] == 0
    _, tangent = jax.jvp(lambda p: f(log_q, p), (log_p,), (jnp.ones_like(log_p),))
    assert np.isfinite(tangent).all()
    # A where that excludes a class ignores its target entirely.
    keep = jnp.array([True, True, False])
    assert_close(f(log_q, log_p, where=keep), [0.0], atol=1e-15, rtol=0)


def test_generalized_kl_matches_the_definition_and_is_a_bregman_divergence(rng):
    log_q, y = rng.normal(size=(5, 4)), rng.uniform(0.0, 3.0, (5, 4))
    ours = jaxloss.generalized_kl_divergence(log_q, y)
    assert_close(ours, ref.generalized_kl(log_q, y), rtol=1e-13)
    assert_close(ours, optax.losses.generalized_kl_divergence(log_q, y), rtol=1e-13)
    assert_close(jaxloss.convex_kl_divergence(log_q, y), ours, rtol=0)
    assert np.all(np.asarray(ours) >= 0)
    assert_close(jaxloss.generalized_kl_divergence(np.log(y), y), np.zeros(5), atol=1e-14, rtol=0)
    # Normalised measures: the KL divergence.
    p, lq = rng.dirichlet(np.ones(4), 5), log_softmax(log_q, -1)
    assert_close(jaxloss.generalized_kl_divergence(lq, p), jaxloss.kl_divergence(lq, p), rtol=1e-12)
    # Its gradient: q - y.
    grad = jax.grad(lambda l: jnp.sum(jaxloss.generalized_kl_divergence(l, y)))(log_q)
    assert_close(grad, np.exp(log_q) - y, rtol=1e-14)


def test_generalized_kl_of_zero_targets_where_optax_gives_nan():
    log_q = jnp.array([[0.0, -jnp.inf]])
    y = jnp.array([[1.0, 0.0]])
    assert np.isnan(optax.losses.generalized_kl_divergence(log_q, y)).all()
    f = jaxloss.generalized_kl_divergence
    assert f(log_q, y) == 0
    gl, gy = jax.grad(lambda l, y: jnp.sum(f(l, y)), argnums=(0, 1))(log_q, y)
    np.testing.assert_array_equal(gl, [[0.0, 0.0]])
    assert np.isfinite(gy[0, 0])
    _, their_gy = jax.grad(
        lambda l, y: jnp.sum(optax.losses.generalized_kl_divergence(l, y)), argnums=(0, 1)
    )(log_q, y)
    assert np.isnan(their_gy).any()


def test_smooth_labels_is_the_label_smoothing_option(rng):
    x = rng.normal(size=(4, 5))
    y = np.eye(5)[rng.integers(0, 5, 4)]
    smoothed = jaxloss.smooth_labels(y, 0.1)
    assert_close(smoothed, optax.smooth_labels(y, 0.1), rtol=1e-15)
    assert_close(
        jaxloss.softmax_cross_entropy(x, smoothed),
        jaxloss.softmax_cross_entropy(x, y, label_smoothing=0.1),
        rtol=1e-15,
    )
    keep = np.arange(5) < 4
    masked = jaxloss.smooth_labels(y[:, :4].copy() @ np.eye(4, 5), 0.2, where=keep)
    assert_close(np.sum(masked, -1), np.ones(4), rtol=1e-15)
    assert np.all(np.asarray(masked)[:, 4] == 0)
    half = jaxloss.smooth_labels(jnp.asarray(y, jnp.bfloat16), 0.1)
    assert half.dtype == jnp.bfloat16
    assert jaxloss.smooth_labels(y.T, 0.1, axis=0).shape == (5, 4)
    with pytest.raises(ValueError, match="alpha must lie in"):
        jaxloss.smooth_labels(y, 1.5)
    with pytest.raises(TypeError, match="labels must be a floating-point"):
        jaxloss.smooth_labels(jnp.array([0, 1]), 0.1)


def test_generalized_kl_where_keeps_excluded_classes_out_of_the_gradient():
    log_q = jnp.array([[1.0, 100.0, 0.5], [1.0, 2.0, 3.0]], jnp.float32)
    y = jnp.ones((2, 3), jnp.float32)
    keep = jnp.array([[True, False, True], [False, False, False]])
    f = jaxloss.generalized_kl_divergence
    value, grad = jax.value_and_grad(lambda l: f(l, y, where=keep, reduction="mean"))(log_q)
    lq = np.asarray(log_q, np.float64)[0, [0, 2]]
    exact = np.sum(-lq + np.exp(lq) - 1)  # the one row with a class: the mean's only row
    np.testing.assert_allclose(value, exact, rtol=4e-7)
    np.testing.assert_allclose(grad[0], [np.exp(1.0) - 1, 0, np.exp(0.5) - 1], rtol=4e-7)
    np.testing.assert_array_equal(grad[1], 0.0)
