"""Sparse probability mappings and their Fenchel-Young losses: sparsemax and 1.5-entmax.

Both mappings are Tsallis alpha-entmax, p = argmax_{p in simplex} <p, x> + H_alpha(p), solved
exactly by sorting, and share one threshold routine and one derivative rule:

    sparsemax (alpha = 2):    p_i = max(x_i - tau, 0),        w = 1[p > 0]
    entmax15  (alpha = 1.5):  p_i = max(x_i / 2 - tau, 0)^2,  w = sqrt(p)

    J v = w * v - w (w . v) / sum(w)

The rule is written in differentiable jnp on the mapping itself, so derivatives of every order
work in forward and reverse mode. The losses are Omega*(x) - x_y with Omega*(x) = <p, x> - Omega(p)
the regularised max, whose derivative is p.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Literal, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss._dtypes import compute_dtype
from jaxloss._labels import finish, prepare_labels
from jaxloss._reduction import Reduction, reduce, reduce_elements, safe_ratio
from jaxloss._softmax import mask_classes, pick

Kind = Literal["sparsemax", "entmax15"]

# p_i <= 1 puts the threshold at least (top score - 1), so a score 2 below the top is never in
# the support: flooring there changes no probability and keeps -inf (whose differences are NaN)
# and huge negative scores (whose squares overflow) out of the sorted sums.
_FLOOR = -2.0


def _scores(x: jax.Array, axis: int, kind: Kind) -> jax.Array:
    """x minus its largest entry (halved for entmax15), floored at _FLOOR."""
    top = jnp.max(x, axis, keepdims=True)
    top = jnp.where(top == -jnp.inf, 0, top)  # a row with no finite logit; NaN stays NaN
    z = x - top
    return jnp.maximum(z / 2 if kind == "entmax15" else z, _FLOOR)


def _threshold(z: jax.Array, axis: int, kind: Kind) -> jax.Array:
    """tau (keepdims) from the scores sorted in decreasing order: for each support size k
    the closed form tau_k, then tau = tau_k at the largest k whose k-th score exceeds it."""
    u = jnp.sort(z, axis=axis, descending=True)
    shape = [1] * z.ndim
    shape[axis] = z.shape[axis]
    k = jnp.arange(1, z.shape[axis] + 1, dtype=jnp.int32).astype(z.dtype).reshape(shape)
    total = jnp.cumsum(u, axis)
    if kind == "sparsemax":  # sum_{j<=k} (u_j - tau) = 1
        tau = (total - 1) / k
    else:  # sum_{j<=k} (u_j - tau)^2 = 1, the smaller root
        mean = total / k
        spread = jnp.cumsum(u * u, axis) - total * mean  # sum_{j<=k} (u_j - mean)^2
        # A negative discriminant gives tau_k = mean >= u_k, which is never selected.
        tau = mean - jnp.sqrt(jnp.maximum((1 - spread) / k, 0))
    size = jnp.sum(tau < u, axis, keepdims=True, dtype=jnp.int32)  # >= 1: tau_1 = u_1 - 1
    return jnp.take_along_axis(tau, size - 1, axis)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _project(x: jax.Array, axis: int, kind: Kind) -> jax.Array:
    """The mapping of logits `x` (compute dtype) along `axis`; -inf entries get exactly 0."""
    if x.shape[axis] == 0:
        return x
    z = _scores(x, axis, kind)
    tau = _threshold(z, axis, kind)
    # One Newton step on sum_i p_i(tau) = 1 (convex and decreasing in tau): the running sums of
    # the sort lose digits when a large support sits far below the top score; plain sums of the
    # p_i do not, and at an exact tau the step is zero.
    r = jnp.maximum(z - tau, 0)
    if kind == "sparsemax":
        tau = tau + (jnp.sum(r, axis, keepdims=True) - 1) / jnp.sum(
            r > 0, axis, keepdims=True, dtype=r.dtype
        )
    else:
        step = jnp.sum(r * r, axis, keepdims=True) - 1
        tau = tau + step / (2 * jnp.sum(r, axis, keepdims=True))
    r = jnp.maximum(z - tau, 0)
    p = r if kind == "sparsemax" else r * r
    return jnp.where(x == -jnp.inf, 0, p)  # also a row of -inf only: no distribution, all 0


def _support_weight(p: jax.Array, kind: Kind) -> jax.Array:
    if kind == "sparsemax":
        return (p > 0).astype(p.dtype)
    # sqrt has an infinite slope at 0: the inner where keeps it out of higher derivatives.
    positive = p > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, p, 1)), 0)


@_project.defjvp
def _project_jvp(
    axis: int, kind: Kind, primals: tuple[jax.Array], tangents: tuple[jax.Array]
) -> tuple[jax.Array, jax.Array]:
    (x,), (dx,) = primals, tangents
    p = _project(x, axis, kind)
    w = _support_weight(p, kind)
    wv = w * jnp.where(w > 0, dx, 0)
    mean = safe_ratio(jnp.sum(wv, axis, keepdims=True), jnp.sum(w, axis, keepdims=True))
    return p, wv - w * mean


def _regulariser(p: jax.Array, axis: int, kind: Kind) -> jax.Array:
    """-Omega(p) = H_alpha(p), the Tsallis entropy (keepdims)."""
    if kind == "sparsemax":
        return (1 - jnp.sum(p * p, axis, keepdims=True)) / 2
    return (1 - jnp.sum(p * _support_weight(p, kind), axis, keepdims=True)) / 0.75


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _max_value(x: jax.Array, axis: int, kind: Kind) -> jax.Array:
    """Omega*(x) = <p, x> + H_alpha(p) (keepdims); its derivative is p."""
    p = _project(x, axis, kind)
    dot = jnp.sum(p * jnp.where(p > 0, x, 0), axis, keepdims=True)  # 0 * -inf = 0
    return dot + _regulariser(p, axis, kind)


@_max_value.defjvp
def _max_value_jvp(
    axis: int, kind: Kind, primals: tuple[jax.Array], tangents: tuple[jax.Array]
) -> tuple[jax.Array, jax.Array]:
    (x,), (dx,) = primals, tangents
    p = _project(x, axis, kind)
    dp = jnp.sum(p * jnp.where(p > 0, dx, 0), axis, keepdims=True)
    return _max_value(x, axis, kind), dp


def _mapping(logits: ArrayLike, axis: int, where: ArrayLike | None, kind: Kind) -> jax.Array:
    x = _checks.check_float(logits, "logits")
    axis = _checks.check_axis(axis, x.ndim)
    m = mask_classes(x, axis, where)
    return _project(m.x.astype(compute_dtype(x.dtype)), axis, kind).astype(x.dtype)


def sparsemax(logits: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None) -> jax.Array:
    r"""Sparsemax: the Euclidean projection of the logits onto the probability simplex.

    .. math::
        p = \operatorname*{argmin}_{p \in \Delta} \|p - x\|^2, \qquad
        p_i = \max(x_i - \tau, 0),\ \textstyle\sum_i p_i = 1

    computed exactly by sorting. Like ``softmax`` it is invariant to adding a constant to the
    logits, but classes far enough below the largest logit get probability exactly 0. Its
    Jacobian is :math:`\operatorname{diag}(s) - s s^\top / |S|` with :math:`s = 1[p > 0]`, in
    forward and reverse mode (its second derivative is 0 almost everywhere).

    Args:
      logits: scores, ``[..., C]``.
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include. Excluded classes and
        ``-inf`` logits get probability exactly 0 (a row with none left is all 0).

    Returns:
      Probabilities of ``logits``' shape and dtype (computed in float32 for half precision).

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> print(jaxloss.sparsemax(jnp.array([[1.0, 0.5, -1.0], [0.0, 0.0, 0.0]])))
      [[0.75   0.25   0.    ]
       [0.3333 0.3333 0.3333]]

    References:
      Martins & Astudillo, *From Softmax to Sparsemax: A Sparse Model of Attention and
      Multi-Label Classification*, ICML 2016.
    """
    return _mapping(logits, axis, where, "sparsemax")


def entmax15(logits: ArrayLike, *, axis: int = -1, where: ArrayLike | None = None) -> jax.Array:
    r"""1.5-entmax: the Tsallis-1.5-entropy-regularised argmax, between softmax and sparsemax.

    .. math::
        p = \operatorname*{argmax}_{p \in \Delta}\ \langle p, x \rangle + H_{1.5}(p), \qquad
        p_i = \max(x_i / 2 - \tau, 0)^2,\ \textstyle\sum_i p_i = 1,
        \qquad H_{1.5}(p) = \frac{1 - \sum_i p_i^{3/2}}{0.75}

    computed exactly by sorting: for each support size the threshold :math:`\tau` is the
    smaller root of a quadratic. Sparse like ``sparsemax`` but smoother; its Jacobian is
    :math:`\operatorname{diag}(w) - w w^\top / \sum w` with :math:`w = \sqrt{p}`, and
    derivatives of every order work in forward and reverse mode.

    Args:
      logits: scores, ``[..., C]``.
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include. Excluded classes and
        ``-inf`` logits get probability exactly 0 (a row with none left is all 0).

    Returns:
      Probabilities of ``logits``' shape and dtype (computed in float32 for half precision).

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> logits = jnp.array([2.0, 1.0, 0.5, -1.0])
      >>> print(jaxloss.entmax15(logits))
      [0.8146 0.1621 0.0233 0.    ]
      >>> print(jaxloss.sparsemax(logits))
      [1. 0. 0. 0.]

    References:
      Peters, Niculae & Martins, *Sparse Sequence-to-Sequence Models*, ACL 2019.
    """
    return _mapping(logits, axis, where, "entmax15")


def _fenchel_young(
    logits: ArrayLike,
    labels: ArrayLike,
    axis: int,
    where: ArrayLike | None,
    reduction: Reduction,
    kind: Kind,
) -> jax.Array:
    """Omega*(x) - x_y with the label policy of the integer-label losses."""
    x = _checks.check_float(logits, "logits")
    axis = _checks.check_axis(axis, x.ndim)
    dtype = compute_dtype(x.dtype)
    lab = prepare_labels(labels, x.shape, axis, "logits", None, None, x.shape[axis], dtype)
    m = mask_classes(x, axis, where)
    z = m.x.astype(dtype)
    # Omega*(x + c) = Omega*(x) + c: shifting to a top logit of 0 keeps large logits exact.
    top = jnp.max(z, axis, keepdims=True)
    z = z - jax.lax.stop_gradient(jnp.where(top == -jnp.inf, 0, top))
    # A label on a -inf logit: +inf with gradient p - e_y; on an excluded class, +inf with
    # gradient p (the class takes none). Both as cross-entropy.
    loss = _max_value(z, axis, kind) - pick(z, lab.label, axis)
    loss, weight = finish(loss, lab, m.has_class, axis)
    return reduce(loss, reduction, weight)


def multiclass_sparsemax_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Sparsemax loss on integer labels: the Fenchel-Young loss whose prediction is sparsemax.

    .. math::
        \ell = \langle p, x \rangle + \tfrac12 \big(1 - \|p\|^2\big) - x_y
             = \tfrac12 \sum_{j \in S} (x_j^2 - \tau^2) + \tfrac12 - x_y,
        \qquad p = \operatorname{sparsemax}(x)

    with :math:`S` the support and :math:`\tau` the threshold of ``sparsemax``. It is
    :math:`\ge 0`, zero exactly when :math:`p` is the one-hot of the label, and its gradient
    is :math:`p - e_y` (its Hessian the Jacobian of ``sparsemax``).

    Args:
      logits: scores, ``[..., C]``.
      labels: integer class indices, ``logits.shape`` without ``axis``.
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include; an example with no
        class has loss 0 and is not counted by ``"mean"``.
      reduction: ``"none"`` (per example), ``"mean"`` or ``"sum"``.

    Returns:
      Per-example losses of shape ``labels.shape`` (float32 or wider), or a scalar. A label
      outside ``[0, C)`` raises a ``ValueError`` when the labels are concrete; under ``jit``
      that example's loss is NaN. A label on a ``-inf`` logit gives ``inf``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> logits = jnp.array([[1.0, 0.5, -1.0], [3.0, 0.0, 0.0]])
      >>> print(jaxloss.multiclass_sparsemax_loss(logits, jnp.array([1, 0])))
      [0.5625 0.    ]

    References:
      Martins & Astudillo, *From Softmax to Sparsemax: A Sparse Model of Attention and
      Multi-Label Classification*, ICML 2016.
    """
    return _fenchel_young(logits, labels, axis, where, reduction, "sparsemax")


def entmax15_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""1.5-entmax loss on integer labels: the Fenchel-Young loss whose prediction is entmax15.

    .. math::
        \ell = \langle p, x \rangle + H_{1.5}(p) - x_y, \qquad
        H_{1.5}(p) = \frac{1 - \sum_j p_j^{3/2}}{0.75},\ p = \operatorname{entmax15}(x)

    It is :math:`\ge 0`, zero exactly when :math:`p` is the one-hot of the label, and its
    gradient is :math:`p - e_y`. This is ``entmax.Entmax15Loss`` of the PyTorch package
    ``entmax`` (per example).

    Args:
      logits: scores, ``[..., C]``.
      labels: integer class indices, ``logits.shape`` without ``axis``.
      axis: the class axis.
      where: boolean, broadcastable to ``logits``: classes to include; an example with no
        class has loss 0 and is not counted by ``"mean"``.
      reduction: ``"none"`` (per example), ``"mean"`` or ``"sum"``.

    Returns:
      Per-example losses of shape ``labels.shape`` (float32 or wider), or a scalar. A label
      outside ``[0, C)`` raises a ``ValueError`` when the labels are concrete; under ``jit``
      that example's loss is NaN. A label on a ``-inf`` logit gives ``inf``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> logits = jnp.array([[1.0, 0.5, -1.0], [3.0, 0.0, 0.0]])
      >>> print(jaxloss.entmax15_loss(logits, jnp.array([1, 0])))
      [0.6844 0.    ]

    References:
      Peters, Niculae & Martins, *Sparse Sequence-to-Sequence Models*, ACL 2019.
    """
    return _fenchel_young(logits, labels, axis, where, reduction, "entmax15")


def _sparse_plus(x: jax.Array) -> jax.Array:
    # jax.nn.sparse_plus, whose quadratic branch sends 0 * inf = NaN into the gradient at
    # x = +-inf: the clip keeps that branch finite.
    c = jnp.clip(x, -1, 1)
    return jnp.where(x >= 1, x, (c + 1) ** 2 / 4)


def sparsemax_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    where: ArrayLike | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""Elementwise binary sparsemax loss: the Fenchel-Young loss of the sparse sigmoid.

    .. math::
        \ell = \operatorname{sparse\_plus}(s), \quad s = \begin{cases} -x & y = 1 \\
        x & y = 0 \end{cases}, \qquad
        \operatorname{sparse\_plus}(s) = \begin{cases} 0 & s \le -1 \\ (s+1)^2/4 & |s| < 1
        \\ s & s \ge 1 \end{cases}

    It is zero exactly when :math:`\operatorname{clip}((x + 1)/2, 0, 1) = y`, and equals
    ``multiclass_sparsemax_loss`` on the two scores :math:`(x/2, -x/2)`. This is optax's
    ``sparsemax_loss``, with finite gradients at :math:`x = \pm\infty`.

    Args:
      logits: one score per binary output, any shape.
      labels: 0 or 1 (integer, float or bool) of the same shape.
      where: boolean, broadcastable to ``logits``: elements to include.
      reduction: ``"none"`` (elementwise), ``"sum"``, or ``"mean"`` over all (included)
        elements.

    Returns:
      Elementwise losses of ``logits``' shape (float32 or wider), or a scalar. A label other
      than 0 or 1 raises a ``ValueError`` when the labels are concrete; under ``jit`` its loss
      is NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> print(jaxloss.sparsemax_loss(jnp.array([2.0, 0.5, 0.5, -3.0]), jnp.array([1, 1, 0, 1])))
      [0.     0.0625 0.5625 3.    ]

    References:
      Blondel, Martins & Niculae, *Learning with Fenchel-Young Losses*, JMLR 2020 (Sec. 4.4).
    """
    x = _checks.check_float(logits, "logits")
    y = jnp.asarray(labels)
    binary = y.dtype == jnp.bool_
    if not (
        binary or jnp.issubdtype(y.dtype, jnp.integer) or jnp.issubdtype(y.dtype, jnp.floating)
    ):
        raise TypeError(f"labels must be 0 or 1 (int, float or bool), got dtype {y.dtype}")
    _checks.check_same_shape(x, y, "logits", "labels")
    if not binary and _checks.is_concrete(y):
        values = np.asarray(y)
        bad = (values != 0) & (values != 1)
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"labels must be 0 or 1; labels{list(pos)} = {values[pos]}")
    z = x.astype(compute_dtype(x.dtype))
    if where is not None:  # excluded elements reach neither the value nor the gradient
        z = jnp.where(_checks.check_broadcastable(where, x.shape, "where", "logits"), z, 0)
    positive = y if binary else y == 1
    loss = _sparse_plus(jnp.where(positive, -z, z))
    if not binary:  # a label other than 0 or 1 under jit: NaN, never a silent class
        loss = jnp.where(positive | (y == 0), loss, jnp.nan)
    return reduce_elements(loss, where, reduction)


class MaxFun(Protocol):
    def __call__(self, logits: jax.Array, *args: Any, **kwargs: Any) -> ArrayLike: ...


def make_fenchel_young_loss(max_fun: MaxFun) -> Callable[..., jax.Array]:
    r"""Builds the Fenchel-Young loss of a regularised max function.

    .. math::
        \ell(x, t) = f(x) - \langle t, x \rangle, \qquad
        f(x) = \max_{p \in \Delta}\ \langle p, x \rangle - \Omega(p)

    over the last axis, vectorised over the leading ones: the Fenchel-Young loss
    :math:`f(x) + \Omega(t) - \langle t, x \rangle` without its term :math:`\Omega(t)`,
    which does not depend on the logits. So it is :math:`\ge -\Omega(t)`, and
    :math:`\ge 0` where :math:`\Omega(t) = 0` (one-hot targets of the Shannon, Gini and
    Tsallis regularisers); its gradient is :math:`\nabla f(x) - t`. With
    ``max_fun = jax.scipy.special.logsumexp`` and one-hot targets it is the softmax
    cross-entropy. This is optax's ``make_fenchel_young_loss``;
    target 0 on a ``-inf`` logit contributes 0 (not NaN).

    Args:
      max_fun: :math:`f`, called on one ``[C]`` row of logits (in float32 or wider) with the
        extra arguments, returning a scalar.

    Returns:
      ``loss(logits, targets, *args, reduction="none", **kwargs)``: ``logits`` and
      ``targets`` of the same shape ``[..., C]``; ``args`` and ``kwargs`` go to ``max_fun``
      unchanged (not vectorised). It returns losses of shape ``logits.shape[:-1]`` (float32
      or wider), or a scalar for ``reduction="mean"`` or ``"sum"``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> from jax.scipy.special import logsumexp
      >>> loss = jaxloss.make_fenchel_young_loss(logsumexp)
      >>> logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
      >>> print(loss(logits, jnp.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])))
      [0.1698 1.0986]

    References:
      Blondel, Martins & Niculae, *Learning with Fenchel-Young Losses*, JMLR 2020.
    """

    def fenchel_young_loss(
        logits: ArrayLike,
        targets: ArrayLike,
        *args: Any,
        reduction: Reduction = "none",
        **kwargs: Any,
    ) -> jax.Array:
        x = _checks.check_float(logits, "logits")
        t = _checks.check_float(targets, "targets")
        _checks.check_same_shape(x, t, "logits", "targets")
        _checks.check_axis(-1, x.ndim)
        _checks.check_reduction(reduction)
        dtype = compute_dtype(x.dtype)
        z = x.astype(dtype)

        def row(r: jax.Array) -> jax.Array:
            value = jnp.asarray(max_fun(r, *args, **kwargs))
            if value.shape != ():
                raise ValueError(f"max_fun must return a scalar per row, got shape {value.shape}")
            return value.astype(dtype)

        rows = z.reshape(math.prod(x.shape[:-1]), x.shape[-1])
        top = jax.vmap(row)(rows).reshape(x.shape[:-1])
        t = t.astype(dtype)
        # 0 * -inf = 0: a -inf logit with no target mass takes no part in the inner product.
        dot = jnp.sum(t * jnp.where(t != 0, z, 0), axis=-1)
        return reduce(top - dot, reduction)

    return fenchel_young_loss
