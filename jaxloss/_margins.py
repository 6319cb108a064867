"""Margin losses: the binary hinge and perceptron losses, and their Crammer–Singer multiclass
forms on integer labels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss._dtypes import compute_dtype
from jaxloss._labels import finish, prepare_labels
from jaxloss._reduction import Reduction, reduce, reduce_elements
from jaxloss._softmax import mask_classes, pick


def _signs(targets: ArrayLike, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
    """Targets in {-1, +1} or {0, 1}, as y in {-1, +1} (0 is -1); NaN for any other value."""
    t = jnp.asarray(targets)
    if jnp.issubdtype(t.dtype, jnp.complexfloating):
        raise TypeError(f"targets must be real, got dtype {t.dtype}")
    if t.shape != shape:
        raise ValueError(
            "logits and targets must have the same shape, got logits.shape="
            f"{shape} and targets.shape={t.shape}"
        )
    if _checks.is_concrete(t):
        values = set(np.unique(np.asarray(t, np.float64)).tolist())
        if not (values <= {-1.0, 1.0} or values <= {0.0, 1.0}):
            raise ValueError(
                "targets must all lie in {-1, +1} or all in {0, 1}, got the values "
                f"{sorted(values)[:6]}"
            )
    y = t.astype(dtype)
    # Under jit the values cannot be checked: any value outside {-1, 0, 1} gives NaN.
    return jnp.where(y == 0, -1, jnp.where(jnp.abs(y) == 1, y, jnp.nan))


def _binary_margin(
    logits: ArrayLike,
    targets: ArrayLike,
    offset: float,
    where: ArrayLike | None,
    reduction: Reduction,
) -> jax.Array:
    x = _checks.check_float(logits, "logits")
    s = x.astype(compute_dtype(x.dtype))
    y = _signs(targets, x.shape, s.dtype)
    margin = y * s
    if where is not None:  # excluded elements reach neither the value nor the gradient
        include = _checks.check_broadcastable(where, x.shape, "where", "logits")
        margin = jnp.where(include, margin, offset)
    return reduce_elements(jnp.maximum(offset - margin, 0), where, reduction)


def hinge_loss(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Elementwise binary hinge loss of real-valued scores (the SVM's loss).

    .. math::
        \ell = \max(0,\ 1 - y\, s), \qquad y \in \{-1, +1\}

    Zero once the score has the target's sign with a margin of at least 1; otherwise linear
    in the shortfall. Targets in :math:`\{0, 1\}` are read as :math:`\{-1, +1\}`.

    Args:
      logits: scores :math:`s` of the decision function, any shape.
      targets: the same shape, all in :math:`\{-1, +1\}` or all in :math:`\{0, 1\}` (int,
        float or bool). Other values raise a ``ValueError`` when concrete and give NaN under
        ``jit``.
      where: boolean, broadcastable to ``logits``: elements to include.
      reduction: ``"none"`` (elementwise), ``"sum"``, or ``"mean"`` over the included elements.

    Returns:
      Elementwise losses of ``logits``' shape (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> print(jaxloss.hinge_loss(jnp.array([2.0, 0.5, -0.5]), jnp.array([1, 1, 1])))
      [0.  0.5 1.5]

    References:
      Cortes & Vapnik, *Support-Vector Networks*, Machine Learning 20, 1995.
    """
    return _binary_margin(logits, targets, 1.0, where, reduction)


def perceptron_loss(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Elementwise binary perceptron loss: the hinge without its margin.

    .. math::
        \ell = \max(0,\ -y\, s), \qquad y \in \{-1, +1\}

    Args:
      logits: scores :math:`s`, any shape.
      targets: the same shape, all in :math:`\{-1, +1\}` or all in :math:`\{0, 1\}`; other
        values raise a ``ValueError`` when concrete and give NaN under ``jit``.
      where: boolean, broadcastable to ``logits``: elements to include.
      reduction: ``"none"`` (elementwise), ``"sum"``, or ``"mean"`` over the included elements.

    Returns:
      Elementwise losses of ``logits``' shape (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> print(jaxloss.perceptron_loss(jnp.array([2.0, -0.5]), jnp.array([0.0, 1.0])))
      [2.  0.5]

    References:
      Rosenblatt, *The Perceptron*, Psychological Review 65, 1958.
    """
    return _binary_margin(logits, targets, 0.0, where, reduction)


def _multiclass_margin(
    logits: ArrayLike,
    labels: ArrayLike,
    margin: float,
    axis: int,
    where: ArrayLike | None,
    reduction: Reduction,
) -> jax.Array:
    """max(0, margin + max_{j != y} s_j - s_y), per example."""
    x = _checks.check_float(logits, "logits")
    axis = _checks.check_axis(axis, x.ndim)
    dtype = compute_dtype(x.dtype)
    lab = prepare_labels(labels, x.shape, axis, "logits", None, None, x.shape[axis], dtype)
    m = mask_classes(x.astype(dtype), axis, where)
    s_y = pick(m.x, lab.label, axis)
    classes = jax.lax.broadcasted_iota(lab.label.dtype, m.x.shape, axis)
    others = jnp.where(classes == lab.label, -jnp.inf, m.x)
    rival = jnp.max(others, axis, keepdims=True, initial=-jnp.inf)
    # No rival class (one included class, or every rival at -inf): the loss is 0, also when
    # the label's own score is -inf; the inner where keeps -inf - (-inf) out of the gradient.
    contest = rival > -jnp.inf
    gap = jnp.where(contest, margin + rival - s_y, 0)
    loss = jnp.where(contest, jnp.maximum(gap, 0), 0)
    loss, weight = finish(loss, lab, m.has_class, axis)
    return reduce(loss, reduction, weight)


def multiclass_hinge_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Multiclass hinge loss (Crammer–Singer) of scores against integer labels.

    .. math::
        \ell = \max_c \big(s_c + 1 - [c = y]\big) - s_y
             = \max\big(0,\ 1 + \max_{c \ne y} s_c - s_y\big)

    Zero once the label's score beats every other by at least 1. Its gradient is
    :math:`e_{c^*} - e_y` for the most violating class :math:`c^*` while the margin is
    violated, and 0 after: no gradient reaches correct examples, unlike cross-entropy's
    :math:`p - e_y`.

    Args:
      logits: scores, ``[..., C]``.
      labels: integer class indices, ``logits.shape`` without ``axis``.
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include (an example with no
        class has loss 0 and is not counted by ``"mean"``).
      reduction: ``"none"``, ``"sum"``, or ``"mean"`` over examples.

    Returns:
      Per-example losses of shape ``labels.shape`` (float32 or wider), or a scalar. A label
      outside ``[0, C)`` raises a ``ValueError`` when concrete; under ``jit`` its loss is NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> scores = jnp.array([[3.0, 1.0, 0.0], [1.0, 1.5, 0.0]])
      >>> print(jaxloss.multiclass_hinge_loss(scores, jnp.array([0, 0])))
      [0.  1.5]

    References:
      Crammer & Singer, *On the Algorithmic Implementation of Multiclass Kernel-based Vector
      Machines*, JMLR 2, 2001.
    """
    return _multiclass_margin(logits, labels, 1.0, axis, where, reduction)


def multiclass_perceptron_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Multiclass perceptron loss of scores against integer labels.

    .. math::
        \ell = \max_c s_c - s_y

    Zero when the label has the highest score (ties included).

    Args:
      logits: scores, ``[..., C]``.
      labels: integer class indices, ``logits.shape`` without ``axis``.
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include.
      reduction: ``"none"``, ``"sum"``, or ``"mean"`` over examples.

    Returns:
      Per-example losses of shape ``labels.shape`` (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> scores = jnp.array([[3.0, 1.0, 0.0], [1.0, 1.5, 0.0]])
      >>> print(jaxloss.multiclass_perceptron_loss(scores, jnp.array([0, 0])))
      [0.  0.5]

    References:
      Collins, *Discriminative Training Methods for Hidden Markov Models*, EMNLP 2002.
    """
    return _multiclass_margin(logits, labels, 0.0, axis, where, reduction)
