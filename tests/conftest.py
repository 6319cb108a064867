"""Strict JAX flags for the whole test run, float64 so the oracles can be exact, and the one set
of helpers the test modules share (``from .conftest import ...``).

pytest loads this file before it imports any test module, in the main run and in the
8-device process that ``test_parallel.py`` starts for ``multidevice_cases.py``.
"""

import jax
import numpy as np
import pytest

STRICT_FLAGS = {
    "jax_enable_x64": True,
    "jax_numpy_rank_promotion": "raise",
    "jax_numpy_dtype_promotion": "strict",
    # float32 matmuls in float32 on every backend (GPUs default to TF32 inputs), so that the
    # float32 tolerances mean the same everywhere. XLA:CPU computes them so anyway.
    "jax_default_matmul_precision": "highest",
}
for _flag, _value in STRICT_FLAGS.items():
    jax.config.update(_flag, _value)
np.set_printoptions(precision=4, suppress=True)

# One ulp of float32 at 1 (2**-23); float32 rounds to half of it.
F32_ULP = float(np.finfo(np.float32).eps)

# Compiled temporaries, flop counts and the HLO of XLA:CPU's own passes (fusion, buffer
# assignment, which kernel runs) are facts about that compiler, not about the losses.
requires_xla_cpu = pytest.mark.skipif(
    jax.default_backend() != "cpu",
    reason="checks what XLA:CPU compiles (temporaries, flops or HLO of its own passes)",
)


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator seeded the same for every test: its data never depends on test order."""
    return np.random.default_rng(0)


def assert_close(actual, desired, *, rtol: float, atol: float = 0.0, scaled: bool = False):
    """`np.testing.assert_allclose` on each pair of leaves of two pytrees, in float64.

    With ``scaled``, each leaf's absolute tolerance grows by ``rtol`` times its largest
    ``|desired|``: the entries of a gradient that nearly cancel are held to the precision of
    its largest ones.
    """
    leaves = jax.tree_util.tree_leaves
    for a, d in zip(leaves(actual), leaves(desired), strict=True):
        a, d = np.asarray(a).astype(np.float64), np.asarray(d).astype(np.float64)
        tol = atol + (rtol * float(np.max(np.abs(d), initial=0.0)) if scaled else 0.0)
        np.testing.assert_allclose(a, d, rtol=rtol, atol=tol)


def compiled(f, *args):
    """`f` jitted, lowered for `args` (arrays or `jax.ShapeDtypeStruct`s) and compiled."""
    return jax.jit(f).lower(*args).compile()


def temp_bytes(f, *args) -> int:
    """Bytes of temporaries that the compiled `f(*args)` allocates (nothing runs)."""
    return compiled(f, *args).memory_analysis().temp_size_in_bytes


def flops(f, *args) -> float:
    """XLA's flop count of the compiled `f(*args)`; a loop body counts once."""
    return compiled(f, *args).cost_analysis()["flops"]
