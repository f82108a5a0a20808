"""Callbacks: the paper's analyses as run outputs, and the predictions file.

Add them in a config (``trainer.callbacks``) or on the command line, e.g.
``--trainer.callbacks+=ln_lightning.callbacks.MislabelReport``. Each analysis runs at the end of
training on global rank 0 on the model's shared pass over the training split
(``NoisyLabelClassifier.split_predictions``), writes its files into the run's directory and
logs figures and tables to every logger that takes them (W&B images and tables, TensorBoard
figures; CSV runs keep the PNG/CSV files). The logic lives in :mod:`ln_lightning.analysis`.
``ln-fit`` adds :class:`PredictionWriter` and :class:`~ln_lightning.resume.LastCheckpoint`
(``last.ckpt`` and Ctrl-C; re-exported here) to every run.
"""

from ln_lightning.callbacks.annotator_nll import AnnotatorNLL
from ln_lightning.callbacks.decision_boundary import DecisionBoundaryPlot
from ln_lightning.callbacks.mislabel_report import MislabelReport
from ln_lightning.callbacks.predictions import PredictionWriter
from ln_lightning.callbacks.residual_histogram import ResidualHistogram
from ln_lightning.resume import LastCheckpoint

__all__ = [
    "AnnotatorNLL",
    "DecisionBoundaryPlot",
    "LastCheckpoint",
    "MislabelReport",
    "PredictionWriter",
    "ResidualHistogram",
]
