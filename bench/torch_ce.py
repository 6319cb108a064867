"""PyTorch's ``F.cross_entropy`` on the same logits, when torch is installed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def torch_info() -> dict[str, Any] | None:
    try:
        import torch
    except ImportError:
        return None
    return {"version": torch.__version__, "threads": torch.get_num_threads()}


def torch_calls(logits: np.ndarray, labels: np.ndarray) -> dict[tuple[str, str], Callable]:
    """Forward (no grad) and forward + backward (``autograd.grad`` w.r.t. the logits) calls
    of the mean integer-label cross-entropy, keyed like the JAX candidates; {} without torch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return {}
    x = torch.from_numpy(np.array(logits, np.float32))
    y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    x_grad = x.clone().requires_grad_()

    def fwd() -> Any:
        with torch.no_grad():
            return F.cross_entropy(x, y)

    def fwd_bwd() -> Any:
        loss = F.cross_entropy(x_grad, y)
        return loss.detach(), torch.autograd.grad(loss, x_grad)[0]

    return {("torch", "fwd"): fwd, ("torch", "fwd+bwd"): fwd_bwd}
