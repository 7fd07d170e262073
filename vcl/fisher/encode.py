"""Fisher vector encoding of sets of local descriptors, batched over videos in torch.

For a video's T descriptors x_t (after PCA) and posteriors γ_t(k) under the GMM
(w_k, μ_k, σ²_k), with the averages S0_k = Σ_t γ_t(k)/T, S1_k = Σ_t γ_t(k) x_t/T,
S2_k = Σ_t γ_t(k) x_t²/T (element-wise), the variants are:

- ``improved`` (Perronnin, Sánchez & Mensink 2010, eq. 5–6 of Tokmakov et al.):
  G_μ,k = (S1_k − S0_k μ_k) / (√w_k σ_k),
  G_σ,k = (S2_k − 2 μ_k S1_k + S0_k (μ_k² − σ_k²)) / (√(2 w_k) σ_k²);
  vector [G_μ,1..K, G_σ,1..K] (2KD), each block k-major then dimension.
- ``vc`` (what pvtokmakov/video_cluster computes): the same gradients without the
  Fisher-information normalisation and with its sign for σ:
  [S1 − S0 μ, −(S2 − 2 μ S1 + S0 (μ² − σ²))] (2KD).
- ``skimage`` (``skimage.feature.fisher_vector``): [(S0 − w)/√w, G_μ, −G_σ] (2KD + K).

All three are then power-normalised (sign(z)|z|^α, α = 0.5) and L2-normalised
unless ``normalize=False``. Posteriors and the statistics' matmuls run in the compute
dtype (float32 by default); the statistics are accumulated in float64 and the
gradients formed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vcl.fisher.gmm import DiagonalGMM, _torch_dtype, augment, log_prob_matrix, posteriors

VARIANTS = ("improved", "vc", "skimage")


def fisher_dim(k: int, d: int, variant: str) -> int:
    """Length of one part's Fisher vector."""
    return 2 * k * d + (k if variant == "skimage" else 0)


def power_l2(v: Any, alpha: float = 0.5) -> Any:
    """Row-wise sign(v)|v|^α then L2 normalisation; zero rows stay zero. (B, D) → (B, D)."""
    import torch

    v = torch.sign(v) * torch.abs(v) ** alpha
    norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    return v / torch.where(norm > 0, norm, torch.ones_like(norm))


def fisher_vectors(
    videos: Sequence[Any],
    weights: Any,
    means: Any,
    variances: Any,
    variant: str = "improved",
    alpha: float = 0.5,
    normalize: bool = True,
    dtype: str = "float32",
    chunk_rows: int = 1 << 15,
) -> Any:
    """Fisher vectors of B videos: list of (T_b, D) tensors → (B, dim) float64 tensor.

    weights (K,), means and variances (K, D) are float64 tensors on the videos'
    device. A video with T_b = 0 gets a zero vector.
    """
    import torch

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    f64 = torch.float64
    compute = _torch_dtype(dtype)
    k, d = means.shape
    device = means.device
    lengths = [int(v.shape[0]) for v in videos]
    b = len(videos)
    s0 = torch.zeros(b, k, dtype=f64, device=device)
    s1 = torch.zeros(b, k, d, dtype=f64, device=device)
    s2 = torch.zeros(b, k, d, dtype=f64, device=device)
    if sum(lengths):
        x = torch.cat([v.to(device=device, dtype=compute) for v in videos])  # (ΣT, D)
        a = log_prob_matrix(weights, means, variances).to(compute)  # (2D+1, K)
        firsts = np.cumsum([0, *lengths])
        for start in range(0, x.shape[0], chunk_rows):  # rows of whole videos per chunk
            stop = min(x.shape[0], start + chunk_rows)
            z = augment(x[start:stop])  # (n, 2D+1)
            gamma, _ = posteriors(z, a)
            lo = int(np.searchsorted(firsts, start, side="right")) - 1
            hi = int(np.searchsorted(firsts, stop, side="left"))
            for i in range(lo, hi):  # videos overlapping this chunk: partial sums
                a0, a1 = max(firsts[i], start) - start, min(firsts[i + 1], stop) - start
                if a1 > a0:
                    st = (gamma[a0:a1].T @ z[a0:a1]).to(f64)  # (K, 2D+1)
                    s1[i] += st[:, :d]
                    s2[i] += st[:, d : 2 * d]
                    s0[i] += st[:, 2 * d]
        count = torch.as_tensor(lengths, dtype=f64, device=device).clamp_min(1)
        s0, s1, s2 = s0 / count[:, None], s1 / count[:, None, None], s2 / count[:, None, None]
    mu, var, w = means[None], variances[None], weights[None, :, None]
    d_mu = s1 - s0[..., None] * mu  # (B, K, D)
    d_var = s2 - 2 * mu * s1 + s0[..., None] * (mu * mu - var)
    if variant == "vc":
        parts = [d_mu, -d_var]
    else:
        g_mu = d_mu / (torch.sqrt(w) * torch.sqrt(var))
        g_var = d_var / (torch.sqrt(2 * w) * var)
        if variant == "improved":
            parts = [g_mu, g_var]
        else:  # skimage: weight gradients first, and its sign for the variances
            d_w = (s0 - weights[None]) / torch.sqrt(weights)[None]
            parts = [d_w, g_mu, -g_var]
    out = torch.cat([p.reshape(b, -1) for p in parts], 1)
    empty = torch.tensor([n == 0 for n in lengths], device=device)
    out[empty] = 0.0  # no descriptors: no evidence (skimage's d_w would be −√w)
    return power_l2(out, alpha) if normalize else out


class FisherEncoder:
    """Fisher vectors of descriptor sets under a diagonal GMM, scikit-learn style.

    ``fit(X)`` fits ``gmm`` (a :class:`DiagonalGMM`) on stacked descriptors unless it
    is fitted already; ``transform(videos)`` maps a list of (T_b, D) arrays to a
    (B, dim) float32 array (see the module docstring for the variants).
    """

    def __init__(
        self,
        gmm: DiagonalGMM,
        variant: str = "improved",
        alpha: float = 0.5,
        normalize: bool = True,
        dtype: str = "float32",
        device: Any = "cpu",
    ):
        self.gmm = gmm
        self.variant = variant
        self.alpha = alpha
        self.normalize = normalize
        self.dtype = dtype
        self.device = device

    def fit(self, X: np.ndarray | Sequence[np.ndarray]) -> FisherEncoder:
        if not hasattr(self.gmm, "means_"):
            self.gmm.fit(np.concatenate(X) if isinstance(X, list | tuple) else X)
        return self

    def transform(self, videos: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        params = self.gmm._tensors(torch.float64, self.device)
        tensors = [torch.as_tensor(np.asarray(v)) for v in videos]
        out = fisher_vectors(tensors, *params, self.variant, self.alpha, self.normalize, self.dtype)
        return out.cpu().numpy().astype(np.float32 if self.dtype == "float32" else np.float64)
