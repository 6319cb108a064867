"""Fused linear + distillation against the materialised logits of both models."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import jaxloss
from bench.config import SpeedConfig
from bench.timing import compile_jax, interleaved

BASE = "materialised (jaxloss)"
# The setting: generalized JSD at beta 1/2, T = 2, half the label cross-entropy.
OPTIONS = {"divergence": "jsd", "beta": 0.5, "temperature": 2.0}
LABEL_WEIGHT = 0.5


def _candidates(y: jax.Array) -> dict[str, Any]:
    """name -> loss(h, w, ht, wt), the mean over tokens; the teacher is a constant."""

    def fused(h, w, ht, wt):
        return jaxloss.linear_distillation_loss(
            h, w, ht, wt, labels=y, label_weight=LABEL_WEIGHT, reduction="mean", **OPTIONS
        )

    def materialised(h, w, ht, wt):
        x = jnp.dot(h, w, preferred_element_type=jnp.float32)
        t = jax.lax.stop_gradient(jnp.dot(ht, wt, preferred_element_type=jnp.float32))
        distil = jaxloss.distillation_loss(x, t, reduction="mean", **OPTIONS)
        ce = jaxloss.softmax_cross_entropy_with_integer_labels(x, y, reduction="mean")
        return distil + LABEL_WEIGHT * ce

    return {"fused (jaxloss)": fused, BASE: materialised}


def _inputs(n: int, d: int, v: int, dtype: str) -> tuple[jax.Array, ...]:
    k = jax.random.split(jax.random.PRNGKey(2), 5)
    scale = float(d**-0.5) * 3
    h, ht = (jax.random.normal(key, (n, d), jnp.float32).astype(dtype) for key in k[:2])
    w, wt = ((jax.random.normal(key, (d, v)) * scale).astype(dtype) for key in k[2:4])
    return h, w, ht, wt, jax.random.randint(k[4], (n,), 0, v, jnp.int32)


def run(cfg: SpeedConfig, bar: Any) -> dict[str, Any]:
    """Records: the shape, and a row per dtype and candidate (``rows``) of
    jit(value_and_grad(mean loss, argnums=(0, 1))): median seconds, compiled temporaries, and
    the ratios and differences to the materialised row of the same dtype."""
    n, d, v = cfg.distillation
    rows = []
    for dtype in cfg.dtypes:
        h, w, ht, wt, y = _inputs(n, d, v, dtype)
        calls, temp, outputs = {}, {}, {}
        for name, f in _candidates(y).items():
            g = jax.value_and_grad(f, argnums=(0, 1))
            calls[name], temp[name] = compile_jax(g, h, w, ht, wt)
            outputs[name] = calls[name]()
        bar.set_postfix_str(f"distillation N={n} D={d} V={v} {dtype}")
        timed = interleaved(calls, cfg.fused_repeats, bar)["median_s"]
        rows += [_record(name, dtype, timed, temp, outputs) for name in calls]
    return {"N": n, "D": d, "V": v, "logits_bytes": n * v * 4, "options": OPTIONS, "rows": rows}


def _record(name: str, dtype: str, timed: dict, temp: dict, outputs: dict) -> dict[str, Any]:
    (loss, grads), (base_loss, base_grads) = outputs[name], outputs[BASE]
    diffs = [
        jnp.max(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32)))
        for a, b in zip(grads, base_grads, strict=True)
    ]
    return {
        "name": name,
        "dtype": dtype,
        "median_s": timed[name],
        "temp_bytes": temp[name],
        "time_ratio": timed[name] / timed[BASE],
        "temp_ratio": None if not temp[BASE] or temp[name] is None else temp[name] / temp[BASE],
        "loss_abs_diff_vs_base": float(jnp.abs(loss - base_loss)),
        "grad_max_abs_diff_vs_base": max(float(x) for x in diffs),
    }
