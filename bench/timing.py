"""Interleaved wall-clock timing of compiled functions, and their compiled temporary memory."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def compile_jax(f: Callable[..., Any], *args: Any) -> tuple[Callable[[], Any], int | None]:
    """`jax.jit(f)` compiled ahead of time for `args`: a no-argument call that blocks until
    the result is ready, and the compiled program's temporary memory in bytes."""
    compiled = jax.jit(f).lower(*args).compile()
    stats = compiled.memory_analysis()
    temp = None if stats is None else int(stats.temp_size_in_bytes)

    def call() -> Any:
        return jax.block_until_ready(compiled(*args))

    return call, temp


def interleaved(calls: dict[str, Callable[[], Any]], repeats: int, bar: Any) -> dict[str, Any]:
    """Median seconds per call over `repeats` rounds; each round calls every candidate once.

    One untimed warm-up round first. Each round runs the candidates in a fresh random order
    (seeded), and after every call waits, untimed, half as long as the call took (at most
    0.5 s): the runtime releases a call's large buffers in the background, and without the
    pause that work lands on whichever candidate runs next. A fixed or rotated order would
    charge it to the same neighbour every round.
    """
    names = list(calls)
    for name in names:
        calls[name]()
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for i in rng.permutation(len(names)):
            start = time.perf_counter()
            calls[names[i]]()
            elapsed = time.perf_counter() - start
            times[names[i]].append(elapsed)
            time.sleep(min(0.5 * elapsed, 0.5))
        bar.update(1)
    return {
        "median_s": {n: float(np.median(t)) for n, t in times.items()},
        "all_s": times,
    }
