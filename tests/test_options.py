"""Every integer-label path takes every option with one meaning: the materialised, fused and
vocabulary-parallel losses agree (values and gradients) and equal a float64 oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxloss

from . import reference as ref

N, D, V, V_REAL = 24, 8, 40, 33  # a vocabulary of 33 classes padded to 40
CE = jaxloss.softmax_cross_entropy_with_integer_labels
REAL = jnp.arange(V) < V_REAL
ALL = {
    "where": REAL,
    "ignore_index": -100,
    "class_weights": jnp.linspace(0.5, 2.0, V),
    "label_smoothing": 0.1,
    "z_loss": 1e-2,
    "logit_soft_cap": 3.0,
}
COMBOS = [{}] + [{k: v} for k, v in ALL.items()] + [ALL]
IDS = ["plain", *ALL, "all"]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    hidden = jnp.asarray(rng.normal(size=(N, D)))
    weight = jnp.asarray(rng.normal(size=(D, V))).at[:, V_REAL:].set(0.0)  # zero padding
    labels = rng.integers(0, V_REAL, N)
    labels[::5] = -100
    return hidden, weight, jnp.asarray(labels)


def _labels(kw, labels):
    return labels if "ignore_index" in kw else jnp.where(labels < 0, 1, labels)


def _mesh():
    return jax.sharding.Mesh(jax.devices()[:1], ("vocab",))


def _sliced(kw):
    """in_specs for the per-class options: each device holds its slice."""
    return {k: P("vocab") if k in ("where", "class_weights") else P() for k in kw}


def _paths(kw, reduction):
    """(hidden, weight, labels) -> loss for each of the four integer-label functions."""
    arrays = {k: v for k, v in kw.items() if k != "ignore_index"}
    statics = {k: v for k, v in kw.items() if k == "ignore_index"}
    specs = _sliced(arrays)
    out = P()

    def parallel(h, w, y):
        def local(x, y, opts):
            return jaxloss.vocab_parallel_softmax_cross_entropy(
                x, y, axis_name="vocab", reduction=reduction, **opts, **statics
            )

        f = jax.shard_map(
            local, mesh=_mesh(), in_specs=(P(None, "vocab"), P(), specs), out_specs=out
        )
        return f(h @ w, y, arrays)

    def parallel_fused(h, w, y):
        def local(h, w, y, opts):
            return jaxloss.vocab_parallel_linear_softmax_cross_entropy(
                h, w, y, axis_name="vocab", reduction=reduction, chunk_size=7, **opts, **statics
            )

        f = jax.shard_map(
            local, mesh=_mesh(), in_specs=(P(), P(None, "vocab"), P(), specs), out_specs=out
        )
        return f(h, w, y, arrays)

    return {
        "fused": lambda h, w, y: jaxloss.linear_softmax_cross_entropy(
            h, w, y, reduction=reduction, chunk_size=7, **kw
        ),
        "vocab_parallel": parallel,
        "vocab_parallel_fused": parallel_fused,
    }


def _value_and_grads(f, h, w, y, cot):
    return jax.jit(jax.value_and_grad(lambda h, w: jnp.sum(f(h, w, y) * cot), argnums=(0, 1)))(h, w)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("kw", COMBOS, ids=IDS)
def test_every_path_agrees_with_the_materialised_loss(data, kw, reduction):
    h, w, labels = data
    y = _labels(kw, labels)
    cot = jnp.linspace(0.5, 1.5, N) if reduction == "none" else 1.0

    def materialised(h, w, y):
        return CE(h @ w, y, reduction=reduction, **kw)

    want = _value_and_grads(materialised, h, w, y, cot)
    for name, f in _paths(kw, reduction).items():
        got = _value_and_grads(f, h, w, y, cot)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13, err_msg=name)


def _oracle(x, labels, kw):
    """float64, written from the definition: the padded vocabulary cut away, the cap applied."""
    x = np.asarray(x, np.float64)
    cw = kw.get("class_weights")
    if "logit_soft_cap" in kw:
        c = kw["logit_soft_cap"]
        x = c * np.tanh(x / c)
    if "where" in kw:
        x, cw = x[:, :V_REAL], None if cw is None else cw[:V_REAL]
    return ref.integer_cross_entropy(
        x,
        np.asarray(labels),
        ignore_index=kw.get("ignore_index"),
        class_weights=None if cw is None else np.asarray(cw),
        label_smoothing=kw.get("label_smoothing", 0.0),
        z_loss=kw.get("z_loss", 0.0),
    )


@pytest.mark.parametrize("kw", COMBOS, ids=IDS)
def test_materialised_loss_equals_the_float64_oracle(data, kw):
    h, w, labels = data
    y = _labels(kw, labels)
    loss, weight = _oracle(h @ w, y, kw)
    np.testing.assert_allclose(CE(h @ w, y, **kw), loss, rtol=1e-12, atol=1e-14)
    mean = CE(h @ w, y, reduction="mean", **kw)
    np.testing.assert_allclose(mean, ref.reduce(loss, weight, "mean"), rtol=1e-12)


def test_padding_columns_change_nothing_when_excluded(data):
    h, w, labels = data
    y = _labels({}, labels)
    real = CE(h @ w[:, :V_REAL], y, label_smoothing=0.1, reduction="mean")
    padded = jaxloss.linear_softmax_cross_entropy(
        h, w, y, where=REAL, label_smoothing=0.1, reduction="mean"
    )
    unmasked = jaxloss.linear_softmax_cross_entropy(h, w, y, label_smoothing=0.1, reduction="mean")
    np.testing.assert_allclose(padded, real, rtol=1e-12)
    assert abs(float(unmasked) - float(real)) > 1e-3  # the zero columns do count without `where`


def test_vocab_parallel_minus_inf_padding_with_traced_zero_smoothing(data):
    h, w, labels = data
    y = _labels({}, labels)
    x = (h @ w).at[:, V_REAL:].set(-jnp.inf)

    def local(x, y, eps):
        return jaxloss.vocab_parallel_softmax_cross_entropy(
            x, y, axis_name="vocab", label_smoothing=eps, reduction="mean"
        )

    f = jax.jit(
        jax.shard_map(local, mesh=_mesh(), in_specs=(P(None, "vocab"), P(), P()), out_specs=P())
    )
    got = f(x, y, jnp.asarray(0.0))
    assert np.isfinite(got)
    np.testing.assert_allclose(got, CE(x, y, reduction="mean"), rtol=1e-12)
    # Smoothing mass on a -inf logit is an infinite loss on both paths (`where` avoids it).
    inf = CE(x, y, label_smoothing=0.1, reduction="mean")
    assert np.isinf(inf)
    np.testing.assert_array_equal(f(x, y, jnp.asarray(0.1)), inf)


def test_soft_cap_is_the_loss_of_the_capped_logits(data):
    h, w, labels = data
    y = _labels({}, labels)
    x, c = (h @ w) * 4, 2.5

    def capped(x):
        return CE(x, y, logit_soft_cap=c, z_loss=1e-2, reduction="sum")

    def by_hand(x):
        return CE(c * jnp.tanh(x / c), y, z_loss=1e-2, reduction="sum")

    np.testing.assert_allclose(capped(x), by_hand(x), rtol=1e-13)
    np.testing.assert_allclose(jax.grad(capped)(x), jax.grad(by_hand)(x), rtol=1e-12, atol=1e-15)


def test_soft_cap_on_half_precision_keeps_the_dtype_and_float32_sums():
    x = jax.random.normal(jax.random.key(0), (6, 50), jnp.bfloat16) * 8
    y = jnp.arange(6)
    loss, grad = jax.value_and_grad(lambda x: CE(x, y, logit_soft_cap=5.0, reduction="sum"))(x)
    assert loss.dtype == jnp.float32 and grad.dtype == jnp.bfloat16
    capped = (5.0 * jnp.tanh(x.astype(jnp.float32) / 5.0)).astype(jnp.bfloat16)
    np.testing.assert_allclose(loss, CE(capped, y, reduction="sum"), rtol=1e-6)


@pytest.mark.parametrize(
    "fn",
    [
        lambda **kw: CE(jnp.zeros((2, 5)), jnp.zeros(2, int), **kw),
        lambda **kw: jaxloss.linear_softmax_cross_entropy(
            jnp.zeros((2, 3)), jnp.zeros((3, 5)), jnp.zeros(2, int), **kw
        ),
    ],
    ids=["materialised", "fused"],
)
@pytest.mark.parametrize(
    "kw,match",
    [
        ({"z_loss": -1e-3}, "z_loss"),
        ({"logit_soft_cap": 0.0}, "logit_soft_cap"),
        ({"logit_soft_cap": -2.0}, "logit_soft_cap"),
        ({"class_weights": jnp.ones(4)}, "class_weights"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
    ],
)
def test_bad_options_name_the_argument(fn, kw, match):
    with pytest.raises(ValueError, match=match):
        fn(**kw)


def test_a_class_mask_of_the_wrong_length_names_where():
    with pytest.raises(ValueError, match="where"):
        jaxloss.linear_softmax_cross_entropy(
            jnp.zeros((2, 3)), jnp.zeros((3, 5)), jnp.zeros(2, int), where=jnp.ones(4, bool)
        )
    with pytest.raises(ValueError, match="where"):
        CE(jnp.zeros((2, 5)), jnp.zeros(2, int), where=jnp.ones(4, bool))


def test_no_classes_at_all():
    empty = jnp.zeros((3, 0))
    for loss in (
        lambda: jaxloss.softmax_cross_entropy(empty, empty),
        lambda: jaxloss.kl_divergence(empty, empty),
        lambda: jaxloss.js_divergence(empty, empty),
        lambda: jaxloss.entropy(empty),
    ):
        np.testing.assert_array_equal(loss(), np.zeros(3))
    assert float(jaxloss.kl_divergence(empty, empty, reduction="mean")) == 0.0
    for loss in (CE, jaxloss.softmax_focal_loss, jaxloss.poly1_cross_entropy, jaxloss.nll_loss):
        with pytest.raises(ValueError, match="no classes"):
            loss(empty, jnp.zeros(3, int))


def test_entropy_reductions():
    x = jax.random.normal(jax.random.key(1), (5, 7))
    where = jnp.arange(7) < 4
    per = jaxloss.entropy(x, where=where)
    np.testing.assert_allclose(jaxloss.entropy(x, where=where, reduction="sum"), per.sum())
    np.testing.assert_allclose(jaxloss.entropy(x, reduction="mean"), jaxloss.entropy(x).mean())
    rows = jnp.arange(5)[:, None] < 2  # rows 2.. include no class: 0 and not counted
    masked = jaxloss.entropy(x, where=rows, reduction="mean")
    np.testing.assert_allclose(masked, jaxloss.entropy(x[:2]).mean(), rtol=1e-12)
