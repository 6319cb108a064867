"""Contrastive losses: float64 oracles, open_clip's formulas in PyTorch, gradients against the
materialised definitions, chunked == unchunked, the edge cases, errors and memory.

Their signature (two batches of embeddings, one loss per pair of rows) is not the registry's
(logits with a class axis), so the parts of the contract that apply are tested here."""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

import jaxloss
from jaxloss import _contrastive

from . import reference
from .conftest import F32_ULP, assert_close, requires_xla_cpu, temp_bytes

SOFT = jaxloss.softmax_contrastive_loss
SIG = jaxloss.sigmoid_contrastive_loss
KINDS = ["softmax", "sigmoid"]


def _call(kind, a, b, scale=2.0, bias=-1.0, **kw):
    if kind == "softmax":
        return SOFT(a, b, scale=scale, **kw)
    return SIG(a, b, scale=scale, bias=bias, **kw)


def _oracle(kind, a, b, scale=2.0, bias=-1.0):
    return reference.clip(a, b, scale) if kind == "softmax" else reference.siglip(a, b, scale, bias)


def _plain(kind, a, b, scale, bias):
    """The materialised definitions in jnp (for gradients)."""
    logits = scale * a @ b.T
    if kind == "softmax":
        rows = jnp.diag(jax.nn.log_softmax(logits, axis=1))
        return -(rows + jnp.diag(jax.nn.log_softmax(logits, axis=0))) / 2
    signs = 2 * jnp.eye(a.shape[0], dtype=a.dtype) - 1
    return -jnp.sum(jax.nn.log_sigmoid(signs * (logits + bias)), axis=1)


def _embeddings(rng, n=13, d=6, dtype=jnp.float64):
    a = rng.normal(size=(n, d))
    b = a + 0.7 * rng.normal(size=(n, d))  # pairs that match, roughly
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return jnp.asarray(unit(a), dtype), jnp.asarray(unit(b), dtype)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk_size", [None, 1, 4, 13, 100])
@pytest.mark.parametrize("scale,bias", [(1.0, 0.0), (10.0, -10.0), (0.0, 3.0)])
def test_equals_the_float64_oracle(kind, chunk_size, scale, bias, rng):
    a, b = _embeddings(rng)
    want = _oracle(kind, a, b, scale, bias)
    got = _call(kind, a, b, scale, bias, chunk_size=chunk_size)
    assert got.shape == (13,) and got.dtype == jnp.float64
    assert_close(got, want, rtol=1e-12, atol=1e-14)
    for reduction, value in [("mean", np.mean(want)), ("sum", np.sum(want))]:
        got = _call(kind, a, b, scale, bias, chunk_size=chunk_size, reduction=reduction)
        assert got.shape == () and got.dtype == jnp.float64
        assert_close(got, value, rtol=1e-12)


def test_confident_pairs_keep_the_precision_of_one_row():
    # Logits 1024 on the diagonal and 1023 off it, exact in float32: each loss is
    # log(1 + e^-1). log Z - L_ii with log Z = 1024.31... would keep one ulp of 1024 (1.2e-4);
    # the shift kept apart from log Z keeps the core's precision, about one ulp of the loss.
    off = 1 - 2.0**-10
    a = jnp.eye(2, dtype=jnp.float32)
    b = jnp.array([[1.0, off], [off, 1.0]], jnp.float32)
    got = SOFT(a, b, scale=1024.0)
    want = reference.clip(a, b, 1024.0)
    np.testing.assert_allclose(want, np.log1p(np.exp(-1.0)), rtol=1e-12)
    assert_close(got, want, rtol=4 * F32_ULP)
    # What the shortcut gives, so that this test tells the two apart.
    naive = jax.nn.logsumexp(1024.0 * a @ b.T, axis=1) - 1024.0
    assert np.max(np.abs(np.asarray(naive) - want)) > 100 * F32_ULP * want[0]


def test_padding_rows_stay_out_of_the_gradient(rng):
    # 5 rows in chunks of 4: the last chunk has 3 padding rows, whose logits are the bias.
    a, b = _embeddings(rng, n=5)

    def f(a, b, scale):
        return _contrastive.contrastive("softmax", a, b, scale, 100.0, None, 4, "mean")

    got = jax.grad(f, argnums=(0, 1, 2))(a, b, 3.0)
    want = jax.grad(lambda a, b, s: jnp.mean(_plain("softmax", a, b, s, 0.0)), (0, 1, 2))(a, b, 3.0)
    assert_close(got, want, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_gradients_equal_the_materialised_definitions(kind, reduction, chunk_size, rng):
    a, b = _embeddings(rng)
    w = jnp.asarray(rng.uniform(size=13))  # unequal cotangents per example for "none"

    def objective(fn):
        def f(a, b, scale, bias):
            out = fn(a, b, scale, bias)
            return jnp.sum(w * out) if reduction == "none" else out

        return jax.value_and_grad(f, argnums=(0, 1, 2, 3))

    def plain(a, b, scale, bias):
        per = _plain(kind, a, b, scale, bias)
        return {"none": per, "mean": jnp.mean(per), "sum": jnp.sum(per)}[reduction]

    def blocked(a, b, scale, bias):
        return _call(kind, a, b, scale, bias, chunk_size=chunk_size, reduction=reduction)

    args = (a, b, jnp.float64(3.0), jnp.float64(-2.0))
    got, want = objective(blocked)(*args), objective(plain)(*args)
    assert_close(got, want, rtol=1e-11, atol=1e-13)
    assert_close(jax.jit(objective(blocked))(*args), want, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_check_grads_in_reverse_mode(kind, rng):
    a, b = _embeddings(rng, n=5, d=3)

    def f(a, b, scale, bias):
        return _call(kind, a, b, scale, bias, chunk_size=2)

    # Second order too: the backward pass is JAX code that autodiff goes through.
    jax.test_util.check_grads(f, (a, b, 1.5, -0.5), order=2, modes=["rev"])


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_equals_unchunked_in_float32(kind, rng):
    a, b = _embeddings(rng, n=200, d=16, dtype=jnp.float32)
    whole = jax.value_and_grad(lambda a, b: _call(kind, a, b, 8.0, -4.0, reduction="mean"), (0, 1))
    for chunk in [1, 7, 64]:
        parts = jax.value_and_grad(
            lambda a, b, c=chunk: _call(kind, a, b, 8.0, -4.0, reduction="mean", chunk_size=c),
            (0, 1),
        )
        assert_close(parts(a, b), whole(a, b), rtol=2e-5, atol=1e-6)


def test_softmax_is_symmetric_and_sigmoid_sums_the_same_pairs(rng):
    a, b = _embeddings(rng)
    assert_close(SOFT(a, b, scale=4.0), SOFT(b, a, scale=4.0), rtol=1e-12)
    # Swapped, the sigmoid loss sums columns instead of rows: other per-example values, the
    # same pairs in total.
    swapped = SIG(b, a, scale=4.0, bias=-2.0)
    assert not np.allclose(SIG(a, b, scale=4.0, bias=-2.0), swapped)
    assert_close(SIG(a, b, scale=4.0, bias=-2.0, reduction="sum"), jnp.sum(swapped), rtol=1e-12)


def test_softmax_and_sigmoid_answer_differently_to_a_uniform_shift(rng):
    # Softmax outputs compete: a bias common to every pair changes nothing. Sigmoid outputs
    # are independent: the same bias moves every pair's probability.
    a, b = _embeddings(rng)
    kw = dict(scale=3.0, reduction="mean")
    assert_close(
        _contrastive.contrastive("softmax", a, b, 3.0, 5.0, None, None, "mean"),
        SOFT(a, b, **kw),
        rtol=1e-12,
    )
    assert float(SIG(a, b, bias=5.0, **kw)) > float(SIG(a, b, bias=0.0, **kw)) + 1.0


def test_against_open_clips_formulas_in_pytorch(rng):
    torch = pytest.importorskip("torch")
    a, b = _embeddings(rng)
    ta = torch.tensor(np.asarray(a), requires_grad=True)
    tb = torch.tensor(np.asarray(b), requires_grad=True)
    scale, bias = torch.tensor(7.0, dtype=torch.float64), torch.tensor(-3.0, dtype=torch.float64)
    labels = torch.arange(13)
    # ClipLoss: the mean of the cross-entropies of the image and text logits.
    per_image = scale * ta @ tb.T
    clip = (
        torch.nn.functional.cross_entropy(per_image, labels)
        + torch.nn.functional.cross_entropy(per_image.T, labels)
    ) / 2
    # SigLipLoss: -Σ log σ(z·logits) over all pairs, divided by the batch.
    z = 2 * torch.eye(13, dtype=torch.float64) - 1
    siglip = -torch.nn.functional.logsigmoid(z * (per_image + bias)).sum() / 13
    for kind, value in [("softmax", clip), ("sigmoid", siglip)]:
        grads = torch.autograd.grad(value, (ta, tb), retain_graph=True)
        got = jax.value_and_grad(
            lambda a, b, kind=kind: _call(kind, a, b, 7.0, -3.0, reduction="mean"), (0, 1)
        )(a, b)
        assert_close(got, (value.item(), tuple(g.numpy() for g in grads)), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_bfloat16_embeddings_accumulate_in_float32(kind, rng):
    a, b = _embeddings(rng, n=64, d=32, dtype=jnp.bfloat16)
    got = _call(kind, a, b, 10.0, -5.0, reduction="mean")
    assert got.dtype == jnp.float32
    want = np.mean(_oracle(kind, a.astype(jnp.float64), b.astype(jnp.float64), 10.0, -5.0))
    assert_close(got, want, rtol=1e-5)
    da, db = jax.grad(lambda a, b: _call(kind, a, b, 10.0, -5.0, reduction="mean"), (0, 1))(a, b)
    assert da.dtype == db.dtype == jnp.bfloat16
    wide = jax.grad(lambda a, b: jnp.mean(_plain(kind, a, b, 10.0, -5.0)), (0, 1))(
        a.astype(jnp.float64), b.astype(jnp.float64)
    )
    assert_close((da, db), wide, rtol=1e-2, scaled=True)  # bf16 rounds to 2**-8


@pytest.mark.parametrize("kind", KINDS)
def test_scale_and_bias_take_arrays_and_schedules(kind, rng):
    a, b = _embeddings(rng)
    log_scale = jnp.float64(np.log(5.0))
    f = jax.jit(lambda t: _call(kind, a, b, jnp.exp(t), -1.0, reduction="mean"))
    g = jax.grad(lambda t: _call(kind, a, b, jnp.exp(t), -1.0, reduction="mean"))(log_scale)
    eps = 1e-6
    numeric = (f(log_scale + eps) - f(log_scale - eps)) / (2 * eps)
    assert_close(g, numeric, rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_vmap_over_batches_equals_a_loop(kind, rng):
    a, b = _embeddings(rng, n=12)
    a, b = a.reshape(3, 4, 6), b.reshape(3, 4, 6)
    got = jax.vmap(lambda a, b: _call(kind, a, b, chunk_size=3))(a, b)
    want = jnp.stack([_call(kind, a[i], b[i], chunk_size=3) for i in range(3)])
    assert_close(got, want, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_one_pair_and_an_empty_batch(kind):
    a = jnp.ones((1, 3)) / np.sqrt(3)
    assert_close(_call(kind, a, a, 2.0, -1.0), _oracle(kind, a, a, 2.0, -1.0), rtol=1e-12)
    if kind == "softmax":
        assert float(SOFT(a, a)[0]) == 0.0  # one pair: nothing to compete with
    empty = jnp.zeros((0, 3))
    assert _call(kind, empty, empty).shape == (0,)
    assert float(_call(kind, empty, empty, reduction="mean")) == 0.0
    assert jax.grad(lambda a: _call(kind, a, a, reduction="sum"))(empty).shape == (0, 3)


@pytest.mark.parametrize("kind", KINDS)
@requires_xla_cpu
def test_memory_at_16384_pairs_is_under_5_percent_of_the_matrix(kind):
    n, d = 16384, 128
    spec = jax.ShapeDtypeStruct((n, d), jnp.float32)

    def step(a, b):
        return _call(kind, a, b, 10.0, -10.0, reduction="mean")

    used = temp_bytes(jax.value_and_grad(step, argnums=(0, 1)), spec, spec)
    assert used <= 0.05 * n * n * 4, used / (n * n * 4)


@pytest.mark.parametrize("kind", KINDS)
def test_errors_name_the_argument(kind):
    a = jnp.ones((4, 3))
    with pytest.raises(ValueError, match=r"embeddings.shape=\(4, 3\).*other.*\(4, 2\)"):
        _call(kind, a, jnp.ones((4, 2)))
    with pytest.raises(ValueError, match=r"\(12,\)"):
        _call(kind, jnp.ones(12), jnp.ones(12))
    with pytest.raises(TypeError, match=r"other_embeddings\.dtype"):
        _call(kind, a, a.astype(jnp.float32))
    with pytest.raises(TypeError, match="embeddings must be a floating"):
        _call(kind, jnp.ones((4, 3), jnp.int32), jnp.ones((4, 3), jnp.int32))
    with pytest.raises(ValueError, match="scale must be a scalar"):
        _call(kind, a, a, scale=jnp.ones(4))
    with pytest.raises(TypeError, match="scale must be a float"):
        _call(kind, a, a, scale=True)
    with pytest.raises(ValueError, match="chunk_size"):
        _call(kind, a, a, chunk_size=0)
    with pytest.raises(ValueError, match="reduction"):
        _call(kind, a, a, reduction="batchmean")
    if kind == "sigmoid":
        with pytest.raises(ValueError, match="bias must be a scalar"):
            SIG(a, a, bias=jnp.ones(2))
