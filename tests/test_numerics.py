"""Edge cases: -inf and huge logits, 0·log 0, masks, all-ignored batches, low precision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

from . import reference as ref
from .conftest import F32_ULP

NEG_INF = -jnp.inf
CE_INT = jaxloss.softmax_cross_entropy_with_integer_labels


def _all_finite(tree):
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


def _ce_soft(x):
    return jaxloss.softmax_cross_entropy(x, jnp.array([[0.0, 0.3, 0.7, 0.0]])).sum()


def _ce_int(x):
    return CE_INT(x, jnp.array([2]), label_smoothing=0.0, z_loss=0.0).sum()


def _kl(x):
    return jaxloss.kl_divergence(x, jnp.array([[0.0, 0.5, 0.5, 0.0]])).sum()


def _js(x):
    return jaxloss.js_divergence(x, jnp.array([[NEG_INF, 0.0, 3.0, 0.0]])).sum()


def _entropy(x):
    return jaxloss.entropy(x).sum()


def _focal(x):
    return jaxloss.softmax_focal_loss(x, jnp.array([2])).sum()


def _poly(x):
    return jaxloss.poly1_cross_entropy(x, jnp.array([2])).sum()


@pytest.mark.parametrize("f", [_ce_soft, _ce_int, _kl, _js, _entropy, _focal, _poly])
def test_neg_inf_logits_finite_in_both_modes(f):
    """-inf on classes that are not the label: finite value, grad, jvp and jacfwd."""
    x = jnp.array([[NEG_INF, 1.0, 2.0, NEG_INF]])
    assert _all_finite(f(x))
    assert _all_finite(jax.grad(f)(x))
    assert _all_finite(jax.jacfwd(f)(x))
    assert _all_finite(jax.jvp(f, (x,), (jnp.ones_like(x),)))
    assert _all_finite(jax.hessian(f)(x))
    # The -inf classes have probability 0 and get zero gradient.
    g = jax.grad(f)(x)
    assert g[0, 0] == 0 and g[0, 3] == 0


def test_neg_inf_logits_values():
    x = jnp.array([[NEG_INF, 1.0, 2.0, NEG_INF]])
    p = ref.softmax(np.array([[1.0, 2.0]]))[0]
    np.testing.assert_allclose(_ce_int(x), -np.log(p[1]), rtol=1e-12)
    np.testing.assert_allclose(_entropy(x), ref.entropy(p), rtol=1e-12)
    np.testing.assert_allclose(_kl(x), ref.kl([0.5, 0.5], p), rtol=1e-12)


def test_entropy_of_probability_vector_with_zeros():
    p = jnp.array([0.5, 0.0, 0.25, 0.25, 0.0])
    np.testing.assert_allclose(jaxloss.entropy(jnp.log(p)), ref.entropy(p), rtol=1e-12)
    assert _all_finite(jax.grad(lambda p: jaxloss.entropy(jnp.log(p + 0.0)))(p + 0.1))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_huge_logits(dtype):
    x = jnp.array([[1e30, -1e30, 0.0], [-1e30, -1e30, 1e30]], dtype)
    labels = jnp.array([0, 1])
    loss = CE_INT(x, labels)
    # 1e30 - (-1e30): float32 rounds 2e30 by 1.5e-8 of itself, within one ulp.
    np.testing.assert_allclose(loss, [0.0, 2e30], rtol=F32_ULP)
    assert _all_finite(jax.grad(lambda x: CE_INT(x, labels).sum())(x))
    assert _all_finite(CE_INT(x, labels, z_loss=0.0))
    t = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype)
    np.testing.assert_allclose(jaxloss.softmax_cross_entropy(x, t), [0.0, 0.0], atol=0)
    np.testing.assert_allclose(jaxloss.entropy(x), [0.0, 0.0], atol=0)


def test_bce_at_infinite_logits():
    x = jnp.array([jnp.inf, -jnp.inf, jnp.inf, -jnp.inf])
    y = jnp.array([1.0, 0.0, 0.0, 1.0])
    f = jaxloss.sigmoid_binary_cross_entropy
    loss = f(x, y)
    np.testing.assert_array_equal(loss[:2], [0.0, 0.0])
    assert np.all(np.isposinf(loss[2:]))  # a confident wrong answer costs infinitely much
    assert _all_finite(jax.grad(lambda x: f(x[:2], y[:2]).sum())(x))
    assert _all_finite(jaxloss.sigmoid_focal_loss(x[:2], y[:2]))
    assert _all_finite(jax.grad(lambda x: jaxloss.sigmoid_focal_loss(x[:2], y[:2]).sum())(x))


def test_bce_on_probabilities_clamps_like_torch():
    p = jnp.array([0.0, 1.0, 0.0, 1.0])
    y = jnp.array([1.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(jaxloss.binary_cross_entropy(p, y), [100.0, 100.0, 0.0, 0.0])
    assert _all_finite(jax.grad(lambda p: jaxloss.binary_cross_entropy(p, y).sum())(p))


def test_all_ignored_mean_is_zero_with_zero_gradient():
    x = jnp.arange(12.0).reshape(3, 4)
    labels = jnp.array([-100, -100, -100])
    for f in (CE_INT, jaxloss.softmax_focal_loss, jaxloss.poly1_cross_entropy):

        def loss(x, f=f):
            return f(x, labels, ignore_index=-100, reduction="mean")

        assert loss(x) == 0
        np.testing.assert_array_equal(jax.grad(loss)(x), np.zeros((3, 4)))
    nll = jaxloss.nll_loss(x, labels, ignore_index=-100, reduction="mean")
    assert nll == 0


def test_where_excludes_classes():
    x = jnp.array([[1.0, 5.0, 2.0, 0.5], [3.0, 3.0, 3.0, 3.0]])
    include = jnp.array([[True, False, True, True], [False, False, False, False]])
    labels = jnp.array([2, 0])
    loss = CE_INT(x, labels, where=include, reduction="none")
    want = -np.log(ref.softmax(np.array([1.0, 2.0, 0.5]))[1])
    np.testing.assert_allclose(loss, [want, 0.0], rtol=1e-12)
    # The all-excluded example has no weight in the mean, and nothing reaches its gradient.
    mean = CE_INT(x, labels, where=include, reduction="mean")
    np.testing.assert_allclose(mean, want, rtol=1e-12)
    g = jax.grad(lambda x: CE_INT(x, labels, where=include, reduction="sum"))(x)
    assert g[0, 1] == 0 and np.all(g[1] == 0)
    # Smoothing spreads over the three included classes only.
    sm = CE_INT(x, labels, where=include, label_smoothing=0.3)[0]
    logp = np.log(ref.softmax(np.array([1.0, 2.0, 0.5])))
    np.testing.assert_allclose(sm, 0.7 * -logp[1] + 0.3 * -logp.mean(), rtol=1e-12)
    soft = jaxloss.softmax_cross_entropy(x, jnp.eye(4)[labels], where=include, label_smoothing=0.3)
    np.testing.assert_allclose(soft, [sm, 0.0], rtol=1e-12)


def test_where_on_divergences_equals_dropping_classes():
    x = jnp.array([[1.0, 5.0, 2.0, 0.5]])
    y = jnp.array([[0.2, 0.9, 0.3, 0.5]])
    include = jnp.array([True, False, True, True])
    keep = np.array([0, 2, 3])
    yk = y[:, keep] / y[:, keep].sum()
    np.testing.assert_allclose(
        jaxloss.entropy(x, where=include), jaxloss.entropy(x[:, keep]), rtol=1e-12
    )
    np.testing.assert_allclose(
        jaxloss.kl_divergence(x, jnp.where(include, y, 0) / y[:, keep].sum(), where=include),
        jaxloss.kl_divergence(x[:, keep], yk),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        jaxloss.js_divergence(x, jnp.log(y), where=include),
        jaxloss.js_divergence(x[:, keep], jnp.log(yk)),
        rtol=1e-12,
    )


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_accumulates_in_float32(dtype):
    rng = np.random.default_rng(1)
    v = 32768
    x64 = rng.normal(size=(4, v)) * 4
    x = jnp.asarray(x64, dtype)
    labels = rng.integers(0, v, 4)
    loss = CE_INT(x, labels)
    assert loss.dtype == jnp.float32
    exact, _ = ref.integer_cross_entropy(np.asarray(x.astype(jnp.float64)), labels)
    # A float32 result from the given values, though the sum runs over 32k terms: a rounding
    # of log Z (~20) and of the sum's error, at most a few float32 ulps (measured 0.6).
    np.testing.assert_allclose(loss, exact, rtol=8 * F32_ULP)
    g = jax.grad(lambda x: CE_INT(x, labels).sum())(x)
    assert g.dtype == dtype
    soft = jaxloss.softmax_cross_entropy(x, jax.nn.one_hot(labels, v, dtype=dtype))
    assert soft.dtype == jnp.float32
    np.testing.assert_allclose(soft, exact, rtol=8 * F32_ULP)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_every_loss_returns_float32_or_wider(dtype):
    x = jnp.ones((2, 3), dtype)
    t = jnp.full((2, 3), 0.5, dtype)
    labels = jnp.array([0, 1])
    outs = [
        jaxloss.softmax_cross_entropy(x, t),
        CE_INT(x, labels),
        jaxloss.nll_loss(x, labels),
        jaxloss.sigmoid_binary_cross_entropy(x, t),
        jaxloss.binary_cross_entropy(t, t),
        jaxloss.sigmoid_focal_loss(x, t),
        jaxloss.softmax_focal_loss(x, labels),
        jaxloss.poly1_cross_entropy(x, labels),
        jaxloss.entropy(x),
        jaxloss.kl_divergence(x, t),
        jaxloss.js_divergence(x, x),
    ]
    assert all(o.dtype == jnp.float32 for o in outs)


def test_out_of_range_label_is_nan_under_jit():
    x = jnp.zeros((3, 4))
    f = jax.jit(lambda x, y: CE_INT(x, y, ignore_index=-100))
    loss = f(x, jnp.array([1, 4, -1]))
    assert np.isfinite(loss[0]) and np.isnan(loss[1]) and np.isnan(loss[2])
    assert np.isnan(jax.jit(lambda x, y: jaxloss.nll_loss(x, y))(x, jnp.array([0, 7, 1]))[1])
    assert np.isfinite(f(x, jnp.array([1, -100, 3]))).all()


def test_z_loss_penalises_the_log_normaliser():
    x = jnp.array([[2.0, 1.0, 0.0], [12.0, 11.0, 10.0]])
    labels = jnp.array([0, 0])
    base = CE_INT(x, labels)
    np.testing.assert_allclose(base[0], base[1], rtol=1e-12)  # CE ignores the shift
    z = CE_INT(x, labels, z_loss=1e-3) - base
    lse = jax.nn.logsumexp(x, axis=-1)
    np.testing.assert_allclose(z, 1e-3 * lse**2, rtol=1e-12)


def test_hyperparameters_trace():
    x = jnp.array([[2.0, 1.0, 0.0]])
    labels = jnp.array([1])

    @jax.jit
    def f(eps, z, gamma):
        return (
            CE_INT(x, labels, label_smoothing=eps, z_loss=z)
            + jaxloss.softmax_focal_loss(x, labels, gamma=gamma)
            + jaxloss.softmax_cross_entropy(x, jnp.eye(3)[labels], label_smoothing=eps)
        )

    want = (
        CE_INT(x, labels, label_smoothing=0.2, z_loss=0.1)
        + jaxloss.softmax_focal_loss(x, labels, gamma=1.0)
        + jaxloss.softmax_cross_entropy(x, jnp.eye(3)[labels], label_smoothing=0.2)
    )
    np.testing.assert_allclose(f(0.2, 0.1, 1.0), want, rtol=1e-12)
    np.testing.assert_allclose(
        f(0.0, 0.0, 2.0)[0],
        CE_INT(x, labels)[0] + jaxloss.softmax_focal_loss(x, labels)[0] + CE_INT(x, labels)[0],
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    "f",
    [
        jaxloss.entropy,
        lambda x: jaxloss.kl_divergence(x, jnp.full(x.shape, 1 / x.shape[-1], x.dtype)),
        lambda x: jaxloss.kl_divergence_with_log_targets(
            x, jnp.full(x.shape, -np.log(x.shape[-1]), jnp.bfloat16).astype(x.dtype)
        ),
    ],
    ids=["entropy", "kl_divergence", "kl_divergence_with_log_targets"],
)
def test_half_precision_gradients_are_rounded_once(f):
    # The gradient of log_softmax is g - p Σg: two terms that nearly cancel. Rounded to
    # bfloat16 apart and then added, small entries came out wrong by up to 100%.
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16)) * 3, jnp.bfloat16)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(f(x))))(x)
    exact = jax.jit(jax.grad(lambda x: jnp.sum(f(x))))(x.astype(jnp.float64))
    assert grad.dtype == jnp.bfloat16
    np.testing.assert_allclose(grad.astype(np.float64), exact, rtol=2**-8, atol=1e-30)
