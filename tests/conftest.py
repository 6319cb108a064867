"""Strict JAX flags for the whole test run, and float64 so the oracles can be exact."""

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
np.set_printoptions(precision=4, suppress=True)
