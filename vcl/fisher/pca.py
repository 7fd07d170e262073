"""PCA on local descriptors: keep a fraction of the variance or a fixed dimension.

IDT descriptors are decorrelated and reduced before the GMM (Tokmakov et al. §3.3:
keep 90 % of the variance) because a diagonal GMM assumes uncorrelated dimensions.
Fitted in float64 from the D×D covariance (D ≤ 426 for IDT), so the sample size
only costs one pass.
"""

from __future__ import annotations

import numpy as np


class PCA:
    """Principal components, scikit-learn style (``fit`` / ``transform``).

    ``n_components``: a float in (0, 1] keeps the fewest components whose explained
    variance reaches that fraction; an int keeps that many; ``None`` keeps all.
    ``whiten`` divides each projected dimension by its standard deviation.
    Component signs are fixed (largest-magnitude coefficient positive) so a refit
    on the same data gives the same basis.
    """

    def __init__(self, n_components: float | int | None = 0.9, whiten: bool = False):
        self.n_components = n_components
        self.whiten = whiten

    def fit(self, X: np.ndarray) -> PCA:
        """X: (N, D) finite rows, N ≥ 2."""
        X = np.asarray(X, dtype=np.float64)
        n, d = X.shape
        if n < 2:
            raise ValueError(f"PCA needs at least 2 rows, got {n}")
        self.mean_ = X.mean(axis=0)
        centred = X - self.mean_
        cov = centred.T @ centred / (n - 1)  # (D, D)
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1]
        values = np.clip(values[order], 0.0, None)
        vectors = vectors[:, order].T  # (D, D), one component a row
        total = values.sum()
        ratio = values / total if total > 0 else np.full(d, 1.0 / d)
        k = self._n_kept(ratio, d)
        signs = np.sign(vectors[np.arange(d), np.abs(vectors).argmax(axis=1)])
        signs[signs == 0] = 1.0
        self.components_ = (vectors * signs[:, None])[:k]  # (k, D)
        self.explained_variance_ = values[:k]
        self.explained_variance_ratio_ = ratio[:k]
        self.n_components_ = k
        self.n_features_in_ = d
        return self

    def _n_kept(self, ratio: np.ndarray, d: int) -> int:
        want = self.n_components
        if want is None:
            return d
        if isinstance(want, float):
            if not 0 < want <= 1:
                raise ValueError(f"variance fraction must be in (0, 1], got {want}")
            # the fewest leading components whose cumulative ratio reaches `want`
            cumulative = np.cumsum(ratio)
            return int(min(d, np.searchsorted(cumulative, want - 1e-12) + 1))
        k = int(want)
        if not 1 <= k <= d:
            raise ValueError(f"cannot keep {k} components of {d}-dimensional data")
        return k

    def scale_(self) -> np.ndarray:
        """Per-output-dimension divisor: the standard deviation when whitening, else 1."""
        if not self.whiten:
            return np.ones(self.n_components_)
        return np.sqrt(np.maximum(self.explained_variance_, 1e-12))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(N, D) → (N, k) float64."""
        X = np.asarray(X, dtype=np.float64)
        return (X - self.mean_) @ self.components_.T / self.scale_()

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).transform(X)
