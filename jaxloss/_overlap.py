"""Overlap losses for segmentation: the soft Dice loss and its Tversky generalisation.

For probabilities p and targets t of shape [batch..., spatial..., C], summed over the spatial
axes for each batch element and class:

    I = Σ p t,   FP = Σ p (1 - t) = P - I,   FN = Σ (1 - p) t = T - I
    ℓ = 1 - (I + s) / (I + α FP + β FN + s) = (α FP + β FN) / (I + α FP + β FN + s)

The second form is the one computed: it has no cancellation when the loss is small, and its
denominator is 0 only when every term is (s = 0, nothing predicted and nothing present), where
the coefficient is 1 and the loss 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss._dtypes import compute_dtype
from jaxloss._reduction import Reduction, reduce, safe_ratio
from jaxloss._softmax import log_softmax, mask_classes

Axes = int | Sequence[int] | None

# Sudre et al.'s class weights 1 / (f² + ε), with optax's ε.
_FREQUENCY_EPS = 1e-7


def _arrays(predictions: ArrayLike, targets: ArrayLike) -> tuple[jax.Array, jax.Array]:
    x = _checks.check_float(predictions, "predictions")
    t = jnp.asarray(targets)
    if t.dtype != jnp.bool_ and not jnp.issubdtype(t.dtype, jnp.floating):
        raise TypeError(
            f"targets must be a floating-point (or boolean) array, got dtype {t.dtype}; "
            "one-hot encode integer labels, e.g. jax.nn.one_hot(labels, C)"
        )
    return x, t


def _match(x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Same shape [..., C]; a trailing class axis of size 1 missing from one is added."""
    a, b = x, t
    if a.ndim == b.ndim - 1:
        a = a[..., None]
    elif b.ndim == a.ndim - 1:
        b = b[..., None]
    if a.shape != b.shape:
        raise ValueError(
            "predictions and targets must have the same shape [..., C], or differ by a "
            f"trailing class axis of size 1; got predictions.shape={x.shape} and "
            f"targets.shape={t.shape}"
        )
    if a.ndim == 0:
        raise ValueError("predictions must have a class axis (the last), got a scalar")
    return a, b


def _sum_axes(axis: Axes, ndim: int, of: str, class_axis: int | None) -> tuple[int, ...] | None:
    """`axis` as sorted non-negative axes of an array of rank `ndim` (None stays None)."""
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, (int, np.integer)) else axis
    ints = isinstance(axes, (tuple, list)) and all(
        isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes
    )
    if isinstance(axis, bool) or not ints:
        raise TypeError(f"axis must be an int, a tuple of ints or None, got {axis!r}")
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for {of} of rank {ndim}")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axis has a repeated entry: {axis!r}")
    if class_axis is not None and class_axis in out:
        raise ValueError(
            f"axis={axis!r} includes the class axis (the last axis of predictions); the loss "
            "is per class, so sum over the other axes only"
        )
    return tuple(sorted(out))


def _check_probabilities(p: jax.Array) -> None:
    """Values in [0, 1] and, with C > 1, rows that sum to 1; only when concrete."""
    if not _checks.is_concrete(p) or p.size == 0:
        return
    lo, hi = float(jnp.min(p)), float(jnp.max(p))
    if not 0 <= lo <= hi <= 1:
        raise ValueError(
            "predictions must be probabilities in [0, 1] when apply_softmax (apply_sigmoid) is "
            f"False, got values in [{lo}, {hi}]"
        )
    if p.shape[-1] == 1:
        return
    # 1e-5 relative, or the dtype's eps: rounding each p_c to bfloat16 (float16) moves their
    # sum by at most eps / 2.
    tol = max(1e-5, float(jnp.finfo(p.dtype).eps))
    sums = jnp.sum(p, axis=-1, dtype=compute_dtype(p.dtype))
    if not float(jnp.max(jnp.abs(sums - 1))) <= tol:
        raise ValueError(
            "predictions must be valid probability distributions (rows that sum to 1 along the "
            "class axis) when "
            f"apply_softmax is False; their sums lie in [{float(jnp.min(sums)):.6g}, "
            f"{float(jnp.max(sums)):.6g}]"
        )


def _probabilities(x: jax.Array, apply_softmax: bool) -> jax.Array:
    """softmax over the last axis (sigmoid for one class), or x as given; float32 or wider."""
    if not apply_softmax:
        _check_probabilities(x)
        return x.astype(compute_dtype(x.dtype))
    if x.shape[-1] == 1:
        return jax.nn.sigmoid(x.astype(compute_dtype(x.dtype)))
    return jnp.exp(log_softmax(mask_classes(x, x.ndim - 1, None)))


def _per_class(
    x: jax.Array,
    t: jax.Array,
    axes: tuple[int, ...] | None,
    weights: jax.Array | None,
    smooth: ArrayLike,
    alpha: ArrayLike,
    beta: ArrayLike,
    apply_softmax: bool,
    ignore_background: bool,
) -> jax.Array:
    """w_c (1 - Tversky coefficient) per batch element and class, [batch..., C]."""
    for value, name in ((smooth, "smooth"), (alpha, "alpha"), (beta, "beta")):
        _checks.check_sign(value, name, strict=False)
    p = _probabilities(x, apply_softmax)
    y = t.astype(p.dtype)
    axes = tuple(range(1, x.ndim - 1)) if axes is None else axes
    inter = jnp.sum(p * y, axes)
    fp = jnp.sum(p * (1 - y), axes)
    fn = jnp.sum((1 - p) * y, axes)
    a, b, s = (jnp.asarray(v).astype(p.dtype) for v in (alpha, beta, smooth))
    err = a * fp + b * fn
    den = inter + err + s
    # den = 0 only when every term is 0 (smooth 0, nothing predicted, nothing present): the
    # coefficient is 1, the loss 0, with a zero derivative.
    loss = safe_ratio(err, den)
    if weights is not None:
        loss = loss * jnp.broadcast_to(weights.astype(p.dtype), loss.shape)
    if ignore_background and loss.shape[-1] > 1:
        loss = loss[..., 1:]
    return loss


def dice_loss(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    class_weights: ArrayLike | None = None,
    smooth: ArrayLike = 1.0,
    alpha: ArrayLike = 0.5,
    beta: ArrayLike = 0.5,
    apply_softmax: bool = True,
    ignore_background: bool = False,
    axis: Axes = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Soft Dice (Tversky) loss per batch element and class, for segmentation.

    .. math::
        \ell_{c} = w_c \Big(1 - \frac{I_c + s}{I_c + \alpha\, FP_c + \beta\, FN_c + s}\Big),
        \quad I_c = \sum_i p_{ic}\, t_{ic},\ FP_c = \sum_i p_{ic} (1 - t_{ic}),\
        FN_c = \sum_i (1 - p_{ic})\, t_{ic}

    where :math:`i` runs over the summed (spatial) axes, so :math:`FP_c = P_c - I_c` and
    :math:`FN_c = T_c - I_c` with :math:`P_c = \sum_i p_{ic}`, :math:`T_c = \sum_i t_{ic}`,
    and :math:`p = \operatorname{softmax}(x)` over the classes (:math:`\sigma(x)` when
    :math:`C = 1`). :math:`\alpha = \beta = 1/2` is the Dice loss
    :math:`1 - (2I + 2s) / (P + T + 2s)`; :math:`\alpha = \beta = 1` the Jaccard (IoU) loss;
    :math:`\beta > \alpha` penalises false negatives more (Tversky). Where the denominator is 0
    (:math:`s = 0`, a class neither predicted nor present) the coefficient is 1 and the loss 0,
    with a zero gradient. This is optax's ``dice_loss``, except that ``reduction`` reduces
    over everything (optax's reduces over the classes only) and defaults to ``"none"``, that
    such an empty class gives 0 rather than NaN, and that probabilities are checked only when
    concrete (so that they work under ``jit``) and may be a single class in [0, 1].

    Args:
      predictions: logits ``[batch, ..., C]`` (probabilities with ``apply_softmax=False``).
        A trailing class axis of size 1 may be missing from ``predictions`` or ``targets``.
      targets: target probabilities (one-hot or soft, or boolean masks) of the same shape.
      class_weights: ``[C]`` weights :math:`w` (1 when None).
      smooth: :math:`s \ge 0`, added to the numerator and the denominator.
      alpha: :math:`\alpha \ge 0`, the weight of the false positives.
      beta: :math:`\beta \ge 0`, the weight of the false negatives.
      apply_softmax: if False, ``predictions`` are probabilities, used as given: values in
        [0, 1] and, when :math:`C > 1`, rows that sum to 1 (checked when concrete).
      ignore_background: drop class 0 from the result (when :math:`C > 1`).
      axis: the axes to sum over, an int or a tuple of ints, not the class axis; None sums
        over every axis but the first (the batch) and the last (the classes).
      reduction: ``"none"``, or the ``"mean"`` or ``"sum"`` of all the per-class losses.

    Returns:
      Losses of shape ``predictions.shape`` without ``axis`` (by default ``[batch, C]``, or
      ``C - 1`` classes with ``ignore_background``), float32 or wider; or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> logits = jnp.array([[[2.0, -1.0], [0.5, 0.0], [-1.0, 1.0], [0.0, 3.0]]])
      >>> targets = jnp.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])
      >>> print(jaxloss.dice_loss(logits, targets))  # [1 image, 4 pixels, 2 classes]
      [[0.103  0.0945]]
      >>> print(f"{jaxloss.dice_loss(logits, targets, alpha=0.3, beta=0.7, reduction='mean'):.4f}")
      0.0991

    References:
      Milletari et al., *V-Net: Fully Convolutional Neural Networks for Volumetric Medical
      Image Segmentation*, 3DV 2016.

      Salehi et al., *Tversky Loss Function for Image Segmentation Using 3D Fully
      Convolutional Deep Networks*, MLMI 2017.

      Sudre et al., *Generalised Dice Overlap as a Deep Learning Loss Function for Highly
      Unbalanced Segmentations*, DLMIA 2017.
    """
    x, t = _match(*_arrays(predictions, targets))
    axes = _sum_axes(axis, x.ndim, "predictions", x.ndim - 1)
    w = None
    if class_weights is not None:
        w = _checks.check_class_vector(class_weights, x.shape[-1], "class_weights")
    loss = _per_class(x, t, axes, w, smooth, alpha, beta, apply_softmax, ignore_background)
    return reduce(loss, reduction)


def binary_dice_loss(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    smooth: ArrayLike = 1.0,
    apply_sigmoid: bool = True,
    axis: Axes = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Soft Dice loss of one foreground class per batch element, for binary segmentation.

    .. math::
        \ell = 1 - \frac{2 \sum_i p_i t_i + 2s}{\sum_i p_i + \sum_i t_i + 2s},
        \qquad p = \sigma(x)

    summed over the spatial axes :math:`i`: ``dice_loss`` with one class, squeezed. Where the
    denominator is 0 (:math:`s = 0`, an empty mask and nothing predicted) the loss is 0, with a
    zero gradient.

    Args:
      predictions: logits ``[batch, ...]`` or ``[batch, ..., 1]`` (a last axis of size 1 is the
        class axis); probabilities in [0, 1] with ``apply_sigmoid=False``.
      targets: target probabilities (or boolean masks), ``[batch, ...]`` or
        ``[batch, ..., 1]``.
      smooth: :math:`s \ge 0`.
      apply_sigmoid: if False, ``predictions`` are probabilities, used as given (checked to lie
        in [0, 1] when concrete).
      axis: axes of ``[batch, ...]`` to sum over, an int or a tuple of ints; None sums over
        every axis but the first.
      reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
      Losses of shape ``[batch, ...]`` without ``axis`` (by default ``[batch]``), float32 or
      wider; or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> probs = jnp.array([[0.9, 0.8, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0]])
      >>> masks = jnp.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
      >>> print(jaxloss.binary_dice_loss(probs, masks, apply_sigmoid=False, smooth=0.0))
      [0.1053 0.    ]

    References:
      Milletari et al., *V-Net: Fully Convolutional Neural Networks for Volumetric Medical
      Image Segmentation*, 3DV 2016.
    """
    x, t = _arrays(predictions, targets)
    if x.ndim == t.ndim and (x.ndim == 0 or x.shape[-1] != 1):
        x, t = x[..., None], t[..., None]
    x, t = _match(x, t)
    axes = _sum_axes(axis, x.ndim - 1, "predictions without their class axis", None)
    loss = _per_class(x, t, axes, None, smooth, 0.5, 0.5, apply_sigmoid, False)
    return reduce(loss[..., 0], reduction)


def multiclass_generalized_dice_loss(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    smooth: ArrayLike = 1.0,
    apply_softmax: bool = True,
    ignore_background: bool = False,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Dice loss per batch element and class, weighted by the inverse squared class volume.

    .. math::
        \ell_{c} = \tilde w_c \Big(1 - \frac{I_c + s}{(P_c + T_c)/2 + s}\Big), \qquad
        \tilde w_c = C \frac{w_c}{\sum_k w_k}, \quad w_c = \frac{1}{f_c^2 + 10^{-7}}

    with :math:`f_c` the sum of ``targets`` of class :math:`c` over every axis but the last
    (the whole batch), and :math:`I_c, P_c, T_c` those of ``dice_loss`` (summed over the
    spatial axes). This is optax's ``multiclass_generalized_dice_loss``: a weighted *mean* of
    the per-class Dice losses, with Sudre et al.'s weights; optax returns the mean over batch
    and classes, ``reduction="mean"`` here. Sudre et al.'s loss is instead a ratio of weighted
    sums, :math:`1 - 2 \sum_c w_c I_c / \sum_c w_c (P_c + T_c)` (with :math:`s = 0`): also a
    weighted mean of the per-class Dice coefficients, but with weights proportional to
    :math:`w_c (P_c + T_c)`, so the two agree when :math:`C = 1` or when every class has the
    same :math:`P_c + T_c`.

    Args:
      predictions: logits ``[batch, ..., C]`` (probabilities with ``apply_softmax=False``).
      targets: target probabilities (one-hot or soft) of the same shape.
      smooth: :math:`s \ge 0`.
      apply_softmax: if False, ``predictions`` are probabilities, used as given (checked when
        concrete, as in ``dice_loss``).
      ignore_background: drop class 0 from the result (when :math:`C > 1`); the weights are
        still normalised over all :math:`C` classes, as in optax.
      reduction: ``"none"``, or the ``"mean"`` or ``"sum"`` of all the per-class losses.

    Returns:
      Losses of shape ``[batch, C]`` (``predictions.shape`` without its spatial axes; ``C - 1``
      classes with ``ignore_background``), float32 or wider; or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> logits = jnp.array([[[2.0, -1.0], [0.5, 0.0], [1.0, 1.0], [0.0, 3.0]]])
      >>> targets = jnp.array([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
      >>> loss = jaxloss.multiclass_generalized_dice_loss
      >>> print(loss(logits, targets))  # class 1 is rare: its weight is 9 times class 0's
      [[0.0273 0.3589]]
      >>> print(f"{loss(logits, targets, reduction='mean'):.4f}")  # optax's value
      0.1931

    References:
      Sudre et al., *Generalised Dice Overlap as a Deep Learning Loss Function for Highly
      Unbalanced Segmentations*, DLMIA 2017.

      Milletari et al., *V-Net: Fully Convolutional Neural Networks for Volumetric Medical
      Image Segmentation*, 3DV 2016.
    """
    x, t = _match(*_arrays(predictions, targets))
    frequency = jnp.sum(t.astype(compute_dtype(x.dtype)), tuple(range(t.ndim - 1)))
    w = 1 / (frequency**2 + _FREQUENCY_EPS)
    w = w * (w.shape[0] / jnp.sum(w))
    loss = _per_class(x, t, None, w, smooth, 0.5, 0.5, apply_softmax, ignore_background)
    return reduce(loss, reduction)
