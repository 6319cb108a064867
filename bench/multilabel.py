"""Multi-label digits: four attributes of the digit, as independent sigmoids or one softmax."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss
from bench import metrics, mlp, report
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


def run(cfg: QualityConfig, data: dict[str, np.ndarray], bar: Any) -> dict[str, Any]:
    a_tr, a_te = attributes(data["y_train"]), attributes(data["y_test"])
    positives = a_tr.sum(0)
    pos_weight = ((len(a_tr) - positives) / positives).astype(np.float32)
    combos = (a_tr @ _BITS).astype(np.int32)
    setups = {
        MODELS[0]: (_sigmoid_loss(None), len(ATTRIBUTES), a_tr),
        MODELS[1]: (_sigmoid_loss(jnp.asarray(pos_weight)), len(ATTRIBUTES), a_tr),
        MODELS[2]: (_combination_loss, 2 ** len(ATTRIBUTES), combos),
    }
    x_te = data["x_test"]
    results = []
    for name, (loss, n_out, target) in setups.items():
        runs = []
        for seed in cfg.seeds:

            def evaluate(params, name=name):
                pred = _decode(mlp.predict(params, x_te), name)
                return {"subset_acc": float(np.mean(np.all(pred == a_te, axis=1)))}

            bar.set_postfix_str(f"multi-label: {name} (seed {seed})")
            params, hist = mlp.train(
                cfg, seed, loss, n_out, data["x_train"], (target,), evaluate, bar
            )
            pred = _decode(mlp.predict(params, x_te), name)
            runs.append(
                {
                    "seed": seed,
                    "f1": dict(
                        zip(ATTRIBUTES, metrics.f1_scores(pred, a_te).tolist(), strict=True)
                    ),
                    "subset_accuracy": float(np.mean(np.all(pred == a_te, axis=1))),
                    "subset_accuracy_curve": [e["subset_acc"] for e in hist["evals"]],
                }
            )
        f1 = {k: float(np.mean([r["f1"][k] for r in runs])) for k in ATTRIBUTES}
        summary = {
            "f1": f1,
            "mean_f1": float(np.mean(list(f1.values()))),
            "subset_accuracy": float(np.mean([r["subset_accuracy"] for r in runs])),
        }
        results.append({"name": name, "summary": summary, "runs": runs})
    return {
        "attributes": {k: list(v) for k, v in ATTRIBUTES.items()},
        "pos_weight": dict(zip(ATTRIBUTES, pos_weight.tolist(), strict=True)),
        "models": results,
    }


def table(multi: dict[str, Any]) -> str:
    headers = ["multi-label model", *(f"F1 {k}" for k in ATTRIBUTES), "mean F1", "subset acc"]
    rows = [
        [
            m["name"],
            *(report.fmt(m["summary"]["f1"][k]) for k in ATTRIBUTES),
            report.fmt(m["summary"]["mean_f1"]),
            report.fmt(m["summary"]["subset_accuracy"]),
        ]
        for m in multi["models"]
    ]
    weights = ", ".join(f"{k} {v:.3f}" for k, v in multi["pos_weight"].items())
    return report.markdown_table(headers, rows) + f"\n\npos_weight (negatives/positives): {weights}"
