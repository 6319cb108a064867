"""The contract every public loss keeps, over the one registry (`losses.py`): shapes, jit ==
eager, vmap == batch, the class axis anywhere, reductions and the weighted mean, gradients
(per example, and numerically to second order), low precision, and properties.

Past the eager == jit check, the checks run jitted: one compilation per program, where eager
dispatch would compile every operation of every loss for every shape and dtype."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxloss

from .conftest import F32_ULP, assert_close
from .losses import ADAPTERS, CASES, NOT_IN_REGISTRY, inputs


def _ids(cases):
    return [c.name for c in cases]


REDUCIBLE = [c for c in CASES if c.reduction]
WEIGHTED = [c for c in REDUCIBLE if c.weighted]
IGNORING = [c for c in REDUCIBLE if "ignore_index" in c.kwargs]
WITH_AXIS = [c for c in CASES if c.axis]
LIMITED = [c for c in CASES if not c.forward_mode or c.grad_order < 2]


def _out_shape(case, shape):
    if case.per == "class":
        return shape[:1] + shape[-1:] if len(shape) > 1 else shape
    return shape if case.per == "element" else shape[:-1]


def _loss(case, kwargs):
    """case.fn with its options, jitted."""
    return jax.jit(lambda *args: case.fn(*args, **kwargs))


def _grad(case, args, kwargs):
    """The gradient of the summed loss with respect to the first argument, jitted."""
    return jax.jit(jax.grad(lambda x, *rest: jnp.sum(case.fn(x, *rest, **kwargs))))(*args)


def test_registry_covers_every_public_loss():
    public = {n for n in dir(jaxloss) if not n.startswith("_") and callable(getattr(jaxloss, n))}
    covered = {c.public for c in CASES}
    assert covered | NOT_IN_REGISTRY.keys() == public, "add a Case to tests/losses.py"
    assert not covered & NOT_IN_REGISTRY.keys()
    for case in CASES:  # a case calls its public function, or an adapter of it
        assert ADAPTERS.get(case.fn, case.fn) is getattr(jaxloss, case.public), case.name


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_shapes_eager_equals_jit_and_vmap_equals_batch(case, rng):
    args, kwargs = inputs(case, rng.normal(size=(5, 7)) * 3, rng)
    eager = getattr(case.fn, "eager", case.fn)(*args, **kwargs)  # an adapter's, unjitted
    assert eager.shape == _out_shape(case, (5, 7))
    assert_close(_loss(case, kwargs)(*args), eager, rtol=1e-12)
    one = jax.jit(jax.vmap(lambda *a: case.fn(*a, **kwargs)))(*args)
    assert_close(one, eager, rtol=1e-12)
    leading, _ = inputs(case, rng.normal(size=(2, 3, 7)), rng)
    shape = jax.eval_shape(lambda *a: case.fn(*a, **kwargs), *leading).shape
    assert shape == _out_shape(case, (2, 3, 7))


@pytest.mark.parametrize("case", WITH_AXIS, ids=_ids(WITH_AXIS))
def test_class_axis_anywhere(case, rng):
    # Classes in the middle of [2, C, 3] give the loss (and its gradient) of [2, 3, C].
    args, kwargs = inputs(case, rng.normal(size=(2, 3, 6)) * 3, rng)

    def middle(a):
        return jnp.moveaxis(a, -1, 1) if a.ndim == 3 else a  # labels have no class axis

    moved = dict(kwargs, axis=1)
    for name in ("where", "weights"):  # broadcastable to the logits, so they move with them
        if name in kwargs:
            moved[name] = middle(jnp.broadcast_to(kwargs[name], args[0].shape))
    margs = tuple(middle(a) for a in args)
    assert_close(_loss(case, moved)(*margs), _loss(case, kwargs)(*args), rtol=1e-12)
    assert_close(_grad(case, margs, moved), middle(_grad(case, args, kwargs)), rtol=1e-12)


@pytest.mark.parametrize("case", REDUCIBLE, ids=_ids(REDUCIBLE))
def test_reductions(case, rng):
    args, kwargs = inputs(case, rng.normal(size=(6, 5)), rng)
    none, total, mean = jax.jit(
        lambda *a: [case.fn(*a, **kwargs, reduction=r) for r in ("none", "sum", "mean")]
    )(*args)
    assert total.shape == () and mean.shape == ()
    assert_close(total, np.sum(none), rtol=1e-12)
    if not case.weighted:
        assert_close(mean, np.mean(none), rtol=1e-12)


@pytest.mark.parametrize("case", WEIGHTED, ids=_ids(WEIGHTED))
def test_weighted_mean(case, rng):
    # PyTorch's "mean": sum(loss) / sum(w_y over the labels that are not ignored).
    args, kwargs = inputs(case, rng.normal(size=(6, 5)), rng)
    labels = np.asarray(args[1])
    kept = labels != kwargs.get("ignore_index")
    w = np.asarray(kwargs.get("class_weights", np.ones(5)), np.float64)
    weight = np.where(kept, w[np.where(kept, labels, 0)], 0.0)
    assert 0 < kept.sum() < kept.size or "ignore_index" not in kwargs  # some ignored, some kept
    none, mean = jax.jit(lambda *a: [case.fn(*a, **kwargs, reduction=r) for r in ("none", "mean")])(
        *args
    )
    assert_close(mean, np.sum(none) / weight.sum(), rtol=1e-12)


@pytest.mark.parametrize("case", IGNORING, ids=_ids(IGNORING))
def test_all_ignored_mean_is_zero_with_zero_gradient(case, rng):
    args, kwargs = inputs(case, rng.normal(size=(4, 5)), rng)
    args = (args[0], jnp.full_like(args[1], kwargs["ignore_index"]))
    loss, grad = jax.jit(
        jax.value_and_grad(lambda x, y: case.fn(x, y, **kwargs, reduction="mean"))
    )(*args)
    assert loss == 0
    np.testing.assert_array_equal(grad, np.zeros(args[0].shape))


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_per_example_gradients_through_vmap(case, rng):
    args, kwargs = inputs(case, rng.normal(size=(4, 6)), rng)

    def single(x, *rest):
        return jnp.sum(case.fn(x[None], *(r[None] for r in rest), **kwargs))

    per_example = jax.jit(jax.vmap(jax.grad(single)))(*args)
    assert_close(per_example, _grad(case, args, kwargs), rtol=1e-10, atol=1e-14)
    assert per_example.dtype == args[0].dtype


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_check_grads(case, rng):
    # To second order in float64, reverse and forward mode, as far as the Case says.
    args, kwargs = inputs(case, rng.normal(size=(3, 4)), rng)
    if case.x == "probs":  # central differences of log p stay accurate away from 0 and 1
        args = (jnp.clip(args[0], 0.05, 0.95), *args[1:])
    modes = ("fwd", "rev") if case.forward_mode else ("rev",)
    f = jax.jit(lambda x: case.fn(x, *args[1:], **kwargs))
    check_grads(f, (args[0],), case.grad_order, modes, eps=1e-5, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", LIMITED, ids=_ids(LIMITED))
def test_limits_in_the_registry_are_real(case, rng):
    # A limit on a Case is the loss's own: once it is lifted, the contract must cover it.
    args, kwargs = inputs(case, rng.normal(size=(3, 4)), rng)
    x = args[0]

    def f(x):
        return jnp.sum(case.fn(x, *args[1:], **kwargs))

    def raises(derivative, field):
        try:
            derivative()
        except (TypeError, NotImplementedError):
            return
        pytest.fail(f"{case.name} has it now: update {field} in its Case (tests/losses.py)")

    if not case.forward_mode:
        raises(lambda: jax.jvp(f, (x,), (x,)), "forward_mode")
    if case.grad_order < 2:
        raises(lambda: jax.grad(lambda x: jnp.vdot(jax.grad(f)(x), x))(x), "grad_order")


def _as_seen(case, args, kwargs):
    """The inputs as the loss sees them: logits soft-capped in float32 and rounded once to
    their dtype when the Case says so (a float64 loss of those, uncapped, is then exact)."""
    cap = kwargs.get("logit_soft_cap")
    if cap is None or not case.cap_in_dtype:
        return args, kwargs
    x, c = args[0], jnp.float32(cap)
    capped = (c * jnp.tanh(x.astype(jnp.float32) / c)).astype(x.dtype)
    return (capped, *args[1:]), {k: v for k, v in kwargs.items() if k != "logit_soft_cap"}


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_dtypes(case, dtype, rng):
    args, kwargs = inputs(case, rng.normal(size=(3, 8)), rng, dtype)
    loss, grad = jax.jit(jax.value_and_grad(lambda x, *rest: jnp.sum(case.fn(x, *rest, **kwargs))))(
        *args
    )
    assert loss.dtype == jnp.float32 and grad.dtype == dtype
    seen, seen_kwargs = _as_seen(case, args, kwargs)
    exact = _loss(case, seen_kwargs)(
        *(a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in seen)
    )
    # Accumulated in float32 from the values given: a few float32 roundings of sums over 8
    # classes and of the functions of them.
    assert_close(_loss(case, kwargs)(*args), exact, rtol=8 * F32_ULP, atol=F32_ULP)


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
    loss = _loss(case, kwargs)(*args)
    assert np.all(np.isfinite(loss))
    assert np.all(np.isfinite(_grad(case, args, kwargs)))
    # Every loss here is non-negative (entropy and divergences included), up to rounding.
    if case.nonnegative:
        assert np.all(np.asarray(loss) >= -1e-12 * max(1.0, scale))
    if case.shift_invariant:
        # Softmax losses depend on logits only up to an additive constant per example.
        shifted = (args[0] + 7.5, *args[1:])
        if case.target == "logits":
            shifted = (args[0] + 7.5, args[1] - 3.0)
        # float64: the shift rounds the logits by ~2**-52 of |x| + 7.5.
        assert_close(_loss(case, kwargs)(*shifted), loss, rtol=1e-12, atol=1e-12 * scale)
