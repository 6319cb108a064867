"""The one module that renders and writes results: Markdown tables (tabulate), PNG plots
(matplotlib, Agg backend) and JSON files, all from the plain records the suites return."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tabulate import tabulate

Record = dict[str, Any]
Columns = dict[str, Callable[[Record], str]]  # header -> the cell of a row

QUALITY_NOTES = (
    "Test NLL is -log p(true class) with p = softmax(logits) for softmax models and, for "
    "sigmoid models, the sigmoid outputs renormalised to sum to one. ECE: top-label, "
    "{bins} equal-width bins. Out-grad: mean L2 norm of the gradient of the loss (batch mean) "
    "w.r.t. the output layer's kernel and bias over the first epoch's steps. Multi-label "
    "sigmoid models predict an attribute when its output exceeds 0.5; subset accuracy counts "
    "digits with all four attributes right."
)
SPEED_NOTES = (
    "Median wall time (ms) of interleaved repetitions under jit (a random order each round, "
    "an untimed pause after each call), after a warm-up round; "
    "fwd = mean loss, fwd+bwd = jax.value_and_grad of the mean loss w.r.t. the logits "
    "(torch: autograd.grad). x/optax = time / optax's time (below 1 is faster than optax). "
    "copy = jit(lambda x: x * 1) of the logits, one read and one write: the memory-traffic "
    "reference, shown on both rows."
)


# Numbers as the tables print them; "-" stands for a missing value.


def fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.1f}" if seconds >= 0.01 else f"{seconds * 1e3:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def times(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}x"


def percent(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def mib(n_bytes: int | None) -> str:
    return "-" if n_bytes is None else f"{n_bytes / 2**20:.1f}"


def epochs(x: float | None) -> str:
    return "never" if x is None else f"{x:g}"


def table(rows: list[Record], columns: Columns, *, left: int = 1) -> str:
    """A Markdown (pipe) table with a row per record and a column per entry of `columns`.

    The first `left` columns (names) align left, the others (numbers) right. Cells are the
    formatted strings, printed as they are: tabulate does not re-parse them as numbers.
    """
    cells = [[cell(r) for cell in columns.values()] for r in rows]
    align = ["left"] * left + ["right"] * (len(columns) - left)
    return tabulate(
        cells, headers=list(columns), tablefmt="pipe", colalign=align, disable_numparse=True
    )


def _col(key: str, show: Callable[[Any], str] = fmt) -> Callable[[Record], str]:
    return lambda r: show(r[key])


def _sub(key: str, name: str, show: Callable[[Any], str]) -> Callable[[Record], str]:
    return lambda r: show(r[key][name])


def machine_line(env: Record) -> str:
    v = env["versions"]
    return (
        f"{env['cpu']}, {env['cores']} cores, {env['jax_backend']}; jax {v['jax']}, "
        f"optax {v['optax']}, torch {v['torch'] or '-'}; {env['date'][:10]}"
    )


def title(preset: str, env: Record) -> str:
    return f"# jaxloss benchmark ({preset})\n\n{machine_line(env)}\n"


def _part(part: str, sections: list[str], records: Record, env: Record) -> str:
    text = f"## {part}\n\n" + "\n\n".join(sections)
    return text + f"\n\n{machine_line(env)}; {part} took {records['wall_time_s']:.1f} s.\n"


# Part 1: quality.


def quality_markdown(records: Record, env: Record) -> str:
    cfg = records["config"]
    by_key = {p["key"]: p for p in records["pairings"]}
    sections = [
        _pairings_caption(records) + "\n\n" + table(records["pairings"], _pairing_columns(cfg)),
        _identity_line(records["nll_vs_ce"], by_key["ce"], by_key["nll"]),
        _grad_line(records["sigmoid_grad_norm_epoch1"]),
        "Multi-label: even, > 4, prime, closed loop (0, 4, 6, 8, 9):\n\n"
        + _multilabel_table(records["multilabel"]),
        _students_caption(records) + "\n\n" + _students_table(records["distillation"]),
        _retrieval_caption(records) + "\n\n" + _retrieval_table(records["retrieval"]),
        _strips_line(records),
        _sparse_caption(records, env) + "\n\n" + _sparse_table(records["sparse_outputs"]),
        QUALITY_NOTES.format(bins=cfg["ece_bins"]),
    ]
    return _part("quality", sections, records, env)


def _layers(n_in: int, hidden: list[int]) -> str:
    return "-".join(str(k) for k in (n_in, *hidden, 10))


def _pairings_caption(records: Record) -> str:
    cfg, data = records["config"], records["data"]
    seeds = tuple(cfg["seeds"])
    mean = "" if len(seeds) == 1 else f" (mean over seeds {seeds}; epochs: median)"
    layers = _layers(data["x_train"][1], cfg["hidden"])
    return (
        f"Output layer + loss, ReLU MLP {layers} on digits ({data['y_train'][0]} train / "
        f"{data['y_test'][0]} test), {cfg['epochs']} epochs{mean}:"
    )


def _pairing_columns(cfg: Record) -> Columns:
    return {
        "pairing": _col("name", str),
        "test acc": _col("test_accuracy"),
        "test NLL": _col("test_nll"),
        "ECE": _col("ece"),
        f"epochs to {cfg['target_accuracy']:.0%}": _col("epochs_to_target", epochs),
        ">=2 outputs > 0.5": _col("frac_two_or_more_above_half", percent),
        "out-grad ep. 1": _col("grad_norm_epoch1"),
    }


def identical_as_printed(a: Record, b: Record) -> bool:
    """Whether two pairings' accuracy, NLL and ECE print the same in the table."""
    return all(fmt(a[k]) == fmt(b[k]) for k in ("test_accuracy", "test_nll", "ece"))


def _identity_line(ident: Record, ce: Record, nll: Record) -> str:
    if ident["loss_identical_on_same_logits"]:
        same = "bitwise identical"
    elif ident["loss_max_scaled_diff_on_same_logits"] <= 1e-6:
        same = "equal to float32 rounding, not bitwise"
    else:
        same = "DIFFERENT"
    printed = "identical" if identical_as_printed(ce, nll) else "DIFFERENT"
    return (
        f"Pairings 1 vs 2: per-example loss on the same logits {same} "
        f"(max |diff| {ident['loss_max_abs_diff_on_same_logits']:.1e}); gradients of the "
        f"summed loss differ by "
        f"at most {ident['grad_max_abs_diff_on_same_logits']:.1e}; after training, weights "
        f"differ by {ident['trained_weights_max_abs_diff']:.1e} and the printed metrics are "
        f"{printed}."
    )


def _grad_line(g: Record) -> str:
    return (
        f"Output-layer gradient norm in the first epoch, sigmoid outputs: one-vs-all BCE "
        f"{g['one_vs_all_bce']:.4f} vs squared error {g['squared_error']:.4f} "
        f"({g['ratio']:.2f}x). Per logit, BCE's gradient is s - y and squared error's "
        f"2 s (1 - s) (s - y), s = sigmoid(x), where 2 s (1 - s) <= 1/2."
    )


def _multilabel_table(multi: Record) -> str:
    columns: Columns = {"multi-label model": _col("name", str)}
    columns |= {f"F1 {k}": _sub("f1", k, fmt) for k in multi["attributes"]}
    columns |= {"mean F1": _col("mean_f1"), "subset acc": _col("subset_accuracy")}
    weights = ", ".join(f"{k} {v:.3f}" for k, v in multi["pos_weight"].items())
    return table(multi["models"], columns) + f"\n\npos_weight (negatives/positives): {weights}"


def _students_caption(records: Record) -> str:
    cfg, setup = records["config"], records["distillation"]["setup"]
    n_in = records["data"]["x_train"][1]
    low, high = min(setup["student_train_per_class"]), max(setup["student_train_per_class"])
    per_class = f"{low}" if low == high else f"{low}-{high}"
    seeds = tuple(cfg["distill_seeds"])
    over = f"Seed {seeds[0]}" if len(seeds) == 1 else f"Mean ± std over seeds {seeds}"
    w, t = cfg["distill_weight"], cfg["distill_temperature"]
    models = (
        f"Distillation: the teacher, ReLU MLP {_layers(n_in, cfg['teacher_hidden'])}, learns "
        f"from the labels (CE) of all {setup['teacher_train_size']} training digits for "
        f"{cfg['epochs']} epochs; the student, {_layers(n_in, cfg['hidden'])}, sees only a "
        f"fixed stratified subset of {setup['student_train_size']} of them ({per_class} per "
        f"class) for {cfg['student_epochs']} epochs, with their labels and the teacher's "
        f"logits on them."
    )
    loss = (
        f"Distillation rows minimise {1 - w:g} CE(labels) + {w:g} T² D(teacher, student) "
        f"(`distillation_loss`; T = 1 in the first such row, {t:g} in the others); labels "
        f"only: CE alone."
    )
    rest = (
        f"{over}, each seed's students taught by that seed's teacher. Agreement: share of "
        f"test digits whose most likely class is the teacher's."
    )
    return f"{models} {loss} {rest}"


def _mean_std(key: str) -> Callable[[Record], str]:
    """The seed mean, and the std beside it when there are several seeds."""

    def cell(r: Record) -> str:
        if r[key] is None:
            return "-"
        return fmt(r[key]) + (f" ± {fmt(r[key + '_std'])}" if len(r["runs"]) > 1 else "")

    return cell


def _students_table(distil: Record) -> str:
    columns: Columns = {
        "model": _col("name", str),
        "test acc": _mean_std("test_accuracy"),
        "test NLL": _mean_std("test_nll"),
        "ECE": _mean_std("ece"),
        "agreement": _mean_std("teacher_agreement"),
    }
    return table(distil["models"], columns)


def _retrieval_caption(records: Record) -> str:
    cfg, r = records["config"], records["retrieval"]
    seeds = tuple(cfg["retrieval_seeds"])
    over = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean ± std over seeds {seeds}"
    tower = "-".join(str(k) for k in (32, *cfg["retrieval_hidden"], cfg["retrieval_dim"]))
    return (
        f"Two-tower retrieval: the top half of each digit (32 pixels) is one modality, the "
        f"bottom half the other; two ReLU MLPs {tower} with unit-norm outputs, trained "
        f"{cfg['retrieval_epochs']} epochs on the {r['train_size']} training digits in batches "
        f"of {cfg['retrieval_batch']} pairs with `softmax_contrastive_loss` (learned scale, from "
        "1/0.07) or `sigmoid_contrastive_loss` (learned scale and bias, from 10 and -10). "
        f"Recall@k: share of the {r['test_size']} test halves whose other half is among the k "
        f"most similar of all {r['test_size']} (chance: k/{r['test_size']}); temperature = "
        f"1/scale at the end; {over}."
    )


def _retrieval_table(r: Record) -> str:
    columns: Columns = {
        "loss": _col("name", str),
        "top->bottom R@1": _mean_std("top_to_bottom_r1"),
        "top->bottom R@5": _mean_std("top_to_bottom_r5"),
        "bottom->top R@1": _mean_std("bottom_to_top_r1"),
        "bottom->top R@5": _mean_std("bottom_to_top_r5"),
        "temperature": _mean_std("temperature"),
        "bias": _mean_std("bias"),
    }
    return table(r["models"], columns)


def _strips_line(records: Record) -> str:
    cfg, r = records["config"], records["strips"]
    m = r["model"]
    seeds = tuple(cfg["strips_seeds"])
    over = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean ± std over seeds {seeds}"
    spread = lambda key: "" if len(seeds) == 1 else f" ± {fmt(m[key + '_std'])}"  # noqa: E731
    layers = "-".join(str(k) for k in (64, *cfg["strips_hidden"], 11))
    return (
        f"CTC: strips of 3-6 digits side by side (0-2 empty columns before each), read column "
        f"by column (each frame sees 8 columns around it) by a ReLU MLP {layers} over 10 digits "
        f'and the blank, trained {cfg["strips_epochs"]} epochs with `ctc_loss` ("mean") on '
        f"{r['train_strips']} strips of training digits; on {r['test_strips']} strips of test "
        f"digits, greedy decoding reads **{fmt(m['sequence_accuracy'])}"
        f"{spread('sequence_accuracy')}** of the strips exactly, with a character error rate "
        f"of **{fmt(m['character_error_rate'])}{spread('character_error_rate')}** ({over})."
    )


def _sparse_caption(records: Record, env: Record) -> str:
    cfg, data, r = records["config"], records["data"], records["sparse_outputs"]
    seeds = tuple(cfg["sparse_seeds"])
    over = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean ± std over seeds {seeds}"
    return (
        "Sparse outputs and margins: the pairings' ReLU MLP "
        f"{_layers(data['x_train'][1], cfg['hidden'])} on digits ({r['train_size']} train / "
        f"{r['test_size']} test), its initial weights and batch order fixed by the seed as "
        f"there, trained {cfg['sparse_epochs']} epochs with "
        "`softmax_cross_entropy_with_integer_labels`, "
        "`multiclass_sparsemax_loss`, `entmax15_loss` (Fenchel-Young losses: gradient p - e_y "
        "with p = sparsemax or 1.5-entmax of the logits, probabilities that can be exactly 0) "
        f"or `multiclass_hinge_loss` (Crammer-Singer, margin 1); {over}; measured on "
        f"{env['cpu']}, {env['cores']} cores, {env['jax_backend']}. Own NLL: -log p(label) "
        "under the model's own output (softmax, sparsemax, 1.5-entmax), over the test digits "
        "whose label gets p > 0; it is +inf on the others, whose share is p(label) = 0. "
        "Softmax NLL: under softmax of the same logits, for every model (for all but CE a "
        "reading of the logits, not the output the loss trains). Non-zeros: classes with "
        "p > 0 per test digit, of 10. The hinge has no probabilities (-)."
    )


def _sparse_table(r: Record) -> str:
    columns: Columns = {
        "loss": _col("name", str),
        "test acc": _mean_std("test_accuracy"),
        "own NLL (p > 0)": _mean_std("own_nll"),
        "p(label) = 0": _mean_std("label_zero_fraction"),
        "softmax NLL": _mean_std("softmax_nll"),
        "non-zeros": _mean_std("nonzeros"),
    }
    return table(r["models"], columns)


# Part 2: speed.


def speed_markdown(records: Record, env: Record) -> str:
    with_torch = records["torch"] is not None
    sections = [
        "Integer-label cross-entropy (mean over N examples of V classes):\n\n"
        + _speed_table(records["cross_entropy"], with_torch),
        "Soft-target cross-entropy:\n\n" + _speed_table(records["soft_cross_entropy"], False),
        "Fused linear + cross-entropy vs the materialised logits:\n\n"
        + _fused_table(records["fused"]),
        "Fused linear + distillation vs the materialised logits of both models:\n\n"
        + _distillation_table(records["fused_distillation"]),
        "Contrastive losses in blocks vs the materialised [B, B] similarity matrix:\n\n"
        + _contrastive_table(records["contrastive"]),
        "CTC against optax and PyTorch:\n\n" + _ctc_table(records["ctc"]),
        SPEED_NOTES,
    ]
    return _part("speed", sections, records, env)


def _vs_optax(lib: str) -> Callable[[Record], str]:
    return lambda r: ratio(r["median_s"][lib], r["median_s"]["optax"])


def _speed_table(rows: list[Record], with_torch: bool) -> str:
    libs = ["jaxloss", "optax", *(["torch"] if with_torch else []), "copy"]
    columns: Columns = {
        "N x V": lambda r: f"{r['N']} x {r['V']}",
        "dtype": _col("dtype", str),
        "pass": _col("pass", str),
    }
    columns |= {f"{lib} ms": _sub("median_s", lib, ms) for lib in libs}
    columns |= {f"{lib}/optax": _vs_optax(lib) for lib in libs if lib != "optax"}
    return table(rows, columns, left=3)


def _fused_table(fused: Record) -> str:
    shape = f"N={fused['N']}, D={fused['D']}, V={fused['V']}, float32"
    if "skipped" in fused:
        return f"Fused linear + CE ({shape}): skipped, {fused['skipped']}."
    columns: Columns = {
        "linear + CE": _col("name", str),
        "fwd ms": _sub("median_s", "fwd", ms),
        "fwd+bwd ms": _sub("median_s", "fwd+bwd", ms),
        "fwd / mat.": _col("time_ratio_fwd", times),
        "fwd+bwd / mat.": _col("time_ratio_fwd_bwd", times),
        "temp MiB": _sub("temp_bytes", "fwd+bwd", mib),
        "temp / mat.": _col("temp_ratio_fwd_bwd", lambda x: times(x, 3)),
    }
    note = (
        f"{shape}; mat. = the materialised jaxloss row with the same options (all options: "
        "`where` masking 64 padding classes, class weights, label smoothing 0.1, z-loss 1e-4, "
        "soft cap 30, every 7th label ignored); temp = compiled temporary memory of "
        f"jit(value_and_grad(mean loss, argnums=(0, 1))); the logits alone are "
        f"{mib(fused['logits_bytes'])} MiB."
    )
    return table(fused["rows"], columns) + "\n\n" + note


def _distillation_table(fused: Record) -> str:
    columns: Columns = {
        "linear + distillation": _col("name", str),
        "dtype": _col("dtype", str),
        "fwd+bwd ms": _col("median_s", ms),
        "fwd+bwd / mat.": _col("time_ratio", times),
        "temp MiB": _col("temp_bytes", mib),
        "temp / mat.": _col("temp_ratio", lambda x: times(x, 3)),
    }
    o = fused["options"]
    note = (
        f"N={fused['N']}, D = Dt = {fused['D']}, V={fused['V']}; divergence {o['divergence']!r}, "
        f"beta {o['beta']}, T {o['temperature']}, plus 0.5 x the label cross-entropy; mat. = "
        "the materialised jaxloss row of the same dtype (both models' logits accumulated in "
        "float32); temp = compiled temporary memory of jit(value_and_grad(mean loss, "
        f"argnums=(0, 1))); one [N, V] float32 logits array is {mib(fused['logits_bytes'])} MiB."
    )
    return table(fused["rows"], columns, left=2) + "\n\n" + note


def _contrastive_pairs(records: Record) -> list[Record]:
    """One row per loss and batch size: the blocked row with its materialised partner."""
    rows = records["rows"]
    base = {(r["kind"], r["B"]): r for r in rows if r["name"] == "materialised"}
    return [r | {"base": base[r["kind"], r["B"]]} for r in rows if r["name"] != "materialised"]


def _contrastive_table(records: Record) -> str:
    columns: Columns = {
        "loss": _col("kind", str),
        "B": _col("B", str),
        "blocked ms": _col("median_s", ms),
        "mat. ms": lambda r: ms(r["base"]["median_s"]),
        "blocked / mat.": _col("time_ratio", times),
        "blocked MiB": _col("temp_bytes", mib),
        "mat. MiB": lambda r: mib(r["base"]["temp_bytes"]),
        "blocked / [B, B]": lambda r: times(r["temp_bytes"] / r["matrix_bytes"], 3),
    }
    note = (
        f"D={records['D']}, float32, unit-norm rows, scale {records['scale']} (sigmoid: bias "
        f'{records["bias"]}), reduction "mean"; jit(value_and_grad(loss, argnums=(0, 1))) of '
        "softmax_contrastive_loss / sigmoid_contrastive_loss with the default chunk against "
        "the same loss written over the whole matrix in jnp (mat.); MiB = compiled temporary "
        "memory; [B, B] = one float32 similarity matrix. Sizes without times were only "
        "compiled."
    )
    return table(_contrastive_pairs(records), columns, left=2) + "\n\n" + note


def _ctc_table(records: Record) -> str:
    columns: Columns = {
        "B, T, K, N": lambda r: f"{r['B']}, {r['T']}, {r['K']}, {r['N']}",
        "ctc_loss": _col("name", str),
        "fwd+bwd ms": _col("median_s", ms),
        "/ optax": _col("time_ratio", times),
        "temp MiB": _col("temp_bytes", mib),
        "temp / optax": _col("temp_ratio", lambda x: times(x, 3)),
    }
    note = (
        "float32 logits, every frame and label kept; jit(value_and_grad(mean over the batch of "
        "the per-sequence loss)) w.r.t. the logits; torch: F.ctc_loss of log_softmax on CPU "
        "(sum / B), autograd.grad; temp = compiled temporary memory (JAX only)."
    )
    return table(records["rows"], columns, left=2) + "\n\n" + note


# Plots: each function returns {file name: figure}; `write` saves and closes them.


def _style(pairing: Record) -> str:
    return "--" if pairing["key"] == "nll" else "-"  # "nll" lies on "ce": dashed, both show


def quality_figures(records: Record) -> dict[str, Any]:
    """Learning curves, a reliability diagram and output-gradient norms (first seed)."""
    pairings = records["pairings"]
    return {
        "learning_curves.png": _learning_curves(pairings),
        "reliability.png": _reliability(pairings),
        "grad_norms.png": _grad_norms(pairings),
    }


def _learning_curves(pairings: list[Record]) -> Any:
    fig, (ax_acc, ax_nll) = plt.subplots(1, 2, figsize=(11, 4))
    for p in pairings:
        curves = p["runs"][0]["curves"]
        epoch = np.arange(1, len(curves["test_accuracy"]) + 1)
        ax_acc.plot(epoch, curves["test_accuracy"], _style(p), label=p["name"])
        ax_nll.plot(epoch, curves["test_nll"], _style(p), label=p["name"])
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", ylim=(0.5, 1.0))
    ax_nll.set(xlabel="epoch", ylabel="test NLL (renormalised for sigmoid)", yscale="log")
    ax_acc.legend(fontsize=8)
    fig.suptitle("digits MLP: learning curves per loss")
    return fig


def _reliability(pairings: list[Record]) -> Any:
    cols = 3
    rows = -(-len(pairings) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
    for ax, p in zip(axes.flat, pairings, strict=False):
        _reliability_panel(ax, p["name"], p["runs"][0]["calibration"])
    for ax in list(axes.flat)[len(pairings) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    return fig


def _reliability_panel(ax: Any, name: str, cal: Record) -> None:
    bins = len(cal["bin_count"])
    centers = (np.arange(bins) + 0.5) / bins
    filled = np.asarray(cal["bin_count"]) > 0
    accuracy = np.asarray(cal["bin_accuracy"])[filled]
    ax.bar(
        centers[filled], accuracy, width=1 / bins, edgecolor="black", alpha=0.7, label="accuracy"
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


def _grad_norms(pairings: list[Record]) -> Any:
    fig, (ax_steps, ax_epochs) = plt.subplots(1, 2, figsize=(11, 4))
    for p in pairings:
        curves = p["runs"][0]["curves"]
        ax_steps.plot(curves["grad_norm_epoch1_steps"], _style(p), label=p["name"])
        epoch = np.arange(1, len(curves["grad_norm_epoch_mean"]) + 1)
        ax_epochs.plot(epoch, curves["grad_norm_epoch_mean"], _style(p), label=p["name"])
    ax_steps.set(xlabel="step (first epoch)", ylabel="output-layer gradient norm", yscale="log")
    ax_epochs.set(xlabel="epoch", ylabel="mean output-layer gradient norm", yscale="log")
    ax_steps.legend(fontsize=8)
    fig.suptitle("gradient norm at the output layer (kernel and bias)")
    return fig


def speed_figures(records: Record) -> dict[str, Any]:
    """Forward + backward time per example against the vocabulary size."""
    per_v: dict[tuple[str, str], dict[int, list[float]]] = {}
    for r in records["cross_entropy"]:
        if r["pass"] != "fwd+bwd":
            continue
        for lib, t in r["median_s"].items():
            if t is not None:
                per_v.setdefault((lib, r["dtype"]), {}).setdefault(r["V"], []).append(t / r["N"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"jaxloss": "C0", "optax": "C1", "torch": "C2", "copy": "0.5"}
    for (lib, dtype), by_v in per_v.items():
        v = sorted(by_v)
        t = [1e6 * float(np.mean(by_v[k])) for k in v]  # shapes sharing a V: their mean
        style = "o-" if dtype == "float32" else "s--"
        ax.plot(v, t, style, color=colors.get(lib), label=f"{lib} ({dtype})")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="vocabulary size V",
        ylabel="fwd+bwd time per example (us)",
        title="integer-label cross-entropy under jit: time vs vocabulary",
    )
    ax.legend(fontsize=8)
    return {"ce_time_vs_vocab.png": fig, "contrastive_vs_batch.png": _contrastive_plot(records)}


def _contrastive_plot(records: Record) -> Any:
    """Compiled temporaries and fwd+bwd time of the contrastive losses against B."""
    fig, (mem, tim) = plt.subplots(1, 2, figsize=(10, 4))
    rows = records["contrastive"]["rows"]
    for i, kind in enumerate(("softmax", "sigmoid")):
        for name, style in (("blocked (jaxloss)", "o-"), ("materialised", "s--")):
            mine = sorted((r["B"], r) for r in rows if r["kind"] == kind and r["name"] == name)
            b = [k for k, _ in mine]
            label = f"{kind}, {name}"
            mem.plot(
                b, [r["temp_bytes"] / 2**20 for _, r in mine], style, color=f"C{i}", label=label
            )
            timed = [(k, r["median_s"]) for k, r in mine if r["median_s"] is not None]
            tim.plot(
                [k for k, _ in timed],
                [1e3 * t for _, t in timed],
                style,
                color=f"C{i}",
                label=label,
            )
    mem.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="temporaries (MiB)")
    tim.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="fwd+bwd time (ms)")
    mem.set_title("compiled temporary memory", fontsize=10)
    d = records["contrastive"]["D"]
    tim.set_title(f"jit(value_and_grad), D = {d}, float32", fontsize=10)
    mem.legend(fontsize=8)
    return fig


# Files.

MARKDOWN = {"quality": quality_markdown, "speed": speed_markdown}
FIGURES = {"quality": quality_figures, "speed": speed_figures}


def write(part: str, records: Record, env: Record, out: Path) -> str:
    """Writes `part`.md, `part`.json (the environment and the records) and the part's plots
    to `out`, creating it; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    text = MARKDOWN[part](records, env)
    (out / f"{part}.md").write_text(text)
    write_json(out / f"{part}.json", {"environment": env, **records})
    for name, fig in FIGURES[part](records).items():
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
    return text


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no inf / NaN
    if hasattr(obj, "item"):  # NumPy scalars
        return _plain(obj.item())
    return obj


def write_json(path: Path, data: Record) -> None:
    path.write_text(json.dumps(_plain(data), indent=1) + "\n")
