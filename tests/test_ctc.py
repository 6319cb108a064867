"""CTC: against the definition (every path enumerated), a float64 forward algorithm, PyTorch
and optax; its gradient's structure, the edge cases the peers get wrong, errors and memory.

Its signature (frames, their paddings, label sequences and theirs) is not the registry's, so
the parts of the contract that apply are tested here."""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import optax
import pytest

import jaxloss

from . import reference
from .conftest import assert_close, requires_xla_cpu, temp_bytes

CTC = jaxloss.ctc_loss


class Batch:
    """Random sequences of varied lengths: frames [B, T, K], labels [B, N] right-padded."""

    def __init__(self, rng, frames, lengths, k=6, scale=2.0, blank=0, repeat=True):
        b, t = len(frames), max(frames)
        n = max(max(lengths), 1)
        self.logits = rng.normal(size=(b, t, k)) * scale
        symbols = [c for c in range(k) if c != blank]
        self.labels = rng.choice(symbols, size=(b, n))
        if repeat and n >= 2:
            self.labels[0, 1] = self.labels[0, 0]  # a repeated symbol needs a blank between
        self.frames, self.lengths, self.blank = np.array(frames), np.array(lengths), blank
        self.logit_paddings = (np.arange(t)[None] >= self.frames[:, None]).astype(np.float64)
        self.label_paddings = (np.arange(n)[None] >= self.lengths[:, None]).astype(np.float64)
        # Padded label slots hold the blank, as optax users pad.
        self.labels = np.where(self.label_paddings > 0, blank, self.labels)

    def args(self, dtype=jnp.float64):
        return (
            jnp.asarray(self.logits, dtype),
            jnp.asarray(self.logit_paddings),
            jnp.asarray(self.labels, jnp.int32),
            jnp.asarray(self.label_paddings),
        )

    def oracle(self):
        return np.array(
            [
                reference.ctc(x[:t], y[:n], self.blank)
                for x, y, t, n in zip(
                    self.logits, self.labels, self.frames, self.lengths, strict=True
                )
            ]
        )


def _varied(rng, **kw):
    return Batch(rng, frames=[12, 10, 7, 12, 3, 9], lengths=[4, 2, 0, 3, 3, 4], **kw)


def test_equals_every_path_enumerated(rng):
    batch = Batch(rng, frames=[5, 4, 5], lengths=[2, 2, 0], k=3)
    want = np.array(
        [
            reference.ctc_by_enumeration(x[:t], y[:n])
            for x, y, t, n in zip(
                batch.logits, batch.labels, batch.frames, batch.lengths, strict=True
            )
        ]
    )
    assert_close(CTC(*batch.args()), want, rtol=1e-12)
    assert_close(batch.oracle(), want, rtol=1e-12)  # the oracle below is the definition too


@pytest.mark.parametrize("blank", [0, 3, 5])
def test_equals_the_float64_forward_algorithm(blank, rng):
    batch = _varied(rng, blank=blank)
    got = CTC(*batch.args(), blank_id=blank)
    want = batch.oracle()
    assert got.shape == (6,) and got.dtype == jnp.float64
    assert_close(got, want, rtol=1e-12)
    assert np.isinf(want[4]) and np.isinf(got[4])  # 3 frames cannot hold 3 labels


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("blank", [0, 4])
def test_values_and_gradients_equal_pytorch(reduction, blank, rng):
    torch = pytest.importorskip("torch")
    batch = Batch(rng, frames=[12, 10, 7, 12, 9], lengths=[4, 2, 0, 3, 4], blank=blank)
    w = rng.uniform(size=5) if reduction == "none" else np.ones(())
    logits = torch.tensor(batch.logits, requires_grad=True)
    log_probs = torch.log_softmax(logits, -1).transpose(0, 1)  # [T, B, K]
    value = torch.nn.functional.ctc_loss(
        log_probs,
        torch.tensor(batch.labels),
        torch.tensor(batch.frames),
        torch.tensor(batch.lengths),
        blank=blank,
        reduction=reduction,
    )
    (grad,) = torch.autograd.grad((value * torch.tensor(w)).sum(), logits)

    x, *rest = batch.args()

    def f(x):
        return jnp.sum(jnp.asarray(w) * CTC(x, *rest, blank_id=blank, reduction=reduction))

    got, got_grad = jax.value_and_grad(f)(x)
    assert_close(got, (value.detach() * torch.tensor(w)).sum().item(), rtol=1e-12)
    assert_close(got_grad, grad.numpy(), rtol=1e-10, atol=1e-13)


def test_equals_optax_where_optax_is_right(rng):
    batch = Batch(rng, frames=[12, 10, 12, 9], lengths=[4, 2, 3, 4])  # every one alignable
    args = batch.args()
    with jax.numpy_dtype_promotion("standard"):  # optax mixes float32 and float64 inside
        want = optax.ctc_loss(*args)
        theirs = jax.grad(lambda x: jnp.sum(optax.ctc_loss(x, *args[1:])))(args[0])
    assert_close(CTC(*args), want, rtol=1e-10)
    ours = jax.grad(lambda x: jnp.sum(CTC(x, *args[1:])))(args[0])
    assert_close(ours, theirs, rtol=1e-8, atol=1e-10)


def test_gradient_is_softmax_minus_posteriors(rng):
    batch = _varied(rng)
    x, *rest = batch.args()
    g = jax.grad(lambda x: jnp.sum(CTC(x, *rest, zero_infinity=True)))(x)
    assert_close(jnp.sum(g, axis=-1), np.zeros(g.shape[:2]), rtol=0, atol=1e-13)
    padded = np.asarray(batch.logit_paddings) > 0
    assert np.all(np.asarray(g)[padded] == 0)
    assert np.all(np.asarray(g)[4] == 0)  # the sequence without alignment: no gradient
    # p - γ with γ ≥ 0 summing to one: each entry lies in [-1, 1], p_t - 1 ≤ g ≤ p_t.
    p = jax.nn.softmax(x, axis=-1)
    kept = ~padded & (np.arange(6) != 4)[:, None]
    assert np.all(np.asarray(g)[kept] <= np.asarray(p)[kept] + 1e-12)
    assert np.all(np.asarray(g)[kept] >= np.asarray(p)[kept] - 1 - 1e-12)


def test_padding_frames_anywhere_are_skipped(rng):
    # optax's paddings are per frame: a padded frame in the middle is skipped like a trailing one.
    batch = Batch(rng, frames=[9], lengths=[3])
    x, _, y, lp = batch.args()
    pad = jnp.zeros((1, 9)).at[0, 4].set(1.0)
    got = CTC(x, pad, y, lp)
    kept = np.delete(batch.logits[0], 4, axis=0)
    assert_close(got, [reference.ctc(kept, batch.labels[0, :3])], rtol=1e-12)
    g = jax.grad(lambda x: jnp.sum(CTC(x, pad, y, lp)))(x)
    assert np.all(np.asarray(g)[0, 4] == 0)


def test_check_grads(rng):
    batch = Batch(rng, frames=[6, 5], lengths=[2, 1], k=4)
    x, *rest = batch.args()
    jax.test_util.check_grads(lambda x: CTC(x, *rest), (x,), order=1, modes=["rev"])


def test_near_certain_alignments_are_never_negative_in_float32():
    # Every frame puts all but e^-25 of its mass on the path "1 ∅ 2 ∅ 3 ...": the loss is about
    # T·K·e^-25 ≈ 1e-9, far below float32's rounding of log p; optax returns values below 0.
    t, k, labels = 40, 5, [1, 2, 3, 4] * 5
    path = []
    for label in labels:
        path += [label, 0]
    logits = np.full((1, t, k), -25.0)
    logits[0, np.arange(t), path] = 0.0
    args = (
        jnp.asarray(logits, jnp.float32),
        jnp.zeros((1, t)),
        jnp.asarray([labels], jnp.int32),
        jnp.zeros((1, len(labels))),
    )
    got = CTC(*args)
    want = reference.ctc(logits[0], labels)
    assert 0 < want < 1e-8
    assert float(got[0]) >= 0 and abs(float(got[0]) - want) < 1e-6
    grad = jax.grad(lambda x: jnp.sum(CTC(x, *args[1:])))(args[0])
    assert np.all(np.isfinite(np.asarray(grad)))


def test_impossible_alignment_is_inf_or_zero_with_zero_gradient(rng):
    # Two repeated labels need three frames (a blank between them); two frames cannot hold them.
    x = jnp.asarray(rng.normal(size=(2, 2, 4)))
    y = jnp.array([[2, 2], [1, 3]], jnp.int32)
    args = (x, jnp.zeros((2, 2)), y, jnp.zeros((2, 2)))
    got = CTC(*args)
    assert np.isposinf(float(got[0])) and np.isfinite(float(got[1]))
    assert np.isposinf(float(CTC(*args, reduction="mean")))
    zeroed = CTC(*args, zero_infinity=True)
    assert float(zeroed[0]) == 0 and float(zeroed[1]) == float(got[1])
    for zero_infinity in (False, True):
        g = jax.grad(lambda x, z=zero_infinity: jnp.sum(CTC(x, *args[1:], zero_infinity=z)[1]))(x)
        assert np.all(np.asarray(g)[0] == 0) and np.all(np.isfinite(np.asarray(g)))
    mean = CTC(*args, zero_infinity=True, reduction="mean")
    assert_close(mean, float(got[1]) / 2 / 2, rtol=1e-12)  # (0 + loss / length 2) / 2 sequences


def test_empty_labels_and_no_frames(rng):
    x = jnp.asarray(rng.normal(size=(2, 4, 3)))
    y = jnp.zeros((2, 2), jnp.int32)
    pads = jnp.ones((2, 2))  # both sequences empty: every frame must be the blank
    got = CTC(x, jnp.zeros((2, 4)), y, pads)
    assert_close(got, -jnp.sum(jax.nn.log_softmax(x, -1)[..., 0], axis=1), rtol=1e-12)
    # A sequence with every frame padded emits nothing: the empty label sequence, surely.
    frames = jnp.ones((2, 4)).at[1].set(0)
    assert_close(CTC(x, frames, y, pads)[0], 0.0, rtol=0, atol=0)


def test_reductions_follow_pytorch(rng):
    batch = Batch(rng, frames=[12, 10, 12], lengths=[4, 0, 3])
    per = CTC(*batch.args())
    assert_close(CTC(*batch.args(), reduction="sum"), jnp.sum(per), rtol=1e-12)
    by_length = np.asarray(per) / np.maximum(batch.lengths, 1)
    assert_close(CTC(*batch.args(), reduction="mean"), np.mean(by_length), rtol=1e-12)


def test_bool_paddings_equal_float_paddings(rng):
    batch = _varied(rng)
    x, fp, y, lp = batch.args()
    assert_close(
        CTC(x, fp > 0, y, lp > 0, zero_infinity=True), CTC(x, fp, y, lp, zero_infinity=True), rtol=0
    )


def test_jit_and_vmap(rng):
    batch = _varied(rng)
    args = batch.args()
    eager = CTC(*args, zero_infinity=True)
    assert_close(jax.jit(lambda *a: CTC(*a, zero_infinity=True))(*args), eager, rtol=1e-12)
    stacked = [jnp.stack([a[:3], a[3:]]) for a in args]
    got = jax.vmap(lambda *a: CTC(*a, zero_infinity=True))(*stacked)
    assert_close(got.reshape(-1), eager, rtol=1e-12)


def test_bfloat16_logits_accumulate_in_float32(rng):
    batch = Batch(rng, frames=[30, 25, 30], lengths=[6, 4, 5])
    x, *rest = batch.args(jnp.bfloat16)
    got = CTC(x, *rest)
    assert got.dtype == jnp.float32
    wide = x.astype(jnp.float64)
    assert_close(got, CTC(wide, *rest), rtol=1e-5)  # the same bf16 logits, summed in float64
    g = jax.grad(lambda x: jnp.sum(CTC(x, *rest)))(x)
    assert g.dtype == jnp.bfloat16
    assert_close(g, jax.grad(lambda x: jnp.sum(CTC(x, *rest)))(wide), rtol=1e-2, scaled=True)


@requires_xla_cpu
def test_training_memory_is_under_half_of_optaxs():
    b, t, k, n = 16, 500, 64, 100
    specs = (
        jax.ShapeDtypeStruct((b, t, k), jnp.float32),
        jax.ShapeDtypeStruct((b, t), jnp.float32),
        jax.ShapeDtypeStruct((b, n), jnp.int32),
        jax.ShapeDtypeStruct((b, n), jnp.float32),
    )

    def step(fn):
        return jax.value_and_grad(lambda x, *rest: jnp.mean(fn(x, *rest)))

    ours = temp_bytes(step(CTC), *specs)
    with jax.numpy_dtype_promotion("standard"):  # optax's own promotions
        theirs = temp_bytes(step(optax.ctc_loss), *specs)
    assert ours <= 0.5 * theirs, (ours, theirs)


def test_errors_name_the_argument():
    x = jnp.zeros((2, 5, 4))
    fp, y, lp = jnp.zeros((2, 5)), jnp.array([[1, 2], [3, 0]]), jnp.array([[0, 0], [0, 1]])
    CTC(x, fp, y, lp)  # valid: the second row's padded slot holds the blank
    with pytest.raises(ValueError, match=r"logits must be \[B, T, K\]"):
        CTC(jnp.zeros((5, 4)), fp, y, lp)
    with pytest.raises(ValueError, match=r"logit_paddings.shape=\(2, 4\)"):
        CTC(x, jnp.zeros((2, 4)), y, lp)
    with pytest.raises(TypeError, match="labels must be an integer"):
        CTC(x, fp, y.astype(jnp.float32), lp)
    with pytest.raises(ValueError, match=r"label_paddings.shape=\(2, 3\)"):
        CTC(x, fp, y, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"blank_id=0.*labels\[1, 1\] = 0"):
        CTC(x, fp, y, jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\[0, 4\).*labels\[0, 1\] = 7"):
        CTC(x, fp, y.at[0, 1].set(7), lp)
    with pytest.raises(ValueError, match="right-padded"):
        CTC(x, fp, y, jnp.array([[1, 0], [0, 1]]))
    with pytest.raises(ValueError, match="blank_id must be"):
        CTC(x, fp, y, lp, blank_id=4)
    with pytest.raises(ValueError, match="reduction"):
        CTC(x, fp, y, lp, reduction="batchmean")


def test_invalid_labels_under_jit_give_nan():
    x = jnp.zeros((3, 5, 4))
    fp, lp = jnp.zeros((3, 5)), jnp.array([[0, 0], [0, 0], [1, 0]])  # row 2: not right-padded
    y = jnp.array([[1, 2], [3, 9], [1, 2]])  # 9 is not a class
    got = jax.jit(CTC)(x, fp, y, lp)
    assert np.isfinite(float(got[0])) and np.isnan(float(got[1])) and np.isnan(float(got[2]))


def test_padded_frames_may_hold_anything(rng):
    batch = Batch(rng, frames=[3, 5], lengths=[2, 2], k=4)
    x, fp, y, lp = batch.args()
    junk = x.at[0, 3:].set(jnp.nan).at[0, 3].set(-jnp.inf)  # frames 3 and 4 of row 0 are padded
    g = jax.grad(lambda x: jnp.sum(CTC(x, fp, y, lp)))(junk)
    assert np.all(np.asarray(g)[0, 3:] == 0) and np.all(np.isfinite(np.asarray(g)))
    assert_close(CTC(junk, fp, y, lp), CTC(x, fp, y, lp), rtol=0)


def test_blank_id_takes_numpy_integers(rng):
    batch = Batch(rng, frames=[6], lengths=[2], k=4, blank=2)
    args = batch.args()
    assert_close(CTC(*args, blank_id=np.int64(2)), CTC(*args, blank_id=2), rtol=0)
    with pytest.raises(ValueError, match="blank_id must be"):
        CTC(*args, blank_id=True)


def test_float32_log_add_is_within_rounding_of_float64():
    from jaxloss._ctc import _log_add

    a = np.linspace(-40, 0, 200001).astype(np.float32)
    got = np.asarray(_log_add(jnp.asarray(a), jnp.zeros_like(jnp.asarray(a))), np.float64)
    want = np.logaddexp(a.astype(np.float64), 0.0)
    assert np.max(np.abs(got - want)) <= 2.0**-23  # absolute, below one ulp of the sums
    small = a < np.log(2.0**-8) - 1e-4  # u = e^a below 2^-8: the series, relative precision
    assert np.max(np.abs(got[small] - want[small]) / want[small]) < 2.0**-22
    inf = jnp.float32(-jnp.inf)
    assert float(_log_add(inf, inf)) == -np.inf and float(_log_add(inf, jnp.float32(-3))) == -3.0
