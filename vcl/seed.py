"""Reproducible randomness: one seed for every library, and independent streams."""

from __future__ import annotations

import random
import sys

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python, numpy's legacy global state and torch (if it is imported)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator for ``(seed, *keys)``, e.g. one per video index.

    Results for one item do not depend on which other items are processed, in
    what order, or by how many workers.
    """
    return np.random.default_rng([seed, *keys])
