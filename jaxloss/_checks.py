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
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    return x


def check_same_shape(a: jax.Array, b: jax.Array, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {name_a}.shape={a.shape} "
            f"and {name_b}.shape={b.shape}"
        )


def check_broadcastable(mask: Any, shape: tuple[int, ...], name: str, to: str) -> jax.Array:
    mask = jnp.asarray(mask)
    try:
        fits = np.broadcast_shapes(mask.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{name} of shape {mask.shape} cannot be broadcast to {to}.shape={shape}")
    return jnp.broadcast_to(mask, shape)


def check_labels(labels: Any, logits_shape: tuple[int, ...], axis: int, name: str) -> jax.Array:
    """Integer labels whose shape is the logits' shape without the class axis."""
    labels = jnp.asarray(labels)
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
    return labels


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


def check_class_weights(class_weights: Any, num_classes: int, dtype: Any) -> jax.Array:
    w = jnp.asarray(class_weights)
    if w.shape != (num_classes,):
        raise ValueError(
            f"class_weights must have shape ({num_classes},), one weight per class, got "
            f"class_weights.shape={w.shape}"
        )
    return w.astype(dtype)
