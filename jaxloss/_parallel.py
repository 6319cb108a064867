"""Vocabulary-parallel cross-entropy for `jax.shard_map`: each device holds a slice of the classes.

Inside ``shard_map``, the logits (or the output projection) are split over the vocabulary on
the mesh axis ``axis_name``. The global max, sum of exponentials and label logit are formed
with ``pmax`` / ``psum`` over that axis (as Megatron-LM does), so no device ever holds the
full vocabulary. Labels are global class indices, the same on every vocabulary shard. When
the batch is also split, over ``batch_axis_name``, ``"mean"`` and ``"sum"`` reduce over the
whole global batch.
"""

from __future__ import annotations

import jax
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss._cross_entropy import labelled_loss, prepare
from jaxloss._large_vocab import fused_cross_entropy
from jaxloss._reduction import AxisName, Reduction, reduce


def vocab_parallel_softmax_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    axis_name: AxisName,
    where: ArrayLike | None = None,
    ignore_index: int | None = None,
    class_weights: ArrayLike | None = None,
    label_smoothing: ArrayLike = 0.0,
    z_loss: ArrayLike = 0.0,
    logit_soft_cap: ArrayLike | None = None,
    reduction: Reduction = "none",
    batch_axis_name: AxisName = None,
) -> jax.Array:
    r"""Integer-label softmax cross-entropy of logits split over the vocabulary (``shard_map``).

    .. math::
        \ell = w_y\big[(1-\varepsilon)(-\log p_y) + \zeta (\log Z)^2\big]
               + \frac{\varepsilon}{C}\sum_c w_c(-\log p_c),

        \log Z = \log \textstyle\sum_{\text{shards}} \sum_{c \in \text{shard}} e^{x_c}

    Equal, on every shard, to ``softmax_cross_entropy_with_integer_labels`` of the gathered
    logits with the same options (``"mean"`` over the non-ignored examples of the global
    batch, divided by their summed class weight). The logits keep their dtype: half precision
    is accumulated in float32 without a float32 copy.

    Args:
      logits: this device's ``[..., V / k]`` slice of the logits (classes last); shard ``i``
        of ``k`` along ``axis_name`` holds classes ``[i V/k, (i+1) V/k)``.
      labels: global integer labels, ``logits.shape[:-1]``.
      axis_name: the mesh axis (or tuple of axes) the vocabulary is split over.
      where: this device's boolean ``[V / k]`` slice of the classes to include. A device
        whose whole slice is excluded (padding) is a normal case.
      ignore_index: a label value whose examples contribute 0 and no weight.
      class_weights: this device's ``[V / k]`` slice of the class weights.
      label_smoothing: :math:`\varepsilon \in [0, 1]`, spread over the included classes.
      z_loss: :math:`\zeta \ge 0`.
      logit_soft_cap: :math:`c > 0`: the logits become :math:`c \tanh(x / c)` first.
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
    x = _checks.check_float(logits, "logits")
    axis = _checks.check_axis(-1, x.ndim)
    if where is not None:
        where = _checks.check_class_vector(where, x.shape[axis], "where")
    options = dict(
        ignore_index=ignore_index,
        class_weights=class_weights,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        logit_soft_cap=logit_soft_cap,
    )
    lab, opts = prepare(x.shape, x.dtype, labels, axis, "logits", options, axis_name)
    loss, weight = labelled_loss(x, lab, where, opts, axis, axis_name)
    return reduce(loss, reduction, weight, batch_axis_name)


def vocab_parallel_linear_softmax_cross_entropy(
    hidden: ArrayLike,
    weight: ArrayLike,
    labels: ArrayLike,
    *,
    axis_name: AxisName,
    where: ArrayLike | None = None,
    ignore_index: int | None = None,
    class_weights: ArrayLike | None = None,
    label_smoothing: ArrayLike = 0.0,
    z_loss: ArrayLike = 0.0,
    logit_soft_cap: ArrayLike | None = None,
    reduction: Reduction = "none",
    chunk_size: int | None = None,
    batch_axis_name: AxisName = None,
) -> jax.Array:
    r"""Fused linear + cross-entropy with the output projection split over the vocabulary.

    .. math::
        \ell_i = w_{y_i}\big[(1-\varepsilon)(-\log p_{i,y_i}) + \zeta\,(\log Z_i)^2\big]
                 + \frac{\varepsilon}{C}\sum_c w_c (-\log p_{i,c}),
                 \qquad p_i = \operatorname{softmax}(h_i W)

    ``linear_softmax_cross_entropy`` for use inside ``shard_map`` when ``weight`` is split
    over its vocabulary columns on ``axis_name`` (and ``hidden`` is the same on those
    devices). Each chunk of tokens takes its max, sum of exponentials and label logit over the
    shards; the gradient with respect to ``hidden`` is summed over them once at the end.
    Per-device memory falls with the number of vocabulary shards.

    Args:
      hidden: ``[..., D]`` hidden states (replicated over ``axis_name``).
      weight: this device's ``[D, V / k]`` slice of the output projection.
      labels: global integer labels, ``hidden.shape[:-1]``.
      axis_name: the mesh axis (or tuple of axes) the vocabulary is split over.
      where: this device's boolean ``[V / k]`` slice of the classes to include.
      ignore_index: a label value whose tokens contribute 0 and no weight.
      class_weights: this device's ``[V / k]`` slice of the class weights.
      label_smoothing: :math:`\varepsilon \in [0, 1]`, spread over the included classes.
      z_loss: :math:`\zeta \ge 0`.
      logit_soft_cap: :math:`c > 0`: each chunk's float32 logits become :math:`c \tanh(x / c)`
        first (the materialised loss rounds capped half-precision logits to their dtype).
      reduction: ``"none"``, ``"sum"`` or ``"mean"`` over the non-ignored tokens.
      chunk_size: tokens per step of the scan; by default :math:`\max(256, 2^{23} / (V/k))`.
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
    options = dict(
        where=where,
        ignore_index=ignore_index,
        class_weights=class_weights,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        logit_soft_cap=logit_soft_cap,
    )
    return fused_cross_entropy(
        hidden, weight, labels, options, reduction, chunk_size, axis_name, batch_axis_name
    )
