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
