"""Margin losses (binary and Crammer–Singer) and the listwise ranking loss: float64 oracles,
optax where it agrees, its traps where it does not, gradients and the label policy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss

from . import reference as ref
from .conftest import F32_ULP, assert_close


def _optax(fn, *args, **kwargs):
    with jax.numpy_dtype_promotion("standard"):
        return fn(*args, **kwargs)


@pytest.mark.parametrize("name, margin", [("hinge_loss", 1.0), ("perceptron_loss", 0.0)])
def test_binary_margins_match_the_definition_and_optax(name, margin, rng):
    s = rng.normal(size=(4, 6)) * 2
    signs = rng.choice([-1.0, 1.0], (4, 6))
    fn = getattr(jaxloss, name)
    assert_close(fn(s, signs), ref.hinge(s, signs, margin), rtol=1e-15)
    assert_close(fn(s, signs), _optax(getattr(optax.losses, name), s, signs), rtol=1e-15)
    # {0, 1} targets read as {-1, +1}: optax takes 0 literally (a constant loss, no gradient).
    bits = (signs > 0).astype(np.int32)
    assert_close(fn(s, bits), ref.hinge(s, signs, margin), rtol=1e-15)
    assert_close(fn(s, jnp.asarray(bits, bool)), ref.hinge(s, signs, margin), rtol=1e-15)
    zeros = np.zeros_like(s)
    if margin:
        np.testing.assert_array_equal(_optax(optax.losses.hinge_loss, s, zeros), 1.0)
    grad = jax.grad(lambda s: jnp.sum(fn(s, bits)))(s)
    expected = np.where(ref.hinge(s, signs, margin) > 0, -signs, 0.0)
    np.testing.assert_array_equal(grad, expected)


def test_binary_targets_outside_the_two_sets_are_rejected():
    s = jnp.zeros(3)
    for bad in ([0.5, 1.0, 1.0], [-1, 0, 1], [2, 1, 1]):
        with pytest.raises(ValueError, match="targets must all lie in"):
            jaxloss.hinge_loss(s, jnp.asarray(bad))
    # Under jit the values cannot be checked: never a silent number.
    out = jax.jit(jaxloss.perceptron_loss)(s, jnp.array([0.5, 1.0, -1.0]))
    assert np.isnan(out[0]) and np.all(np.isfinite(out[1:]))
    with pytest.raises(ValueError, match="logits and targets must have the same shape"):
        jaxloss.hinge_loss(s, jnp.ones(4))


def test_binary_where_and_reductions(rng):
    s, signs = rng.normal(size=(3, 4)), rng.choice([-1.0, 1.0], (3, 4))
    keep = rng.uniform(size=(3, 4)) > 0.4
    full = ref.hinge(s, signs)
    mean = jaxloss.hinge_loss(s, signs, where=keep, reduction="mean")
    assert_close(mean, full[keep].mean(), rtol=1e-15)
    none = jaxloss.hinge_loss(s, signs, where=keep)
    assert_close(none, np.where(keep, full, 0), rtol=1e-15)
    assert jaxloss.hinge_loss(s, signs, where=np.zeros((3, 4), bool), reduction="mean") == 0


@pytest.mark.parametrize(
    "name, margin", [("multiclass_hinge_loss", 1.0), ("multiclass_perceptron_loss", 0.0)]
)
def test_multiclass_margins_match_the_definition_and_optax(name, margin, rng):
    s = rng.normal(size=(8, 5)) * 2
    y = rng.integers(0, 5, 8)
    fn = getattr(jaxloss, name)
    assert_close(fn(s, y), ref.multiclass_hinge(s, y, margin), rtol=1e-15)
    assert_close(fn(s, y), _optax(getattr(optax.losses, name), s, y), rtol=1e-14)
    # The gradient: e_{c*} - e_y where the margin is violated, else 0.
    grad = np.asarray(jax.grad(lambda s: jnp.sum(fn(s, y)))(s))
    for i in range(8):
        rival = np.where(np.arange(5) == y[i], -np.inf, s[i]).argmax()
        expected = np.zeros(5)
        if margin + s[i, rival] - s[i, y[i]] > 0:
            expected[rival], expected[y[i]] = 1.0, -1.0
        np.testing.assert_array_equal(grad[i], expected)


def test_multiclass_hinge_where_axis_and_a_single_class(rng):
    s = rng.normal(size=(4, 5))
    y = rng.integers(0, 4, 4)
    keep = np.arange(5) < 4
    assert_close(
        jaxloss.multiclass_hinge_loss(s, y, where=keep),
        ref.multiclass_hinge(s[:, :4], y),
        rtol=1e-15,
    )
    moved = jaxloss.multiclass_hinge_loss(s.T, y, axis=0)
    assert_close(moved, ref.multiclass_hinge(s, y), rtol=1e-15)
    # One class: nothing to beat, loss 0 (and its gradient 0).
    one = jaxloss.multiclass_hinge_loss(jnp.ones((3, 1)), jnp.zeros(3, jnp.int32))
    np.testing.assert_array_equal(one, 0.0)


def test_multiclass_labels_out_of_range():
    s = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        jaxloss.multiclass_hinge_loss(s, jnp.array([0, 3]))
    # optax scores label -1 as the last class and 3 as no class at all, silently.
    assert np.all(np.isfinite(_optax(optax.losses.multiclass_hinge_loss, s, jnp.array([-1, 3]))))
    out = jax.jit(jaxloss.multiclass_perceptron_loss)(s, jnp.array([-1, 1]))
    assert np.isnan(out[0]) and out[1] == 0
    with pytest.raises(TypeError, match="labels must be an integer array"):
        jaxloss.multiclass_hinge_loss(s, jnp.zeros(2))


def test_half_precision_margins_come_back_float32(rng):
    s = jnp.asarray(rng.normal(size=(4, 6)), jnp.bfloat16)
    y = jnp.asarray(rng.integers(0, 6, 4))
    exact = ref.multiclass_hinge(np.asarray(s, np.float64), np.asarray(y))
    out = jaxloss.multiclass_hinge_loss(s, y)
    assert out.dtype == jnp.float32
    assert_close(out, exact, rtol=2 * F32_ULP, atol=F32_ULP)
    # optax's binary hinge returns bfloat16: the loss itself is rounded to 8 bits.
    signs = jnp.ones(s.shape, jnp.bfloat16)
    assert _optax(optax.losses.hinge_loss, s, signs).dtype == jnp.bfloat16
    assert jaxloss.hinge_loss(s, signs).dtype == jnp.float32


def test_ranking_matches_the_definition_and_optax(rng):
    s = rng.normal(size=(5, 7))
    rel = rng.integers(0, 4, (5, 7))
    valid = rng.uniform(size=(5, 7)) > 0.3
    valid[2] = False  # a list with no valid item
    out = jaxloss.ranking_softmax_loss(s, rel, where=valid)
    assert_close(out, ref.ranking_softmax(s, rel, valid), rtol=1e-14)
    assert out[2] == 0
    mean = jaxloss.ranking_softmax_loss(s, rel, where=valid, reduction="mean")
    assert_close(mean, out.sum() / 4, rtol=1e-14)  # the empty list is not counted
    relf = rel.astype(np.float64)
    assert_close(mean, _optax(optax.losses.ranking_softmax_loss, s, relf, where=valid), rtol=1e-14)
    w = rng.uniform(0.5, 2.0, (5, 7))
    weighted = jaxloss.ranking_softmax_loss(s, rel, where=valid, weights=w)
    assert_close(weighted, ref.ranking_softmax(s, w * rel, valid), rtol=1e-14)


def test_ranking_gradient_is_finite_for_an_empty_list():
    s = jnp.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    rel = jnp.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    valid = jnp.array([[True, True, True], [False, False, False]])
    grad = jax.grad(lambda s: jaxloss.ranking_softmax_loss(s, rel, where=valid, reduction="mean"))(
        s
    )
    p = np.exp(np.asarray(s[0])) / np.exp(np.asarray(s[0])).sum()
    assert_close(grad[0], p - np.array([1.0, 0, 0]), rtol=1e-14)
    np.testing.assert_array_equal(grad[1], 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        jaxloss.ranking_softmax_loss(s, -rel)
    with pytest.raises(TypeError, match="labels must be graded relevance"):
        jaxloss.ranking_softmax_loss(s, rel > 0)


def test_excluded_elements_and_minus_inf_scores():
    s = jnp.array([0.5, jnp.nan, 2.0])
    keep = jnp.array([True, False, True])
    for fn in (jaxloss.hinge_loss, jaxloss.perceptron_loss, jaxloss.sparsemax_loss):
        grad = jax.grad(lambda s, fn=fn: fn(s, jnp.ones(3), where=keep, reduction="sum"))(s)
        assert np.all(np.isfinite(grad)) and grad[1] == 0, fn.__name__
    # No rival, or none with a finite score: the loss is 0, also at a -inf label score.
    for name in ("multiclass_hinge_loss", "multiclass_perceptron_loss"):
        fn = getattr(jaxloss, name)
        assert fn(jnp.array([[-jnp.inf]]), jnp.array([0])) == 0
        assert fn(jnp.full((1, 3), -jnp.inf), jnp.array([0])) == 0
        grad = jax.grad(lambda x, fn=fn: jnp.sum(fn(x, jnp.array([0]))))(
            jnp.array([[-jnp.inf, 0.0]])
        )
        assert np.all(np.isfinite(grad))


def test_negative_relevance_under_jit_is_nan():
    s = jnp.zeros((2, 3))
    rel = jnp.array([[1.0, -1.0, 0.0], [1.0, 0.0, 0.0]])
    out = jax.jit(jaxloss.ranking_softmax_loss)(s, rel)
    assert np.isnan(out[0]) and np.isfinite(out[1])
