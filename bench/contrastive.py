"""Contrastive losses in blocks against the materialised [B, B] similarity matrix."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import jaxloss
from bench.config import SpeedConfig
from bench.timing import compile_jax, interleaved

BASE = "materialised"
SCALE, BIAS = 10.0, -10.0  # SigLIP's initial values; CLIP's scale starts at 1/0.07


def _materialised(kind: str):
    """The losses as a jnp user writes them: the whole [B, B] matrix."""

    def softmax(a, b):
        logits = SCALE * jnp.dot(a, b.T, preferred_element_type=jnp.float32)
        rows = jnp.diag(jax.nn.log_softmax(logits, axis=1))
        return -jnp.mean(rows + jnp.diag(jax.nn.log_softmax(logits, axis=0))) / 2

    def sigmoid(a, b):
        logits = SCALE * jnp.dot(a, b.T, preferred_element_type=jnp.float32) + BIAS
        signs = 2 * jnp.eye(a.shape[0], dtype=logits.dtype) - 1
        return -jnp.sum(jax.nn.log_sigmoid(signs * logits)) / a.shape[0]

    return softmax if kind == "softmax" else sigmoid


def _blocked(kind: str):
    def softmax(a, b):
        return jaxloss.softmax_contrastive_loss(a, b, scale=SCALE, reduction="mean")

    def sigmoid(a, b):
        return jaxloss.sigmoid_contrastive_loss(a, b, scale=SCALE, bias=BIAS, reduction="mean")

    return softmax if kind == "softmax" else sigmoid


def candidates(kind: str) -> dict[str, Any]:
    return {"blocked (jaxloss)": _blocked(kind), BASE: _materialised(kind)}


def inputs(b: int, d: int) -> tuple[jax.Array, jax.Array]:
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    x = jax.random.normal(k1, (b, d), jnp.float32)
    y = x + jax.random.normal(k2, (b, d), jnp.float32)
    unit = lambda v: v / jnp.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    return unit(x), unit(y)


def run(cfg: SpeedConfig, bar: Any) -> dict[str, Any]:
    """Records: a row per loss, batch size and candidate of jit(value_and_grad(mean loss,
    argnums=(0, 1))): median seconds (None for the sizes only compiled), compiled
    temporaries, and the ratios to the materialised row."""
    rows = []
    d = cfg.contrastive_dim
    sizes = [(b, True) for b in cfg.contrastive] + [(b, False) for b in cfg.contrastive_memory]
    for kind in ("softmax", "sigmoid"):
        for b, timed in sizes:
            a, o = inputs(b, d)
            calls, temp, outputs = {}, {}, {}
            for name, f in candidates(kind).items():
                calls[name], temp[name] = compile_jax(jax.value_and_grad(f, argnums=(0, 1)), a, o)
                outputs[name] = calls[name]() if timed else None
            median: dict[str, Any] = dict.fromkeys(calls)
            if timed:
                bar.set_postfix_str(f"contrastive {kind} B={b}")
                median = interleaved(calls, cfg.fused_repeats, bar)["median_s"]
            rows += [_record(kind, b, name, median, temp, outputs) for name in calls]
    return {"D": d, "scale": SCALE, "bias": BIAS, "rows": rows}


def _record(kind: str, b: int, name: str, median: dict, temp: dict, outputs: dict) -> dict:
    time_ratio = None if median[name] is None else median[name] / median[BASE]
    diff = None
    if outputs[name] is not None:
        (loss, grads), (base_loss, base_grads) = outputs[name], outputs[BASE]
        errors = [jnp.max(jnp.abs(g - h)) for g, h in zip(grads, base_grads, strict=True)]
        diff = max(float(jnp.abs(loss - base_loss)), *map(float, errors))
    return {
        "kind": kind,
        "B": b,
        "name": name,
        "median_s": median[name],
        "temp_bytes": temp[name],
        "matrix_bytes": b * b * 4,
        "time_ratio": time_ratio,
        "temp_ratio": None if not temp[BASE] else temp[name] / temp[BASE],
        "max_abs_diff_vs_base": diff,
    }
