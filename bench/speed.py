"""Part 2: cross-entropy speed and memory, jaxloss vs optax vs torch vs a copy, in one process.

`run` returns plain records; `bench.report` renders and writes them.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import jaxloss
from bench import contrastive, ctc, fused, fused_distillation
from bench.config import SpeedConfig
from bench.timing import compile_jax, interleaved
from bench.torch_ce import torch_calls, torch_info

LOSSES = {
    "integer": {
        "jaxloss": jaxloss.softmax_cross_entropy_with_integer_labels,
        "optax": optax.losses.softmax_cross_entropy_with_integer_labels,
    },
    "soft": {
        "jaxloss": jaxloss.softmax_cross_entropy,
        "optax": optax.losses.softmax_cross_entropy,
    },
}
PASSES = ("fwd", "fwd+bwd")


def _passes(loss: Any) -> dict[str, Any]:
    def fwd(x, t):
        return jnp.mean(loss(x, t))

    return {"fwd": fwd, "fwd+bwd": jax.value_and_grad(fwd)}


def _copy(x: jax.Array) -> jax.Array:
    return x * 1


def _inputs(kind: str, n: int, v: int, dtype: str) -> tuple[jax.Array, jax.Array]:
    kx, kt = jax.random.split(jax.random.PRNGKey(n + v))
    x = jax.random.normal(kx, (n, v), jnp.float32).astype(dtype)
    if kind == "integer":
        return x, jax.random.randint(kt, (n,), 0, v, jnp.int32)
    return x, jax.nn.softmax(jax.random.normal(kt, (n, v), jnp.float32), axis=-1).astype(dtype)


def _repeats(cfg: SpeedConfig, n: int, v: int) -> int:
    """Sub-millisecond cases get more rounds (up to 16x), so their medians are not noise."""
    return cfg.repeats * min(16, max(1, 2**25 // (n * v)))


def _case(case: dict[str, Any], cfg: SpeedConfig, bar: Any) -> list[dict]:
    """Times every candidate on one case (kind, N, V, dtype) in one interleaved loop; returns
    the case's record for each pass."""
    kind, n, v = case["kind"], case["N"], case["V"]
    x, t = _inputs(kind, n, v, case["dtype"])
    calls, temp, outputs = {}, {}, {}
    for lib, loss in LOSSES[kind].items():
        for pass_, f in _passes(loss).items():
            calls[(lib, pass_)], temp[(lib, pass_)] = compile_jax(f, x, t)
            outputs[(lib, pass_)] = calls[(lib, pass_)]()
    # Agreement with optax, checked once; the outputs are then freed before timing.
    diffs = {p: _max_diff(outputs[("jaxloss", p)], outputs[("optax", p)]) for p in PASSES}
    del outputs
    calls[("copy", "")], temp[("copy", "")] = compile_jax(_copy, x)
    if kind == "integer" and case["dtype"] == "float32" and cfg.torch:
        calls.update(torch_calls(np.asarray(x), np.asarray(t)))
    bar.set_postfix_str(f"{kind} {n}x{v} {case['dtype']}")
    timed = interleaved(calls, _repeats(cfg, n, v), bar)["median_s"]
    return [_record(case, pass_, timed, temp, diffs[pass_]) for pass_ in PASSES]


def _record(case: dict, pass_: str, timed: dict, temp: dict, diff: float) -> dict[str, Any]:
    """One table row: the case, the pass, and per library its median, ratio and temporaries."""
    median = {lib: timed.get((lib, pass_)) for lib in ("jaxloss", "optax", "torch")}
    median["copy"] = timed[("copy", "")]
    ratio = {k: None if s is None else s / median["optax"] for k, s in median.items()}
    temps = {lib: temp[(lib, pass_)] for lib in LOSSES[case["kind"]]}
    return case | {
        "pass": pass_,
        "median_s": median,
        "ratio_to_optax": ratio,
        "temp_bytes": temps | {"copy": temp[("copy", "")]},
        "max_abs_diff_jaxloss_vs_optax": diff,
    }


def _max_diff(a: Any, b: Any) -> float:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(
        float(jnp.max(jnp.abs(u.astype(jnp.float32) - w.astype(jnp.float32)))) for u, w in pairs
    )


def _cases(cfg: SpeedConfig) -> list[dict[str, Any]]:
    integer = [("integer", shape, d) for d in cfg.dtypes for shape in cfg.ce_shapes]
    soft = [("soft", shape, d) for d in cfg.dtypes for shape in cfg.soft_shapes]
    return [{"kind": k, "N": n, "V": v, "dtype": d} for k, (n, v), d in integer + soft]


def run(cfg: SpeedConfig, *, progress: bool = True) -> dict[str, Any]:
    """Times every case and the fused comparison; returns their records.

    ``cross_entropy`` and ``soft_cross_entropy`` are lists of rows keyed by ``N``, ``V``,
    ``dtype``, ``pass``, with ``median_s`` (seconds), ``ratio_to_optax`` and ``temp_bytes``
    keyed by library; ``torch`` is its version and threads, None when it was not timed.
    """
    cases = _cases(cfg)
    rounds = sum(_repeats(cfg, c["N"], c["V"]) for c in cases)
    rounds += cfg.fused_repeats if fused.available() else 0
    rounds += cfg.fused_repeats * len(cfg.dtypes)
    rounds += cfg.fused_repeats * 2 * len(cfg.contrastive)
    rounds += cfg.fused_repeats * len(cfg.ctc)
    bar = tqdm(total=rounds, desc="speed", unit="round", disable=not progress, file=sys.stderr)
    with bar:
        rows = [r for case in cases for r in _case(case, cfg, bar)]
        fused_records = fused.run(cfg, bar)
        distillation_records = fused_distillation.run(cfg, bar)
        contrastive_records = contrastive.run(cfg, bar)
        ctc_records = ctc.run(cfg, bar)
    return {
        "config": dataclasses.asdict(cfg),
        "torch": torch_info() if cfg.torch else None,
        "cross_entropy": [r for r in rows if r["kind"] == "integer"],
        "soft_cross_entropy": [r for r in rows if r["kind"] == "soft"],
        "fused": fused_records,
        "fused_distillation": distillation_records,
        "contrastive": contrastive_records,
        "ctc": ctc_records,
    }
