"""The one place that reduces: none / mean / sum, weighted and safe when nothing is selected."""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp

from jaxloss._checks import check_broadcastable, check_reduction

Reduction = Literal["none", "mean", "sum"]


def _safe_ratio(num: jax.Array, den: jax.Array) -> jax.Array:
    # Double-where: the inner keeps 0/0 out of the gradient, the outer gives 0 when empty.
    nonzero = den != 0
    return jnp.where(nonzero, num / jnp.where(nonzero, den, 1), 0)


def mean(values: Any, *, where: Any = None, weights: Any = None) -> jax.Array:
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
        where = check_broadcastable(where, values.shape, "where", "values")
        values = jnp.where(where, values, 0)
        w = where.astype(values.dtype) if w is None else jnp.where(where, w, 0)
    if w is None:
        return jnp.mean(values)
    w = w.astype(values.dtype)
    return _safe_ratio(jnp.sum(w * values), jnp.sum(w))


def reduce(loss: jax.Array, reduction: Reduction, weight: jax.Array | None = None) -> jax.Array:
    """Applies `reduction` to per-example losses that already carry their weights.

    ``"mean"`` divides the sum by ``sum(weight)`` (by the number of entries when ``weight`` is
    None) and gives 0 when that is zero, as for ``mean``.
    """
    check_reduction(reduction)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    if weight is None:
        return jnp.mean(loss)
    return _safe_ratio(jnp.sum(loss), jnp.sum(weight.astype(loss.dtype)))
