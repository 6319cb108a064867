"""Reading strips of handwritten digits with CTC: 3 to 6 of scikit-learn's 8 x 8 digits side
by side with random gaps, a small MLP that reads each column with its neighbours and emits
logits over 11 symbols (10 digits and the blank), trained with ``ctc_loss`` on strips of
training digits and decoded greedily on strips of test digits only."""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
import optax

import jaxloss
from bench import metrics, mlp
from bench.config import QualityConfig

BLANK = 10
WIDTH = 64  # frames (columns) per strip, the last ones padding
WINDOW = 8  # columns each frame sees, centred on it
MAX_DIGITS = 6


def make_strips(images: np.ndarray, labels: np.ndarray, count: int, seed: int) -> dict:
    """`count` strips of 3-6 digits drawn from `images` [n, 8, 8], 0-2 empty columns before
    each digit; frame and label paddings as ctc_loss takes them (1 = padding)."""
    rng = np.random.default_rng(seed)
    strips = np.zeros((count, 8, WIDTH), np.float32)
    frame_pad = np.ones((count, WIDTH), np.float32)
    seqs = np.zeros((count, MAX_DIGITS), np.int32)
    label_pad = np.ones((count, MAX_DIGITS), np.float32)
    for i in range(count):
        m = int(rng.integers(3, MAX_DIGITS + 1))
        picks = rng.integers(0, len(images), size=m)
        col = 0
        for d in picks:
            col += int(rng.integers(0, 3))
            strips[i, :, col : col + 8] = images[d]
            col += 8
        frame_pad[i, : col + int(rng.integers(0, 3))] = 0
        seqs[i, :m], label_pad[i, :m] = labels[picks], 0
    return {
        "frames": windows(strips),
        "frame_pad": frame_pad,
        "labels": seqs,
        "label_pad": label_pad,
    }


def windows(strips: np.ndarray) -> np.ndarray:
    """[n, 8, W] -> [n, W, 8 * WINDOW]: each column with the WINDOW columns around it."""
    n, h, w = strips.shape
    padded = np.pad(strips, ((0, 0), (0, 0), (WINDOW // 2, WINDOW // 2)))
    around = np.stack([padded[:, :, t : t + WINDOW] for t in range(w)], axis=1)
    return around.reshape(n, w, h * WINDOW)


def greedy(logits: np.ndarray, frame_pad: np.ndarray) -> list[list[int]]:
    """Best symbol per kept frame, repeats merged, blanks removed."""
    out = []
    for best, pad in zip(np.argmax(logits, -1), frame_pad, strict=True):
        seq = best[pad == 0]
        merged = [int(s) for i, s in enumerate(seq) if i == 0 or s != seq[i - 1]]
        out.append([s for s in merged if s != BLANK])
    return out


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance: insertions, deletions and substitutions."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1]


def scores(decoded: list[list[int]], strips: dict) -> dict[str, float]:
    truth = [
        list(map(int, y[p == 0]))
        for y, p in zip(strips["labels"], strips["label_pad"], strict=True)
    ]
    errors = sum(edit_distance(d, t) for d, t in zip(decoded, truth, strict=True))
    return {
        "sequence_accuracy": float(np.mean([d == t for d, t in zip(decoded, truth, strict=True)])),
        "character_error_rate": errors / sum(len(t) for t in truth),
    }


def read(params: mlp.Params, frames: jax.Array) -> jax.Array:
    """[n, W, 8 * WINDOW] frames -> [n, W, 11] logits (the MLP applied to every frame)."""
    n, w, d = frames.shape
    return mlp.apply(params, frames.reshape(n * w, d)).reshape(n, w, -1)


@functools.cache
def _step(learning_rate: float) -> tuple[optax.GradientTransformation, Any]:
    opt = optax.adam(learning_rate)

    def loss(params, x, frame_pad, labels, label_pad):
        logits = read(params, x)
        return jaxloss.ctc_loss(
            logits, frame_pad, labels, label_pad, blank_id=BLANK, reduction="mean"
        )

    @jax.jit
    def step(params, opt_state, *batch):
        value, grads = jax.value_and_grad(loss)(params, *batch)
        with jax.numpy_dtype_promotion("standard"):  # optax's step count (see bench.mlp)
            updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return opt, step


def train(cfg: QualityConfig, seed: int, strips: dict, bar: Any) -> mlp.Params:
    params = mlp.init(seed, (8 * WINDOW, *cfg.strips_hidden, BLANK + 1))
    opt, step = _step(cfg.strips_learning_rate)
    opt_state = opt.init(params)
    rng = np.random.default_rng(seed + 1)
    keys = ("frames", "frame_pad", "labels", "label_pad")
    n_steps = len(strips["frames"]) // cfg.strips_batch
    for _ in range(cfg.strips_epochs):
        perm = rng.permutation(len(strips["frames"]))
        for i in range(n_steps):
            idx = perm[i * cfg.strips_batch : (i + 1) * cfg.strips_batch]
            params, opt_state, _ = step(params, opt_state, *(strips[k][idx] for k in keys))
        bar.update(1)
    return params


def epochs_total(cfg: QualityConfig) -> int:
    return len(cfg.strips_seeds) * cfg.strips_epochs


def run(cfg: QualityConfig, data: dict[str, np.ndarray], bar: Any) -> dict[str, Any]:
    """Sequence accuracy and character error rate on test strips, per seed and their mean and
    std."""
    train_strips = make_strips(
        data["x_train"].reshape(-1, 8, 8), data["y_train"], cfg.strips_train, cfg.split_seed
    )
    test_strips = make_strips(
        data["x_test"].reshape(-1, 8, 8), data["y_test"], cfg.strips_test, cfg.split_seed + 1
    )
    runs = []
    for seed in cfg.strips_seeds:
        params = train(cfg, seed, train_strips, bar)
        logits = np.asarray(jax.jit(read)(params, test_strips["frames"]))
        runs.append(scores(greedy(logits, test_strips["frame_pad"]), test_strips))
    row = {"runs": runs} | metrics.seed_summary(runs, runs[0])
    return {"train_strips": cfg.strips_train, "test_strips": cfg.strips_test, "model": row}
