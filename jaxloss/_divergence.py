"""Information measures of softmax distributions: entropy, KL and Jensen–Shannon divergence."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss import _backend, _checks
from jaxloss._backend import Rows
from jaxloss._dtypes import compute_dtype
from jaxloss._reduction import Reduction
from jaxloss._softmax import Masked, log_softmax, mask_classes, reduce_examples, softmax_parts


def _log_probs(
    logits: ArrayLike, axis: int, where: ArrayLike | None, name: str = "logits"
) -> tuple[Masked, jax.Array, int]:
    x = _checks.check_float(logits, name)
    axis = _checks.check_axis(axis, x.ndim, name)
    m = mask_classes(x, axis, where)
    return m, log_softmax(m), axis


def _plogp_ratio(p: jax.Array, log_p: jax.Array, log_q: jax.Array) -> jax.Array:
    # p·(log p - log q) with 0·log 0 = 0: the inner where keeps -inf - (-inf) and 0·inf out of
    # the value and of every derivative.
    support = p > 0
    return jnp.where(support, p * (jnp.where(support, log_p, 0) - jnp.where(support, log_q, 0)), 0)


Divergence = Literal["forward_kl", "reverse_kl", "jsd"]
DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


def divergence_terms(log_s: jax.Array, log_p: jax.Array, divergence: str, beta: Any) -> jax.Array:
    """Per-class terms whose sum over the classes is the divergence between S = exp(log_s) (the
    student, the model) and P = exp(log_p) (the teacher, the target): KL(P||S), KL(S||P), or
    the generalized JSD  beta KL(P||M) + (1 - beta) KL(S||M)  with  M = beta P + (1 - beta) S."""
    s, p = jnp.exp(log_s), jnp.exp(log_p)
    if divergence == "forward_kl":
        return _plogp_ratio(p, log_p, log_s)
    if divergence == "reverse_kl":
        return _plogp_ratio(s, log_s, log_p)
    # Where both are 0, log M would be -inf with a NaN derivative; nothing uses it there.
    either = (p > 0) | (s > 0)
    beta = jnp.asarray(beta, log_s.dtype)
    log_m = jnp.logaddexp(
        jnp.log(beta) + jnp.where(either, log_p, 0), jnp.log1p(-beta) + jnp.where(either, log_s, 0)
    )
    jsd: jax.Array = beta * _plogp_ratio(p, log_p, log_m) + (1 - beta) * _plogp_ratio(
        s, log_s, log_m
    )
    return jsd


def _plain_sum(x: jax.Array, t: jax.Array, beta: Any, kind: str, rows: Rows) -> jax.Array:
    """Σ_c of the divergence's terms (keepdims) between S = softmax(x) and P = softmax(t),
    on the core's log-softmax."""
    log_s = log_softmax(Masked(x, None, None, rows))
    log_p = log_softmax(Masked(t, None, None, rows)).astype(log_s.dtype)
    return jnp.sum(divergence_terms(log_s, log_p, kind, beta), rows.axis, keepdims=True)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def _divergence_sum(x: jax.Array, t: jax.Array, beta: Any, kind: str, rows: Rows) -> jax.Array:
    """`_plain_sum`, its value summed by the kernels from the logits as given (half precision
    read as it is), so that no log-probabilities are stored; its derivative is `_plain_sum`'s."""

    def constant(x: jax.Array) -> jax.Array:  # log p = x - (s + log Z)
        s, log_z, _, _ = softmax_parts(x, None, None, rows)
        return s + log_z

    c_s, c_t = constant(x), constant(t)

    def terms(x: jax.Array, t: jax.Array, c_s: jax.Array, c_t: jax.Array, beta: Any) -> Any:
        log_s, log_p = x.astype(c_s.dtype) - c_s, t.astype(c_s.dtype) - c_t
        return divergence_terms(log_s, log_p, kind, beta)

    def total(kernels: ModuleType, *args: jax.Array) -> jax.Array:
        out: jax.Array = kernels.class_sum(terms, args[:2], args[2:], rows, c_s.dtype, False)
        return out

    return _backend.dispatch(total, x, t, c_s, c_t, jnp.broadcast_to(beta, c_s.shape))


@_divergence_sum.defjvp
def _divergence_sum_jvp(
    kind: str, rows: Rows, primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[jax.Array, jax.Array]:
    plain = functools.partial(_plain_sum, kind=kind, rows=rows)
    out: tuple[jax.Array, jax.Array] = jax.jvp(plain, primals, tangents)
    return out


def divergence_sum(m_s: Masked, m_t: Masked, beta: Any, kind: str) -> jax.Array:
    """Σ_c of the divergence's terms (keepdims) between S = softmax(x) and P = softmax(t) of
    masked logits."""
    x, t = m_s.x, m_t.x
    dtype = compute_dtype(jnp.promote_types(x.dtype, t.dtype))
    if x.shape[m_s.rows.axis] == 0:  # no class: a sum over nothing
        return jnp.sum(jnp.zeros(x.shape, dtype), m_s.rows.axis, keepdims=True)
    return _divergence_sum(x, t, jnp.asarray(beta, dtype), kind, m_s.rows)


def _per_example(values: jax.Array, m: Masked, reduction: Reduction) -> jax.Array:
    # A class axis of size 0 sums to 0.
    return reduce_examples(jnp.sum(values, m.rows.axis, keepdims=True), m, reduction)


def entropy(
    logits: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Shannon entropy (in nats) of ``softmax(logits)``.

    .. math::
        H(p) = -\sum_c p_c \log p_c, \qquad p = \operatorname{softmax}(x)

    with :math:`0 \log 0 = 0`. Log-probabilities are valid logits, so ``entropy(jnp.log(p))``
    is the entropy of a probability vector ``p``, zeros included.

    Args:
      logits: unnormalised log-probabilities, ``[..., C]``.
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include.
      reduction: ``"none"``, ``"mean"`` over examples (those with an included class), or
        ``"sum"``.

    Returns:
      Per-example entropies of shape ``logits.shape`` without ``axis`` (float32 or wider), or a
      scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> print(jaxloss.entropy(jnp.log(jnp.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]))))
      [0.6931 0.    ]
    """
    m, log_p, axis = _log_probs(logits, axis, where)
    p = jnp.exp(log_p)
    return _per_example(_plogp_ratio(p, jnp.zeros_like(log_p), log_p), m, reduction)


def kl_divergence(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Kullback–Leibler divergence of ``softmax(logits)`` from the target distribution.

    .. math::
        D_{\mathrm{KL}}(y \,\|\, q) = \sum_c y_c \log \frac{y_c}{q_c},
        \qquad q = \operatorname{softmax}(x)

    Non-negative, zero iff :math:`q = y`, and not symmetric. Cross-entropy is
    :math:`H(y, q) = H(y) + D_{\mathrm{KL}}(y\|q)`, so minimising either over :math:`q` is the
    same. ``reduction="mean"`` averages over examples: PyTorch's ``kl_div(log_q, y,
    reduction="batchmean")``.

    Args:
      logits: the model's unnormalised log-probabilities :math:`x`, ``[..., C]``.
      targets: the reference probabilities :math:`y`, same shape.
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include (targets elsewhere are
        ignored).
      reduction: ``"none"``, ``"mean"`` over examples, or ``"sum"``.

    Returns:
      Per-example divergences (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> y = jnp.array([0.5, 0.5, 0.0])
      >>> print(f"{jaxloss.kl_divergence(jnp.log(jnp.array([0.25, 0.25, 0.5])), y):.4f}")
      0.6931
    """
    m, log_q, axis = _log_probs(logits, axis, where)
    targets = _checks.check_float(targets, "targets")
    _checks.check_same_shape(log_q, targets, "logits", "targets")
    y = targets.astype(log_q.dtype)
    if m.include is not None:
        y = jnp.where(m.include, y, 0)
    return _per_example(_plogp_ratio(y, jnp.log(jnp.where(y > 0, y, 1)), log_q), m, reduction)


def js_divergence(
    logits_p: ArrayLike,
    logits_q: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Jensen–Shannon divergence between ``softmax(logits_p)`` and ``softmax(logits_q)``.

    .. math::
        \mathrm{JS}(p, q) = \tfrac12 D_{\mathrm{KL}}(p\,\|\,m) + \tfrac12 D_{\mathrm{KL}}(q\,\|\,m),
        \qquad m = \tfrac12 (p + q)

    Symmetric, zero iff :math:`p = q`, and at most :math:`\log 2`.

    Args:
      logits_p: unnormalised log-probabilities of :math:`p`, ``[..., C]``.
      logits_q: unnormalised log-probabilities of :math:`q`, same shape.
      axis: the class axis.
      where: boolean, broadcastable to the logits: classes to include.
      reduction: ``"none"``, ``"mean"`` over examples, or ``"sum"``.

    Returns:
      Per-example divergences (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> p = jnp.log(jnp.array([1.0, 0.0]))
      >>> q = jnp.log(jnp.array([0.0, 1.0]))
      >>> print(f"{jaxloss.js_divergence(p, q):.4f}")
      0.6931
    """
    p = _checks.check_float(logits_p, "logits_p")
    q = _checks.check_float(logits_q, "logits_q")
    _checks.check_same_shape(p, q, "logits_p", "logits_q")
    axis = _checks.check_axis(axis, p.ndim, "logits_p")
    m_p, m_q = mask_classes(p, axis, where), mask_classes(q, axis, where)
    return reduce_examples(divergence_sum(m_q, m_p, 0.5, "jsd"), m_p, reduction)


def kl_divergence_with_log_targets(
    logits: ArrayLike,
    log_targets: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Kullback–Leibler divergence of ``softmax(logits)`` from a target given by its logarithm.

    .. math::
        D_{\mathrm{KL}}(y \,\|\, q) = \sum_c e^{\ell_c} (\ell_c - \log q_c),
        \qquad q = \operatorname{softmax}(x),\ \ell = \log y

    ``kl_divergence`` with ``targets = exp(log_targets)``, without the round trip: a
    ``-inf`` log-target is a class of zero mass, 0 in the value and in every gradient
    (:math:`0 \cdot (-\infty)` never forms), and target mass too small for ``exp`` keeps its
    exact logarithm.

    Args:
      logits: the model's unnormalised log-probabilities :math:`x`, ``[..., C]`` (normalised
        inside, as in ``kl_divergence``; log-probabilities pass unchanged).
      log_targets: the reference log-probabilities :math:`\ell`, same shape, used as given.
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include (targets elsewhere are
        ignored).
      reduction: ``"none"``, ``"mean"`` over examples, or ``"sum"``.

    Returns:
      Per-example divergences (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> log_y = jnp.log(jnp.array([0.5, 0.5, 0.0]))
      >>> q = jnp.log(jnp.array([0.25, 0.25, 0.5]))
      >>> print(f"{jaxloss.kl_divergence_with_log_targets(q, log_y):.4f}")
      0.6931
    """
    m, log_q, axis = _log_probs(logits, axis, where)
    log_y = _checks.check_float(log_targets, "log_targets")
    _checks.check_same_shape(log_q, log_y, "logits", "log_targets")
    log_y = log_y.astype(log_q.dtype)
    if m.include is not None:
        log_y = jnp.where(m.include, log_y, -jnp.inf)
    return _per_example(_plogp_ratio(jnp.exp(log_y), log_y, log_q), m, reduction)


def generalized_kl_divergence(
    log_predictions: ArrayLike,
    targets: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Generalized KL divergence between non-negative measures (not necessarily normalised).

    .. math::
        D(y \,\|\, q) = \sum_c \Big[ y_c \log \frac{y_c}{q_c} - y_c + q_c \Big],
        \qquad q = e^{\ell}

    the Bregman divergence of :math:`x \log x - x`: non-negative, zero iff :math:`q = y`,
    and the KL divergence when both sum to one. ``log_predictions`` are used as given (no
    normalisation). A zero target with a ``-inf`` log-prediction contributes 0, value and
    gradients.

    Args:
      log_predictions: :math:`\ell = \log q`, ``[..., C]``.
      targets: non-negative :math:`y`, same shape.
      axis: the class axis.
      where: boolean, broadcastable to ``log_predictions``: classes to include (an example
        with none is 0 and not counted by ``"mean"``).
      reduction: ``"none"``, ``"mean"`` over examples, or ``"sum"``.

    Returns:
      Per-example divergences (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> log_q = jnp.log(jnp.array([1.0, 2.0, 0.0]))
      >>> y = jnp.array([2.0, 2.0, 0.0])
      >>> print(f"{jaxloss.generalized_kl_divergence(log_q, y):.4f}")
      0.3863

    References:
      Bregman, *The relaxation method of finding the common point of convex sets*, USSR
      Comput. Math. Math. Phys. 7, 1967.
    """
    log_q = _checks.check_float(log_predictions, "log_predictions")
    axis = _checks.check_axis(axis, log_q.ndim, "log_predictions")
    y = _checks.check_float(targets, "targets")
    _checks.check_same_shape(log_q, y, "log_predictions", "targets")
    dtype = compute_dtype(jnp.promote_types(log_q.dtype, y.dtype))
    log_q, y = log_q.astype(dtype), y.astype(dtype)
    # Excluded classes are -inf (and their targets 0) before any term is formed: exp of a
    # huge excluded log-prediction never meets a zero cotangent (inf * 0) in the gradient.
    m = mask_classes(log_q, axis, where)
    log_q = m.x
    if m.include is not None:
        y = jnp.where(m.include, y, 0)
    terms = _plogp_ratio(y, jnp.log(jnp.where(y > 0, y, 1)), log_q) + jnp.exp(log_q) - y
    return _per_example(terms, m, reduction)


def convex_kl_divergence(
    log_predictions: ArrayLike,
    targets: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""The generalized KL divergence under its older optax name.

    .. math::
        D(y \,\|\, q) = \sum_c \Big[ y_c \log \frac{y_c}{q_c} - y_c + q_c \Big],
        \qquad q = e^{\ell}

    The same function as ``generalized_kl_divergence`` (optax deprecates this name for that
    one); see there.

    Args:
      log_predictions: :math:`\ell = \log q`, ``[..., C]``.
      targets: non-negative :math:`y`, same shape.
      axis: the class axis.
      where: boolean, broadcastable to ``log_predictions``: classes to include.
      reduction: ``"none"``, ``"mean"`` over examples, or ``"sum"``.

    Returns:
      Per-example divergences (float32 or wider), or a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> log_q = jnp.log(jnp.array([1.0, 2.0, 0.0]))
      >>> print(f"{jaxloss.convex_kl_divergence(log_q, jnp.array([2.0, 2.0, 0.0])):.4f}")
      0.3863
    """
    return generalized_kl_divergence(
        log_predictions, targets, axis=axis, where=where, reduction=reduction
    )
