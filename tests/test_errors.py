"""Bad input gets a clear error that names the argument."""

import jax
import jax.numpy as jnp
import pytest

import jaxloss

X = jnp.zeros((4, 3))
LABELS = jnp.array([0, 1, 2, 0])
CE_INT = jaxloss.softmax_cross_entropy_with_integer_labels


def test_mismatched_shapes_show_both():
    with pytest.raises(ValueError, match=r"logits\.shape=\(4, 3\).*targets\.shape=\(4, 2\)"):
        jaxloss.softmax_cross_entropy(X, jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"labels\.shape=\(3,\).*\(4, 3\)"):
        CE_INT(X, LABELS[:3])
    with pytest.raises(ValueError, match=r"probs\.shape.*targets\.shape"):
        jaxloss.binary_cross_entropy(X, jnp.zeros(3))
    with pytest.raises(ValueError, match="where"):
        jaxloss.softmax_cross_entropy(X, X, where=jnp.ones((2, 3), bool))
    with pytest.raises(ValueError, match=r"logits_p.*logits_q"):
        jaxloss.js_divergence(X, jnp.zeros((4, 2)))


def test_float_labels_are_a_type_error():
    with pytest.raises(TypeError, match="labels must be an integer"):
        CE_INT(X, jnp.array([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(TypeError, match="labels must be an integer"):
        jaxloss.nll_loss(X, jnp.array([0.0, 1.0, 2.0, 0.0]))


def test_integer_logits_are_a_type_error():
    with pytest.raises(TypeError, match="logits must be a floating-point"):
        CE_INT(jnp.zeros((4, 3), int), LABELS)


@pytest.mark.parametrize("reduction", ["avg", "batchmean", None])
def test_unknown_reduction(reduction):
    with pytest.raises(ValueError, match="reduction must be one of"):
        CE_INT(X, LABELS, reduction=reduction)
    with pytest.raises(ValueError, match="reduction must be one of"):
        jaxloss.sigmoid_binary_cross_entropy(X, X, reduction=reduction)


@pytest.mark.parametrize("eps", [-0.1, 1.5])
def test_label_smoothing_outside_unit_interval(eps):
    with pytest.raises(ValueError, match=r"label_smoothing must lie in \[0, 1\]"):
        CE_INT(X, LABELS, label_smoothing=eps)
    with pytest.raises(ValueError, match="label_smoothing"):
        jaxloss.softmax_cross_entropy(X, X, label_smoothing=eps)
    with pytest.raises(ValueError, match="label_smoothing"):
        jaxloss.sigmoid_binary_cross_entropy(X, X, label_smoothing=eps)


def test_class_weights_of_wrong_length():
    with pytest.raises(ValueError, match=r"class_weights must have shape \(3,\).*\(2,\)"):
        CE_INT(X, LABELS, class_weights=jnp.ones(2))
    with pytest.raises(ValueError, match="class_weights"):
        jaxloss.nll_loss(X, LABELS, class_weights=jnp.ones(4))


def test_out_of_range_labels_name_the_position():
    with pytest.raises(ValueError, match=r"labels\[2\] = 3"):
        CE_INT(X, jnp.array([0, 1, 3, 0]))
    with pytest.raises(ValueError, match=r"labels\[1\] = -1"):
        CE_INT(X, jnp.array([0, -1, 2, -100]), ignore_index=-100)
    with pytest.raises(ValueError, match=r"labels\[0\] = 5"):
        jaxloss.softmax_focal_loss(X, jnp.array([5, 0, 0, 0]))
    # ignore_index itself is fine, in or out of range.
    assert CE_INT(X, jnp.array([0, -100, 2, 0]), ignore_index=-100).shape == (4,)
    # Traced labels cannot be checked: they give NaN instead (see test_numerics).
    assert jax.jit(CE_INT)(X, jnp.array([0, 1, 3, 0])).shape == (4,)


def test_bad_axis():
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        CE_INT(X, LABELS, axis=2)
    with pytest.raises(TypeError, match="axis must be a single int"):
        jaxloss.entropy(X, axis=(0, 1))
