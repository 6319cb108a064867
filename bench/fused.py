"""Fused linear + cross-entropy against the materialised ``hidden @ weight`` logits."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

import jaxloss
from bench.config import SpeedConfig
from bench.timing import compile_jax, interleaved

BASE = "materialised (jaxloss)"
BASE_ALL = "materialised, all options"
PASSES = ("fwd", "fwd+bwd")
PADDING = 64  # the vocabulary's last classes are padding, masked out by `where`


def _all_options(v: int) -> dict[str, Any]:
    """where (padding), class weights, smoothing, z-loss, soft cap and ignore_index at once."""
    return {
        "where": jnp.arange(v) < v - PADDING,
        "class_weights": jnp.linspace(0.5, 2.0, v, dtype=jnp.float32),
        "label_smoothing": 0.1,
        "z_loss": 1e-4,
        "logit_soft_cap": 30.0,
        "ignore_index": -100,
    }


def _candidates(v: int) -> dict[str, tuple[Any, str]]:
    """name -> (loss(h, w, y), the name of the row it is compared with)."""
    opts = _all_options(v)

    def fused(h, w, y):
        return jaxloss.linear_softmax_cross_entropy(h, w, y, reduction="mean")

    def materialised(h, w, y):
        return jaxloss.softmax_cross_entropy_with_integer_labels(h @ w, y, reduction="mean")

    def materialised_optax(h, w, y):
        return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(h @ w, y))

    def fused_all(h, w, y):
        return jaxloss.linear_softmax_cross_entropy(h, w, y, reduction="mean", **opts)

    def materialised_all(h, w, y):
        ce = jaxloss.softmax_cross_entropy_with_integer_labels
        return ce(h @ w, y, reduction="mean", **opts)

    return {
        "fused (jaxloss)": (fused, BASE),
        BASE: (materialised, BASE),
        "materialised (optax)": (materialised_optax, BASE),
        "fused, all options": (fused_all, BASE_ALL),
        BASE_ALL: (materialised_all, BASE_ALL),
    }


def available() -> bool:
    return hasattr(jaxloss, "linear_softmax_cross_entropy")


def run(cfg: SpeedConfig, bar: Any) -> dict[str, Any]:
    """Records of the fused comparison: the shape, and a row per candidate (``rows``)."""
    n, d, v = cfg.fused
    if not available():
        return {"N": n, "D": d, "V": v, "skipped": "jaxloss has no linear_softmax_cross_entropy"}
    kh, kw, ky = jax.random.split(jax.random.PRNGKey(1), 3)
    h = jax.random.normal(kh, (n, d), jnp.float32)
    w = jax.random.normal(kw, (d, v), jnp.float32) * float(d**-0.5)
    y = jax.random.randint(ky, (n,), 0, v - PADDING, jnp.int32).at[::7].set(-100)
    y_plain = jnp.where(y < 0, 0, y)
    calls, temp, outputs = {}, {}, {}
    candidates = _candidates(v)
    for name, (f, base) in candidates.items():
        labels = y if base == BASE_ALL else y_plain
        passes = {"fwd": f, "fwd+bwd": jax.value_and_grad(f, argnums=(0, 1))}
        for pass_, g in passes.items():
            calls[(name, pass_)], temp[(name, pass_)] = compile_jax(g, h, w, labels)
            outputs[(name, pass_)] = calls[(name, pass_)]()
    bar.set_postfix_str(f"fused N={n} D={d} V={v}")
    timed = interleaved(calls, cfg.fused_repeats, bar)["median_s"]
    rows = [_record(name, base, timed, temp, outputs) for name, (_, base) in candidates.items()]
    return {"N": n, "D": d, "V": v, "logits_bytes": n * v * 4, "rows": rows}


def _record(name: str, base: str, timed: dict, temp: dict, outputs: dict) -> dict[str, Any]:
    """One table row: medians, temporaries and agreement with its materialised jaxloss row."""
    (loss, grads), (base_loss, base_grads) = outputs[(name, "fwd+bwd")], outputs[(base, "fwd+bwd")]
    diffs = [jnp.max(jnp.abs(a - b)) for a, b in zip(grads, base_grads, strict=True)]
    return {
        "name": name,
        "median_s": {p: timed[(name, p)] for p in PASSES},
        "temp_bytes": {p: temp[(name, p)] for p in PASSES},
        "compared_with": base,
        "time_ratio_fwd": timed[(name, "fwd")] / timed[(base, "fwd")],
        "time_ratio_fwd_bwd": timed[(name, "fwd+bwd")] / timed[(base, "fwd+bwd")],
        "temp_ratio_fwd_bwd": _ratio(temp[(name, "fwd+bwd")], temp[(base, "fwd+bwd")]),
        "loss_abs_diff_vs_base": float(jnp.abs(loss - base_loss)),
        "grad_max_abs_diff_vs_base": max(float(x) for x in diffs),
    }


def _ratio(a: int | None, b: int | None) -> float | None:
    return None if a is None or not b else a / b
