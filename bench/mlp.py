"""A small ReLU MLP and its training loop: optax Adam, one jit-compiled step, fixed seeds."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

Params = list[tuple[jax.Array, jax.Array]]


def init(seed: int, sizes: tuple[int, ...]) -> Params:
    """He-normal hidden layers, a 1/fan-in output layer, zero biases of shape [1, n] (float32).

    Drawn with NumPy from `seed` (no per-shape compilation of a random kernel).
    """
    rng = np.random.default_rng(seed)
    params = []
    for i, (m, n) in enumerate(itertools.pairwise(sizes)):
        gain = 2.0 if i < len(sizes) - 2 else 1.0
        w = np.sqrt(gain / m) * rng.standard_normal((m, n))
        # A [1, n] bias adds to [batch, n] without rank promotion.
        params.append((jnp.asarray(w, jnp.float32), jnp.zeros((1, n), jnp.float32)))
    return params


def apply(params: Params, x: jax.Array) -> jax.Array:
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


_apply = jax.jit(apply)


def predict(params: Params, x: np.ndarray) -> np.ndarray:
    """Logits as a NumPy array (jit-compiled forward pass)."""
    return np.asarray(_apply(params, x))


def _make_step(loss_fn: Callable[..., jax.Array], opt: optax.GradientTransformation):
    def objective(params, x, *targets):
        return loss_fn(apply(params, x), *targets)

    @jax.jit
    def step(params, opt_state, x, *targets):
        loss, grads = jax.value_and_grad(objective)(params, x, *targets)
        # optax's Adam raises a Python float to an int32 step count, which strict dtype
        # promotion (as in the test suite's flags) rejects; the update itself is float32.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = opt.update(grads, opt_state, params)
        # Norm of the gradient of the output layer's (kernel, bias): how hard the loss pushes.
        out_norm = optax.global_norm(grads[-1])
        return optax.apply_updates(params, updates), opt_state, loss, out_norm

    return step


def train(
    cfg: Any,
    seed: int,
    loss_fn: Callable[..., jax.Array],
    n_out: int,
    x: np.ndarray,
    targets: tuple[np.ndarray, ...],
    evaluate: Callable[[Params], dict[str, float]],
    bar: Any,
) -> tuple[Params, dict[str, Any]]:
    """Mini-batch Adam for `cfg.epochs` epochs; `evaluate(params)` after each epoch.

    The seed fixes the initial weights and the batch order, so every loss trained with the
    same seed starts from the same network and sees the same batches.
    """
    opt = optax.adam(cfg.learning_rate)
    params = init(seed, (x.shape[1], *cfg.hidden, n_out))
    opt_state = opt.init(params)
    step = _make_step(loss_fn, opt)
    rng = np.random.default_rng(seed + 1)  # batch order
    n_steps = len(x) // cfg.batch_size  # drop the last partial batch: one compiled shape
    losses, norms, evals = [], [], []
    for _ in range(cfg.epochs):
        perm = rng.permutation(len(x))
        for i in range(n_steps):
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            params, opt_state, loss, norm = step(
                params, opt_state, x[idx], *(t[idx] for t in targets)
            )
            losses.append(loss)
            norms.append(norm)
        evals.append(evaluate(params))
        bar.update(1)
    history = {
        "train_loss": np.asarray(jax.device_get(losses)).reshape(cfg.epochs, n_steps).mean(1),
        "grad_norm": np.asarray(jax.device_get(norms)).reshape(cfg.epochs, n_steps),
        "evals": evals,
    }
    return params, history
