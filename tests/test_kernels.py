"""Every softmax kernel against the plain-jnp reference, forced on the current host: values,
gradients and forward-mode derivatives of every loss built on the core agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss import _backend

from .conftest import requires_xla_cpu

CE = jaxloss.softmax_cross_entropy_with_integer_labels

# Shapes that take each XLA:CPU arrangement: short rows, the sampled shift (2**12+ classes),
# its exact fallback (a spike far above the sample), blocked sums (2**16+), half precision.
CASES = {
    "short": (jnp.float32, (7, 300), None),
    "sampled": (jnp.float32, (6, 5000), None),
    "sampled-overflow": (jnp.float32, (6, 5000), 400.0),
    "blocked": (jnp.float32, (3, 2**16 + 3), None),
    "bf16-short": (jnp.bfloat16, (9, 300), None),
    "bf16-sampled": (jnp.bfloat16, (4, 5000), None),
}

LOSSES = {
    "integer": lambda x, y, t: CE(x, y, reduction="sum"),
    "integer-options": lambda x, y, t: CE(
        x, y, label_smoothing=0.1, z_loss=1e-3, ignore_index=2, reduction="mean"
    ),
    "integer-where": lambda x, y, t: CE(
        x, y, where=jnp.arange(x.shape[-1]) != 5, label_smoothing=0.1, reduction="mean"
    ),
    "soft": lambda x, y, t: jaxloss.softmax_cross_entropy(x, t, reduction="sum"),
    "focal": lambda x, y, t: jaxloss.softmax_focal_loss(x, y, reduction="sum"),
    "kl": lambda x, y, t: jaxloss.kl_divergence(x, t, reduction="sum"),
}


def _data(dtype, shape, spike, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=shape) * 3, dtype)
    if spike is not None:
        x = x.at[1, shape[-1] // 2].set(spike)
    y = jnp.asarray(rng.integers(0, shape[-1], shape[:-1]))
    t = jnp.asarray(rng.dirichlet(np.ones(shape[-1]), shape[:-1]), dtype)
    return x, y, t


def _run(kernels, loss, x, y, t):
    with _backend.forced(kernels):
        f = jax.jit(lambda x: loss(x, y, t))  # traced inside the block
        value, grad = jax.value_and_grad(f)(x)
        v = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), x.dtype)
        _, tangent = jax.jvp(lambda x: loss(x, y, t), (x,), (v,))
    return value, grad, tangent


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("kernels", sorted(set(_backend.KERNELS) - {"reference"}))
def test_kernels_equal_the_reference(kernels, loss, case):
    dtype, shape, spike = CASES[case]
    x, y, t = _data(dtype, shape, spike)
    got = _run(kernels, LOSSES[loss], x, y, t)
    want = _run("reference", LOSSES[loss], x, y, t)
    # Both sum in float32 (or wider) and round the gradient to the logits' dtype once: they
    # differ by the order of float32 sums, and by one rounding of the gradient.
    grad_rtol = 2.0**-7 if dtype == jnp.bfloat16 else 1e-5
    for a, b, rtol in zip(got, want, (1e-5, grad_rtol, 1e-5), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def test_forcing_an_unknown_kernel_is_an_error():
    with pytest.raises(ValueError, match="kernels"), _backend.forced("pallas"):
        pass


@requires_xla_cpu
def test_the_dispatch_lowers_the_cpu_kernels_on_cpu():
    # The sampled shift's guarded sums compile to a conditional; the reference has none.
    x, y, _ = _data(jnp.float32, (6, 5000), None)
    step = jax.value_and_grad(lambda x: CE(x, y, reduction="mean"))
    assert "conditional(" in jax.jit(step).lower(x).compile().as_text()
    with _backend.forced("reference"):
        assert "conditional(" not in jax.jit(lambda x: step(x)).lower(x).compile().as_text()
