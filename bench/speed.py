"""Part 2: cross-entropy speed and memory, jaxloss vs optax vs torch vs a copy, in one process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import jaxloss
from bench import fused, plots, report
from bench.config import SpeedConfig
from bench.timing import compile_jax, interleaved
from bench.torch_ce import torch_calls, torch_info

NOTES = (
    "Median wall time (ms) of interleaved repetitions under jit (a random order each round, "
    "an untimed pause after each call), after a warm-up round; "
    "fwd = mean loss, fwd+bwd = jax.value_and_grad of the mean loss w.r.t. the logits "
    "(torch: autograd.grad). x/optax = time / optax's time (below 1 is faster than optax). "
    "copy = jit(lambda x: x * 1) of the logits, one read and one write: the memory-traffic "
    "reference, shown on both rows."
)
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


def _case(kind: str, n: int, v: int, dtype: str, cfg: SpeedConfig, bar: Any) -> list[dict]:
    """Times every candidate on one (kind, N, V, dtype) in one interleaved loop; a row per pass."""
    x, t = _inputs(kind, n, v, dtype)
    calls, temp, outputs = {}, {}, {}
    for lib, loss in LOSSES[kind].items():
        for pass_, f in _passes(loss).items():
            calls[(lib, pass_)], temp[(lib, pass_)] = compile_jax(f, x, t)
            outputs[(lib, pass_)] = calls[(lib, pass_)]()
    # Agreement with optax, checked once; the outputs are then freed before timing.
    diffs = {p: _max_diff(outputs[("jaxloss", p)], outputs[("optax", p)]) for p in PASSES}
    del outputs
    calls[("copy", "")], temp[("copy", "")] = compile_jax(_copy, x)
    if kind == "integer" and dtype == "float32" and cfg.torch:
        calls.update(torch_calls(np.asarray(x), np.asarray(t)))
    bar.set_postfix_str(f"{kind} {n}x{v} {dtype}")
    timed = interleaved(calls, _repeats(cfg, n, v), bar)["median_s"]
    rows = []
    for pass_ in PASSES:
        median = {lib: timed.get((lib, pass_)) for lib in ("jaxloss", "optax", "torch")}
        median["copy"] = timed[("copy", "")]
        ratio = {k: None if s is None else s / median["optax"] for k, s in median.items()}
        temps = {lib: temp[(lib, pass_)] for lib in LOSSES[kind]} | {"copy": temp[("copy", "")]}
        rows.append(
            {
                "kind": kind,
                "N": n,
                "V": v,
                "dtype": dtype,
                "pass": pass_,
                "median_s": median,
                "ratio_to_optax": ratio,
                "temp_bytes": temps,
                "max_abs_diff_jaxloss_vs_optax": diffs[pass_],
            }
        )
    return rows


def _max_diff(a: Any, b: Any) -> float:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(
        float(jnp.max(jnp.abs(u.astype(jnp.float32) - w.astype(jnp.float32)))) for u, w in pairs
    )


def _table(rows: list[dict], with_torch: bool) -> str:
    libs = ["jaxloss", "optax", *(["torch"] if with_torch else []), "copy"]
    ratios = [lib for lib in libs if lib != "optax"]
    headers = [
        "N x V",
        "dtype",
        "pass",
        *(f"{lib} ms" for lib in libs),
        *(f"{lib}/optax" for lib in ratios),
    ]
    body = [
        [
            f"{r['N']} x {r['V']}",
            r["dtype"],
            r["pass"],
            *(report.ms(r["median_s"][lib]) for lib in libs),
            *(report.ratio(r["median_s"][lib], r["median_s"]["optax"]) for lib in ratios),
        ]
        for r in rows
    ]
    return report.markdown_table(headers, body, right=set(range(3, len(headers))))


def run(cfg: SpeedConfig, out: Path, env: dict, *, progress: bool = True) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    torch = torch_info() if cfg.torch else None
    cfg_torch = cfg.torch and torch is not None
    cases = [("integer", n, v, d) for d in cfg.dtypes for n, v in cfg.ce_shapes]
    cases += [("soft", n, v, d) for d in cfg.dtypes for n, v in cfg.soft_shapes]
    rounds = sum(_repeats(cfg, n, v) for _, n, v, _ in cases)
    rounds += cfg.fused_repeats if fused.available() else 0
    bar = tqdm(total=rounds, desc="speed", unit="round", disable=not progress, file=sys.stderr)
    with bar:
        rows = [r for case in cases for r in _case(*case, cfg, bar)]
        fused_res = fused.run(cfg, bar)
    integer = [r for r in rows if r["kind"] == "integer"]
    soft = [r for r in rows if r["kind"] == "soft"]
    results = {
        "environment": env,
        "config": cfg,
        "torch": torch,
        "notes": NOTES,
        "cross_entropy": integer,
        "soft_cross_entropy": soft,
        "fused": fused_res,
    }
    results["tables"] = {
        "cross_entropy": "Integer-label cross-entropy (mean over N examples of V classes):\n\n"
        + _table(integer, cfg_torch),
        "soft_cross_entropy": "Soft-target cross-entropy:\n\n" + _table(soft, False),
        "fused": "Fused linear + cross-entropy vs the materialised logits:\n\n"
        + fused.table(fused_res),
    }
    results["plots"] = plots.speed(integer, out)
    return results
