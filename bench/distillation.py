"""Distillation on digits: a larger MLP, trained on every training digit, teaches the bench's
MLP, which sees only a small subset of them; the student is trained five ways."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import jax
import numpy as np
from sklearn.model_selection import train_test_split

import jaxloss
from bench import metrics, mlp
from bench.config import QualityConfig

# Row keys that are a mean over seeds, with their standard deviation beside them ("_std").
MEAN_STD = ("test_accuracy", "test_nll", "ece", "teacher_agreement")
N_CLASSES = 10
Divergence = Literal["forward_kl", "reverse_kl", "jsd"]
Scores = dict[str, float | None]


@dataclass(frozen=True)
class Way:
    key: str  # names the way in code: "labels", "forward_kl_t1", ...
    name: str  # the row name in the table
    divergence: Divergence | None  # a `distillation_loss` divergence; None: labels only
    temperature: float
    beta: float = 0.5  # the teacher's share of the JSD mixture (divergence "jsd" only)


def ways(cfg: QualityConfig) -> list[Way]:
    t = cfg.distill_temperature
    return [
        Way("labels", "labels only (CE)", None, 1.0),
        Way("forward_kl_t1", "forward KL, T 1", "forward_kl", 1.0),
        Way(f"forward_kl_t{t:g}", f"forward KL, T {t:g}", "forward_kl", t),
        Way(f"reverse_kl_t{t:g}", f"reverse KL, T {t:g}", "reverse_kl", t),
        Way(f"jsd_t{t:g}", f"JSD, beta 0.5, T {t:g}", "jsd", t, 0.5),
    ]


def epochs_total(cfg: QualityConfig) -> int:
    """Epochs that `run` trains, teachers and students (for the progress bar)."""
    return len(cfg.distill_seeds) * (cfg.epochs + len(ways(cfg)) * cfg.student_epochs)


def student_subset(cfg: QualityConfig, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The student's training digits: a stratified subset of the training split, fixed by
    `split_seed` (the same for every seed and every way)."""
    x_sub, _, y_sub, _ = train_test_split(
        data["x_train"],
        data["y_train"],
        train_size=cfg.student_train_size,
        stratify=data["y_train"],
        random_state=cfg.split_seed,
    )
    return {"x": x_sub, "y": y_sub}


def _ce(logits: jax.Array, labels: jax.Array, *unused: jax.Array) -> jax.Array:
    """Batch-mean CE on the labels; `unused` takes the teacher's logits of the labels-only way."""
    return jaxloss.softmax_cross_entropy_with_integer_labels(logits, labels, reduction="mean")


def loss_fn(way: Way, weight: float) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """(student logits, labels, teacher logits) -> the batch-mean student loss:
    CE for labels only, else (1 - weight) CE + weight T² D(teacher, student)."""
    kind = way.divergence
    if kind is None:
        return _ce

    def mixed(logits: jax.Array, labels: jax.Array, teacher: jax.Array) -> jax.Array:
        distill = jaxloss.distillation_loss(
            logits,
            jax.lax.stop_gradient(teacher),  # the teacher is fixed: no gradient flows into it
            divergence=kind,
            beta=way.beta,
            temperature=way.temperature,
            reduction="mean",
        )
        return (1 - weight) * _ce(logits, labels) + weight * distill

    return mixed


def _no_eval(params: mlp.Params) -> dict[str, float]:
    return {}  # only the final weights are scored


def _scores(
    logits: np.ndarray, labels: np.ndarray, teacher: np.ndarray | None, bins: int
) -> Scores:
    """Test accuracy, NLL, ECE and the share of test digits whose argmax is the teacher's
    (None for the teacher itself)."""
    log_p = metrics.class_log_probs(logits, "softmax")
    scores = metrics.classification(log_p, labels)
    agreement = None if teacher is None else float(np.mean(logits.argmax(-1) == teacher.argmax(-1)))
    return {
        "test_accuracy": scores["accuracy"],
        "test_nll": scores["nll"],
        "ece": metrics.calibration(log_p, labels, bins)["ece"],
        "teacher_agreement": agreement,
    }


def _train_teacher(cfg: QualityConfig, seed: int, data: dict, bar: Any) -> mlp.Params:
    bar.set_postfix_str(f"distillation: teacher (seed {seed})")
    teacher_cfg = dataclasses.replace(cfg, hidden=cfg.teacher_hidden)
    x, y = data["x_train"], data["y_train"]
    params, _ = mlp.train(teacher_cfg, seed, _ce, N_CLASSES, x, (y,), _no_eval, bar)
    return params


def _train_student(
    way: Way, cfg: QualityConfig, seed: int, subset: dict, teacher_logits: np.ndarray, bar: Any
) -> mlp.Params:
    """The student of one way and seed; `teacher_logits` are the teacher's on `subset`."""
    bar.set_postfix_str(f"distillation: {way.name} (seed {seed})")
    student_cfg = dataclasses.replace(cfg, epochs=cfg.student_epochs)
    targets = (subset["y"], teacher_logits)
    loss = loss_fn(way, cfg.distill_weight)
    params, _ = mlp.train(student_cfg, seed, loss, N_CLASSES, subset["x"], targets, _no_eval, bar)
    return params


def _seed_runs(cfg: QualityConfig, seed: int, data: dict, subset: dict, bar: Any) -> dict:
    """One seed: the teacher's scores and each way's, keyed "teacher" and by way key. Every
    student of this seed distils from this seed's teacher."""
    x_te, y_te = data["x_test"], data["y_test"]
    teacher = _train_teacher(cfg, seed, data, bar)
    teacher_test = mlp.predict(teacher, x_te)
    teacher_subset = mlp.predict(teacher, subset["x"])
    runs = {"teacher": _scores(teacher_test, y_te, None, cfg.ece_bins)}
    for way in ways(cfg):
        student = _train_student(way, cfg, seed, subset, teacher_subset, bar)
        runs[way.key] = _scores(mlp.predict(student, x_te), y_te, teacher_test, cfg.ece_bins)
    return {k: {"seed": seed, **v} for k, v in runs.items()}


def _row(key: str, name: str, runs: list[dict], **fields: Any) -> dict[str, Any]:
    return (
        {"key": key, "name": name, **fields} | metrics.seed_summary(runs, MEAN_STD) | {"runs": runs}
    )


def run(cfg: QualityConfig, data: dict[str, np.ndarray], bar: Any) -> dict[str, Any]:
    """Records: the setup and a row per model, the teacher first (key "teacher") and then one
    per way, each with the seed means and stds of ``test_accuracy``, ``test_nll``, ``ece``
    and ``teacher_agreement`` (None for the teacher) and the per-seed ``runs``."""
    subset = student_subset(cfg, data)
    by_seed = [_seed_runs(cfg, seed, data, subset, bar) for seed in cfg.distill_seeds]
    teacher_name = "teacher " + "-".join(map(str, cfg.teacher_hidden))
    rows = [_row("teacher", teacher_name, [s["teacher"] for s in by_seed], divergence=None)]
    for w in ways(cfg):
        fields = {"divergence": w.divergence, "temperature": w.temperature, "beta": w.beta}
        rows.append(_row(w.key, w.name, [s[w.key] for s in by_seed], **fields))
    setup = {
        "teacher_train_size": len(data["y_train"]),
        "student_train_size": len(subset["y"]),
        "student_train_per_class": np.bincount(subset["y"], minlength=N_CLASSES).tolist(),
    }
    return {"setup": setup, "models": rows}
