"""Pure, per-example loss functions (tensors in, one loss per example out), one file per family.

Each file mirrors the loss module of the same name in :mod:`ln_lightning.losses`:
``logistic_normal`` (the paper's method; its bijection and targets in ``softmax_centered``,
its full covariance as one autograd function in ``_ln_full_covariance``),
``shifted_gaussian`` (SGN, its successor), ``softmax`` (CE, LS, GCE, NAN), ``forward``
(Forward correction, its estimate of ``T`` and the forward-corrected LN mean) and
``heteroscedastic`` (Het, Het-tau, Het-tau-Sigma_full). Everything is importable from here, e.g.
``from ln_lightning.losses.functional import logistic_normal_loss``.

Every function computes in float32 whatever the input dtype (float64 inputs stay float64;
autocast is switched off inside), never materialises a ``K x K`` matrix per example and costs
O(K) per example (times the samples for the heteroscedastic ones; the forward-corrected LN
mean is one product with ``T``, O(K^2) operations and O(K) memory per example). They import
torch alone.
"""

from ln_lightning.losses.functional._common import check_labels, upcast
from ln_lightning.losses.functional.forward import (
    estimate_transition_matrix,
    filtered_share,
    forward_corrected_cross_entropy,
    forward_corrected_mean,
    transition_anchors,
    wrong_label_share,
    wrong_label_spread,
)
from ln_lightning.losses.functional.heteroscedastic import (
    check_het_hparams,
    heteroscedastic_loss,
    heteroscedastic_probabilities,
)
from ln_lightning.losses.functional.logistic_normal import (
    COVARIANCES,
    DEFAULT_PARAMS,
    Covariance,
    LogisticNormalParams,
    gaussian_terms,
    largest_standard_deviation,
    logistic_normal_loss,
    logistic_normal_nll,
    logistic_normal_residuals,
    mean_probabilities,
    scale_dim,
)
from ln_lightning.losses.functional.shifted_gaussian import (
    DEFAULT_SGN_PARAMS,
    ShiftedGaussianParams,
    helmert_coordinates,
    helmert_lift,
    ilr_probabilities,
    isometric_log_ratio,
    sgn_target,
    shifted_gaussian_noise_loss,
    shifted_gaussian_residuals,
)
from ln_lightning.losses.functional.softmax import (
    cross_entropy,
    generalized_cross_entropy,
    label_smoothing_cross_entropy,
    noisy_target_cross_entropy,
)
from ln_lightning.losses.functional.softmax_centered import (
    inverse_softmax_centered,
    logit_dim,
    num_classes_from_logit_dim,
    smoothed_target,
    softmax_centered,
    target_logit_scale,
    target_logits,
)

__all__ = [
    "COVARIANCES",
    "DEFAULT_PARAMS",
    "DEFAULT_SGN_PARAMS",
    "Covariance",
    "LogisticNormalParams",
    "ShiftedGaussianParams",
    "check_het_hparams",
    "check_labels",
    "cross_entropy",
    "estimate_transition_matrix",
    "filtered_share",
    "forward_corrected_cross_entropy",
    "forward_corrected_mean",
    "gaussian_terms",
    "generalized_cross_entropy",
    "helmert_coordinates",
    "helmert_lift",
    "heteroscedastic_loss",
    "heteroscedastic_probabilities",
    "ilr_probabilities",
    "inverse_softmax_centered",
    "isometric_log_ratio",
    "label_smoothing_cross_entropy",
    "largest_standard_deviation",
    "logistic_normal_loss",
    "logistic_normal_nll",
    "logistic_normal_residuals",
    "logit_dim",
    "mean_probabilities",
    "noisy_target_cross_entropy",
    "num_classes_from_logit_dim",
    "scale_dim",
    "sgn_target",
    "shifted_gaussian_noise_loss",
    "shifted_gaussian_residuals",
    "smoothed_target",
    "softmax_centered",
    "target_logit_scale",
    "target_logits",
    "transition_anchors",
    "upcast",
    "wrong_label_share",
    "wrong_label_spread",
]
