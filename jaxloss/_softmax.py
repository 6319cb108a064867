"""Shared pieces of every softmax loss: the log-normaliser and integer-label bookkeeping."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxloss import _checks


def compute_dtype(dtype: Any) -> Any:
    """float32 for half-precision inputs, the input's own dtype when wider."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def is_static_zero(x: Any) -> bool:
    """True for a Python 0, whose term can be skipped; arrays always take the general path."""
    return isinstance(x, (int, float)) and x == 0


class Normalized(NamedTuple):
    shifted: jax.Array  # logits - max, in the compute dtype; excluded classes at -inf
    log_z: jax.Array  # log sum exp(shifted), keepdims; 0 on examples with no class
    shift: jax.Array  # the max that was subtracted (no gradient), keepdims
    include: jax.Array | None  # broadcast `where`, or None when every class is included
    has_class: jax.Array | None  # per example (keepdims): at least one class included


def normalize(logits: jax.Array, axis: int, where: Any) -> Normalized:
    """log_softmax(logits) = shifted - log_z, with `where` excluding classes."""
    x = logits.astype(compute_dtype(logits.dtype))
    include = has_class = None
    if where is not None:
        include = _checks.check_broadcastable(where, x.shape, "where", "logits").astype(bool)
        has_class = jnp.any(include, axis, keepdims=True)
        x = jnp.where(include, x, -jnp.inf)
    m = jnp.max(x, axis, keepdims=True)
    # The shift cancels in every loss, so it carries no gradient; a row that is all -inf
    # (nothing included) is shifted by 0 rather than by -inf, which would give NaN.
    shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0))
    shifted = x - shift
    z = jnp.sum(jnp.exp(shifted), axis, keepdims=True)
    if has_class is not None:
        z = jnp.where(has_class, z, 1)  # log(0) would put -inf into the gradient
    return Normalized(shifted, jnp.log(z), shift, include, has_class)


def class_count(n: Normalized, axis: int) -> jax.Array | int:
    """Number of included classes per example (keepdims), for label smoothing."""
    if n.include is None:
        return n.shifted.shape[axis]
    return jnp.maximum(jnp.sum(n.include, axis, keepdims=True), 1).astype(n.shifted.dtype)


class Labels(NamedTuple):
    index: jax.Array  # labels clipped into [0, C), keepdims along the class axis
    weight: jax.Array  # class weight of the label, 0 where ignored (the "mean" denominator)
    keep: jax.Array  # not ignored
    valid: jax.Array  # in range or ignored; other examples get a NaN loss


def prepare_labels(
    labels: Any,
    shape: tuple[int, ...],
    axis: int,
    name: str,
    ignore_index: int | None,
    class_weights: Any,
    dtype: Any,
) -> tuple[Labels, jax.Array | None]:
    labels = _checks.check_labels(labels, shape, axis, name)
    num_classes = shape[axis]
    if ignore_index is not None and not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
    _checks.check_label_range(labels, num_classes, ignore_index)
    labels = jnp.expand_dims(labels, axis)
    in_range = (labels >= 0) & (labels < num_classes)
    keep = jnp.ones_like(in_range) if ignore_index is None else labels != ignore_index
    index = jnp.clip(labels, 0, num_classes - 1)
    w = None
    if class_weights is None:
        weight = keep.astype(dtype)
    else:
        w = _checks.check_class_weights(class_weights, num_classes, dtype)
        weight = jnp.where(keep, w[index], 0)
    return Labels(index, weight, keep, in_range | ~keep), w


def take(x: jax.Array, index: jax.Array, axis: int) -> jax.Array:
    return jnp.take_along_axis(x, index, axis=axis)


def finish(
    loss: jax.Array, lab: Labels, has_class: jax.Array | None, axis: int
) -> tuple[jax.Array, jax.Array]:
    """Zeroes ignored examples and those with no class, marks invalid labels NaN, drops the axis.

    Returns the per-example loss and the per-example weight that "mean" divides by.
    """
    keep, weight = lab.keep, lab.weight
    if has_class is not None:
        keep = keep & has_class
        weight = jnp.where(has_class, weight, 0)
    loss = jnp.where(keep, loss, 0)
    loss = jnp.where(
        lab.valid, loss, jnp.nan
    )  # an out-of-range label under jit: never a silent class
    return jnp.squeeze(loss, axis), jnp.squeeze(weight, axis)
