"""Dice / Tversky losses: float64 oracles from the definition (values and gradients), optax as a
second opinion where it is right, and the cases where it is not (an empty class with
smooth = 0, probabilities under jit, one class of probabilities), low precision, jit, vmap and
errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jaxloss._overlap import binary_dice_loss, dice_loss, multiclass_generalized_dice_loss

from . import reference
from .conftest import F32_ULP, assert_close

GDL = multiclass_generalized_dice_loss


def _segmentation(rng, shape=(2, 3, 4), classes=3, dtype=jnp.float64):
    """Logits [*shape, classes] and one-hot targets (binary masks when classes == 1)."""
    logits = 2 * rng.normal(size=(*shape, classes))
    if classes == 1:
        targets = (rng.random(size=(*shape, 1)) < 0.4).astype(np.float64)
    else:
        targets = np.eye(classes)[rng.integers(0, classes, size=shape)]
    return jnp.asarray(logits, dtype), jnp.asarray(targets, dtype)


def _oracle(x, t, *, apply_softmax=True, ignore_background=False, axis=None, **kw):
    p = reference.dice_probabilities(x) if apply_softmax else np.asarray(x, np.float64)
    axis = tuple(range(1, np.ndim(x) - 1)) if axis is None else axis
    loss = reference.dice(p, t, axis, **kw)
    return loss[..., 1:] if ignore_background and loss.shape[-1] > 1 else loss


def _grad(f, *args, argnums=0):
    """The gradient of f (scalar), jitted: one compilation instead of one per operation."""
    return jax.jit(jax.grad(f, argnums))(*args)


def _optax(name, *args, **kw):
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        return getattr(optax.losses, name)(*args, **kw)


OPTIONS = [
    {},
    {"smooth": 0.0},
    {"smooth": 3.0, "alpha": 0.3, "beta": 0.7},
    {"ignore_background": True, "class_weights": "random"},
    {"axis": 1},
    {"axis": (0, 1, 2)},
    {"axis": (-3, -2)},
]


def _options(options, classes, rng):
    kw = dict(options)
    if kw.get("class_weights") == "random":
        kw["class_weights"] = jnp.asarray(rng.uniform(0.5, 2.0, classes))
    return kw


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_equals_the_float64_oracle(classes, options, rng):
    x, t = _segmentation(rng, classes=classes)
    kw = _options(options, classes, rng)
    want = _oracle(x, t, **kw)
    got = dice_loss(x, t, **kw)
    assert got.shape == want.shape and got.dtype == jnp.float64
    assert_close(got, want, rtol=1e-12, atol=1e-15)
    assert_close(dice_loss(x, t, reduction="mean", **kw), np.mean(want), rtol=1e-12)
    assert_close(dice_loss(x, t, reduction="sum", **kw), np.sum(want), rtol=1e-12)
    # Probabilities given as such: the same loss.
    p = jnp.asarray(reference.dice_probabilities(x))
    assert_close(dice_loss(p, t, apply_softmax=False, **kw), want, rtol=1e-12, atol=1e-15)


def test_default_shape_and_axes():
    x = t = jax.ShapeDtypeStruct((2, 3, 4, 5, 4), jnp.float32)

    def shape(fn=dice_loss, x=x, t=t, **kw):
        out = jax.eval_shape(lambda x, t: fn(x, t, **kw), x, t)
        assert out.dtype == jnp.float32
        return out.shape

    assert shape() == (2, 4)
    assert shape(ignore_background=True) == shape(GDL, ignore_background=True) == (2, 3)
    assert shape(axis=()) == (2, 3, 4, 5, 4)  # one pixel each
    assert shape(axis=(0, 2)) == (3, 5, 4)
    assert shape(reduction="mean") == shape(GDL, reduction="sum") == ()
    one = jax.ShapeDtypeStruct((4,), jnp.float32)
    assert shape(x=one, t=one) == (4,)  # [C]: nothing to sum
    assert shape(binary_dice_loss, x=one, t=one) == (4,)  # [batch]: one pixel each
    assert shape(binary_dice_loss, x=x, t=x) == (2,)  # [2, 3, 4, 5, 4]: no class axis


def _numeric_grad(f, x, h=1e-6):
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        grad[i] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("options", [{}, {"smooth": 0.0, "alpha": 0.2, "beta": 0.9}], ids=str)
def test_gradient_equals_the_oracles(classes, options, rng):
    x, t = _segmentation(rng, shape=(2, 3, 2), classes=classes)
    cot = rng.normal(size=(2, classes))
    got = _grad(lambda x: jnp.sum(jnp.asarray(cot) * dice_loss(x, t, **options)), x)
    want = _numeric_grad(lambda x: np.sum(cot * _oracle(x, t, **options)), x)
    assert_close(got, want, rtol=1e-7, scaled=True)


@pytest.mark.parametrize("classes", [1, 3])
def test_check_grads_to_second_order(classes, rng):
    x, t = _segmentation(rng, shape=(2, 2, 2), classes=classes)
    soft = jax.nn.softmax(jnp.asarray(rng.normal(size=t.shape)), axis=-1) if classes > 1 else t
    soft = 0.5 * soft + 0.25
    loss = jax.jit(lambda x: dice_loss(x, soft, smooth=0.5, alpha=0.3, beta=0.7, reduction="sum"))
    # Jitted: each derivative program compiles once, where eager would compile every operation.
    # Second order (forward over forward, reverse over reverse) through the softmax core; the
    # sigmoid is jax.nn's.
    order = 2 if classes > 1 else 1
    for mode in ["fwd", "rev"]:
        check_grads(loss, (x,), order=order, modes=[mode], eps=1e-5, atol=1e-6, rtol=1e-6)

    @jax.jit
    def f(t, smooth, alpha, beta):  # the targets and the hyperparameters, traced
        return dice_loss(x, t, smooth=smooth, alpha=alpha, beta=beta, reduction="sum")

    args = (soft, jnp.float64(0.5), jnp.float64(0.3), jnp.float64(0.7))
    check_grads(f, args, order=1, modes=["rev"], eps=1e-5, atol=1e-6, rtol=1e-6)
    gdl = jax.jit(lambda x: GDL(x, soft, reduction="sum"))
    check_grads(gdl, (x,), order=1, modes=["rev"], eps=1e-5, atol=1e-6, rtol=1e-6)


def _optax_reduce(ours, reduction):
    return {"none": ours, "mean": jnp.mean(ours, -1), "sum": jnp.sum(ours, -1)}[reduction]


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_agrees_with_optax(classes, options, rng):
    x, t = _segmentation(rng, classes=classes)
    kw = _options(options, classes, rng)
    ours = dice_loss(x, t, **kw)
    for reduction in ["none", "mean", "sum"]:  # optax's reduces over the classes only
        theirs = _optax("dice_loss", x, t, reduction=reduction, **kw)
        assert_close(_optax_reduce(ours, reduction), theirs, rtol=1e-12, atol=1e-15)
    theirs = _optax("dice_loss", x, t, reduction="none", **kw)
    assert_close(dice_loss(x, t, reduction="mean", **kw), jnp.mean(theirs), rtol=1e-12)


@pytest.mark.parametrize("ignore_background", [False, True])
def test_generalized_equals_the_oracle_and_optax(ignore_background, rng):
    x, t = _segmentation(rng, classes=3)
    t = t.at[..., 2].set(0).at[..., 0].set(1 - t[..., 1])  # class 2 absent
    w = reference.generalized_dice_weights(t)
    np.testing.assert_allclose(w[2], 3 * 1e7 / np.sum(1 / (np.sum(t, (0, 1, 2)) ** 2 + 1e-7)))
    want = _oracle(x, t, class_weights=w, ignore_background=ignore_background)
    got = GDL(x, t, ignore_background=ignore_background)
    assert got.shape == want.shape == (2, 2 if ignore_background else 3)
    assert_close(got, want, rtol=1e-12, atol=1e-15)
    mean = GDL(x, t, ignore_background=ignore_background, reduction="mean")
    theirs = _optax("multiclass_generalized_dice_loss", x, t, ignore_background=ignore_background)
    assert_close(mean, theirs, rtol=1e-12)
    assert_close(GDL(x, t, reduction="sum"), np.sum(_oracle(x, t, class_weights=w)), rtol=1e-12)


def test_generalized_is_not_sudres_ratio_of_sums(rng):
    # The docstring's claim: Sudre et al.'s ratio is the mean of the per-class Dice
    # coefficients weighted by w_c (P_c + T_c); optax's (ours) weights them by w_c alone.
    x, t = _segmentation(rng, classes=3)
    p = reference.dice_probabilities(x)
    sudre = reference.sudre_generalized_dice(p, t, (1, 2))
    coeff = 1 - np.asarray(dice_loss(x, t, smooth=0.0))  # 2 I_c / (P_c + T_c)
    w = 1 / np.sum(t, (1, 2)) ** 2
    share = w * np.sum(p + t, (1, 2))
    assert_close(1 - np.sum(share * coeff, -1) / np.sum(share, -1), sudre, rtol=1e-12)
    ours = GDL(x, t, smooth=0.0)  # per example: [2, 3]
    assert np.all(np.abs(np.mean(ours, -1) - sudre) > 1e-3)


def test_empty_class_with_no_smoothing_is_zero_with_a_zero_gradient(rng):
    # Class 2 is neither predicted nor present and smooth = 0: its denominator is 0.
    x, t = _segmentation(rng, classes=3)
    x = x.at[..., 2].set(-jnp.inf)  # probability 0 exactly
    t = t.at[..., 2].set(0).at[..., 0].set(1 - t[..., 1])
    p = jax.nn.softmax(x, axis=-1)
    want = _oracle(p, t, smooth=0.0, apply_softmax=False)
    assert np.all(want[:, 2] == 0) and np.all(want[:, :2] > 0.1)
    f = lambda p: dice_loss(p, t, smooth=0.0, apply_softmax=False)  # noqa: E731

    @jax.jit
    def derivatives(p):  # reverse mode (the Jacobian's rows) and forward mode
        return f(p), jax.jacrev(f)(p), jax.jvp(f, (p,), (jnp.ones_like(p),))[1]

    value, jac, tangent = derivatives(p)  # jac: [2, 3 classes, *p.shape]
    assert_close(value, want, rtol=1e-12, atol=1e-15)
    assert np.all(np.asarray(jac[:, 2]) == 0) and np.all(np.isfinite(jac))
    assert np.all(np.isfinite(tangent)) and np.all(np.asarray(tangent[:, 2]) == 0)
    # optax's 0/0: a NaN loss for that class, and a NaN gradient for its probabilities (for
    # every logit, through the softmax).
    theirs = _optax("dice_loss", p, t, smooth=0.0, apply_softmax=False, reduction="none")
    assert_close(theirs[:, :2], want[:, :2], rtol=1e-12)
    assert np.all(np.isnan(theirs[:, 2]))
    g = jax.grad(lambda p: jnp.sum(_optax("dice_loss", p, t, smooth=0.0, apply_softmax=False)))(p)
    assert np.all(np.isnan(g[..., 2])) and not np.any(np.isnan(g[..., :2]))

    @jax.jit
    def from_logits(x):
        ours = lambda x: jnp.sum(dice_loss(x, t, smooth=0.0))  # noqa: E731
        theirs = lambda x: jnp.sum(_optax("dice_loss", x, t, smooth=0.0))  # noqa: E731
        return ours(x), jax.grad(ours)(x), jax.grad(theirs)(x)

    value, grad, grad_theirs = from_logits(x)
    assert_close(value, np.sum(want), rtol=1e-12)
    assert np.all(np.isfinite(grad)) and np.all(np.isnan(grad_theirs))


def test_empty_mask_from_logits():
    # σ(-inf) = 0: an empty mask predicted as empty, smooth = 0, is a perfect 0 (optax: NaN).
    x = jnp.array([[-jnp.inf, -jnp.inf, -jnp.inf], [3.0, -1.0, 0.0]])
    t = jnp.array([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    f = lambda x: binary_dice_loss(x, t, smooth=0.0)  # noqa: E731
    g = lambda x: _optax("binary_dice_loss", x, t, smooth=0.0)  # noqa: E731
    loss, grad, theirs = jax.jit(lambda x: (f(x), jax.grad(lambda x: jnp.sum(f(x)))(x), g(x)))(x)
    s = 1 / (1 + np.exp(-np.array([3.0, -1.0, 0.0])))
    assert_close(loss, np.array([0.0, 1 - 2 * (s[0] + s[2]) / (np.sum(s) + 2)]), rtol=1e-12)
    assert np.all(np.asarray(grad[0]) == 0) and np.all(np.isfinite(grad))
    assert np.isnan(theirs[0]) and np.isfinite(theirs[1])


def test_ignore_background_and_class_weights(rng):
    x, t = _segmentation(rng, classes=3)
    w = jnp.array([5.0, 2.0, 0.5])
    full = dice_loss(x, t)
    assert_close(dice_loss(x, t, ignore_background=True), full[:, 1:], rtol=1e-15)
    assert_close(dice_loss(x, t, class_weights=w), full * w[None], rtol=1e-15)
    both = dice_loss(x, t, class_weights=w, ignore_background=True)
    assert_close(both, (full * w[None])[:, 1:], rtol=1e-15)
    # One class has no background to drop.
    xb, tb = _segmentation(rng, classes=1)
    assert_close(dice_loss(xb, tb, ignore_background=True), dice_loss(xb, tb), rtol=0)


def test_tversky_special_cases(rng):
    x, t = _segmentation(rng, classes=3)
    p = reference.dice_probabilities(x)
    inter, pred, true = (np.sum(a, (1, 2)) for a in (p * t, p, t))
    s = 0.5
    dice = 1 - (2 * inter + 2 * s) / (pred + true + 2 * s)
    jaccard = 1 - (inter + s) / (pred + true - inter + s)
    assert_close(dice_loss(x, t, smooth=s), dice, rtol=1e-12)
    assert_close(dice_loss(x, t, smooth=s, alpha=1.0, beta=1.0), jaccard, rtol=1e-12)
    # Swapping predictions and targets swaps the false positives and negatives.
    q = jnp.asarray(p)
    soft = jax.nn.softmax(jnp.asarray(rng.normal(size=t.shape)), axis=-1)
    a = dice_loss(q, soft, alpha=0.2, beta=0.9, apply_softmax=False)
    b = dice_loss(soft, q, alpha=0.9, beta=0.2, apply_softmax=False)
    assert_close(a, b, rtol=1e-12)
    # β > α: a missed pixel (a false negative) costs more than a false alarm.
    one, other = jnp.array([[[1.0, 0.0]]]), jnp.array([[[0.0, 1.0]]])  # one pixel of 2 classes
    kw = {"alpha": 0.3, "beta": 0.7, "apply_softmax": False}
    missed = dice_loss(other, one, **kw)[0, 0]  # class 0 present, not predicted
    false_alarm = dice_loss(one, other, **kw)[0, 0]  # class 0 predicted, not present
    assert_close(missed, 0.7 / 1.7, rtol=1e-15)
    assert_close(false_alarm, 0.3 / 1.3, rtol=1e-15)


def test_binary_shapes_and_optax(rng):
    x, t = _segmentation(rng, shape=(2, 3, 4), classes=1)
    want = _oracle(x, t)[..., 0]
    for xs, ts in [(x, t), (x[..., 0], t[..., 0]), (x[..., 0], t), (x, t[..., 0])]:
        got = binary_dice_loss(xs, ts)
        assert got.shape == (2,)
        assert_close(got, want, rtol=1e-12)
        assert_close(got, _optax("binary_dice_loss", xs, ts), rtol=1e-12)
    assert_close(binary_dice_loss(x, t, reduction="mean"), np.mean(want), rtol=1e-12)
    per_row = binary_dice_loss(x[..., 0], t[..., 0], axis=-1, smooth=0.5)
    assert per_row.shape == (2, 3)
    assert_close(per_row, _oracle(x, t, axis=(2,), smooth=0.5)[..., 0], rtol=1e-12)
    masks = t[..., 0] > 0  # boolean masks are targets too
    assert_close(binary_dice_loss(x[..., 0], masks), want, rtol=1e-12)


def test_binary_probabilities_are_accepted(rng):
    # optax checks that the single class "sums to 1" and so rejects binary probabilities.
    x, t = _segmentation(rng, classes=1)
    p = jax.nn.sigmoid(x)
    want = _oracle(p, t, apply_softmax=False)
    assert_close(dice_loss(p, t, apply_softmax=False), want, rtol=1e-12)
    assert_close(binary_dice_loss(p, t, apply_sigmoid=False), want[..., 0], rtol=1e-12)
    with pytest.raises(ValueError, match="valid probability distributions"):
        _optax("dice_loss", p, t, apply_softmax=False)
    with pytest.raises(ValueError, match="valid probability distributions"):
        _optax("binary_dice_loss", p, t, apply_sigmoid=False)


def test_probabilities_under_jit(rng):
    # Under jit the values cannot be checked; optax's check fails on the tracer.
    x, t = _segmentation(rng, classes=3)
    p = jax.nn.softmax(x, axis=-1)
    f = jax.jit(lambda p, t: dice_loss(p, t, apply_softmax=False))
    assert_close(f(p, t), dice_loss(p, t, apply_softmax=False), rtol=1e-14)
    assert_close(f(p, t), _oracle(p, t, apply_softmax=False), rtol=1e-12)
    pb, tb = jax.nn.sigmoid(x[..., :1]), t[..., :1]
    g = jax.jit(lambda p, t: binary_dice_loss(p, t, apply_sigmoid=False))
    assert_close(g(pb, tb), _oracle(pb, tb, apply_softmax=False)[..., 0], rtol=1e-12)
    with pytest.raises(jax.errors.ConcretizationTypeError):
        jax.jit(lambda p, t: _optax("dice_loss", p, t, apply_softmax=False))(p, t)


def test_bfloat16_sums_in_float32(rng):
    x, t = _segmentation(rng, shape=(2, 8, 8), classes=3, dtype=jnp.bfloat16)
    want = _oracle(np.asarray(x, np.float64), np.asarray(t, np.float64), smooth=0.1)

    @jax.jit
    def run(x, t):
        f = lambda x, t: jnp.sum(dice_loss(x, t, smooth=0.1))  # noqa: E731
        return dice_loss(x, t, smooth=0.1), jax.grad(f, (0, 1))(x, t), GDL(x, t)

    got, grad, gdl = run(x, t)
    assert got.dtype == gdl.dtype == jnp.float32
    assert_close(got, want, rtol=64 * F32_ULP)
    assert grad[0].dtype == grad[1].dtype == jnp.bfloat16
    x64, t64 = np.asarray(x, np.float64), np.asarray(t, np.float64)
    want_grad = _numeric_grad(lambda x: np.sum(_oracle(x, t64, smooth=0.1)), x64)
    # One rounding to bfloat16 (at most 2^-8 relative), held to the largest entry's precision.
    assert_close(grad[0], want_grad, rtol=2**-8, scaled=True)
    p = jax.nn.softmax(x.astype(jnp.float32), axis=-1).astype(jnp.bfloat16)  # rows off by ~1e-3
    assert dice_loss(p, t, apply_softmax=False).dtype == jnp.float32


def test_jit_equals_eager_and_vmap_equals_batch(rng):
    x, t = _segmentation(rng, classes=3)
    kw = {"class_weights": jnp.array([1.0, 2.0, 3.0]), "alpha": 0.4, "beta": 0.6}
    eager = dice_loss(x, t, **kw), GDL(x, t), binary_dice_loss(x[..., 0], t[..., 0])

    @jax.jit
    def jitted(x, t, smooth):  # smooth traced, as a schedule passes it
        one = lambda x, t: dice_loss(x, t, axis=(0, 1), smooth=smooth, **kw)  # noqa: E731
        binary = lambda x, t: binary_dice_loss(x, t, axis=(0, 1))  # noqa: E731
        vmapped = jax.vmap(one)(x, t), GDL(x, t), jax.vmap(binary)(x[..., 0], t[..., 0])
        return dice_loss(x, t, smooth=smooth, **kw), vmapped

    batched, vmapped = jitted(x, t, 1.0)
    assert_close(batched, eager[0], rtol=1e-14)
    assert_close(vmapped, eager, rtol=1e-14)


X = jnp.zeros((2, 3, 3))
T = jnp.asarray(np.eye(3)[[[0, 1, 2], [2, 1, 0]]])
P = jnp.full((2, 3, 3), 1 / 3)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: dice_loss(X.astype(jnp.int32), T), TypeError, "predictions"),
        (lambda: dice_loss(X, T.astype(jnp.int32)), TypeError, "targets"),
        (lambda: dice_loss(X, T[:, :2]), ValueError, r"targets.shape=\(2, 2, 3\)"),
        (lambda: dice_loss(X, T[..., :2]), ValueError, "predictions and targets"),
        (lambda: dice_loss(jnp.float64(0), jnp.float64(0)), ValueError, "class axis"),
        (lambda: dice_loss(X, T, axis=-1), ValueError, "class axis"),
        (lambda: dice_loss(X, T, axis=3), ValueError, "axis 3 is out of range"),
        (lambda: dice_loss(X, T, axis=(1, -2)), ValueError, "repeated"),
        (lambda: dice_loss(X, T, axis=1.0), TypeError, "axis"),
        (lambda: dice_loss(X, T, axis=True), TypeError, "axis"),
        (lambda: dice_loss(X, T, smooth=-1.0), ValueError, "smooth must be >= 0"),
        (lambda: dice_loss(X, T, alpha=-0.1), ValueError, "alpha must be >= 0"),
        (lambda: dice_loss(X, T, beta=-0.1), ValueError, "beta must be >= 0"),
        (lambda: dice_loss(X, T, class_weights=jnp.ones(2)), ValueError, "class_weights"),
        (lambda: dice_loss(X, T, reduction="max"), ValueError, "reduction"),
        (lambda: dice_loss(X, T, apply_softmax=False), ValueError, "predictions must be"),
        (lambda: dice_loss(2 * P, T, apply_softmax=False), ValueError, r"sums lie in \[2, 2\]"),
        (
            lambda: dice_loss(P.at[0, 0].set([1.5, -0.5, 0]), T, apply_softmax=False),
            ValueError,
            r"predictions must be probabilities in \[0, 1\]",
        ),
        (
            lambda: binary_dice_loss(X[..., 0] + 1.5, T[..., 0], apply_sigmoid=False),
            ValueError,
            "predictions must be probabilities",
        ),
        (lambda: binary_dice_loss(X, T[..., :2]), ValueError, "predictions and targets"),
        (lambda: binary_dice_loss(X, T, axis=3), ValueError, "out of range for predictions"),
        (lambda: GDL(X, T[..., :2]), ValueError, "predictions and targets"),
        (lambda: GDL(X, T, smooth=-1.0), ValueError, "smooth"),
    ],
)
def test_bad_inputs_raise_errors_that_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
