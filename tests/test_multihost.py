"""Runs the sharded losses in a multi-controller JAX job: two processes on this machine.

`multihost_worker.py` is started twice, as processes 0 and 1 of one `jax.distributed` job
whose coordinator listens on 127.0.0.1 (a free port), each with 2 simulated CPU devices and
gloo collectives between the processes. On the 2 x 2 mesh ``("hosts", "local")`` each worker
splits the batch of the contrastive losses, or the vocabulary of the cross-entropies, over the
axis that crosses the processes and then over the one that stays within a process, and
compares every value and gradient with the same loss on one device. This test checks that
both processes exit with status 0 and that each printed an ``OK`` line for every check, so a
worker that compares nothing fails too.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

WORKER = Path(__file__).with_name("multihost_worker.py")
NUM_PROCESSES = 2
TIMEOUT_S = 300  # for the whole job: both processes, compilation included

CHECKS = [
    f"{kind}_{case}"
    for kind in ("softmax_contrastive", "sigmoid_contrastive")
    for case in ("mean", "none", "none_values")
] + ["vocab_parallel_ce", "vocab_parallel_linear_ce", "jit_named_sharding_ce"]
EXPECTED = [f"OK {check} {axis}" for axis in ("hosts", "local") for check in CHECKS]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_workers() -> tuple[list[int | None], list[str], bool]:
    """Both workers' return codes (None if killed) and outputs, and whether time ran out.

    Their outputs are read concurrently, so neither blocks on a full pipe. When one fails, or
    the time runs out, the other is killed: it could otherwise wait on its peer in a
    collective until the heartbeat timeout.
    """
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(port), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=WORKER.parent.parent,
        )
        for i in range(NUM_PROCESSES)
    ]
    deadline = time.monotonic() + TIMEOUT_S
    timed_out = False
    with ThreadPoolExecutor(NUM_PROCESSES) as pool:
        futures = [pool.submit(proc.communicate) for proc in procs]
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(
                    pending,
                    timeout=max(0.0, deadline - time.monotonic()),
                    return_when=FIRST_COMPLETED,
                )
                if not done:
                    timed_out = True
                    break
                if any(procs[futures.index(f)].returncode != 0 for f in done):
                    break
        finally:
            killed = []
            for proc in procs:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc)
            for proc in killed:
                proc.wait()
        outputs = [f.result()[0] for f in futures]
    codes = [None if proc in killed else proc.returncode for proc in procs]
    return codes, outputs, timed_out


def test_sharded_losses_across_two_processes():
    codes, outputs, timed_out = _run_workers()
    report = "\n".join(
        f"--- process {i} ({'killed' if code is None else f'return code {code}'}) ---\n"
        f"{out[-8000:]}"
        for i, (code, out) in enumerate(zip(codes, outputs, strict=True))
    )
    assert not timed_out, f"the workers did not finish within {TIMEOUT_S} s\n{report}"
    assert codes == [0] * NUM_PROCESSES, report
    for i, out in enumerate(outputs):
        lines = set(out.splitlines())
        missing = [line for line in EXPECTED if line not in lines]
        assert not missing, f"process {i} did not print {missing}\n{report}"
