"""jaxloss: pure, jittable, exact loss functions for JAX."""

from importlib import metadata as _metadata

from jaxloss._classification import binary_cross_entropy as binary_cross_entropy
from jaxloss._classification import nll_loss as nll_loss
from jaxloss._classification import poly1_cross_entropy as poly1_cross_entropy
from jaxloss._classification import sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy
from jaxloss._classification import sigmoid_focal_loss as sigmoid_focal_loss
from jaxloss._classification import smooth_labels as smooth_labels
from jaxloss._classification import softmax_cross_entropy as softmax_cross_entropy
from jaxloss._classification import (
    softmax_cross_entropy_with_integer_labels as softmax_cross_entropy_with_integer_labels,
)
from jaxloss._classification import softmax_focal_loss as softmax_focal_loss
from jaxloss._contrastive import sigmoid_contrastive_loss as sigmoid_contrastive_loss
from jaxloss._contrastive import softmax_contrastive_loss as softmax_contrastive_loss
from jaxloss._ctc import ctc_loss as ctc_loss
from jaxloss._distillation import distillation_loss as distillation_loss
from jaxloss._distillation import linear_distillation_loss as linear_distillation_loss
from jaxloss._divergence import convex_kl_divergence as convex_kl_divergence
from jaxloss._divergence import entropy as entropy
from jaxloss._divergence import generalized_kl_divergence as generalized_kl_divergence
from jaxloss._divergence import js_divergence as js_divergence
from jaxloss._divergence import kl_divergence as kl_divergence
from jaxloss._divergence import kl_divergence_with_log_targets as kl_divergence_with_log_targets
from jaxloss._large_vocab import linear_softmax_cross_entropy as linear_softmax_cross_entropy
from jaxloss._margins import hinge_loss as hinge_loss
from jaxloss._margins import multiclass_hinge_loss as multiclass_hinge_loss
from jaxloss._margins import multiclass_perceptron_loss as multiclass_perceptron_loss
from jaxloss._margins import perceptron_loss as perceptron_loss
from jaxloss._metric import ntxent as ntxent
from jaxloss._metric import triplet_margin_loss as triplet_margin_loss
from jaxloss._overlap import binary_dice_loss as binary_dice_loss
from jaxloss._overlap import dice_loss as dice_loss
from jaxloss._overlap import multiclass_generalized_dice_loss as multiclass_generalized_dice_loss
from jaxloss._parallel import (
    vocab_parallel_linear_softmax_cross_entropy as vocab_parallel_linear_softmax_cross_entropy,
)
from jaxloss._parallel import (
    vocab_parallel_softmax_cross_entropy as vocab_parallel_softmax_cross_entropy,
)
from jaxloss._ranking import ranking_softmax_loss as ranking_softmax_loss
from jaxloss._reduction import mean as mean
from jaxloss._regression import cosine_distance as cosine_distance
from jaxloss._regression import cosine_similarity as cosine_similarity
from jaxloss._regression import huber_loss as huber_loss
from jaxloss._regression import l2_loss as l2_loss
from jaxloss._regression import log_cosh as log_cosh
from jaxloss._regression import squared_error as squared_error
from jaxloss._sparse import entmax15 as entmax15
from jaxloss._sparse import entmax15_loss as entmax15_loss
from jaxloss._sparse import make_fenchel_young_loss as make_fenchel_young_loss
from jaxloss._sparse import multiclass_sparsemax_loss as multiclass_sparsemax_loss
from jaxloss._sparse import sparsemax as sparsemax
from jaxloss._sparse import sparsemax_loss as sparsemax_loss

try:
    __version__ = _metadata.version("jaxloss")
except _metadata.PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0.0.0"
