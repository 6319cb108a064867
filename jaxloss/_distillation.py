"""Knowledge distillation: a divergence between the tempered softmaxes of a teacher and a
student, on logits or fused with the output projections of both models.

Both are the divergences of `_divergence` on the core's log-softmax; the fused version is the
chunked scan of `_large_vocab` with this loss per chunk, plus the integer-label cross-entropy
of `_cross_entropy` on the same chunk's logits.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxloss import _checks, _large_vocab
from jaxloss._cross_entropy import LabelOptions, labelled_loss, prepare
from jaxloss._divergence import DIVERGENCES, Divergence, divergence_sum
from jaxloss._dtypes import compute_dtype, is_static_one, is_static_zero
from jaxloss._labels import Labels, finish
from jaxloss._reduction import Reduction
from jaxloss._softmax import Masked, mask_classes, reduce_examples

_NO_OPTIONS = LabelOptions(0, 0, None, None)
# A step of the fused loss holds about four times as many [chunk, V] float32 arrays as the
# cross-entropy's (both models' logits, both softmaxes, the mixture and their cotangents), so
# its chunks are four times shorter by default.
CHUNK_SHARE = 4


def check_options(divergence: Any, beta: Any, temperature: Any) -> None:
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    if temperature is None:
        raise ValueError("temperature must be > 0, got None")
    _checks.check_sign(temperature, "temperature", strict=True)
    if divergence != "jsd" or not _checks.is_concrete(beta):
        return  # a traced beta is trusted, as a traced schedule is elsewhere
    b = np.asarray(beta)
    if b.ndim or not np.issubdtype(b.dtype, np.number):
        raise ValueError(f"beta must be a scalar, got {beta!r}")
    ends = {0.0: "forward_kl", 1.0: "reverse_kl"}
    if float(b) in ends:
        raise ValueError(
            f"beta={float(b)} with divergence='jsd' is 0 for every input (the generalized JSD "
            f"vanishes at its ends); its limit divided by beta (1 - beta) is "
            f"divergence={ends[float(b)]!r}: pass that instead"
        )
    if not 0.0 < float(b) < 1.0:
        raise ValueError(f"beta must lie strictly inside (0, 1) for 'jsd', got {float(b)}")


def _tempered(x: jax.Array, temperature: Any) -> jax.Array:
    """x / T in the compute dtype (x itself at a static T = 1)."""
    if is_static_one(temperature):
        return x
    dtype = compute_dtype(x.dtype)
    return x.astype(dtype) / jnp.asarray(temperature, dtype)


def tempered_divergence(
    student: jax.Array,
    teacher: jax.Array,
    axis: int,
    where: ArrayLike | None,
    kind: str,
    beta: Any,
    temperature: Any,
) -> tuple[jax.Array, Masked]:
    """T²·D per example (keepdims) between S = softmax(student / T) and
    P = softmax(teacher / T), and the masked student logits (for `reduce_examples`)."""
    m_s = mask_classes(_tempered(student, temperature), axis, where)
    m_t = mask_classes(_tempered(teacher, temperature), axis, where)
    d = divergence_sum(m_s, m_t, beta, kind)
    if not is_static_one(temperature):
        d = jnp.asarray(temperature, d.dtype) ** 2 * d
    return d, m_s


def distillation_loss(
    logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    divergence: Divergence = "forward_kl",
    beta: ArrayLike = 0.5,
    temperature: ArrayLike = 1.0,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Divergence between a teacher's and a student's tempered softmax, scaled by :math:`T^2`.

    .. math::
        \ell = T^2\, D(P, S), \qquad S = \operatorname{softmax}(x / T),\quad
        P = \operatorname{softmax}(x^{\mathrm{teacher}} / T)

    with :math:`D` one of

    - ``"forward_kl"``: :math:`D_{\mathrm{KL}}(P\|S)`, mass-covering (the student spreads over
      every class the teacher gives mass to);
    - ``"reverse_kl"``: :math:`D_{\mathrm{KL}}(S\|P)`, mode-seeking;
    - ``"jsd"``: the generalized Jensen–Shannon divergence
      :math:`\beta D_{\mathrm{KL}}(P\|M) + (1-\beta) D_{\mathrm{KL}}(S\|M)`,
      :math:`M = \beta P + (1-\beta) S`, for :math:`0 < \beta < 1` (symmetric at
      :math:`\beta = \tfrac12`, at most :math:`T^2 \log 2`). It tends to 0 at both ends;
      divided by :math:`\beta` (:math:`1-\beta`) it tends to the forward (reverse) KL, which
      is what to pass instead of ``beta=0`` (``1``).

    The factor :math:`T^2` (Hinton et al., 2015) keeps the gradients' scale the same across
    temperatures, since :math:`\partial D / \partial x` carries a :math:`1/T`; divide by
    ``temperature**2`` for the unscaled divergence (TRL's generalized JSD loss, for instance).

    Gradients flow into both arguments: ``jax.lax.stop_gradient`` the teacher to distil into
    the student only. :math:`0 \log 0 = 0`, so a teacher logit of ``-inf`` (a class the teacher
    rules out) gives finite values and gradients for the forward KL and the JSD; the reverse
    KL is then :math:`+\infty` unless the student rules the class out too (its exact value).
    Half-precision logits are accumulated in float32; at ``temperature=1`` the value is
    computed without a float32 copy of them (otherwise ``x / T`` is one, of each argument).

    Args:
      logits: the student's logits :math:`x`, ``[..., C]``.
      teacher_logits: the teacher's logits, the same shape (not merely broadcastable).
      divergence: ``"forward_kl"``, ``"reverse_kl"`` or ``"jsd"``.
      beta: :math:`\beta`, the teacher's share of the mixture (``"jsd"`` only).
      temperature: :math:`T > 0`, applied to both.
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include (probability 0 in both
        distributions elsewhere).
      reduction: ``"none"``, ``"mean"`` over examples (those with an included class), or
        ``"sum"``.

    Returns:
      Per-example losses of shape ``logits.shape`` without ``axis`` (float32 or wider), or a
      scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> student = jnp.array([[1.0, 2.0, 3.0]])
      >>> teacher = jnp.array([[1.0, 2.0, -jnp.inf]])
      >>> print(jaxloss.distillation_loss(student, teacher, temperature=2.0))
      [2.8248]
      >>> print(jaxloss.distillation_loss(student, student, divergence="jsd"))
      [0.]
    """
    x = _checks.check_float(logits, "logits")
    t = _checks.check_float(teacher_logits, "teacher_logits")
    _checks.check_same_shape(x, t, "logits", "teacher_logits")
    axis = _checks.check_axis(axis, x.ndim)
    _checks.check_reduction(reduction)
    check_options(divergence, beta, temperature)
    d, m = tempered_divergence(x, t, axis, where, divergence, beta, temperature)
    return reduce_examples(d, m, reduction)


def _chunk_loss(
    logits: jax.Array, hyper: tuple[jax.Array, ...], tokens: Any, consts: Any, cfg: Any
) -> jax.Array:
    """One chunk: T²·D against the teacher's logits of the same tokens (computed here, so that
    they are constants of the chunk's derivative), plus label_weight·CE on the labels.
    `cfg.static` is (divergence, the cross-entropy term is on)."""
    teacher_hidden, lab = tokens
    teacher_weight, where = consts
    kind, label_term = cfg.static
    temperature, beta, label_weight = hyper
    teacher = jnp.dot(
        teacher_hidden, teacher_weight, preferred_element_type=compute_dtype(teacher_hidden.dtype)
    )
    loss, m = tempered_divergence(logits, teacher, 1, where, kind, beta, temperature)
    if lab is None:
        return reduce_examples(loss, m, "none")
    if label_term:
        loss = loss + label_weight * labelled_loss(logits, lab, where, _NO_OPTIONS, 1)[0][:, None]
    return finish(loss, lab, m.has_class, 1)[0]


def _token_labels(
    labels: ArrayLike | None, ignore_index: int | None, label_weight: Any, h: jax.Array, v: int
) -> Labels | None:
    if labels is None:
        if ignore_index is not None or not is_static_zero(label_weight):
            raise ValueError(
                "labels=None: ignore_index must be None and label_weight 0 (there are no labels "
                f"to score or ignore), got ignore_index={ignore_index!r}, "
                f"label_weight={label_weight!r}"
            )
        return None
    y = _checks.check_labels(labels, h.shape, h.ndim - 1, "hidden")
    options = dict(
        ignore_index=ignore_index,
        class_weights=None,
        label_smoothing=0,
        z_loss=0,
        logit_soft_cap=None,
    )
    return prepare((y.size, v), h.dtype, y.reshape(-1), 1, "hidden", options)[0]


def linear_distillation_loss(
    hidden: ArrayLike,
    weight: ArrayLike,
    teacher_hidden: ArrayLike,
    teacher_weight: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    ignore_index: int | None = None,
    label_weight: ArrayLike = 0.0,
    divergence: Divergence = "forward_kl",
    beta: ArrayLike = 0.5,
    temperature: ArrayLike = 1.0,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
    chunk_size: int | None = None,
) -> jax.Array:
    r"""Distillation loss of ``hidden @ weight`` against ``teacher_hidden @ teacher_weight``,
    fused: neither model's ``[N, V]`` logits are ever held.

    .. math::
        \ell_i = T^2 D(P_i, S_i) + \lambda\,(-\log \operatorname{softmax}(h_i W)_{y_i}),

        S_i = \operatorname{softmax}(h_i W / T),\quad
        P_i = \operatorname{softmax}(h^{\mathrm{t}}_i W^{\mathrm{t}} / T)

    per token, equal in value and in gradients (with respect to ``hidden`` and ``weight``) to
    ``distillation_loss(hidden @ weight, teacher_hidden @ teacher_weight, ...)`` plus
    ``label_weight * softmax_cross_entropy_with_integer_labels(hidden @ weight, labels)``
    (untempered). A scan over chunks of ``chunk_size`` tokens computes both models' logits of
    the chunk (matmuls accumulated in float32, whatever the inputs' dtype), the loss and its
    gradient, and discards them. The teacher is a constant: its gradients are zero, and no
    backward work is done for it. With ``reduction="mean"`` or ``"sum"`` the gradients are
    computed during the forward pass; with ``"none"`` the backward pass runs the scan again.
    Reverse-mode differentiation only (a ``custom_vjp``).

    Args:
      hidden: the student's ``[..., D]`` final hidden states.
      weight: the student's ``[D, V]`` output projection.
      teacher_hidden: the teacher's ``[..., Dt]`` hidden states for the same tokens (``Dt``
        may differ from ``D``).
      teacher_weight: the teacher's ``[Dt, V]`` output projection.
      labels: integer labels, ``hidden.shape[:-1]``, or None.
      ignore_index: a label value whose tokens contribute 0, their distillation term too, and
        are not counted by ``"mean"``.
      label_weight: :math:`\lambda`, the weight of the cross-entropy on ``labels``.
      divergence: ``"forward_kl"``, ``"reverse_kl"`` or ``"jsd"``, as in
        :func:`distillation_loss`.
      beta: :math:`\beta` of ``"jsd"``.
      temperature: :math:`T > 0`, of the divergence only.
      where: boolean ``[V]``: classes to include (e.g. a padded vocabulary's real classes).
      reduction: ``"none"``, ``"sum"``, or ``"mean"`` over the kept tokens (0, with zero
        gradients, when none is kept).
      chunk_size: tokens per step; by default :math:`\max(64, 2^{21} / V)`, a quarter of the
        fused cross-entropy's (a step holds about four times as many ``[chunk, V]`` arrays).

    Returns:
      Per-token losses of shape ``hidden.shape[:-1]`` (float32 or wider), or a scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxloss
      >>> k = jax.random.split(jax.random.key(0), 4)
      >>> h, w = jax.random.normal(k[0], (6, 4)), jax.random.normal(k[1], (4, 10))
      >>> ht, wt = jax.random.normal(k[2], (6, 8)), jax.random.normal(k[3], (8, 10))
      >>> fused = jaxloss.linear_distillation_loss(
      ...     h, w, ht, wt, divergence="jsd", reduction="mean", chunk_size=4)
      >>> plain = jaxloss.distillation_loss(h @ w, ht @ wt, divergence="jsd", reduction="mean")
      >>> bool(jnp.allclose(fused, plain, rtol=1e-5))
      True
    """
    h, w = _large_vocab.check_projection(hidden, weight)
    ht, wt = _large_vocab.check_projection(
        teacher_hidden, teacher_weight, ("teacher_hidden", "teacher_weight")
    )
    if ht.shape[:-1] != h.shape[:-1] or wt.shape[1] != w.shape[1]:
        raise ValueError(
            "teacher_hidden and teacher_weight must score the same tokens over the same classes "
            f"as hidden and weight: got hidden.shape={h.shape}, weight.shape={w.shape}, "
            f"teacher_hidden.shape={ht.shape}, teacher_weight.shape={wt.shape}"
        )
    _checks.check_reduction(reduction)
    check_options(divergence, beta, temperature)
    shape, v = h.shape[:-1], w.shape[1]
    lab = _token_labels(labels, ignore_index, label_weight, h, v)
    h, ht = h.reshape(-1, h.shape[-1]), ht.reshape(-1, ht.shape[-1])
    mask = None if where is None else _checks.check_class_vector(where, v, "where").astype(bool)
    acc = compute_dtype(h.dtype)
    label_term = lab is not None and not is_static_zero(label_weight)
    chunk = _large_vocab.chunk_length(chunk_size, v, h.shape[0], CHUNK_SHARE)
    cfg = _large_vocab.Config(chunk, None, _chunk_loss, (divergence, label_term))
    hyper = tuple(jnp.asarray(a, acc) for a in (temperature, beta, label_weight))
    inputs = _large_vocab.Inputs((ht, lab), (wt, mask), hyper)
    count = None
    keep = None if lab is None else lab.keep
    if reduction != "none" and (keep is not None or mask is not None):
        kept = jnp.ones((h.shape[0],), bool) if keep is None else keep[:, 0]
        if mask is not None:
            kept = kept & jnp.any(mask)
        count = jnp.sum(kept, dtype=acc)
    out = _large_vocab.fused(h, w, inputs, cfg, reduction, count)
    return out.reshape(shape) if reduction == "none" else out
