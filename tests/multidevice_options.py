"""Every option on 8 (simulated) devices: `test_options.py` runs this file in its own process
with XLA_FLAGS=--xla_force_host_platform_device_count=8."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import jaxloss

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

if jax.device_count() < 8:  # pragma: no cover - collected by hand without the flag
    pytest.skip("needs 8 (simulated) devices", allow_module_level=True)

N, D, V, V_REAL = 32, 8, 64, 40  # 4 vocabulary shards of 16: the last holds padding only
CE = jaxloss.softmax_cross_entropy_with_integer_labels


def _data():
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.normal(size=(N, D)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(D, V)), jnp.float32).at[:, V_REAL:].set(0.0)
    y = rng.integers(0, V_REAL, N)
    y[::6] = -100
    return h, w, jnp.asarray(y)


OPTIONS = {
    "where": jnp.arange(V) < V_REAL,
    "class_weights": jnp.linspace(0.5, 2.0, V, dtype=jnp.float32),
    "label_smoothing": 0.1,
    "z_loss": 1e-2,
    "logit_soft_cap": 3.0,
}


def _close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("fused", [False, True], ids=["logits", "fused"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_all_options_with_a_device_of_padding_only(fused, reduction):
    h, w, y = _data()
    mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "vocab"))
    slices = {"where": OPTIONS["where"], "class_weights": OPTIONS["class_weights"]}
    rest = {k: v for k, v in OPTIONS.items() if k not in slices}
    cot = jnp.linspace(0.5, 1.5, N, dtype=jnp.float32) if reduction == "none" else 1.0
    kw = dict(rest, reduction=reduction, ignore_index=-100, axis_name="vocab")
    kw["batch_axis_name"] = "data"

    def local(h, w, y, opts):
        if fused:
            return jaxloss.vocab_parallel_linear_softmax_cross_entropy(
                h, w, y, chunk_size=5, **opts, **kw
            )
        return jaxloss.vocab_parallel_softmax_cross_entropy(h @ w, y, **opts, **kw)

    specs = (P("data"), P(None, "vocab"), P("data"), {k: P("vocab") for k in slices})
    out = P("data") if reduction == "none" else P()
    f = jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=out)

    def sharded(h, w):
        return jnp.sum(f(h, w, y, slices) * cot)

    def plain(h, w):
        return jnp.sum(CE(h @ w, y, reduction=reduction, ignore_index=-100, **OPTIONS) * cot)

    got = jax.jit(jax.value_and_grad(sharded, argnums=(0, 1)))(h, w)
    want = jax.value_and_grad(plain, argnums=(0, 1))(h, w)
    assert np.isfinite(float(got[0]))
    _close(got, want)


def test_half_precision_shards_are_not_copied_to_float32():
    x = jnp.zeros((256, 8192), jnp.bfloat16)
    y = jnp.zeros((256,), jnp.int32)
    mesh = Mesh(np.array(jax.devices()[:4]), ("vocab",))

    def local(x, y):
        return jaxloss.vocab_parallel_softmax_cross_entropy(
            x, y, axis_name="vocab", reduction="mean", label_smoothing=0.1
        )

    f = jax.shard_map(local, mesh=mesh, in_specs=(P(None, "vocab"), P()), out_specs=P())
    step = jax.jit(jax.value_and_grad(f)).lower(x, y).compile()
    shard_f32 = 256 * (8192 // 4) * 4
    assert step.memory_analysis().temp_size_in_bytes < shard_f32 // 4
