"""Trace-time validation: every bad argument gets an error that names it."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: Any) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_axis(axis: Any, ndim: int, name: str = "logits") -> int:
    """Returns the non-negative class axis of an array of rank `ndim`."""
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"axis must be a single int, got {axis!r}")
    if ndim == 0:
        raise ValueError(f"{name} must have a class axis, got a scalar")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for {name} of rank {ndim}")
    return int(axis) % ndim


def check_float(x: Any, name: str) -> jax.Array:
    arr: jax.Array = jnp.asarray(x)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    return arr


def check_same_shape(a: jax.Array, b: jax.Array, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {name_a}.shape={a.shape} "
            f"and {name_b}.shape={b.shape}"
        )


def check_broadcastable(
    mask: Any, shape: tuple[int, ...], name: str, to: str, expand: bool = True
) -> jax.Array:
    """`mask` broadcast to `shape`; with expand=False, only given `shape`'s rank (leading 1s)."""
    mask_: jax.Array = jnp.asarray(mask)
    mask = mask_
    try:
        fits = np.broadcast_shapes(mask.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{name} of shape {mask.shape} cannot be broadcast to {to}.shape={shape}")
    if expand:
        return jnp.broadcast_to(mask, shape)
    return mask_.reshape((1,) * (len(shape) - mask_.ndim) + mask_.shape)


def check_labels(labels: Any, logits_shape: tuple[int, ...], axis: int, name: str) -> jax.Array:
    """Integer labels whose shape is the logits' shape without the class axis."""
    arr: jax.Array = jnp.asarray(labels)
    labels = arr
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"labels must be an integer array of class indices, got dtype {labels.dtype}; "
            "pass probabilities to the soft-target loss instead"
        )
    expected = logits_shape[:axis] + logits_shape[axis + 1 :]
    if labels.shape != expected:
        raise ValueError(
            f"labels.shape={labels.shape} must equal {name}.shape={logits_shape} without its "
            f"class axis {axis}, i.e. {expected}"
        )
    return arr


def is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_label_range(labels: jax.Array, num_classes: int, ignore_index: int | None) -> None:
    """Raises on an out-of-range label when the labels are concrete (not traced)."""
    if not is_concrete(labels):
        return
    values = np.asarray(labels)
    bad = (values < 0) | (values >= num_classes)
    if ignore_index is not None:
        bad &= values != ignore_index
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}; "
            f"labels{list(pos)} = {values[pos]}"
        )


def check_unit_interval(value: Any, name: str) -> None:
    """Checks 0 <= value <= 1 when the value is concrete (a traced schedule is trusted)."""
    if not is_concrete(value):
        return
    v = np.asarray(value)
    if v.ndim or not np.issubdtype(v.dtype, np.number):
        raise ValueError(f"{name} must be a scalar, got {value!r}")
    if not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {float(v)}")


def check_class_vector(value: Any, num_classes: int, name: str) -> jax.Array:
    """A `[num_classes]` array, one entry per class (or per class of this device's slice)."""
    v = jnp.asarray(value)
    if v.shape != (num_classes,):
        raise ValueError(
            f"{name} must have shape ({num_classes},), one entry per class, got "
            f"{name}.shape={v.shape}"
        )
    return v


def check_sign(value: Any, name: str, strict: bool) -> None:
    """Checks value > 0 (`strict`) or >= 0 when it is concrete (a traced schedule is trusted;
    None means the option is off)."""
    if value is None or not is_concrete(value):
        return
    v = np.asarray(value)
    if v.ndim or not np.issubdtype(v.dtype, np.number):
        raise ValueError(f"{name} must be a scalar, got {value!r}")
    if not (float(v) > 0.0 if strict else float(v) >= 0.0):
        raise ValueError(f"{name} must be {'>' if strict else '>='} 0, got {float(v)}")


def check_has_classes(shape: tuple[int, ...], axis: int, name: str) -> None:
    """Integer labels need at least one class to point at."""
    if shape[axis] == 0:
        raise ValueError(
            f"{name} has no classes: {name}.shape={shape} is 0 along the class axis {axis}, "
            "so no label can be scored"
        )
