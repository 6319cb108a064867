"""CTC against optax's ``ctc_loss`` and PyTorch's ``F.ctc_loss`` (CPU), in one process."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss
from bench.config import SpeedConfig
from bench.timing import compile_jax, interleaved

BASE = "optax"


def inputs(b: int, t: int, k: int, n: int) -> tuple[jax.Array, ...]:
    """Random logits, every frame kept, labels of N symbols (no blank) and no label padding."""
    rng = np.random.default_rng(4)
    logits = jnp.asarray(rng.normal(size=(b, t, k)), jnp.float32)
    labels = jnp.asarray(rng.integers(1, k, size=(b, n)), jnp.int32)
    return logits, jnp.zeros((b, t), jnp.float32), labels, jnp.zeros((b, n), jnp.float32)


def _torch_call(args: tuple[jax.Array, ...]) -> Any:
    """fwd+bwd of PyTorch's mean CTC on the same logits (log_softmax inside), or None."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    logits, _, labels, _ = (np.asarray(a) for a in args)
    b, t, _ = logits.shape
    x = torch.from_numpy(np.array(logits)).requires_grad_()
    y = torch.from_numpy(labels.astype(np.int64))
    frames = torch.full((b,), t, dtype=torch.int64)
    lengths = torch.full((b,), labels.shape[1], dtype=torch.int64)

    def fwd_bwd() -> Any:
        log_probs = torch.log_softmax(x, -1).transpose(0, 1)
        loss = F.ctc_loss(log_probs, y, frames, lengths, reduction="sum") / b
        return loss.detach(), torch.autograd.grad(loss, x)[0]

    return fwd_bwd


def run(cfg: SpeedConfig, bar: Any) -> dict[str, Any]:
    """Records: a row per shape and candidate of jit(value_and_grad(mean over the batch of the
    per-sequence loss)): median seconds, compiled temporaries (JAX), ratios to optax."""
    rows = []
    for shape in cfg.ctc:
        args = inputs(*shape)
        calls, temp, outputs = {}, {}, {}
        for name, fn in {"jaxloss": jaxloss.ctc_loss, BASE: optax.ctc_loss}.items():

            def mean(x, *rest, fn=fn):
                return jnp.mean(fn(x, *rest))

            calls[name], temp[name] = compile_jax(jax.value_and_grad(mean), *args)
            outputs[name] = calls[name]()
        torch_call = _torch_call(args) if cfg.torch else None
        if torch_call is not None:
            calls["torch"], temp["torch"] = torch_call, None
            outputs["torch"] = tuple(np.asarray(v) for v in torch_call())
        bar.set_postfix_str("ctc B={} T={} K={} N={}".format(*shape))
        median = interleaved(calls, cfg.fused_repeats, bar)["median_s"]
        rows += [_record(shape, name, median, temp, outputs) for name in calls]
    return {"rows": rows}


def _record(shape: tuple, name: str, median: dict, temp: dict, outputs: dict) -> dict:
    (loss, grad), (base_loss, base_grad) = outputs[name], outputs[BASE]
    b, t, k, n = shape
    return {
        "B": b,
        "T": t,
        "K": k,
        "N": n,
        "name": name,
        "median_s": median[name],
        "temp_bytes": temp[name],
        "time_ratio": median[name] / median[BASE],
        "temp_ratio": None if temp[name] is None else temp[name] / temp[BASE],
        "loss_abs_diff_vs_optax": float(abs(np.asarray(loss) - np.asarray(base_loss))),
        "grad_max_abs_diff_vs_optax": float(np.max(np.abs(np.asarray(grad) - base_grad))),
    }
