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

    One untimed warm-up round first. The starting candidate rotates from round to round so no
    candidate always runs right after the same neighbour (caches, allocator, frequency).
    """
    names = list(calls)
    for name in names:
        calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
        bar.update(1)
    return {
        "median_s": {n: float(np.median(t)) for n, t in times.items()},
        "all_s": times,
    }
