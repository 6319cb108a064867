"""Sparse outputs and margins on digits: the quality suite's MLP trained with softmax
cross-entropy, the sparsemax and 1.5-entmax Fenchel-Young losses, and the multiclass
(Crammer-Singer) hinge; test accuracy, the NLL of the test labels, and how many classes each
model's own output mapping leaves with a non-zero probability."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from scipy.special import softmax

import jaxloss
from bench import metrics, mlp
from bench.config import QualityConfig

CLASSES = 10
# Keys of every run, and so of the seed summary beside the runs.
KEYS = (
    "test_accuracy",
    "own_nll",
    "label_zero_fraction",
    "softmax_nll",
    "nonzeros",
)


@dataclass(frozen=True)
class Model:
    key: str  # "ce", "sparsemax", "entmax15", "hinge"
    name: str  # the row name in the table
    loss: Callable[..., jax.Array]  # (logits, labels, *, reduction) -> loss
    # The model's own probabilities ([n, 10] float64) from its logits; None: it has none.
    mapping: Callable[[np.ndarray], np.ndarray] | None


def _softmax(logits: np.ndarray) -> np.ndarray:
    return softmax(np.asarray(logits, np.float64), axis=-1)


def _of(f: Callable[[jax.Array], jax.Array]) -> Callable[[np.ndarray], np.ndarray]:
    """A jaxloss mapping on the float32 logits, its probabilities (exact zeros) in float64."""
    return lambda logits: np.asarray(f(jax.numpy.asarray(logits)), np.float64)


def models() -> list[Model]:
    return [
        Model("ce", "softmax + CE", jaxloss.softmax_cross_entropy_with_integer_labels, _softmax),
        Model(
            "sparsemax",
            "sparsemax loss",
            jaxloss.multiclass_sparsemax_loss,
            _of(jaxloss.sparsemax),
        ),
        Model("entmax15", "1.5-entmax loss", jaxloss.entmax15_loss, _of(jaxloss.entmax15)),
        Model("hinge", "multiclass hinge", jaxloss.multiclass_hinge_loss, None),
    ]


def scores(model: Model, logits: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """Accuracy of the largest logit; NLL under softmax(logits) for every model; for models with
    probabilities, the NLL of their own output over the test digits whose label it gives a
    non-zero probability, the share it gives 0, and the mean count of non-zero outputs."""
    under_softmax = metrics.classification(metrics.class_log_probs(logits, "softmax"), labels)
    out: dict[str, float | None] = {
        "test_accuracy": under_softmax["accuracy"],
        "own_nll": None,
        "label_zero_fraction": None,
        "softmax_nll": under_softmax["nll"],
        "nonzeros": None,
    }
    if model.mapping is None:
        return out
    p = model.mapping(logits)
    p_label = p[np.arange(len(labels)), labels]
    kept = p_label > 0
    out["own_nll"] = float(-np.mean(np.log(p_label[kept]))) if kept.any() else None
    out["label_zero_fraction"] = float(np.mean(~kept))
    out["nonzeros"] = float(np.mean(np.sum(p > 0, axis=-1)))
    return out


def _training_config(cfg: QualityConfig) -> QualityConfig:
    return dataclasses.replace(cfg, epochs=cfg.sparse_epochs)


def train(model: Model, cfg: QualityConfig, seed: int, data: dict, bar: Any) -> mlp.Params:
    """The quality suite's MLP (`cfg.hidden`, Adam, batches, seeds) for `sparse_epochs`."""

    def loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
        return model.loss(logits, labels, reduction="mean")

    params, _ = mlp.train(
        _training_config(cfg),
        seed,
        loss,
        CLASSES,
        data["x_train"],
        (data["y_train"],),
        lambda params: {},
        bar,
    )
    return params


def epochs_total(cfg: QualityConfig) -> int:
    return len(models()) * len(cfg.sparse_seeds) * cfg.sparse_epochs


def run(cfg: QualityConfig, data: dict[str, np.ndarray], bar: Any) -> dict[str, Any]:
    """A row per model: the seed mean and std of every score (None where it has none), and the
    per-seed runs."""
    x_te, y_te = data["x_test"], data["y_test"]
    rows = []
    for model in models():
        runs = []
        for seed in cfg.sparse_seeds:
            bar.set_postfix_str(f"{model.name} (seed {seed})")
            params = train(model, cfg, seed, data, bar)
            runs.append({"seed": seed} | scores(model, mlp.predict(params, x_te), y_te))
        summary = metrics.seed_summary(runs, KEYS)
        rows.append({"key": model.key, "name": model.name, "runs": runs} | summary)
    return {"train_size": len(data["x_train"]), "test_size": len(x_te), "models": rows}
