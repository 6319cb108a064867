"""Classification losses: softmax, integer-label, NLL, sigmoid, focal and Poly-1."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss._cross_entropy import labelled_loss, prepare
from jaxloss._dtypes import compute_dtype, is_static_zero
from jaxloss._labels import Labels, finish, prepare_labels
from jaxloss._reduction import Reduction, reduce, reduce_elements
from jaxloss._softmax import (
    Masked,
    empty_classes,
    mask_classes,
    pick,
    reduce_examples,
    softmax_parts,
)


def _xlogy_term(t: jax.Array, neg_log_p: jax.Array) -> jax.Array:
    # 0·log 0 = 0. The inner where keeps an infinite -log p (a -inf logit) out of the product,
    # so neither the value nor any derivative (reverse or forward mode) sees 0·inf.
    return t * jnp.where(t > 0, neg_log_p, 0)


def _smoothed(t: jax.Array, alpha: ArrayLike, m: Masked, dtype: jnp.dtype) -> jax.Array:
    """(1 - alpha) t + alpha / C over the C included classes, 0 on the excluded ones."""
    a = jnp.asarray(alpha, dtype)
    t = (1 - a) * t.astype(dtype) + a / m.class_count(dtype)
    return t if m.include is None else jnp.where(m.include, t, 0)


def smooth_labels(
    labels: ArrayLike, alpha: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None
) -> jax.Array:
    r"""Label smoothing of target distributions: a mix with the uniform distribution.

    .. math::
        y \leftarrow (1 - \alpha)\, y + \alpha / C

    over the :math:`C` included classes; excluded classes get 0, so a smoothed row still
    sums to one. ``softmax_cross_entropy(x, smooth_labels(y, a))`` equals
    ``softmax_cross_entropy(x, y, label_smoothing=a)``.

    Args:
      labels: target probabilities (one-hot or soft rows), ``[..., C]``.
      alpha: :math:`\alpha \in [0, 1]`.
      axis: the class axis.
      where: boolean, broadcastable to ``labels``: classes to include.

    Returns:
      The smoothed targets, ``labels``' shape and dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> print(jaxloss.smooth_labels(jnp.array([[0.0, 1.0, 0.0, 0.0]]), 0.2))
      [[0.05 0.85 0.05 0.05]]

    References:
      Szegedy et al., *Rethinking the Inception Architecture for Computer Vision*, CVPR 2016.
    """
    y = _checks.check_float(labels, "labels")
    axis = _checks.check_axis(axis, y.ndim, "labels")
    _checks.check_unit_interval(alpha, "alpha")
    m = mask_classes(y, axis, where)
    return _smoothed(y, alpha, m, compute_dtype(y.dtype)).astype(y.dtype)


def softmax_cross_entropy(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    label_smoothing: ArrayLike = 0.0,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Cross-entropy between target probabilities and ``softmax(logits)``.

    .. math::
        \ell = H(y, \operatorname{softmax}(x)) = -\sum_c y_c \log \operatorname{softmax}(x)_c,
        \qquad y \leftarrow (1-\varepsilon)\, y + \varepsilon / C

    with :math:`0 \log 0 = 0`, so a ``-inf`` logit on a class of zero target mass is harmless.
    Target mass on a ``-inf`` logit counts that logit as the lowest finite value of the
    compute dtype: a loss of about the mass times 3.4e38 in float32, rather than ``inf``.

    Args:
      logits: unnormalised log-probabilities, ``[..., C]``.
      targets: probabilities of the same shape (one-hot or soft rows).
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include. Excluded classes get
        probability 0 and their targets are ignored; an example with no class has loss 0.
      label_smoothing: :math:`\varepsilon \in [0, 1]`, mixes the targets with the uniform
        distribution over the (included) classes, as PyTorch does for probability targets.
      reduction: ``"none"`` (per example), ``"mean"`` over examples (those with at least one
        included class) or ``"sum"``.

    Returns:
      Per-example losses of shape ``logits.shape`` without ``axis`` (float32 or wider), or a
      scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
      >>> targets = jnp.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
      >>> print(jaxloss.softmax_cross_entropy(logits, targets))
      [0.1698 1.0986]
    """
    logits = _checks.check_float(logits, "logits")
    axis = _checks.check_axis(axis, logits.ndim)
    targets = _checks.check_float(targets, "targets")
    _checks.check_same_shape(logits, targets, "logits", "targets")
    _checks.check_unit_interval(label_smoothing, "label_smoothing")
    if logits.shape[axis] == 0:
        return empty_classes(logits, axis, reduction)
    m = mask_classes(logits, axis, where)
    # Half-precision targets stay so: each pass converts its block (a stored float32 copy
    # would be twice their bytes).
    t = targets
    if not is_static_zero(label_smoothing):
        t = _smoothed(t, label_smoothing, m, compute_dtype(logits.dtype))
    elif m.include is not None:
        t = jnp.where(m.include, t, 0)
    cross = softmax_parts(m.x, None, t, m.rows).cross  # Σ_c t_c (-log p_c), every term >= 0
    assert cross is not None
    return reduce_examples(cross, m, reduction)


def softmax_cross_entropy_with_integer_labels(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    ignore_index: int | None = None,
    class_weights: ArrayLike | None = None,
    label_smoothing: ArrayLike = 0.0,
    z_loss: ArrayLike = 0.0,
    logit_soft_cap: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Cross-entropy of ``softmax(logits)`` against integer labels, without a one-hot array.

    .. math::
        \ell = w_y \big[(1-\varepsilon)(-\log p_y) + \zeta \,(\log Z)^2\big]
              + \frac{\varepsilon}{C} \sum_c w_c (-\log p_c),

        p = \operatorname{softmax}(x),\ \log Z = \operatorname{logsumexp}(x)

    The smoothing and class-weight terms are PyTorch's ``cross_entropy`` exactly; the
    z-loss :math:`\zeta (\log Z)^2` is PaLM's, weighted like the example. With
    ``logit_soft_cap`` :math:`c`, the logits are first replaced by :math:`c \tanh(x / c)`
    (Gemma 2), and everything above, the z-loss included, uses the capped logits.

    Args:
      logits: unnormalised log-probabilities, ``[..., C]``.
      labels: integer class indices, ``logits.shape`` without ``axis``.
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include. The smoothing sum and
        :math:`C` run over the included classes; an example with no class has loss 0 and no
        weight.
      ignore_index: a label value whose examples contribute 0 and no weight (PyTorch uses -100).
      class_weights: ``[C]`` weights :math:`w` (1 when None).
      label_smoothing: :math:`\varepsilon \in [0, 1]`.
      z_loss: :math:`\zeta \ge 0`, the weight of the squared log-normaliser.
      logit_soft_cap: :math:`c > 0`, or None for no cap.
      reduction: ``"none"``, ``"sum"``, or ``"mean"``: the sum divided by the summed weight
        :math:`\sum w_y` of the non-ignored examples (0 when every example is ignored).

    Returns:
      Per-example losses of shape ``labels.shape`` (float32 or wider), or a scalar. A label
      outside ``[0, C)`` that is not ``ignore_index`` raises a ``ValueError`` when the labels are
      concrete; under ``jit`` that example's loss is NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
      >>> labels = jnp.array([0, -100])
      >>> loss = jaxloss.softmax_cross_entropy_with_integer_labels
      >>> print(loss(logits, labels, ignore_index=-100))
      [0.1698 0.    ]
      >>> print(f"{loss(logits, labels, ignore_index=-100, reduction='mean'):.4f}")
      0.1698
    """
    logits = _checks.check_float(logits, "logits")
    axis = _checks.check_axis(axis, logits.ndim)
    options = dict(
        ignore_index=ignore_index,
        class_weights=class_weights,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        logit_soft_cap=logit_soft_cap,
    )
    lab, opts = prepare(logits.shape, logits.dtype, labels, axis, "logits", options)
    loss, weight = labelled_loss(logits, lab, where, opts, axis)
    return reduce(loss, reduction, weight)


def _weighted(lab: Labels, loss: jax.Array) -> jax.Array:
    return loss if lab.weight is None else lab.weight * loss


def nll_loss(
    log_probs: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    ignore_index: int | None = None,
    class_weights: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Negative log-likelihood of integer labels under given log-probabilities.

    .. math::
        \ell = -w_y \log p_y

    ``log_probs`` are used as given (``jax.nn.log_softmax`` of the logits gives
    ``softmax_cross_entropy_with_integer_labels``). Same options and reductions as PyTorch's
    ``nll_loss``, except that a mean over no example is 0 rather than NaN.

    Args:
      log_probs: normalised log-probabilities, ``[..., C]``.
      labels: integer class indices, ``log_probs.shape`` without ``axis``.
      axis: the class axis.
      ignore_index: a label value whose examples contribute 0 and no weight.
      class_weights: ``[C]`` weights :math:`w` (1 when None).
      reduction: ``"none"``, ``"sum"`` or ``"mean"`` (divided by :math:`\sum w_y`).

    Returns:
      Per-example losses of shape ``labels.shape`` (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> log_probs = jnp.log(jnp.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
      >>> print(jaxloss.nll_loss(log_probs, jnp.array([0, 2])))
      [0.3567 0.2231]
    """
    log_probs = _checks.check_float(log_probs, "log_probs")
    axis = _checks.check_axis(axis, log_probs.ndim, "log_probs")
    dtype = compute_dtype(log_probs.dtype)
    w = None
    if class_weights is not None:
        w = _checks.check_class_vector(class_weights, log_probs.shape[axis], "class_weights")
    lab = prepare_labels(
        labels, log_probs.shape, axis, "log_probs", ignore_index, w, log_probs.shape[axis], dtype
    )
    loss = _weighted(lab, -pick(log_probs, lab.label, axis).astype(dtype))
    loss, weight = finish(loss, lab, None, axis)
    return reduce(loss, reduction, weight)


def _label_log_prob(
    logits: ArrayLike,
    labels: ArrayLike,
    axis: int,
    where: ArrayLike | None,
    ignore_index: int | None,
    class_weights: ArrayLike | None,
) -> tuple[jax.Array, Labels, jax.Array | None, int]:
    """log p_y and the label bookkeeping, shared by the focal and Poly-1 losses."""
    x = _checks.check_float(logits, "logits")
    axis = _checks.check_axis(axis, x.ndim)
    options = dict(ignore_index=ignore_index, class_weights=class_weights)
    options.update(label_smoothing=0, z_loss=0, logit_soft_cap=None)
    lab, _ = prepare(x.shape, x.dtype, labels, axis, "logits", options)
    m = mask_classes(x, axis, where)
    _, log_z, picked, _ = softmax_parts(m.x, lab.label, None, m.rows)
    assert picked is not None
    return picked - log_z, lab, m.has_class, axis


def _safe_pow(base: jax.Array, exponent: ArrayLike) -> jax.Array:
    # base**γ with base in [0, 1]: at base = 0 the derivative γ·base^(γ-1) can be inf·0 = NaN,
    # so take the power of a safe base and put back 0**γ (1 for γ = 0, else 0) by hand.
    positive = base > 0
    return jnp.where(
        positive, jnp.where(positive, base, 1) ** exponent, jnp.where(exponent == 0, 1.0, 0.0)
    )


def softmax_focal_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    gamma: ArrayLike = 2.0,
    axis: int = -1,
    where: ArrayLike | None = None,
    ignore_index: int | None = None,
    class_weights: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Multi-class focal loss on integer labels: cross-entropy scaled down on easy examples.

    .. math::
        \ell = -w_y\, (1 - p_y)^\gamma \log p_y, \qquad p = \operatorname{softmax}(x)

    ``gamma = 0`` is the (weighted) cross-entropy; ``class_weights`` play the role of
    :math:`\alpha`. Options and reductions are those of
    ``softmax_cross_entropy_with_integer_labels``.

    Args:
      logits: unnormalised log-probabilities, ``[..., C]``.
      labels: integer class indices, ``logits.shape`` without ``axis``.
      gamma: focusing parameter :math:`\gamma \ge 0`.
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include.
      ignore_index: a label value whose examples contribute 0 and no weight.
      class_weights: ``[C]`` weights :math:`w` (1 when None).
      reduction: ``"none"``, ``"sum"`` or ``"mean"`` (divided by :math:`\sum w_y`).

    Returns:
      Per-example losses of shape ``labels.shape`` (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> logits = jnp.array([[2.0, 0.0, -1.0]])
      >>> print(jaxloss.softmax_focal_loss(logits, jnp.array([0]), gamma=2.0))
      [0.0041]

    References:
      Lin et al., *Focal Loss for Dense Object Detection*, ICCV 2017.
    """
    log_py, lab, has, axis = _label_log_prob(
        logits, labels, axis, where, ignore_index, class_weights
    )
    loss = _weighted(lab, -_safe_pow(-jnp.expm1(log_py), gamma) * log_py)
    loss, weight = finish(loss, lab, has, axis)
    return reduce(loss, reduction, weight)


def poly1_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    epsilon: ArrayLike = 1.0,
    axis: int = -1,
    where: ArrayLike | None = None,
    ignore_index: int | None = None,
    class_weights: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Poly-1 loss: cross-entropy plus :math:`\epsilon` times the first polynomial term.

    .. math::
        \ell = w_y \big[-\log p_y + \epsilon\,(1 - p_y)\big], \qquad p = \operatorname{softmax}(x)

    Options and reductions are those of ``softmax_cross_entropy_with_integer_labels``.

    Args:
      logits: unnormalised log-probabilities, ``[..., C]``.
      labels: integer class indices, ``logits.shape`` without ``axis``.
      epsilon: weight :math:`\epsilon` of the :math:`(1 - p_y)` term (may be negative, > -1).
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include.
      ignore_index: a label value whose examples contribute 0 and no weight.
      class_weights: ``[C]`` weights :math:`w` (1 when None).
      reduction: ``"none"``, ``"sum"`` or ``"mean"`` (divided by :math:`\sum w_y`).

    Returns:
      Per-example losses of shape ``labels.shape`` (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> logits = jnp.array([[2.0, 0.0, -1.0]])
      >>> print(jaxloss.poly1_cross_entropy(logits, jnp.array([0]), epsilon=1.0))
      [0.3261]

    References:
      Leng et al., *PolyLoss: A Polynomial Expansion Perspective of Classification Loss
      Functions*, ICLR 2022.
    """
    log_py, lab, has, axis = _label_log_prob(
        logits, labels, axis, where, ignore_index, class_weights
    )
    loss = _weighted(lab, -log_py - epsilon * jnp.expm1(log_py))
    loss, weight = finish(loss, lab, has, axis)
    return reduce(loss, reduction, weight)


def _log_sigmoid_pair(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = logits.astype(compute_dtype(logits.dtype))
    return jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x)


def sigmoid_binary_cross_entropy(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    pos_weight: ArrayLike | None = None,
    label_smoothing: ArrayLike = 0.0,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Elementwise binary cross-entropy of independent sigmoid outputs (multi-label).

    .. math::
        \ell = -\big[\, w_+\, y \log \sigma(x) + (1-y) \log(1 - \sigma(x)) \big],
        \qquad y \leftarrow (1-\varepsilon)\, y + \varepsilon / 2

    computed from ``log_sigmoid`` so it is exact for large :math:`|x|` and finite at
    :math:`x = \pm\infty` when the target agrees. Equals PyTorch's
    ``binary_cross_entropy_with_logits`` (with ``pos_weight``).

    Args:
      logits: one logit per binary output, any shape ``[..., K]``.
      targets: P(y = 1) of the same shape, in [0, 1].
      pos_weight: :math:`w_+`, broadcastable to ``logits`` (usually ``[K]``, one per class):
        multiplies the positive term.
      label_smoothing: :math:`\varepsilon \in [0, 1]`, pulls the targets toward 1/2.
      where: boolean, broadcastable to ``logits``: elements to include.
      reduction: ``"none"`` (elementwise), ``"sum"``, or ``"mean"`` over all (included)
        elements.

    Returns:
      Elementwise losses of ``logits``' shape (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> logits = jnp.array([[3.0, -1.0], [0.0, 2.0]])
      >>> targets = jnp.array([[1.0, 0.0], [1.0, 1.0]])
      >>> print(jaxloss.sigmoid_binary_cross_entropy(logits, targets))
      [[0.0486 0.3133]
       [0.6931 0.1269]]
    """
    logits = _checks.check_float(logits, "logits")
    targets = _checks.check_float(targets, "targets")
    _checks.check_same_shape(logits, targets, "logits", "targets")
    _checks.check_unit_interval(label_smoothing, "label_smoothing")
    log_p, log_not_p = _log_sigmoid_pair(logits)
    y = targets.astype(log_p.dtype)
    if not is_static_zero(label_smoothing):
        eps = jnp.asarray(label_smoothing, y.dtype)
        y = (1 - eps) * y + eps / 2
    pos = _xlogy_term(y, -log_p)
    if pos_weight is not None:
        pw = _checks.check_broadcastable(pos_weight, y.shape, "pos_weight", "logits")
        pos = pw.astype(y.dtype) * pos
    loss = pos + _xlogy_term(1 - y, -log_not_p)
    return reduce_elements(loss, where, reduction)


def _clamped_log(p: jax.Array) -> jax.Array:
    # log 0 = -inf would reach the gradient as 0·inf; the clamp's branch carries no gradient.
    positive = p > 0
    return jnp.where(positive, jnp.maximum(jnp.log(jnp.where(positive, p, 1)), -100), -100)


def binary_cross_entropy(
    probs: ArrayLike, targets: ArrayLike, *, reduction: Reduction = "none"
) -> jax.Array:
    r"""Elementwise binary cross-entropy of probabilities, each log clamped at -100.

    .. math::
        \ell = -\big[\, y \max(\log p, -100) + (1-y) \max(\log(1-p), -100) \big]

    The clamp is PyTorch's ``binary_cross_entropy``: a probability of exactly 0 or 1 gives a
    finite loss and gradient. Prefer ``sigmoid_binary_cross_entropy`` on logits, which needs
    no clamp.

    Args:
      probs: probabilities in [0, 1], any shape.
      targets: targets in [0, 1] of the same shape.
      reduction: ``"none"``, ``"sum"`` or ``"mean"`` over all elements.

    Returns:
      Elementwise losses of ``probs``' shape (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> p = jnp.array([0.9, 0.2, 0.0])
      >>> y = jnp.array([1.0, 0.0, 1.0])
      >>> print(jaxloss.binary_cross_entropy(p, y))
      [  0.1054   0.2231 100.    ]
    """
    probs = _checks.check_float(probs, "probs")
    targets = _checks.check_float(targets, "targets")
    _checks.check_same_shape(probs, targets, "probs", "targets")
    p = probs.astype(compute_dtype(probs.dtype))
    y = targets.astype(p.dtype)
    loss = -(y * _clamped_log(p) + (1 - y) * _clamped_log(1 - p))
    return reduce(loss, reduction)


def sigmoid_focal_loss(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    alpha: ArrayLike | None = None,
    gamma: ArrayLike = 2.0,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Elementwise binary focal loss: sigmoid cross-entropy scaled down on easy outputs.

    .. math::
        \ell = \alpha_t\, (1 - p_t)^\gamma\, \mathrm{BCE}(x, y), \qquad
        p_t = y\,\sigma(x) + (1-y)(1-\sigma(x)),\ \alpha_t = y\,\alpha + (1-y)(1-\alpha)

    with :math:`\alpha_t = 1` when ``alpha`` is None. This is torchvision's
    ``sigmoid_focal_loss``.

    Args:
      logits: one logit per binary output, any shape.
      targets: P(y = 1) of the same shape, in [0, 1].
      alpha: weight :math:`\alpha \in [0, 1]` of the positive class, or None.
      gamma: focusing parameter :math:`\gamma \ge 0`; 0 gives the (weighted) BCE.
      reduction: ``"none"``, ``"sum"`` or ``"mean"`` over all elements.

    Returns:
      Elementwise losses of ``logits``' shape (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> logits = jnp.array([3.0, -1.0, 0.0])
      >>> targets = jnp.array([1.0, 1.0, 0.0])
      >>> print(jaxloss.sigmoid_focal_loss(logits, targets, alpha=0.25))
      [0.     0.1755 0.13  ]

    References:
      Lin et al., *Focal Loss for Dense Object Detection*, ICCV 2017.
    """
    logits = _checks.check_float(logits, "logits")
    targets = _checks.check_float(targets, "targets")
    _checks.check_same_shape(logits, targets, "logits", "targets")
    if alpha is not None:
        _checks.check_unit_interval(alpha, "alpha")
    log_p, log_not_p = _log_sigmoid_pair(logits)
    y = targets.astype(log_p.dtype)
    bce = _xlogy_term(y, -log_p) + _xlogy_term(1 - y, -log_not_p)
    one_minus_pt = y * jnp.exp(log_not_p) + (1 - y) * jnp.exp(log_p)
    loss = _safe_pow(one_minus_pt, gamma) * bce
    if alpha is not None:
        loss = (y * alpha + (1 - y) * (1 - alpha)) * loss
    return reduce(loss, reduction)
