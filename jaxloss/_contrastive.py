"""Contrastive losses over a batch's pair logits L_ij = scale·⟨a_i, b_j⟩ (+ bias), in blocks.

softmax (CLIP):   ℓ_i = ½[(log Z^row_i - L_ii) + (log Z^col_i - L_ii)]
sigmoid (SigLIP): ℓ_i = Σ_j -log σ(z_ij L_ij),  z_ii = 1, z_ij = -1 (i ≠ j)

`[B, B]` is never held. The pairs are visited as blocks of `chunk` rows of `a` against a
column block of `b`: the whole batch on one device, and with `axis_name` either every
device's `b` gathered ("gather") or each device's share passed around a ring of devices
("ring"). A block yields row and column statistics that merge across blocks; for the softmax
they are the core's shift and log Z (`softmax_parts`), kept apart so that log Z - (L_ii - s)
keeps the precision the core gives a single row. A custom_vjp recomputes every block in its
backward pass and takes the block's gradient with `jax.vjp`, so the backward pass holds one
block too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxloss import _checks
from jaxloss._backend import Rows
from jaxloss._dtypes import compute_dtype
from jaxloss._large_vocab import chunked
from jaxloss._reduction import AxisName, Reduction, reduce, replicated_axes, sum_to, varying
from jaxloss._softmax import softmax_parts

Kind = Literal["softmax", "sigmoid"]
Exchange = Literal["ring", "gather"]

# The default chunk holds about BLOCK_ELEMENTS pair logits: each block's arrays stay a few
# MiB, and each step still multiplies a [chunk, D] by a [D, columns] matrix.
BLOCK_ELEMENTS = 2**20
MIN_CHUNK = 8
# The ring: per-device memory falls as devices are added (the performance notes compare it
# with the all-gather).
EXCHANGE: Exchange = "ring"

_ROWS = Rows(1, None, False)
_COLUMNS = Rows(0, None, True)  # padded rows of a block are excluded from its columns


class Spec(NamedTuple):
    """Static options of one call."""

    kind: Kind
    chunk: int  # rows of `a` per block
    axis_name: AxisName  # mesh axis the batch is split over, or None
    exchange: Exchange


class Block(NamedTuple):
    """One block of pair logits and where it lies in the global batch."""

    logits: jax.Array  # [c, w], the compute dtype
    row: jax.Array  # [c, 1] global row indices
    col: jax.Array  # [1, w] global column indices
    valid: jax.Array  # [c, 1] False for rows that pad the last chunk (their index is -1)


# Per kind: the block's statistics, their merge across blocks, and a function of the block
# whose gradient is the block's share of the loss's gradient.


def _softmax_stats(blk: Block) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
    """Rows: (shift, log Z, L_ii or 0); columns: (shift, log Z) over the block's valid rows."""
    row = softmax_parts(blk.logits, None, None, _ROWS)
    col = softmax_parts(jnp.where(blk.valid, blk.logits, -jnp.inf), None, None, _COLUMNS)
    diag = jnp.sum(jnp.where(blk.row == blk.col, blk.logits, 0), axis=1)
    return (row.shift[:, 0], row.log_z[:, 0], diag), (col.shift[0], col.log_z[0])


def _merge_log_z(acc: tuple[jax.Array, ...], new: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
    """(s, log Z) of the union of two sets of logits; the larger shift is kept exactly."""
    (s1, z1), (s2, z2) = acc, new
    s = jnp.maximum(s1, s2)
    return s, jnp.logaddexp(z1 + (s1 - s), z2 + (s2 - s))


def _softmax_merge_rows(acc: tuple[jax.Array, ...], new: tuple[jax.Array, ...]) -> Any:
    return (*_merge_log_z(acc[:2], new[:2]), acc[2] + new[2])


def _share(stats: tuple[jax.Array, ...], total: tuple[jax.Array, ...], keep: Any) -> jax.Array:
    """exp(log Z_block - log Z): the block's share of a row's partition function. At the
    forward pass's total it has log Z's gradient restricted to the block, Σ exp(L - log Z) dL
    (the shift carries no derivative, as in the core). 0 where `keep` is False."""
    (s_blk, z_blk), (s, z) = stats, total
    # A padding row has no total: -inf keeps its exponential (and its gradient) at 0.
    exponent = jnp.where(keep, (jax.lax.stop_gradient(s_blk) - s) + (z_blk - z), -jnp.inf)
    return jnp.exp(exponent)


def _softmax_surrogate(blk: Block, rows: tuple[jax.Array, ...], cols: tuple[jax.Array, ...]) -> Any:
    (s_r, z_r, diag), (s_c, z_c) = _softmax_stats(blk)
    shift_r, log_z_r, g_r, g_d = rows
    shift_c, log_z_c, g_c = cols
    return (
        jnp.sum(g_r * _share((s_r, z_r), (shift_r, log_z_r), blk.valid[:, 0]))
        + jnp.sum(g_c * _share((s_c, z_c), (shift_c, log_z_c), True))
        + jnp.sum(g_d * diag)
    )


def _sigmoid_stats(blk: Block) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
    """Rows: Σ_j -log σ(z_ij L_ij) over the block's columns; no column statistics."""
    signed = jnp.where(blk.row == blk.col, blk.logits, -blk.logits)
    return (-jnp.sum(jax.nn.log_sigmoid(signed), axis=1),), ()


def _sigmoid_surrogate(blk: Block, rows: tuple[jax.Array, ...], cols: tuple[jax.Array, ...]) -> Any:
    return jnp.sum(rows[0] * _sigmoid_stats(blk)[0][0])


class Family(NamedTuple):
    stats: Callable[[Block], tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]]
    merge_rows: Callable[..., Any]
    merge_cols: Callable[..., Any]
    surrogate: Callable[..., Any]
    row_init: tuple[float, ...]  # the merge's identity
    col_init: tuple[float, ...]


FAMILIES = {
    "softmax": Family(
        _softmax_stats,
        _softmax_merge_rows,
        _merge_log_z,
        _softmax_surrogate,
        (-jnp.inf, 0.0, 0.0),
        (-jnp.inf, 0.0),
    ),
    "sigmoid": Family(
        _sigmoid_stats, lambda a, b: (a[0] + b[0],), lambda a, b: (), _sigmoid_surrogate, (0.0,), ()
    ),
}


def _full(init: tuple[float, ...], n: int, dtype: Any, *like: Any) -> tuple[jax.Array, ...]:
    return tuple(varying(jnp.full((n,), v, dtype), *like) for v in init)


def _similarity(a_c: jax.Array, b_blk: jax.Array, dtype: Any) -> jax.Array:
    """⟨a_i, b_j⟩ of a block, [c, w], accumulated in `dtype`."""
    dims = (((1,), (1,)), ((), ()))
    out: jax.Array = jax.lax.dot_general(a_c, b_blk, dims, preferred_element_type=dtype)
    return out


class _Local(NamedTuple):
    """The local rows cut into chunks."""

    a: jax.Array  # [steps, c, D]
    row: jax.Array  # [steps, c] global indices
    valid: jax.Array  # [steps, c]


def _devices(spec: Spec) -> tuple[Any, int]:
    if spec.axis_name is None:
        return jnp.int32(0), 1
    return jax.lax.axis_index(spec.axis_name).astype(jnp.int32), jax.lax.axis_size(spec.axis_name)


def _indices(n: int, start: Any = 0) -> jax.Array:
    """Global indices of `n` rows or columns from block `start`."""
    out: jax.Array = start * n + jnp.arange(n, dtype=jnp.int32)
    return out


def _local(a: jax.Array, spec: Spec) -> _Local:
    n = a.shape[0]
    k, _ = _devices(spec)
    valid = chunked(jnp.ones(n, bool), spec.chunk)
    row = jnp.where(valid, chunked(_indices(n, k), spec.chunk), -1)  # padding matches no column
    return _Local(chunked(a, spec.chunk), row, valid)


def _unchunk(x: jax.Array, n: int) -> jax.Array:
    return x.reshape(-1)[:n]


def _forward_block(
    loc: _Local, b_blk: jax.Array, col: jax.Array, cols: Any, hyper: Any, fam: Family, n: int
) -> tuple[Any, Any]:
    """One column block against every chunk of local rows: (row statistics [n], the column
    statistics `cols` merged with the block's)."""

    def step(cols: Any, xs: Any) -> tuple[Any, Any]:
        a_c, row_c, valid_c = xs
        scale, bias = hyper
        logits = scale * _similarity(a_c, b_blk, scale.dtype) + bias
        blk = Block(logits, row_c[:, None], col[None, :], valid_c[:, None])
        rows, new = fam.stats(blk)
        return fam.merge_cols(cols, new), rows

    cols, rows = jax.lax.scan(step, cols, loc)
    return tuple(_unchunk(r, n) for r in rows), cols


def _ring(spec: Spec) -> Callable[[Any], Any]:
    """Passes a pytree to the next device of the ring."""
    _, p = _devices(spec)
    perm = [(i, (i + 1) % p) for i in range(p)]
    return lambda tree: jax.tree.map(lambda x: jax.lax.ppermute(x, spec.axis_name, perm), tree)


def _gathered(x: jax.Array, spec: Spec) -> jax.Array:
    out: jax.Array = jax.lax.all_gather(x, spec.axis_name, tiled=True)
    return out


def _finish_gathered_cols(cols: tuple[jax.Array, ...], n: int, spec: Spec) -> tuple[Any, ...]:
    """Column statistics over the global batch merged across devices; the local columns'."""
    if not cols:
        return ()
    s, z = cols
    k, _ = _devices(spec)
    top = jax.lax.pmax(s, spec.axis_name)
    z = jnp.log(jax.lax.psum_scatter(jnp.exp(z + (s - top)), spec.axis_name, tiled=True))
    return jax.lax.dynamic_slice_in_dim(top, k * n, n), z


def _forward(a: jax.Array, b: jax.Array, hyper: Any, spec: Spec) -> tuple[Any, Any]:
    """Row statistics of the local rows over every column, and column statistics of the local
    columns over every row."""
    fam = FAMILIES[spec.kind]
    n, acc = a.shape[0], hyper[0].dtype
    k, p = _devices(spec)
    loc = _local(a, spec)
    like = (a, b)
    if spec.axis_name is not None and spec.exchange == "gather":
        col = _indices(n * p)
        rows, cols = _forward_block(
            loc, _gathered(b, spec), col, _full(fam.col_init, n * p, acc, *like), hyper, fam, n
        )
        return rows, _finish_gathered_cols(cols, n, spec)

    def visit(carry: Any, t: Any) -> tuple[Any, None]:
        rows, b_vis, cols = carry
        col = _indices(n, (k - t) % p)
        new, cols = _forward_block(loc, b_vis, col, cols, hyper, fam, n)
        rows = fam.merge_rows(rows, new)
        if spec.axis_name is not None:  # after p steps the columns are home again
            b_vis, cols = _ring(spec)((b_vis, cols))
        return (rows, b_vis, cols), None

    init = (_full(fam.row_init, n, acc, *like), b, _full(fam.col_init, n, acc, *like))
    (rows, _, cols), _ = jax.lax.scan(visit, init, jnp.arange(p, dtype=jnp.int32))
    return rows, cols


def _backward_block(
    loc: _Local,
    row_ctx: Any,
    b_blk: jax.Array,
    col: jax.Array,
    col_ctx: Any,
    hyper: Any,
    fam: Family,
) -> tuple[jax.Array, jax.Array, Any, jax.Array]:
    """Gradients of the local rows' chunks against one column block: d a [n, D], d b_blk,
    d(scale, bias), and the surrogate's value."""
    acc = hyper[0].dtype

    def step(carry: Any, xs: Any) -> tuple[Any, jax.Array]:
        (a_c, row_c, valid_c), rows_c = xs
        db, d_hyper, total = carry
        s = _similarity(a_c, b_blk, acc)

        def surrogate(s: jax.Array, scale: jax.Array, bias: jax.Array) -> Any:
            blk = Block(scale * s + bias, row_c[:, None], col[None, :], valid_c[:, None])
            return fam.surrogate(blk, rows_c, col_ctx)

        # Varying copies of scale and bias: their cotangents stay this device's share, summed
        # over the devices once, in _stats_bwd.
        hyper_v = tuple(varying(h, s) for h in hyper)
        out, pull = jax.vjp(surrogate, s, *hyper_v)
        ds, *dh = pull(jnp.ones_like(out))
        ds = ds.astype(b_blk.dtype)
        da = jnp.dot(ds, b_blk, preferred_element_type=acc)
        db = db + jax.lax.dot_general(ds, a_c, (((0,), (0,)), ((), ())), preferred_element_type=acc)
        return (db, tuple(map(jnp.add, d_hyper, dh)), total + out), da

    like = (loc.a, b_blk, *jax.tree.leaves(row_ctx), *col_ctx)
    db0 = varying(jnp.zeros(b_blk.shape, acc), *like)
    carry0 = (
        db0,
        tuple(varying(jnp.zeros((), acc), *like) for _ in hyper),
        varying(jnp.zeros((), acc), *like),
    )
    rows_ctx = tuple(chunked(r, loc.a.shape[1]) for r in row_ctx)
    (db, d_hyper, total), da = jax.lax.scan(step, carry0, (loc, rows_ctx))
    return da.reshape(-1, da.shape[-1]), db, d_hyper, total


def _backward(
    a: jax.Array, b: jax.Array, hyper: Any, row_ctx: Any, col_ctx: Any, spec: Spec
) -> tuple[Any, jax.Array]:
    """((d a, d b, d hyper), the surrogate's value) given each local row's and local
    column's context (statistics and cotangents)."""
    fam = FAMILIES[spec.kind]
    n = a.shape[0]
    k, p = _devices(spec)
    loc = _local(a, spec)
    if spec.axis_name is not None and spec.exchange == "gather":
        col_all = tuple(_gathered(c, spec) for c in col_ctx)
        da, db, d_hyper, total = _backward_block(
            loc, row_ctx, _gathered(b, spec), _indices(n * p), col_all, hyper, fam
        )
        db = jax.lax.psum_scatter(db, spec.axis_name, tiled=True)
        return (da[:n], db, d_hyper), total

    def visit(carry: Any, t: Any) -> tuple[Any, None]:
        da, d_hyper, total, b_vis, cols, db_vis = carry
        col = _indices(n, (k - t) % p)
        da_t, db_t, dh_t, total_t = _backward_block(loc, row_ctx, b_vis, col, cols, hyper, fam)
        da, db_vis, total = da + da_t[:n], db_vis + db_t, total + total_t
        d_hyper = tuple(map(jnp.add, d_hyper, dh_t))
        if spec.axis_name is not None:  # after p steps each column's gradient is home
            b_vis, cols, db_vis = _ring(spec)((b_vis, cols, db_vis))
        return (da, d_hyper, total, b_vis, cols, db_vis), None

    acc = hyper[0].dtype
    like = (a, b, *jax.tree.leaves(row_ctx), *col_ctx)

    def zeros(shape: tuple[int, ...]) -> jax.Array:
        return varying(jnp.zeros(shape, acc), *like)

    init = (zeros(a.shape), tuple(zeros(()) for _ in hyper), zeros(()), b, col_ctx, zeros(b.shape))
    (da, d_hyper, total, _, _, db), _ = jax.lax.scan(visit, init, jnp.arange(p, dtype=jnp.int32))
    return (da, db, d_hyper), total


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _stats(a: jax.Array, b: jax.Array, hyper: Any, spec: Spec) -> tuple[Any, Any]:
    return _forward(a, b, hyper, spec)


def _stats_fwd(a: jax.Array, b: jax.Array, hyper: Any, spec: Spec) -> tuple[Any, Any]:
    out = _forward(a, b, hyper, spec)
    return out, (a, b, hyper, out)


def _stats_bwd(spec: Spec, res: Any, g: Any) -> tuple[Any, ...]:
    a, b, hyper, (rows, cols) = res
    g_rows, g_cols = g
    row_ctx: tuple[jax.Array, ...] = (g_rows[0],)
    col_ctx: tuple[jax.Array, ...] = ()
    if spec.kind == "softmax":  # the shifts carry no derivative
        row_ctx = (rows[0], rows[1], g_rows[1], g_rows[2])
        col_ctx = (cols[0], cols[1], g_cols[1])
    grads, _ = _backward(a, b, hyper, row_ctx, col_ctx, spec)
    out: tuple[Any, ...] = _cotangents(grads, None, a, b, hyper)
    return out


_stats.defvjp(_stats_fwd, _stats_bwd)


def _cotangents(grads: Any, g: jax.Array | None, a: jax.Array, b: jax.Array, hyper: Any) -> Any:
    """Gradients (times `g`), summed over the devices their inputs are replicated on, in
    their inputs' dtypes."""
    da, db, d_hyper = grads if g is None else jax.tree.map(lambda d: d * g, grads)
    d_hyper = tuple(sum_to(d, h) for d, h in zip(d_hyper, hyper, strict=True))
    return sum_to(da, a).astype(a.dtype), sum_to(db, b).astype(b.dtype), d_hyper


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _total(a: jax.Array, b: jax.Array, hyper: Any, spec: Spec) -> jax.Array:
    """Σ ℓ_i over the local rows of a family without column statistics; its gradients are
    computed in the forward pass, which then visits every block once."""
    return jnp.sum(_forward(a, b, hyper, spec)[0][0])


def _total_fwd(a: jax.Array, b: jax.Array, hyper: Any, spec: Spec) -> tuple[Any, Any]:
    ones = varying(jnp.ones(a.shape[0], hyper[0].dtype), a, b)
    grads, total = _backward(a, b, hyper, (ones,), (), spec)
    return total, (grads, a, b, hyper)


def _total_bwd(spec: Spec, res: Any, g: jax.Array) -> tuple[Any, ...]:
    grads, a, b, hyper = res
    out: tuple[Any, ...] = _cotangents(grads, g, a, b, hyper)
    return out


_total.defvjp(_total_fwd, _total_bwd)


def pair_chunk(chunk_size: int | None, n: int, columns: int) -> int:
    """`chunk_size`, or by default about BLOCK_ELEMENTS / columns rows (at least MIN_CHUNK)."""
    if chunk_size is None:
        chunk_size = max(MIN_CHUNK, BLOCK_ELEMENTS // max(columns, 1) // 8 * 8)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return min(chunk_size, max(n, 1))


def _check_pair(embeddings: ArrayLike, other_embeddings: ArrayLike) -> tuple[jax.Array, jax.Array]:
    a = _checks.check_float(embeddings, "embeddings")
    b = _checks.check_float(other_embeddings, "other_embeddings")
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            "embeddings and other_embeddings must both be [B, D] with the same shape; got "
            f"embeddings.shape={a.shape} and other_embeddings.shape={b.shape}"
        )
    if a.dtype != b.dtype:
        raise TypeError(
            f"embeddings.dtype={a.dtype} and other_embeddings.dtype={b.dtype} differ; cast one"
        )
    return a, b


def _scalar(value: ArrayLike, name: str, dtype: Any) -> jax.Array:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a float, got {value!r}")
    x = _checks.check_float(
        jnp.asarray(value, dtype) if isinstance(value, (int, float)) else value, name
    )
    if x.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {x.shape}")
    return x.astype(dtype)


def _check_split(a: jax.Array, b: jax.Array, axis_name: AxisName) -> int:
    """The number of devices along `axis_name`, over which both embeddings must be split."""
    same = {*replicated_axes(a, axis_name), *replicated_axes(b, axis_name)}
    if same:
        raise ValueError(
            f"axis_name={axis_name!r}: embeddings and other_embeddings must be split over it "
            f"(shard_map in_specs P({axis_name!r}) for both), but they are replicated over "
            f"{sorted(same, key=str)}"
        )
    size: int = jax.lax.axis_size(axis_name)
    return size


def contrastive(
    kind: Kind,
    embeddings: ArrayLike,
    other_embeddings: ArrayLike,
    scale: ArrayLike,
    bias: ArrayLike,
    axis_name: AxisName,
    chunk_size: int | None,
    reduction: Reduction,
    exchange: Exchange | None = None,
) -> jax.Array:
    """Validation, the blocked statistics and the reduction; `exchange` overrides EXCHANGE."""
    a, b = _check_pair(embeddings, other_embeddings)
    _checks.check_reduction(reduction)
    exchange = EXCHANGE if exchange is None else exchange
    acc = compute_dtype(a.dtype)
    hyper = (_scalar(scale, "scale", acc), _scalar(bias, "bias", acc))
    n = a.shape[0]
    if n == 0:
        return reduce(jnp.zeros((0,), acc), reduction, None, axis_name)
    p = 1 if axis_name is None else _check_split(a, b, axis_name)
    columns = n if exchange == "ring" else n * p
    spec = Spec(kind, pair_chunk(chunk_size, n, columns), axis_name, exchange)
    if kind == "sigmoid" and reduction != "none":
        total = _total(a, b, hyper, spec)[None]
        return reduce(total, reduction, jnp.asarray(n, acc)[None], axis_name)
    rows, cols = _stats(a, b, hyper, spec)
    if kind == "softmax":
        (s_r, z_r, diag), (s_c, z_c) = rows, cols
        s_r, s_c = jax.lax.stop_gradient(s_r), jax.lax.stop_gradient(s_c)
        loss = 0.5 * ((z_r - (diag - s_r)) + (z_c - (diag - s_c)))
    else:
        loss = rows[0]
    return reduce(loss, reduction, None, axis_name)


def softmax_contrastive_loss(
    embeddings: ArrayLike,
    other_embeddings: ArrayLike,
    *,
    scale: ArrayLike = 1.0,
    axis_name: AxisName = None,
    chunk_size: int | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""CLIP's contrastive loss: a softmax cross-entropy along each row and column of a batch's
    pair logits, the matching pair being the label.

    .. math::
        \ell_i = \tfrac12\Big[-\log \frac{e^{L_{ii}}}{\sum_j e^{L_{ij}}}
                 - \log \frac{e^{L_{ii}}}{\sum_j e^{L_{ji}}}\Big],
        \qquad L_{ij} = s\,\langle a_i, b_j\rangle

    Each row's pairs compete (their softmax sums to one): pair :math:`i` is pushed up only
    relative to the other pairs of its row and of its column. ``reduction="mean"`` is the loss
    of CLIP (Radford et al., 2021). The ``[B, B]`` logits are never held: blocks of
    ``chunk_size`` rows are computed, reduced to each row's and column's log-normaliser and
    discarded, in the forward and in the backward pass. Being a ``custom_vjp``, it takes
    reverse-mode derivatives (``grad``, ``vjp``, and nested: ``grad`` of ``grad``,
    ``jax.hessian``) but not ``jvp`` of the loss itself. Half-precision embeddings give float32
    logits and sums; each block's gradient is rounded to their dtype before its two matmuls
    (which accumulate in float32), as in the fused losses.

    Args:
      embeddings: ``[B, D]`` features :math:`a` (e.g. images), normalised by the model.
      other_embeddings: ``[B, D]`` features :math:`b` (e.g. texts); pair :math:`i` matches
        :math:`a_i` with :math:`b_i`.
      scale: :math:`s`, the inverse temperature, a differentiable scalar (CLIP learns
        :math:`\log s`, starting at :math:`s = 1/0.07`).
      axis_name: inside ``jax.shard_map`` with the batch split over this mesh axis, the loss
        covers the global batch: all :math:`B^2` pairs, each device passing its share of
        ``other_embeddings`` around a ring. Per-example values are the local examples';
        ``"mean"`` and ``"sum"`` are global and the same on every device. Both embeddings must
        be split over it (a ``ValueError`` says so when shard_map tracks replication, its
        default ``check_vma=True``).
      chunk_size: rows per block; by default about :math:`2^{20}` pair logits a block.
      reduction: ``"none"``, ``"mean"`` over the (global) batch, or ``"sum"``.

    Returns:
      Per-example losses ``[B]`` (float32 or wider), or a scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxloss
      >>> a = jnp.eye(3)
      >>> loss = jaxloss.softmax_contrastive_loss(a, a, scale=2.0, reduction="mean")
      >>> L = 2.0 * a @ a.T
      >>> rows = jax.nn.log_softmax(L, axis=1)
      >>> cols = jax.nn.log_softmax(L, axis=0)
      >>> plain = -jnp.mean(jnp.diag(rows) + jnp.diag(cols)) / 2
      >>> print(f"{loss:.4f} {plain:.4f}")
      0.2395 0.2395

    References:
      Radford et al., *Learning Transferable Visual Models From Natural Language Supervision*,
      2021.
    """
    return contrastive(
        "softmax", embeddings, other_embeddings, scale, 0.0, axis_name, chunk_size, reduction
    )


def sigmoid_contrastive_loss(
    embeddings: ArrayLike,
    other_embeddings: ArrayLike,
    *,
    scale: ArrayLike = 1.0,
    bias: ArrayLike = 0.0,
    axis_name: AxisName = None,
    chunk_size: int | None = None,
    reduction: Reduction = "none",
) -> jax.Array:
    r"""SigLIP's contrastive loss: an independent binary cross-entropy on every pair of a batch,
    positive for the matching pairs and negative for all the others.

    .. math::
        \ell_i = \sum_j -\log \sigma\big(z_{ij} L_{ij}\big),\qquad
        L_{ij} = s\,\langle a_i, b_j\rangle + t,\quad z_{ii} = 1,\ z_{ij} = -1\ (i \ne j)

    Each pair's sigmoid is independent of the others (nothing sums to one), so no
    normalisation across the batch couples the pairs; the bias :math:`t` offsets the
    :math:`B - 1` negatives of each row against its one positive. ``reduction="mean"`` is the
    sum over all pairs divided by :math:`B`, SigLIP's normalisation (Zhai et al., 2023);
    ``"sum"`` is the sum. :math:`-\log \sigma` is ``log_sigmoid``'s, exact for large
    :math:`|L|`. The ``[B, B]`` logits are never held: blocks of ``chunk_size`` rows are
    computed and discarded; with ``"mean"`` or ``"sum"`` their gradients are computed in the
    same pass. Derivatives and half precision are as for ``softmax_contrastive_loss``.

    Args:
      embeddings: ``[B, D]`` features :math:`a` (e.g. images), normalised by the model.
      other_embeddings: ``[B, D]`` features :math:`b`; pair :math:`i` matches :math:`a_i` with
        :math:`b_i`.
      scale: :math:`s`, a differentiable scalar (SigLIP learns :math:`\log s`, starting at
        :math:`s = 10`).
      bias: :math:`t`, a differentiable scalar (SigLIP starts at :math:`t = -10`).
      axis_name: the mesh axis the batch is split over inside ``jax.shard_map``, as for
        ``softmax_contrastive_loss``: the loss covers the global batch.
      chunk_size: rows per block, as for ``softmax_contrastive_loss``.
      reduction: ``"none"``, ``"mean"`` (the sum over pairs divided by the global :math:`B`),
        or ``"sum"``.

    Returns:
      Per-example losses ``[B]``, each the sum over its row of pairs (float32 or wider), or a
      scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxloss
      >>> a = jnp.eye(3)  # three orthonormal pairs
      >>> print(jaxloss.sigmoid_contrastive_loss(a, a, scale=2.0, bias=-1.0))
      [0.9398 0.9398 0.9398]
      >>> L = 2.0 * a @ a.T - 1.0
      >>> print(-jnp.sum(jax.nn.log_sigmoid(jnp.where(jnp.eye(3) > 0, L, -L)), axis=1))
      [0.9398 0.9398 0.9398]

    References:
      Zhai et al., *Sigmoid Loss for Language Image Pre-Training*, 2023.
    """
    return contrastive(
        "sigmoid", embeddings, other_embeddings, scale, bias, axis_name, chunk_size, reduction
    )
