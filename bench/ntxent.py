"""``python -m bench.ntxent``: NT-Xent (SimCLR) against optax's: compiled temporaries of
jit(value_and_grad(loss)) over batch sizes, and side-by-side times where optax's program fits.

optax builds the [B, B, D] broadcast of the cosine similarities; jaxloss processes blocks of
rows against all columns, recomputed in the backward pass. Two views of each of B/2 images:
labels 0, 0, 1, 1, ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import jaxloss
from bench import environment, report
from bench.timing import compile_jax, interleaved

TEMPERATURE = 0.1


def inputs(batch: int, d: int) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    views = jnp.asarray(rng.normal(size=(batch, d)), jnp.float32)
    return views, jnp.asarray(np.arange(batch, dtype=np.int32) // 2)


def _steps() -> dict[str, Any]:
    def ours(e, y):
        return jaxloss.ntxent(e, y, temperature=TEMPERATURE)

    def theirs(e, y):
        with jax.numpy_dtype_promotion("standard"):
            return optax.losses.ntxent(e, y, temperature=TEMPERATURE)

    return {"jaxloss": jax.value_and_grad(ours), "optax": jax.value_and_grad(theirs)}


def run(batches: tuple[int, ...], d: int, timed_up_to: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for batch in batches:
        e, y = inputs(batch, d)
        calls, row = {}, {"batch": batch, "d": d, "bb_f32_bytes": 4 * batch * batch}
        for name, step in _steps().items():
            call, temp = compile_jax(step, e, y)
            row[f"{name}_temp_bytes"] = temp
            calls[name] = call
        if batch <= timed_up_to:
            with tqdm(total=repeats, desc=f"ntxent B={batch}", leave=False) as bar:
                row["median_s"] = interleaved(calls, repeats, bar)["median_s"]
            value = {n: float(c()[0]) for n, c in calls.items()}
            row["loss"] = value
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    mib = 2.0**20
    lines = [
        "| B | jaxloss temp MiB | optax temp MiB | one B×B f32 MiB | jaxloss ms | optax ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = r.get("median_s", {})
        ms = [f"{1e3 * t[n]:.1f}" if n in t else "-" for n in ("jaxloss", "optax")]
        lines.append(
            f"| {r['batch']} | {r['jaxloss_temp_bytes'] / mib:.1f} | "
            f"{r['optax_temp_bytes'] / mib:.1f} | {r['bb_f32_bytes'] / mib:.1f} | "
            f"{ms[0]} | {ms[1]} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ntxent", description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--timed-up-to", type=int, default=1024, help="largest B to time")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    rows = run(tuple(args.batches), args.dim, args.timed_up_to, args.repeats)
    print(table(rows))
    print(
        f"\nNT-Xent, D = {args.dim}, float32, temperature {TEMPERATURE}: compiled temporaries "
        "and median time of jit(value_and_grad(loss)), interleaved in one process; "
        f"{report.machine_line(environment.environment())}."
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
