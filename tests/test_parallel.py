"""Runs the 8-device cases (`multidevice_cases.py`, and every option in
`multidevice_options.py`) in their own process: the device count is fixed when jax starts.

The 8 devices are simulated host (CPU) devices, so that process runs on XLA:CPU whatever
accelerator this one has."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("cases", ["multidevice_cases.py", "multidevice_options.py"])
def test_multidevice_cases_in_a_fresh_process(cases):
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    here = Path(__file__).parent
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            str(here / cases),
        ],
        env=env,
        cwd=here.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
