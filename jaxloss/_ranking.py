"""Listwise ranking: the softmax cross-entropy of a list's scores against graded relevance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss._classification import softmax_cross_entropy
from jaxloss._dtypes import compute_dtype
from jaxloss._reduction import Reduction


def ranking_softmax_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Listwise softmax loss (ListNet / the softmax cross-entropy of a ranked list).

    .. math::
        \ell(s, y) = -\sum_i w_i\, y_i \log \frac{e^{s_i}}{\sum_{j \in \text{valid}} e^{s_j}}

    The relevance labels :math:`y_i \ge 0` are graded and used as given (not normalised), so
    a list with more relevant items weighs more; a list with no relevant or no valid item
    has loss 0. Lists of any length share one array by padding, with ``where`` marking the
    valid items. It is ``softmax_cross_entropy(logits, weights * labels, where=where)``.

    Args:
      logits: scores :math:`s` of each item, ``[..., list_size]``.
      labels: graded relevance :math:`y \ge 0` (int or float), the same shape.
      axis: the list axis.
      where: boolean, broadcastable to ``logits``: the valid items. A list with none has loss
        0 and is not counted by ``"mean"``.
      weights: per-item weights :math:`w`, broadcastable to ``logits``.
      reduction: ``"none"`` (per list), ``"sum"``, or ``"mean"`` over the lists with a valid
        item.

    Returns:
      Per-list losses of shape ``logits.shape`` without ``axis`` (float32 or wider), or a
      scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> scores = jnp.array([[2.0, 1.0, 0.0], [1.0, 0.5, 1.5]])
      >>> labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
      >>> where = jnp.array([[True, True, False], [True, True, True]])
      >>> print(jaxloss.ranking_softmax_loss(scores, labels, where=where))
      [0.3133 0.6803]

    References:
      Cao et al., *Learning to Rank: From Pairwise Approach to Listwise Approach*, ICML 2007;
      Bruch et al., *An Analysis of the Softmax Cross Entropy Loss for Learning-to-Rank with
      Binary Relevance*, ICTIR 2019.
    """
    x = _checks.check_float(logits, "logits")
    y = jnp.asarray(labels)
    if not (jnp.issubdtype(y.dtype, jnp.floating) or jnp.issubdtype(y.dtype, jnp.integer)):
        raise TypeError(f"labels must be graded relevance (int or float), got dtype {y.dtype}")
    _checks.check_same_shape(x, y, "logits", "labels")
    if _checks.is_concrete(y) and bool(np.any(np.asarray(y) < 0)):
        raise ValueError("labels must be non-negative relevance grades")
    t = y.astype(compute_dtype(x.dtype)) if jnp.issubdtype(y.dtype, jnp.integer) else y
    t = jnp.where(y < 0, jnp.nan, t)  # a negative grade under jit: NaN, never a number
    if weights is not None:
        w = _checks.check_broadcastable(weights, x.shape, "weights", "logits")
        t = w.astype(compute_dtype(x.dtype)) * t.astype(compute_dtype(x.dtype))
    return softmax_cross_entropy(x, t, axis=axis, where=where, reduction=reduction)
