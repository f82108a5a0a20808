"""The parts of :class:`~ln_lightning.NoisyLabelClassifier`, each with one job; the module
itself (:mod:`ln_lightning.module`) is thin Lightning hooks over them.

* ``network.py``: the network, backbone, heads and the optional EMA teacher as one module;
* ``method.py``: the bridge to what trains it (a loss, or a training strategy);
* ``stage_metrics.py``: the metrics of each stage, which update and log themselves;
* ``passes.py``: passes over a whole split (cached per step) and over new images;
* ``step_checks.py``: a training step stops on a NaN or infinite loss;
* ``checkpoints.py``: the record a checkpoint carries, its checks and migration, loading.
"""

from ln_lightning.model.method import LossMethod, TrainingMethod
from ln_lightning.model.network import Network, ema_teacher

__all__ = ["LossMethod", "Network", "TrainingMethod", "ema_teacher"]
