"""The softmax kernels in plain jnp: the specification every backend's kernels are tested
against, and what runs on platforms without kernels of their own.

Every function takes logits `x` (excluded classes at -inf) and a static `rows`; sums run over
`rows.axis` (keepdims) and, when the classes are split over devices, over `rows.axis_name`.
The shift is any value that keeps the exponentials finite; the losses do not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jaxloss._dtypes import compute_dtype
from jaxloss._reduction import all_max, all_sum

if TYPE_CHECKING:
    from jaxloss._backend import Rows


def row_max(x: jax.Array, rows: Rows) -> jax.Array:
    """The max over the classes, in the compute dtype. It carries no derivative (the shift
    cancels), and stopped before the pmax, a derivative of the gradient never reaches the
    pmax, which has no differentiation rule."""
    m = jnp.max(jax.lax.stop_gradient(x), rows.axis, keepdims=True)
    return all_max(m.astype(compute_dtype(x.dtype)), rows.axis_name)


def shift(x: jax.Array, index: jax.Array | None, rows: Rows) -> jax.Array:
    """The row max; 0 for a row with no included class (all -inf), whose sums are then 0."""
    m = row_max(x, rows)
    return jnp.where(jnp.isfinite(m), m, 0) if rows.masked else m


def at_least_one(z: jax.Array) -> jax.Array:
    """z, or 1 where z < 1 (z = 0: a row with no included class). Not max(z, 1): z is exactly
    1 when one logit dominates, and there max would halve z's derivative."""
    return z + (z < 1).astype(z.dtype)


def exp_shifted(x: jax.Array, shift: jax.Array) -> jax.Array:
    return jnp.exp(x.astype(shift.dtype) - shift)


def class_sum(
    f: Callable[..., jax.Array],
    wide: tuple[jax.Array, ...],
    narrow: tuple[jax.Array, ...],
    rows: Rows,
    dtype: DTypeLike,
    differentiated: bool,
) -> jax.Array:
    """Σ_c f(*wide, *narrow) for `wide` arrays broadcastable to the logits and keepdims
    `narrow` ones."""
    return all_sum(jnp.sum(f(*wide, *narrow), rows.axis, keepdims=True), rows.axis_name)


def sum_exp(x: jax.Array, shift: jax.Array, rows: Rows) -> jax.Array:
    """Σ exp(x - shift): at least 1 (the max's own term) unless no class is included."""
    return class_sum(exp_shifted, (x,), (shift,), rows, shift.dtype, True)


def log_z(x: jax.Array, shift: jax.Array, index: jax.Array | None, rows: Rows) -> jax.Array:
    """log Σ exp(x - shift); 0 for a row with no included class."""
    return jnp.log(at_least_one(sum_exp(x, shift, rows)))


def log_z_and_probs(
    x: jax.Array, shift: jax.Array, index: jax.Array | None, rows: Rows
) -> tuple[jax.Array, jax.Array]:
    """log Z and p = softmax(x), as the derivative rule needs them."""
    lz = log_z(x, shift, index, rows)
    return lz, jnp.exp(x.astype(shift.dtype) - (shift + lz))


def floor_shifted(x: jax.Array, shift: jax.Array, differentiated: bool) -> jax.Array:
    """x - shift, with -inf as the lowest finite value: 0·(-inf) becomes 0 without a select."""
    return jnp.maximum(x.astype(shift.dtype) - shift, jnp.finfo(shift.dtype).min)
