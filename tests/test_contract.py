"""One contract for every public loss: shapes, jit, vmap, grad, reductions, properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .losses import CASES, REDUCIBLE, inputs

IDS = [c.name for c in CASES]


def _out_shape(case, shape):
    return shape if case.per == "element" else shape[:-1]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_eager_equals_jit_and_vmap_equals_batch(case):
    rng = np.random.default_rng(0)
    (args, kwargs) = inputs(case, rng.normal(size=(5, 7)) * 3, rng)
    eager = case.fn(*args, **kwargs)
    assert eager.shape == _out_shape(case, (5, 7))
    np.testing.assert_allclose(jax.jit(lambda *a: case.fn(*a, **kwargs))(*args), eager, rtol=1e-12)
    one = jax.vmap(lambda *a: case.fn(*a, **kwargs))(*args)
    np.testing.assert_allclose(one, eager, rtol=1e-12)


@pytest.mark.parametrize("case", REDUCIBLE, ids=[c.name for c in REDUCIBLE])
def test_reductions(case):
    rng = np.random.default_rng(1)
    args, kwargs = inputs(case, rng.normal(size=(6, 5)), rng)
    none = case.fn(*args, **kwargs)
    total = case.fn(*args, **kwargs, reduction="sum")
    np.testing.assert_allclose(total, none.sum(), rtol=1e-12)
    mean = case.fn(*args, **kwargs, reduction="mean")
    assert mean.shape == ()
    if "class_weights" not in kwargs and "ignore_index" not in kwargs:
        np.testing.assert_allclose(mean, none.mean(), rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_per_example_gradients_through_vmap(case):
    rng = np.random.default_rng(2)
    args, kwargs = inputs(case, rng.normal(size=(4, 6)), rng)

    def single(x, *rest):
        return jnp.sum(case.fn(x[None], *(r[None] for r in rest), **kwargs))

    per_example = jax.vmap(jax.grad(single))(*args)
    batch = jax.grad(lambda x: jnp.sum(case.fn(x, *args[1:], **kwargs)))(args[0])
    np.testing.assert_allclose(per_example, batch, rtol=1e-10, atol=1e-14)
    assert per_example.dtype == args[0].dtype


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_dtypes(case, dtype):
    rng = np.random.default_rng(3)
    args, kwargs = inputs(case, rng.normal(size=(3, 8)), rng, dtype)
    loss, grad = jax.value_and_grad(lambda x: jnp.sum(case.fn(x, *args[1:], **kwargs)))(args[0])
    assert loss.dtype == jnp.float32 and grad.dtype == dtype
    exact = case.fn(
        *(a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in args),
        **kwargs,
    )
    np.testing.assert_allclose(case.fn(*args, **kwargs), exact, rtol=1e-5, atol=1e-6)


@st.composite
def _problem(draw):
    n = draw(st.integers(1, 4))
    c = draw(st.integers(2, 6))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0, 100.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    return n, c, scale, seed


@settings(max_examples=25, deadline=None)
@given(problem=_problem(), case=st.sampled_from(CASES))
def test_property_finite_nonnegative_and_shift_invariant(problem, case):
    n, c, scale, seed = problem
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * scale
    args, kwargs = inputs(case, logits, rng)
    grad = jax.grad(lambda x: jnp.sum(case.fn(x, *args[1:], **kwargs)))(args[0])
    assert np.all(np.isfinite(case.fn(*args, **kwargs)))
    assert np.all(np.isfinite(grad))
    # Every loss here is non-negative (entropy and divergences included), up to rounding.
    assert np.all(np.asarray(case.fn(*args, **kwargs)) >= -1e-9 * max(1.0, scale))
    if case.per == "example" and case.name not in ("nll_loss",) and "z_loss" not in kwargs:
        # Softmax losses depend on logits only up to an additive constant per example.
        shifted = (args[0] + 7.5, *args[1:])
        if case.target == "logits":
            shifted = (args[0] + 7.5, args[1] - 3.0)
        np.testing.assert_allclose(
            case.fn(*shifted, **kwargs), case.fn(*args, **kwargs), rtol=1e-9, atol=1e-9 * scale
        )
