"""Regression losses: float64 oracles, optax where it agrees, and where it does not (log-cosh
of small errors, cosine of a zero vector, half precision)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss

from . import reference as ref
from .conftest import F32_ULP, assert_close

ELEMENTWISE = ["squared_error", "l2_loss", "huber_loss", "log_cosh"]


def _optax(fn, *args, **kwargs):
    with jax.numpy_dtype_promotion("standard"):
        return fn(*args, **kwargs)


def _oracle(name, e):
    return {
        "squared_error": lambda e: e**2,
        "l2_loss": lambda e: 0.5 * e**2,
        "huber_loss": ref.huber,
        "log_cosh": ref.log_cosh,
    }[name](np.asarray(e, np.float64))


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_match_the_definition_and_optax(name, rng):
    p, t = rng.normal(size=(4, 5)) * 3, rng.normal(size=(4, 5))
    fn = getattr(jaxloss, name)
    assert_close(fn(p, t), _oracle(name, p - t), rtol=1e-14)
    # optax's log-cosh, logaddexp(e, -e) - log 2, cancels for small errors: 1e-13 here.
    rtol = 1e-11 if name == "log_cosh" else 1e-14
    assert_close(fn(p, t), _optax(getattr(optax.losses, name), p, t), rtol=rtol)
    assert_close(fn(p), _oracle(name, p), rtol=1e-14)  # no targets: a target of zeros
    assert_close(fn(p, t[0]), _oracle(name, p - t[0]), rtol=1e-14)  # broadcast targets


def test_gradients_are_the_known_derivatives(rng):
    e = rng.normal(size=50) * 3

    def grad(fn, **kw):
        return jax.grad(lambda e: jnp.sum(fn(e, **kw)))(e)

    assert_close(grad(jaxloss.squared_error), 2 * e, rtol=1e-15)
    assert_close(grad(jaxloss.l2_loss), e, rtol=1e-15)
    assert_close(grad(jaxloss.huber_loss, delta=1.5), np.clip(e, -1.5, 1.5), rtol=1e-14)
    assert_close(grad(jaxloss.log_cosh), np.tanh(e), rtol=1e-14)


def test_log_cosh_is_accurate_in_float32_at_every_size():
    # A grid from 1e-6 to 20 and beyond, both signs: relative error below 8 * 2**-23 (the
    # series below 1/4; sinh's rounding, doubled by the square, below 1; three rounded terms
    # above), no overflow.
    x = np.concatenate([np.geomspace(1e-6, 1, 300), np.linspace(1, 20, 200), [60.0, 1e4, 3e38]])
    x = np.float32(np.concatenate([x, -x]))
    got = jaxloss.log_cosh(jnp.asarray(x))
    assert got.dtype == jnp.float32
    x64 = x.astype(np.float64)
    exact = np.where(
        np.abs(x64) < 700, ref.log_cosh(np.clip(x64, -700, 700)), np.abs(x64) - np.log(2.0)
    )
    np.testing.assert_allclose(got, exact, rtol=8 * F32_ULP)
    grad = jax.vmap(jax.grad(jaxloss.log_cosh))(jnp.asarray(x))
    np.testing.assert_allclose(grad, np.tanh(x64), rtol=8 * F32_ULP)


def test_log_cosh_of_a_small_error_where_optax_loses_its_digits():
    e = jnp.float32(1e-3)
    exact = ref.log_cosh(np.float32(1e-3))  # 4.9999996e-07
    theirs = float(optax.losses.log_cosh(e))
    assert abs(theirs - exact) / exact > 0.05  # logaddexp(e, -e) - log 2 cancels
    np.testing.assert_allclose(jaxloss.log_cosh(e), exact, rtol=2 * F32_ULP)


def test_huber_delta_must_be_positive():
    with pytest.raises(ValueError, match="delta must be > 0"):
        jaxloss.huber_loss(jnp.ones(2), delta=0.0)


def test_cosine_matches_the_definition_and_optax(rng):
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    assert_close(jaxloss.cosine_similarity(a, b), ref.cosine(a, b), rtol=1e-14)
    assert_close(jaxloss.cosine_distance(a, b), 1 - ref.cosine(a, b), rtol=1e-14)
    assert_close(jaxloss.cosine_similarity(a, b), optax.losses.cosine_similarity(a, b), rtol=1e-14)
    theirs = optax.losses.cosine_similarity(a, b, epsilon=0.5)
    assert_close(jaxloss.cosine_similarity(a, b, epsilon=0.5), theirs, rtol=1e-14)
    keep = np.arange(4) < 3
    assert_close(
        jaxloss.cosine_similarity(a, b, where=keep), ref.cosine(a[:, :3], b[:, :3]), rtol=1e-14
    )
    assert_close(jaxloss.cosine_similarity(a.T, b.T, axis=0), ref.cosine(a, b), rtol=1e-14)


def test_cosine_of_a_zero_vector_is_finite_where_optax_gives_nan():
    z, b = jnp.zeros((1, 3)), jnp.array([[1.0, 2.0, 2.0]])
    assert np.isnan(optax.losses.cosine_similarity(z, b)).all()
    assert jaxloss.cosine_similarity(z, b) == 0 and jaxloss.cosine_distance(z, b) == 1
    for fn in (jaxloss.cosine_similarity, jaxloss.cosine_distance):
        ga, gb = jax.grad(lambda a, b, fn=fn: jnp.sum(fn(a, b)), argnums=(0, 1))(z, b)
        np.testing.assert_array_equal(ga, 0.0)
        np.testing.assert_array_equal(gb, 0.0)
    # The gradient of a non-zero pair: orthogonal to a, of norm |sin| / |a|.
    a = jnp.array([3.0, 4.0, 0.0])
    g = jax.grad(lambda a: jaxloss.cosine_similarity(a, b[0]))(a)
    assert abs(float(jnp.dot(g, a))) < 1e-15


def test_half_precision_comes_back_float32(rng):
    p = jnp.asarray(rng.normal(size=(3, 8)), jnp.bfloat16)
    t = jnp.asarray(rng.normal(size=(3, 8)), jnp.bfloat16)
    exact = np.asarray(p, np.float64) - np.asarray(t, np.float64)
    for name in ELEMENTWISE:
        out = getattr(jaxloss, name)(p, t)
        assert out.dtype == jnp.float32, name
        assert_close(out, _oracle(name, exact), rtol=4 * F32_ULP, atol=F32_ULP)
    # optax computes and returns bfloat16.
    assert _optax(optax.losses.squared_error, p, t).dtype == jnp.bfloat16
    assert jaxloss.cosine_similarity(p, t).dtype == jnp.float32


def test_bad_input_names_the_argument():
    with pytest.raises(TypeError, match="predictions must be a floating-point"):
        jaxloss.squared_error(jnp.ones(3, jnp.int32))
    with pytest.raises(ValueError, match="targets of shape"):
        jaxloss.l2_loss(jnp.ones(3), jnp.ones(4))
    with pytest.raises(ValueError, match="predictions and targets must have the same shape"):
        jaxloss.cosine_similarity(jnp.ones((2, 3)), jnp.ones((3,)))
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        jaxloss.cosine_distance(jnp.ones(3), jnp.ones(3), epsilon=-1.0)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_excluded_elements_reach_neither_value_nor_gradient(name):
    # A NaN target standing for a missing one, excluded by `where`.
    fn = getattr(jaxloss, name)
    p, t = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, jnp.nan, 1.0])
    keep = jnp.array([True, False, True])
    value, grad = jax.value_and_grad(lambda p: fn(p, t, where=keep, reduction="mean"))(p)
    e = np.array([0.5, 2.0])
    assert_close(value, _oracle(name, e).mean(), rtol=1e-6)
    assert np.all(np.isfinite(grad)) and grad[1] == 0


def test_huber_gradient_at_infinite_errors_is_delta():
    grad = jax.grad(lambda e: jnp.sum(jaxloss.huber_loss(e, delta=0.5)))
    np.testing.assert_array_equal(grad(jnp.array([jnp.inf, -jnp.inf, 0.25])), [0.5, -0.5, 0.25])


@pytest.mark.parametrize("scale", [1e-13, 1e-10, 1e10, 1e19])
def test_cosine_of_tiny_and_huge_vectors_in_float32(scale):
    # The product of the two squared norms under- or overflows long before either norm does.
    a = jnp.array([[scale, 0.0, scale]], jnp.float32)
    b = jnp.array([[1.0, 0.0, 1.0]], jnp.float32)
    np.testing.assert_allclose(jaxloss.cosine_similarity(a, a), [1.0], rtol=4 * F32_ULP)
    np.testing.assert_allclose(jaxloss.cosine_similarity(a, b), [1.0], rtol=4 * F32_ULP)
