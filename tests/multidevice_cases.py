"""Cases that need 8 devices; `test_parallel.py` runs this file in its own process with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (the flag must be set before jax starts).
pytest loads conftest.py there too: the strict flags and the helpers are the same."""

import functools
import itertools
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxloss

from .conftest import STRICT_FLAGS, assert_close, requires_xla_cpu, temp_bytes

if jax.device_count() < 8:  # pragma: no cover - collected by hand without the flag
    pytest.skip("needs 8 (simulated) devices", allow_module_level=True)

N, D, V = 48, 16, 96
OPTIONS = [
    {},
    {"ignore_index": -100},
    {"ignore_index": -100, "label_smoothing": 0.2, "z_loss": 1e-2},
]
REF = jaxloss.softmax_cross_entropy_with_integer_labels


class Problem(NamedTuple):
    keys: jax.Array
    hidden: jax.Array
    weight: jax.Array
    labels: jax.Array  # every 7th ignored (-100)
    logits: jax.Array


@pytest.fixture(scope="module")
def problem() -> Problem:
    keys = jax.random.split(jax.random.key(0), 3)
    hidden = jax.random.normal(keys[0], (N, D), jnp.float32)
    weight = jax.random.normal(keys[1], (D, V), jnp.float32) * 0.5
    labels = jax.random.randint(keys[2], (N,), 0, V, jnp.int32).at[::7].set(-100)
    return Problem(keys, hidden, weight, labels, hidden @ weight)


def test_the_strict_flags_of_conftest_hold_here():
    assert all(getattr(jax.config, flag) == value for flag, value in STRICT_FLAGS.items())


def _mesh(data, vocab):
    devices = np.array(jax.devices()[: data * vocab]).reshape(data, vocab)
    return Mesh(devices, ("data", "vocab"))


def _close(a, b):
    # float32 against float32, summed over other devices and in other orders.
    assert_close(a, b, rtol=1e-5, atol=1e-5)


def _weights(kw):  # per-example cotangents, so "none" is checked with unequal weights
    return jnp.arange(N, dtype=jnp.float32) / N if kw.get("reduction") == "none" else 1.0


@pytest.mark.parametrize("kw", OPTIONS)
def test_jit_with_vocab_sharded_logits_never_gathers(kw, problem):
    mesh = _mesh(2, 4)
    x = jax.device_put(problem.logits, NamedSharding(mesh, P("data", "vocab")))
    labels = problem.labels
    y = jax.device_put(
        jnp.where(labels < 0, 0, labels) if not kw else labels, NamedSharding(mesh, P("data"))
    )

    def f(x, y):
        return REF(x, y, reduction="mean", **kw)

    step = jax.jit(jax.value_and_grad(f))
    hlo = step.lower(x, y).compile().as_text()
    assert not re.search(rf"all-gather[^\n]*f32\[{N},{V}\]", hlo)
    assert "all-gather" not in hlo
    _close(step(x, y), jax.value_and_grad(f)(problem.logits, y))


@pytest.mark.parametrize("kw", [OPTIONS[0], OPTIONS[2]])
def test_jit_with_wide_vocab_sharded_rows_never_gathers(kw, problem):
    # Rows of 2**12+ classes take the sampled shift (its first 128 logits live on one vocab
    # shard), and one row's max lies far above them: the exact branch, sharded too.
    n, v = 16, 8192
    x = jax.random.normal(problem.keys[0], (n, v), jnp.float32).at[3, 5000].set(300.0)
    y = jax.random.randint(problem.keys[1], (n,), 0, v, jnp.int32).at[::5].set(-100 if kw else 0)
    mesh = _mesh(2, 4)
    xs = jax.device_put(x, NamedSharding(mesh, P("data", "vocab")))
    ys = jax.device_put(y, NamedSharding(mesh, P("data")))

    def f(x, y):
        return REF(x, y, reduction="mean", **kw)

    step = jax.jit(jax.value_and_grad(f))
    assert "all-gather" not in step.lower(xs, ys).compile().as_text()
    _close(step(xs, ys), jax.value_and_grad(f)(x, y))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("kw", OPTIONS[1:])
def test_shard_map_cross_entropy_equals_single_device(kw, reduction, problem):
    mesh = _mesh(2, 4)
    kw = dict(kw, reduction=reduction)
    w = _weights(kw)

    def local(x, y):
        return jaxloss.vocab_parallel_softmax_cross_entropy(
            x, y, axis_name="vocab", batch_axis_name="data", **kw
        )

    out = P("data") if reduction == "none" else P()
    sharded = jax.shard_map(
        local, mesh=mesh, in_specs=(P("data", "vocab"), P("data")), out_specs=out
    )
    labels, logits = problem.labels, problem.logits
    got = jax.jit(jax.value_and_grad(lambda x: jnp.sum(sharded(x, labels) * w)))(logits)
    want = jax.value_and_grad(lambda x: jnp.sum(REF(x, labels, **kw) * w))(logits)
    _close(got, want)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("kw", OPTIONS[1:])
def test_shard_map_fused_equals_single_device(kw, reduction, problem):
    mesh = _mesh(2, 4)
    kw = dict(kw, reduction=reduction)
    w = _weights(kw)

    def local(h, wt, y):
        return jaxloss.vocab_parallel_linear_softmax_cross_entropy(
            h, wt, y, axis_name="vocab", batch_axis_name="data", chunk_size=5, **kw
        )

    out = P("data") if reduction == "none" else P()
    sharded = jax.shard_map(
        local, mesh=mesh, in_specs=(P("data"), P(None, "vocab"), P("data")), out_specs=out
    )
    labels = problem.labels
    got = jax.jit(
        jax.value_and_grad(lambda h, wt: jnp.sum(sharded(h, wt, labels) * w), argnums=(0, 1))
    )(problem.hidden, problem.weight)
    want = jax.value_and_grad(lambda h, wt: jnp.sum(REF(h @ wt, labels, **kw) * w), argnums=(0, 1))(
        problem.hidden, problem.weight
    )
    _close(got, want)


@requires_xla_cpu
def test_per_device_memory_falls_with_vocabulary_shards():
    n, d, v = 512, 64, 8192
    h = jnp.zeros((n, d), jnp.float32)
    wt = jnp.zeros((d, v), jnp.float32)
    y = jnp.zeros((n,), jnp.int32)
    temps = []
    for shards in (1, 2, 4, 8):
        mesh = _mesh(1, shards)

        def local(h, wt, y):
            return jaxloss.vocab_parallel_linear_softmax_cross_entropy(
                h, wt, y, axis_name="vocab", reduction="mean", chunk_size=128
            )

        f = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(None, "vocab"), P()), out_specs=P())
        temps.append(temp_bytes(jax.value_and_grad(f, argnums=(0, 1)), h, wt, y))
    assert all(a > b for a, b in itertools.pairwise(temps)), temps


# ---------------------------------------------------------------- contrastive, batch split

B_PAIRS, D_PAIRS = 48, 8


@pytest.fixture(scope="module")
def pairs():
    keys = jax.random.split(jax.random.key(1), 3)
    a = jax.random.normal(keys[0], (B_PAIRS, D_PAIRS), jnp.float32)
    b = a + 0.5 * jax.random.normal(keys[1], (B_PAIRS, D_PAIRS), jnp.float32)
    unit = lambda x: x / jnp.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    w = jax.random.uniform(keys[2], (B_PAIRS,), jnp.float32)
    return unit(a), unit(b), w


def _pair_loss(kind, exchange, axis_name, reduction, chunk_size=5):
    def f(a, b, scale, bias):
        return jaxloss._contrastive.contrastive(
            kind, a, b, scale, bias, axis_name, chunk_size, reduction, exchange
        )

    return f


LAYOUTS = {
    "batch over 8": (("batch",), (8,), "batch"),
    "batch over 4 of 4x2": (("data", "vocab"), (4, 2), "data"),
    "batch over 4x2": (("data", "vocab"), (4, 2), ("data", "vocab")),
}


# The default exchange (the ring) on every layout; the all-gather, its alternative, on one.
@pytest.mark.parametrize(
    "layout,exchange", [(k, "ring") for k in LAYOUTS] + [("batch over 8", "gather")]
)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_shard_map_contrastive_equals_single_device(kind, reduction, layout, exchange, pairs):
    a, b, w = pairs
    names, shape, axis = LAYOUTS[layout]
    mesh = Mesh(np.array(jax.devices()).reshape(shape), names)
    spec = P(axis)
    sharded = jax.shard_map(
        _pair_loss(kind, exchange, axis, reduction),
        mesh=mesh,
        in_specs=(spec, spec, P(), P()),
        out_specs=spec if reduction == "none" else P(),
    )
    single = _pair_loss(kind, None, None, reduction)
    weigh = (lambda v: jnp.sum(v * w)) if reduction == "none" else (lambda v: v)
    args = (a, b, jnp.float32(6.0), jnp.float32(-3.0))
    grad = functools.partial(jax.value_and_grad, argnums=(0, 1, 2, 3))
    got = jax.jit(grad(lambda *x: weigh(sharded(*x))))(*args)
    want = grad(lambda *x: weigh(single(*x)))(*args)
    _close(got, want)
    if reduction == "none":
        _close(jax.jit(sharded)(*args), single(*args))


@requires_xla_cpu
@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_per_device_memory_of_contrastive_falls_with_devices(kind):
    spec = jax.ShapeDtypeStruct((2048, 32), jnp.float32)

    def temps(exchange, devices):
        mesh = Mesh(np.array(jax.devices()[:devices]), ("batch",))
        f = jax.shard_map(
            _pair_loss(kind, exchange, "batch", "mean", None),
            mesh=mesh,
            in_specs=(P("batch"), P("batch"), P(), P()),
            out_specs=P(),
        )
        return temp_bytes(jax.value_and_grad(f, argnums=(0, 1)), spec, spec, 10.0, -10.0)

    ring = [temps("ring", devices) for devices in (2, 4, 8)]
    assert all(x > y for x, y in itertools.pairwise(ring)), ring
    # The default exchange holds less than the all-gather (a [B, D] copy on every device).
    assert ring[-1] < temps("gather", 8)


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_contrastive_axis_name_over_replicated_embeddings_is_an_error(kind, pairs):
    a, b, _ = pairs
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "vocab"))
    sharded = jax.shard_map(
        _pair_loss(kind, None, ("data", "vocab"), "mean"),
        mesh=mesh,
        in_specs=(P("data"), P("data"), P(), P()),
        out_specs=P(),
    )
    with pytest.raises(ValueError, match=r"replicated over \['vocab'\]"):
        sharded(a, b, 6.0, -3.0)
