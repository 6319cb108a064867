"""Connectionist temporal classification: -log p(labels | logits) summed over alignments.

The n labels l_1..l_n are interleaved with blanks, ∅ l_1 ∅ l_2 ... l_n ∅: blank states b_0..b_n
and label states l_1..l_n, held apart ([B, N + 1] and [B, N]). An alignment visits one state
per frame: it stays, moves to the next state, or skips a blank between two different labels.
In log space, with emissions e_t(k) = log p_t(k) = x_t(k) - log Z_t (log Z from the softmax
core) and LAE = logaddexp, the forward recursion is

    b_j ← LAE(b_j, l_j) + e_t(∅)                       (l_0 = -inf)
    l_j ← LAE(l_j, b_{j-1}' if l_j = l_{j-1} else LAE(b_{j-1}, l_{j-1})) + e_t(l_j)

where the second argument reuses the blank update (b_{j-1}' = b_{j-1} before the skip), so
each state costs one LAE; log p = LAE(b_n, l_n). The backward recursion β is its mirror, and
the gradient with respect to frame t's logits is p_t - γ_t, γ_t(k) the summed occupancies
exp(α_t + β_t - log p) of the states of symbol k. A padded frame leaves α and β unchanged and
gets a zero gradient. The custom_vjp stores the emissions and the label states' α, and
computes β, the occupancies (the blank states' as one minus the labels') and each frame's
gradient inside one reverse recursion, subtracting γ from g·p in place.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss._backend import Rows
from jaxloss._reduction import Reduction, reduce
from jaxloss._softmax import softmax_parts


class Lattice(NamedTuple):
    """The label sequences and where their alignments may end; no derivative."""

    labels: jax.Array  # [B, N] (padded slots hold the blank)
    skip: jax.Array  # [B, N] label j may be entered from label j - 1 (they differ)
    last_blank: jax.Array  # [B, N + 1] the blank after the last label
    last_label: jax.Array  # [B, N] the last label (none for an empty sequence)
    pad: jax.Array  # [B, T] True for padded frames


def _lattice(labels: jax.Array, lengths: jax.Array, pad: jax.Array) -> Lattice:
    b, n = labels.shape
    skip = jnp.concatenate([jnp.zeros((b, 1), bool), labels[:, 1:] != labels[:, :-1]], 1)
    j = jnp.arange(n + 1, dtype=lengths.dtype)[None, :]
    return Lattice(labels, skip, j == lengths[:, None], j[:, 1:] == lengths[:, None], pad)


def _log_add(a: jax.Array, b: jax.Array) -> jax.Array:
    """log(e^a + e^b) = max + log1p(u), u = e^-|a - b| ≤ 1; -inf when both are.

    Below float64, log1p(u) is u - u²/2 + u³/3 under 2^-8 (relative error under u³/4 <
    2^-26) and log(1 + u) above (absolute error 2^-24, below the rounding of the sums it is
    added to), which XLA:CPU computes faster than log1p."""
    if a.dtype == jnp.float64:
        return jnp.logaddexp(a, b)
    m = jnp.maximum(a, b)
    u = jnp.exp(-jnp.abs(a - b))  # NaN when both are -inf: the outer where drops it
    tail = jnp.where(u < 2.0**-8, u * (1 - u * (0.5 - u / 3)), jnp.log(1 + u))
    return jnp.where(m == -jnp.inf, m, m + tail)


def _before(x: jax.Array, fill: float) -> jax.Array:
    """[B, m] -> [B, m + 1]: position i holds x[i - 1], position 0 `fill`."""
    return jnp.pad(x, ((0, 0), (1, 0)), constant_values=fill)


def _after(x: jax.Array, fill: Any) -> jax.Array:
    """[B, m] -> [B, m]: position i holds x[i + 1], the last `fill`."""
    return jnp.pad(x[:, 1:], ((0, 0), (0, 1)), constant_values=fill)


class Emissions(NamedTuple):
    blank: jax.Array  # [T, B, 1] log p_t(∅)
    labels: jax.Array  # [T, B, N] log p_t(l_i)


def _emissions(x: jax.Array, log_z: jax.Array, lat: Lattice, blank: int) -> Emissions:
    """Gathered by label index straight into frame-major order; never above 0 (log Z is at
    least the largest logit)."""
    b, t = x.shape[:2]
    log_z = log_z.T[..., None]
    frames, rows = jnp.arange(t)[:, None, None], jnp.arange(b)[None, :, None]
    picked = x[rows, frames, lat.labels[None]].astype(log_z.dtype)
    blanks = jnp.swapaxes(x[:, :, blank : blank + 1], 0, 1).astype(log_z.dtype)
    return Emissions(blanks - log_z, picked - log_z)


States = tuple[jax.Array, jax.Array]  # blank states [B, N + 1], label states [B, N]


def _unless(pad: jax.Array, old: States, new: States) -> States:
    """`new`, or `old` where the frame is padded (`pad` [B, 1])."""
    return jnp.where(pad, old[0], new[0]), jnp.where(pad, old[1], new[1])


def _forward_step(alpha: States, e: States, lat: Lattice) -> States:
    blanks, labels = alpha
    # Blank i is entered from itself or label i - 1; label i from itself, blank i, or (when
    # it differs from it) label i - 1, whose sum with blank i is blank i's update.
    blanks_new = _log_add(blanks, _before(labels, -jnp.inf))
    entered = jnp.where(lat.skip, blanks_new[:, :-1], blanks[:, :-1])
    return blanks_new + e[0], _log_add(labels, entered) + e[1]


def _backward_step(beta: States, e: States, lat: Lattice) -> States:
    """β one frame earlier: the mirror of `_forward_step`."""
    blanks, labels = beta[0] + e[0], beta[1] + e[1]  # emit at this frame, then finish
    blanks_new = _log_add(blanks, jnp.pad(labels, ((0, 0), (0, 1)), constant_values=-jnp.inf))
    onward = jnp.where(_after(lat.skip, False), blanks_new[:, 1:], blanks[:, 1:])
    return blanks_new, _log_add(labels, onward)


def _alphas(e: Emissions, lat: Lattice, keep: bool) -> Any:
    """α after the last frame, and with `keep` the label states' α after every frame
    ([T, B, N]); a padded frame leaves α as it is."""
    b, n = lat.labels.shape
    dtype = e.blank.dtype
    start = (
        jnp.full((b, n + 1), -jnp.inf, dtype).at[:, 0].set(0),
        jnp.full((b, n), -jnp.inf, dtype),
    )

    def step(alpha: States, xs: Any) -> tuple[States, Any]:
        e_blank, e_labels, pad = xs
        new = _forward_step(alpha, (e_blank, e_labels), lat)
        alpha = _unless(pad[:, None], alpha, new)
        return alpha, alpha[1] if keep else None

    return jax.lax.scan(step, start, (e.blank, e.labels, lat.pad.T))


def _log_likelihood(alpha: States, lat: Lattice) -> jax.Array:
    """log p(labels | logits) [B]: -inf when no alignment exists."""
    blanks = jnp.sum(jnp.where(lat.last_blank, alpha[0], 0), axis=1)
    labels = jnp.max(jnp.where(lat.last_label, alpha[1], -jnp.inf), axis=1, initial=-jnp.inf)
    return jnp.logaddexp(blanks, labels)


def _gradient(
    x: jax.Array, log_z: jax.Array, lat: Lattice, res: tuple[Any, ...], g: jax.Array, blank: int
) -> jax.Array:
    """g_b · (p_t - γ_t) for every frame, written frame by frame inside the β recursion run
    backwards; 0 for padded frames and for sequences without an alignment."""
    e, alphas, log_p = res
    possible = jnp.isfinite(log_p)
    g = jnp.where(possible, g, 0)[:, None]
    # Double-where: a sequence without alignment must not bring inf - inf into the occupancies.
    log_p = jnp.where(possible, log_p, 0)[:, None]
    rows = jnp.arange(x.shape[0])[:, None]

    def step(carry: tuple[States, jax.Array], xs: Any) -> tuple[Any, None]:
        beta, dx = carry
        t, e_blank, e_labels, alpha_l, pad = xs
        pad = pad[:, None]
        weight = jnp.where(pad, 0, g)
        labels = jnp.exp(alpha_l + beta[1] - log_p)
        # A kept frame's occupancies sum to one: the blank states hold what the labels do not.
        blanks = 1 - jnp.sum(labels, axis=1, keepdims=True)
        row = jax.lax.dynamic_index_in_dim(dx, t, 1, False)
        row = (
            row.at[rows, lat.labels]
            .add(-weight * labels)
            .at[:, blank : blank + 1]
            .add(-weight * blanks)
        )
        dx = jax.lax.dynamic_update_index_in_dim(dx, row, t, 1)
        new = _backward_step(beta, (e_blank, e_labels), lat)
        beta = _unless(pad, beta, new)
        return (beta, dx), None

    def finish(last: jax.Array) -> jax.Array:  # β after the last frame: 0 where alignments end
        return jnp.where(last, 0, -jnp.inf).astype(log_z.dtype)

    end = (finish(lat.last_blank), finish(lat.last_label))
    # g·p of every kept frame at once; the scan subtracts g·γ frame by frame, in place.
    scale = jnp.where(lat.pad, 0, g)[..., None]
    # Double-where: a padded frame's logits may be anything, -inf or NaN included.
    probs = jnp.exp(jnp.where(lat.pad[..., None], 0, x.astype(log_z.dtype) - log_z[..., None]))
    dense = jnp.where(lat.pad[..., None], 0, scale * probs)
    xs = (jnp.arange(x.shape[1]), e.blank, e.labels, alphas, lat.pad.T)
    (_, dx), _ = jax.lax.scan(step, (end, dense), xs, reverse=True)
    return dx.astype(x.dtype)


def _frame_log_z(x: jax.Array) -> jax.Array:
    """log Z of every frame, [B, T], from the softmax core."""
    parts = softmax_parts(x, None, None, Rows(2, None, False))
    return (parts.shift + parts.log_z)[..., 0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _nll(x: jax.Array, lat: Lattice, blank: int) -> jax.Array:
    """-log p(labels | logits) [B], unclamped; +inf without an alignment."""
    alpha, _ = _alphas(_emissions(x, _frame_log_z(x), lat, blank), lat, keep=False)
    return -_log_likelihood(alpha, lat)


def _nll_fwd(x: jax.Array, lat: Lattice, blank: int) -> tuple[jax.Array, Any]:
    log_z = _frame_log_z(x)
    e = _emissions(x, log_z, lat, blank)
    alpha, alphas = _alphas(e, lat, keep=True)
    log_p = _log_likelihood(alpha, lat)
    return -log_p, (x, log_z, lat, (e, alphas, log_p))


def _nll_bwd(blank: int, res: Any, g: jax.Array) -> tuple[jax.Array, None]:
    x, log_z, lat, lattices = res
    return _gradient(x, log_z, lat, lattices, g, blank), None


_nll.defvjp(_nll_fwd, _nll_bwd)


def _check_paddings(paddings: Any, shape: tuple[int, ...], name: str, of: str) -> jax.Array:
    """Padding indicators (1 or True: padded) of `shape`, as booleans."""
    pad = jnp.asarray(paddings)
    if pad.shape != shape:
        raise ValueError(f"{name}.shape={pad.shape} must be {of}, {shape}")
    return pad if pad.dtype == bool else pad > 0


def _check_labels(labels: jax.Array, lengths: jax.Array, classes: int, blank: int) -> jax.Array:
    """Whether each sequence's unpadded labels are valid classes other than the blank; raises
    on the first that is not when the labels are concrete."""
    kept = jnp.arange(labels.shape[1], dtype=lengths.dtype)[None, :] < lengths[:, None]
    bad = kept & ((labels < 0) | (labels >= classes) | (labels == blank))
    if _checks.is_concrete(bad) and bool(jnp.any(bad)):
        pos = tuple(int(i) for i in jnp.argwhere(bad)[0])
        raise ValueError(
            f"labels must lie in [0, {classes}) and differ from blank_id={blank} where "
            f"label_paddings is 0; labels{list(pos)} = {int(labels[pos])}"
        )
    return ~jnp.any(bad, axis=1)


def _check_right_padded(pad: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Label lengths [B], and whether each row of label_paddings is 0s then 1s; raises on the
    first row that is not when the paddings are concrete."""
    lengths = jnp.sum(~pad, axis=1, dtype=jnp.int32)
    expected = jnp.arange(pad.shape[1], dtype=lengths.dtype)[None, :] >= lengths[:, None]
    right = jnp.all(pad == expected, axis=1)
    if _checks.is_concrete(right) and not bool(jnp.all(right)):
        row = int(jnp.argmin(right))
        raise ValueError(
            "label_paddings must be right-padded (0s, then 1s) in every row; row "
            f"{row} is {jnp.asarray(pad[row], int).tolist()}"
        )
    return lengths, right


def ctc_loss(
    logits: ArrayLike,
    logit_paddings: ArrayLike,
    labels: ArrayLike,
    label_paddings: ArrayLike,
    *,
    blank_id: int = 0,
    reduction: Reduction = "none",
    zero_infinity: bool = False,
) -> jax.Array:
    r"""Connectionist temporal classification: the negative log-likelihood of a label sequence,
    summed over all its alignments to the frames.

    .. math::
        \ell_b = -\log \sum_{\pi \in \mathcal{B}^{-1}(y_b)} \prod_t p_t(\pi_t),
        \qquad p_t = \operatorname{softmax}(x_{b,t})

    where :math:`\mathcal{B}` removes repeated symbols and then blanks, and :math:`t` runs
    over the unpadded frames. Computed in log space by the forward–backward recursions over the
    label sequence with blanks inserted; the gradient with respect to frame :math:`t`'s logits
    is :math:`p_t - \gamma_t`, :math:`\gamma_t(k)` the posterior probability that an
    alignment emits :math:`k` at :math:`t`, so each frame's gradient sums to zero. A
    ``custom_vjp`` stores the forward recursion and computes the backward one, the posteriors
    and the gradient frame by frame in one reverse pass (reverse mode only: not ``jvp``).

    The loss is never negative (a near-certain alignment gives a small positive number or 0,
    not a rounding below 0); a label sequence that no alignment fits (too few frames for its
    labels and the blanks between repeats) gives ``+inf``, with a zero gradient. Arguments are
    in optax's ``ctc_loss`` order. Half-precision logits are accumulated in float32.

    Args:
      logits: ``[B, T, K]`` unnormalised scores of the ``K`` symbols (the blank included) at
        each of ``T`` frames.
      logit_paddings: ``[B, T]``, 1 (or True) for padded frames, which are skipped and get a
        zero gradient.
      labels: ``[B, N]`` integer label sequences.
      label_paddings: ``[B, N]``, 1 (or True) for padding, right-padded (0s then 1s). Padded
        slots may hold any value.
      blank_id: the blank symbol, in ``[0, K)``; no unpadded label may equal it.
      reduction: ``"none"``; ``"mean"``: each loss divided by its label length (at least 1),
        then averaged over the batch (PyTorch's definition); or ``"sum"``.
      zero_infinity: give 0 instead of ``+inf`` for sequences without an alignment (PyTorch's
        option), so that one of them does not make the mean infinite.

    Returns:
      Per-sequence losses ``[B]`` (float32 or wider), or a scalar. Under ``jit``, a sequence
      whose unpadded labels are out of range or equal the blank, or whose label paddings are
      not right-padded, gives NaN (concrete ones raise a ``ValueError``).

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxloss
      >>> logits = jnp.log(jnp.array([[[0.5, 0.5], [0.5, 0.5]]]))  # 2 frames, blank and "a"
      >>> loss = jaxloss.ctc_loss(logits, jnp.zeros((1, 2)), jnp.array([[1]]), jnp.zeros((1, 1)))
      >>> print(loss, jnp.exp(-loss))  # alignments "a a", "a ∅", "∅ a": 3 of the 4 paths
      [0.2877] [0.75]

    References:
      Graves et al., *Connectionist Temporal Classification: Labelling Unsegmented Sequence
      Data with Recurrent Neural Networks*, ICML 2006.
    """
    x = _checks.check_float(logits, "logits")
    if x.ndim != 3:
        raise ValueError(f"logits must be [B, T, K], got shape {x.shape}")
    b, t_len, classes = x.shape
    pad = _check_paddings(logit_paddings, (b, t_len), "logit_paddings", "logits.shape[:2]")
    y = jnp.asarray(labels)
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"labels must be an integer array, got dtype {y.dtype}")
    if y.ndim != 2 or y.shape[0] != b:
        raise ValueError(f"labels must be [B, N] with B = logits.shape[0] = {b}; got {y.shape}")
    label_pad = _check_paddings(label_paddings, y.shape, "label_paddings", "labels.shape")
    if isinstance(blank_id, bool) or not hasattr(blank_id, "__index__"):
        raise ValueError(f"blank_id must be an int in [0, {classes}), got {blank_id!r}")
    blank_id = operator.index(blank_id)
    if not 0 <= blank_id < classes:
        raise ValueError(f"blank_id must be an int in [0, {classes}), got {blank_id!r}")
    _checks.check_reduction(reduction)
    lengths, right = _check_right_padded(label_pad)
    valid = _check_labels(y, lengths, classes, blank_id) & right
    lat = _lattice(jnp.where(label_pad, blank_id, y).astype(jnp.int32), lengths, pad)
    nll = _nll(x, lat, blank_id)
    loss = jnp.maximum(nll, 0)  # rounding can put a near-certain alignment's log p above 0
    if zero_infinity:
        loss = jnp.where(jnp.isinf(nll), 0, loss)
    loss = jnp.where(valid, loss, jnp.nan)
    if reduction == "mean":
        loss = loss / jnp.maximum(lengths, 1).astype(loss.dtype)
    return reduce(loss, reduction)
