"""The row sums in blocks (XLA:CPU, half precision or rows of 2**16+ logits), the label pick
whose derivative is a select and the soft-target product without a select: same values and
derivatives as float64, no [N, C] temporaries in the compiled gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

from . import reference as ref
from .conftest import F32_ULP, compiled, requires_xla_cpu, temp_bytes

CE_INT = jaxloss.softmax_cross_entropy_with_integer_labels
OPTIONS = dict(ignore_index=3, class_weights=None, label_smoothing=0.1, z_loss=1e-3)

# (dtype, shape) on XLA:CPU: half precision in one pass (behind a barrier), short and long
# rows; leading dims; rows of 2**16+ in blocks, the last block overlapping its neighbour.
CASES = [
    (jnp.bfloat16, (15, 300)),
    (jnp.bfloat16, (7, 40000)),
    (jnp.float16, (3, 2, 2000)),
    (jnp.bfloat16, (10, 2**16 + 5)),
    (jnp.float32, (5, 2**16 + 3)),
]


def _data(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=shape) * 3, dtype)
    labels = rng.integers(0, shape[-1], shape[:-1])
    labels.flat[0] = OPTIONS["ignore_index"]
    return x, jnp.asarray(labels)


# A float32 gradient entry p_c - y_c carries the rounding of x_c - log Z in p_c's exponent:
# up to |log p_c|·2**-24 relative, ~2e-6 for these rows (measured up to 1.2e-6).
F32_GRAD_RTOL = 1e-5


def _tolerance(dtype):
    # The loss is computed in float32 from the given values, a few roundings of sums over up
    # to 2**16 classes: 8 float32 ulps (measured up to 1.4). The gradient is rounded to the
    # logits' dtype: half an ulp, 2**-8 in 16 bits.
    return 8 * F32_ULP, (2.0**-8 if jnp.finfo(dtype).bits == 16 else F32_GRAD_RTOL)


@pytest.mark.parametrize("dtype,shape", CASES)
@pytest.mark.parametrize("options", [{}, OPTIONS], ids=["plain", "options"])
def test_value_and_gradient_match_float64(dtype, shape, options):
    _check_against_float64(*_data(dtype, shape), options)


def _check_against_float64(x, labels, options):
    dtype, shape = x.dtype, x.shape
    x64 = x.astype(jnp.float64)
    cw = jnp.linspace(0.5, 2.0, shape[-1]) if options else None
    opts = dict(options, class_weights=cw) if options else {}

    def loss(x):
        return CE_INT(x, labels, reduction="mean", **opts)

    value, grad = jax.jit(jax.value_and_grad(loss))(x)
    exact_loss, weight = ref.integer_cross_entropy(
        np.asarray(x64),
        np.asarray(labels),
        **{
            k: np.asarray(v) if k == "class_weights" and v is not None else v
            for k, v in opts.items()
        },
    )
    exact = ref.reduce(exact_loss, weight, "mean")
    exact_grad = jax.grad(loss)(x64)
    value_rtol, grad_rtol = _tolerance(dtype)
    assert value.dtype == jnp.float32 and grad.dtype == dtype
    np.testing.assert_allclose(value, exact, rtol=value_rtol)
    # Below float16's normal range a gradient is a multiple of the subnormal step. With label
    # smoothing, a class's gradient a·p_c - ε·w_c/C nearly cancels: there the float32 terms
    # are the limit (rounded to the dtype apart, they would be off by 2**-9 of a term).
    atol = float(jnp.finfo(dtype).smallest_subnormal)
    if options:
        atol = max(atol, 1e-5 * float(np.mean(np.abs(exact_grad))))
    np.testing.assert_allclose(np.asarray(grad, np.float64), exact_grad, rtol=grad_rtol, atol=atol)
    per_example = jax.jit(lambda x: CE_INT(x, labels, **opts))(x)
    np.testing.assert_allclose(per_example, exact_loss, rtol=value_rtol)  # ignored: exactly 0


# Rows of 2**12+ classes with integer labels are shifted by the max of the first 128 logits and
# the label's (one pass fewer than the row max). A row whose max lies far above overflows,
# and the batch is summed again from the exact max.
def _wide(dtype, seed=0, spike=False):
    x, labels = _data(dtype, (6, 5000), seed)
    labels = labels.at[1].set(4321)
    if spike:  # 400 above the first 128 logits and the label's: exp overflows from there
        x = x.at[1, 3000].set(400)
    return x, labels


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("spike", [False, True], ids=["sampled", "overflow"])
@pytest.mark.parametrize("options", [{}, OPTIONS], ids=["plain", "options"])
def test_sampled_shift_matches_float64(dtype, spike, options):
    _check_against_float64(*_wide(dtype, spike=spike), options)


@pytest.mark.parametrize("spike", [False, True], ids=["sampled", "overflow"])
def test_sampled_shift_in_focal_and_poly1(spike):
    x, labels = _wide(jnp.float32, spike=spike)
    x64, y = np.asarray(x, np.float64), np.asarray(labels)
    for loss, exact in [
        (jaxloss.softmax_focal_loss, ref.softmax_focal),
        (jaxloss.poly1_cross_entropy, ref.poly1),
    ]:
        grad = jax.grad(lambda x: loss(x, labels).sum())(x)  # noqa: B023
        np.testing.assert_allclose(loss(x, labels), exact(x64, y), rtol=8 * F32_ULP)
        exact_grad = jax.grad(lambda x: loss(x, labels).sum())(x.astype(jnp.float64))  # noqa: B023
        np.testing.assert_allclose(grad, exact_grad, rtol=F32_GRAD_RTOL, atol=1e-9)


def test_sampled_shift_along_a_leading_axis():
    x, labels = _wide(jnp.float32, spike=True)

    def loss(x, axis):
        return CE_INT(x, labels, axis=axis, reduction="sum")

    value, grad = jax.value_and_grad(loss)(x.T, 0)
    np.testing.assert_allclose(value, loss(x, -1), rtol=1e-6)
    np.testing.assert_allclose(grad.T, jax.grad(loss)(x, -1), rtol=1e-6, atol=1e-12)


def test_sampled_shift_of_an_ignored_row_with_no_finite_sample():
    # The label (clipped ignore_index 3) and the first 128 logits are -inf, the rest far
    # below 0: the shift falls back to 0, every exp underflows and the exact max takes over.
    x, labels = _wide(jnp.float32)
    x = x.at[0, :128].set(-jnp.inf).at[0, 128:].add(-300)
    _check_against_float64(x, labels, OPTIONS)


def test_sampled_shift_keeps_a_confident_loss_as_exact_as_the_max():
    # With the label in the sample, a right answer well above the rest is shifted by its own
    # logit, as by the row max: the loss log(1 + Σ exp(x_c - x_y)) ~ 1e-3 is the same, good to
    # a few ulps of 1 (the rounding of 1 + Σ exp(...); measured up to 1.4 ulps, 1.6e-4 of the
    # loss). Shifted by the first logits' max (~10 below), it would be the difference of two
    # numbers near 10, each rounded to 2**-21: measured off by up to 7.7 ulps of 1 (1.6e-3 of
    # itself) on these rows. (`where` takes the row max.)
    x, labels = _wide(jnp.float32)
    x = x.at[jnp.arange(6), labels].set(20.0)
    loss = CE_INT(x, labels)
    by_max = CE_INT(x, labels, where=jnp.ones(x.shape[-1], bool))
    exact, _ = ref.integer_cross_entropy(np.asarray(x, np.float64), np.asarray(labels))
    assert np.all((exact > 1e-4) & (exact < 1e-2))
    np.testing.assert_allclose(loss, by_max, rtol=1e-6)
    np.testing.assert_allclose(loss, exact, rtol=0, atol=4 * F32_ULP)


def _vmapped_wide_rows():
    # One example's overflow sends the whole vmapped batch to the exact sums: the branch
    # condition is shared (both branches of a batched condition would run every time).
    data = [_wide(jnp.float32, seed, spike=seed == 1) for seed in range(3)]
    xs, ys = (jnp.stack(parts) for parts in zip(*data, strict=True))
    step = jax.vmap(jax.value_and_grad(lambda x, y: CE_INT(x, y, reduction="mean")))
    return data, xs, ys, step


def test_vmap_over_the_sampled_shift_equals_each_example():
    data, xs, ys, step = _vmapped_wide_rows()
    values, grads = jax.jit(step)(xs, ys)
    for i, (x, y) in enumerate(data):
        value, grad = jax.value_and_grad(lambda x, y: CE_INT(x, y, reduction="mean"))(x, y)
        np.testing.assert_allclose(values[i], value, rtol=1e-6)
        np.testing.assert_allclose(grads[i], grad, rtol=1e-5, atol=1e-9)


@requires_xla_cpu
def test_vmap_over_the_sampled_shift_keeps_one_branch():
    _, xs, ys, step = _vmapped_wide_rows()
    assert "conditional(" in compiled(step, xs, ys).as_text()


def _hvp(x, v):
    """H v of Σ CE per row, p·v - p (p·v), with float64 p."""
    p, v = ref.softmax(np.asarray(x, np.float64)), np.asarray(v, np.float64)
    return p * v - p * np.sum(p * v, -1, keepdims=True)


@pytest.mark.parametrize(
    "width,spike",
    [(5000, 400.0), (300, 40.0)],
    ids=["sampled-overflow", "row-max-dominant"],
)
def test_second_derivatives_forward_and_reverse(width, spike):
    # Through the branch, whose first pass overflowed (reverse over reverse must not meet
    # 0·inf), and on the row-max path with one logit so far above the rest that Σ exp = 1
    # exactly (where max(z, 1) would halve the derivative).
    x, labels = _data(jnp.float32, (6, width), seed=4)
    x = x.at[1, 200].set(spike)
    labels = labels.at[1].set(200 if width < 4096 else 7)
    v = jnp.asarray(np.random.default_rng(5).normal(size=x.shape), jnp.float32)

    def grad(x):
        return jax.grad(lambda x: CE_INT(x, labels).sum())(x)

    _, forward = jax.jvp(grad, (x,), (v,))
    reverse = jax.grad(lambda x: jnp.vdot(grad(x), v))(x)
    for hv in (forward, reverse):
        # float32 p, as in the gradient; an entry p_c v_c - p_c (p·v) that cancels is held
        # to ~1 ulp of its terms (measured: up to 1e-7 on entries ~0.1, 5e-9 under 1e-3).
        np.testing.assert_allclose(hv, _hvp(x, v), rtol=F32_GRAD_RTOL, atol=1e-7)


def test_sampled_shift_is_kept_unless_a_sum_leaves_its_range():
    # The branch itself: the first pass's sums are kept when every row's lies in [1, limit),
    # and redone from the row max when one overflows (`used` is the shift of the pass kept).
    from jaxloss._cpu import guarded, sampled_shift

    def sums(x, shift):
        return jnp.sum(jnp.exp(x - shift), -1, keepdims=True), shift

    def used(x):
        shift = sampled_shift(x, labels[:, None], -1)
        return shift, jax.jit(lambda x: guarded(x, shift, -1, sums)[2])(x)

    x, labels = _wide(jnp.float32)
    row_max = jnp.max(x, -1, keepdims=True)
    shift, kept = used(x)
    assert np.all(shift < row_max)  # a sample, not the max
    np.testing.assert_array_equal(kept, shift)
    spiked = x.at[1, 3000].set(400)
    _, redone = used(spiked)
    np.testing.assert_array_equal(redone, jnp.max(spiked, -1, keepdims=True))


@pytest.mark.parametrize("dtype,shape", CASES)
def test_forward_mode_agrees_with_reverse_mode(dtype, shape):
    x, labels = _data(dtype, shape, seed=1)
    v = jnp.asarray(np.random.default_rng(2).normal(size=shape), dtype)

    def loss(x):
        return CE_INT(x, labels, ignore_index=3).sum()

    _, tangent = jax.jvp(loss, (x,), (v,))
    grad = jax.grad(loss)(x)
    expected = jnp.sum(grad.astype(jnp.float64) * v.astype(jnp.float64))
    # The reverse-mode gradient is rounded to the dtype, entries off by up to 2**-8 (bfloat16)
    # that largely cancel in the sum: measured up to 7.1e-4 of it in 16 bits, 2.2e-7 in float32.
    rtol = 2e-3 if jnp.finfo(dtype).bits == 16 else 1e-6
    np.testing.assert_allclose(tangent, expected, rtol=rtol)


def test_vmap_over_the_blocked_path_equals_the_batch_call():
    x, labels = _data(jnp.bfloat16, (3, 4, 1000))
    batched = jax.vmap(lambda x, y: CE_INT(x, y))(x, labels)
    np.testing.assert_array_equal(batched, CE_INT(x, labels))
    grads = jax.vmap(jax.grad(lambda x, y: CE_INT(x, y).sum()))(x, labels)
    np.testing.assert_array_equal(grads, jax.grad(lambda x: CE_INT(x, labels).sum())(x))


def test_nll_on_half_precision_log_probs():
    x, labels = _data(jnp.bfloat16, (6, 500))
    log_probs = jax.nn.log_softmax(x.astype(jnp.float32)).astype(jnp.bfloat16)
    loss, grad = jax.value_and_grad(lambda p: jaxloss.nll_loss(p, labels).sum())(log_probs)
    exact = -np.take_along_axis(np.asarray(log_probs, np.float64), labels[:, None], -1).sum()
    np.testing.assert_allclose(loss, exact, rtol=1e-6)
    np.testing.assert_array_equal(grad, -jax.nn.one_hot(labels, 500, dtype=jnp.bfloat16))


def _soft_data(dtype, shape, seed=0):
    """Logits with a -inf class of zero target mass in every row, and soft targets."""
    x, _ = _data(dtype, shape, seed)
    x = x.at[..., 1].set(-jnp.inf)
    t = jax.nn.softmax(jnp.asarray(np.random.default_rng(seed + 1).normal(size=shape)))
    t = t.at[..., 1].set(0.0)
    return x, (t / t.sum(-1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("dtype,shape", CASES)
def test_soft_targets_match_float64(dtype, shape):
    x, t = _soft_data(dtype, shape)
    x64, t64 = x.astype(jnp.float64), t.astype(jnp.float64)

    def loss(x, t):
        return jaxloss.softmax_cross_entropy(x, t, reduction="sum")

    value, (gx, gt) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, t)
    exact = ref.softmax_cross_entropy(np.asarray(x64), np.asarray(t64))
    exact_gx, exact_gt = jax.grad(loss, argnums=(0, 1))(x64, t64)
    value_rtol, grad_rtol = _tolerance(dtype)
    assert value.dtype == jnp.float32 and gx.dtype == dtype and gt.dtype == dtype
    np.testing.assert_allclose(value, exact.sum(), rtol=value_rtol)
    # d/dx_c = p_c·Σt - t_c cancels where p_c ≈ t_c: there float32's p_c is the limit.
    bound = grad_rtol * np.abs(exact_gx) + 1e-6 * np.abs(np.asarray(t64))
    bound += float(jnp.finfo(dtype).smallest_subnormal)
    assert np.all(np.abs(np.asarray(gx, np.float64) - exact_gx) <= bound)
    # d/dt_c = -log p_c: of the -inf class, the lowest finite value of the compute dtype.
    finite = np.isfinite(np.asarray(x64))
    np.testing.assert_allclose(
        np.asarray(gt, np.float64)[finite], np.asarray(exact_gt)[finite], rtol=grad_rtol
    )
    assert np.all(np.asarray(gt, np.float64)[~finite] > 1e38)
    per_example = jax.jit(jaxloss.softmax_cross_entropy)(x, t)
    np.testing.assert_allclose(per_example, exact, rtol=value_rtol)


@pytest.mark.parametrize("dtype,shape", CASES)
def test_soft_targets_with_where_and_smoothing(dtype, shape):
    x, t = _soft_data(dtype, shape, seed=3)
    where = jnp.arange(shape[-1]) != 1  # the -inf class is excluded instead
    # Garbage on the excluded class must not leak into the product either.
    x = x.at[..., 1].set(jnp.nan)
    smoothing = 0.1 if jnp.finfo(dtype).bits == 32 else 0.0
    loss = jaxloss.softmax_cross_entropy(x, t, where=where, label_smoothing=smoothing)
    keep = np.asarray(where)
    exact = ref.softmax_cross_entropy(
        np.asarray(x, np.float64)[..., keep],
        np.asarray(t, np.float64)[..., keep],
        label_smoothing=smoothing,
    )
    np.testing.assert_allclose(loss, exact, rtol=_tolerance(dtype)[0])
    grad = jax.grad(lambda x: jaxloss.softmax_cross_entropy(x, t, where=where).sum())(x)
    assert np.all(np.asarray(grad[..., 1], np.float64) == 0)
    assert np.all(np.isfinite(np.asarray(grad, np.float64)))


def test_soft_target_mass_on_a_minus_inf_logit_is_a_huge_loss():
    # The product counts a -inf logit as the lowest finite float32 (no select in the sum).
    x = jnp.array([[0.0, -jnp.inf, 1.0]])
    loss = jaxloss.softmax_cross_entropy(x, jnp.array([[0.5, 0.5, 0.0]]))
    assert loss[0] >= 0.5 * float(jnp.finfo(jnp.float32).max) * (1 - 1e-6)


@requires_xla_cpu
@pytest.mark.parametrize(
    "dtype,c", [(jnp.bfloat16, 32768), (jnp.float32, 32768), (jnp.float32, 2**17)]
)
@pytest.mark.parametrize("kind", ["labels", "options", "soft"])
def test_gradient_holds_no_logit_sized_temporary(dtype, c, kind):
    # The gradient is written in one pass: no float32 copy of half-precision logits or
    # targets, no scatter into an array of zeros and no stored product or shifted logits,
    # whose temporaries would be 2-8 bytes per logit. The blocks hold ~2 MiB, whatever N is.
    n = 1024
    x = jnp.zeros((n, c), dtype)
    if kind == "soft":
        y = jnp.zeros((n, c), dtype)
        step = jax.value_and_grad(lambda x, y: jaxloss.softmax_cross_entropy(x, y).mean())
    else:
        y = jnp.zeros((n,), jnp.int32)
        opts = dict(OPTIONS, class_weights=jnp.ones(c)) if kind == "options" else {}
        step = jax.value_and_grad(lambda x, y: CE_INT(x, y, reduction="mean", **opts))
    assert temp_bytes(step, x, y) < n * c // 4


@requires_xla_cpu
@pytest.mark.parametrize("kind", ["labels", "soft"])
def test_forward_of_short_rows_holds_no_logit_sized_temporary(kind):
    # The log-normaliser's floor at 1 must stay a form XLA:CPU fuses into the row sums:
    # z + (z < 1) there stores the [N, C] exponentials.
    n, c = 8192, 1000
    x = jnp.zeros((n, c))
    if kind == "soft":
        y = jnp.full((n, c), 1 / c)
        loss = lambda x, y: jaxloss.softmax_cross_entropy(x, y).mean()  # noqa: E731
    else:
        y = jnp.zeros((n,), jnp.int32)
        loss = lambda x, y: CE_INT(x, y).mean()  # noqa: E731
    assert temp_bytes(loss, x, y) < n * c // 4
