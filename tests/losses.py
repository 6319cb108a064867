"""One registry of every public loss; `test_contract.py` runs the whole contract over it.

Each `Case` is one public loss (the name before ``[``) called as ``fn(x, target, **kwargs)``
on logits of shape ``[..., C]``, with the fields saying which parts of the contract apply.
The fused and vocab-parallel losses enter through adapters that give them that signature:

- ``linear_softmax_cross_entropy(hidden, weight, labels)`` with ``hidden = logits`` and
  ``weight = I`` (``C x C``): ``hidden @ I == logits`` exactly, and the gradient with respect
  to ``hidden`` is the gradient with respect to the logits.
- ``vocab_parallel_*`` inside ``jax.shard_map`` over a 1-device mesh, the class axis (of the
  logits, of the weight and of every array option) split over ``"vocab"``, the labels and
  the scalar options replicated.

The adapters pass every option straight through, so a new option needs no adapter code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

import jaxloss

# Public callables that are not losses, and why they are not in the registry.
NOT_IN_REGISTRY = {
    "mean": "the reduction helper, not a loss: no target, no class axis, a scalar out. Its "
    "contract (weighted, 0 when nothing is selected, NaN in excluded entries harmless) is "
    "test_classification.py::test_mean_is_weighted_and_empty_safe; the losses' own "
    '"mean" reductions are test_contract.py::test_reductions and test_weighted_mean.',
    "softmax_contrastive_loss": "two batches of embeddings [B, D] and one loss per pair of "
    "rows, not logits with a class axis: its contract (oracles, gradients, reductions, jit, "
    "vmap, dtypes, errors) is tests/test_contrastive.py, sharded in multidevice_cases.py.",
    "sigmoid_contrastive_loss": "as softmax_contrastive_loss: tests/test_contrastive.py.",
    "smooth_labels": "a transform of target distributions, not a loss: tested against the "
    "label_smoothing option of softmax_cross_entropy and optax in test_classification.py.",
    "binary_dice_loss": "one loss per image of [batch, pixels...] (the pixels summed), not a "
    "class axis: its contract (oracle, gradients, reductions, jit, vmap, dtypes, errors) is "
    "tests/test_overlap.py; dice_loss, which it calls, is in the registry.",
    "multiclass_generalized_dice_loss": "its class weights come from the target frequencies of "
    "the whole batch, so one example's loss depends on the others (vmap of one example is not "
    "the batch): tests/test_overlap.py, against a float64 oracle and optax.",
    "ntxent": "one scalar over a batch of embeddings (the mean over its positive pairs), no "
    "class axis and no reduction: tests/test_metric.py (oracles, gradients, chunking, memory, "
    "dtypes, errors).",
    "triplet_margin_loss": "three batches of embeddings (anchors, positives, negatives): "
    "tests/test_metric.py.",
    "sparsemax": "a mapping of logits to probabilities (the simplex projection), not a loss: "
    "tests/test_sparse.py (sort and brute-force oracles, Jacobian, jit, vmap, dtypes).",
    "entmax15": "a mapping of logits to probabilities, not a loss: tests/test_sparse.py "
    "(bisection oracle, PyTorch entmax, Jacobian, dtypes).",
    "make_fenchel_young_loss": "makes a loss from a max function: tests/test_sparse.py (with "
    "logsumexp it is softmax cross-entropy; against optax).",
    "ctc_loss": "frames, their paddings, label sequences and theirs (optax's signature), one "
    "loss per sequence: its contract (oracles, gradients, reductions, jit, vmap, dtypes, "
    "errors) is tests/test_ctc.py.",
}


class Case(NamedTuple):
    name: str  # the public function, then [variant]
    fn: Callable[..., jax.Array]
    # The second argument: "probs" (softmax rows), "binary" (elementwise in [0, 1]), "labels",
    # "logits" (of a second distribution, or regression targets), "log_probs" (normalised),
    # "signs" (elementwise in {-1, +1}), "bits" (elementwise in {0, 1}), or "none" (entropy
    # takes one).
    target: str
    # "example" (class axis reduced), "element", or "class" (per leading index and class: the
    # axes between the first and the last are summed, as Dice does over pixels)
    per: str
    kwargs: dict  # options; "w" and "mask" are made by `inputs` (see there)
    # The first argument: "logits", "probs" (sigmoid), "log_probs", or "predictions" (real
    # values that are not logits: regression outputs, vectors).
    x: str = "logits"
    reduction: bool = True  # takes reduction="none" | "mean" | "sum"
    # Takes axis= (the class axis anywhere). False: no class axis (elementwise losses), or
    # classes last by definition (hidden @ weight; the shard_map split of the vocabulary).
    axis: bool = True
    # Forward-mode autodiff (jvp, jacfwd) works. False: a custom_vjp, reverse mode only.
    forward_mode: bool = True
    # The highest order of derivatives that work (check_grads goes this far).
    grad_order: int = 2
    # With logit_soft_cap, the capped logits keep the logits' dtype (rounded once, no float32
    # copy). False: the fused losses cap each float32 chunk of hidden @ weight.
    cap_in_dtype: bool = True
    # The loss is >= 0 (False: a similarity, in [-1, 1]).
    nonnegative: bool = True

    @property
    def public(self) -> str:
        return self.name.partition("[")[0]

    @property
    def weighted(self) -> bool:
        """Its "mean" divides by the summed weight of the kept labels (PyTorch's definition).
        Dice's class weights scale its per-class losses, and its mean is the plain one."""
        if self.per == "class":
            return False
        return "ignore_index" in self.kwargs or "class_weights" in self.kwargs

    @property
    def shift_invariant(self) -> bool:
        """Adding a constant to an example's logits leaves the loss unchanged."""
        terms = {"z_loss", "logit_soft_cap"} & self.kwargs.keys()  # they see log Z, the logits
        return self.x == "logits" and self.per == "example" and not terms


# ---------------------------------------------------------------- adapters

_MESH = jax.sharding.Mesh(jax.devices()[:1], ("vocab",))


def _adapter(run: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """`run(logits, labels, **kwargs)`, jitted once per set of options.

    Array options are traced arguments, every other option (ints, floats, strings) a static
    one, so a call passes exactly what it is given. Eager shard_map runs op by op, seconds a
    call, so the adapters are compiled (and cached); ``adapter.eager`` is the plain call.
    """

    @functools.partial(jax.jit, static_argnames="static")
    def jitted(logits, labels, arrays, static):
        return run(logits, labels, **arrays, **dict(static))

    @functools.wraps(run)
    def adapter(logits, labels, **kwargs):
        arrays = {k: v for k, v in kwargs.items() if isinstance(v, jax.Array | np.ndarray)}
        static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in arrays))
        return jitted(logits, labels, arrays, static)

    adapter.eager = run
    return adapter


def _identity(logits: jax.Array) -> jax.Array:
    return jnp.eye(logits.shape[-1], dtype=logits.dtype)


def _classes_split(a: Any) -> P:
    return P(*([None] * (jnp.ndim(a) - 1)), "vocab") if jnp.ndim(a) else P()


def _shard_mapped(fn, arrays: tuple, specs: tuple, labels, kwargs: dict) -> jax.Array:
    """fn(*arrays, labels, axis_name="vocab", **kwargs) inside shard_map over `_MESH`.

    `arrays` are split as `specs` say, array options (``where``, ``class_weights``: per-class
    vectors, of which each device holds its slice) on their last axis; labels and scalar
    options are replicated. The loss is the same on every shard: out_specs=P().
    """
    split = {k: v for k, v in kwargs.items() if isinstance(v, jax.Array | np.ndarray)}
    rest = {k: v for k, v in kwargs.items() if k not in split}

    def local(arrays, labels, split):
        return fn(*arrays, labels, axis_name="vocab", **split, **rest)

    in_specs = (specs, P(), {k: _classes_split(v) for k, v in split.items()})
    mapped = jax.shard_map(local, mesh=_MESH, in_specs=in_specs, out_specs=P())
    return mapped(arrays, labels, split)


@_adapter
def linear_on_logits(logits, labels, **kwargs):
    """`linear_softmax_cross_entropy` of ``hidden = logits``, ``weight = I``."""
    return jaxloss.linear_softmax_cross_entropy(logits, _identity(logits), labels, **kwargs)


@_adapter
def vocab_parallel_on_logits(logits, labels, **kwargs):
    """`vocab_parallel_softmax_cross_entropy`, the logits split over the vocabulary."""
    fn = jaxloss.vocab_parallel_softmax_cross_entropy
    return _shard_mapped(fn, (logits,), (_classes_split(logits),), labels, kwargs)


@_adapter
def vocab_parallel_linear_on_logits(logits, labels, **kwargs):
    """`vocab_parallel_linear_softmax_cross_entropy` of ``hidden = logits`` (replicated),
    ``weight = I`` split over the vocabulary."""
    fn = jaxloss.vocab_parallel_linear_softmax_cross_entropy
    eye = _identity(logits)
    return _shard_mapped(fn, (logits, eye), (P(), _classes_split(eye)), labels, kwargs)


@_adapter
def linear_distillation_on_logits(logits, teacher_logits, **kwargs):
    """`linear_distillation_loss` of ``hidden = logits``, ``teacher_hidden = teacher_logits``
    and identity projections for both."""
    eye = _identity(logits)
    return jaxloss.linear_distillation_loss(logits, eye, teacher_logits, eye, **kwargs)


ADAPTERS = {  # adapter: the public loss it calls
    linear_on_logits: jaxloss.linear_softmax_cross_entropy,
    vocab_parallel_on_logits: jaxloss.vocab_parallel_softmax_cross_entropy,
    vocab_parallel_linear_on_logits: jaxloss.vocab_parallel_linear_softmax_cross_entropy,
    linear_distillation_on_logits: jaxloss.linear_distillation_loss,
}

# ---------------------------------------------------------------- the registry

# Every option of softmax_cross_entropy_with_integer_labels, which the fused and vocab-parallel
# losses take too: the "[all options]" case of each of the four has them all, so an option
# added here is checked on all four ("w" and "mask" are made by `inputs`).
CE_OPTIONS = {
    "ignore_index": 0,
    "label_smoothing": 0.1,
    "z_loss": 1e-3,
    "class_weights": "w",
    "where": "mask",
    "logit_soft_cap": 5.0,
}
# The fused losses: hidden @ weight puts the classes last, they are custom_vjps and their
# logits exist only as float32 chunks. Their "[all options]" cases take chunks of 2 tokens:
# the last chunk of an odd batch is short.
FUSED = {"axis": False, "forward_mode": False, "cap_in_dtype": False}
# Vocabulary-parallel: classes last.
SHARDED = {"axis": False}


def _labels(name: str, fn: Callable, kwargs: dict, **fields: Any) -> Case:
    return Case(name, fn, "labels", "example", kwargs, **fields)


CASES = [
    Case("softmax_cross_entropy", jaxloss.softmax_cross_entropy, "probs", "example", {}),
    Case(
        "softmax_cross_entropy[smooth]",
        jaxloss.softmax_cross_entropy,
        "probs",
        "example",
        {"label_smoothing": 0.1},
    ),
    _labels(
        "softmax_cross_entropy_with_integer_labels",
        jaxloss.softmax_cross_entropy_with_integer_labels,
        {},
    ),
    _labels(
        "softmax_cross_entropy_with_integer_labels[all options]",
        jaxloss.softmax_cross_entropy_with_integer_labels,
        CE_OPTIONS,
    ),
    _labels(
        "nll_loss[options]",
        jaxloss.nll_loss,
        {"class_weights": "w", "ignore_index": 0},
        x="log_probs",
    ),
    Case(
        "sigmoid_binary_cross_entropy[options]",
        jaxloss.sigmoid_binary_cross_entropy,
        "binary",
        "element",
        {"pos_weight": "w", "label_smoothing": 0.1},
        axis=False,
    ),
    Case(
        "binary_cross_entropy",
        jaxloss.binary_cross_entropy,
        "binary",
        "element",
        {},
        x="probs",
        axis=False,
    ),
    Case(
        "sigmoid_focal_loss",
        jaxloss.sigmoid_focal_loss,
        "binary",
        "element",
        {"alpha": 0.25},
        axis=False,
    ),
    _labels("softmax_focal_loss", jaxloss.softmax_focal_loss, {"gamma": 2.0}),
    _labels(
        "softmax_focal_loss[options]",
        jaxloss.softmax_focal_loss,
        {"gamma": 2.0, "class_weights": "w", "ignore_index": 0, "where": "mask"},
    ),
    _labels("poly1_cross_entropy", jaxloss.poly1_cross_entropy, {"epsilon": 1.0}),
    _labels(
        "poly1_cross_entropy[options]",
        jaxloss.poly1_cross_entropy,
        {"epsilon": 1.0, "class_weights": "w", "ignore_index": 0, "where": "mask"},
    ),
    Case("kl_divergence", jaxloss.kl_divergence, "probs", "example", {}),
    Case("js_divergence", jaxloss.js_divergence, "logits", "example", {}),
    Case("entropy", jaxloss.entropy, "none", "example", {}),
    Case("distillation_loss", jaxloss.distillation_loss, "logits", "example", {}),
    Case(
        "distillation_loss[reverse_kl, T]",
        jaxloss.distillation_loss,
        "logits",
        "example",
        {"divergence": "reverse_kl", "temperature": 2.0},
    ),
    Case(
        "distillation_loss[jsd, where, T]",
        jaxloss.distillation_loss,
        "logits",
        "example",
        {"divergence": "jsd", "beta": 0.3, "temperature": 3.0, "where": "mask"},
    ),
    Case(
        "linear_distillation_loss[jsd, where, T]",
        linear_distillation_on_logits,
        "logits",
        "example",
        {"divergence": "jsd", "beta": 0.3, "temperature": 3.0, "where": "mask", "chunk_size": 2},
        **FUSED,
    ),
    _labels("linear_softmax_cross_entropy", linear_on_logits, {}, **FUSED),
    _labels(
        "linear_softmax_cross_entropy[all options]",
        linear_on_logits,
        {**CE_OPTIONS, "chunk_size": 2},
        **FUSED,
    ),
    _labels("vocab_parallel_softmax_cross_entropy", vocab_parallel_on_logits, {}, **SHARDED),
    _labels(
        "vocab_parallel_softmax_cross_entropy[all options]",
        vocab_parallel_on_logits,
        CE_OPTIONS,
        **SHARDED,
    ),
    _labels(
        "vocab_parallel_linear_softmax_cross_entropy[all options]",
        vocab_parallel_linear_on_logits,
        {**CE_OPTIONS, "chunk_size": 2},
        **{**FUSED, **SHARDED},
    ),
    # Sparse outputs: Fenchel-Young losses of sparsemax and 1.5-entmax, optax's binary one.
    Case("sparsemax_loss", jaxloss.sparsemax_loss, "bits", "element", {}, axis=False),
    _labels("multiclass_sparsemax_loss", jaxloss.multiclass_sparsemax_loss, {}),
    _labels(
        "multiclass_sparsemax_loss[where]", jaxloss.multiclass_sparsemax_loss, {"where": "mask"}
    ),
    _labels("entmax15_loss", jaxloss.entmax15_loss, {}),
    _labels("entmax15_loss[where]", jaxloss.entmax15_loss, {"where": "mask"}),
    # Margins.
    Case("hinge_loss", jaxloss.hinge_loss, "signs", "element", {}, axis=False),
    Case("hinge_loss[{0, 1}]", jaxloss.hinge_loss, "bits", "element", {}, axis=False),
    Case("perceptron_loss", jaxloss.perceptron_loss, "signs", "element", {}, axis=False),
    _labels("multiclass_hinge_loss", jaxloss.multiclass_hinge_loss, {}),
    _labels("multiclass_hinge_loss[where]", jaxloss.multiclass_hinge_loss, {"where": "mask"}),
    _labels("multiclass_perceptron_loss", jaxloss.multiclass_perceptron_loss, {}),
    # Ranking: graded relevance in [0, 1] here, a list per row.
    Case("ranking_softmax_loss", jaxloss.ranking_softmax_loss, "binary", "example", {}),
    Case(
        "ranking_softmax_loss[where, weights]",
        jaxloss.ranking_softmax_loss,
        "binary",
        "example",
        {"where": "mask", "weights": "w"},
    ),
    # Divergences on log-targets and on unnormalised measures.
    Case(
        "kl_divergence_with_log_targets",
        jaxloss.kl_divergence_with_log_targets,
        "log_probs",
        "example",
        {},
    ),
    Case(
        "generalized_kl_divergence",
        jaxloss.generalized_kl_divergence,
        "binary",
        "example",
        {},
        x="log_probs",
    ),
    Case(
        "convex_kl_divergence[where]",
        jaxloss.convex_kl_divergence,
        "binary",
        "example",
        {"where": "mask"},
        x="log_probs",
    ),
    # Overlap: per leading index and class, summed over the axes between.
    Case("dice_loss", jaxloss.dice_loss, "binary", "class", {}, axis=False),
    Case(
        "dice_loss[tversky, class_weights, smooth]",
        jaxloss.dice_loss,
        "binary",
        "class",
        {"alpha": 0.7, "beta": 0.3, "class_weights": "w", "smooth": 0.5},
        axis=False,
    ),
    # Regression.
    *(
        Case(name, getattr(jaxloss, name), "logits", "element", {}, x="predictions", axis=False)
        for name in ("squared_error", "l2_loss", "log_cosh")
    ),
    Case(
        "huber_loss",
        jaxloss.huber_loss,
        "logits",
        "element",
        {"delta": 0.7},
        x="predictions",
        axis=False,
    ),
    Case(
        "cosine_similarity",
        jaxloss.cosine_similarity,
        "logits",
        "example",
        {},
        x="predictions",
        nonnegative=False,
    ),
    Case(
        "cosine_distance[where]",
        jaxloss.cosine_distance,
        "logits",
        "example",
        {"where": "mask"},
        x="predictions",
    ),
]


def inputs(case: Case, logits: np.ndarray, rng: np.random.Generator, dtype=jnp.float64):
    """(args, kwargs) for `case` on logits of shape [..., C].

    Option placeholders: "w" becomes C weights in [0.5, 2], "mask" a [C] `where` that excludes
    the last class (labels then avoid it). With ``ignore_index``, the first label is ignored.
    """
    c = logits.shape[-1]
    x = jnp.asarray(logits, dtype)
    if case.x == "probs":
        x = jnp.asarray(1 / (1 + np.exp(-logits)), dtype)
    if case.x == "log_probs":
        x = jnp.asarray(logits - np.log(np.exp(logits).sum(-1, keepdims=True)), dtype)
    made = {"w": lambda: jnp.asarray(rng.uniform(0.5, 2.0, c), dtype), "mask": lambda: _mask(c)}
    kwargs = {
        k: made[v]() if isinstance(v, str) and v in made else v for k, v in case.kwargs.items()
    }
    if case.target == "probs":
        p = rng.dirichlet(np.ones(c), logits.shape[:-1])
        return (x, jnp.asarray(p, dtype)), kwargs
    if case.target == "binary":
        return (x, jnp.asarray(rng.uniform(size=logits.shape), dtype)), kwargs
    if case.target == "labels":
        included = c - 1 if "where" in kwargs and c > 1 else c
        labels = rng.integers(0, included, logits.shape[:-1])
        if "ignore_index" in kwargs and labels.size:
            labels.flat[0] = kwargs["ignore_index"]
        return (x, jnp.asarray(labels)), kwargs
    if case.target == "logits":
        return (x, jnp.asarray(rng.normal(size=logits.shape) * 2, dtype)), kwargs
    if case.target == "log_probs":
        t = rng.normal(size=logits.shape) * 2
        t = t - np.log(np.exp(t).sum(-1, keepdims=True))
        return (x, jnp.asarray(t, dtype)), kwargs
    if case.target in ("signs", "bits"):
        bits = rng.integers(0, 2, logits.shape)
        return (x, jnp.asarray(2 * bits - 1 if case.target == "signs" else bits, dtype)), kwargs
    return (x,), kwargs


def _mask(c: int) -> jax.Array:
    return jnp.arange(c) < max(c - 1, 1)
