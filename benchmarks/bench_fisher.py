"""vcl fisher: encoding speed vs skimage.feature.fisher_vector, GMM fitting vs scikit-learn
at equal log-likelihood, count sketch vs the dense ±1 projection of the official code.

Sizes: D = 64 PCA dimensions and K = 256 components (the paper's K). The GMM comparison
runs both EMs for the same 20 iterations from the same k-means initialisation on
100k × 64 rows and reports both final log-likelihoods in the row's label.
"""

from __future__ import annotations

import time

import numpy as np


def _data(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, d)) * 2
    return (centres[rng.integers(0, 64, n)] + rng.standard_normal((n, d))).astype(np.float32)


def _sklearn_gmm(weights, means, variances):
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(len(weights), covariance_type="diag")
    gmm.weights_, gmm.means_, gmm.covariances_ = weights, means, variances
    gmm.precisions_cholesky_ = 1 / np.sqrt(variances)
    gmm.precisions_ = 1 / variances
    gmm.converged_, gmm.n_iter_, gmm.lower_bound_ = True, 1, 0.0
    return gmm


def bench_encode(k: int = 256, d: int = 64) -> dict:
    from skimage.feature import fisher_vector

    from vcl.console import configure
    from vcl.fisher import DiagonalGMM, FisherEncoder

    configure(quiet=True)
    rng = np.random.default_rng(0)
    weights = rng.dirichlet(np.ones(k) * 5)
    means = rng.standard_normal((k, d)) * 2
    variances = rng.uniform(0.5, 1.5, (k, d))
    videos = [_data(int(n), d, i) for i, n in enumerate(rng.integers(1000, 4000, 24))]
    total = sum(len(v) for v in videos)
    encoder = FisherEncoder(DiagonalGMM.from_params(weights, means, variances), "skimage")
    encoder.transform(videos[:2])  # warm-up
    start = time.perf_counter()
    ours = encoder.transform(videos)
    ours_rate = total / (time.perf_counter() - start)
    sk = _sklearn_gmm(weights, means, variances)
    start = time.perf_counter()
    ref = np.stack([fisher_vector(v.astype(np.float64), sk, improved=True) for v in videos])
    ref_rate = total / (time.perf_counter() - start)
    err = float(np.abs(ours - ref).max())
    return {
        "stage": "fisher",
        "compared": f"encode K={k} D={d}, 24 videos ({total} descr.) vs skimage; max|Δ|={err:.1e}",
        "ours": ours_rate,
        "reference": ref_rate,
        "unit": "descriptors/s",
    }


def bench_gmm(n: int = 100_000, d: int = 64, k: int = 256, iters: int = 20) -> dict:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    from vcl.console import configure
    from vcl.fisher import DiagonalGMM

    configure(quiet=True)
    x = _data(n, d, 1).astype(np.float64)
    init = DiagonalGMM(k, seed=0)._kmeans_init(x - x.mean(0), seed=0)
    w0, mu0, var0 = init[0], init[1] + x.mean(0), init[2]
    start = time.perf_counter()
    ours = DiagonalGMM(
        k, n_iter=iters, tol=0.0, weights_init=w0, means_init=mu0, variances_init=var0
    ).fit(x)
    ours_time = time.perf_counter() - start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        sk = GaussianMixture(
            k,
            covariance_type="diag",
            max_iter=iters,
            tol=0.0,
            weights_init=w0,
            means_init=mu0,
            precisions_init=1 / var0,
        ).fit(x)
        sk_time = time.perf_counter() - start
    return {
        "stage": "fisher",
        "compared": f"GMM fit K={k}, {n}×{d}, {iters} EM iters (s); mean log-lik ours "
        f"{ours.score(x):.4f} / sklearn {sk.score(x):.4f}",
        "ours": ours_time,
        "reference": sk_time,
        "unit": "s",
        "higher_is_better": False,
    }


def bench_sketch(dim: int = 2 * 256 * 64, out: int = 2000, batch: int = 64) -> dict:
    import torch

    from vcl.fisher import CountSketch

    x = torch.randn(batch, dim)
    sketch = CountSketch(out, seed=0).fit(n_features=dim)
    dense = torch.zeros(dim, out)
    dense[torch.arange(dim), torch.as_tensor(sketch.bucket_)] = torch.as_tensor(
        sketch.sign_, dtype=torch.float32
    )
    sketch.transform(x)
    reps = 20
    start = time.perf_counter()
    for _ in range(reps):
        ours = sketch.transform(x)
    ours_rate = reps * batch / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(reps):
        ref = x @ dense
    ref_rate = reps * batch / (time.perf_counter() - start)
    err = float((ours - ref).abs().max())
    return {
        "stage": "fisher",
        "compared": f"count sketch {dim}→{out} vs dense ±1 matmul ({dense.numel() * 4 >> 20} MiB);"
        f" max|Δ|={err:.1e}",
        "ours": ours_rate,
        "reference": ref_rate,
        "unit": "vectors/s",
    }


def run() -> list[dict]:
    return [bench_encode(), bench_sketch(), bench_gmm()]


if __name__ == "__main__":
    for row in run():
        print(row)
