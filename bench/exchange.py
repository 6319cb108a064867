"""``python -m bench.exchange``: the two ways to split a contrastive loss's batch over devices,
on simulated CPU devices: each device's share of ``other_embeddings`` passed around a ring
(``ppermute``) or every share gathered (``all_gather``). Per-device compiled temporaries and
time of jit(value_and_grad(mean loss)) against the number of devices.

It runs in its own process: the device count is fixed when jax starts. The simulated devices
share this machine's cores, so the times show the cost of the extra steps, not of a network.
"""

from __future__ import annotations

import os
import sys
import time

DEVICES = 8
if __name__ == "__main__":
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={DEVICES}"
    )
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from bench import contrastive, environment, report  # noqa: E402
from bench.timing import compile_jax  # noqa: E402
from jaxloss import _contrastive  # noqa: E402

EXCHANGES = ("ring", "gather")


def _step(kind: str, exchange: str, mesh: Mesh) -> Any:
    def local(a, b):
        return _contrastive.contrastive(
            kind, a, b, contrastive.SCALE, contrastive.BIAS, "batch", None, "mean", exchange
        )

    f = jax.shard_map(local, mesh=mesh, in_specs=(P("batch"), P("batch")), out_specs=P())
    return jax.value_and_grad(f, argnums=(0, 1))


def run(batch: int, timed: bool, repeats: int, d: int = 128) -> list[dict[str, Any]]:
    a, b = contrastive.inputs(batch, d)
    rows = []
    for devices in (1, 2, 4, DEVICES):
        mesh = Mesh(np.array(jax.devices()[:devices]), ("batch",))
        for kind in ("softmax", "sigmoid"):
            for exchange in EXCHANGES:
                call, temp = compile_jax(_step(kind, exchange, mesh), a, b)
                median = None
                if timed:
                    call()
                    median = float(np.median([_seconds(call) for _ in range(repeats)]))
                row = {"B": batch, "D": d, "devices": devices, "kind": kind}
                rows.append(row | {"exchange": exchange, "temp_bytes": temp, "median_s": median})
    return rows


def _seconds(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def markdown(rows: list[dict[str, Any]]) -> str:
    columns: report.Columns = {
        "loss": lambda r: r["kind"],
        "B": lambda r: str(r["B"]),
        "devices": lambda r: str(r["devices"]),
        "exchange": lambda r: r["exchange"],
        "temp MiB / device": lambda r: report.mib(r["temp_bytes"]),
        "fwd+bwd ms": lambda r: report.ms(r["median_s"]),
    }
    return report.table(rows, columns, left=4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.exchange", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a smoke run (tests use it)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    if args.tiny:
        rows = run(64, True, 2, d=16)
    else:
        rows = run(4096, True, 5) + run(16384, False, 0)
    env = environment.environment()
    text = markdown(rows) + (
        "\n\nPer-device compiled temporaries of jit(value_and_grad(mean loss, argnums=(0, 1))) "
        "inside shard_map, the batch split over the devices, default chunk; median of "
        f"repeated calls; {report.machine_line(env)}, {DEVICES} simulated devices.\n"
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(args.out / "exchange.json", {"environment": env, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
