"""One of two processes of a multi-controller JAX run on this machine (see test_multihost.py).

Run as ``python tests/multihost_worker.py PORT PROCESS_ID`` in two processes, ``PROCESS_ID``
0 and 1, with the same ``PORT``: process 0 serves the coordinator on ``127.0.0.1:PORT``. Each
process has 2 simulated CPU devices and the collectives between processes go over gloo (TCP),
so the 4 global devices form a mesh ``("hosts", "local")`` whose ``"hosts"`` axis crosses the
two processes and whose ``"local"`` axis stays within one. Every sharded loss is computed with
its batch or vocabulary split over one axis (the other replicated), for both axes, and its
value and gradients are compared with the same loss on unsharded arrays on one local device.

Prints ``OK <check> <axis>`` for each check that matches and exits with status 0 only if all
of them did. Not collected by pytest (its name does not start with ``test_``).
"""

# ruff: noqa: E402
import functools
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")

import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxloss

ce = jaxloss.softmax_cross_entropy_with_integer_labels

NUM_PROCESSES = 2
AXES = ("hosts", "local")
RTOL = ATOL = 1e-5
B, D, V = 16, 8, 32


def check_names() -> list[str]:
    """The names of the checks, in the order they run: one ``OK`` line each per mesh axis."""
    names = []
    for kind in ("softmax_contrastive", "sigmoid_contrastive"):
        names += [f"{kind}_mean", f"{kind}_none", f"{kind}_none_values"]
    names += ["vocab_parallel_ce", "vocab_parallel_linear_ce", "jit_named_sharding_ce"]
    return [f"{name} {axis}" for axis in AXES for name in names]


def make_mesh() -> Mesh:
    """A 2 x 2 mesh: row ``i`` holds process ``i``'s two devices."""
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    grid = np.array(devices).reshape(NUM_PROCESSES, 2)
    for i, row in enumerate(grid):
        assert {d.process_index for d in row} == {i}, grid
    return Mesh(grid, AXES)


def data() -> dict[str, np.ndarray]:
    """The same arrays in both processes (fixed seed)."""
    rng = np.random.default_rng(0)

    def unit_rows(shape):
        x = rng.standard_normal(shape).astype(np.float32)
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    return dict(
        a=unit_rows((B, D)),
        b=unit_rows((B, D)),
        w=rng.uniform(0.5, 1.5, B).astype(np.float32),  # weights of the per-example losses
        logits=(2.0 * rng.standard_normal((B, V))).astype(np.float32),
        labels=rng.integers(0, V, B).astype(np.int32),
        hidden=rng.standard_normal((B, D)).astype(np.float32),
        weight=(rng.standard_normal((D, V)) / np.sqrt(D)).astype(np.float32),
        scale=np.float32(5.0),
        bias=np.float32(-2.0),
    )


def to_host(x) -> np.ndarray:
    """The whole value of a (possibly non-fully-addressable) global array, in this process."""
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def compare(name: str, got, want) -> None:
    got = jax.tree.map(to_host, got)
    want = jax.tree.map(np.asarray, want)
    errors = []
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.shape == w.shape, (name, g.shape, w.shape)
        if not np.allclose(g, w, rtol=RTOL, atol=ATOL):
            errors.append(float(np.max(np.abs(g.astype(np.float64) - w))))
    if errors:
        raise AssertionError(f"MISMATCH {name}: max abs errors {errors}")
    print(f"OK {name}", flush=True)


def contrastive(kind: str):
    """``f(a, b, scale, bias, **options)`` for one of the two contrastive losses."""
    if kind == "softmax_contrastive":
        return lambda a, b, s, t, **kw: jaxloss.softmax_contrastive_loss(a, b, scale=s, **kw)
    return lambda a, b, s, t, **kw: jaxloss.sigmoid_contrastive_loss(a, b, scale=s, bias=t, **kw)


def weighted(loss, reduction: str):
    """The scalar to differentiate: the mean, or ``sum(w * loss)`` of the per-example losses."""

    def objective(a, b, s, t, w):
        value = loss(a, b, s, t)
        return value if reduction == "mean" else jnp.sum(w * value)

    return objective


class Checks:
    """The checks with the batch or the vocabulary split over the mesh axis ``axis``."""

    def __init__(self, mesh: Mesh, axis: str, arrays: dict[str, np.ndarray]):
        self.mesh, self.axis, self.arrays = mesh, axis, arrays
        self.other = AXES[1 - AXES.index(axis)]

    def put(self, name: str, spec: P) -> jax.Array:
        """A global array of ``arrays[name]``, each device holding its block under ``spec``."""
        x = self.arrays[name]
        sharding = NamedSharding(self.mesh, spec)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    def one_device(self, f, *names: str):
        """``f`` on unsharded copies of ``arrays[name]`` on this process's first device."""
        local = jax.local_devices()[0]
        return jax.jit(f)(*(jax.device_put(self.arrays[n], local) for n in names))

    def shard_map(self, f, in_specs, out_specs):
        return jax.shard_map(f, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs)

    def contrastive(self, kind: str, reduction: str) -> None:
        """a. the batch split over ``axis`` inside shard_map; scale and bias replicated."""
        axis, loss = self.axis, contrastive(kind)
        sharded = self.shard_map(
            lambda a, b, s, t: loss(a, b, s, t, axis_name=axis, reduction=reduction),
            in_specs=(P(axis), P(axis), P(), P()),
            out_specs=P() if reduction == "mean" else P(axis),
        )
        args = [self.put(n, P(axis)) for n in "ab"] + [
            self.put(n, P()) for n in ("scale", "bias", "w")
        ]
        names = ("a", "b", "scale", "bias", "w")
        grad = functools.partial(jax.value_and_grad, argnums=(0, 1, 2, 3))
        got = jax.jit(grad(weighted(sharded, reduction)))(*args)
        want = self.one_device(
            grad(weighted(lambda *x: loss(*x, reduction=reduction), reduction)), *names
        )
        compare(f"{kind}_{reduction} {axis}", got, want)
        if reduction == "none":  # the per-example losses themselves, each on its device
            got = jax.jit(sharded)(*args[:4])
            want = self.one_device(lambda *x: loss(*x, reduction="none"), *names[:4])
            compare(f"{kind}_none_values {axis}", got, want)

    def vocab_parallel(self) -> None:
        """b. logits split over the vocabulary on ``axis`` inside shard_map, labels replicated."""
        axis = self.axis
        sharded = self.shard_map(
            lambda x, y: jaxloss.vocab_parallel_softmax_cross_entropy(
                x, y, axis_name=axis, reduction="mean"
            ),
            in_specs=(P(None, axis), P()),
            out_specs=P(),
        )
        got = jax.jit(jax.value_and_grad(sharded))(
            self.put("logits", P(None, axis)), self.put("labels", P())
        )
        want = self.one_device(
            jax.value_and_grad(lambda x, y: ce(x, y, reduction="mean")), "logits", "labels"
        )
        compare(f"vocab_parallel_ce {axis}", got, want)

    def vocab_parallel_linear(self) -> None:
        """c. the output projection split over the vocabulary, hidden states replicated."""
        axis = self.axis
        sharded = self.shard_map(
            lambda h, w, y: jaxloss.vocab_parallel_linear_softmax_cross_entropy(
                h, w, y, axis_name=axis, reduction="mean", chunk_size=5
            ),
            in_specs=(P(), P(None, axis), P()),
            out_specs=P(),
        )
        args = self.put("hidden", P()), self.put("weight", P(None, axis)), self.put("labels", P())
        got = jax.jit(jax.value_and_grad(sharded, argnums=(0, 1)))(*args)
        want = self.one_device(
            jax.value_and_grad(lambda h, w, y: ce(h @ w, y, reduction="mean"), argnums=(0, 1)),
            "hidden",
            "weight",
            "labels",
        )
        compare(f"vocab_parallel_linear_ce {axis}", got, want)

    def jit_named_sharding(self) -> None:
        """d. the ordinary loss under jit, logits' rows over the other axis, classes over this."""
        step = jax.value_and_grad(lambda x, y: ce(x, y, reduction="mean"))
        args = self.put("logits", P(self.other, self.axis)), self.put("labels", P(self.other))
        got = jax.jit(step)(*args)
        compare(
            f"jit_named_sharding_ce {self.axis}", got, self.one_device(step, "logits", "labels")
        )

    def run(self) -> None:
        for kind in ("softmax_contrastive", "sigmoid_contrastive"):
            for reduction in ("mean", "none"):
                self.contrastive(kind, reduction)
        self.vocab_parallel()
        self.vocab_parallel_linear()
        self.jit_named_sharding()


def main(port: int, process_id: int) -> None:
    jax.distributed.initialize(
        f"127.0.0.1:{port}",
        num_processes=NUM_PROCESSES,
        process_id=process_id,
        initialization_timeout=60,
        coordinator_bind_address=f"127.0.0.1:{port}",
    )
    try:
        assert jax.process_count() == NUM_PROCESSES, jax.process_count()
        assert jax.device_count() == 4 and jax.local_device_count() == 2, jax.devices()
        mesh = make_mesh()
        arrays = data()
        for axis in AXES:
            Checks(mesh, axis, arrays).run()
        print(f"process {process_id}: all {len(check_names())} checks passed", flush=True)
    finally:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
