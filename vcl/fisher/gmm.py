"""Diagonal-covariance Gaussian mixture fit by EM in torch (CPU or GPU).

The model of local descriptors behind Fisher vectors (Perronnin et al. 2010):
p(x) = Σ_k w_k N(x; μ_k, diag σ²_k). EM alternates the posteriors γ_nk (E-step)
and the closed-form updates w_k = Σγ/N, μ_k = Σγx/Σγ, σ²_k = Σγx²/Σγ − μ_k² (M-step).

Numerics: the log-density uses the expansion x²·(1/σ²) − 2x·(μ/σ²) + μ²/σ², two
matmuls in the compute dtype (float32 by default, fast on CPU and GPU), on data
centred by its mean to limit cancellation; the sufficient statistics are summed
over row chunks in float64 and the M-step runs in float64. Variances are floored
at ``var_floor`` × the data's variance per dimension (a constrained M-step, so the
log-likelihood still never decreases). Initialised by faiss k-means; with
``n_init`` > 1 the run with the best final log-likelihood is kept.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vcl.console import log

LOG_2PI = math.log(2 * math.pi)


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


def posteriors(z: Any, a: Any) -> tuple[Any, Any]:
    """γ (N, K) and log p(x_n) (N,) from augmented rows z (N, 2D+1) and A (2D+1, K).

    Softmax written out in place (one exp pass instead of logsumexp's plus softmax's);
    relative posteriors under e^-60 ≈ 1e-26 are raised to it (no effect on any sum).
    """
    import torch

    lp = z @ a  # (N, K) log w_k N(x_n | k)
    top = lp.amax(1, keepdim=True)
    # relative posteriors are floored at e^-60 ≈ 1e-26: below that exp yields subnormal
    # floats, which make exp and the following matmuls ~10× slower on CPUs
    lp.sub_(top).clamp_min_(-60.0).exp_()
    total = lp.sum(1, keepdim=True)
    lp.div_(total)
    return lp, (top + torch.log(total)).squeeze(1)


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
        chunk_rows: int = 1 << 16,
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

    def _kmeans_init(self, X: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
        """faiss k-means centroids; variances and weights from the hard assignment."""
        import faiss

        from vcl.device import faiss_gpu_count

        d = X.shape[1]
        k = self.n_components
        x32 = np.ascontiguousarray(X, dtype=np.float32)
        kmeans = faiss.Kmeans(
            d, k, niter=self.kmeans_iter, seed=int(seed), gpu=faiss_gpu_count() > 0, verbose=False
        )
        kmeans.train(x32)
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
        """One E-step over row chunks: (total log-likelihood, S0 (K,), S1 (K,D), S2 (K,D))."""
        import torch

        k, d = params[1].shape
        a = log_prob_matrix(*params).to(x.dtype)  # (2D+1, K)
        f64 = torch.float64
        stats = torch.zeros(k, 2 * d + 1, dtype=f64, device=x.device)
        total = torch.zeros((), dtype=f64, device=x.device)
        for start in range(0, x.shape[0], self.chunk_rows):
            z = augment(x[start : start + self.chunk_rows])  # (n, 2D+1)
            gamma, log_p = posteriors(z, a)
            total += log_p.sum(dtype=f64)
            stats += (gamma.T @ z).to(f64)  # (K, 2D+1): S1 | S2 | S0
        s1, s2, s0 = stats[:, :d], stats[:, d : 2 * d], stats[:, 2 * d]
        return total, s0, s1, s2

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
            log.info(
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
