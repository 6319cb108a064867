"""Test-set metrics from the model's logits: scikit-learn's where it has one, else our own.

Ours are only those scikit-learn lacks: top-label ECE, epochs to a target accuracy and how
many sigmoid outputs exceed 0.5. Gradient norms come from the training step (`bench.mlp`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy.special import expit, log_expit, log_softmax, logsumexp
from sklearn.metrics import accuracy_score, f1_score, log_loss


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


def classification(log_p: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """scikit-learn's accuracy of the most likely class and log loss (mean -log p(true class)).

    `log_p` is [n, classes] of float64 log-probabilities; every class is a possible label,
    whether or not `labels` holds it.
    """
    classes = np.arange(log_p.shape[-1])
    return {
        "accuracy": float(accuracy_score(labels, log_p.argmax(-1))),
        "nll": float(log_loss(labels, np.exp(log_p), labels=classes)),
    }


def multilabel(pred: np.ndarray, true: np.ndarray, names: list[str]) -> dict[str, object]:
    """scikit-learn's binary F1 of each attribute (0 when undefined), their mean, and subset
    accuracy (every attribute of an example right), from [n, len(names)] 0/1 arrays."""
    pred, true = np.asarray(pred, np.int32), np.asarray(true, np.int32)
    f1 = f1_score(true, pred, average=None, zero_division=0.0)
    return {
        "f1": dict(zip(names, f1.tolist(), strict=True)),
        "mean_f1": float(f1_score(true, pred, average="macro", zero_division=0.0)),
        "subset_accuracy": float(accuracy_score(true, pred)),
    }


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


def epochs_to_target(curve: list[float], target: float) -> int | None:
    """The first epoch (counted from 1) whose value reaches `target`; None if none does."""
    return next((i + 1 for i, value in enumerate(curve) if value >= target), None)


def sigmoid_above_half(logits: np.ndarray) -> np.ndarray:
    """Boolean: which sigmoid outputs exceed 0.5."""
    return expit(np.asarray(logits, np.float64)) > 0.5


def sigmoid_counts(logits: np.ndarray) -> dict[str, float]:
    """Shares of examples with two or more, and with no, sigmoid outputs above 0.5."""
    above = np.sum(sigmoid_above_half(logits), axis=-1)
    return {
        "frac_two_or_more_above_half": float(np.mean(above >= 2)),
        "frac_none_above_half": float(np.mean(above == 0)),
    }


def seed_summary(runs: list[dict], keys: Iterable[str]) -> dict[str, float | None]:
    """Each key's mean over the runs (seeds) with its standard deviation beside it ("_std");
    None for both where a run has None."""
    out: dict[str, float | None] = {}
    for key in keys:
        values = [r[key] for r in runs]
        none = any(v is None for v in values)
        out[key] = None if none else float(np.mean(values))
        out[key + "_std"] = None if none else float(np.std(values))
    return out
