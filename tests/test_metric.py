"""Metric-learning losses: float64 oracles, the materialised definitions' gradients, optax
where it is right (and the numbers where it is not), chunked == unchunked, edge cases,
half precision, memory and errors."""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import optax
import pytest

from jaxloss._metric import ntxent, triplet_margin_loss

from . import reference
from .conftest import assert_close, requires_xla_cpu, temp_bytes

LABELS = {
    "pairs": [0, 0, 1, 1, 2, 2, 3],
    "groups": [0, 1, 0, 1, 0, 2, 2],
    "one singleton": [5, 5, 5, 7, 5, 5, 5],
}


def _embeddings(rng, n=7, d=3, dtype=jnp.float64):
    return jnp.asarray(rng.normal(size=(n, d)), dtype)


def _plain_ntxent(x, labels, temperature):
    """The definition materialised: [B, B] cosines, a masked log-sum-exp per anchor."""
    u = x / jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=1, keepdims=True), jnp.finfo(x.dtype).eps))
    s = u @ u.T / temperature
    same = labels[:, None] == labels[None, :]
    pos = same & ~jnp.eye(x.shape[0], dtype=bool)
    log_n = jax.nn.logsumexp(jnp.where(same, -jnp.inf, s), axis=1, keepdims=True)
    pair = jnp.where(pos, jnp.logaddexp(s, log_n) - s, 0)
    return jnp.sum(pair) / jnp.sum(pos, dtype=x.dtype)


def _optax(fn, *args, **kw):
    with jax.numpy_dtype_promotion("standard"):
        return fn(*args, **kw)


# ---- ntxent


def _ntxent(x, y, t, chunk_size=None):
    return ntxent(x, y, temperature=t, chunk_size=chunk_size)


# Value and (d embeddings, d temperature), compiled once per shape, dtype and chunk: the tests
# share the (7, 3) float64 programs of chunks None (one block) and 3 (a padded last block).
_GRAD = jax.jit(jax.value_and_grad(_ntxent, argnums=(0, 2)), static_argnames="chunk_size")
_PLAIN_GRAD = jax.jit(jax.value_and_grad(_plain_ntxent, argnums=(0, 2)))


@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_ntxent_equals_the_float64_oracle(chunk_size, rng):
    x = _embeddings(rng)
    for labels in LABELS.values():
        for temperature in [0.07, 0.5, 2.0]:
            y = jnp.asarray(labels, jnp.int32)
            got, _ = _GRAD(x, y, temperature, chunk_size=chunk_size)
            assert got.shape == () and got.dtype == jnp.float64
            assert_close(got, reference.ntxent(x, y, temperature), rtol=1e-12)


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_ntxent_gradients_equal_the_materialised_definition(chunk_size, rng):
    x = _embeddings(rng)
    for labels in LABELS.values():
        y = jnp.asarray(labels, jnp.int32)
        want = _PLAIN_GRAD(x, y, 0.3)
        assert_close(want[0], reference.ntxent(x, y, 0.3), rtol=1e-12)
        assert_close(_GRAD(x, y, 0.3, chunk_size=chunk_size), want, rtol=1e-11, atol=1e-13)


def test_ntxent_check_grads_and_second_order(rng):
    x, y = _embeddings(rng), jnp.asarray(LABELS["groups"], jnp.int32)

    def f(x, t):
        return _ntxent(x, y, t, chunk_size=3)

    # Plain JAX over the core's custom_jvp: jvp, vjp and their nestings all exist.
    jax.test_util.check_grads(jax.jit(f), (x, 0.4), order=1, modes=["fwd", "rev"])
    # Second order, forward over reverse, against central differences of the gradient.
    v, h = jnp.asarray(rng.normal(size=x.shape)), 1e-5
    hvp = jax.jit(lambda x: jax.jvp(jax.grad(f, argnums=(0, 1)), (x, 0.4), (v, 0.5))[1])
    _, up = _GRAD(x + h * v, y, 0.4 + 0.5 * h, chunk_size=3)
    _, down = _GRAD(x - h * v, y, 0.4 - 0.5 * h, chunk_size=3)
    want = jax.tree.map(lambda a, b: (a - b) / (2 * h), up, down)
    assert_close(hvp(x), want, rtol=1e-6, scaled=True)


def test_ntxent_chunked_equals_unchunked_in_float32(rng):
    x = _embeddings(rng, n=50, d=8, dtype=jnp.float32)
    y = jnp.asarray(rng.integers(0, 6, size=50), jnp.int32)
    whole = _GRAD(x, y, 0.1)
    parts = _GRAD(x, y, 0.1, chunk_size=16)  # a padded last block
    assert_close(parts, whole, rtol=2e-5, atol=1e-6)


def test_ntxent_agrees_with_optax(rng):
    with jax.numpy_dtype_promotion("standard"):
        theirs = jax.jit(jax.value_and_grad(optax.ntxent, argnums=(0, 2)))
        for _ in range(3):
            x = _embeddings(rng)
            y = jnp.asarray(rng.integers(0, 3, size=7), jnp.int32)
            want = theirs(x, y, 0.2)
            assert_close(_GRAD(x, y, 0.2), want, rtol=1e-11)


def test_ntxent_matches_optax_test_vectors():
    ys = jnp.array(
        [[-1.9540, 1.0780], [0.2380, -0.5703], [1.8745, -0.0195], [-0.6719, -1.9210]], jnp.float32
    )
    cases = [
        (ys, [0, 0, 1, 1], 14.01032),
        (ys, [0, 0, 0, 1], 8.968544),
        (ys.at[0].set(0.0), [0, 0, 1, 1], 9.2889),  # a zero embedding: similarity 0
    ]
    theirs = jax.jit(jax.grad(optax.ntxent))
    for x, labels, value in cases:
        y = jnp.asarray(labels, jnp.int32)
        loss, (grad, _) = _GRAD(x, y, 0.07)
        assert_close(loss, value, rtol=1e-5)
        assert_close(loss, reference.ntxent(x, y, eps=np.finfo(np.float32).eps), rtol=1e-6)
        assert_close(grad, _optax(theirs, x, y), rtol=1e-5, scaled=True)


def test_ntxent_without_positive_pairs_is_zero_where_optax_is_nan(rng):
    x, y = _embeddings(rng), jnp.arange(7, dtype=jnp.int32)
    assert np.isnan(_optax(jax.jit(optax.ntxent), x, y))  # 0 / 0
    for chunk_size in [None, 3]:
        value, grads = _GRAD(x, y, 0.5, chunk_size=chunk_size)
        assert float(value) == 0.0 and not any(np.any(g) for g in grads)
    assert reference.ntxent(x, y) == 0.0


def test_ntxent_without_negatives_is_zero_with_a_zero_gradient(rng):
    # One group: every anchor has pairs and no negatives, each pair's loss is log(e^s) - s.
    x, y = _embeddings(rng), jnp.zeros(7, jnp.int32)
    for chunk_size in [None, 3]:
        value, grads = _GRAD(x, y, 0.5, chunk_size=chunk_size)
        assert float(value) == 0.0 and not any(np.any(g) for g in grads)


def test_ntxent_zero_embedding_has_a_finite_gradient(rng):
    x = _embeddings(rng).at[2].set(0.0)
    y = jnp.asarray(LABELS["groups"], jnp.int32)
    value, (grad, _) = _GRAD(x, y, 0.5, chunk_size=3)
    assert_close(value, reference.ntxent(x, y, 0.5), rtol=1e-12)
    assert np.all(np.isfinite(grad))
    want = _optax(jax.jit(jax.grad(optax.ntxent)), x, y, 0.5)
    assert_close(grad, want, rtol=1e-10, scaled=True)


def test_ntxent_half_precision(rng):
    x = _embeddings(rng, n=50, d=8, dtype=jnp.bfloat16)
    y = jnp.asarray(rng.integers(0, 6, size=50), jnp.int32)
    value, (grad, _) = _GRAD(x, y, 0.5)
    assert value.dtype == jnp.float32 and grad.dtype == jnp.bfloat16
    want = reference.ntxent(x, y, 0.5, eps=2.0**-7)  # bfloat16's epsilon, as optax takes it
    assert_close(value, want, rtol=1e-5)
    _, (wide, _) = _GRAD(x.astype(jnp.float32), y, 0.5)  # the float32 test's program
    assert_close(grad, wide, rtol=1e-2, scaled=True)
    # optax computes in bfloat16: 4.0312 against 4.0201 (the float64 value of these inputs).
    rough = _optax(jax.jit(optax.ntxent), x, y, 0.5)
    assert rough.dtype == jnp.bfloat16 and abs(float(rough) - want) > 1e-3 * want


def test_ntxent_eager_equals_jit(rng):
    x, y = _embeddings(rng), jnp.asarray(LABELS["pairs"], jnp.int32)
    eager = ntxent(x, y, temperature=0.3, chunk_size=3)
    assert_close(eager, _GRAD(x, y, 0.3, chunk_size=3)[0], rtol=1e-13)


@requires_xla_cpu
def test_ntxent_holds_one_block_forward_and_backward():
    b, d = 2048, 128
    x = jax.ShapeDtypeStruct((b, d), jnp.float32)
    y = jax.ShapeDtypeStruct((b,), jnp.int32)
    # Blocks of 64 x 2048. Without the checkpoint, autodiff keeps every block's arrays for
    # the backward pass (about 75 MiB, several B x B matrices); recomputed, about 3 MiB.
    grad = jax.grad(lambda x, y: ntxent(x, y, chunk_size=64))
    assert temp_bytes(grad, x, y) < b * b * 4 / 4


def test_ntxent_empty_batch_is_zero():
    assert float(ntxent(jnp.zeros((0, 4)), jnp.zeros((0,), jnp.int32))) == 0.0


def test_ntxent_errors():
    x, y = jnp.ones((4, 2)), jnp.zeros(4, jnp.int32)
    with pytest.raises(TypeError, match="labels"):
        ntxent(x, jnp.zeros(4))
    with pytest.raises(ValueError, match="labels"):
        ntxent(x, jnp.zeros(3, jnp.int32))
    with pytest.raises(ValueError, match="embeddings"):
        ntxent(jnp.ones(4), y)
    with pytest.raises(TypeError, match="embeddings"):
        ntxent(jnp.ones((4, 2), jnp.int32), y)
    for bad in [0.0, -1.0]:
        with pytest.raises(ValueError, match="temperature"):
            ntxent(x, y, temperature=bad)
    with pytest.raises(ValueError, match="chunk_size"):
        ntxent(x, y, chunk_size=0)


# ---- triplet_margin_loss


def _triplets(rng, shape=(6, 4), dtype=jnp.float64):
    a = rng.normal(size=shape)
    p = a + 0.5 * rng.normal(size=shape)
    n = a + 0.8 * rng.normal(size=shape)
    return tuple(jnp.asarray(v, dtype) for v in (a, p, n))


@pytest.mark.parametrize("norm_degree", [1, 2, 3, 1.5])
def test_triplet_equals_the_float64_oracle(norm_degree, rng):
    a, p, n = _triplets(rng, shape=(3, 5, 4))
    loss = jax.jit(triplet_margin_loss, static_argnames=("axis", "norm_degree", "reduction"))
    for axis in [-1, 0, 1]:
        for eps in [1e-6, 0.0]:
            kw = dict(axis=axis, norm_degree=norm_degree, margin=0.7, eps=eps)
            want = reference.triplet_margin(a, p, n, **kw)
            assert 0 < np.count_nonzero(want) < want.size  # both sides of the hinge
            got = loss(a, p, n, **kw)
            assert got.shape == want.shape and got.dtype == jnp.float64
            assert_close(got, want, rtol=1e-12, atol=1e-15)
    for reduction, value in [("mean", np.mean(want)), ("sum", np.sum(want))]:
        assert_close(loss(a, p, n, **kw, reduction=reduction), value, rtol=1e-12)


@pytest.mark.parametrize("norm_degree", [2, 4, 2.0])
def test_triplet_agrees_with_optax_for_even_degrees(norm_degree, rng):
    a, p, n = _triplets(rng)

    def ours(a, p, n):
        return jnp.sum(triplet_margin_loss(a, p, n, norm_degree=norm_degree, margin=0.5))

    def theirs(a, p, n):
        loss = optax.losses.triplet_margin_loss(a, p, n, norm_degree=norm_degree, margin=0.5)
        return jnp.sum(loss)

    want = _optax(jax.jit(jax.value_and_grad(theirs, (0, 1, 2))), a, p, n)
    got = jax.jit(jax.value_and_grad(ours, (0, 1, 2)))(a, p, n)
    assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_triplet_odd_degrees_where_optax_drops_the_absolute_value():
    # a - p = (-1, -1): optax sums the signed powers, d = -2 for k = 1 and (-2)^(1/3) = NaN
    # for k = 3. The distances are 2 and 4 (k = 1), 2^(1/3) and 16^(1/3) (k = 3).
    a, p, n = jnp.zeros((1, 2)), jnp.ones((1, 2)), 2 * jnp.ones((1, 2))
    theirs = _optax(optax.losses.triplet_margin_loss, a, p, n, norm_degree=1, margin=1.0)
    assert_close(theirs, [3.0], rtol=1e-6)  # max(-2 + 4 + 1, 0)
    assert_close(triplet_margin_loss(a, p, n, norm_degree=1, margin=1.0), [0.0], rtol=0)
    theirs = _optax(optax.losses.triplet_margin_loss, a, p, n, norm_degree=3, margin=2.0)
    assert np.isnan(theirs[0])
    ours = triplet_margin_loss(a, p, n, norm_degree=3, margin=2.0)
    assert_close(ours, [0.7400791], rtol=1e-6)  # 2^(1/3) - 16^(1/3) + 2
    assert_close(ours, reference.triplet_margin(a, p, n, norm_degree=3, margin=2.0), rtol=1e-12)


def test_triplet_gradient_is_finite_at_zero_distance_without_eps():
    # a = p: d(a, p) = 0 with a kink; the loss is -d(a, n) + 1 > 0, so the gradient with
    # respect to a is -(d d(a, n) / d a), taken at a distance away from 0.
    a, n = jnp.zeros((1, 2)), jnp.full((1, 2), 0.1)
    k = np.array([1, 2, 3, 1.5])

    def f(a, p):  # one loss per degree: 1, 2, 3 static, 1.5 traced
        degrees = [1, 2, 3, jnp.float64(1.5)]
        return jnp.stack([triplet_margin_loss(a, p, n, norm_degree=d, eps=0.0)[0] for d in degrees])

    value = f(a, a)
    assert_close(value, 1 - 0.1 * 2 ** (1 / k), rtol=1e-12)  # d(a, n) = 0.1 · 2^(1/k)
    da, dp = jax.jit(jax.jacrev(f, (0, 1)))(a, a)
    # -d d(a, n) / d a_c = 0.1^(k-1) / d(a, n)^(k-1) = 2^(-(k-1)/k); p gets the subgradient 0.
    assert_close(da, np.broadcast_to((2 ** (-(k - 1) / k))[:, None, None], da.shape), rtol=1e-12)
    assert np.all(dp == 0)
    tangent = jax.jit(lambda a: jax.jvp(lambda a: f(a, a), (a,), (jnp.ones_like(a),))[1])(a)
    assert np.all(np.isfinite(tangent))
    theirs = jax.jit(jax.grad(lambda a: optax.losses.triplet_margin_loss(a, a, n, eps=0.0)[0]))
    assert np.all(np.isnan(_optax(theirs, a)))  # 0 · ∞ at the root


def _plain_triplet(a, p, n, k, margin):
    def d(x):
        return (jnp.sum(jnp.abs(a - x) ** k, axis=-1) + 1e-6) ** (1 / k)

    return jnp.maximum(d(p) - d(n) + margin, 0)


def test_triplet_check_grads_and_second_order(rng):
    a, p, n = _triplets(rng, shape=(4, 3))
    degrees = [2, 3, jnp.float64(1.5)]  # 2 and 3 static, 1.5 traced

    def f(a, p, n, margin, loss=triplet_margin_loss):
        return jnp.stack([loss(a, p, n, norm_degree=k, margin=margin) for k in degrees])

    assert np.all(f(a, p, n, 2.0) > 0)  # away from the hinge's kink
    jax.test_util.check_grads(jax.jit(f), (a, p, n, 2.0), order=1, modes=["fwd", "rev"])
    # Second order, forward over reverse, against the definition written plainly.
    v = tuple(jnp.asarray(rng.normal(size=a.shape)) for _ in range(3))

    def hvp(loss):
        grad = jax.grad(lambda *t: jnp.sum(f(*t, 2.0, loss=loss)), argnums=(0, 1, 2))
        return jax.jit(lambda *t: jax.jvp(grad, t, v)[1])

    plain = hvp(lambda a, p, n, norm_degree, margin: _plain_triplet(a, p, n, norm_degree, margin))
    assert_close(hvp(triplet_margin_loss)(a, p, n), plain(a, p, n), rtol=1e-10, scaled=True)


def test_triplet_half_precision(rng):
    a, p, n = _triplets(rng, dtype=jnp.bfloat16)
    value_and_grad = jax.value_and_grad(lambda *t: jnp.sum(triplet_margin_loss(*t)), (0, 1, 2))
    total, grads = jax.jit(value_and_grad)(a, p, n)
    assert total.dtype == jnp.float32 and all(g.dtype == jnp.bfloat16 for g in grads)
    assert_close(total, np.sum(reference.triplet_margin(a, p, n)), rtol=1e-5)


def test_triplet_vmap_jit_and_eager(rng):
    a, p, n = _triplets(rng, shape=(3, 6, 4))

    def f(a, p, n, k, m):
        return triplet_margin_loss(a, p, n, norm_degree=k, margin=m, reduction="mean")

    one = jax.jit(f)
    each = jnp.stack([one(a[i], p[i], n[i], 3.0, 0.2) for i in range(3)])
    assert_close(jax.jit(jax.vmap(f, (0, 0, 0, None, None)))(a, p, n, 3.0, 0.2), each, rtol=1e-13)
    assert_close(f(a[0], p[0], n[0], 3.0, 0.2), each[0], rtol=1e-13)


def test_triplet_errors():
    a = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="positives"):
        triplet_margin_loss(a, jnp.ones((2, 4)), a)
    with pytest.raises(ValueError, match="negatives"):
        triplet_margin_loss(a, a, jnp.ones((3,)))
    with pytest.raises(TypeError, match="negatives"):
        triplet_margin_loss(a, a, a.astype(jnp.float32))
    with pytest.raises(TypeError, match="anchors"):
        triplet_margin_loss(jnp.ones((2, 3), jnp.int32), a, a)
    with pytest.raises(ValueError, match="norm_degree"):
        triplet_margin_loss(a, a, a, norm_degree=0.5)
    with pytest.raises(ValueError, match="eps"):
        triplet_margin_loss(a, a, a, eps=-1.0)
    with pytest.raises(ValueError, match="axis"):
        triplet_margin_loss(a, a, a, axis=2)
    with pytest.raises(ValueError, match="reduction"):
        triplet_margin_loss(a, a, a, reduction="max")
