"""Multi-label digits: four attributes of the digit, as independent sigmoids or one softmax."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss
from bench import metrics, mlp
from bench.config import QualityConfig

# Attribute -> the digits that have it. "closed loop": the handwritten shapes 0, 4, 6, 8, 9.
ATTRIBUTES = {
    "even": (0, 2, 4, 6, 8),
    "> 4": (5, 6, 7, 8, 9),
    "prime": (2, 3, 5, 7),
    "closed loop": (0, 4, 6, 8, 9),
}
MODELS = (
    "sigmoid BCE",
    "sigmoid BCE + pos_weight",
    "softmax CE over 16 combinations",
)
_BITS = 2 ** np.arange(len(ATTRIBUTES))


def attributes(digits: np.ndarray) -> np.ndarray:
    """[n, 4] float32 0/1 attributes of each digit."""
    table = np.array([[d in s for s in ATTRIBUTES.values()] for d in range(10)], np.float32)
    return table[digits]


def _sigmoid_loss(pos_weight: jax.Array | None):
    def loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
        bce = jaxloss.sigmoid_binary_cross_entropy(logits, targets, pos_weight=pos_weight)
        return jnp.mean(jnp.sum(bce, axis=-1))

    return loss


def _combination_loss(logits: jax.Array, combos: jax.Array) -> jax.Array:
    return jaxloss.softmax_cross_entropy_with_integer_labels(logits, combos, reduction="mean")


def _decode(logits: np.ndarray, model: str) -> np.ndarray:
    """Predicted 0/1 attributes: sigmoid > 0.5, or the bits of the most likely combination."""
    if model.startswith("softmax"):
        return (logits.argmax(-1)[:, None] & _BITS) > 0
    return metrics.sigmoid_above_half(logits)


def _setups(a_tr: np.ndarray, pos_weight: np.ndarray) -> dict[str, dict[str, Any]]:
    """Model name -> its loss, number of outputs and training target."""
    combos = (a_tr @ _BITS).astype(np.int32)
    n = len(ATTRIBUTES)
    return {
        MODELS[0]: {"loss": _sigmoid_loss(None), "n_out": n, "target": a_tr},
        MODELS[1]: {"loss": _sigmoid_loss(jnp.asarray(pos_weight)), "n_out": n, "target": a_tr},
        MODELS[2]: {"loss": _combination_loss, "n_out": 2**n, "target": combos},
    }


def _train(name: str, setup: dict, cfg: QualityConfig, seed: int, data: dict, bar: Any) -> dict:
    """One seed of one model: F1 per attribute, mean F1, subset accuracy and its curve."""
    x_te, a_te = data["x_test"], attributes(data["y_test"])
    names = list(ATTRIBUTES)

    def evaluate(params: mlp.Params) -> dict[str, Any]:
        return metrics.multilabel(_decode(mlp.predict(params, x_te), name), a_te, names)

    bar.set_postfix_str(f"multi-label: {name} (seed {seed})")
    x_tr, target = data["x_train"], (setup["target"],)
    _, hist = mlp.train(cfg, seed, setup["loss"], setup["n_out"], x_tr, target, evaluate, bar)
    final = hist["evals"][-1]
    curve = [e["subset_accuracy"] for e in hist["evals"]]
    return {"seed": seed, **final, "subset_accuracy_curve": curve}


def run(cfg: QualityConfig, data: dict[str, np.ndarray], bar: Any) -> dict[str, Any]:
    """Records: the attributes, the pos_weight used, and a row per model (seed means and the
    per-seed ``runs``), each with ``f1`` keyed by attribute, ``mean_f1``, ``subset_accuracy``."""
    a_tr = attributes(data["y_train"])
    positives = a_tr.sum(0)
    pos_weight = ((len(a_tr) - positives) / positives).astype(np.float32)
    rows = []
    for name, setup in _setups(a_tr, pos_weight).items():
        runs = [_train(name, setup, cfg, seed, data, bar) for seed in cfg.seeds]
        rows.append(
            {
                "name": name,
                "f1": {k: float(np.mean([r["f1"][k] for r in runs])) for k in ATTRIBUTES},
                "mean_f1": float(np.mean([r["mean_f1"] for r in runs])),
                "subset_accuracy": float(np.mean([r["subset_accuracy"] for r in runs])),
                "runs": runs,
            }
        )
    return {
        "attributes": {k: list(v) for k, v in ATTRIBUTES.items()},
        "pos_weight": dict(zip(ATTRIBUTES, pos_weight.tolist(), strict=True)),
        "models": rows,
    }
