"""lightning-xai: explainability as part of training with PyTorch Lightning.

Algorithms (``nn``, ``logic``, ``attribution``, ``influence``, ``penalties``) work on plain
tensors and modules; ``modules`` and ``callbacks`` decide when they run inside a ``Trainer``;
``utilities.report`` sends the results to every logger (TensorBoard first) and to plain files.
"""

from lightning_xai.utilities.batches import BatchAdapter

__version__ = "0.1.0"

__all__ = ["BatchAdapter", "__version__"]
