"""The errors of the influence stack: checkpoints that cannot be trusted, and non-finite values.

Both subclass ``ValueError``, so code that catches ``ValueError`` keeps working; callbacks catch
:class:`NonFiniteError` to warn and skip (or, with ``strict=True``, raise).
"""

from __future__ import annotations

__all__ = ["CheckpointError", "NonFiniteError"]


class CheckpointError(ValueError):
    """A checkpoint store, manifest or checkpoint file that cannot be used as it is: unreadable,
    truncated, changed since it was recorded, or made for another architecture. The message
    names the file (and the manifest entry) and the fix.

    Example:
        >>> isinstance(CheckpointError("x"), ValueError)
        True
    """


class NonFiniteError(ValueError):
    """A NaN or infinite value in data, gradients, checkpoint values or learning rates. The
    message names where it was found (the data and the first bad row, the checkpoint file, the
    parameter).

    Example:
        >>> isinstance(NonFiniteError("x"), ValueError)
        True
    """
