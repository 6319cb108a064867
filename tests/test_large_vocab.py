"""Fused linear + cross-entropy: equal to the materialised loss, lean in memory and in flops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

from .conftest import F32_ULP, assert_close, flops, requires_xla_cpu, temp_bytes

FUSED = jaxloss.linear_softmax_cross_entropy
CE_INT = jaxloss.softmax_cross_entropy_with_integer_labels


def _problem(shape, d, v, dtype=jnp.float32, seed=0):
    k = jax.random.split(jax.random.key(seed), 3)
    h = jax.random.normal(k[0], (*shape, d), dtype)
    w = (jax.random.normal(k[1], (d, v), jnp.float32) / d**0.5 * 3).astype(dtype)
    y = jax.random.randint(k[2], shape, 0, v, jnp.int32)
    return h, w, y


def _value_and_grads(f, h, w, cot):
    return jax.jit(jax.value_and_grad(lambda h, w: jnp.sum(f(h, w) * cot), argnums=(0, 1)))(h, w)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(
    "options",
    [{}, {"ignore_index": -100, "label_smoothing": 0.1, "z_loss": 1e-3}],
    ids=["plain", "all-options"],
)
@pytest.mark.parametrize("chunk", [None, 7, 64])
def test_equals_materialised(reduction, options, chunk):
    # 2 x 19 tokens and V = 37: neither is a multiple of the chunk.
    h, w, y = _problem((2, 19), 8, 37)
    y = y.at[0, ::5].set(-100) if "ignore_index" in options else y
    cot = jnp.arange(38.0, dtype=jnp.float32).reshape(2, 19) / 38 if reduction == "none" else 1.0
    kw = dict(options, reduction=reduction)
    got = _value_and_grads(lambda h, w: FUSED(h, w, y, chunk_size=chunk, **kw), h, w, cot)
    want = _value_and_grads(lambda h, w: CE_INT(h @ w, y, **kw), h, w, cot)
    # Both in float32, summed in other orders (chunks, the weight gradient over tokens): a few
    # ulps of each leaf's largest entry (measured up to 1).
    assert_close(got, want, rtol=8 * F32_ULP, scaled=True)
    assert got[1][0].dtype == h.dtype and got[1][1].dtype == w.dtype


def test_float64():
    h, w, y = _problem((9,), 5, 11, jnp.float64)
    got = _value_and_grads(lambda h, w: FUSED(h, w, y, reduction="mean", chunk_size=4), h, w, 1.0)
    want = _value_and_grads(lambda h, w: CE_INT(h @ w, y, reduction="mean"), h, w, 1.0)
    assert_close(got, want, rtol=1e-12, scaled=True)


def test_bf16_agrees_with_float32_to_bf16_rounding():
    h, w, y = _problem((64,), 32, 500, jnp.bfloat16)
    f32 = _value_and_grads(
        lambda h, w: FUSED(h, w, y, reduction="mean"),
        h.astype(jnp.float32),
        w.astype(jnp.float32),
        1.0,
    )
    bf16 = _value_and_grads(lambda h, w: FUSED(h, w, y, reduction="mean"), h, w, 1.0)
    assert bf16[0].dtype == jnp.float32
    assert bf16[1][0].dtype == jnp.bfloat16 and bf16[1][1].dtype == jnp.bfloat16
    # The gradients are rounded to bfloat16: half an ulp, 2**-8 of the largest entry.
    assert_close(bf16, f32, rtol=2.0**-8, scaled=True)


def test_all_ignored_mean_is_zero_with_zero_gradients():
    h, w, _ = _problem((6,), 4, 9)
    y = jnp.full(6, -100)
    loss, (dh, dw) = _value_and_grads(
        lambda h, w: FUSED(h, w, y, ignore_index=-100, reduction="mean"), h, w, 1.0
    )
    assert loss == 0 and not jnp.any(dh) and not jnp.any(dw)


def test_out_of_range_labels():
    h, w, y = _problem((4,), 3, 5)
    with pytest.raises(ValueError, match=r"labels\[2\] = 5"):
        FUSED(h, w, y.at[2].set(5))
    loss = jax.jit(lambda y: FUSED(h, w, y))(y.at[2].set(5))
    assert np.isnan(loss[2]) and np.isfinite(loss[jnp.array([0, 1, 3])]).all()
    assert np.isnan(jax.jit(lambda y: FUSED(h, w, y, reduction="mean"))(y.at[2].set(-3)))


def test_bad_arguments_are_named():
    h, w, y = _problem((4,), 3, 5)
    with pytest.raises(TypeError, match=r"hidden\.dtype=bfloat16 and weight\.dtype=float32"):
        FUSED(h.astype(jnp.bfloat16), w, y)
    with pytest.raises(ValueError, match=r"hidden\.shape=\(4, 3\) and weight\.shape=\(5, 3\)"):
        FUSED(h, w.T, y)
    with pytest.raises(ValueError, match=r"labels\.shape"):
        FUSED(h, w, y[:3])
    with pytest.raises(TypeError, match="labels must be an integer"):
        FUSED(h, w, y.astype(jnp.float32))
    with pytest.raises(ValueError, match="chunk_size"):
        FUSED(h, w, y, chunk_size=0)
    with pytest.raises(ValueError, match="reduction"):
        FUSED(h, w, y, reduction="batchmean")


@requires_xla_cpu
def test_memory_target_at_scale():
    """N=8192, D=256, V=32768, float32: the default chunk holds <= 5% of the materialised
    version's temporaries and <= 1/8 of the logits (compiled only, nothing runs)."""
    n, d, v = 8192, 256, 32768
    h = jax.ShapeDtypeStruct((n, d), jnp.float32)
    w = jax.ShapeDtypeStruct((d, v), jnp.float32)
    y = jax.ShapeDtypeStruct((n,), jnp.int32)

    def fused(h, w, y):
        return jax.value_and_grad(lambda h, w: FUSED(h, w, y, reduction="mean"), argnums=(0, 1))(
            h, w
        )

    def materialised(h, w, y):
        return jax.value_and_grad(lambda h, w: CE_INT(h @ w, y, reduction="mean"), argnums=(0, 1))(
            h, w
        )

    ours, theirs = temp_bytes(fused, h, w, y), temp_bytes(materialised, h, w, y)
    logits = n * v * 4
    assert theirs >= logits  # the materialised version really holds the logits
    assert ours <= 0.05 * theirs and ours <= logits / 8, (ours, theirs)


@requires_xla_cpu
def test_flops_forward_only_and_gradients_in_forward():
    """One chunk (XLA counts a loop body once): a plain call costs 2·N·D·V, the mean's value
    and gradients 6·N·D·V (gradients in the forward pass, no recompute)."""
    n, d, v = 256, 64, 512
    h, w, y = _problem((n,), d, v)
    ndv = n * d * v

    def loss(reduction):
        return lambda h, w: jnp.sum(FUSED(h, w, y, reduction=reduction, chunk_size=n))

    assert 1.9 < flops(loss("mean"), h, w) / ndv < 2.5
    assert 5.9 < flops(jax.value_and_grad(loss("mean"), argnums=(0, 1)), h, w) / ndv < 6.5


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_gradients_with_respect_to_smoothing_and_z_loss(reduction):
    h, w, y = _problem((13,), 6, 21)
    cot = jnp.arange(13.0, dtype=jnp.float32) / 13 if reduction == "none" else 1.0

    def total(f):
        return lambda eps, z: jnp.sum(f(eps, z) * cot)

    fused = total(
        lambda e, z: FUSED(h, w, y, label_smoothing=e, z_loss=z, reduction=reduction, chunk_size=4)
    )
    plain = total(lambda e, z: CE_INT(h @ w, y, label_smoothing=e, z_loss=z, reduction=reduction))
    args = (jnp.float32(0.1), jnp.float32(0.01))
    assert_close(
        jax.grad(fused, (0, 1))(*args), jax.grad(plain, (0, 1))(*args), rtol=2e-6, scaled=True
    )
