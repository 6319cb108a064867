"""Fused linear + softmax cross-entropy that never holds the [N, V] logits."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._reduction import Reduction
from jaxloss._softmax import compute_dtype, is_static_zero

# Default chunk: about 2**23 logits (32 MiB in float32) per step of the scan, and at least 256
# tokens. Each step reads and writes the whole [D, V] weight gradient and repacks the weight for
# one matmul, whatever the chunk's length, so short chunks pay that many times over.
_CHUNK_ELEMENTS = 2**23
_MIN_CHUNK = 256


class _Config(NamedTuple):
    """Static options of one fused call (hashable, so custom_vjp can take it as nondiff)."""

    chunk: int
    vocab: int  # the full vocabulary, summed over shards
    smoothing: bool
    z_loss: bool
    axis_name: Any  # mesh axis the vocabulary is split over, or None


def _allmax(x, cfg):
    return x if cfg.axis_name is None else jax.lax.pmax(x, cfg.axis_name)


def _allsum(x, cfg):
    return x if cfg.axis_name is None else jax.lax.psum(x, cfg.axis_name)


def _chunk(h, w, y, eps, zeta, cfg):
    """Loss of one chunk of tokens, and what its gradient needs."""
    return chunk_loss(jnp.dot(h, w, preferred_element_type=eps.dtype), y, eps, zeta, cfg)


def chunk_loss(logits, y, eps, zeta, cfg):
    """Per-example loss of logits [n, V_local] (this shard's slice of the vocabulary) in the
    compute dtype, with what its gradient needs: probabilities, label mask, log-normaliser,
    and the shift and normaliser (sum of exponentials) that make it up."""
    v_local = logits.shape[-1]
    # The shift cancels in the loss, so it carries no gradient (pmax has none either). Nothing
    # below is written in terms of `logits - m` as an array of its own: XLA:CPU would fuse that
    # subtraction (and the max) into the matmul's kernel, which then holds the product in a
    # buffer of its own, mapped afresh at every step (seen from 24 MiB chunks on).
    m = _allmax(jax.lax.stop_gradient(jnp.max(logits, -1, keepdims=True)), cfg)
    e = jnp.exp(logits - m)  # one exp per logit: the gradient reuses it
    z = _allsum(jnp.sum(e, -1, keepdims=True), cfg)
    log_z = jnp.log(z)
    is_label = _label_mask(y, v_local, cfg)
    if cfg.axis_name is None:  # a gather, not another pass over the chunk
        inside = ((y >= 0) & (y < v_local))[:, None]
        picked = jnp.take_along_axis(logits, jnp.clip(y, 0, v_local - 1)[:, None], axis=-1)
        label = jnp.where(inside, picked - m, 0)
    else:  # exactly one shard holds a valid label
        label = _allsum(jnp.sum(jnp.where(is_label, logits, 0), -1, keepdims=True), cfg) - m
    loss = log_z - label
    d_eps = d_zeta = jnp.zeros_like(loss)  # d loss / d eps and d loss / d zeta
    if cfg.smoothing:
        mean_logit = _allsum(jnp.sum(logits, -1, keepdims=True), cfg) / cfg.vocab
        d_eps = label - (mean_logit - m)
        loss = loss + eps * d_eps
    lse = log_z + m
    if cfg.z_loss:
        d_zeta = lse * lse
        loss = loss + jnp.where(zeta != 0, zeta * d_zeta, 0)  # zeta = 0 with an infinite lse
    return _Parts(loss[:, 0], e / z, is_label, lse, d_eps[:, 0], d_zeta[:, 0], m[:, 0], z[:, 0])


class _Parts(NamedTuple):
    loss: jax.Array  # [n]
    p: jax.Array  # [n, V_local], probabilities
    is_label: jax.Array  # [n, V_local]
    lse: jax.Array  # [n, 1]
    d_eps: jax.Array  # [n], derivative of the loss with respect to label_smoothing
    d_zeta: jax.Array  # [n], derivative of the loss with respect to z_loss
    shift: jax.Array  # [n], the (global) row maximum
    z: jax.Array  # [n], sum of exp(logits - shift) over the whole vocabulary


def _label_mask(y, v_local, cfg):
    """[n, V_local]: where each label sits in this shard's slice (no gather across shards)."""
    offset = 0 if cfg.axis_name is None else jax.lax.axis_index(cfg.axis_name) * v_local
    return jnp.arange(v_local, dtype=y.dtype)[None, :] + jnp.asarray(offset, y.dtype) == y[:, None]


def _dlogits(p, is_label, lse, coef, eps, zeta, cfg):
    """d loss / d logits, times the per-example coefficient."""
    if cfg.z_loss:
        p = p * (1 + 2 * zeta * lse)
    target = jnp.where(is_label, 1 - eps, 0) + (eps / cfg.vocab if cfg.smoothing else 0)
    return coef[:, None] * (p - target)


def _chunked(x, c, fill=0):
    """[n, ...] padded with `fill` to whole chunks of `c`: [steps, c, ...]."""
    pad = -x.shape[0] % c
    x = jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1), constant_values=fill)
    return x.reshape(-1, c, *x.shape[1:])


def _transposed(hc):
    """Each chunk of `hc` transposed, [steps, d, c], for dW's matmul: as a plain [d, c] @ [c, V]
    product it runs in XLA:CPU's fast kernel; with a transposed operand it took another path that
    allocated a chunk-sized buffer at every step (measured 1.19x slower at 8192 x 256 x 32768)."""
    return jnp.swapaxes(hc, 1, 2)


def _grad_step(dw, ht, w, p, is_label, lse, coef, eps, zeta, cfg):
    """Adds one chunk's share to dW; returns it with the chunk's d hidden."""
    g = _dlogits(p, is_label, lse, coef, eps, zeta, cfg).astype(w.dtype)
    dh = jnp.dot(g, w.T, preferred_element_type=eps.dtype)
    return dw + jnp.dot(ht, g, preferred_element_type=eps.dtype), dh


def _scan(h, w, y, coef, eps, zeta, cfg, grads):
    """Runs over chunks of tokens. Returns per example the loss, the shift, the normaliser and
    d loss / d eps; with `grads`, also the gradients of sum(coef * loss)."""
    n, d = h.shape
    c = cfg.chunk
    hc = _chunked(h, c)
    xs = (hc, _transposed(hc) if grads else None, _chunked(y, c))

    def step(dw, xs):
        h_i, ht_i, y_i, c_i = xs
        p = _chunk(h_i, w, y_i, eps, zeta, cfg)
        stats = (p.loss, p.shift, p.z, p.d_eps)
        if not grads:
            return dw, (stats, None, None)
        dw, dh = _grad_step(dw, ht_i, w, p.p, p.is_label, p.lse, c_i, eps, zeta, cfg)
        return dw, (stats, dh, jnp.stack([c_i @ p.d_eps, c_i @ p.d_zeta]))

    dw0 = _varying(jnp.zeros(w.shape, eps.dtype), h, w, coef) if grads else None
    dw, (stats, dh, d_opts) = jax.lax.scan(step, dw0, (*xs, _chunked(coef, c)))
    stats = tuple(a.reshape(-1)[:n] for a in stats)
    if not grads:
        return stats, None
    # Under shard_map these are per-device partial sums; the backward rules sum them over the
    # mesh axes along which the inputs are replicated, after scaling by the cotangent.
    d_eps, d_zeta = jnp.sum(d_opts, 0)
    return stats, (dh.reshape(-1, d)[:n], dw, d_eps, d_zeta)


def _scan_saved(h, w, y, coef, shift, z, eps, zeta, cfg):
    """The gradients of sum(coef * loss) from each example's shift and normaliser saved by the
    forward pass: per chunk one matmul, one exp per logit and the two gradient matmuls, with no
    max or sum over the vocabulary."""
    n, d = h.shape
    c = cfg.chunk

    def step(dw, xs):
        h_i, ht_i, y_i, c_i, m_i, z_i = xs
        logits = jnp.dot(h_i, w, preferred_element_type=eps.dtype)
        m_i, z_i = m_i[:, None], z_i[:, None]
        p = jnp.exp(logits - m_i) / z_i
        is_label = _label_mask(y_i, logits.shape[-1], cfg)
        return _grad_step(dw, ht_i, w, p, is_label, m_i + jnp.log(z_i), c_i, eps, zeta, cfg)

    hc = _chunked(h, c)
    xs = (hc, _transposed(hc), _chunked(y, c), _chunked(coef, c))
    xs = (*xs, _chunked(shift, c), _chunked(z, c, fill=1))  # padded rows: finite p, coef 0
    dw0 = _varying(jnp.zeros(w.shape, eps.dtype), h, w, coef, shift, z)
    dw, dh = jax.lax.scan(step, dw0, xs)
    return dh.reshape(-1, d)[:n], dw


def _vma(x):
    """The shard_map mesh axes along which `x` varies (none outside shard_map)."""
    aval = jax.typeof(x)
    manual = getattr(aval, "manual_axis_type", None)  # jax >= 0.10; `vma` before
    return frozenset(manual.varying if manual is not None else getattr(aval, "vma", ()))


def _varying(x, *like):
    """Marks `x` as varying along every mesh axis that any of `like` varies along."""
    axes = tuple(sorted(frozenset().union(*map(_vma, like)) - _vma(x), key=str))
    return jax.lax.pcast(x, axes, to="varying") if axes else x


def _sum_to(grad, primal):
    """The cotangent of a value replicated along a mesh axis is the sum over that axis."""
    axes = tuple(sorted(_vma(grad) - _vma(primal), key=str))
    return jax.lax.psum(grad, axes) if axes else grad


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _weighted_total(h, w, y, coef, eps, zeta, cfg):
    """sum(coef * loss): the gradients are computed in the forward pass (6·N·D·V flops)."""
    (loss, *_), _ = _scan(h, w, y, coef, eps, zeta, cfg, grads=False)
    return jnp.sum(coef * loss)


def _weighted_total_fwd(h, w, y, coef, eps, zeta, cfg):
    (loss, *_), grads = _scan(h, w, y, coef, eps, zeta, cfg, grads=True)
    return jnp.sum(coef * loss), (grads, h, w, coef, eps, zeta)


def _weighted_total_bwd(cfg, res, g):
    (dh, dw, d_eps, d_zeta), h, w, coef, eps, zeta = res
    return _cotangents((dh * g, dw * g, d_eps * g, d_zeta * g), h, w, coef, eps, zeta)


def _cotangents(grads, h, w, coef, eps, zeta):
    """Gradients summed over the mesh axes their inputs are replicated on, in their dtypes."""
    dh, dw, d_eps, d_zeta = grads
    return (
        _sum_to(dh, h).astype(h.dtype),
        _sum_to(dw, w).astype(w.dtype),
        None,  # integer labels
        jnp.zeros_like(coef),  # example weights: fixed by the labels, not learned
        _sum_to(d_eps, eps),
        _sum_to(d_zeta, zeta),
    )


_weighted_total.defvjp(_weighted_total_fwd, _weighted_total_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _per_example(h, w, y, keep, eps, zeta, cfg):
    """keep * loss per example: an arbitrary cotangent per example, so the backward pass
    recomputes the logits (from each example's saved shift and normaliser)."""
    (loss, *_), _ = _scan(h, w, y, keep, eps, zeta, cfg, grads=False)
    return keep * loss


def _per_example_fwd(h, w, y, keep, eps, zeta, cfg):
    (loss, shift, z, d_eps), _ = _scan(h, w, y, keep, eps, zeta, cfg, grads=False)
    return keep * loss, (h, w, y, keep, eps, zeta, shift, z, d_eps)


def _per_example_bwd(cfg, res, g):
    h, w, y, keep, eps, zeta, shift, z, d_eps = res
    coef = keep * g
    dh, dw = _scan_saved(h, w, y, coef, shift, z, eps, zeta, cfg)
    lse = shift + jnp.log(z)
    d_zeta = coef @ (lse * lse) if cfg.z_loss else jnp.zeros_like(eps)
    return _cotangents((dh, dw, coef @ d_eps, d_zeta), h, w, keep, eps, zeta)


_per_example.defvjp(_per_example_fwd, _per_example_bwd)


def fused_cross_entropy(
    hidden,
    weight,
    labels,
    ignore_index,
    label_smoothing,
    z_loss,
    reduction,
    chunk_size,
    axis_name=None,
    batch_axis_name=None,
):
    """Validation, flattening and reduction around the two custom-vjp kernels."""
    hidden = _checks.check_float(hidden, "hidden")
    weight = _checks.check_float(weight, "weight")
    _checks.check_reduction(reduction)
    _checks.check_unit_interval(label_smoothing, "label_smoothing")
    if hidden.ndim < 1 or weight.ndim != 2 or weight.shape[0] != hidden.shape[-1]:
        raise ValueError(
            f"weight must be [D, V] with D = hidden.shape[-1]; got hidden.shape={hidden.shape} "
            f"and weight.shape={weight.shape}"
        )
    if hidden.dtype != weight.dtype:
        raise TypeError(
            f"hidden.dtype={hidden.dtype} and weight.dtype={weight.dtype} differ; cast one of them"
        )
    acc = compute_dtype(hidden.dtype)
    v_local = weight.shape[1]
    shards = 1 if axis_name is None else jax.lax.axis_size(axis_name)
    vocab = v_local * shards
    labels = _checks.check_labels(labels, hidden.shape, hidden.ndim - 1, "hidden")
    _checks.check_label_range(labels, vocab, ignore_index)
    if chunk_size is None:
        chunk_size = max(_MIN_CHUNK, _CHUNK_ELEMENTS // v_local // 8 * 8)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    h = hidden.reshape(-1, hidden.shape[-1])
    n = h.shape[0]
    cfg = _Config(
        min(chunk_size, max(n, 1)),
        vocab,
        not is_static_zero(label_smoothing),
        not is_static_zero(z_loss),
        axis_name,
    )
    y, keep, valid, eps, zeta = flat_targets(
        labels, vocab, ignore_index, label_smoothing, z_loss, acc
    )
    keep = keep.astype(acc)
    if reduction == "none":
        loss = _per_example(h, weight, y, keep, eps, zeta, cfg)
        return jnp.where(valid, loss, jnp.nan).reshape(labels.shape)
    denom = batch_sum(jnp.sum(keep), batch_axis_name) if reduction == "mean" else jnp.ones((), acc)
    coef = jnp.where(denom > 0, keep / jnp.where(denom > 0, denom, 1), 0)
    total = batch_sum(_weighted_total(h, weight, y, coef, eps, zeta, cfg), batch_axis_name)
    invalid = batch_sum(jnp.sum(~valid), batch_axis_name)  # an out-of-range label under jit
    return jnp.where(invalid == 0, total, jnp.nan)


def flat_targets(labels, vocab, ignore_index, label_smoothing, z_loss, acc):
    """Flat labels (ignored ones moved to class 0), the kept and valid masks, and the options
    as arrays of the compute dtype `acc` (which is also the dtype of the logits throughout)."""
    y = labels.reshape(-1)
    keep = jnp.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    valid = (y >= 0) & (y < vocab) | ~keep  # an out-of-range label gives NaN under jit
    eps, zeta = jnp.asarray(label_smoothing, acc), jnp.asarray(z_loss, acc)
    return jnp.where(keep, y, 0), keep, valid, eps, zeta


def batch_sum(x, batch_axis_name):
    """Sums over the data-parallel mesh axis, if there is one."""
    return x if batch_axis_name is None else jax.lax.psum(x, batch_axis_name)


def linear_softmax_cross_entropy(
    hidden: Any,
    weight: Any,
    labels: Any,
    *,
    ignore_index: int | None = None,
    label_smoothing: Any = 0.0,
    z_loss: Any = 0.0,
    reduction: Reduction = "none",
    chunk_size: int | None = None,
) -> jax.Array:
    r"""Cross-entropy of ``softmax(hidden @ weight)`` against integer labels, fused.

    .. math::
        \ell_i = (1-\varepsilon)(-\log p_{i,y_i}) + \frac{\varepsilon}{V}\sum_c (-\log p_{i,c})
                 + \zeta\, (\log Z_i)^2,

        p_i = \operatorname{softmax}(h_i W),\ \log Z_i = \operatorname{logsumexp}(h_i W)

    Equal in value and in gradients (with respect to ``hidden`` and ``weight``) to
    ``softmax_cross_entropy_with_integer_labels(hidden @ weight, labels, ...)``, but the
    ``[N, V]`` logits are never held: a scan over chunks of ``chunk_size`` tokens computes
    each chunk's logits, loss and gradient and discards them. With ``reduction="mean"`` or
    ``"sum"`` the gradients are computed during the forward pass (6·N·D·V flops in all, as for
    the materialised version); with ``"none"`` the backward pass recomputes the logits. A call
    that is not differentiated computes only the loss. Logits and sums are float32 (or wider),
    whatever the inputs' dtype; gradients come back in the inputs' dtypes. Being a
    ``custom_vjp``, it supports reverse-mode differentiation (``grad``, ``vjp``, and
    reverse-over-reverse) but not ``jvp``/``jacfwd``.

    Args:
      hidden: ``[..., D]`` final hidden states.
      weight: ``[D, V]`` output projection (a flax ``Dense`` kernel; a tied embedding ``E`` of
        shape ``[V, D]`` passes ``E.T``).
      labels: integer labels, ``hidden.shape[:-1]``.
      ignore_index: a label value whose tokens contribute 0 and no weight.
      label_smoothing: :math:`\varepsilon \in [0, 1]`.
      z_loss: :math:`\zeta \ge 0`, the weight of the squared log-normaliser.
      reduction: ``"none"``, ``"sum"``, or ``"mean"`` over the non-ignored tokens (0 when there
        are none).
      chunk_size: tokens per step of the scan; by default :math:`\max(256, 2^{23} / V)`, which
        keeps each chunk's logits near 32 MiB (in float32) up to :math:`V = 32768` and at 256
        tokens beyond. Each step reads and writes the whole ``[D, V]`` weight gradient, so
        short chunks cost time; long ones cost memory.

    Returns:
      Per-token losses of shape ``labels.shape`` (float32 or wider), or a scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxloss
      >>> h = jax.random.normal(jax.random.key(0), (6, 4))
      >>> w = jax.random.normal(jax.random.key(1), (4, 10))
      >>> y = jnp.array([1, 2, 3, 4, 5, 6])
      >>> fused = jaxloss.linear_softmax_cross_entropy(h, w, y, reduction="mean", chunk_size=4)
      >>> plain = jaxloss.softmax_cross_entropy_with_integer_labels(h @ w, y, reduction="mean")
      >>> bool(jnp.allclose(fused, plain, rtol=1e-5))
      True
    """
    return fused_cross_entropy(
        hidden, weight, labels, ignore_index, label_smoothing, z_loss, reduction, chunk_size
    )
