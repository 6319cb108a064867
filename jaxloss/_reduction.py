"""The one place that reduces: none / mean / sum, weighted, across devices, and safe when
nothing is selected."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss._checks import check_broadcastable, check_reduction

Reduction = Literal["none", "mean", "sum"]
AxisName = Hashable | tuple[Hashable, ...] | None


def all_sum(x: jax.Array, axis_name: AxisName) -> jax.Array:
    """Sums over the mesh axis `axis_name` (inside shard_map), or returns `x` without one."""
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def all_max(x: jax.Array, axis_name: AxisName) -> jax.Array:
    return x if axis_name is None else jax.lax.pmax(x, axis_name)


def _vma(x: Any) -> frozenset[Any]:
    """The shard_map mesh axes along which `x` varies (none outside shard_map)."""
    aval = jax.typeof(x)
    manual = getattr(aval, "manual_axis_type", None)  # jax >= 0.10; `vma` before
    return frozenset(manual.varying if manual is not None else getattr(aval, "vma", ()))


def varying(x: jax.Array, *like: Any) -> jax.Array:
    """Marks `x` as varying along every mesh axis that any of `like` varies along."""
    axes = tuple(sorted(frozenset().union(*map(_vma, like)) - _vma(x), key=str))
    return jax.lax.pcast(x, axes, to="varying") if axes else x


def sum_to(grad: jax.Array, primal: jax.Array) -> jax.Array:
    """The cotangent of a value replicated along a mesh axis is the sum over that axis."""
    axes = tuple(sorted(_vma(grad) - _vma(primal), key=str))
    return jax.lax.psum(grad, axes) if axes else grad


def replicated_axes(x: jax.Array, axis_name: AxisName) -> tuple[Any, ...]:
    """The mesh axes of `axis_name` along which `x` is known to be replicated (shard_map
    tracks this with its default check_vma=True; without it, nothing is known: ())."""
    names = axis_name if isinstance(axis_name, tuple) else (axis_name,)
    tracked = _vma(jax.lax.axis_index(axis_name))
    return tuple(n for n in names if n in tracked and n not in _vma(x))


def safe_ratio(num: jax.Array, den: jax.Array) -> jax.Array:
    """num / den, and 0 with a zero gradient where den is 0."""
    # Double-where: the inner keeps 0/0 out of the gradient, the outer gives 0 when empty.
    nonzero = den != 0
    return jnp.where(nonzero, num / jnp.where(nonzero, den, 1), 0)


def mean(
    values: ArrayLike, *, where: ArrayLike | None = None, weights: ArrayLike | None = None
) -> jax.Array:
    r"""Weighted mean over the selected entries; 0 when nothing is selected.

    .. math::
        \bar v = \frac{\sum_i m_i w_i v_i}{\sum_i m_i w_i}

    where :math:`m_i` is 1 on the entries that ``where`` selects and :math:`w_i` the weights.
    When the denominator is zero the result is 0, with zero gradient (not NaN). Excluded
    entries never reach the result, so a NaN or ``inf`` there is harmless.

    Args:
      values: array of per-example (or per-element) values.
      where: optional boolean array broadcastable to ``values``; entries to include.
      weights: optional array broadcastable to ``values``; non-negative weights.

    Returns:
      A scalar in the dtype of ``values`` (float32 or wider).

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> v = jnp.array([1.0, 2.0, 100.0])
      >>> print(jaxloss.mean(v, where=jnp.array([True, True, False])))
      1.5
      >>> print(jaxloss.mean(v, where=jnp.zeros(3, bool)))
      0.0
    """
    values = jnp.asarray(values)
    w = None if weights is None else check_broadcastable(weights, values.shape, "weights", "values")
    if where is not None:
        include = check_broadcastable(where, values.shape, "where", "values")
        values = jnp.where(include, values, 0)
        w = include.astype(values.dtype) if w is None else jnp.where(include, w, 0)
    if w is None:
        return jnp.mean(values)
    return reduce(w.astype(values.dtype) * values, "mean", w)


def reduce_elements(
    loss: jax.Array, where: ArrayLike | None, reduction: Reduction, to: str = "logits"
) -> jax.Array:
    """Reduces elementwise losses over the elements that `where` includes (broadcastable to
    the output `to`); excluded elements are 0 and not counted by "mean"."""
    if where is None:
        return reduce(loss, reduction)
    include = check_broadcastable(where, loss.shape, "where", to)
    return reduce(jnp.where(include, loss, 0), reduction, include)


def reduce(
    loss: jax.Array,
    reduction: Reduction,
    weight: jax.Array | None = None,
    axis_name: AxisName = None,
) -> jax.Array:
    """Applies `reduction` to per-example losses that already carry their weights.

    ``"mean"`` divides the sum by ``sum(weight)`` (by the number of entries when ``weight`` is
    None) and gives 0 when that is zero. With `axis_name` (the mesh axis a batch is split
    over, inside shard_map) both sums run over the global batch.
    """
    check_reduction(reduction)
    if reduction == "none":
        return loss
    total = all_sum(jnp.sum(loss), axis_name)
    if reduction == "sum":
        return total
    if weight is None:
        count = all_sum(jnp.asarray(loss.size, loss.dtype), axis_name)
    else:
        count = all_sum(jnp.sum(weight.astype(loss.dtype)), axis_name)
    return safe_ratio(total, count)
