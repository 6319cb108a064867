"""Shared pieces of every softmax loss: the log-normaliser and integer-label bookkeeping."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._reduction import reduce


def compute_dtype(dtype: Any) -> Any:
    """float32 for half-precision inputs, the input's own dtype when wider."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def is_static_zero(x: Any) -> bool:
    """True for a Python 0, whose term can be skipped; arrays always take the general path."""
    return isinstance(x, (int, float)) and x == 0


class Normalized(NamedTuple):
    """log_softmax(logits) = x - shift - log_z, kept in parts so that no [N, C] array (not even
    a float32 copy of half-precision logits) is shared between the passes XLA fuses."""

    x: jax.Array  # logits in their own dtype; excluded classes at -inf
    shift: jax.Array  # the row max (no gradient) in the compute dtype, keepdims; 0 if all -inf
    log_z: jax.Array  # log sum exp(x - shift), keepdims; 0 for a row that is all -inf
    include: jax.Array | None  # broadcast `where`, or None when every class is included
    has_class: jax.Array | None  # per example (keepdims): at least one class included

    @property
    def dtype(self) -> Any:
        return self.shift.dtype

    @property
    def shifted(self) -> jax.Array:
        return self.x.astype(self.dtype) - self.shift

    def log_probs(self) -> jax.Array:
        return self.shifted - self.log_z

    def pick(self, index: jax.Array, axis: int) -> jax.Array:
        """Shifted logit of each example's label (keepdims)."""
        return jnp.take_along_axis(self.x, index, axis=axis).astype(self.dtype) - self.shift


def normalize(logits: jax.Array, axis: int, where: Any) -> Normalized:
    """log_softmax in parts, with `where` excluding classes."""
    x = logits
    include = has_class = None
    if where is not None:
        include = _checks.check_broadcastable(where, x.shape, "where", "logits").astype(bool)
        has_class = jnp.any(include, axis, keepdims=True)
        x = jnp.where(include, x, -jnp.inf)
    # The shift cancels in every loss, so it carries no gradient.
    m = jax.lax.stop_gradient(jnp.max(x, axis, keepdims=True).astype(compute_dtype(x.dtype)))
    if has_class is not None:
        # A row with nothing included is all -inf: shift it by 0, not by -inf (NaN). Without
        # `where` the plain x - max(x) is kept, a pattern XLA:CPU fuses into one pass.
        m = jnp.where(has_class, m, 0)
    shift = m
    return Normalized(x, shift, log_sum_exp(x, shift, axis), include, has_class)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def log_sum_exp(x: jax.Array, shift: jax.Array, axis: int) -> jax.Array:
    """log Σ exp(x - shift) along `axis` (keepdims), in shift's dtype; 0 for an all -inf row."""
    z = jnp.sum(jnp.exp(x.astype(shift.dtype) - shift), axis, keepdims=True)
    return jnp.log(jnp.where(z > 0, z, 1))  # log 0 would put -inf into the gradient


@log_sum_exp.defjvp
def _log_sum_exp_jvp(axis, primals, tangents):
    x, shift = primals
    dx, dshift = tangents
    shifted = x.astype(shift.dtype) - shift
    if x.dtype == shift.dtype:
        # Full precision: XLA stores the exponentials once and the gradient reads them back,
        # one exp per logit.
        e = jnp.exp(shifted)
        z = jnp.sum(e, axis, keepdims=True)
        z = jnp.where(z > 0, z, 1)
        log_z, p = jnp.log(z), e / z
    else:
        # Half precision: stored float32 exponentials would be twice the input's bytes, so
        # the gradient recomputes them from the half-precision logits.
        log_z = log_sum_exp(x, shift, axis)
        p = jnp.exp(shifted - log_z)
    dx = dx.astype(p.dtype)
    return log_z, jnp.sum(p * dx, axis, keepdims=True) - jnp.sum(p, axis, keepdims=True) * dshift


def class_count(n: Normalized, axis: int) -> jax.Array | int:
    """Number of included classes per example (keepdims), for label smoothing."""
    if n.include is None:
        return n.shifted.shape[axis]
    return jnp.maximum(jnp.sum(n.include, axis, keepdims=True), 1).astype(n.shifted.dtype)


class Labels(NamedTuple):
    index: jax.Array  # labels clipped into [0, C), keepdims along the class axis
    weight: jax.Array | None  # class weight of the label, 0 where ignored; None: all 1
    keep: jax.Array | None  # not ignored; None: nothing is ignored
    valid: jax.Array  # in range or ignored; other examples get a NaN loss


def prepare_labels(
    labels: Any,
    shape: tuple[int, ...],
    axis: int,
    name: str,
    ignore_index: int | None,
    class_weights: Any,
    dtype: Any,
) -> Labels:
    # Trivial weights and masks stay None: constant [N] arrays would only cost compile time.
    labels = _checks.check_labels(labels, shape, axis, name)
    num_classes = shape[axis]
    if ignore_index is not None and not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
    _checks.check_label_range(labels, num_classes, ignore_index)
    labels = jnp.expand_dims(labels, axis)
    index = jnp.clip(labels, 0, num_classes - 1)
    valid = (labels >= 0) & (labels < num_classes)
    keep = None
    if ignore_index is not None:
        keep = labels != ignore_index
        valid = valid | ~keep
    weight = None if keep is None else keep.astype(dtype)
    if class_weights is not None:
        w = _checks.check_class_weights(class_weights, num_classes, dtype)[index]
        weight = w if keep is None else jnp.where(keep, w, 0)
    return Labels(index, weight, keep, valid)


def finish(
    loss: jax.Array, lab: Labels, has_class: jax.Array | None, axis: int
) -> tuple[jax.Array, jax.Array | None]:
    """Zeroes ignored examples and those with no class, marks invalid labels NaN, drops the axis.

    Returns the per-example loss and the per-example weight that "mean" divides by (None when
    every example counts once).
    """
    keep, weight = lab.keep, lab.weight
    if has_class is not None:
        keep = has_class if keep is None else keep & has_class
        weight = has_class.astype(loss.dtype) if weight is None else jnp.where(has_class, weight, 0)
    if keep is not None:
        loss = jnp.where(keep, loss, 0)
    loss = jnp.where(
        lab.valid, loss, jnp.nan
    )  # an out-of-range label under jit: never a silent class
    return jnp.squeeze(loss, axis), None if weight is None else jnp.squeeze(weight, axis)


def reduce_examples(loss: jax.Array, n: Normalized, axis: int, reduction: str) -> jax.Array:
    """Reduces per-example losses; an example with no included class is 0 and not counted."""
    if n.has_class is None:
        return reduce(loss, reduction)
    has = jnp.squeeze(n.has_class, axis)
    return reduce(jnp.where(has, loss, 0), reduction, has)
