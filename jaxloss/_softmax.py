"""The softmax core: the parts every softmax loss is made of, with one derivative rule.

For logits x (excluded classes at -inf), a shift s (the row max, or any value that keeps the
exponentials finite), p = softmax(x) and log Z = log Σ_c exp(x_c - s):

    log_z  = log Σ_c exp(x_c - s)                 d log_z  = Σ_c p_c dx_c
    picked = x_y - s                              d picked = dx_y
    cross  = Σ_c t_c (log_z - (x_c - s))          d cross  = (Σ_c t_c) d log_z - Σ_c t_c dx_c
           = Σ_c t_c (-log p_c)                              + Σ_c dt_c (-log p_c)

Every loss is a difference in which s cancels (log_z - picked = -log p_y), or log Z itself
(log_z + s), so s carries no derivative. The kernels (`_reference`, `_cpu`) compute the sums;
`_backend.dispatch` chooses them. Classes split over devices are summed over `axis_name`.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from jax.typing import ArrayLike

from jaxloss import _backend, _checks
from jaxloss._backend import Rows
from jaxloss._dtypes import compute_dtype
from jaxloss._labels import shard_offset
from jaxloss._reduction import AxisName, Reduction, all_sum, reduce


class Parts(NamedTuple):
    shift: jax.Array  # s, keepdims, compute dtype; no derivative
    log_z: jax.Array  # log Σ exp(x - s), keepdims
    picked: jax.Array | None  # x_y - s, keepdims (with labels)
    cross: jax.Array | None  # Σ t·(-log p), keepdims (with weights t)


def _class_sum(a: jax.Array, rows: Rows) -> jax.Array:
    return all_sum(jnp.sum(a, rows.axis, keepdims=True), rows.axis_name)


def _target_sum(t: jax.Array, dtype: Any, kernels: ModuleType, rows: Rows) -> jax.Array:
    """Σ t in `dtype`, without a stored converted copy of half-precision t."""
    if t.dtype == dtype:
        return _class_sum(t, rows)
    total: jax.Array = kernels.class_sum(lambda t: t.astype(dtype), (t,), (), rows, dtype, True)
    return total


def _label_logit(x: jax.Array, index: jax.Array, rows: Rows) -> jax.Array:
    """x at the global label `index` (keepdims): a gather, summed over the class shards."""
    if rows.axis_name is None:
        return jnp.take_along_axis(x, index, axis=rows.axis)
    width = x.shape[rows.axis]
    local = index - shard_offset(width, rows.axis_name, index.dtype)
    inside = (local >= 0) & (local < width)
    at = jnp.take_along_axis(x, jnp.clip(local, 0, width - 1), axis=rows.axis)
    return all_sum(jnp.where(inside, at, 0), rows.axis_name)


def _label_select(dx: jax.Array, index: jax.Array, rows: Rows) -> jax.Array:
    """dx at the global label `index` (keepdims), as a masked sum: its transpose is a select,
    which fuses into the pass that writes the gradient (a gather's is a scatter into zeros)."""
    local = index - shard_offset(dx.shape[rows.axis], rows.axis_name, index.dtype)
    hit = jax.lax.broadcasted_iota(local.dtype, dx.shape, rows.axis) == local
    return _class_sum(jnp.where(hit, dx, 0), rows)


def _assemble(
    x: jax.Array,
    index: jax.Array | None,
    t: jax.Array | None,
    s: jax.Array,
    log_z: jax.Array,
    rows: Rows,
    kernels: ModuleType,
    differentiated: bool,
) -> Parts:
    picked = None if index is None else _label_logit(x, index, rows).astype(s.dtype) - s
    cross = None
    if t is not None:

        def f(t: jax.Array, x: jax.Array, s: jax.Array, log_z: jax.Array) -> jax.Array:
            neg_log_p: jax.Array = log_z - kernels.floor_shifted(x, s, differentiated)
            return t.astype(s.dtype) * neg_log_p

        cross = kernels.class_sum(f, (t, x), (s, log_z), rows, s.dtype, differentiated)
    return Parts(s, log_z, picked, cross)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def _parts(x: Any, index: Any, t: Any, rows: Rows, kernels: ModuleType) -> Parts:
    s = kernels.shift(x, index, rows)
    return _assemble(x, index, t, s, kernels.log_z(x, s, index, rows), rows, kernels, False)


def _absent(d: Any) -> bool:
    return d is None or type(d) is SymbolicZero


@functools.partial(_parts.defjvp, symbolic_zeros=True)
def _parts_jvp(
    rows: Rows, kernels: ModuleType, primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[Parts, Parts]:
    x, index, t = primals
    dx, _, dt = (None if _absent(d) else d for d in tangents)
    s = kernels.shift(x, index, rows)
    if dx is None:
        log_z = kernels.log_z(x, s, index, rows)
        d_log_z = jnp.zeros_like(log_z)
    else:
        log_z, p = kernels.log_z_and_probs(x, s, index, rows)
        dx = dx.astype(s.dtype)
        d_log_z = _class_sum(p * dx, rows)
    out = _assemble(x, index, t, s, log_z, rows, kernels, True)
    d_picked = d_cross = None
    if out.picked is not None:
        d_picked = jnp.zeros_like(out.picked) if dx is None else _label_select(dx, index, rows)
    if out.cross is not None:
        d_cross = jnp.zeros_like(out.cross)
        if dx is not None:
            total = _target_sum(t, s.dtype, kernels, rows)
            d_cross = total * d_log_z - _class_sum(t.astype(s.dtype) * dx, rows)
        if dt is not None:
            neg_log_p = log_z - kernels.floor_shifted(x, s, True)
            d_cross = d_cross + _class_sum(dt.astype(s.dtype) * neg_log_p, rows)
    return out, Parts(jnp.zeros_like(s), d_log_z, d_picked, d_cross)


def softmax_parts(x: jax.Array, index: jax.Array | None, t: jax.Array | None, rows: Rows) -> Parts:
    """log Z; with global labels `index` (keepdims), x_y - s; with weights `t`
    (broadcastable to x), Σ t·(-log p). In the compute dtype, summed over devices."""

    def parts(kernels: ModuleType, x: jax.Array, index: Any, t: Any) -> Parts:
        return _parts(x, index, t, rows, kernels)

    return _backend.dispatch(parts, x, index, t)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def pick(x: jax.Array, index: jax.Array, axis: int) -> jax.Array:
    """x at `index` along `axis` (keepdims): take_along_axis with a derivative that selects."""
    return jnp.take_along_axis(x, index, axis=axis)


@pick.defjvp
def _pick_jvp(
    axis: int, primals: tuple[jax.Array, jax.Array], tangents: tuple[jax.Array, Any]
) -> tuple[jax.Array, jax.Array]:
    x, index = primals
    return pick(x, index, axis), _label_select(tangents[0], index, Rows(axis, None, False))


class Masked(NamedTuple):
    """Logits with the excluded classes at -inf, and how many classes each row includes."""

    x: jax.Array
    include: jax.Array | None  # `where`, of the logits' rank, broadcastable to them; None: all
    included: jax.Array | None  # included classes per row (keepdims, summed over devices)
    rows: Rows

    @property
    def has_class(self) -> jax.Array | None:
        return None if self.included is None else self.included > 0

    def class_count(self, dtype: Any) -> jax.Array | int:
        """C, the number of included classes (at least 1), for label smoothing."""
        if self.included is None:
            width = self.x.shape[self.rows.axis]
            name = self.rows.axis_name
            return width if name is None else width * jax.lax.axis_size(name)
        return jnp.maximum(self.included, 1).astype(dtype)


def mask_classes(
    logits: jax.Array, axis: int, where: ArrayLike | None, axis_name: AxisName = None
) -> Masked:
    """`logits` with the classes that `where` excludes at -inf."""
    if where is None:
        return Masked(logits, None, None, Rows(axis, axis_name, False))
    include = _checks.check_broadcastable(where, logits.shape, "where", "logits", expand=False)
    # Broadcast along the class axis only: a row mask [C] (or the device's slice) stays a row.
    along = list(include.shape)
    along[axis] = logits.shape[axis]
    include = jnp.broadcast_to(include.astype(bool), tuple(along))
    count = all_sum(jnp.sum(include, axis, keepdims=True, dtype=jnp.int32), axis_name)
    x = jnp.where(include, logits, -jnp.inf)
    return Masked(x, include, count, Rows(axis, axis_name, True))


def log_softmax(m: Masked) -> jax.Array:
    """log p = x - s - log Z, in the compute dtype."""
    # One conversion ahead of both uses of x: the two terms of its gradient (g and -p Σg)
    # nearly cancel, so they must meet in the compute dtype and be rounded once, not each.
    # The output is a compute-dtype array of x's shape anyway, so this stores nothing more.
    x = m.x.astype(compute_dtype(m.x.dtype))
    if x.shape[m.rows.axis] == 0:  # no class: nothing to normalise
        return x
    s, log_z, _, _ = softmax_parts(x, None, None, m.rows)
    return x - s - log_z


def reduce_examples(loss: jax.Array, m: Masked, reduction: Reduction) -> jax.Array:
    """Reduces keepdims per-example losses; an example with no included class is 0 and not
    counted."""
    axis = m.rows.axis
    if m.has_class is None:
        return reduce(jnp.squeeze(loss, axis), reduction)
    has = jnp.broadcast_to(m.has_class, loss.shape)
    return reduce(jnp.squeeze(jnp.where(has, loss, 0), axis), reduction, jnp.squeeze(has, axis))


def empty_classes(logits: jax.Array, axis: int, reduction: Reduction) -> jax.Array:
    """The loss of rows with no class at all: a sum over nothing, 0."""
    shape = logits.shape[:axis] + logits.shape[axis + 1 :]
    return reduce(jnp.zeros(shape, compute_dtype(logits.dtype)), reduction)
