"""Fused linear + cross-entropy against the materialised ``hidden @ weight`` logits."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

import jaxloss
from bench import report
from bench.config import SpeedConfig
from bench.timing import compile_jax, interleaved

BASE = "materialised (jaxloss)"


def _candidates() -> dict[str, Any]:
    def fused(h, w, y):
        return jaxloss.linear_softmax_cross_entropy(h, w, y, reduction="mean")

    def materialised(h, w, y):
        return jaxloss.softmax_cross_entropy_with_integer_labels(h @ w, y, reduction="mean")

    def materialised_optax(h, w, y):
        return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(h @ w, y))

    return {
        "fused (jaxloss)": fused,
        BASE: materialised,
        "materialised (optax)": materialised_optax,
    }


def available() -> bool:
    return hasattr(jaxloss, "linear_softmax_cross_entropy")


def run(cfg: SpeedConfig, bar: Any) -> dict[str, Any]:
    n, d, v = cfg.fused
    if not available():
        return {"N": n, "D": d, "V": v, "skipped": "jaxloss has no linear_softmax_cross_entropy"}
    kh, kw, ky = jax.random.split(jax.random.PRNGKey(1), 3)
    h = jax.random.normal(kh, (n, d), jnp.float32)
    w = jax.random.normal(kw, (d, v), jnp.float32) * float(d**-0.5)
    y = jax.random.randint(ky, (n,), 0, v, jnp.int32)
    calls, temp, outputs = {}, {}, {}
    for name, f in _candidates().items():
        for pass_, g in (("fwd", f), ("fwd+bwd", jax.value_and_grad(f, argnums=(0, 1)))):
            calls[(name, pass_)], temp[(name, pass_)] = compile_jax(g, h, w, y)
            outputs[(name, pass_)] = calls[(name, pass_)]()
    bar.set_postfix_str(f"fused N={n} D={d} V={v}")
    timed = interleaved(calls, cfg.fused_repeats, bar)["median_s"]
    base = outputs[(BASE, "fwd+bwd")]
    rows = []
    for name in _candidates():
        vg = outputs[(name, "fwd+bwd")]
        rows.append(
            {
                "name": name,
                "median_s": {p: timed[(name, p)] for p in ("fwd", "fwd+bwd")},
                "temp_bytes": {p: temp[(name, p)] for p in ("fwd", "fwd+bwd")},
                "time_ratio_fwd": timed[(name, "fwd")] / timed[(BASE, "fwd")],
                "time_ratio_fwd_bwd": timed[(name, "fwd+bwd")] / timed[(BASE, "fwd+bwd")],
                "temp_ratio_fwd_bwd": _ratio(temp[(name, "fwd+bwd")], temp[(BASE, "fwd+bwd")]),
                "loss_abs_diff_vs_base": float(jnp.abs(vg[0] - base[0])),
                "grad_max_abs_diff_vs_base": max(
                    float(jnp.max(jnp.abs(a - b))) for a, b in zip(vg[1], base[1], strict=True)
                ),
            }
        )
    return {"N": n, "D": d, "V": v, "logits_bytes": n * v * 4, "rows": rows}


def _ratio(a: int | None, b: int | None) -> float | None:
    return None if a is None or not b else a / b


def table(res: dict[str, Any]) -> str:
    shape = f"N={res['N']}, D={res['D']}, V={res['V']}, float32"
    if "skipped" in res:
        return f"Fused linear + CE ({shape}): skipped, {res['skipped']}."
    headers = ["linear + CE", "fwd ms", "fwd+bwd ms", "fwd / mat.", "fwd+bwd / mat."]
    headers += ["temp MiB", "temp / mat."]
    rows = [
        [
            r["name"],
            report.ms(r["median_s"]["fwd"]),
            report.ms(r["median_s"]["fwd+bwd"]),
            f"{r['time_ratio_fwd']:.2f}x",
            f"{r['time_ratio_fwd_bwd']:.2f}x",
            _mib(r["temp_bytes"]["fwd+bwd"]),
            "-" if r["temp_ratio_fwd_bwd"] is None else f"{r['temp_ratio_fwd_bwd']:.3f}x",
        ]
        for r in res["rows"]
    ]
    note = (
        f"{shape}; mat. = the materialised jaxloss row; temp = compiled temporary memory of "
        f"jit(value_and_grad(mean loss, argnums=(0, 1))); the logits alone are "
        f"{_mib(res['logits_bytes'])} MiB."
    )
    return report.markdown_table(headers, rows) + "\n\n" + note


def _mib(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**20:.1f}"
