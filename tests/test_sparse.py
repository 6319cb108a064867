"""Sparsemax, 1.5-entmax and their Fenchel-Young losses: float64 oracles, derivatives to second
order, the alpha-entmax family's identities, optax and the PyTorch package `entmax`.

Most tests read the outputs of one jitted program per mapping, shape and dtype (`_outputs`):
compiling is what costs time here, so the tests share those compilations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.special import logsumexp
from jax.test_util import check_grads

import jaxloss
from jaxloss._sparse import (
    entmax15,
    entmax15_loss,
    make_fenchel_young_loss,
    multiclass_sparsemax_loss,
    sparsemax,
    sparsemax_loss,
)

from . import reference as ref
from .conftest import F32_ULP, assert_close

ALPHA = {sparsemax: 2.0, entmax15: 1.5}
LOSS = {sparsemax: multiclass_sparsemax_loss, entmax15: entmax15_loss}
KINDS = pytest.mark.parametrize("f", [sparsemax, entmax15], ids=["sparsemax", "entmax15"])
LABELS = jnp.array([0, 5, 2, 2], jnp.int32)  # for [4, 6] logits


@functools.partial(jax.jit, static_argnums=0, static_argnames="derivatives")
def _outputs(f, x, labels, where=None, derivatives=False):
    """What the tests check of mapping `f` and its loss on logits `x` [B, C]; with
    `derivatives`, also each row's Jacobian (forward and reverse mode) and loss Hessian."""

    def loss(x):
        return LOSS[f](x, labels, where=where)

    out = dict(
        p=f(x, where=where),
        loss=loss(x),
        mean=LOSS[f](x, labels, where=where, reduction="mean"),
        sum=LOSS[f](x, labels, where=where, reduction="sum"),
        grad=jax.grad(lambda x: loss(x).sum())(x),
        jvp_ones=jax.jvp(loss, (x,), (jnp.ones_like(x),))[1],
    )
    if derivatives:
        w = jnp.ones(x.shape, bool) if where is None else jnp.broadcast_to(where, x.shape)

        def row(r, w):
            return f(r) if where is None else f(r, where=w)

        def row_loss(r, y, w):
            return LOSS[f](r, y) if where is None else LOSS[f](r, y, where=w)

        out["jac_fwd"] = jax.vmap(jax.jacfwd(row))(x, w)
        out["jac_rev"] = jax.vmap(jax.jacrev(row))(x, w)
        out["hess"] = jax.vmap(jax.hessian(row_loss))(x, labels, w)
    return out


def _oracle(f, x, axis=-1):
    return ref.along(lambda r: ref.entmax_bisect(r, ALPHA[f]), x, axis)


def _loss_oracle(f, x, labels):
    x = np.asarray(x, np.float64)
    out = np.zeros(labels.shape)
    for i in np.ndindex(labels.shape):
        out[i] = ref.entmax_loss(x[i], int(labels[i]), ALPHA[f])
    return out


def _one_hot(labels, c=6, dtype=jnp.float64):
    return jax.nn.one_hot(jnp.asarray(labels), c, dtype=dtype)


# ---- the oracles and the values


def test_sparsemax_oracles_agree(rng):
    for z in rng.normal(size=(20, 5)) * 2:
        p = ref.sparsemax_sort(z)
        np.testing.assert_allclose(ref.sparsemax_by_supports(z), p, atol=1e-14)
        np.testing.assert_allclose(ref.entmax_bisect(z, 2.0), p, atol=1e-14)


@KINDS
def test_values_and_gradients(f, rng):
    x = rng.normal(size=(4, 6)) * 2
    o = _outputs(f, x, LABELS)
    assert o["p"].dtype == o["loss"].dtype == jnp.float64
    want = _oracle(f, x)
    assert_close(o["p"], want, rtol=1e-12, atol=1e-14)
    assert_close(o["p"].sum(-1), np.ones(4), rtol=1e-14)
    np.testing.assert_array_equal(np.asarray(o["p"]) == 0, want == 0)  # exact zeros, where due
    loss = _loss_oracle(f, x, LABELS)
    assert_close(o["loss"], loss, rtol=1e-12, atol=1e-14)
    assert (np.asarray(o["loss"]) >= 0).all()
    assert_close(o["mean"], loss.mean(), rtol=1e-12)
    assert_close(o["sum"], loss.sum(), rtol=1e-12)
    assert_close(o["grad"], want - _one_hot(LABELS), rtol=0, atol=1e-13)  # p - e_y
    assert_close(o["jvp_ones"], np.zeros(4), rtol=0, atol=1e-14)  # sum(p - e_y) = 0


@KINDS
def test_axis(f, rng):
    x = rng.normal(size=(6, 4)) * 2
    labels = jnp.asarray(rng.integers(0, 6, 4), jnp.int32)
    p, loss = jax.jit(lambda x: (f(x, axis=0), LOSS[f](x, labels, axis=0)))(x)
    assert_close(p, _oracle(f, x, 0), rtol=1e-12, atol=1e-14)
    assert_close(loss, _loss_oracle(f, x.T, labels), rtol=1e-12, atol=1e-14)


@KINDS
def test_eager_equals_jit(f, rng):
    x = rng.normal(size=(4, 6))
    o = _outputs(f, x, LABELS)
    assert_close(f(x), o["p"], rtol=1e-14, atol=1e-16)
    assert_close(LOSS[f](x, LABELS), o["loss"], rtol=1e-14)


@KINDS
def test_translation_invariance(f, rng):
    x = rng.normal(size=(4, 6))
    o, shifted = _outputs(f, x, LABELS), _outputs(f, x + 37.5, LABELS)
    for key in ("p", "loss", "grad"):
        assert_close(shifted[key], o[key], rtol=0, atol=1e-13)


def test_alpha_path_supports(rng):
    """supp(sparsemax) ⊆ supp(1.5-entmax) ⊆ supp(softmax): sparser as alpha goes 1 -> 2."""
    fewer = some_zero = False
    for x in rng.normal(size=(40, 4, 6)) * 2:
        s, e = (np.asarray(_outputs(g, x, LABELS)["p"]) > 0 for g in (sparsemax, entmax15))
        assert (np.asarray(jax.nn.softmax(x)) > 0).all() and (s <= e).all()
        assert (s == (ref.along(ref.sparsemax_sort, x) > 0)).all()  # the sort formula's
        fewer |= bool((s.sum(-1) < e.sum(-1)).any())
        some_zero |= bool((e.sum(-1) < 6).any())
    assert fewer and some_zero


@KINDS
def test_ties_equal_logits_and_one_class(f):
    x = np.array(
        [[3.0] * 6, [1.0, 1.0, 0.2, -5.0, 1.0, 0.9], [0.0] * 6, [2.0, 2.0, -9, -9, -9, -9]]
    )
    p = np.asarray(_outputs(f, x, LABELS)["p"])
    assert_close(p[[0, 2]], np.full((2, 6), 1 / 6), rtol=1e-15)
    assert_close(p, _oracle(f, x), rtol=1e-13, atol=1e-15)
    assert p[1, 0] == p[1, 1] == p[1, 4] and p[3, 0] == p[3, 1] and (p[3, 2:] == 0).all()
    assert_close(p[3, :2], np.full(2, 0.5), rtol=1e-15)
    one = _outputs(f, jnp.full((4, 1), 7.0), jnp.zeros(4, jnp.int32))
    for key, value in (("p", 1.0), ("loss", 0.0), ("grad", 0.0)):
        assert (np.asarray(one[key]) == value).all(), key
    assert f(jnp.zeros((3, 0))).shape == (3, 0)


# ---- -inf logits and `where`


@KINDS
def test_minus_inf_logits(f, rng):
    x = rng.normal(size=(4, 6))
    x[:, [1, 4]] = -np.inf
    x[3] = -np.inf
    labels = jnp.array([1, 0, 5, 2], jnp.int32)
    o = _outputs(f, x, labels, derivatives=True)
    p = np.asarray(o["p"])
    assert (p[:, [1, 4]] == 0).all() and (p[3] == 0).all()  # a row of -inf only: all 0
    assert_close(p[:3][:, [0, 2, 3, 5]], _oracle(f, x[:3, [0, 2, 3, 5]]), rtol=1e-13, atol=1e-15)
    for key in ("jac_fwd", "jac_rev", "hess"):
        assert np.isfinite(o[key]).all() and (np.asarray(o[key])[:, [1, 4]] == 0).all(), key
    # a label on a -inf logit: +inf (as cross-entropy), gradient p - e_y, finite
    loss = np.asarray(o["loss"])
    assert loss[0] == loss[3] == np.inf and np.isfinite(loss[1:3]).all()
    assert_close(o["grad"], p - _one_hot(labels), rtol=0, atol=1e-15)


@KINDS
def test_where_excludes_classes(f, rng):
    x = rng.normal(size=(4, 6))
    include = np.array([[True, False, True, True, False, True]] * 3 + [[False] * 6])
    labels = jnp.array([1, 0, 5, 2], jnp.int32)  # the first on an excluded class
    o = _outputs(f, x, labels, include)
    p, kept = np.asarray(o["p"]), [0, 2, 3, 5]
    assert (p[~include] == 0).all()
    assert_close(p[:3][:, kept], _oracle(f, x[:3, kept]), rtol=1e-13, atol=1e-15)
    loss = np.asarray(o["loss"])
    assert loss[0] == np.inf and loss[3] == 0  # no class: 0, and not counted by "mean"
    assert_close(loss[1:3], _loss_oracle(f, x[1:3, kept], np.array([0, 3])), rtol=1e-12)
    assert_close(o["sum"], np.inf, rtol=0)
    assert (np.asarray(o["grad"])[~include] == 0).all()
    masked = _outputs(f, x, labels.at[0].set(3), include)
    first = _loss_oracle(f, x[:1, kept], np.array([2]))
    assert_close(masked["mean"], (first[0] + loss[1] + loss[2]) / 3, rtol=1e-12)


# ---- derivatives


@KINDS
def test_jacobian_and_hessian(f, rng):
    x = rng.normal(size=(4, 6)) * 2
    o = _outputs(f, x, LABELS, derivatives=True)
    for i, z in enumerate(x):
        want = ref.jacobian_by_differences(lambda r: ref.entmax_bisect(r, ALPHA[f]), z)
        assert_close(o["jac_fwd"][i], want, rtol=0, atol=1e-7)
        assert_close(o["jac_rev"][i], want, rtol=0, atol=1e-7)
        p = np.asarray(o["p"])[i]
        w = (p > 0).astype(float) if f is sparsemax else np.sqrt(p)
        closed = np.diag(w) - np.outer(w, w) / w.sum()  # diag(w) - w w^T / sum w
        assert_close(o["jac_fwd"][i], closed, rtol=0, atol=1e-14)
    assert_close(o["hess"], o["jac_fwd"], rtol=0, atol=1e-14)  # the loss's Hessian is J


@KINDS
def test_check_grads(f, rng):
    x = jnp.asarray(rng.normal(size=(2, 6)) * 2)
    labels = jnp.array([1, 4], jnp.int32)
    both = jax.jit(lambda x: (f(x), LOSS[f](x, labels)))
    check_grads(both, (x,), order=1, modes=("fwd", "rev"))
    if f is entmax15:  # sparsemax's second derivative is 0; the safe sqrt keeps this finite
        check_grads(jax.jit(f), (x,), order=2, modes=("rev",))


# ---- the losses


@KINDS
def test_loss_zero_iff_prediction_is_onehot(f):
    margin = 1.0 if f is sparsemax else 2.0  # p = e_y iff x_y - x_j >= margin for all j
    x = np.zeros((4, 6))
    x[:, 5] = [margin, margin - 1e-3, margin, margin + 4]
    labels = jnp.array([5, 5, 0, 5], jnp.int32)
    o = _outputs(f, x, labels)
    loss = np.asarray(o["loss"])
    assert loss[0] == loss[3] == 0.0 and loss[1] > 0 and loss[2] > 0
    assert (np.asarray(o["p"])[[0, 3]] == _one_hot([5, 5])).all()
    assert (np.asarray(o["grad"])[[0, 3]] == 0).all()


@KINDS
def test_loss_label_policy(f, rng):
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="labels"):
        LOSS[f](x, jnp.array([0, 3], jnp.int32))
    with pytest.raises(TypeError, match="labels"):
        LOSS[f](x, jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="labels"):
        LOSS[f](x, jnp.array([0, 1, 2], jnp.int32))
    o = _outputs(f, rng.normal(size=(4, 6)), jnp.array([0, 6, 1, -1], jnp.int32))
    loss = np.asarray(o["loss"])  # out of range under jit: NaN
    assert np.isfinite(loss[[0, 2]]).all() and np.isnan(loss[[1, 3]]).all()


@pytest.mark.parametrize("fn", [sparsemax, entmax15, multiclass_sparsemax_loss, entmax15_loss])
def test_argument_errors(fn):
    labels = () if fn in ALPHA else (jnp.zeros(2, jnp.int32),)
    with pytest.raises(TypeError, match="logits"):
        fn(jnp.zeros((2, 3), jnp.int32), *labels)
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="axis"):
        fn(x, *labels, axis=2)
    with pytest.raises(TypeError, match="axis"):
        fn(x, *labels, axis=(0, 1))
    with pytest.raises(ValueError, match="where"):
        fn(x, *labels, where=jnp.ones(4, bool))
    with pytest.raises(ValueError, match="logits"):
        fn(jnp.zeros(()), *labels)


# ---- dtypes, large logits, vmap


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@KINDS
def test_half_precision(f, dtype, rng):
    x = jnp.asarray(rng.normal(size=(4, 6)) * 2, dtype)
    o = _outputs(f, x, LABELS)
    eps = float(jnp.finfo(dtype).eps)
    assert o["p"].dtype == o["grad"].dtype == dtype and o["loss"].dtype == jnp.float32
    want = _oracle(f, x.astype(jnp.float64))
    assert_close(o["p"], want, rtol=0, atol=eps)
    assert_close(o["loss"], _loss_oracle(f, x, LABELS), rtol=4 * F32_ULP, atol=1e-6)
    assert_close(o["grad"], want - _one_hot(LABELS), rtol=0, atol=eps)


@KINDS
def test_large_logits_float32(f, rng):
    x = (1e4 + rng.normal(size=(4, 6))).astype(np.float32)
    o = _outputs(f, x, LABELS)
    assert_close(o["p"], _oracle(f, x), rtol=0, atol=4 * F32_ULP)
    assert_close(o["p"].sum(-1), np.ones(4), rtol=4 * F32_ULP)
    assert_close(o["loss"], _loss_oracle(f, x, LABELS), rtol=8 * F32_ULP, atol=1e-6)


@KINDS
def test_vmap(f, rng):
    x = jnp.asarray(rng.normal(size=(4, 6)))

    @jax.jit
    def batched(x, labels):
        return jax.vmap(f)(x), jax.vmap(LOSS[f])(x, labels), jax.vmap(jax.grad(LOSS[f]))(x, labels)

    o = _outputs(f, x, LABELS)
    for got, key in zip(batched(x, LABELS), ("p", "loss", "grad"), strict=True):
        assert_close(got, o[key], rtol=1e-15, atol=1e-16)


# ---- binary sparsemax loss


def test_binary_sparsemax_loss(rng):
    x = rng.normal(size=(4, 6)) * 2
    y = rng.integers(0, 2, (4, 6))
    include = rng.random((4, 6)) < 0.5
    want = np.vectorize(ref.binary_sparsemax_loss)(x, y)

    @jax.jit
    def ours(x, y_int, y_float, y_bool):
        def grad(x):
            return jax.grad(lambda x: sparsemax_loss(x, y_int).sum())(x)

        return dict(
            int=sparsemax_loss(x, y_int),
            float=sparsemax_loss(x, y_float),
            bool=sparsemax_loss(x, y_bool),
            mean=sparsemax_loss(x, y_int, where=include, reduction="mean"),
            sum=sparsemax_loss(x, y_int, reduction="sum"),
            grad=grad(x),
            second=jax.jvp(grad, (x,), (jnp.ones_like(x),))[1],
            two_class=multiclass_sparsemax_loss(jnp.stack([x / 2, -x / 2], -1), 1 - y_int),
        )

    o = ours(x, y.astype(np.int32), y.astype(np.float64), y.astype(bool))
    for key in ("int", "float", "bool", "two_class"):  # and the sparsemax loss of (x/2, -x/2)
        assert_close(o[key], want, rtol=1e-13, atol=1e-15)
    assert_close(o["int"], jax.nn.sparse_plus(jnp.where(y == 1, -x, x)), rtol=1e-15)
    assert_close(o["mean"], want[include].mean(), rtol=1e-13)
    assert_close(o["sum"], want.sum(), rtol=1e-13)
    s = np.where(y == 1, -x, x)  # d/ds sparse_plus = clip((s + 1) / 2, 0, 1), then 1/2 inside
    assert_close(o["grad"], np.where(y == 1, -1, 1) * np.clip((s + 1) / 2, 0, 1), rtol=1e-15)
    assert_close(o["second"], np.where(np.abs(s) < 1, 0.5, 0.0), rtol=1e-15)
    check_grads(jax.jit(lambda x: sparsemax_loss(x, y)), (x,), order=1, modes=("fwd", "rev"))


def test_binary_sparsemax_loss_labels_and_infinities():
    x = jnp.array([-jnp.inf, 2.0, jnp.inf, -jnp.inf])
    y = jnp.array([0, 0, 1, 1], jnp.int32)

    @jax.jit
    def ours(x, y):
        return sparsemax_loss(x, y), jax.grad(lambda x: sparsemax_loss(x, y).sum())(x)

    loss, grad = (np.asarray(a) for a in ours(x, y))
    assert_close(loss[:3], np.array([0.0, 2.0, 0.0]), rtol=0)
    assert loss[3] == np.inf
    assert_close(grad, np.array([0.0, 1.0, 0.0, -1.0]), rtol=0)  # finite at +-inf
    got = np.asarray(ours(jnp.zeros(4), jnp.array([0, 2, 1, 0], jnp.int32))[0])
    assert np.isnan(got[1]) and np.isfinite(got[[0, 2, 3]]).all()  # not 0 or 1 under jit: NaN
    with pytest.raises(ValueError, match="labels"):
        sparsemax_loss(jnp.zeros(3), jnp.array([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="labels"):
        sparsemax_loss(jnp.zeros(3), jnp.array([0, 2, 1], jnp.int32))
    with pytest.raises(ValueError, match="labels"):
        sparsemax_loss(jnp.zeros(3), jnp.zeros(2, jnp.int32))
    with pytest.raises(TypeError, match="logits"):
        sparsemax_loss(jnp.zeros(3, jnp.int32), jnp.zeros(3, jnp.int32))
    with pytest.raises(TypeError, match="labels"):
        sparsemax_loss(jnp.zeros(3), jnp.zeros(3, jnp.complex64))
    half = jax.jit(sparsemax_loss)(jnp.array([0.5, -3.0], jnp.bfloat16), jnp.array([1, 1]))
    assert half.dtype == jnp.float32
    assert_close(half, np.array([0.0625, 3.0]), rtol=0)


# ---- Fenchel-Young losses from a max function


def test_fenchel_young_logsumexp_is_softmax_cross_entropy(rng):
    fy = make_fenchel_young_loss(logsumexp)
    x = rng.normal(size=(2, 2, 6)) * 2
    t = ref.along(lambda r: r / r.sum(), rng.random((2, 2, 6)))
    t[..., 2] = 0.0
    t /= t.sum(-1, keepdims=True)
    x[0, 0, 2] = -np.inf  # no target mass on it: 0 * -inf = 0

    @jax.jit
    def ours(x, t):
        return fy(x, t), fy(x, t, reduction="mean"), jax.grad(lambda x: fy(x, t).sum())(x)

    loss, mean, grad = ours(x, t)
    want = jax.jit(jaxloss.softmax_cross_entropy)(x, t)
    assert_close(loss, want, rtol=1e-13)
    assert_close(mean, np.mean(want), rtol=1e-13)
    assert_close(grad, jax.nn.softmax(x) - t, rtol=0, atol=1e-15)
    onehot = _one_hot(np.array([[0, 4], [1, 5]]))  # one-hot targets: integer-label CE
    labels = jnp.array([[0, 4], [1, 5]], jnp.int32)
    want = jax.jit(jaxloss.softmax_cross_entropy_with_integer_labels)(x, labels)
    assert_close(ours(x, onehot)[0], want, rtol=1e-13)


def test_fenchel_young_of_the_sparsemax_max_is_the_sparsemax_loss(rng):
    def gini_max(r):  # Omega*(r) = <p, r> + (1 - ||p||^2) / 2, p = sparsemax(r)
        p = sparsemax(r)
        return jnp.dot(p, r) + (1 - jnp.dot(p, p)) / 2

    x = rng.normal(size=(4, 6))
    got = jax.jit(make_fenchel_young_loss(gini_max))(x, _one_hot(LABELS))
    assert_close(got, _outputs(sparsemax, x, LABELS)["loss"], rtol=1e-13)


def test_fenchel_young_arguments():
    def scaled(r, b=1.0, *, c=1.0):
        return c * logsumexp(b * r)

    fy = make_fenchel_young_loss(scaled)
    x, t = jnp.zeros((2, 4)), jnp.full((2, 4), 0.25)
    assert_close(jax.jit(fy)(x, t, 2.0, c=3.0), np.full(2, 3 * np.log(4)), rtol=1e-14)
    assert jax.eval_shape(fy, jnp.zeros((0, 4)), jnp.zeros((0, 4))).shape == (0,)
    with pytest.raises(TypeError, match="logits"):
        fy(jnp.zeros(4, jnp.int32), t[0])
    with pytest.raises(ValueError, match="targets"):
        fy(x, t[:, :3])
    with pytest.raises(ValueError, match="reduction"):
        fy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="scalar"):
        make_fenchel_young_loss(lambda r: r)(x, t)


# ---- optax as a second opinion, and where it goes wrong


def test_against_optax(rng):
    x = jnp.asarray(rng.normal(size=(4, 6)) * 2)
    y = jnp.asarray(rng.integers(0, 2, (4, 6)), jnp.int32)

    @jax.jit
    def theirs(x):
        return (
            jax.vmap(optax.projections.projection_simplex)(x),
            optax.losses.multiclass_sparsemax_loss(x, LABELS),
            optax.losses.sparsemax_loss(x, y),
            optax.losses.make_fenchel_young_loss(logsumexp)(x, _one_hot(LABELS)),
        )

    with jax.numpy_dtype_promotion("standard"):
        proj, mc, binary, fy = theirs(x)
    o = _outputs(sparsemax, x, LABELS)
    assert_close(o["p"], proj, rtol=1e-13, atol=1e-15)
    assert_close(o["loss"], mc, rtol=1e-12)
    assert_close(sparsemax_loss(x, y), binary, rtol=1e-15)
    assert_close(make_fenchel_young_loss(logsumexp)(x, _one_hot(LABELS)), fy, rtol=1e-14)


def test_where_optax_goes_wrong():
    """Each case: optax's wrong number, then ours (which matches the float64 oracle)."""
    x16 = jnp.full((100,), 1000.0, jnp.float16)
    x32 = jnp.array([1e4, 1e4 - 0.3, 1e4 - 0.7, 1e4 - 5, 1e4 - 6, 1e4 - 7], jnp.float32)
    xi = jnp.array([[0.0, -jnp.inf, 1.0]])
    xb, yb = jnp.array([-jnp.inf, jnp.inf]), jnp.array([0, 1], jnp.int32)
    t = jnp.array([[1.0, 0.0, 0.0]])

    @jax.jit
    def theirs(x16, x32, xi, xb):
        mc = optax.losses.multiclass_sparsemax_loss
        return (
            optax.projections.projection_simplex(x16),
            optax.projections.projection_simplex(x32),
            jax.grad(lambda x: mc(x, jnp.array([1])).sum())(xi),
            jax.grad(lambda x: optax.losses.sparsemax_loss(x, yb).sum())(xb),
            optax.losses.make_fenchel_young_loss(logsumexp)(xi, t),
        )

    with jax.numpy_dtype_promotion("standard"):
        p16, p32, mc_grad, binary_grad, fy = theirs(x16, x32, xi, xb)
    # float16: the running sum of 100 logits of 1000 overflows: the probabilities sum to 1.75
    assert abs(float(p16.astype(jnp.float32).sum()) - 1) > 0.5
    # float32 near 1e4: the unshifted running sums lose the last digits (sum 1.001)
    assert abs(float(p32.sum()) - 1) > 1e-4
    # a label on a -inf logit: gradient NaN, where p - e_y is finite
    assert np.isnan(mc_grad).any()
    # the binary loss at -inf (label 0) and +inf (label 1): gradient NaN, 0 * inf
    assert np.isnan(binary_grad).all()
    # a -inf logit of target 0: NaN, 0 * -inf in <t, x>
    assert np.isnan(fy).all()

    @jax.jit
    def ours(x16, x32, xi, xb):
        xi4 = jnp.concatenate([xi, jnp.zeros((1, 3))], 1).repeat(4, 0)  # [0, -inf, 1, 0, 0, 0]
        return (
            sparsemax(x16),
            sparsemax(x32),
            jax.grad(lambda x: multiclass_sparsemax_loss(x, jnp.ones(4, jnp.int32)).sum())(xi4),
            jax.grad(lambda x: sparsemax_loss(x, yb).sum())(xb),
            make_fenchel_young_loss(logsumexp)(xi, t),
        )

    p16, p32, mc_grad, binary_grad, fy = ours(x16, x32, xi, xb)
    assert p16.dtype == jnp.float16 and (np.asarray(p16) == np.float16(0.01)).all()
    assert_close(p32, ref.entmax_bisect(x32, 2.0), rtol=0, atol=F32_ULP)
    assert_close(p32.sum(), 1.0, rtol=F32_ULP)
    assert_close(mc_grad, np.array([[0.0, -1.0, 1.0, 0, 0, 0]] * 4), rtol=0)
    assert_close(binary_grad, np.zeros(2), rtol=0)
    assert_close(fy, np.array([np.log1p(np.e)]), rtol=1e-15)  # logsumexp(0, 1) - 0


# ---- the PyTorch package `entmax`


def test_against_pytorch_entmax(rng):
    torch = pytest.importorskip("torch")
    entmax = pytest.importorskip("entmax")
    x = rng.normal(size=(4, 6)) * 2
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = torch.tensor(np.asarray(LABELS), dtype=torch.int64)
    v = rng.normal(size=x.shape)
    for f, project, loss_fn in (
        (sparsemax, entmax.sparsemax, entmax.sparsemax_loss),
        (entmax15, entmax.entmax15, entmax.entmax15_loss),
    ):
        o = _outputs(f, x, LABELS, derivatives=True)
        assert_close(o["p"], project(tx, dim=-1).detach().numpy(), rtol=1e-13, atol=1e-15)
        want = loss_fn(tx, ty)
        (grad,) = torch.autograd.grad(want.sum(), tx)
        assert_close(o["loss"], want.detach().numpy(), rtol=1e-12)
        assert_close(o["grad"], grad.numpy(), rtol=1e-13, atol=1e-15)
        # the vector-Jacobian product of the mapping against entmax's backward
        (vjp,) = torch.autograd.grad(project(tx, dim=-1), tx, torch.tensor(v))
        assert_close(jnp.einsum("bi,bij->bj", v, o["jac_rev"]), vjp.numpy(), rtol=1e-13, atol=1e-14)
    # a -inf logit: entmax's losses are NaN (0 * -inf in <p, x>); ours, those of the finite
    # classes
    xi = np.array([[0.5, -np.inf, 1.0, 0.2]])
    for f, loss_fn in ((sparsemax, entmax.sparsemax_loss), (entmax15, entmax.entmax15_loss)):
        assert torch.isnan(loss_fn(torch.tensor(xi), torch.tensor([0]))).all()
        want = _loss_oracle(f, xi[:, [0, 2, 3]], np.array([0]))
        assert_close(LOSS[f](xi, jnp.array([0], jnp.int32)), want, rtol=1e-13)


def test_a_large_support_far_below_the_top_keeps_its_mass():
    # 99 999 scores packed just below -0.9 under one at 0: the sort's running sums cancel in
    # float32; one Newton step on the plain sums keeps the total at 1.
    rng = np.random.default_rng(0)
    x = np.concatenate([[0.0], rng.uniform(-0.91, -0.90, 99_999)]).astype(np.float32)
    for f, tol in ((entmax15, 1e-5), (sparsemax, 1e-4)):
        p = f(jnp.asarray(x))
        assert abs(float(jnp.sum(p)) - 1) < tol, f.__name__
