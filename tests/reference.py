"""float64 NumPy/SciPy oracles written from the definitions, one example at a time."""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, logsumexp, xlogy


def _move(x, axis):
    return np.moveaxis(np.asarray(x, np.float64), axis, -1)


def softmax_cross_entropy(logits, targets, axis=-1, label_smoothing=0.0):
    x, y = _move(logits, axis), _move(targets, axis)
    y = (1 - label_smoothing) * y + label_smoothing / y.shape[-1]
    logp = log_softmax(x, axis=-1)
    return -np.sum(np.where(y > 0, y * np.where(y > 0, logp, 0), 0), axis=-1)


def integer_cross_entropy(
    logits, labels, axis=-1, ignore_index=None, class_weights=None, label_smoothing=0.0, z_loss=0.0
):
    """Per-example loss and per-example 'mean' weight, written as PyTorch documents it."""
    x = _move(logits, axis)
    labels = np.asarray(labels)
    c = x.shape[-1]
    w = np.ones(c) if class_weights is None else np.asarray(class_weights, np.float64)
    logp = log_softmax(x, axis=-1)
    lse = logsumexp(x, axis=-1)
    loss = np.zeros(labels.shape)
    weight = np.zeros(labels.shape)
    for idx in np.ndindex(labels.shape):
        y = int(labels[idx])
        if ignore_index is not None and y == ignore_index:
            continue
        nll = -logp[idx][y]
        smooth = -np.sum(w * logp[idx]) / c
        loss[idx] = w[y] * ((1 - label_smoothing) * nll + z_loss * lse[idx] ** 2)
        loss[idx] += label_smoothing * smooth
        weight[idx] = w[y]
    return loss, weight


def reduce(loss, weight, reduction):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / weight.sum() if weight.sum() else 0.0


def nll(log_probs, labels, axis=-1, ignore_index=None, class_weights=None):
    x = _move(log_probs, axis)
    labels = np.asarray(labels)
    w = np.ones(x.shape[-1]) if class_weights is None else np.asarray(class_weights, np.float64)
    loss, weight = np.zeros(labels.shape), np.zeros(labels.shape)
    for idx in np.ndindex(labels.shape):
        y = int(labels[idx])
        if ignore_index is None or y != ignore_index:
            loss[idx], weight[idx] = -w[y] * x[idx][y], w[y]
    return loss, weight


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def log_sigmoid(x):
    return -np.logaddexp(0, -np.asarray(x, np.float64))


def sigmoid_bce(logits, targets, pos_weight=None, label_smoothing=0.0):
    y = np.asarray(targets, np.float64) * (1 - label_smoothing) + label_smoothing / 2
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    return -(
        pw * xlogy(y, np.exp(log_sigmoid(logits)))
        + xlogy(1 - y, np.exp(log_sigmoid(-np.asarray(logits))))
    )


def bce(probs, targets):
    p, y = np.asarray(probs, np.float64), np.asarray(targets, np.float64)
    with np.errstate(divide="ignore"):
        return -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))


def sigmoid_focal(logits, targets, alpha=None, gamma=2.0):
    p, y = sigmoid(logits), np.asarray(targets, np.float64)
    pt = y * p + (1 - y) * (1 - p)
    loss = sigmoid_bce(logits, targets) * (1 - pt) ** gamma
    if alpha is not None:
        loss = loss * (y * alpha + (1 - y) * (1 - alpha))
    return loss


def softmax_focal(logits, labels, gamma=2.0, class_weights=None):
    logp = log_softmax(np.asarray(logits, np.float64), axis=-1)
    lp = np.take_along_axis(logp, np.asarray(labels)[..., None], -1)[..., 0]
    w = 1.0 if class_weights is None else np.asarray(class_weights)[np.asarray(labels)]
    return -w * (1 - np.exp(lp)) ** gamma * lp


def poly1(logits, labels, epsilon=1.0):
    logp = log_softmax(np.asarray(logits, np.float64), axis=-1)
    lp = np.take_along_axis(logp, np.asarray(labels)[..., None], -1)[..., 0]
    return -lp + epsilon * (1 - np.exp(lp))


def entropy(p):
    p = np.asarray(p, np.float64)
    return -np.sum(xlogy(p, p), axis=-1)


def kl(p, q):
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    return np.sum(np.where(p > 0, xlogy(p, p) - xlogy(p, q), 0), axis=-1)


def js(p, q):
    m = (np.asarray(p, np.float64) + np.asarray(q, np.float64)) / 2
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def softmax(x):
    return np.exp(log_softmax(np.asarray(x, np.float64), axis=-1))


def distillation(student, teacher, divergence="forward_kl", beta=0.5, temperature=1.0, where=None):
    """T² D(P, S) per example, classes last; `where` excluded classes have probability 0."""
    x = np.asarray(student, np.float64) / temperature
    t = np.asarray(teacher, np.float64) / temperature
    if where is not None:
        x, t = np.where(where, x, -np.inf), np.where(where, t, -np.inf)
    log_s, log_p = log_softmax(x, axis=-1), log_softmax(t, axis=-1)
    s, p = np.exp(log_s), np.exp(log_p)

    def kl(a, log_a, log_b):  # Σ a log(a / b), 0 log 0 = 0
        with np.errstate(invalid="ignore"):
            return np.sum(np.where(a > 0, a * (log_a - log_b), 0.0), axis=-1)

    if divergence == "forward_kl":
        d = kl(p, log_p, log_s)
    elif divergence == "reverse_kl":
        d = kl(s, log_s, log_p)
    else:
        m = beta * p + (1 - beta) * s
        with np.errstate(divide="ignore"):
            log_m = np.log(m)
        d = beta * kl(p, log_p, log_m) + (1 - beta) * kl(s, log_s, log_m)
    return temperature**2 * d


def clip(a, b, scale=1.0):
    """CLIP's per-example loss: ½[-log softmax of row i at i - log softmax of column i at i]."""
    logits = float(scale) * np.asarray(a, np.float64) @ np.asarray(b, np.float64).T
    rows = -np.diag(log_softmax(logits, axis=1))
    cols = -np.diag(log_softmax(logits, axis=0))
    return (rows + cols) / 2


def siglip(a, b, scale=1.0, bias=0.0):
    """SigLIP's per-example loss: Σ_j -log σ(z_ij L_ij), z = +1 on the diagonal, -1 elsewhere."""
    logits = float(scale) * np.asarray(a, np.float64) @ np.asarray(b, np.float64).T + float(bias)
    z = 2 * np.eye(len(logits)) - 1
    return -np.sum(log_sigmoid(z * logits), axis=1)


def ctc(logits, labels, blank=0):
    """-log p(labels | logits) of one sequence, logits [T, K] of its unpadded frames: the
    forward algorithm in probability space (float64), from the definition."""
    p = np.exp(log_softmax(np.asarray(logits, np.float64), axis=-1))
    ext = [blank]
    for label in labels:
        ext += [int(label), blank]
    alpha = np.zeros(len(ext))
    alpha[0] = 1.0
    first = True
    for p_t in p:
        new = np.zeros_like(alpha)
        for s, k in enumerate(ext):
            if first:  # the first frame may start at the first blank or the first label
                total = alpha[0] if s <= 1 else 0.0
            else:
                total = alpha[s] + (alpha[s - 1] if s >= 1 else 0.0)
                if s >= 2 and k != blank and k != ext[s - 2]:
                    total += alpha[s - 2]
            new[s] = total * p_t[k]
        alpha, first = new, False
    if first:  # no frame: only the empty label sequence is emitted, with probability 1
        return 0.0 if len(labels) == 0 else np.inf
    end = alpha[-1] + (alpha[-2] if len(ext) > 1 else 0.0)
    return -np.log(end) if end > 0 else np.inf


def ctc_by_enumeration(logits, labels, blank=0):
    """-log Σ over every path of T symbols that collapses to `labels` (repeats merged, then
    blanks removed) of Π_t p_t(path_t): the definition itself, for tiny T and K."""
    import itertools

    logp = log_softmax(np.asarray(logits, np.float64), axis=-1)
    t_len, k = logp.shape
    total = -np.inf
    for path in itertools.product(range(k), repeat=t_len):
        merged = [s for i, s in enumerate(path) if i == 0 or s != path[i - 1]]
        if [s for s in merged if s != blank] == list(labels):
            total = np.logaddexp(total, sum(logp[t, s] for t, s in enumerate(path)))
    return -total


# ---- overlap (Dice)


def dice_probabilities(logits):
    """softmax over the last axis, the sigmoid when there is one class (float64)."""
    x = np.asarray(logits, np.float64)
    if x.shape[-1] == 1:
        return 1 / (1 + np.exp(-x))
    return np.exp(log_softmax(x, axis=-1))


def dice(probs, targets, axis, smooth=1.0, alpha=0.5, beta=0.5, class_weights=None):
    """w_c (1 - (I + s) / (I + α(P - I) + β(T - I) + s)) per class, summed over `axis`; the
    coefficient is 1 where the denominator is 0."""
    p, t = np.asarray(probs, np.float64), np.asarray(targets, np.float64)
    inter, pred, true = np.sum(p * t, axis), np.sum(p, axis), np.sum(t, axis)
    den = inter + alpha * (pred - inter) + beta * (true - inter) + smooth
    coeff = (inter + smooth) / np.where(den == 0, 1.0, den)
    loss = 1 - np.where(den == 0, 1.0, coeff)
    return loss if class_weights is None else loss * np.asarray(class_weights, np.float64)


def generalized_dice_weights(targets):
    """Sudre et al.'s 1 / (f_c² + 1e-7), f_c = Σ of targets over all axes but the last,
    normalised to sum to C (optax's)."""
    t = np.asarray(targets, np.float64)
    f = np.sum(t, axis=tuple(range(t.ndim - 1)))
    w = 1 / (f**2 + 1e-7)
    return w / np.sum(w) * len(w)


def sudre_generalized_dice(probs, targets, axis):
    """Sudre et al.'s loss, 1 - 2 Σ_c w_c I_c / Σ_c w_c (P_c + T_c), w_c = 1 / T_c²."""
    p, t = np.asarray(probs, np.float64), np.asarray(targets, np.float64)
    w = 1 / np.sum(t, axis) ** 2
    return 1 - 2 * np.sum(w * np.sum(p * t, axis), -1) / np.sum(w * np.sum(p + t, axis), -1)


# ---- sparse outputs


def along(fn, z, axis=-1):
    """A one-row oracle `fn` applied to every row of `z` along `axis`."""
    x = _move(z, axis)
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        out[idx] = fn(x[idx])
    return np.moveaxis(out, -1, axis)


def sparsemax_sort(z):
    """Sparsemax of one row by the sort formula (Martins & Astudillo 2016, Alg. 1): the
    support is the largest k with 1 + k u_k > sum_{j<=k} u_j, u sorted in decreasing order."""
    z = np.asarray(z, np.float64)
    u = np.sort(z)[::-1]
    k = np.arange(1, len(z) + 1)
    cum = np.cumsum(u)
    size = k[1 + k * u > cum].max()
    return np.maximum(z - (cum[size - 1] - 1) / size, 0)


def sparsemax_by_supports(z):
    """Sparsemax of one (short) row as the QP min ||p - z||^2 over the simplex, by brute
    force: on each face {p_j = 0 off S}, the closest point of sum p = 1 is z_S - tau; keep the
    feasible one closest to z."""
    import itertools

    z = np.asarray(z, np.float64)
    best, best_dist = None, np.inf
    for size in range(1, len(z) + 1):
        for support in itertools.combinations(range(len(z)), size):
            s = list(support)
            p = np.zeros_like(z)
            p[s] = z[s] - (z[s].sum() - 1) / size
            if (p >= 0).all() and np.sum((p - z) ** 2) < best_dist:
                best, best_dist = p, np.sum((p - z) ** 2)
    return best


def entmax_bisect(z, alpha):
    """Tsallis alpha-entmax of one row (alpha > 1) from its optimality conditions,
    p_i = max((alpha - 1) z_i - tau, 0)^(1 / (alpha - 1)) with sum p = 1, by bisection on
    tau in [(alpha - 1) max z - 1, (alpha - 1) max z]. -inf entries get 0."""
    z = np.asarray(z, np.float64)
    s = (alpha - 1) * z

    def probs(tau):
        return np.where(s > tau, np.maximum(s - tau, 0) ** (1 / (alpha - 1)), 0.0)

    lo, hi = s.max() - 1, s.max()
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if probs(mid).sum() > 1 else (lo, mid)
    return probs((lo + hi) / 2)


def tsallis_entropy(p, alpha):
    """H_alpha(p) = (1 - sum p^alpha) / (alpha (alpha - 1))."""
    return (1 - np.sum(np.asarray(p, np.float64) ** alpha)) / (alpha * (alpha - 1))


def entmax_loss(z, label, alpha):
    """Fenchel-Young loss of one row, <p, z> + H_alpha(p) - z_label with p = alpha-entmax(z)
    (2: the sparsemax loss, 1.5: the 1.5-entmax loss)."""
    z = np.asarray(z, np.float64)
    p = entmax_bisect(z, alpha)
    return np.sum(p[p > 0] * z[p > 0]) + tsallis_entropy(p, alpha) - z[label]


def binary_sparsemax_loss(x, y):
    """The binary sparsemax loss of one score: the sparsemax loss of the two scores
    (x/2, -x/2) with label 0 for y = 1 and 1 for y = 0."""
    return entmax_loss([x / 2, -x / 2], 0 if y else 1, 2.0)


def jacobian_by_differences(fn, z, h=1e-6):
    """d fn(z) / dz of a row function, by central differences in float64: [out, in]."""
    z = np.asarray(z, np.float64)
    cols = []
    for i in range(len(z)):
        e = np.zeros_like(z)
        e[i] = h
        cols.append((np.asarray(fn(z + e)) - np.asarray(fn(z - e))) / (2 * h))
    return np.stack(cols, axis=-1)


# ---- margins, ranking, log-target divergences, regression


def hinge(scores, signs, margin=1.0):
    s, y = np.asarray(scores, np.float64), np.asarray(signs, np.float64)
    return np.maximum(0.0, margin - y * s)


def multiclass_hinge(scores, labels, margin=1.0):
    """max over c != y of (margin + s_c - s_y), and 0: Crammer and Singer's definition."""
    s = np.asarray(scores, np.float64)
    out = np.zeros(np.shape(labels))
    for idx in np.ndindex(out.shape):
        row, y = s[idx], int(labels[idx])
        out[idx] = max([0.0] + [margin + row[c] - row[y] for c in range(row.size) if c != y])
    return out


def ranking_softmax(scores, relevance, valid=None):
    s, y = np.asarray(scores, np.float64), np.asarray(relevance, np.float64)
    out = np.zeros(s.shape[:-1])
    for idx in np.ndindex(out.shape):
        keep = np.ones(s.shape[-1], bool) if valid is None else np.asarray(valid[idx], bool)
        if keep.any():
            logp = s[idx][keep] - logsumexp(s[idx][keep])
            out[idx] = -np.sum(y[idx][keep] * logp)
    return out


def kl_log_targets(log_q, log_p):
    """KL(p || q) from the logarithms of both, 0 log 0 = 0."""
    lq, lp = np.asarray(log_q, np.float64), np.asarray(log_p, np.float64)
    p = np.exp(lp)
    return np.sum(np.where(p > 0, p * (np.where(p > 0, lp, 0) - lq), 0), axis=-1)


def generalized_kl(log_q, y):
    lq, y = np.asarray(log_q, np.float64), np.asarray(y, np.float64)
    return np.sum(xlogy(y, y) - y * np.where(y > 0, lq, 0) - y + np.exp(lq), axis=-1)


def huber(e, delta=1.0):
    a = np.abs(np.asarray(e, np.float64))
    return np.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta))


def log_cosh(e):
    """log cosh from cosh itself, in 40-digit arithmetic, rounded once to float64."""
    import mpmath

    with mpmath.workdps(40):
        return np.vectorize(lambda x: float(mpmath.log(mpmath.cosh(mpmath.mpf(float(x))))))(
            np.asarray(e, np.float64)
        )


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.where(norms > 0, np.sum(a * b, -1) / np.where(norms > 0, norms, 1), 0.0)


# ---- metric learning


def ntxent(embeddings, labels, temperature=0.07, eps=2.0**-52):
    """NT-Xent as a loop over the positive pairs (i, j), i ≠ j, y_i = y_j: the mean of
    -s_ij + log(e^{s_ij} + Σ_{k: y_k ≠ y_i} e^{s_ik}), s = cosine / τ (norms at least
    sqrt(eps), the float64 machine epsilon by default); 0 without pairs."""
    x = np.asarray(embeddings, np.float64)
    y = np.asarray(labels)
    u = x / np.sqrt(np.maximum(np.sum(x * x, axis=1, keepdims=True), eps))
    s = u @ u.T / float(temperature)
    total, count = 0.0, 0
    for i in range(len(x)):
        negatives = [s[i, k] for k in range(len(x)) if y[k] != y[i]]
        for j in range(len(x)):
            if j != i and y[j] == y[i]:
                total += logsumexp([s[i, j], *negatives]) - s[i, j]
                count += 1
    return total / count if count else 0.0


def triplet_margin(anchors, positives, negatives, axis=-1, norm_degree=2, margin=1.0, eps=1e-6):
    """max(d(a, p) - d(a, n) + margin, 0), d(a, x) = (Σ |a - x|^k + eps)^{1/k} along `axis`."""
    a = np.asarray(anchors, np.float64)

    def d(x):
        gap = np.abs(a - np.asarray(x, np.float64))
        return (np.sum(gap**norm_degree, axis=axis) + eps) ** (1 / norm_degree)

    return np.maximum(d(positives) - d(negatives) + margin, 0.0)
