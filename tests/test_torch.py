"""PyTorch as a third opinion on the options it defines (skipped when torch is absent)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _t(x):
    return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.15])
def test_cross_entropy_matches_torch(reduction, weights, eps, rng):
    x = rng.normal(size=(10, 6)) * 2
    labels = rng.integers(0, 6, 10)
    labels[[0, 3]] = -100
    w = rng.uniform(0.2, 3.0, 6) if weights else None
    xt = _t(x)
    want = F.cross_entropy(
        xt,
        torch.tensor(labels),
        weight=None if w is None else torch.tensor(w),
        ignore_index=-100,
        reduction=reduction,
        label_smoothing=eps,
    )
    got, grad = jax.value_and_grad(
        lambda x: jnp.sum(
            jaxloss.softmax_cross_entropy_with_integer_labels(
                x,
                labels,
                ignore_index=-100,
                class_weights=w,
                label_smoothing=eps,
                reduction=reduction,
            )
        )
    )(x)
    want.sum().backward()
    np.testing.assert_allclose(got, want.sum().item(), rtol=1e-12)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_nll_and_probability_targets_match_torch(rng):
    x = rng.normal(size=(7, 5))
    labels = rng.integers(0, 5, 7)
    w = rng.uniform(0.2, 3.0, 5)
    logp = np.asarray(jax.nn.log_softmax(x))
    for reduction in ("none", "mean", "sum"):
        want = F.nll_loss(
            torch.tensor(logp), torch.tensor(labels), weight=torch.tensor(w), reduction=reduction
        )
        got = jaxloss.nll_loss(logp, labels, class_weights=w, reduction=reduction)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12)
    y = np.exp(np.asarray(jax.nn.log_softmax(rng.normal(size=(7, 5)))))
    want = F.cross_entropy(torch.tensor(x), torch.tensor(y), label_smoothing=0.2, reduction="mean")
    got = jaxloss.softmax_cross_entropy(x, y, label_smoothing=0.2, reduction="mean")
    np.testing.assert_allclose(got, want.item(), rtol=1e-12)


def test_binary_losses_match_torch(rng):
    x = rng.normal(size=(6, 4)) * 4
    y = rng.uniform(size=(6, 4))
    pw = rng.uniform(0.5, 4.0, 4)
    want = F.binary_cross_entropy_with_logits(
        torch.tensor(x), torch.tensor(y), pos_weight=torch.tensor(pw), reduction="mean"
    )
    got = jaxloss.sigmoid_binary_cross_entropy(x, y, pos_weight=pw, reduction="mean")
    np.testing.assert_allclose(got, want.item(), rtol=1e-12)
    p = np.concatenate([1 / (1 + np.exp(-x)), [[0.0, 1.0, 0.0, 1.0]]])
    yy = np.concatenate([y, [[1.0, 0.0, 0.0, 1.0]]])
    want = F.binary_cross_entropy(torch.tensor(p), torch.tensor(yy), reduction="none")
    np.testing.assert_allclose(jaxloss.binary_cross_entropy(p, yy), want.numpy(), rtol=1e-12)


def test_kl_batchmean_matches_torch(rng):
    x = rng.normal(size=(5, 7))
    y = np.exp(np.asarray(jax.nn.log_softmax(rng.normal(size=(5, 7)))))
    y[0, 2] = 0.0
    logq = np.asarray(jax.nn.log_softmax(x))
    want = F.kl_div(torch.tensor(logq), torch.tensor(y), reduction="batchmean")
    got = jaxloss.kl_divergence(x, y, reduction="mean")
    np.testing.assert_allclose(got, want.item(), rtol=1e-12)


def test_all_ignored_torch_gives_nan_we_give_zero(rng):
    x = rng.normal(size=(3, 4))
    labels = np.full(3, -100)
    assert np.isnan(F.cross_entropy(torch.tensor(x), torch.tensor(labels)).item())
    assert (
        jaxloss.softmax_cross_entropy_with_integer_labels(
            x, labels, ignore_index=-100, reduction="mean"
        )
        == 0
    )
