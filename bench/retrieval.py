"""Two-tower retrieval on digits: the top half of each image is one modality, the bottom half
the other. Two small encoders learn to embed the halves of the same digit close together,
with the softmax (CLIP) or the sigmoid (SigLIP) contrastive loss, a learned scale and, for
the sigmoid, a learned bias; test recall@k in both directions."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss
from bench import metrics, mlp
from bench.config import QualityConfig

HALF = 32  # pixels in the top four rows of an 8 x 8 digit
# Published initial values: CLIP's scale 1/0.07; SigLIP's scale 10 and bias -10.
INIT = {"softmax": (np.log(1 / 0.07), 0.0), "sigmoid": (np.log(10.0), -10.0)}
NAMES = {"softmax": "softmax (CLIP)", "sigmoid": "sigmoid (SigLIP)"}
KS = (1, 5)
Params = dict[str, Any]


def halves(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x[:, :HALF], x[:, HALF:]


def init(cfg: QualityConfig, kind: str, seed: int) -> Params:
    sizes = (HALF, *cfg.retrieval_hidden, cfg.retrieval_dim)
    log_scale, bias = INIT[kind]
    return {
        "top": mlp.init(2 * seed, sizes),
        "bottom": mlp.init(2 * seed + 1, sizes),
        "log_scale": jnp.float32(log_scale),
        "bias": jnp.float32(bias),
    }


def embed(tower: mlp.Params, x: jax.Array) -> jax.Array:
    """Unit-norm embeddings of one tower."""
    z = mlp.apply(tower, x)
    return z / jnp.linalg.norm(z, axis=1, keepdims=True)


def loss_fn(kind: str) -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
    def loss(params: Params, top: jax.Array, bottom: jax.Array) -> jax.Array:
        a, b = embed(params["top"], top), embed(params["bottom"], bottom)
        scale = jnp.exp(params["log_scale"])
        if kind == "softmax":
            return jaxloss.softmax_contrastive_loss(a, b, scale=scale, reduction="mean")
        return jaxloss.sigmoid_contrastive_loss(
            a, b, scale=scale, bias=params["bias"], reduction="mean"
        )

    return loss


@functools.cache
def _step(kind: str, learning_rate: float) -> tuple[optax.GradientTransformation, Any]:
    opt = optax.adam(learning_rate)

    @jax.jit
    def step(params, opt_state, top, bottom):
        loss, grads = jax.value_and_grad(loss_fn(kind))(params, top, bottom)
        if kind == "softmax":  # its loss does not depend on the bias
            grads["bias"] = jnp.zeros_like(grads["bias"])
        with jax.numpy_dtype_promotion("standard"):  # optax's step count (see bench.mlp)
            updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return opt, step


def train(cfg: QualityConfig, kind: str, seed: int, x: np.ndarray, bar: Any) -> Params:
    """Adam on mini-batches of `retrieval_batch` pairs (each batch's negatives are the other
    pairs in it) for `retrieval_epochs` epochs."""
    params = init(cfg, kind, seed)
    opt, step = _step(kind, cfg.learning_rate)
    opt_state = opt.init(params)
    rng = np.random.default_rng(seed + 1)
    top, bottom = halves(x)
    n_steps = len(x) // cfg.retrieval_batch
    for _ in range(cfg.retrieval_epochs):
        perm = rng.permutation(len(x))
        for i in range(n_steps):
            idx = perm[i * cfg.retrieval_batch : (i + 1) * cfg.retrieval_batch]
            params, opt_state, _ = step(params, opt_state, top[idx], bottom[idx])
        bar.update(1)
    return params


def similarity(params: Params, x: np.ndarray) -> np.ndarray:
    """[n, n] cosine similarities: row i is top half i against every bottom half."""
    top, bottom = halves(x)
    a, b = embed(params["top"], top), embed(params["bottom"], bottom)
    return np.asarray(a @ b.T)


def recall(sim: np.ndarray, k: int) -> float:
    """Share of rows whose own column is among their k most similar."""
    own = np.diag(sim)[:, None]
    rank = np.sum(sim > own, axis=1)  # columns strictly more similar than the match
    return float(np.mean(rank < k))


def scores(params: Params, x: np.ndarray, kind: str | None) -> dict[str, float | None]:
    """Recall@k both ways, the temperature, and the bias (sigmoid only)."""
    sim = similarity(params, x)
    out: dict[str, float | None] = {f"top_to_bottom_r{k}": recall(sim, k) for k in KS}
    out |= {f"bottom_to_top_r{k}": recall(sim.T, k) for k in KS}
    out["temperature"] = float(jnp.exp(-params["log_scale"]))
    out["bias"] = float(params["bias"]) if kind == "sigmoid" else None
    return out


def epochs_total(cfg: QualityConfig) -> int:
    return 2 * len(cfg.retrieval_seeds) * cfg.retrieval_epochs


def run(cfg: QualityConfig, data: dict[str, np.ndarray], bar: Any) -> dict[str, Any]:
    """Rows for untrained encoders and each loss: the seed mean and std of every score, and
    the per-seed runs."""
    x_tr, x_te = data["x_train"], data["x_test"]
    rows = []
    untrained = [scores(init(cfg, "softmax", s), x_te, None) for s in cfg.retrieval_seeds]
    rows.append(_row("untrained", "untrained encoders", untrained))
    for kind in ("softmax", "sigmoid"):
        runs = [scores(train(cfg, kind, s, x_tr, bar), x_te, kind) for s in cfg.retrieval_seeds]
        rows.append(_row(kind, NAMES[kind], runs))
    return {"test_size": len(x_te), "train_size": len(x_tr), "models": rows}


def _row(key: str, name: str, runs: list[dict[str, float | None]]) -> dict[str, Any]:
    return {"key": key, "name": name, "runs": runs} | metrics.seed_summary(runs, runs[0])
