"""Dtype policy: half-precision inputs are read as they are and accumulated in float32."""

from __future__ import annotations

import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike


def compute_dtype(dtype: DTypeLike) -> jnp.dtype:
    """float32 for half-precision inputs, the input's own dtype when wider."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def is_static_zero(x: ArrayLike | None) -> bool:
    """True for a Python 0, whose term can be skipped; arrays always take the general path."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == 0


def is_static_one(x: ArrayLike | None) -> bool:
    """True for a Python 1, whose factor can be skipped."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == 1
