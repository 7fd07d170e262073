"""Content digests of the models a resumable output is made with.

A stage that resumes into a partial output compares its parameters with the ones the
output was begun with. A model named only by its path (a run retrained in place, a
Fisher model refit, a weights file replaced) would pass that check and mix two models'
results, so the parameters carry a digest of the model's arrays instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np


def arrays_sha256(named: Iterable[tuple[str, np.ndarray]], header: bytes = b"") -> str:
    """SHA-256 of ``header`` and of every ``(name, array)``: its name, dtype, shape and
    bytes, in the order given."""
    digest = hashlib.sha256(header)
    for name, values in named:
        values = np.ascontiguousarray(values)
        digest.update(f"{name} {values.dtype.str} {values.shape}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()
