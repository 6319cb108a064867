"""The softmax kernels for XLA:CPU: the same functions as `_reference`, arranged so that
XLA:CPU makes as few passes over the logits as it can and stores no [N, C] temporary.

Why each arrangement exists, and what it was measured to save, is in the documentation's
performance notes (docs/guides/performance.md).

- Integer labels on rows of `SAMPLED_MIN_CLASSES` or more (no mask, one device): the shift is
  the max of the first `SAMPLE` logits and the label's, not the row max (no pass to find the
  max). Σ exp(x - shift) >= 1 then; when any row's sum leaves [1, exp_limit), the whole batch
  is summed again from the row max (`_guarded`), so the result is the reference's.
- Row sums of `BLOCK_MIN_WIDTH` classes or more run in blocks of about `BLOCK` elements;
  half-precision inputs of shorter rows pass through a barrier of their own.
- Full-precision gradients reuse the stored exponentials; half-precision ones recompute them
  from the half-precision logits.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jaxloss import _reference
from jaxloss._dtypes import compute_dtype
from jaxloss._reduction import all_sum
from jaxloss._reference import at_least_one, exp_shifted

if TYPE_CHECKING:
    from jaxloss._backend import Rows

SAMPLE = 128  # classes whose max (with the label's logit) stands in for the row max
SAMPLED_MIN_CLASSES = 2**12
BLOCK = 2**18  # elements per block of a blocked row sum
BLOCK_MIN_WIDTH = 2**16
FORWARD_BLOCK_MIN_WIDTH = 2**12  # for the cross term of a pass that is not differentiated


def _samples(x: jax.Array, index: jax.Array | None, rows: Rows) -> bool:
    return (
        index is not None
        and not rows.masked
        and rows.axis_name is None
        and x.shape[rows.axis] >= SAMPLED_MIN_CLASSES
    )


def sampled_shift(x: jax.Array, index: jax.Array, axis: int) -> jax.Array:
    """The max of the first SAMPLE logits and the label's (keepdims, compute dtype).

    The label is in the sample so that a confident right answer, whose loss is a small
    difference, is shifted by its own logit exactly as by the max.
    """
    head = jax.lax.slice_in_dim(x, 0, SAMPLE, axis=axis)
    s = jnp.maximum(jnp.max(head, axis, keepdims=True), jnp.take_along_axis(x, index, axis))
    s = s.astype(compute_dtype(x.dtype))
    # A sample of -inf (or NaN) logits: shift by 0, and the sums' check decides.
    return jnp.where(jnp.isfinite(s), s, 0)


def shift(x: jax.Array, index: jax.Array | None, rows: Rows) -> jax.Array:
    if index is not None and _samples(x, index, rows):
        return sampled_shift(x, index, rows.axis)
    return _reference.shift(x, index, rows)


@jax.custom_batching.custom_vmap
def _any(flags: jax.Array) -> jax.Array:
    return jnp.any(flags)


@_any.def_vmap
def _any_vmap(axis_size: int, in_batched: list[bool], flags: jax.Array) -> tuple[jax.Array, bool]:
    # One answer for the whole batch, so that under vmap the cond stays a branch (a batched
    # predicate would run both sides): taking the exact side for every example is still exact.
    return _any(flags), False


def exp_cap(dtype: DTypeLike) -> float:
    """The largest exponent taken on the sampled path: exp(cap) is finite with room to add."""
    return math.log(float(jnp.finfo(dtype).max)) - 1


def exp_limit(dtype: DTypeLike) -> float:
    return math.exp(exp_cap(dtype))


Sums = Callable[[jax.Array, jax.Array], tuple[jax.Array, ...]]


def guarded(x: jax.Array, shift: jax.Array, axis: int, sums: Sums) -> tuple[jax.Array, ...]:
    """sums(x, shift) -> (z, *rest) with z = Σ exp(x - shift). When every z lies in
    [1, exp_limit), returns (log z, z, *rest) of that pass. Otherwise (a row's max far above
    the shift, or NaN, ±inf or an all -inf sample anywhere) the whole batch is summed again
    from the row max m, and log z + (m - shift) keeps log z relative to `shift`."""

    def exact(x: jax.Array, shift: jax.Array, first: tuple[jax.Array, ...]) -> Any:
        m = jnp.max(x, axis, keepdims=True).astype(shift.dtype)
        z, *rest = sums(x, m)
        z = at_least_one(z)
        return (jnp.log(z) + (m - shift), z, *rest)

    def kept(x: jax.Array, shift: jax.Array, first: tuple[jax.Array, ...]) -> Any:
        return (jnp.log(first[0]), *first)

    first = sums(x, shift)
    z = first[0]
    bad = _any(~((z >= 1) & (z < exp_limit(z.dtype))))
    return jax.lax.cond(jax.lax.stop_gradient(bad), exact, kept, x, shift, first)  # type: ignore[no-any-return]


def _row_sum_blocks(
    f: Callable[..., jax.Array],
    wide: tuple[jax.Array, ...],
    narrow: tuple[jax.Array, ...],
    shape: tuple[int, ...],
    dtype: DTypeLike,
) -> jax.Array:
    rows, width = math.prod(shape[:-1]), shape[-1]
    size = max(1, min(rows, BLOCK // width))

    def flat(a: jax.Array, width: int) -> jax.Array:
        if math.prod(a.shape[:-1]) == 1 and a.shape[-1] == width:
            # A row shared by all (class weights) is stored once, one block's worth: broadcast
            # to all rows it would be stored whole, and broadcast inside the loop it would be
            # allocated afresh at every step.
            shared: jax.Array = jax.lax.optimization_barrier(
                jnp.broadcast_to(a.reshape(1, width), (size, width))
            )
            return shared
        return jnp.broadcast_to(a, (*shape[:-1], width)).reshape(rows, width)

    wides = tuple(flat(a, width) for a in wide)
    narrows = tuple(flat(a, 1) for a in narrow)

    def block(i: jax.Array, out: jax.Array) -> jax.Array:
        start = jnp.minimum(i * size, rows - size)  # the last block may overlap its neighbour
        # The barrier makes the block depend on the step, so that a float32 conversion of a
        # whole input is not hoisted out of the loop.
        ws, start = jax.lax.optimization_barrier((wides, start))
        args = [
            a if a.shape[0] == size < rows else jax.lax.dynamic_slice_in_dim(a, start, size)
            for a in (*ws, *narrows)
        ]
        part = jnp.sum(f(*args), -1, keepdims=True)
        return jax.lax.dynamic_update_slice_in_dim(out, part, start, 0)

    out: jax.Array = jax.lax.fori_loop(0, -(-rows // size), block, jnp.zeros((rows, 1), dtype))
    return out.reshape(*shape[:-1], 1)


def _row_sum(
    f: Callable[..., jax.Array],
    wide: tuple[jax.Array, ...],
    narrow: tuple[jax.Array, ...],
    rows: Rows,
    dtype: DTypeLike,
    min_width: int,
) -> jax.Array:
    """Σ f(*wide, *narrow) along the class axis (keepdims), without storing f's result:
    in blocks for rows of `min_width` or more (class axis last), behind a barrier for
    half-precision inputs of shorter rows, plain otherwise."""
    shape = jnp.broadcast_shapes(*(a.shape for a in wide))
    size, axis = math.prod(shape), rows.axis

    def plain(*args: jax.Array) -> jax.Array:
        return jnp.sum(f(*args), axis, keepdims=True)

    if size and axis == len(shape) - 1 and shape[-1] >= min_width:
        local = _row_sum_blocks(f, wide, narrow, shape, dtype)
    elif size and any(jnp.finfo(a.dtype).bits < jnp.finfo(dtype).bits for a in wide):
        local = plain(*jax.lax.optimization_barrier(wide), *narrow)
    else:
        local = plain(*wide, *narrow)
    return all_sum(local, rows.axis_name)


def log_z(x: jax.Array, shift: jax.Array, index: jax.Array | None, rows: Rows) -> jax.Array:
    def sums(x: jax.Array, shift: jax.Array) -> tuple[jax.Array, ...]:
        return (_row_sum(exp_shifted, (x,), (shift,), rows, shift.dtype, BLOCK_MIN_WIDTH),)

    if _samples(x, index, rows):
        return guarded(x, shift, rows.axis, sums)[0]
    # max (not at_least_one: this is not differentiated) fuses with the reduction.
    return jnp.log(jnp.maximum(sums(x, shift)[0], 1))


def log_z_and_probs(
    x: jax.Array, shift: jax.Array, index: jax.Array | None, rows: Rows
) -> tuple[jax.Array, jax.Array]:
    if x.dtype != shift.dtype:
        # Half precision: the gradient recomputes the exponentials from the half-precision
        # logits in the pass that writes it. x - (shift + log z) is not the primal's x - shift,
        # so the two are not merged into one stored float32 array.
        lz = log_z(x, shift, index, rows)
        return lz, jnp.exp(x.astype(shift.dtype) - (shift + lz))
    axis = rows.axis

    def sums(x: jax.Array, shift: jax.Array, cap: float | None = None) -> tuple[jax.Array, ...]:
        d = x - shift
        e = jnp.exp(d if cap is None else jnp.minimum(d, cap))
        return all_sum(jnp.sum(e, axis, keepdims=True), rows.axis_name), e

    if _samples(x, index, rows):
        # Capped, the exponentials of a pass that is redone stay finite: the redone pass gives
        # them a zero cotangent, and 0·inf would put NaN into a second reverse-mode
        # derivative. A capped term alone reaches exp_limit, so the check redoes the pass.
        lz, z, e = guarded(x, shift, axis, functools.partial(sums, cap=exp_cap(shift.dtype)))
        return lz, e / z
    # The exponentials are stored once and the gradient reads them back: one exp per logit.
    z, e = sums(x, shift)
    z = at_least_one(z)
    return jnp.log(z), e / z


def class_sum(
    f: Callable[..., jax.Array],
    wide: tuple[jax.Array, ...],
    narrow: tuple[jax.Array, ...],
    rows: Rows,
    dtype: DTypeLike,
    differentiated: bool,
) -> jax.Array:
    min_width = BLOCK_MIN_WIDTH if differentiated else FORWARD_BLOCK_MIN_WIDTH
    return _row_sum(f, wide, narrow, rows, dtype, min_width)


def floor_shifted(x: jax.Array, shift: jax.Array, differentiated: bool) -> jax.Array:
    if differentiated:
        # The barrier keeps x - shift apart from the gradient's exponentials: shared, the
        # difference (or the broadcast shift) would be stored as an [N, C] array.
        shift = jax.lax.optimization_barrier(shift)
    return _reference.floor_shifted(x, shift, differentiated)
