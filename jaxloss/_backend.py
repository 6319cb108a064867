"""The one dispatch point between the softmax kernels: the plain-jnp reference (every
platform) and the XLA:CPU kernels, chosen when the program is lowered."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, NamedTuple, TypeVar

import jax

from jaxloss import _cpu, _reference
from jaxloss._reduction import AxisName

T = TypeVar("T")

KERNELS: dict[str, ModuleType] = {"reference": _reference, "xla_cpu": _cpu}
_forced: list[str] = []


class Rows(NamedTuple):
    """What the kernels need to know about the rows of logits, all static."""

    axis: int  # the class axis
    axis_name: AxisName  # mesh axis the classes are split over (inside shard_map), or None
    masked: bool  # some classes may be excluded (their logits are -inf)


@contextlib.contextmanager
def forced(name: str) -> Iterator[None]:
    """Traces with the kernels `name` ("reference" or "xla_cpu") on any platform.

    For tests: it applies to what is traced inside the block, so jit a fresh function there.
    """
    if name not in KERNELS:
        raise ValueError(f"kernels must be one of {sorted(KERNELS)}, got {name!r}")
    _forced.append(name)
    try:
        yield
    finally:
        _forced.pop()


def dispatch(fn: Callable[..., T], *args: Any) -> T:
    """`fn(kernels, *args)` with the kernels of the platform the program is lowered for."""
    if _forced:
        return fn(KERNELS[_forced[-1]], *args)
    return jax.lax.platform_dependent(  # type: ignore[no-any-return]
        *args,
        cpu=functools.partial(fn, _cpu),
        default=functools.partial(fn, _reference),
    )
