"""Shared pieces of every softmax loss: the log-normaliser and integer-label bookkeeping."""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

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
    shift: jax.Array  # the row max, or sampled_shift (no gradient), compute dtype, keepdims
    log_z: jax.Array  # log sum exp(x - shift), keepdims; 0 for an all -inf row shifted by 0
    include: jax.Array | None  # broadcast `where`, or None when every class is included
    has_class: jax.Array | None  # per example (keepdims): at least one class included
    guard: bool = False  # the shift may lie far below the max (see sampled_shift)

    @property
    def dtype(self) -> Any:
        return self.shift.dtype

    @property
    def shifted(self) -> jax.Array:
        return self.x.astype(self.dtype) - self.shift

    def log_probs(self) -> jax.Array:
        return self.shifted - self.log_z

    def terms(self, axis: int, index: Any = None, t: Any = None) -> Terms:
        """softmax_terms of the logits: log Z, and the label's or the weights' parts."""
        return softmax_terms(self.x, self.shift, index, t, axis, self.guard)


def normalize(logits: jax.Array, axis: int, where: Any, index: Any = None) -> Normalized:
    """log_softmax in parts, with `where` excluding classes.

    With the labels' `index` (keepdims) and no `where`, XLA:CPU shifts by sampled_shift in
    place of the row max.
    """
    x = logits
    if where is None and index is not None and x.shape[axis] >= _SAMPLED_MIN_CLASSES:
        shift = jax.lax.platform_dependent(
            x,
            index,
            cpu=functools.partial(sampled_shift, axis=axis),
            default=lambda x, index: _max(x, axis),
        )
        shift = jax.lax.stop_gradient(shift)
        return Normalized(x, shift, log_sum_exp(x, shift, axis, True), None, None, True)
    include = has_class = None
    if where is not None:
        include = _checks.check_broadcastable(where, x.shape, "where", "logits").astype(bool)
        has_class = jnp.any(include, axis, keepdims=True)
        x = jnp.where(include, x, -jnp.inf)
    # The shift cancels in every loss, so it carries no gradient.
    shift = jax.lax.stop_gradient(_max(x, axis))
    if has_class is not None:
        # A row with nothing included is all -inf: shift it by 0, not by -inf (NaN). Without
        # `where` the plain x - max(x) is kept, a pattern XLA:CPU fuses into one pass.
        shift = jnp.where(has_class, shift, 0)
    return Normalized(x, shift, log_sum_exp(x, shift, axis), include, has_class)


_SAMPLE = 128  # classes whose max (with the label's logit) stands in for the row max
_SAMPLED_MIN_CLASSES = 2**12  # narrower rows measured no faster: the pass saved is too short


def _max(x: jax.Array, axis: int) -> jax.Array:
    return jnp.max(x, axis, keepdims=True).astype(compute_dtype(x.dtype))


def sampled_shift(x: jax.Array, index: jax.Array, axis: int) -> jax.Array:
    """The max of the first _SAMPLE logits and the label's: a shift for exp(x - shift) that
    costs no pass over the logits.

    On this side of the row max, Σ exp(x - shift) >= 1. It overflows when the max lies more
    than ~88 (float32) above; the sums then start again from the exact max (`_guarded`). The
    label is in the sample so that a confident right answer, whose loss is a small difference,
    is shifted by its own logit exactly as with the max.
    """
    head = jax.lax.slice_in_dim(x, 0, _SAMPLE, axis=axis)
    shift = jnp.maximum(jnp.max(head, axis, keepdims=True), jnp.take_along_axis(x, index, axis))
    shift = shift.astype(compute_dtype(x.dtype))
    # A sample of -inf (or NaN) logits: shift by 0, and the sums' check decides.
    return jnp.where(jnp.isfinite(shift), shift, 0)


@jax.custom_batching.custom_vmap
def _any(flags: jax.Array) -> jax.Array:
    return jnp.any(flags)


@_any.def_vmap
def _any_vmap(axis_size, in_batched, flags):
    # One answer for the whole batch, so that under vmap the cond stays a branch (a batched
    # predicate would run both sides): taking the exact side for every example is still exact.
    return _any(flags), False


def _guarded(x: jax.Array, shift: jax.Array, axis: int, sums: Any) -> tuple:
    """sums(x, shift) -> (z, *rest) with z = Σ exp(x - shift). When every z lies in
    [1, _exp_limit), returns (log z, z, *rest) of that pass. Otherwise (a row's max far above
    the shift, or NaN, ±inf or an all -inf sample anywhere) the whole batch is summed again from
    the row max m, and log z + (m - shift) keeps log z relative to `shift`."""

    def exact(x, shift, first):
        m = _max(x, axis)
        z, *rest = sums(x, m)
        z = at_least_one(z)
        return (jnp.log(z) + (m - shift), z, *rest)

    def kept(x, shift, first):
        return (jnp.log(first[0]), *first)

    first = sums(x, shift)
    z = first[0]
    bad = _any(~((z >= 1) & (z < _exp_limit(z.dtype))))
    return jax.lax.cond(jax.lax.stop_gradient(bad), exact, kept, x, shift, first)


def _exp_cap(dtype: Any) -> float:
    """The largest exponent taken on the sampled path: exp(cap) is finite with room to add."""
    return math.log(float(jnp.finfo(dtype).max)) - 1


def _exp_limit(dtype: Any) -> float:
    return math.exp(_exp_cap(dtype))


def at_least_one(z: jax.Array) -> jax.Array:
    """z, or 1 where z < 1 (z = 0: an all -inf row). Not max(z, 1): z is exactly 1 when one
    logit dominates, and there max would halve z's derivative (wrong second derivatives)."""
    return z + (z < 1).astype(z.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def log_sum_exp(x: jax.Array, shift: jax.Array, axis: int, guard: bool = False) -> jax.Array:
    """log Σ exp(x - shift) along `axis` (keepdims), in shift's dtype; 0 for an all -inf row
    shifted by 0.

    With `guard`, the shift may lie below the row max by any amount (on XLA:CPU).
    """
    if guard:
        sums = functools.partial(_sum_exp, axis=axis)
        cpu = lambda x, shift: _guarded(x, shift, axis, sums)[0]  # noqa: E731
        plain = functools.partial(_log_sum_exp_from_max, axis=axis)
        return jax.lax.platform_dependent(x, shift, cpu=cpu, default=plain)
    return _log_sum_exp_from_max(x, shift, axis)


def _log_sum_exp_from_max(x: jax.Array, shift: jax.Array, axis: int) -> jax.Array:
    # z >= 1 (the max's own term) except for an all -inf row: log 0 would put -inf into the
    # gradient. A max (not differentiated here: the rule below is), as XLA:CPU fuses it with
    # the reduction; z + (z < 1) would store the exponentials of short rows.
    return jnp.log(jnp.maximum(_sum_exp(x, shift, axis)[0], 1))


def _sum_exp(x: jax.Array, shift: jax.Array, axis: int) -> tuple:
    return (row_sum(_exp_shifted, (x,), (shift,), axis, shift.dtype),)


def _exp_shifted(x: jax.Array, shift: jax.Array) -> jax.Array:
    return jnp.exp(x.astype(shift.dtype) - shift)


def row_sum(
    f: Any, wide: tuple, narrow: tuple, axis: int, dtype: Any, min_width: int = 2**16
) -> jax.Array:
    """Σ f(*wide, *narrow) along `axis` (keepdims) for arrays `wide` that broadcast to one
    [..., C] shape and keepdims arrays `narrow`, without storing f's [..., C] result.

    Other backends fuse the whole sum into one pass. XLA:CPU (chosen at lowering time) stores
    f's result for rows of 2**16 or more, and a float32 copy of half-precision inputs when
    another pass converts them too, as [N, C] arrays. So there, rows of `min_width` or more
    are summed in blocks of about 2**18 elements, whose temporaries stay in cache, and
    half-precision inputs of shorter rows pass through a barrier that keeps this pass's
    conversion its own.
    """
    shape, k = jnp.broadcast_shapes(*(a.shape for a in wide)), len(wide)
    size = math.prod(shape)
    plain = lambda *args: jnp.sum(f(*args), axis, keepdims=True)  # noqa: E731
    if size and axis == len(shape) - 1 and shape[-1] >= min_width:
        cpu = lambda *args: _row_sum_blocks(f, args[:k], args[k:], shape, dtype)  # noqa: E731
    elif size and any(jnp.finfo(a.dtype).bits < jnp.finfo(dtype).bits for a in wide):
        cpu = lambda *args: plain(*jax.lax.optimization_barrier(args[:k]), *args[k:])  # noqa: E731
    else:
        return plain(*wide, *narrow)
    return jax.lax.platform_dependent(*wide, *narrow, cpu=cpu, default=plain)


def _row_sum_blocks(f: Any, wide: tuple, narrow: tuple, shape: tuple, dtype: Any) -> jax.Array:
    rows, width = math.prod(shape[:-1]), shape[-1]
    size = max(1, min(rows, 2**18 // width))

    def flat(a, width):
        if math.prod(a.shape[:-1]) == 1 and a.shape[-1] == width:
            # A row shared by all (class weights): one block's worth, stored once. Broadcast
            # to all rows it would be stored whole; broadcast inside the loop, XLA:CPU
            # allocates afresh every step.
            return jax.lax.optimization_barrier(
                jnp.broadcast_to(a.reshape(1, width), (size, width))
            )
        return jnp.broadcast_to(a, (*shape[:-1], width)).reshape(rows, width)

    wide = tuple(flat(a, width) for a in wide)
    narrow = tuple(flat(a, 1) for a in narrow)

    def block(i, out):
        start = jnp.minimum(i * size, rows - size)  # the last block may overlap its neighbour
        # The barrier makes the block depend on the step, so a float32 conversion of a whole
        # input is not hoisted out of the loop.
        ws, start = jax.lax.optimization_barrier((wide, start))
        args = [
            a if a.shape[0] == size < rows else jax.lax.dynamic_slice_in_dim(a, start, size)
            for a in (*ws, *narrow)
        ]
        return jax.lax.dynamic_update_slice_in_dim(out, _sum_last(f, args), start, 0)

    out = jax.lax.fori_loop(0, -(-rows // size), block, jnp.zeros((rows, 1), dtype))
    return out.reshape(*shape[:-1], 1)


def _sum_last(f: Any, args: list) -> jax.Array:
    return jnp.sum(f(*args), -1, keepdims=True)


@log_sum_exp.defjvp
def _log_sum_exp_jvp(axis, guard, primals, tangents):
    x, shift = primals
    dx, dshift = tangents
    log_z, p = _log_z_and_probs(x, shift, axis, guard)
    return log_z, _d_log_z(p, dx.astype(p.dtype), dshift, axis)


def _d_log_z(p: jax.Array, dx: jax.Array, dshift: jax.Array, axis: int) -> jax.Array:
    return jnp.sum(p * dx, axis, keepdims=True) - jnp.sum(p, axis, keepdims=True) * dshift


def _log_z_and_probs(
    x: jax.Array, shift: jax.Array, axis: int, guard: bool = False
) -> tuple[jax.Array, jax.Array]:
    if x.dtype == shift.dtype:
        # Full precision: XLA stores the exponentials once and the gradient reads them back,
        # one exp per logit.
        def sums(x, shift, cap=None):
            d = x - shift
            e = jnp.exp(d if cap is None else jnp.minimum(d, cap))
            return jnp.sum(e, axis, keepdims=True), e

        def plain(x, shift):
            z, e = sums(x, shift)
            z = at_least_one(z)
            return jnp.log(z), e / z

        def cpu(x, shift):
            # Capped, the exponentials of a pass that is redone stay finite: the redone pass
            # gives them a zero cotangent, and 0 · inf would put NaN into a second reverse-mode
            # derivative. A capped term alone reaches _exp_limit, so the check redoes the pass.
            capped = functools.partial(sums, cap=_exp_cap(shift.dtype))
            log_z, z, e = _guarded(x, shift, axis, capped)
            return log_z, e / z

        if not guard:
            return plain(x, shift)
        return jax.lax.platform_dependent(x, shift, cpu=cpu, default=plain)
    # Half precision: stored float32 exponentials would be twice the input's bytes, so the
    # gradient recomputes them from the half-precision logits, in the one pass that writes
    # it. x - (shift + log z) is not the primal's x - shift, so XLA does not merge the two
    # into one stored float32 array.
    log_z = log_sum_exp(x, shift, axis, guard)
    return log_z, jnp.exp(x.astype(shift.dtype) - (shift + log_z))


def _shifted_pick(x: jax.Array, shift: jax.Array, index: jax.Array, axis: int) -> jax.Array:
    return pick(x, index, axis).astype(shift.dtype) - shift


def cross_sum(
    t: jax.Array, x: jax.Array, shift: jax.Array, log_z: jax.Array, axis: int, barrier: bool
) -> jax.Array:
    """Σ t·(log Z - (x - shift)) = Σ t·(-log p) along `axis` (no keepdims, in shift's dtype).

    A -inf logit counts as the lowest finite value, so 0·(-inf) is 0 without a select:
    XLA:CPU fuses this product into the sum, but stores an [N, C] array for a select inside
    it. Every term is >= 0, so nothing cancels.
    """

    def f(t, x, shift, log_z):
        return t.astype(shift.dtype) * (log_z - _floor_shifted(x, shift, barrier))

    # A forward pass alone is faster in blocks from rows of 2**12 on, a differentiated one in
    # one fused pass below 2**16 (both measured on 2048 x 8192 and 2048 x 32768).
    min_width = 2**16 if barrier else 2**12
    return jnp.squeeze(row_sum(f, (t, x), (shift, log_z), axis, shift.dtype, min_width), axis)


def _floor_shifted(x: jax.Array, shift: jax.Array, barrier: bool = True) -> jax.Array:
    if barrier:
        # In a differentiated program, the barrier keeps x - shift apart from the gradient's
        # exponentials: XLA:CPU would store the shared difference (or the broadcast shift) as
        # an [N, C] array. Without it, a forward pass fuses into one.
        shift = jax.lax.optimization_barrier(shift)
    return jnp.maximum(x.astype(shift.dtype) - shift, jnp.finfo(shift.dtype).min)


class Terms(NamedTuple):
    log_z: jax.Array  # log Σ exp(x - shift), keepdims
    picked: jax.Array | None  # x - shift at the label, keepdims
    cross: jax.Array | None  # Σ t·(-log p), no keepdims


@functools.partial(jax.custom_jvp, nondiff_argnums=(4, 5))
def softmax_terms(
    x: jax.Array,
    shift: jax.Array,
    index: jax.Array | None,
    t: jax.Array | None,
    axis: int,
    guard: bool = False,
) -> Terms:
    """The parts every softmax cross-entropy is made of, with one derivative rule.

    log Z; when `index` is given, the shifted logit of the label; when weights `t`
    (broadcastable to x) are given, Σ t·(-log p). All gradient terms of half-precision inputs
    are summed in float32 and rounded once: rounded apart, p_y - 1 for a confident p_y, or
    p_c·Σt - t_c for p_c ≈ t_c, would lose their digits. The derivative of the label's logit
    is a select, which fuses into the pass that writes the gradient (the transpose of a
    gather is a scatter into a separate [N, C] array of zeros).
    """
    log_z = log_sum_exp(x, shift, axis, guard)
    picked = None if index is None else _shifted_pick(x, shift, index, axis)
    cross = None if t is None else cross_sum(t, x, shift, log_z, axis, barrier=False)
    return Terms(log_z, picked, cross)


def _absent(d: Any) -> bool:
    return d is None or type(d) is SymbolicZero


@functools.partial(softmax_terms.defjvp, symbolic_zeros=True)
def _softmax_terms_jvp(axis, guard, primals, tangents):
    x, shift, index, t = primals
    dx, dshift, _, dt = (None if _absent(d) else d for d in tangents)
    picked = None if index is None else _shifted_pick(x, shift, index, axis)
    d_pick = None if picked is None else jnp.zeros_like(picked)
    if dx is None and dshift is None:
        log_z = log_sum_exp(x, shift, axis, guard)
        d_log_z = jnp.zeros_like(log_z)
    else:
        log_z, p = _log_z_and_probs(x, shift, axis, guard)
        dx = jnp.zeros_like(x, p.dtype) if dx is None else dx.astype(p.dtype)
        dshift = jnp.zeros_like(shift) if dshift is None else dshift
        d_log_z = _d_log_z(p, dx, dshift, axis)
        if index is not None:
            d_pick = _select(dx, index, axis) - dshift
    cross = d_cross = None
    if t is not None:
        cross = cross_sum(t, x, shift, log_z, axis, barrier=True)
        d_cross = jnp.zeros_like(cross)
        if dx is not None:
            # Σ t·(d log Z - (dx - dshift)); Σ t is summed only when differentiating.
            total = target_sum(t, shift.dtype, axis)
            d_shifted_z = jnp.squeeze(d_log_z + dshift, axis)
            d_cross = total * d_shifted_z - jnp.sum(t.astype(dx.dtype) * dx, axis)
        if dt is not None:
            neg_log_p = log_z - _floor_shifted(x, shift)
            d_cross = d_cross + jnp.sum(dt.astype(shift.dtype) * neg_log_p, axis)
    return Terms(log_z, picked, cross), Terms(d_log_z, d_pick, d_cross)


def target_sum(t: jax.Array, dtype: Any, axis: int) -> jax.Array:
    """Σ t along `axis` (no keepdims) in `dtype`, without a stored converted copy of t."""
    if t.dtype == dtype:
        return jnp.sum(t, axis)  # a plain sum stores nothing
    return jnp.squeeze(row_sum(lambda t: t.astype(dtype), (t,), (), axis, dtype), axis)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def pick(x: jax.Array, index: jax.Array, axis: int) -> jax.Array:
    """x at `index` along `axis` (keepdims): take_along_axis with a derivative that selects."""
    return jnp.take_along_axis(x, index, axis=axis)


@pick.defjvp
def _pick_jvp(axis, primals, tangents):
    x, index = primals
    return pick(x, index, axis), _select(tangents[0], index, axis)


def _select(dx: jax.Array, index: jax.Array, axis: int) -> jax.Array:
    """dx at `index` along `axis` (keepdims), as a masked sum: its transpose is a select."""
    hit = jax.lax.broadcasted_iota(index.dtype, dx.shape, axis) == index
    return jnp.sum(jnp.where(hit, dx, 0), axis, keepdims=True)


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
