"""Training strategies: what trains the network when a loss is not enough (per-sample state,
networks of their own, optimisers of their own), beside the losses of
:mod:`ln_lightning.losses`.

Every module of this package is imported here, and each strategy in it registers itself
(:func:`ln_lightning.registry.register_strategy`); the strategies are exported under their
class names. A new strategy needs its file here, its config in ``zoo/configs/strategies/`` and
its section in docs/strategies.md, nothing in this file.
"""

from ln_lightning.registry import import_package as _import_package
from ln_lightning.strategies.base import TrainingStrategy, gather_rows, training_pool_size

_REGISTERED = _import_package(__name__, __path__, "strategy")
globals().update(_REGISTERED)

__all__ = ["TrainingStrategy", "gather_rows", "training_pool_size"]
__all__ += sorted(_REGISTERED)  # the registered strategies
