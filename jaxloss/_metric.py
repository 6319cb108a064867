"""Metric-learning losses: NT-Xent over a batch's cosine similarities, and the triplet margin.

NT-Xent scores each positive pair (i, j) against the negatives of its anchor i:

    ℓ_ij = log(e^{s_ij} + N_i) - s_ij = softplus(log N_i - s_ij),   N_i = Σ_{k: y_k ≠ y_i} e^{s_ik}

log N_i is the softmax core's (shift, log Z) of row i with the positives excluded (-inf).
The [B, B] similarities are never held: a `lax.map` visits blocks of `chunk` rows against
every column, and its body is under `jax.checkpoint`, so the backward pass recomputes one
block at a time instead of keeping every block's similarities. Being plain JAX (the core is a
custom_jvp), it has forward- and reverse-mode derivatives of any order.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss._backend import Rows
from jaxloss._contrastive import _scalar, pair_chunk
from jaxloss._dtypes import compute_dtype
from jaxloss._large_vocab import chunked
from jaxloss._reduction import Reduction, reduce, safe_ratio
from jaxloss._softmax import softmax_parts

_ROWS = Rows(1, None, True)  # rows of similarities, the non-negatives excluded (-inf)


class _Columns(NamedTuple):
    """What every block reads whole."""

    x: jax.Array  # [B, D] embeddings, in the compute dtype (their gradient sums over blocks)
    scale: jax.Array  # [B] 1 / max(‖x‖², eps)^½
    labels: jax.Array  # [B]
    inv_t: jax.Array  # 1 / τ, a scalar


def _similarities(rows: Any, cols: _Columns, dtype: Any) -> jax.Array:
    """s_ij = cos(x_i, x_j) / τ of a block, [c, B]; the matmul reads the input `dtype`."""
    x_c, scale_c, _, _ = rows
    dims = (((1,), (1,)), ((), ()))
    acc = cols.x.dtype
    dot = jax.lax.dot_general(
        x_c.astype(dtype), cols.x.astype(dtype), dims, preferred_element_type=acc
    )
    out: jax.Array = dot * (scale_c * cols.inv_t)[:, None] * cols.scale[None, :]
    return out


def _block(rows: Any, cols: _Columns, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """(Σ ℓ_ij, the number of positive pairs) over a block's anchors."""
    s = _similarities(rows, cols, dtype)
    _, _, labels_c, index_c = rows
    same = labels_c[:, None] == cols.labels[None, :]
    col = jnp.arange(cols.labels.shape[0], dtype=jnp.int32)
    # index -1: a row padding the last block, with no pairs.
    pos = same & (index_c[:, None] != col[None, :]) & (index_c >= 0)[:, None]
    shift, log_z, _, _ = softmax_parts(jnp.where(same, -jnp.inf, s), None, None, _ROWS)
    has_neg = jnp.any(~same, axis=1, keepdims=True)
    # softplus(log N - s) = logaddexp(s, log N) - s without cancelling s. No negatives: log N
    # = -inf and the pair's loss is 0; the core's log Z of that empty row is a finite 0 with
    # a zero gradient, so one `where` suffices.
    pair = jnp.where(pos & has_neg, jax.nn.softplus((shift - s) + log_z), 0)
    return jnp.sum(pair), jnp.sum(pos, dtype=jnp.int32)


def _check_embeddings(embeddings: ArrayLike, labels: ArrayLike) -> tuple[jax.Array, jax.Array]:
    x = _checks.check_float(embeddings, "embeddings")
    if x.ndim != 2:
        raise ValueError(f"embeddings must be [B, D], got embeddings.shape={x.shape}")
    y = jnp.asarray(labels)
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"labels must be an integer array of group ids, got dtype {y.dtype}")
    if y.shape != x.shape[:1]:
        raise ValueError(
            f"labels must be [B], one group id per row of embeddings; got labels.shape="
            f"{y.shape} and embeddings.shape={x.shape}"
        )
    return x, y


def ntxent(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    temperature: ArrayLike = 0.07,
    chunk_size: int | None = None,
) -> jax.Array:
    r"""NT-Xent (SimCLR's normalised temperature-scaled cross-entropy): each positive pair's
    similarity against its anchor's negatives, averaged over the positive pairs.

    .. math::
        \mathcal L = \frac{1}{|P|} \sum_{(i, j) \in P}
            -\log \frac{e^{s_{ij}}}{e^{s_{ij}} + \sum_{k:\, y_k \ne y_i} e^{s_{ik}}},
        \qquad s_{ij} = \frac{\langle x_i, x_j\rangle}
            {\tau \max(\|x_i\|^2, \epsilon)^{1/2} \max(\|x_j\|^2, \epsilon)^{1/2}}

    with :math:`P = \{(i, j): i \ne j,\ y_i = y_j\}` and :math:`\epsilon` the machine epsilon
    of the embeddings' dtype. Minimising it raises each positive pair's cosine similarity
    relative to the anchor's negatives; other positives of the anchor are not in the
    denominator (the pytorch-metric-learning form, as ``optax.ntxent``). An anchor without
    negatives gives its pairs 0; a batch without positive pairs gives 0 (optax: NaN); a zero
    embedding has similarity 0 and a finite gradient. The ``[B, B]`` similarities are never
    held: blocks of ``chunk_size`` rows are computed and discarded, and recomputed in the
    backward pass. Forward- and reverse-mode derivatives of any order. Half-precision
    embeddings give float32 similarities and loss; gradients come back in their dtype.

    Args:
      embeddings: ``[B, D]`` features :math:`x` (normalised inside).
      labels: ``[B]`` integers :math:`y`; rows with equal labels are positive pairs.
      temperature: :math:`\tau > 0`, a differentiable scalar.
      chunk_size: rows per block; by default about :math:`2^{20}` similarities a block.

    Returns:
      A scalar, float32 or wider.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxloss
      >>> x = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
      >>> loss = jaxloss.ntxent(x, jnp.array([0, 0, 1, 1]), temperature=1.0)
      >>> s = x @ x.T  # unit rows: the cosines; each anchor's negatives are the other group
      >>> pairs = [(0, 1, [2, 3]), (1, 0, [2, 3]), (2, 3, [0, 1]), (3, 2, [0, 1])]
      >>> terms = [jnp.logaddexp(s[i, j], jax.nn.logsumexp(s[i, n])) - s[i, j]
      ...          for i, j, n in pairs]
      >>> print(f"{loss:.4f} {sum(terms) / 4:.4f}")
      0.6736 0.6736

    References:
      Chen et al., *A Simple Framework for Contrastive Learning of Visual Representations*,
      2020. Sohn, *Improved Deep Metric Learning with Multi-class N-pair Loss Objective*, 2016.
    """
    x, y = _check_embeddings(embeddings, labels)
    acc = compute_dtype(x.dtype)
    _checks.check_sign(temperature, "temperature", strict=True)
    inv_t = 1 / _scalar(temperature, "temperature", acc)
    n = x.shape[0]
    chunk = pair_chunk(chunk_size, n, n)
    if n == 0:
        return jnp.zeros((), acc)
    wide = x.astype(acc)
    eps = float(jnp.finfo(x.dtype).eps)
    scale = jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(wide), axis=1), eps))
    cols = _Columns(wide, scale, y, inv_t)
    valid = chunked(jnp.ones(n, bool), chunk)
    index = jnp.where(valid, chunked(jnp.arange(n, dtype=jnp.int32), chunk), -1)
    blocks = (chunked(wide, chunk), chunked(scale, chunk), chunked(y, chunk), index)
    body = jax.checkpoint(lambda rows: _block(rows, cols, x.dtype), prevent_cse=False)
    total, pairs = jax.lax.map(body, blocks)
    return safe_ratio(jnp.sum(total), jnp.sum(pairs).astype(acc))


def _check_norm_degree(value: Any) -> None:
    """k >= 1 when concrete: below 1, (Σ |δ|^k)^{1/k} is no norm."""
    if not _checks.is_concrete(value):
        return
    v = np.asarray(value)
    if v.ndim or not np.issubdtype(v.dtype, np.number) or isinstance(value, bool):
        raise ValueError(f"norm_degree must be a scalar number, got {value!r}")
    if not float(v) >= 1:
        raise ValueError(f"norm_degree must be >= 1, got {float(v)}")


def _distance(a: jax.Array, x: jax.Array, axis: int, k: Any, eps: jax.Array) -> jax.Array:
    """(Σ |a - x|^k + eps)^{1/k} along `axis`, in eps's dtype."""
    gap = jnp.abs(a.astype(eps.dtype) - x.astype(eps.dtype))
    total = jnp.sum(gap**k, axis=axis) + eps
    # Double-where: at total = 0 (eps = 0, a = x) t^{1/k} has an infinite slope; the inner
    # where keeps it out of the gradient, the outer gives the distance 0.
    positive = total > 0
    return jnp.where(positive, jnp.where(positive, total, 1) ** (1 / k), 0)


def triplet_margin_loss(
    anchors: ArrayLike,
    positives: ArrayLike,
    negatives: ArrayLike,
    *,
    axis: int = -1,
    norm_degree: ArrayLike = 2,
    margin: ArrayLike = 1.0,
    eps: ArrayLike = 1e-6,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""The triplet margin loss: an anchor's distance to its positive should be smaller than
    to its negative by at least a margin.

    .. math::
        \ell = \max\big(d(a, p) - d(a, n) + m,\ 0\big),\qquad
        d(a, x) = \Big(\sum_c |a_c - x_c|^k + \epsilon\Big)^{1/k}

    with the sum along ``axis``. Minimising it pulls the positive towards the anchor and
    pushes the negative away until it is :math:`m` further. The absolute value makes odd
    :math:`k` a distance (``optax.losses.triplet_margin_loss`` omits it). Gradients are finite at
    zero distance, also with :math:`\epsilon = 0`. Half-precision inputs give float32 losses;
    gradients come back in their dtype.

    Args:
      anchors: embeddings :math:`a`, any shape with the feature axis ``axis``.
      positives: :math:`p`, the shape and dtype of ``anchors``.
      negatives: :math:`n`, the shape and dtype of ``anchors``.
      axis: the feature axis the distance sums over.
      norm_degree: :math:`k \ge 1` (2: Euclidean).
      margin: :math:`m`, a scalar.
      eps: :math:`\epsilon \ge 0`, added inside the root.
      reduction: ``"none"``, ``"mean"`` or ``"sum"`` over the triplets.

    Returns:
      Per-triplet losses, the shape of ``anchors`` without ``axis`` (float32 or wider), or a
      scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> a = jnp.array([[0.0, 0.0], [1.0, 1.0]])
      >>> p = jnp.array([[0.1, 0.1], [1.1, 1.1]])
      >>> n = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> print(jaxloss.triplet_margin_loss(a, p, n, margin=1.0))
      [0.1414 0.1414]

    References:
      Balntas et al., *Learning local feature descriptors with triplets and shallow
      convolutional neural networks*, 2016. Schroff et al., *FaceNet: A Unified Embedding for
      Face Recognition and Clustering*, 2015.
    """
    a = _checks.check_float(anchors, "anchors")
    p = _checks.check_float(positives, "positives")
    n = _checks.check_float(negatives, "negatives")
    for name, x in (("positives", p), ("negatives", n)):
        _checks.check_same_shape(a, x, "anchors", name)
        if x.dtype != a.dtype:
            raise TypeError(f"anchors.dtype={a.dtype} and {name}.dtype={x.dtype} differ; cast one")
    ax = _checks.check_axis(axis, a.ndim, "anchors")
    _check_norm_degree(norm_degree)
    _checks.check_sign(eps, "eps", strict=False)
    acc = compute_dtype(a.dtype)
    # A Python int degree is an integer power (exact, cheap); anything else may be traced.
    static = isinstance(norm_degree, int) and not isinstance(norm_degree, bool)
    k = norm_degree if static else _scalar(norm_degree, "norm_degree", acc)
    e, m = _scalar(eps, "eps", acc), _scalar(margin, "margin", acc)
    loss = _distance(a, p, ax, k, e) - _distance(a, n, ax, k, e) + m
    return reduce(jnp.maximum(loss, 0), reduction)
