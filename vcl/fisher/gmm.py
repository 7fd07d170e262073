"""Diagonal-covariance Gaussian mixture fit by EM in torch (CPU or GPU).

The model of local descriptors behind Fisher vectors (Perronnin et al. 2010):
p(x) = Σ_k w_k N(x; μ_k, diag σ²_k). EM alternates the posteriors γ_nk (E-step)
and the closed-form updates w_k = Σγ/N, μ_k = Σγx/Σγ, σ²_k = Σγx²/Σγ − μ_k² (M-step).

Numerics and speed: the E-step runs over blocks of a couple of thousand rows
(:class:`EStep`): one matmul of [x, x², 1] against a (2D+1, K) matrix gives the
log-densities (the expansion x²·(1/σ²) − 2x·(μ/σ²) + μ²/σ²), a softmax in place the
posteriors, and one matmul γᵀ[x, x², 1] the sufficient statistics S1 | S2 | S0, all in
the compute dtype (float32 by default) on data centred by its mean to limit
cancellation; the blocks' statistics and log-likelihoods are summed in float64 and the
M-step runs in float64. On a CPU, row ranges run in parallel threads. Variances are
floored at ``var_floor`` × the data's variance per dimension (a constrained M-step, so
the log-likelihood still never decreases). EM stops when the mean per-sample
log-likelihood changes by less than ``tol`` (scikit-learn's rule) or after ``n_iter``
iterations. Initialised by k-means (k-means++ seeds, then faiss's Lloyd); with
``n_init`` > 1 the run with the best final log-likelihood is kept.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from vcl.console import log

LOG_2PI = math.log(2 * math.pi)
FAISS_POINTS_PER_CENTROID = 256  # faiss k-means trains on at most this many rows per centroid


def _torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


def augment(x: Any) -> Any:
    """[x, x², 1]: (N, D) → (N, 2D + 1); one matmul against it gives log-densities or S0–S2."""
    import torch

    return torch.cat([x, x * x, torch.ones_like(x[:, :1])], 1)


def log_prob_matrix(weights: Any, means: Any, variances: Any) -> Any:
    """A (2D + 1, K) with augment(x) @ A = log w_k + log N(x; μ_k, σ²_k).

    log N = −½ Σ_d (x_d² / σ²_kd − 2 x_d μ_kd / σ²_kd + μ_kd² / σ²_kd + log 2πσ²_kd).
    Built in the parameters' dtype (float64), then cast to the compute dtype by the caller.
    """
    import torch

    precision = 1.0 / variances  # (K, D)
    bias = torch.log(weights) - 0.5 * (
        (means * means * precision).sum(1) + torch.log(variances).sum(1)
    )
    bias = bias - 0.5 * means.shape[1] * LOG_2PI
    return torch.cat([(means * precision).T, -0.5 * precision.T, bias[None]], 0)


def default_chunk_rows(device: Any) -> int:
    """Rows per E-step block: a couple of thousand on a CPU, so that the (n, K) posteriors
    and the (n, 2D+1) rows stay in the core's L2 cache between the passes over them
    (measured at K = 256, D = 64: the float32 matmuls then run at ~150 GFLOPS on one
    core, 2–5× their speed on 64k-row blocks); more on a GPU."""
    import torch

    return 2048 if torch.device(device).type == "cpu" else 1 << 16


def row_ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """[0, n) cut into ≤ ``parts`` contiguous ranges of near-equal length."""
    cuts = np.linspace(0, n, max(1, min(parts, n)) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to n for the block, restored afterwards."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def map_row_ranges(
    n: int,
    work: Callable[[int, int], Any],
    device: Any,
    workers: int = 1,
    block_rows: int | None = None,
) -> list[Any]:
    """``work(lo, hi)`` over ≤ ``workers`` contiguous row ranges of [0, n), each of at
    least ``block_rows`` rows (default: :func:`default_chunk_rows`), in Python threads.

    Meant for CPUs, inside ``torch_threads(1)`` with ``workers`` = the caller's torch
    thread count: the blocks are too small for intra-op threads to pay, and their OpenMP
    teams spin-wait at every op's barrier, which on a busy machine made the E-step
    10–30× slower than one thread; torch releases the GIL inside its ops, so threads
    over row ranges use the cores instead. On a GPU: one range. Results come back in
    range order, so sums over them do not depend on thread timing.
    """
    import torch

    if torch.device(device).type != "cpu" or n == 0:
        return [work(0, n)]
    ranges = row_ranges(n, min(workers, n // (block_rows or default_chunk_rows(device)) or 1))
    if len(ranges) == 1:
        return [work(0, n)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(ranges), thread_name_prefix="vcl-estep") as pool:
        return list(pool.map(lambda r: work(*r), ranges))


class EStep:
    """Posteriors and sufficient statistics of row blocks under a diagonal GMM.

    One matmul per block gives the log-densities: with z = [x − c, (x − c)², 1]
    (n, 2D + 1) and A = :func:`log_prob_matrix` of the means shifted by c (a centre
    close to the data's mean, limiting cancellation in float32), z @ A = log w_k +
    log N(x; μ_k, σ²_k). The posteriors are a softmax over k written out in place on
    that block; the softmax's normaliser is folded into the rows of z instead of γ
    (half the work), so that one more matmul γᵀz gives the block's statistics
    [S1 | S2 | S0] = Σ_n γ_nk [x_n − c, (x_n − c)², 1], shape (K, 2D + 1).

    The two (n, ·) buffers are allocated once and reused for every block (no page
    faults, cache-resident): rows are copied in with :meth:`load` (several pieces may
    fill one block) and :meth:`compute` returns views valid until the next load.
    One instance per thread.
    """

    def __init__(
        self,
        weights: Any,
        means: Any,
        variances: Any,
        centre: Any = None,
        dtype: Any = None,
        chunk_rows: int | None = None,
    ):
        import torch

        k, d = means.shape
        dtype = dtype or torch.float32
        device = means.device
        self.d = d
        self.centre = torch.zeros(d, dtype=means.dtype, device=device) if centre is None else centre
        self.a = log_prob_matrix(weights, means - self.centre, variances).to(dtype)
        self.centre_c = self.centre.to(dtype)
        self.rows = int(chunk_rows or default_chunk_rows(device))
        self.z = torch.empty(self.rows, 2 * d + 1, dtype=dtype, device=device)
        self.p = torch.empty(self.rows, k, dtype=dtype, device=device)

    def load(self, x: Any, at: int = 0) -> None:
        """Rows x (m, D), any float dtype, into block rows [at, at + m): [x − c, (x − c)²]."""
        import torch

        d = self.d
        xs = self.z[at : at + x.shape[0], :d]
        torch.sub(x, self.centre_c, out=xs)
        torch.mul(xs, xs, out=self.z[at : at + x.shape[0], d : 2 * d])

    def compute(self, n: int) -> tuple[Any, Any, Any, Any]:
        """The first n loaded rows → (p, z, top, total).

        p (n, K): posteriors times the row's normaliser, exp(log p_nk − top_n), with
        relative posteriors under e^-60 ≈ 1e-26 raised to it (below, exp gives subnormal
        floats, which make exp and the matmuls ~10× slower on CPUs; no effect on any
        sum). z (n, 2D+1): [x − c, (x − c)², 1] / total_n, so p.T @ z = [S1 | S2 | S0].
        log p(x_n) = top_n + log total_n (both (n, 1)).
        """
        import torch

        z, p = self.z[:n], self.p[:n]
        z[:, 2 * self.d].fill_(1.0)
        torch.mm(z, self.a, out=p)  # (n, K) log w_k N(x_n | k)
        top = p.amax(1, keepdim=True)
        p.sub_(top).clamp_min_(-60.0).exp_()
        total = p.sum(1, keepdim=True)
        z.mul_(total.reciprocal())
        return p, z, top, total

    def __call__(self, x: Any) -> tuple[Any, Any, Any, Any]:
        """One block x (n ≤ chunk_rows, D): :meth:`load` then :meth:`compute`."""
        self.load(x)
        return self.compute(x.shape[0])


def log_gaussian(x: Any, means: Any, variances: Any, log_weights: Any) -> Any:
    """log w_k + log N(x_n; μ_k, σ²_k) for every row and component: (N, D) → (N, K)."""
    import torch

    a = log_prob_matrix(torch.exp(log_weights), means, variances)
    return augment(x) @ a


class DiagonalGMM:
    """Gaussian mixture with diagonal covariances, scikit-learn style.

    Parameters are stored as given; ``fit`` sets ``weights_`` (K,), ``means_`` (K, D),
    ``variances_`` (K, D) as float64 numpy arrays, ``log_likelihood_`` (the mean
    per-sample log-likelihood after each EM step of the kept run, starting from the
    initialisation), ``log_likelihoods_`` (the same for every run), ``n_iter_``,
    ``converged_`` and ``lower_bound_`` (the final mean log-likelihood).
    """

    def __init__(
        self,
        n_components: int = 256,
        n_iter: int = 100,
        n_init: int = 1,
        tol: float = 1e-4,
        var_floor: float = 1e-4,
        kmeans_iter: int = 20,
        dtype: str = "float32",
        device: Any = "cpu",
        seed: int = 0,
        chunk_rows: int | None = None,
        weights_init: np.ndarray | None = None,
        means_init: np.ndarray | None = None,
        variances_init: np.ndarray | None = None,
        name: str = "",
    ):
        self.n_components = n_components
        self.n_iter = n_iter
        self.n_init = n_init
        self.tol = tol
        self.var_floor = var_floor
        self.kmeans_iter = kmeans_iter
        self.dtype = dtype
        self.device = device
        self.seed = seed
        self.chunk_rows = chunk_rows
        self.weights_init = weights_init
        self.means_init = means_init
        self.variances_init = variances_init
        self.name = name

    # -- initialisation ------------------------------------------------------------

    def _seeds(self, x32: np.ndarray, seed: int) -> np.ndarray:
        """(K, D) k-means++ seeds (scikit-learn's greedy variant: its GaussianMixture, which
        video_cluster fitted its Fisher models with, starts from them) drawn from a random
        256·K rows, the sample faiss trains on. faiss's own seeds, random rows, left 8
        well-separated blobs at a mean log-likelihood of −8.80 where scikit-learn
        reached −7.45 (3 inits each); these reach −7.45."""
        from vcl.cluster import kmeans_plusplus

        rows = min(len(x32), FAISS_POINTS_PER_CENTROID * self.n_components)
        if rows < len(x32):
            picked = np.random.default_rng(seed).choice(len(x32), rows, replace=False)
            x32 = x32[np.sort(picked)]
        return kmeans_plusplus(x32, self.n_components, int(seed))

    def _kmeans_init(self, X: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
        """k-means (faiss Lloyd from k-means++ seeds) centroids; variances and weights from
        the hard assignment."""
        import faiss

        from vcl.device import faiss_gpu_count

        d = X.shape[1]
        k = self.n_components
        x32 = np.ascontiguousarray(X, dtype=np.float32)
        kmeans = faiss.Kmeans(
            d,
            k,
            niter=self.kmeans_iter,
            seed=int(seed),
            gpu=faiss_gpu_count() > 0,
            verbose=False,
            min_points_per_centroid=1,  # FisherModel.fit warns once; faiss prints per run
        )
        kmeans.train(x32, init_centroids=self._seeds(x32, seed))
        _, assign = kmeans.index.search(x32, 1)
        assign = assign.ravel()
        counts = np.bincount(assign, minlength=k).astype(np.float64)
        sums = np.zeros((k, d))
        squares = np.zeros((k, d))
        np.add.at(sums, assign, X)
        np.add.at(squares, assign, X * X)
        safe = np.maximum(counts, 1.0)[:, None]
        means = np.where(counts[:, None] > 0, sums / safe, kmeans.centroids.astype(np.float64))
        variances = squares / safe - means**2
        global_var = X.var(axis=0)
        variances = np.where(counts[:, None] > 1, variances, global_var)
        weights = np.maximum(counts, 1.0)
        return weights / weights.sum(), means, variances

    # -- EM ------------------------------------------------------------------------

    def _statistics(self, x: Any, params: tuple[Any, ...]) -> tuple[Any, ...]:
        """One E-step over row blocks: (total log-likelihood, S0 (K,), S1 (K,D), S2 (K,D)).

        Each block's statistics come from one (K, n) @ (n, 2D+1) matmul in the compute
        dtype (see :class:`EStep`), summed in float64; row ranges run in parallel
        threads on a CPU (:func:`map_row_ranges`), their sums added in range order.
        """
        import torch

        k, d = params[1].shape
        f64 = torch.float64

        def work(lo: int, hi: int) -> tuple[Any, Any]:
            estep = EStep(*params, dtype=x.dtype, chunk_rows=self.chunk_rows)
            stats = torch.zeros(k, 2 * d + 1, dtype=f64, device=x.device)
            block = torch.empty(k, 2 * d + 1, dtype=x.dtype, device=x.device)
            log_lik = torch.zeros((), dtype=f64, device=x.device)
            for start in range(lo, hi, estep.rows):
                p, z, top, total = estep(x[start : min(hi, start + estep.rows)])
                log_lik += top.sum(dtype=f64) + total.log_().sum(dtype=f64)
                stats += torch.mm(p.T, z, out=block)  # (K, 2D+1): S1 | S2 | S0
            return log_lik, stats

        workers = torch.get_num_threads()
        with torch_threads(1 if x.device.type == "cpu" else workers):
            parts = map_row_ranges(x.shape[0], work, x.device, workers, self.chunk_rows)
        log_lik, stats = parts[0]
        for part in parts[1:]:
            log_lik, stats = log_lik + part[0], stats + part[1]
        s1, s2, s0 = stats[:, :d], stats[:, d : 2 * d], stats[:, 2 * d]
        return log_lik, s0, s1, s2

    def _m_step(self, stats: tuple[Any, ...], old: tuple[Any, ...], floor: Any, n: int) -> tuple:
        import torch

        _, s0, s1, s2 = stats
        alive = s0 > 1e-10 * n  # an empty component keeps its mean and variance
        safe = torch.clamp_min(s0, 1e-300)[:, None]
        means = torch.where(alive[:, None], s1 / safe, old[1])
        variances = torch.where(alive[:, None], s2 / safe - means * means, old[2])
        variances = torch.maximum(variances, floor)
        weights = torch.clamp_min(s0 / n, 1e-300)
        return weights / weights.sum(), means, variances

    def _run(self, x: Any, init: tuple[np.ndarray, ...], floor: Any, run: int) -> dict:
        import torch

        f64 = torch.float64
        params = tuple(torch.as_tensor(p, dtype=f64, device=x.device) for p in init)
        params = (params[0], params[1], torch.maximum(params[2], floor))
        n = x.shape[0]
        history: list[float] = []
        converged = False
        for it in range(self.n_iter + 1):
            stats = self._statistics(x, params)
            history.append(float(stats[0]) / n)
            log.debug(  # per iteration: -v; the model keeps the history
                "gmm%s run %d/%d iter %d: mean log-likelihood %.6f",
                f" {self.name}" if self.name else "",
                run + 1,
                self.n_init,
                it,
                history[-1],
            )
            if it > 0 and abs(history[-1] - history[-2]) < self.tol:
                converged = True
                break
            if it == self.n_iter:
                break
            params = self._m_step(stats, params, floor, n)
        return {"params": params, "history": history, "converged": converged, "iters": it}

    def fit(self, X: np.ndarray) -> DiagonalGMM:
        """X: (N, D) finite rows with N ≥ n_components."""
        import torch

        X = np.asarray(X, dtype=np.float64)
        n, d = X.shape
        if n < self.n_components:
            raise ValueError(f"{n} rows cannot fit {self.n_components} components")
        centre = X.mean(axis=0)
        centred = X - centre
        x = torch.as_tensor(centred, dtype=_torch_dtype(self.dtype), device=self.device)
        floor = torch.as_tensor(
            self.var_floor * np.maximum(centred.var(axis=0), 1e-12), dtype=torch.float64
        ).to(self.device)
        given = self.means_init is not None
        runs = []
        for run in range(1 if given else self.n_init):
            if given:
                init = (
                    np.asarray(self.weights_init, dtype=np.float64),
                    np.asarray(self.means_init, dtype=np.float64) - centre,
                    np.asarray(self.variances_init, dtype=np.float64),
                )
            else:
                init = self._kmeans_init(centred, self.seed + run)
            runs.append(self._run(x, init, floor, run))
        best = max(runs, key=lambda r: r["history"][-1])
        weights, means, variances = (p.cpu().numpy() for p in best["params"])
        self.weights_ = weights
        self.means_ = means + centre
        self.variances_ = variances
        self.log_likelihood_ = best["history"]
        self.log_likelihoods_ = [r["history"] for r in runs]
        self.lower_bound_ = best["history"][-1]
        self.n_iter_ = best["iters"]
        self.converged_ = best["converged"]
        self.n_features_in_ = d
        return self

    # -- inference -----------------------------------------------------------------

    def _tensors(self, dtype: Any, device: Any) -> tuple[Any, Any, Any]:
        import torch

        return tuple(
            torch.as_tensor(p, dtype=dtype, device=device)
            for p in (self.weights_, self.means_, self.variances_)
        )

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """log p(x_n) per row, (N,) float64 (computed in float64)."""
        import torch

        x = torch.as_tensor(np.asarray(X, dtype=np.float64))
        w, mu, var = self._tensors(torch.float64, "cpu")
        return torch.logsumexp(log_gaussian(x, mu, var, torch.log(w)), 1).numpy()

    def score(self, X: np.ndarray) -> float:
        """Mean log-likelihood per row (scikit-learn's ``score``)."""
        return float(self.score_samples(X).mean())

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Posteriors γ (N, K), float64."""
        import torch

        x = torch.as_tensor(np.asarray(X, dtype=np.float64))
        w, mu, var = self._tensors(torch.float64, "cpu")
        return torch.softmax(log_gaussian(x, mu, var, torch.log(w)), 1).numpy()

    @classmethod
    def from_params(
        cls, weights: np.ndarray, means: np.ndarray, variances: np.ndarray, **kwargs: Any
    ) -> DiagonalGMM:
        """A fitted model from stored parameters (weights (K,), means and variances (K, D))."""
        gmm = cls(n_components=len(weights), **kwargs)
        gmm.weights_ = np.asarray(weights, dtype=np.float64)
        gmm.means_ = np.asarray(means, dtype=np.float64)
        gmm.variances_ = np.asarray(variances, dtype=np.float64)
        gmm.n_features_in_ = gmm.means_.shape[1]
        return gmm
