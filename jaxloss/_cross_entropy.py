"""Integer-label softmax cross-entropy, the one definition that the materialised, fused and
vocabulary-parallel functions apply to their logits (all of them, a chunk, or a shard)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss._dtypes import compute_dtype, is_static_zero
from jaxloss._labels import Labels, finish, prepare_labels
from jaxloss._reduction import AxisName
from jaxloss._softmax import Masked, mask_classes, softmax_parts


def soft_cap(logits: jax.Array, cap: ArrayLike | None) -> jax.Array:
    """cap·tanh(logits / cap), computed in the compute dtype and rounded once to the logits'."""
    if cap is None:
        return logits
    dtype = compute_dtype(logits.dtype)
    c = jnp.asarray(cap, dtype)
    return (c * jnp.tanh(logits.astype(dtype) / c)).astype(logits.dtype)


class LabelOptions(NamedTuple):
    """The options of integer-label cross-entropy, as arrays of the compute dtype; a Python 0
    (or None) leaves its term out of the program."""

    label_smoothing: Any
    z_loss: Any
    logit_soft_cap: Any
    class_weights: jax.Array | None  # [C], or this device's slice


def label_options(
    label_smoothing: ArrayLike,
    z_loss: ArrayLike,
    logit_soft_cap: ArrayLike | None,
    class_weights: ArrayLike | None,
    num_classes: int,
    dtype: Any,
) -> LabelOptions:
    """Validates the options (`num_classes` of this device) and casts them to `dtype`."""
    _checks.check_unit_interval(label_smoothing, "label_smoothing")
    _checks.check_sign(z_loss, "z_loss", strict=False)
    _checks.check_sign(logit_soft_cap, "logit_soft_cap", strict=True)

    def arr(v: Any) -> Any:
        return v if v is None or is_static_zero(v) else jnp.asarray(v, dtype)

    w = None
    if class_weights is not None:
        w = _checks.check_class_vector(class_weights, num_classes, "class_weights").astype(dtype)
    return LabelOptions(arr(label_smoothing), arr(z_loss), arr(logit_soft_cap), w)


def _smoothing_weights(m: Masked, class_weights: jax.Array | None) -> jax.Array:
    """w_c of the smoothing sum, 0 on excluded classes, as a row broadcastable to the logits
    (broadcast to every row it would be stored whole)."""
    shape = [1] * m.x.ndim
    shape[m.rows.axis] = m.x.shape[m.rows.axis]
    dtype = compute_dtype(m.x.dtype)
    w = jnp.ones(shape, dtype) if class_weights is None else class_weights.reshape(shape)
    return w if m.include is None else jnp.where(m.include, w, 0)


def label_cross_entropy(m: Masked, lab: Labels, opts: LabelOptions) -> jax.Array:
    r"""Per example (keepdims, before the label policy's `finish`):
    w_y[(1-ε)(-log p_y) + ζ (log Z)²] + ε/C Σ_c w_c (-log p_c)."""
    eps, zeta, w = opts.label_smoothing, opts.z_loss, opts.class_weights
    smoothing = not is_static_zero(eps)
    t = _smoothing_weights(m, w) if smoothing else None
    s, log_z, picked, cross = softmax_parts(m.x, lab.label, t, m.rows)
    assert picked is not None
    loss = log_z - picked
    if smoothing:
        loss = (1 - eps) * loss
    if not is_static_zero(zeta):
        lse = log_z + s
        # A huge log Z squares to inf; with z_loss = 0 that must stay 0, not 0·inf = NaN.
        loss = loss + jnp.where(zeta != 0, zeta * lse * lse, 0)
    if w is not None and lab.weight is not None:
        loss = lab.weight * loss
    if cross is not None:
        # With ε = 0 a -inf logit must not turn 0·(huge) into anything but 0.
        loss = loss + jnp.where(eps != 0, eps / m.class_count(s.dtype) * cross, 0)
    return loss


def prepare(
    shape: tuple[int, ...],
    dtype: Any,
    labels: ArrayLike,
    axis: int,
    name: str,
    options: dict[str, Any],
    axis_name: AxisName = None,
) -> tuple[Labels, LabelOptions]:
    """Validates labels and `options` (ignore_index, class_weights, label_smoothing, z_loss,
    logit_soft_cap) for logits of `shape` and `dtype` (this device's slice of the classes
    when they are split over `axis_name`)."""
    width = shape[axis]
    num_classes = width if axis_name is None else width * jax.lax.axis_size(axis_name)
    acc = compute_dtype(dtype)
    o = dict(options)
    ignore_index = o.pop("ignore_index")
    opts = label_options(**o, num_classes=width, dtype=acc)
    lab = prepare_labels(
        labels, shape, axis, name, ignore_index, opts.class_weights, num_classes, acc, axis_name
    )
    return lab, opts


def labelled_loss(
    logits: jax.Array,
    lab: Labels,
    where: ArrayLike | None,
    opts: LabelOptions,
    axis: int,
    axis_name: AxisName = None,
) -> tuple[jax.Array, jax.Array | None]:
    """Per-example losses (class axis dropped) and what "mean" divides by (or None)."""
    m = mask_classes(soft_cap(logits, opts.logit_soft_cap), axis, where, axis_name)
    return finish(label_cross_entropy(m, lab, opts), lab, m.has_class, axis)
