"""PNG plots (matplotlib, Agg backend) of the quality and speed results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _save(fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def quality(results: dict[str, Any], out: Path) -> list[str]:
    """Learning curves, a reliability diagram and output-gradient norms (first seed)."""
    pairs = [(p["name"], p["runs"][0]) for p in results["pairings"]]
    return [_learning_curves(pairs, out), _reliability(pairs, out), _grad_norms(pairs, out)]


def _learning_curves(pairs: list, out: Path) -> str:
    fig, (ax_acc, ax_nll) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, run) in enumerate(pairs):
        curves = run["curves"]
        epochs = np.arange(1, len(curves["test_accuracy"]) + 1)
        style = "--" if i == 1 else "-"  # pairing 2 lies on pairing 1: dashed, so both show
        ax_acc.plot(epochs, curves["test_accuracy"], style, label=name)
        ax_nll.plot(epochs, curves["test_nll"], style, label=name)
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", ylim=(0.5, 1.0))
    ax_nll.set(xlabel="epoch", ylabel="test NLL (renormalised for sigmoid)", yscale="log")
    ax_acc.legend(fontsize=8)
    fig.suptitle("digits MLP: learning curves per loss")
    return _save(fig, out, "learning_curves.png")


def _reliability(pairs: list, out: Path) -> str:
    cols = 3
    rows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
    for ax, (name, run) in zip(axes.flat, pairs, strict=False):
        cal = run["calibration"]
        bins = len(cal["bin_count"])
        centers = (np.arange(bins) + 0.5) / bins
        filled = np.asarray(cal["bin_count"]) > 0
        ax.bar(
            centers[filled],
            np.asarray(cal["bin_accuracy"])[filled],
            width=1 / bins,
            edgecolor="black",
            alpha=0.7,
            label="accuracy",
        )
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ax.set(
            title=f"{name}\nECE {cal['ece']:.4f}",
            xlabel="confidence (top label)",
            ylabel="accuracy",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        ax.title.set_fontsize(9)
    for ax in list(axes.flat)[len(pairs) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    return _save(fig, out, "reliability.png")


def _grad_norms(pairs: list, out: Path) -> str:
    fig, (ax_steps, ax_epochs) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, run) in enumerate(pairs):
        curves = run["curves"]
        style = "--" if i == 1 else "-"
        ax_steps.plot(curves["grad_norm_epoch1_steps"], style, label=name)
        epochs = np.arange(1, len(curves["grad_norm_epoch_mean"]) + 1)
        ax_epochs.plot(epochs, curves["grad_norm_epoch_mean"], style, label=name)
    ax_steps.set(xlabel="step (first epoch)", ylabel="output-layer gradient norm", yscale="log")
    ax_epochs.set(xlabel="epoch", ylabel="mean output-layer gradient norm", yscale="log")
    ax_steps.legend(fontsize=8)
    fig.suptitle("gradient norm at the output layer (kernel and bias)")
    return _save(fig, out, "grad_norms.png")


def speed(rows: list[dict[str, Any]], out: Path) -> list[str]:
    """Forward + backward time per example against the vocabulary size."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    per_v: dict[tuple[str, str], dict[int, list[float]]] = {}
    for r in rows:
        if r["pass"] != "fwd+bwd":
            continue
        for name, t in r["median_s"].items():
            if t is not None:
                per_v.setdefault((name, r["dtype"]), {}).setdefault(r["V"], []).append(t / r["N"])
    colors = {"jaxloss": "C0", "optax": "C1", "torch": "C2", "copy": "0.5"}
    for (name, dtype), by_v in per_v.items():
        v = sorted(by_v)
        t = [1e6 * float(np.mean(by_v[k])) for k in v]  # shapes sharing a V: their mean
        style = "o-" if dtype == "float32" else "s--"
        ax.plot(v, t, style, color=colors.get(name), label=f"{name} ({dtype})")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="vocabulary size V",
        ylabel="fwd+bwd time per example (us)",
        title="integer-label cross-entropy under jit: time vs vocabulary",
    )
    ax.legend(fontsize=8)
    return [_save(fig, out, "ce_time_vs_vocab.png")]
