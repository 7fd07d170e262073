"""Count sketch (Weinberger et al. 2009, "feature hashing"): R^D → R^C, linear.

y_c = Σ_{i : h(i) = c} s(i) x_i, with a seeded hash h: [D] → [C] and signs s(i) = ±1.
E[<Sx, Sy>] = <x, y> because distinct inputs' signs are independent. Computed as
one ``index_add_`` over the input coordinates — O(D) per vector, never a dense D×C
matrix (the official video_cluster code multiplies by a dense ±1 matrix).

The hash is stored as a uniform 32-bit integer per input coordinate and reduced
modulo C when sketching, so one stored model serves any sketch dimension.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def draw_hashes(n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash (D,) uint32 uniform, sign (D,) int8 ±1) for a seed."""
    rng = np.random.default_rng([seed, 0x5C7])
    hashes = rng.integers(0, 2**32, size=n_features, dtype=np.uint64).astype(np.uint32)
    signs = (rng.integers(0, 2, size=n_features, dtype=np.int8) * 2 - 1).astype(np.int8)
    return hashes, signs


class CountSketch:
    """Count sketch to ``n_components`` dimensions, scikit-learn style.

    ``fit(n_features)`` draws ``hash_`` (uint32), ``sign_`` (±1) and ``bucket_``
    (= hash_ mod n_components); ``transform`` maps (B, D) → (B, C).
    """

    def __init__(self, n_components: int = 2000, seed: int = 0):
        self.n_components = n_components
        self.seed = seed

    def fit(self, X: Any = None, n_features: int | None = None) -> CountSketch:
        d = int(n_features if n_features is not None else np.shape(X)[-1])
        hashes, signs = draw_hashes(d, self.seed)
        return self._set(hashes, signs)

    @classmethod
    def from_arrays(cls, hashes: np.ndarray, signs: np.ndarray, n_components: int) -> CountSketch:
        return cls(n_components)._set(np.asarray(hashes), np.asarray(signs))

    def _set(self, hashes: np.ndarray, signs: np.ndarray) -> CountSketch:
        if self.n_components < 1:
            raise ValueError(f"sketch dimension must be ≥ 1, got {self.n_components}")
        self.hash_ = hashes.astype(np.uint32)
        self.sign_ = signs.astype(np.int8)
        self.bucket_ = (self.hash_.astype(np.int64) % self.n_components).astype(np.int64)
        self.n_features_in_ = len(hashes)
        return self

    def transform(self, X: Any) -> Any:
        """(B, D) numpy array or torch tensor → (B, C) of the same kind and dtype."""
        import torch

        is_numpy = isinstance(X, np.ndarray)
        x = torch.as_tensor(X)
        if x.shape[-1] != self.n_features_in_:
            raise ValueError(f"sketch was fit for {self.n_features_in_} features, got {x.shape}")
        bucket = torch.as_tensor(self.bucket_, device=x.device)
        sign = torch.as_tensor(self.sign_, device=x.device).to(x.dtype)
        out = torch.zeros(*x.shape[:-1], self.n_components, dtype=x.dtype, device=x.device)
        out.index_add_(x.dim() - 1, bucket, x * sign)
        return out.numpy() if is_numpy else out
