"""The label policy of every integer-label loss: clipping, ignored labels, class weights,
out-of-range labels, and which examples a mean counts."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from jaxloss import _checks
from jaxloss._reduction import AxisName, all_sum


class Labels(NamedTuple):
    label: jax.Array  # global labels clipped into [0, V), keepdims along the class axis
    weight: jax.Array | None  # class weight of the label, 0 where ignored; None: all 1
    keep: jax.Array | None  # not ignored; None: nothing is ignored
    valid: jax.Array  # in range or ignored; other examples get a NaN loss


def shard_offset(width: int, axis_name: AxisName, dtype: DTypeLike) -> jax.Array | int:
    """The first global class of this device's slice of `width` classes, in `dtype`."""
    return 0 if axis_name is None else jax.lax.axis_index(axis_name).astype(dtype) * width


def at_label(values: jax.Array, index: jax.Array, axis_name: AxisName) -> jax.Array:
    """`values[index]` for a `[V]` vector (or this device's `[V/k]` slice of it) and global
    labels: one gather, summed over the slices (exactly one holds each label)."""
    width = values.shape[0]
    if axis_name is None:
        return values[index]
    local = index - shard_offset(width, axis_name, index.dtype)
    inside = (local >= 0) & (local < width)
    return all_sum(jnp.where(inside, values[jnp.clip(local, 0, width - 1)], 0), axis_name)


def prepare_labels(
    labels: ArrayLike,
    shape: tuple[int, ...],
    axis: int,
    name: str,
    ignore_index: int | None,
    class_weights: jax.Array | None,
    num_classes: int,
    dtype: DTypeLike,
    axis_name: AxisName = None,
) -> Labels:
    """Checks the labels against logits of `shape` (this device's slice of `num_classes` when
    the classes are split over `axis_name`) and applies the policy. `class_weights` are
    checked already; weights come out in `dtype`."""
    _checks.check_has_classes(shape, axis, name)
    checked = _checks.check_labels(labels, shape, axis, name)
    if ignore_index is not None and (
        not isinstance(ignore_index, int) or isinstance(ignore_index, bool)
    ):
        raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
    _checks.check_label_range(checked, num_classes, ignore_index)
    # Trivial weights and masks stay None: constant arrays would only cost compile time.
    raw = jnp.expand_dims(checked, axis)
    index = jnp.clip(raw, 0, num_classes - 1)
    valid = (raw >= 0) & (raw < num_classes)
    keep = None
    if ignore_index is not None:
        keep = raw != ignore_index
        valid = valid | ~keep
    weight = None
    if class_weights is not None:
        weight = at_label(class_weights.astype(dtype), index, axis_name)
    if keep is not None:
        weight = keep.astype(dtype) if weight is None else jnp.where(keep, weight, 0)
    return Labels(index, weight, keep, valid)


def example_weight(lab: Labels, has_class: jax.Array | None, dtype: DTypeLike) -> jax.Array | None:
    """What "mean" divides by, per example (keepdims): the label's class weight, 0 for an
    ignored example or one with no included class; None when every example counts once."""
    weight = None if lab.weight is None else lab.weight.astype(dtype)
    if has_class is not None:
        weight = has_class.astype(dtype) if weight is None else jnp.where(has_class, weight, 0)
    return weight


def finish(
    loss: jax.Array, lab: Labels, has_class: jax.Array | None, axis: int
) -> tuple[jax.Array, jax.Array | None]:
    """Zeroes ignored examples and those with no class, marks invalid labels NaN, drops the
    class axis. Returns the per-example loss and what "mean" divides by (or None)."""
    if has_class is not None:
        has_class = jnp.broadcast_to(has_class, loss.shape)
    weight = example_weight(lab, has_class, loss.dtype)
    keep = lab.keep
    if has_class is not None:
        keep = has_class if keep is None else keep & has_class
    if keep is not None:
        loss = jnp.where(keep, loss, 0)
    # An out-of-range label under jit: never a silent class.
    loss = jnp.where(lab.valid, loss, jnp.nan)
    return jnp.squeeze(loss, axis), None if weight is None else jnp.squeeze(weight, axis)
