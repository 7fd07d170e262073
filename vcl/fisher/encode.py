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
unless ``normalize=False``. Posteriors and the statistics run in the compute dtype
(float32 by default); the statistics are accumulated in float64 and the gradients
formed in float64.

Sparse posteriors (float32 on a CPU, the default). A row's posteriors are all but a
handful negligible (K = 256, D = 64: 6.8 components on average within e^-30 of the
row's largest): the statistics keep only γ_tk ≥ e^-``posterior_floor`` × max_j γ_tj
(default floor 30, i.e. relative posteriors ≥ 9e-14) and sum those rows per component
(:mod:`vcl.fisher.sparse_kernel`) instead of the dense (K, T) @ (T, 2D+1) matmul. This
is the posterior thresholding of Sánchez et al. (IJCV 2013) and VLFeat's ``vl_fisher``,
with a threshold so small that what it drops (< 1e-13 of any statistic, ~3e-7 after
the power normalisation) is far below float32 precision: the result equals the dense
one to float32 rounding. ``posterior_floor=None`` selects the dense path; float64 and
GPU devices always use it (on a GPU the matmul's FLOPs are cheap).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vcl.fisher.gmm import DiagonalGMM, EStep, _torch_dtype, map_row_ranges, torch_threads

VARIANTS = ("improved", "vc", "skimage")
# posteriors below e^-30 ≈ 9e-14 times a row's largest are dropped on the sparse path
POSTERIOR_FLOOR = 30.0
# rows per block on the sparse path: the (n, K) log-densities, the (n, 2D+1) rows and the
# (K, 2D+1) statistics then share a core's L2 (measured at K = 256, D = 64: ~5 % faster
# than 2048 rows)
SPARSE_CHUNK_ROWS = 1024


def fisher_dim(k: int, d: int, variant: str) -> int:
    """Length of one part's Fisher vector."""
    return 2 * k * d + (k if variant == "skimage" else 0)


def power_l2(v: Any, alpha: float = 0.5) -> Any:
    """Row-wise sign(v)|v|^α then L2 normalisation; zero rows stay zero. (B, D) → (B, D)."""
    import torch

    out = torch.abs(v).pow_(alpha).copysign_(v)  # one new tensor, then in place
    norm = torch.linalg.vector_norm(out, dim=-1, keepdim=True)
    return out.div_(torch.where(norm > 0, norm, torch.ones_like(norm)))


def fisher_vectors(
    videos: Sequence[Any],
    weights: Any,
    means: Any,
    variances: Any,
    variant: str = "improved",
    alpha: float = 0.5,
    normalize: bool = True,
    dtype: str = "float32",
    chunk_rows: int | None = None,
    posterior_floor: float | None = POSTERIOR_FLOOR,
) -> Any:
    """Fisher vectors of B videos: list of (T_b, D) tensors → (B, dim) float64 tensor.

    weights (K,), means and variances (K, D) are float64 tensors on the videos'
    device. A video with T_b = 0 gets a zero vector.

    All videos' rows are taken together in blocks of ``chunk_rows`` (default: see
    :func:`~vcl.fisher.gmm.default_chunk_rows`; ``SPARSE_CHUNK_ROWS`` on the sparse
    path) whatever the videos' lengths (a block may hold the end of one video and the
    start of the next): one matmul gives a block's log-densities, then one
    (K, n) @ (n, 2D+1) matmul per video in the block its statistics, summed per video
    in float64. Rows are centred on the GMM's mean
    Σ w_k μ_k (the gradients are shift-invariant), which keeps the float32 quadratic
    forms accurate. On a CPU, contiguous row ranges run in parallel threads
    (:func:`~vcl.fisher.gmm.map_row_ranges`).

    With float32 on a CPU and a ``posterior_floor`` (not None, ≥ 0), a block's
    statistics keep only the posteriors within e^-floor of each row's largest (see the
    module docstring), summed per video by a compiled kernel in place of the second
    matmul, and the gradients are formed by one compiled pass per video.
    """
    import torch

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if posterior_floor is not None and not posterior_floor >= 0:
        raise ValueError(f"posterior_floor must be ≥ 0 or None, not {posterior_floor!r}")
    workers = torch.get_num_threads()
    with torch_threads(1 if means.device.type == "cpu" else workers):
        return _fisher_vectors(
            videos,
            weights,
            means,
            variances,
            variant,
            alpha,
            normalize,
            dtype,
            chunk_rows,
            workers,
            posterior_floor,
        )


def _fisher_vectors(
    videos: Sequence[Any],
    weights: Any,
    means: Any,
    variances: Any,
    variant: str,
    alpha: float,
    normalize: bool,
    dtype: str,
    chunk_rows: int | None,
    workers: int,
    posterior_floor: float | None,
) -> Any:
    import torch

    f64 = torch.float64
    compute = _torch_dtype(dtype)
    k, d = means.shape
    device = means.device
    lengths = [int(v.shape[0]) for v in videos]
    b = len(videos)
    centre = weights @ means  # (D,) the mixture's mean
    stats = torch.zeros(b, k, 2 * d + 1, dtype=f64, device=device)  # S1 | S2 | S0 per video
    firsts = np.cumsum([0, *lengths])
    total_rows = int(firsts[-1])
    sparse = posterior_floor is not None and compute == torch.float32 and device.type == "cpu"
    if sparse:
        from vcl.fisher.sparse_kernel import load_rows, scratch, sparse_statistics

        floor = float(posterior_floor)
        chunk_rows = chunk_rows or SPARSE_CHUNK_ROWS
        mu32 = (means - centre).to(torch.float32).numpy()  # (K, D) the centred means

    def work(lo: int, hi: int) -> tuple[int, Any]:
        """Rows [lo, hi) of the videos' concatenation. Statistics of a video that starts
        in this range go to ``stats``; those of the video that started before ``lo``
        (if any) to the returned carry, added afterwards: no two threads write a row."""
        estep = EStep(weights, means, variances, centre, compute, chunk_rows)
        block = torch.empty(k, 2 * d + 1, dtype=compute, device=device)
        first = int(np.searchsorted(firsts, lo, side="right")) - 1
        carry = torch.zeros(k, 2 * d + 1, dtype=f64, device=device)
        owners: list[tuple[int, int, int]] = []  # (video, first row, end row) in the block
        if sparse:
            buffers = scratch(estep.rows, k)  # the kernel's work space
            z32, centre32 = estep.z.numpy(), estep.centre_c.numpy()

        def flush(n: int) -> None:
            if sparse:  # log-densities by one matmul, then the compiled sparse statistics
                z, p = estep.z[:n], estep.p[:n]
                z[:, 2 * d].fill_(1.0)
                torch.mm(z, estep.a, out=p)  # (n, K) log w_k N(x_n | k)
                p, z = p.numpy(), z.numpy()
            else:
                p, z, _, _ = estep.compute(n)
            for i, a0, a1 in owners:
                target = carry if i == first and firsts[i] < lo else stats[i]
                if sparse:
                    sparse_statistics(p, z, mu32, a0, a1, floor, target.numpy(), *buffers)
                else:
                    target += torch.mm(p[a0:a1].T, z[a0:a1], out=block)
            owners.clear()

        fill = 0
        for i in range(first, len(videos)):
            if firsts[i] >= hi:
                break
            pos, end = max(lo, int(firsts[i])) - firsts[i], min(hi, int(firsts[i + 1])) - firsts[i]
            video = videos[i].to(device)
            rows = None  # the compiled loader's view of the video where it can take it
            if sparse and video.dtype in (torch.float32, f64) and video.is_contiguous():
                rows = video.numpy()
            while pos < end:
                take = min(estep.rows - fill, end - pos)
                if rows is not None:
                    load_rows(rows[pos : pos + take], centre32, z32, fill)
                else:
                    estep.load(video[pos : pos + take], fill)
                owners.append((i, fill, fill + take))
                fill, pos = fill + take, pos + take
                if fill == estep.rows:
                    flush(fill)
                    fill = 0
        if fill:
            flush(fill)
        return first, carry

    if total_rows:
        for first, carry in map_row_ranges(total_rows, work, device, workers, chunk_rows):
            stats[first] += carry  # a video cut between ranges: its other part
    if sparse:  # statistics centred on each component's mean: μ = 0 in the formulas
        zero = torch.zeros_like(means)
        return _cpu_gradients(stats, lengths, weights, zero, variances, variant, alpha, normalize)
    stats /= torch.as_tensor(lengths, dtype=f64, device=device).clamp_min(1)[:, None, None]
    s1, s2, s0 = stats[..., :d], stats[..., d : 2 * d], stats[..., 2 * d : 2 * d + 1]
    # gradients written in place into their blocks of the output (B, dim): few passes
    first = k if variant == "skimage" else 0
    out = torch.empty(b, fisher_dim(k, d, variant), dtype=f64, device=device)
    g_mu = out[:, first : first + k * d].view(b, k, d)
    g_var = out[:, first + k * d :].view(b, k, d)
    mu = means - centre  # (K, D), centred like the statistics
    torch.addcmul(s1, s0, mu, value=-1.0, out=g_mu)  # S1 − S0 μ
    torch.addcmul(s2, mu, s1, value=-2.0, out=g_var).addcmul_(s0, mu * mu - variances)
    if variant == "vc":
        g_var.neg_()
    else:
        w = weights[:, None]
        g_mu.div_(torch.sqrt(w) * torch.sqrt(variances))
        sign = -1.0 if variant == "skimage" else 1.0  # skimage's sign for the variances
        g_var.div_(sign * torch.sqrt(2 * w) * variances)
        if variant == "skimage":  # weight gradients first
            torch.sub(s0[..., 0], weights, out=out[:, :k]).div_(torch.sqrt(weights))
    empty = torch.tensor([n == 0 for n in lengths], device=device)
    out[empty] = 0.0  # no descriptors: no evidence (skimage's d_w would be −√w)
    return power_l2(out, alpha) if normalize else out


def _cpu_gradients(
    stats: Any,
    lengths: list[int],
    weights: Any,
    mu: Any,
    variances: Any,
    variant: str,
    alpha: float,
    normalize: bool,
) -> Any:
    """The gradients and normalisation of :func:`_fisher_vectors` from the summed
    statistics (B, K, 2D+1), fused per video by :func:`vcl.fisher.sparse_kernel.gradients`
    (its torch formulas make ~10 passes over a (B, dim) float64 array larger than the
    caches); mu (K, D) are the means centred like the statistics. → (B, dim) float64."""
    import torch

    from vcl.fisher.sparse_kernel import gradients

    k, d = mu.shape
    if variant == "vc":  # plain gradients, the official code's sign for σ
        a_mu, a_var = torch.ones_like(mu), torch.full_like(mu, -1.0)
    else:
        w = weights[:, None]
        sign = -1.0 if variant == "skimage" else 1.0  # skimage's sign for the variances
        a_mu = 1.0 / (torch.sqrt(w) * torch.sqrt(variances))
        a_var = sign / (torch.sqrt(2 * w) * variances)
    out = torch.empty(len(lengths), fisher_dim(k, d, variant), dtype=torch.float64)
    gradients(
        stats.numpy(),
        np.asarray(lengths, dtype=np.int64),
        *(np.ascontiguousarray(t.numpy()) for t in (weights, mu, variances, a_mu, a_var)),
        variant == "skimage",
        float(alpha),
        bool(normalize),
        out.numpy(),
    )
    return out


class FisherEncoder:
    """Fisher vectors of descriptor sets under a diagonal GMM, scikit-learn style.

    ``fit(X)`` fits ``gmm`` (a :class:`DiagonalGMM`) on stacked descriptors unless it
    is fitted already; ``transform(videos)`` maps a list of (T_b, D) arrays to a
    (B, dim) float32 array (see the module docstring for the variants and for
    ``posterior_floor``: None computes the dense posteriors).
    """

    def __init__(
        self,
        gmm: DiagonalGMM,
        variant: str = "improved",
        alpha: float = 0.5,
        normalize: bool = True,
        dtype: str = "float32",
        device: Any = "cpu",
        posterior_floor: float | None = POSTERIOR_FLOOR,
    ):
        self.gmm = gmm
        self.variant = variant
        self.alpha = alpha
        self.normalize = normalize
        self.dtype = dtype
        self.device = device
        self.posterior_floor = posterior_floor

    def fit(self, X: np.ndarray | Sequence[np.ndarray]) -> FisherEncoder:
        if not hasattr(self.gmm, "means_"):
            self.gmm.fit(np.concatenate(X) if isinstance(X, list | tuple) else X)
        return self

    def transform(self, videos: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        params = self.gmm._tensors(torch.float64, self.device)
        tensors = [torch.as_tensor(np.asarray(v)) for v in videos]
        out = fisher_vectors(
            tensors,
            *params,
            self.variant,
            self.alpha,
            self.normalize,
            self.dtype,
            posterior_floor=self.posterior_floor,
        )
        return out.cpu().numpy().astype(np.float32 if self.dtype == "float32" else np.float64)
