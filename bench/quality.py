"""Part 1: what each output layer + loss does to a small MLP on scikit-learn's digits.

`run` returns plain records; `bench.report` renders and writes them.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import jaxloss
from bench import distillation, metrics, mlp, multilabel, retrieval, sparse_outputs, strips
from bench.config import QualityConfig

# Summary keys that are a mean over seeds, with their standard deviation beside them.
_MEAN_STD = ("test_accuracy", "test_nll", "ece", "grad_norm_epoch1")
_SIGMOID_COUNTS = ("frac_two_or_more_above_half", "frac_none_above_half")


@dataclass(frozen=True)
class Pairing:
    key: str  # names the pairing in code: "ce", "nll", "bce", "mse", "smoothing", "focal"
    name: str  # the row name in the tables
    output: str  # "softmax" or "sigmoid": how logits become class probabilities
    loss: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # (logits, labels, one-hot)


def pairings(cfg: QualityConfig) -> list[Pairing]:
    ce = jaxloss.softmax_cross_entropy_with_integer_labels

    def per_example_sum(values: jax.Array) -> jax.Array:  # sum over outputs, mean over batch
        return jnp.mean(jnp.sum(values, axis=-1))

    def nll(x, y, t):
        return jaxloss.nll_loss(jax.nn.log_softmax(x), y, reduction="mean")

    def focal(x, y, t):
        return jaxloss.softmax_focal_loss(x, y, gamma=cfg.focal_gamma, reduction="mean")

    return [
        Pairing("ce", "1 softmax + CE", "softmax", lambda x, y, t: ce(x, y, reduction="mean")),
        Pairing("nll", "2 log-softmax + NLL", "softmax", nll),
        Pairing(
            "bce",
            "3 sigmoid + one-vs-all BCE",
            "sigmoid",
            lambda x, y, t: per_example_sum(jaxloss.sigmoid_binary_cross_entropy(x, t)),
        ),
        Pairing(
            "mse",
            "4 sigmoid + squared error",
            "sigmoid",
            lambda x, y, t: per_example_sum(jnp.square(jax.nn.sigmoid(x) - t)),
        ),
        Pairing(
            "smoothing",
            f"5 softmax + CE, smoothing {cfg.label_smoothing:g}",
            "softmax",
            lambda x, y, t: ce(x, y, label_smoothing=cfg.label_smoothing, reduction="mean"),
        ),
        Pairing("focal", f"6 softmax focal, gamma {cfg.focal_gamma:g}", "softmax", focal),
    ]


def load_data(cfg: QualityConfig) -> dict[str, np.ndarray]:
    """Digits scaled to [0, 1], with a fixed stratified train/test split."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=cfg.test_fraction, stratify=y, random_state=cfg.split_seed
    )
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}


def _train_pairing(p: Pairing, cfg: QualityConfig, seed: int, data: dict, bar: Any) -> dict:
    """One seed of one pairing: its record ("run"), trained weights and test logits."""
    x_te, y_te = data["x_test"], data["y_test"]

    def evaluate(params: mlp.Params) -> dict[str, float]:
        return metrics.classification(
            metrics.class_log_probs(mlp.predict(params, x_te), p.output), y_te
        )

    onehot = np.eye(10, dtype=np.float32)[data["y_train"]]
    targets = (data["y_train"], onehot)
    bar.set_postfix_str(f"{p.name} (seed {seed})")
    params, hist = mlp.train(cfg, seed, p.loss, 10, data["x_train"], targets, evaluate, bar)
    logits = mlp.predict(params, x_te)
    curves = {
        "test_accuracy": [e["accuracy"] for e in hist["evals"]],
        "test_nll": [e["nll"] for e in hist["evals"]],
        "train_loss": hist["train_loss"].tolist(),
        "grad_norm_epoch_mean": hist["grad_norm"].mean(1).tolist(),
        "grad_norm_epoch1_steps": hist["grad_norm"][0].tolist(),
    }
    calibration = metrics.calibration(metrics.class_log_probs(logits, p.output), y_te, cfg.ece_bins)
    run = {
        "seed": seed,
        "test_accuracy": curves["test_accuracy"][-1],
        "test_nll": curves["test_nll"][-1],
        "ece": calibration["ece"],
        "epochs_to_target": metrics.epochs_to_target(curves["test_accuracy"], cfg.target_accuracy),
        "grad_norm_epoch1": float(hist["grad_norm"][0].mean()),
        "curves": curves,
        "calibration": calibration,
    }
    if p.output == "sigmoid":
        run |= metrics.sigmoid_counts(logits)
    return {"run": run, "params": params, "logits": logits}


def _summary(runs: list[dict]) -> dict[str, Any]:
    """Mean over seeds (std alongside); epochs-to-target as the median, None = never."""
    out: dict[str, Any] = {}
    for key in _MEAN_STD:
        values = [r[key] for r in runs]
        out[key], out[key + "_std"] = float(np.mean(values)), float(np.std(values))
    for key in _SIGMOID_COUNTS:
        out[key] = float(np.mean([r[key] for r in runs])) if key in runs[0] else None
    steps = [np.inf if r["epochs_to_target"] is None else r["epochs_to_target"] for r in runs]
    median = float(np.median(steps))
    out["epochs_to_target"] = None if not np.isfinite(median) else median
    return out


def _loss_and_grad(f: Callable[[jax.Array], jax.Array], z: jax.Array):
    return f(z), jax.grad(lambda w: jnp.sum(f(w)))(z)


def _identity_check(ce: dict, nll: dict, y: np.ndarray) -> dict[str, float | bool]:
    """Pairing "ce" vs "nll": the same function on the same logits (those of the first seed of
    "ce"), and the trained weights of that seed."""
    x = jnp.asarray(ce["logits"])
    labels = jnp.asarray(y)

    def ce_loss(z):
        return jaxloss.softmax_cross_entropy_with_integer_labels(z, labels)

    def nll_loss(z):
        return jaxloss.nll_loss(jax.nn.log_softmax(z), labels)

    (a, ga), (b, gb) = (jax.jit(partial(_loss_and_grad, f))(x) for f in (ce_loss, nll_loss))
    leaves = zip(jax.tree.leaves(ce["params"]), jax.tree.leaves(nll["params"]), strict=True)
    weights = [float(jnp.max(jnp.abs(u - v))) for u, v in leaves]
    return {
        "loss_identical_on_same_logits": bool(jnp.array_equal(a, b)),
        "loss_max_abs_diff_on_same_logits": float(jnp.max(jnp.abs(a - b))),
        # |a - b| / (1 + |a|): relative for large losses, absolute near 0 (no 0 / 0).
        "loss_max_scaled_diff_on_same_logits": float(jnp.max(jnp.abs(a - b) / (1 + jnp.abs(a)))),
        "grad_max_abs_diff_on_same_logits": float(jnp.max(jnp.abs(ga - gb))),
        "trained_weights_max_abs_diff": float(max(weights)),
    }


def _grad_comparison(bce: dict, mse: dict) -> dict[str, float]:
    a, b = bce["grad_norm_epoch1"], mse["grad_norm_epoch1"]
    return {"one_vs_all_bce": a, "squared_error": b, "ratio": a / b}


def _train_all(
    pairs: list[Pairing], cfg: QualityConfig, data: dict, progress: bool
) -> tuple[dict, dict, dict, dict, dict, dict]:
    """Every seed of every pairing, keyed by pairing key, and the records of the multi-label
    models, distillation, retrieval, the CTC strips and the sparse outputs and margins."""
    n_models = len(pairs) + len(multilabel.MODELS)
    total = n_models * len(cfg.seeds) * cfg.epochs + distillation.epochs_total(cfg)
    total += retrieval.epochs_total(cfg) + strips.epochs_total(cfg)
    total += sparse_outputs.epochs_total(cfg)
    bar = tqdm(total=total, desc="quality", unit="epoch", disable=not progress, file=sys.stderr)
    with bar:
        trained = {p.key: [_train_pairing(p, cfg, s, data, bar) for s in cfg.seeds] for p in pairs}
        multi = multilabel.run(cfg, data, bar)
        distil = distillation.run(cfg, data, bar)
        pairs_of_halves = retrieval.run(cfg, data, bar)
        reading = strips.run(cfg, data, bar)
        sparse = sparse_outputs.run(cfg, data, bar)
    return trained, multi, distil, pairs_of_halves, reading, sparse


def run(cfg: QualityConfig, *, progress: bool = True) -> dict[str, Any]:
    """Trains every pairing, the multi-label models and the distillation teachers and
    students; returns their records.

    ``pairings`` is a list of rows, one per pairing in table order, each holding the seed
    summary (``test_accuracy``, ``test_nll``, ``ece``, ``epochs_to_target``, ...) beside
    ``key``, ``name``, ``output`` and the per-seed ``runs``.
    """
    data = load_data(cfg)
    pairs = pairings(cfg)
    trained, multi, distil, halves, reading, sparse = _train_all(pairs, cfg, data, progress)
    rows = []
    for p in pairs:
        runs = [t["run"] for t in trained[p.key]]
        rows.append(
            {"key": p.key, "name": p.name, "output": p.output} | _summary(runs) | {"runs": runs}
        )
    by_key = {r["key"]: r for r in rows}
    ident = _identity_check(trained["ce"][0], trained["nll"][0], data["y_test"])
    ident["trained_metrics_max_abs_diff"] = max(
        abs(by_key["ce"][k] - by_key["nll"][k]) for k in ("test_accuracy", "test_nll", "ece")
    )
    return {
        "config": dataclasses.asdict(cfg),
        "data": {k: list(v.shape) for k, v in data.items()},
        "pairings": rows,
        "nll_vs_ce": ident,
        "sigmoid_grad_norm_epoch1": _grad_comparison(by_key["bce"], by_key["mse"]),
        "multilabel": multi,
        "distillation": distil,
        "retrieval": halves,
        "strips": reading,
        "sparse_outputs": sparse,
    }
