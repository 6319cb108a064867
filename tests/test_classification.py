"""Values against the float64 oracles, PyTorch-exact options, and optax as a second opinion."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss

from . import reference as ref


def _logits(rng, *shape, scale=3.0):
    return rng.normal(size=shape) * scale


def _probs(rng, *shape):
    return ref.softmax(_logits(rng, *shape))


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_softmax_cross_entropy(axis, eps, rng):
    x, y = _logits(rng, 4, 5, 6), _probs(rng, 4, 5, 6)
    got = jaxloss.softmax_cross_entropy(x, y, axis=axis, label_smoothing=eps)
    np.testing.assert_allclose(got, ref.softmax_cross_entropy(x, y, axis, eps), rtol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("z", [0.0, 1e-2])
def test_integer_cross_entropy(reduction, weights, ignore, eps, z, rng):
    x = _logits(rng, 12, 7)
    labels = rng.integers(0, 7, 12)
    if ignore:
        labels[[1, 4, 5]] = -100
    w = rng.uniform(0.1, 2.0, 7) if weights else None
    ig = -100 if ignore else None
    got = jaxloss.softmax_cross_entropy_with_integer_labels(
        x,
        labels,
        ignore_index=ig,
        class_weights=w,
        label_smoothing=eps,
        z_loss=z,
        reduction=reduction,
    )
    loss, weight = ref.integer_cross_entropy(x, labels, -1, ig, w, eps, z)
    np.testing.assert_allclose(got, ref.reduce(loss, weight, reduction), rtol=1e-12)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_integer_cross_entropy_any_axis(axis, rng):
    x = _logits(rng, 3, 4, 5)
    shape = list(x.shape)
    c = shape.pop(axis)
    labels = rng.integers(0, c, shape)
    got = jaxloss.softmax_cross_entropy_with_integer_labels(
        x, labels, axis=axis, label_smoothing=0.3
    )
    want, _ = ref.integer_cross_entropy(x, labels, axis, label_smoothing=0.3)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_nll_on_log_softmax_is_integer_cross_entropy(rng):
    x = _logits(rng, 6, 9)
    labels = rng.integers(0, 9, 6)
    labels[2] = 3
    w = rng.uniform(0.5, 1.5, 9)
    kw = dict(ignore_index=3, class_weights=w, reduction="mean")
    got = jaxloss.nll_loss(jax.nn.log_softmax(x), labels, **kw)
    want = jaxloss.softmax_cross_entropy_with_integer_labels(x, labels, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    loss, weight = ref.nll(np.log(ref.softmax(x)), labels, -1, 3, w)
    np.testing.assert_allclose(got, ref.reduce(loss, weight, "mean"), rtol=1e-12)


def test_integer_labels_equal_one_hot_targets(rng):
    x = _logits(rng, 10, 6)
    labels = rng.integers(0, 6, 10)
    one_hot = np.eye(6)[labels]
    for eps in (0.0, 0.25):
        a = jaxloss.softmax_cross_entropy_with_integer_labels(x, labels, label_smoothing=eps)
        b = jaxloss.softmax_cross_entropy(x, one_hot, label_smoothing=eps)
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_sigmoid_losses(rng):
    x, y = _logits(rng, 5, 4), rng.uniform(size=(5, 4))
    pw = rng.uniform(0.5, 3.0, 4)
    got = jaxloss.sigmoid_binary_cross_entropy(x, y, pos_weight=pw, label_smoothing=0.1)
    np.testing.assert_allclose(got, ref.sigmoid_bce(x, y, pw[None], 0.1), rtol=1e-12)
    p = ref.sigmoid(x)
    np.testing.assert_allclose(jaxloss.binary_cross_entropy(p, y), ref.bce(p, y), rtol=1e-12)
    for alpha in (None, 0.25):
        got = jaxloss.sigmoid_focal_loss(x, y, alpha=alpha, gamma=1.5)
        np.testing.assert_allclose(got, ref.sigmoid_focal(x, y, alpha, 1.5), rtol=1e-12)


def test_softmax_focal_and_poly1(rng):
    x = _logits(rng, 8, 5)
    labels = rng.integers(0, 5, 8)
    w = rng.uniform(0.5, 2.0, 5)
    got = jaxloss.softmax_focal_loss(x, labels, gamma=2.0, class_weights=w)
    np.testing.assert_allclose(got, ref.softmax_focal(x, labels, 2.0, w), rtol=1e-12)
    # gamma = 0 is plain cross-entropy; epsilon = 0 too.
    ce = jaxloss.softmax_cross_entropy_with_integer_labels(x, labels)
    np.testing.assert_allclose(jaxloss.softmax_focal_loss(x, labels, gamma=0.0), ce, rtol=1e-12)
    np.testing.assert_allclose(jaxloss.poly1_cross_entropy(x, labels, epsilon=0.0), ce, rtol=1e-12)
    got = jaxloss.poly1_cross_entropy(x, labels, epsilon=2.0)
    np.testing.assert_allclose(got, ref.poly1(x, labels, 2.0), rtol=1e-12)


@pytest.mark.parametrize("axis", [-1, 0])
def test_divergences(axis, rng):
    x, z = _logits(rng, 5, 6), _logits(rng, 5, 6)
    z[0, 2] = -np.inf  # a class that q gives no mass: 0·log 0 in KL(q‖m), none in KL(p‖m)
    p, q = ref.softmax(x), ref.softmax(z)
    on = (lambda a: a.T) if axis == 0 else (lambda a: a)
    got = jaxloss.js_divergence(on(x), on(z), axis=axis)
    np.testing.assert_allclose(got, ref.js(p, q), rtol=1e-12)
    swapped = jaxloss.js_divergence(on(z), on(x), axis=axis)
    np.testing.assert_allclose(swapped, got, rtol=1e-12)  # symmetric
    assert np.all(np.asarray(got) <= np.log(2))  # bounded by log 2
    np.testing.assert_allclose(
        jaxloss.js_divergence(x, z, reduction="mean"), ref.js(p, q).mean(), rtol=1e-12
    )
    kl = jaxloss.kl_divergence(on(x), on(q), axis=axis)
    np.testing.assert_allclose(kl, ref.kl(q, p), rtol=1e-12)
    np.testing.assert_allclose(jaxloss.entropy(on(z), axis=axis), ref.entropy(q), rtol=1e-12)


def test_mean_is_weighted_and_empty_safe():
    v = jnp.array([1.0, 2.0, 3.0, 4.0])
    w = jnp.array([1.0, 0.0, 3.0, 1.0])
    where = jnp.array([True, True, True, False])
    assert jaxloss.mean(v, weights=w, where=where) == pytest.approx(10.0 / 4.0)
    none = jnp.zeros(4, bool)
    assert jaxloss.mean(v, where=none) == 0
    assert np.all(jax.grad(lambda v: jaxloss.mean(v, where=none))(v) == 0)
    assert (
        jaxloss.mean(jnp.array([jnp.inf, jnp.nan, 2.0]), where=jnp.array([False, False, True])) == 2
    )


# ---------------------------------------------------------------- optax, a second opinion


def test_matches_optax(rng):
    x, y = _logits(rng, 16, 10), _probs(rng, 16, 10)
    labels = rng.integers(0, 10, 16)
    np.testing.assert_allclose(
        jaxloss.softmax_cross_entropy(x, y), optax.losses.softmax_cross_entropy(x, y), rtol=1e-10
    )
    np.testing.assert_allclose(
        jaxloss.softmax_cross_entropy_with_integer_labels(x, labels),
        optax.losses.softmax_cross_entropy_with_integer_labels(x, labels),
        rtol=1e-10,
    )
    t = rng.uniform(size=(16, 10))
    np.testing.assert_allclose(
        jaxloss.sigmoid_binary_cross_entropy(x, t),
        optax.losses.sigmoid_binary_cross_entropy(x, t),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        jaxloss.sigmoid_focal_loss(x, t, alpha=0.3, gamma=2.0),
        optax.losses.sigmoid_focal_loss(x, t, alpha=0.3, gamma=2.0),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        jaxloss.kl_divergence(x, y),
        optax.losses.kl_divergence(jax.nn.log_softmax(x), y),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        jaxloss.poly1_cross_entropy(x, labels, epsilon=2.0),
        optax.losses.poly_loss_cross_entropy(x, np.eye(10)[labels], epsilon=2.0),
        rtol=1e-10,
    )
