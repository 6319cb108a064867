"""Vocabulary-parallel cross-entropy for `jax.shard_map`: each device holds a slice of the classes.

Inside ``shard_map``, the logits (or the output projection) are split over the vocabulary on
the mesh axis ``axis_name``. The global max, sum of exponentials and label logit are formed
with ``pmax`` / ``psum`` over that axis (as Megatron-LM does), so no device ever holds the
full vocabulary. Labels are global class indices, the same on every vocabulary shard. When
the batch is also split, over ``batch_axis_name``, ``"mean"`` and ``"sum"`` reduce over the
whole global batch.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._large_vocab import (
    _Config,
    batch_sum,
    chunk_loss,
    flat_targets,
    fused_cross_entropy,
)
from jaxloss._reduction import Reduction
from jaxloss._softmax import compute_dtype, is_static_zero


def vocab_parallel_softmax_cross_entropy(
    logits: Any,
    labels: Any,
    *,
    axis_name: Any,
    ignore_index: int | None = None,
    label_smoothing: Any = 0.0,
    z_loss: Any = 0.0,
    reduction: Reduction = "none",
    batch_axis_name: Any = None,
) -> jax.Array:
    r"""Integer-label softmax cross-entropy of logits split over the vocabulary (``shard_map``).

    .. math::
        \ell = (1-\varepsilon)(-\log p_y) + \frac{\varepsilon}{V}\sum_c (-\log p_c)
               + \zeta (\log Z)^2,

        \log Z = \log \textstyle\sum_{\text{shards}} \sum_{c \in \text{shard}} e^{x_c}

    Equal, on every shard, to ``softmax_cross_entropy_with_integer_labels`` of the gathered
    logits, with the same ``ignore_index``, smoothing, z-loss and reductions (``"mean"`` over
    the non-ignored examples of the global batch).

    Args:
      logits: this device's ``[..., V / k]`` slice of the logits (classes last); shard ``i``
        of ``k`` along ``axis_name`` holds classes ``[i V/k, (i+1) V/k)``.
      labels: global integer labels, ``logits.shape[:-1]``.
      axis_name: the mesh axis (or tuple of axes) the vocabulary is split over.
      ignore_index: a label value whose examples contribute 0 and no weight.
      label_smoothing: :math:`\varepsilon \in [0, 1]`.
      z_loss: :math:`\zeta \ge 0`.
      reduction: ``"none"``, ``"sum"`` or ``"mean"``.
      batch_axis_name: the mesh axis the batch is split over, if any, for ``"mean"``/``"sum"``.

    Returns:
      Per-example losses of shape ``labels.shape`` (float32 or wider, the same on every vocabulary
      shard), or a scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jax.sharding import PartitionSpec as P
      >>> import jaxloss
      >>> mesh = jax.sharding.Mesh(jax.devices()[:1], ("vocab",))
      >>> logits = jnp.array([[2.0, 0.0, -1.0, 0.5]])
      >>> f = jax.jit(jax.shard_map(
      ...     lambda x, y: jaxloss.vocab_parallel_softmax_cross_entropy(
      ...         x, y, axis_name="vocab"),
      ...     mesh=mesh, in_specs=(P(None, "vocab"), P()), out_specs=P()))
      >>> print(f(logits, jnp.array([0])))
      [0.3423]
    """
    logits = _checks.check_float(logits, "logits")
    _checks.check_unit_interval(label_smoothing, "label_smoothing")
    _checks.check_reduction(reduction)
    vocab = logits.shape[-1] * jax.lax.axis_size(axis_name)
    labels = _checks.check_labels(labels, logits.shape, logits.ndim - 1, "logits")
    _checks.check_label_range(labels, vocab, ignore_index)
    cfg = _Config(
        0, vocab, not is_static_zero(label_smoothing), not is_static_zero(z_loss), axis_name
    )
    acc = compute_dtype(logits.dtype)
    y, keep, valid, eps, zeta = flat_targets(
        labels, vocab, ignore_index, label_smoothing, z_loss, acc
    )
    x = logits.reshape(-1, logits.shape[-1]).astype(acc)
    loss, *_ = chunk_loss(x, y, eps, zeta, cfg)
    loss = jnp.where(valid, jnp.where(keep, loss, 0), jnp.nan)
    if reduction == "none":
        return loss.reshape(labels.shape)
    total = batch_sum(jnp.sum(loss), batch_axis_name)
    if reduction == "sum":
        return total
    count = batch_sum(jnp.sum(keep.astype(acc)), batch_axis_name)
    return jnp.where(count > 0, total / jnp.where(count > 0, count, 1), 0)


def vocab_parallel_linear_softmax_cross_entropy(
    hidden: Any,
    weight: Any,
    labels: Any,
    *,
    axis_name: Any,
    ignore_index: int | None = None,
    label_smoothing: Any = 0.0,
    z_loss: Any = 0.0,
    reduction: Reduction = "none",
    chunk_size: int | None = None,
    batch_axis_name: Any = None,
) -> jax.Array:
    r"""Fused linear + cross-entropy with the output projection split over the vocabulary.

    .. math::
        \ell_i = (1-\varepsilon)(-\log p_{i,y_i}) + \frac{\varepsilon}{V}\sum_c (-\log p_{i,c})
                 + \zeta\, (\log Z_i)^2, \qquad p_i = \operatorname{softmax}(h_i W)

    ``linear_softmax_cross_entropy`` for use inside ``shard_map`` when ``weight`` is split
    over its vocabulary columns on ``axis_name`` (and ``hidden`` is the same on those
    devices). Each chunk of tokens reduces its max, sum of exponentials and label logit over
    the shards; the gradient with respect to ``hidden`` is summed over them once at the end.
    Per-device memory falls with the number of vocabulary shards.

    Args:
      hidden: ``[..., D]`` hidden states (replicated over ``axis_name``).
      weight: this device's ``[D, V / k]`` slice of the output projection.
      labels: global integer labels, ``hidden.shape[:-1]``.
      axis_name: the mesh axis (or tuple of axes) the vocabulary is split over.
      ignore_index: a label value whose tokens contribute 0 and no weight.
      label_smoothing: :math:`\varepsilon \in [0, 1]`.
      z_loss: :math:`\zeta \ge 0`.
      reduction: ``"none"``, ``"sum"`` or ``"mean"`` over the non-ignored tokens.
      chunk_size: tokens per step of the scan (default: about :math:`2^{22} / (V/k)`).
      batch_axis_name: the mesh axis the batch is split over, if any, for ``"mean"``/``"sum"``.

    Returns:
      Per-token losses of shape ``labels.shape`` (float32 or wider), or a scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jax.sharding import PartitionSpec as P
      >>> import jaxloss
      >>> mesh = jax.sharding.Mesh(jax.devices()[:1], ("vocab",))
      >>> h = jnp.ones((2, 3))
      >>> w = jnp.zeros((3, 4))
      >>> f = jax.jit(jax.shard_map(
      ...     lambda h, w, y: jaxloss.vocab_parallel_linear_softmax_cross_entropy(
      ...         h, w, y, axis_name="vocab", reduction="mean"),
      ...     mesh=mesh, in_specs=(P(), P(None, "vocab"), P()), out_specs=P()))
      >>> print(f"{f(h, w, jnp.array([0, 3])):.4f}")  # log 4
      1.3863
    """
    return fused_cross_entropy(
        hidden,
        weight,
        labels,
        ignore_index,
        label_smoothing,
        z_loss,
        reduction,
        chunk_size,
        axis_name,
        batch_axis_name,
    )
