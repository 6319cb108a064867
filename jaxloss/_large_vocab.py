"""Fused linear + loss that never holds the [N, V] logits.

A scan over chunks of tokens computes each chunk's logits, applies a per-chunk loss to them
(`Config.loss`: here the integer-label cross-entropy, `_cross_entropy.labelled_loss`, the
definition every path shares; the distillation loss in `_distillation`) and pulls its
gradient back through the chunk's two matmuls, under a custom_vjp whose backward pass holds
one chunk too. The vocabulary-parallel version is the same scan with the vocabulary's sums
taken over a mesh axis.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss._cross_entropy import LabelOptions, labelled_loss, prepare
from jaxloss._dtypes import compute_dtype
from jaxloss._labels import Labels, example_weight
from jaxloss._reduction import AxisName, Reduction, all_sum, reduce, sum_to, varying

# Each step reads and writes the whole [D, V] weight gradient whatever the chunk's length, so
# the default chunk holds about CHUNK_ELEMENTS logits and at least MIN_CHUNK tokens.
CHUNK_ELEMENTS = 2**23
MIN_CHUNK = 256


class Config(NamedTuple):
    """Static options of one fused call (hashable: custom_vjp takes it as nondiff)."""

    chunk: int  # tokens per step
    axis_name: AxisName  # mesh axis the vocabulary is split over, or None
    loss: Callable[..., jax.Array]  # loss(logits, hyper, tokens, consts, config) -> [chunk]
    static: Hashable  # the loss's own static options


class Inputs(NamedTuple):
    """What each chunk's loss needs besides hidden and weight."""

    tokens: Any  # arrays of one row per token, [N, ...], cut into chunks; no gradient
    consts: Any  # arrays every chunk reads whole; no gradient
    hyper: tuple[jax.Array, ...]  # scalars, differentiable


def chunked(x: jax.Array, c: int) -> jax.Array:
    """[n, ...] padded with zeros to whole chunks of `c`: [steps, c, ...]."""
    pad = -x.shape[0] % c
    x = jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1))
    return x.reshape(-1, c, *x.shape[1:])


def _scan(
    h: jax.Array, w: jax.Array, inputs: Inputs, cot: jax.Array | None, cfg: Config
) -> tuple[jax.Array, Any]:
    """Per-example losses [n]; with cotangents `cot` [n], also the gradients of Σ cot·loss
    with respect to hidden, weight and the hyperparameters."""
    n, d = h.shape
    acc = compute_dtype(h.dtype)
    hc = chunked(h, cfg.chunk)
    # dW's matmul takes each chunk transposed, [d, c] @ [c, V], rather than a transposed operand.
    ht = None if cot is None else jnp.swapaxes(hc, 1, 2)
    tokens = jax.tree.map(lambda a: chunked(a, cfg.chunk), inputs.tokens)
    cots = None if cot is None else chunked(cot, cfg.chunk)

    def loss(logits: jax.Array, hyper: tuple[jax.Array, ...], tokens: Any) -> jax.Array:
        return cfg.loss(logits, hyper, tokens, inputs.consts, cfg)

    def step(carry: Any, xs: Any) -> tuple[Any, Any]:
        h_i, ht_i, tokens_i, cot_i = xs
        logits = jnp.dot(h_i, w, preferred_element_type=acc)
        if cot is None:
            return carry, (loss(logits, inputs.hyper, tokens_i), None)
        values, pull = jax.vjp(functools.partial(loss, tokens=tokens_i), logits, inputs.hyper)
        g, d_hyper = pull(varying(cot_i.astype(values.dtype), values))
        g = g.astype(w.dtype)
        dw, d_hyper_sum = carry
        dw = dw + jnp.dot(ht_i, g, preferred_element_type=acc)
        d_hyper_sum = jax.tree.map(jnp.add, d_hyper_sum, d_hyper)
        return (dw, d_hyper_sum), (values, jnp.dot(g, w.T, preferred_element_type=acc))

    carry = None
    if cot is not None:
        dw0 = varying(jnp.zeros(w.shape, acc), h, w, cot, *jax.tree.leaves(inputs))
        carry = (dw0, jax.tree.map(jnp.zeros_like, inputs.hyper))
    carry, (values, dh) = jax.lax.scan(step, carry, (hc, ht, tokens, cots))
    values = values.reshape(-1)[:n]
    if cot is None:
        return values, None
    dw, d_hyper = carry  # type: ignore[misc]
    return values, (dh.reshape(-1, d)[:n], dw, d_hyper)


def _cotangents(grads: Any, scale: jax.Array, h: jax.Array, w: jax.Array, inputs: Inputs) -> Any:
    """Gradients times `scale`, summed over the mesh axes their inputs are replicated on, in
    their inputs' dtypes; tokens and constants get none."""
    dh, dw, d_hyper = grads
    d_hyper = tuple(sum_to(d * scale, x) for d, x in zip(d_hyper, inputs.hyper, strict=True))
    nothing = functools.partial(jax.tree.map, lambda _: None)
    none = Inputs(nothing(inputs.tokens), nothing(inputs.consts), d_hyper)
    return (sum_to(dh * scale, h).astype(h.dtype), sum_to(dw * scale, w).astype(w.dtype), none)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _total(h: jax.Array, w: jax.Array, inputs: Inputs, cfg: Config) -> jax.Array:
    """Σ loss over the tokens; the gradients are computed in the forward pass (6·N·D·V flops)."""
    return jnp.sum(_scan(h, w, inputs, None, cfg)[0])


def _total_fwd(h: jax.Array, w: jax.Array, inputs: Inputs, cfg: Config) -> tuple[Any, ...]:
    values, grads = _scan(h, w, inputs, jnp.ones(h.shape[0], compute_dtype(h.dtype)), cfg)
    return jnp.sum(values), (grads, h, w, inputs)


def _total_bwd(cfg: Config, res: tuple[Any, ...], g: jax.Array) -> tuple[Any, ...]:
    grads, h, w, inputs = res
    out: tuple[Any, ...] = _cotangents(grads, g, h, w, inputs)
    return out


_total.defvjp(_total_fwd, _total_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _per_token(h: jax.Array, w: jax.Array, inputs: Inputs, cfg: Config) -> jax.Array:
    """Loss per token: an arbitrary cotangent per token, so the backward pass runs the scan
    again (8·N·D·V flops in all)."""
    return _scan(h, w, inputs, None, cfg)[0]


def _per_token_fwd(h: jax.Array, w: jax.Array, inputs: Inputs, cfg: Config) -> tuple[Any, ...]:
    return _scan(h, w, inputs, None, cfg)[0], (h, w, inputs)


def _per_token_bwd(cfg: Config, res: tuple[Any, ...], g: jax.Array) -> tuple[Any, ...]:
    h, w, inputs = res
    _, grads = _scan(h, w, inputs, g, cfg)
    out: tuple[Any, ...] = _cotangents(grads, jnp.ones((), g.dtype), h, w, inputs)
    return out


_per_token.defvjp(_per_token_fwd, _per_token_bwd)


def check_projection(
    hidden: ArrayLike, weight: ArrayLike, names: tuple[str, str] = ("hidden", "weight")
) -> tuple[jax.Array, jax.Array]:
    """`hidden` [..., D] and `weight` [D, V] of one floating dtype."""
    h = _checks.check_float(hidden, names[0])
    w = _checks.check_float(weight, names[1])
    if h.ndim < 1 or w.ndim != 2 or w.shape[0] != h.shape[-1]:
        raise ValueError(
            f"{names[1]} must be [D, V] with D = {names[0]}.shape[-1]; got "
            f"{names[0]}.shape={h.shape} and {names[1]}.shape={w.shape}"
        )
    if h.dtype != w.dtype:
        raise TypeError(
            f"{names[0]}.dtype={h.dtype} and {names[1]}.dtype={w.dtype} differ; cast one of them"
        )
    return h, w


def chunk_length(chunk_size: int | None, v_local: int, n: int, share: int = 1) -> int:
    """`chunk_size`, or by default about CHUNK_ELEMENTS / share logits and at least
    MIN_CHUNK / share tokens (a loss that holds `share` times as many [chunk, V] arrays per
    step takes chunks `share` times shorter)."""
    if chunk_size is None:
        elements = CHUNK_ELEMENTS // share // max(v_local, 1) // 8 * 8
        chunk_size = max(MIN_CHUNK // share, elements)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return min(chunk_size, max(n, 1))


def fused(
    h: jax.Array,
    w: jax.Array,
    inputs: Inputs,
    cfg: Config,
    reduction: Reduction,
    count: jax.Array | None,
    batch_axis_name: AxisName = None,
) -> jax.Array:
    """The chunked loss of tokens `h` [N, D]: per token ([N]), or its sum or mean. "mean"
    divides by `count` (by N when None); with `batch_axis_name` over the global batch."""
    if reduction == "none":
        return _per_token(h, w, inputs, cfg)
    if count is None:
        count = jnp.asarray(h.shape[0], compute_dtype(h.dtype))
    return reduce(_total(h, w, inputs, cfg)[None], reduction, count[None], batch_axis_name)


def _label_chunk(
    logits: jax.Array, hyper: tuple[jax.Array, ...], lab: Labels, consts: Any, cfg: Config
) -> jax.Array:
    """The integer-label cross-entropy of one chunk; `cfg.static` says which of label
    smoothing, z-loss and the soft cap are on."""
    where, class_weights = consts
    terms = zip(hyper, cast(tuple[bool, ...], cfg.static), (0, 0, None), strict=True)
    eps, zeta, cap = (v if on else off for v, on, off in terms)
    opts = LabelOptions(eps, zeta, cap, class_weights)
    return labelled_loss(logits, lab, where, opts, 1, cfg.axis_name)[0]


def fused_cross_entropy(
    hidden: ArrayLike,
    weight: ArrayLike,
    labels: ArrayLike,
    options: dict[str, Any],
    reduction: Reduction,
    chunk_size: int | None,
    axis_name: AxisName = None,
    batch_axis_name: AxisName = None,
) -> jax.Array:
    """Validation, flattening and reduction around the chunked scan; `options` are the keyword
    options shared with softmax_cross_entropy_with_integer_labels."""
    h, w = check_projection(hidden, weight)
    _checks.check_reduction(reduction)
    y = _checks.check_labels(labels, h.shape, h.ndim - 1, "hidden")
    h, v_local = h.reshape(-1, h.shape[-1]), w.shape[1]
    where = options.pop("where")
    if where is not None:
        where = _checks.check_class_vector(where, v_local, "where").astype(bool)
    lab, opts = prepare(
        (h.shape[0], v_local), h.dtype, y.reshape(-1), 1, "hidden", options, axis_name
    )
    eps, zeta, cap = opts[:3]
    terms = (not isinstance(eps, (int, float)), not isinstance(zeta, (int, float)), cap is not None)
    cfg = Config(chunk_length(chunk_size, v_local, h.shape[0]), axis_name, _label_chunk, terms)
    acc = compute_dtype(h.dtype)
    # An unused term's hyperparameter is any value.
    hyper = tuple(jnp.asarray(v if on else 1, acc) for v, on in zip(opts[:3], terms, strict=True))
    inputs = Inputs(lab, (where, opts.class_weights), hyper)
    count = None
    if reduction != "none":
        has_class = None
        if where is not None:
            has_class = all_sum(jnp.sum(where, dtype=jnp.int32), axis_name) > 0
            has_class = jnp.broadcast_to(has_class, lab.label.shape)
        weight_ = example_weight(lab, has_class, acc)
        count = None if weight_ is None else jnp.sum(weight_)
    out = fused(h, w, inputs, cfg, reduction, count, batch_axis_name)
    return out.reshape(y.shape) if reduction == "none" else out


def linear_softmax_cross_entropy(
    hidden: ArrayLike,
    weight: ArrayLike,
    labels: ArrayLike,
    *,
    where: ArrayLike | None = None,
    ignore_index: int | None = None,
    class_weights: ArrayLike | None = None,
    label_smoothing: ArrayLike = 0.0,
    z_loss: ArrayLike = 0.0,
    logit_soft_cap: ArrayLike | None = None,
    reduction: Reduction = "none",
    chunk_size: int | None = None,
) -> jax.Array:
    r"""Cross-entropy of ``softmax(hidden @ weight)`` against integer labels, fused.

    .. math::
        \ell_i = w_{y_i}\big[(1-\varepsilon)(-\log p_{i,y_i}) + \zeta\,(\log Z_i)^2\big]
                 + \frac{\varepsilon}{C}\sum_c w_c (-\log p_{i,c}),

        p_i = \operatorname{softmax}(h_i W),\ \log Z_i = \operatorname{logsumexp}(h_i W)

    Equal in value and in gradients (with respect to ``hidden`` and ``weight``) to
    ``softmax_cross_entropy_with_integer_labels(hidden @ weight, labels, ...)`` with the same
    options, but the ``[N, V]`` logits are never held: a scan over chunks of ``chunk_size``
    tokens computes each chunk's logits, loss and gradient and discards them. With
    ``reduction="mean"`` or ``"sum"`` the gradients are computed during the forward pass
    (6·N·D·V flops in all, as for the materialised version); with ``"none"`` the backward pass
    runs the scan again. Logits and sums are float32 (or wider) whatever the inputs' dtype;
    gradients come back in the inputs' dtypes. Being a ``custom_vjp``, it supports
    reverse-mode differentiation (``grad``, ``vjp``) but not ``jvp``/``jacfwd``.

    Args:
      hidden: ``[..., D]`` final hidden states.
      weight: ``[D, V]`` output projection (a flax ``Dense`` kernel; a tied embedding ``E`` of
        shape ``[V, D]`` passes ``E.T``).
      labels: integer labels, ``hidden.shape[:-1]``.
      where: boolean ``[V]``: classes to include, e.g. ``jnp.arange(V) < vocab`` for a
        vocabulary padded to a multiple of 128. Excluded classes get probability 0; the
        smoothing sum and :math:`C` run over the included classes.
      ignore_index: a label value whose tokens contribute 0 and no weight.
      class_weights: ``[V]`` weights :math:`w` (1 when None).
      label_smoothing: :math:`\varepsilon \in [0, 1]`.
      z_loss: :math:`\zeta \ge 0`, the weight of the squared log-normaliser.
      logit_soft_cap: :math:`c > 0`: each chunk's float32 logits become :math:`c \tanh(x / c)`
        first (the materialised loss rounds capped half-precision logits to their dtype).
      reduction: ``"none"``, ``"sum"``, or ``"mean"``: the sum divided by :math:`\sum w_y` over
        the non-ignored tokens (0 when there are none).
      chunk_size: tokens per step of the scan; by default :math:`\max(256, 2^{23} / V)`. Each
        step reads and writes the whole ``[D, V]`` weight gradient, so short chunks cost time;
        long ones cost memory (the performance notes have the measurements).

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
    options = dict(
        where=where,
        ignore_index=ignore_index,
        class_weights=class_weights,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        logit_soft_cap=logit_soft_cap,
    )
    return fused_cross_entropy(hidden, weight, labels, options, reduction, chunk_size)
