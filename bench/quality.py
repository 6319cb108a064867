"""Part 1: what each output layer + loss does to a small MLP on scikit-learn's digits."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import jaxloss
from bench import metrics, mlp, multilabel, plots, report
from bench.config import QualityConfig

NOTES = (
    "Test NLL is -log p(true class) with p = softmax(logits) for softmax models and, for "
    "sigmoid models, the sigmoid outputs renormalised to sum to one. ECE: top-label, "
    "{bins} equal-width bins. Out-grad: mean L2 norm of the gradient of the loss (batch mean) "
    "w.r.t. the output layer's kernel and bias over the first epoch's steps. Multi-label "
    "sigmoid models predict an attribute when its output exceeds 0.5; subset accuracy counts "
    "digits with all four attributes right."
)


@dataclass(frozen=True)
class Pairing:
    name: str
    output: str  # "softmax" or "sigmoid": how logits become class probabilities
    loss: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # (logits, labels, one-hot)


def pairings(cfg: QualityConfig) -> list[Pairing]:
    ce = jaxloss.softmax_cross_entropy_with_integer_labels

    def per_example_sum(values: jax.Array) -> jax.Array:  # sum over outputs, mean over batch
        return jnp.mean(jnp.sum(values, axis=-1))

    return [
        Pairing("1 softmax + CE", "softmax", lambda x, y, t: ce(x, y, reduction="mean")),
        Pairing(
            "2 log-softmax + NLL",
            "softmax",
            lambda x, y, t: jaxloss.nll_loss(jax.nn.log_softmax(x), y, reduction="mean"),
        ),
        Pairing(
            "3 sigmoid + one-vs-all BCE",
            "sigmoid",
            lambda x, y, t: per_example_sum(jaxloss.sigmoid_binary_cross_entropy(x, t)),
        ),
        Pairing(
            "4 sigmoid + squared error",
            "sigmoid",
            lambda x, y, t: per_example_sum(jnp.square(jax.nn.sigmoid(x) - t)),
        ),
        Pairing(
            f"5 softmax + CE, smoothing {cfg.label_smoothing:g}",
            "softmax",
            lambda x, y, t: ce(x, y, label_smoothing=cfg.label_smoothing, reduction="mean"),
        ),
        Pairing(
            f"6 softmax focal, gamma {cfg.focal_gamma:g}",
            "softmax",
            lambda x, y, t: jaxloss.softmax_focal_loss(
                x, y, gamma=cfg.focal_gamma, reduction="mean"
            ),
        ),
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
    x_te, y_te = data["x_test"], data["y_test"]

    def evaluate(params: mlp.Params) -> dict[str, float]:
        log_p = metrics.class_log_probs(mlp.predict(params, x_te), p.output)
        return {"acc": metrics.accuracy(log_p.argmax(-1), y_te), "nll": metrics.nll(log_p, y_te)}

    onehot = np.eye(10, dtype=np.float32)[data["y_train"]]
    targets = (data["y_train"], onehot)
    bar.set_postfix_str(f"{p.name} (seed {seed})")
    params, hist = mlp.train(cfg, seed, p.loss, 10, data["x_train"], targets, evaluate, bar)
    logits = mlp.predict(params, x_te)
    log_p = metrics.class_log_probs(logits, p.output)
    acc_curve = [e["acc"] for e in hist["evals"]]
    reached = [i + 1 for i, a in enumerate(acc_curve) if a >= cfg.target_accuracy]
    run = {
        "seed": seed,
        "test_accuracy": acc_curve[-1],
        "test_nll": hist["evals"][-1]["nll"],
        "epochs_to_target": reached[0] if reached else None,
        "grad_norm_epoch1": float(hist["grad_norm"][0].mean()),
        "curves": {
            "test_accuracy": acc_curve,
            "test_nll": [e["nll"] for e in hist["evals"]],
            "train_loss": hist["train_loss"].tolist(),
            "grad_norm_epoch_mean": hist["grad_norm"].mean(1).tolist(),
            "grad_norm_epoch1_steps": hist["grad_norm"][0].tolist(),
        },
        "calibration": metrics.calibration(log_p, y_te, cfg.ece_bins),
    }
    run["ece"] = run["calibration"]["ece"]
    if p.output == "sigmoid":
        above = metrics.outputs_above_half(logits)
        run["frac_two_or_more_above_half"] = float(np.mean(above >= 2))
        run["frac_none_above_half"] = float(np.mean(above == 0))
    return {"run": run, "params": params, "logits": logits}


def _summary(runs: list[dict]) -> dict[str, Any]:
    """Mean over seeds (std alongside); epochs-to-target as the median, None = never."""
    out: dict[str, Any] = {}
    for key in ("test_accuracy", "test_nll", "ece", "grad_norm_epoch1"):
        values = [r[key] for r in runs]
        out[key], out[key + "_std"] = float(np.mean(values)), float(np.std(values))
    if "frac_two_or_more_above_half" in runs[0]:
        for key in ("frac_two_or_more_above_half", "frac_none_above_half"):
            out[key] = float(np.mean([r[key] for r in runs]))
    steps = [np.inf if r["epochs_to_target"] is None else r["epochs_to_target"] for r in runs]
    median = float(np.median(steps))
    out["epochs_to_target"] = None if not np.isfinite(median) else median
    return out


def _loss_and_grad(f: Callable[[jax.Array], jax.Array], z: jax.Array):
    return f(z), jax.grad(lambda w: jnp.sum(f(w)))(z)


def _identity_check(first: dict, second: dict, summaries: list[dict], y: np.ndarray) -> dict:
    """Pairing 1 vs 2: the same function on the same logits (those of pairing 1's first
    seed), the trained weights of that seed, and the printed (seed-mean) metrics."""
    x = jnp.asarray(first["logits"])
    labels = jnp.asarray(y)

    def ce(z):
        return jaxloss.softmax_cross_entropy_with_integer_labels(z, labels)

    def nll(z):
        return jaxloss.nll_loss(jax.nn.log_softmax(z), labels)

    (a, ga), (b, gb) = (jax.jit(partial(_loss_and_grad, f))(x) for f in (ce, nll))
    keys = ("test_accuracy", "test_nll", "ece")
    printed = [report.fmt(s[k]) for s in summaries[:2] for k in keys]
    leaves = zip(jax.tree.leaves(first["params"]), jax.tree.leaves(second["params"]), strict=True)
    weights = [float(jnp.max(jnp.abs(u - v))) for u, v in leaves]
    return {
        "loss_identical_on_same_logits": bool(jnp.array_equal(a, b)),
        "loss_max_abs_diff_on_same_logits": float(jnp.max(jnp.abs(a - b))),
        # |a - b| / (1 + |a|): relative for large losses, absolute near 0 (no 0 / 0).
        "loss_max_scaled_diff_on_same_logits": float(jnp.max(jnp.abs(a - b) / (1 + jnp.abs(a)))),
        "grad_max_abs_diff_on_same_logits": float(jnp.max(jnp.abs(ga - gb))),
        "trained_weights_max_abs_diff": float(max(weights)),
        "trained_metrics_identical_as_printed": printed[:3] == printed[3:],
        "trained_metrics_max_abs_diff": max(abs(summaries[0][k] - summaries[1][k]) for k in keys),
    }


def _table(names: list[str], summaries: list[dict], cfg: QualityConfig) -> str:
    headers = [
        "pairing",
        "test acc",
        "test NLL",
        "ECE",
        f"epochs to {cfg.target_accuracy:.0%}",
        ">=2 outputs > 0.5",
        "out-grad ep. 1",
    ]
    rows = []
    for name, s in zip(names, summaries, strict=True):
        two = s.get("frac_two_or_more_above_half")
        epochs = s["epochs_to_target"]
        rows.append(
            [
                name,
                report.fmt(s["test_accuracy"]),
                report.fmt(s["test_nll"]),
                report.fmt(s["ece"]),
                "never" if epochs is None else f"{epochs:g}",
                "-" if two is None else f"{two:.1%}",
                report.fmt(s["grad_norm_epoch1"]),
            ]
        )
    return report.markdown_table(headers, rows)


def _identity_line(ident: dict) -> str:
    if ident["loss_identical_on_same_logits"]:
        same = "bitwise identical"
    elif ident["loss_max_scaled_diff_on_same_logits"] <= 1e-6:
        same = "equal to float32 rounding, not bitwise"
    else:
        same = "DIFFERENT"
    printed = "identical" if ident["trained_metrics_identical_as_printed"] else "DIFFERENT"
    return (
        f"Pairings 1 vs 2: per-example loss on the same logits {same} "
        f"(max |diff| {ident['loss_max_abs_diff_on_same_logits']:.1e}); gradients of the "
        f"summed loss differ by "
        f"at most {ident['grad_max_abs_diff_on_same_logits']:.1e}; after training, weights "
        f"differ by {ident['trained_weights_max_abs_diff']:.1e} and the printed metrics are "
        f"{printed}."
    )


def _grad_comparison(bce: dict, mse: dict) -> dict[str, float]:
    a, b = bce["grad_norm_epoch1"], mse["grad_norm_epoch1"]
    return {"one_vs_all_bce": a, "squared_error": b, "ratio": a / b}


def _grad_line(g: dict[str, float]) -> str:
    return (
        f"Output-layer gradient norm in the first epoch, sigmoid outputs: one-vs-all BCE "
        f"{g['one_vs_all_bce']:.4f} vs squared error {g['squared_error']:.4f} "
        f"({g['ratio']:.2f}x). Per logit, BCE's gradient is s - y and squared error's "
        f"2 s (1 - s) (s - y), s = sigmoid(x), where 2 s (1 - s) <= 1/2."
    )


def run(cfg: QualityConfig, out: Path, env: dict, *, progress: bool = True) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(cfg)
    pairs = pairings(cfg)
    n_models = len(pairs) + len(multilabel.MODELS)
    total = n_models * len(cfg.seeds) * cfg.epochs
    bar = tqdm(total=total, desc="quality", unit="epoch", disable=not progress, file=sys.stderr)
    with bar:
        trained = [[_train_pairing(p, cfg, s, data, bar) for s in cfg.seeds] for p in pairs]
        multi = multilabel.run(cfg, data, bar)
    runs = [[t["run"] for t in per_seed] for per_seed in trained]
    summaries = [_summary(r) for r in runs]
    ident = _identity_check(trained[0][0], trained[1][0], summaries, data["y_test"])
    results = {
        "environment": env,
        "config": cfg,
        "notes": NOTES.format(bins=cfg.ece_bins),
        "data": {k: list(v.shape) for k, v in data.items()},
        "pairings": [
            {"name": p.name, "output": p.output, "summary": s, "runs": r}
            for p, s, r in zip(pairs, summaries, runs, strict=True)
        ],
        "nll_vs_ce": ident,
        "sigmoid_grad_norm_epoch1": _grad_comparison(summaries[2], summaries[3]),
        "multilabel": multi,
    }
    seeds = "" if len(cfg.seeds) == 1 else f" (mean over seeds {cfg.seeds}; epochs: median)"
    n_tr, n_te = len(data["y_train"]), len(data["y_test"])
    layers = "-".join(str(k) for k in (64, *cfg.hidden, 10))
    results["tables"] = {
        "pairings": f"Output layer + loss, ReLU MLP {layers} on digits ({n_tr} train / {n_te} "
        f"test), {cfg.epochs} epochs{seeds}:\n\n" + _table([p.name for p in pairs], summaries, cfg),
        "identity": _identity_line(ident),
        "sigmoid_grad": _grad_line(results["sigmoid_grad_norm_epoch1"]),
        "multilabel": "Multi-label: even, > 4, prime, closed loop (0, 4, 6, 8, 9):\n\n"
        + multilabel.table(multi),
    }
    results["plots"] = plots.quality(results, out)
    return results
