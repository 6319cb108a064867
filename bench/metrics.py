"""Test-set metrics, in float64 NumPy from the model's logits."""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit, log_softmax, logsumexp


def class_log_probs(logits: np.ndarray, output: str) -> np.ndarray:
    """Log-probabilities over the classes that a model's output layer implies.

    ``"softmax"``: ``log_softmax(logits)``. ``"sigmoid"``: the sigmoid outputs renormalised to
    sum to one, ``p_c = sigmoid(x_c) / sum_k sigmoid(x_k)``, computed in log space.
    """
    x = np.asarray(logits, np.float64)
    if output == "softmax":
        return log_softmax(x, axis=-1)
    log_s = log_expit(x)
    return log_s - logsumexp(log_s, axis=-1, keepdims=True)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(pred == labels))


def nll(log_p: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class."""
    return float(-np.mean(log_p[np.arange(len(labels)), labels]))


def calibration(log_p: np.ndarray, labels: np.ndarray, bins: int) -> dict[str, object]:
    """Top-label expected calibration error over `bins` equal-width confidence bins.

    ECE = sum_b (n_b / n) |accuracy_b - mean confidence_b|, where the confidence is the largest
    class probability and bin b holds confidences in (b/bins, (b+1)/bins] (bin 0 includes 0).
    """
    p = np.exp(log_p)
    conf = p.max(-1)
    correct = p.argmax(-1) == labels
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    safe = np.maximum(count, 1)
    bin_conf = np.bincount(which, conf, bins) / safe
    bin_acc = np.bincount(which, correct.astype(float), bins) / safe
    ece = float(np.sum(count / len(labels) * np.abs(bin_acc - bin_conf)))
    return {
        "ece": ece,
        "bin_count": count.tolist(),
        "bin_confidence": bin_conf.tolist(),
        "bin_accuracy": bin_acc.tolist(),
    }


def sigmoid_above_half(logits: np.ndarray) -> np.ndarray:
    """Boolean: which sigmoid outputs exceed 0.5."""
    return expit(np.asarray(logits, np.float64)) > 0.5


def outputs_above_half(logits: np.ndarray) -> np.ndarray:
    """Per example, how many sigmoid outputs exceed 0.5."""
    return np.sum(sigmoid_above_half(logits), axis=-1)


def f1_scores(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Binary F1 (positive class 1) of each column of 0/1 arrays [n, k]; 0 when undefined."""
    pred, true = pred.astype(bool), true.astype(bool)
    tp = np.sum(pred & true, 0)
    denom = np.sum(pred, 0) + np.sum(true, 0)
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
