"""vcl.fisher library: each fast path against a plain reference or a reference package."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcl.fisher import PCA, CountSketch, DiagonalGMM, FisherEncoder, FisherModel, fisher_dim


def blobs(n: int, d: int, centres: int, seed: int, spread: float = 3.0) -> np.ndarray:
    """Seeded clusters with unequal per-dimension scales (odd sizes catch D/K mix-ups)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)) * spread
    scale = rng.uniform(0.3, 1.5, (centres, d))
    label = rng.integers(0, centres, n)
    return c[label] + rng.standard_normal((n, d)) * scale[label]


def fitted_gmm(d: int = 7, k: int = 5, seed: int = 0) -> DiagonalGMM:
    x = blobs(1500, d, k, seed)
    return DiagonalGMM(k, n_iter=30, n_init=1, dtype="float64", seed=seed).fit(x)


def reference_fv(x: np.ndarray, w: np.ndarray, mu: np.ndarray, var: np.ndarray, kind: str):
    """Eq. 5–6 (Perronnin et al. 2010) written plainly in float64, one component at a time."""
    t, d = x.shape
    k = len(w)
    logp = np.empty((t, k))
    for j in range(k):
        logp[:, j] = (
            np.log(w[j])
            - 0.5 * np.sum((x - mu[j]) ** 2 / var[j], axis=1)
            - 0.5 * np.sum(np.log(2 * np.pi * var[j]))
        )
    gamma = np.exp(logp - logp.max(1, keepdims=True))
    gamma /= gamma.sum(1, keepdims=True)
    g_mu, g_sigma = np.empty((k, d)), np.empty((k, d))
    for j in range(k):
        sigma = np.sqrt(var[j])
        u = (x - mu[j]) / sigma
        if kind == "improved":
            g_mu[j] = (gamma[:, j : j + 1] * u).sum(0) / (t * np.sqrt(w[j]))
            g_sigma[j] = (gamma[:, j : j + 1] * (u**2 - 1)).sum(0) / (t * np.sqrt(2 * w[j]))
        else:  # the official code: plain gradients, its sign for the variances
            g_mu[j] = (gamma[:, j : j + 1] * (x - mu[j])).sum(0) / t
            g_sigma[j] = -(gamma[:, j : j + 1] * ((x - mu[j]) ** 2 - var[j])).sum(0) / t
    return np.concatenate([g_mu.ravel(), g_sigma.ravel()])


def power_l2(v: np.ndarray) -> np.ndarray:
    v = np.sign(v) * np.sqrt(np.abs(v))
    return v / np.linalg.norm(v)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("kind", ["improved", "vc"])
def test_encoder_equals_plain_float64_reference(kind: str) -> None:
    gmm = fitted_gmm()
    rng = np.random.default_rng(1)
    videos = [blobs(n, 7, 3, seed=10 + n) + rng.normal(0, 0.5, 7) for n in (1, 37, 211)]
    refs = [reference_fv(v, gmm.weights_, gmm.means_, gmm.variances_, kind) for v in videos]
    fast32 = FisherEncoder(gmm, kind, normalize=False).transform(videos)  # the default path
    fast64 = FisherEncoder(gmm, kind, normalize=False, dtype="float64").transform(videos)
    normed = FisherEncoder(gmm, kind, dtype="float64").transform(videos)
    for i, ref in enumerate(refs):
        assert fast32.shape[1] == fisher_dim(5, 7, kind) == ref.size
        assert rel(fast32[i], ref) <= 1e-5
        assert rel(fast64[i], ref) <= 1e-10
        np.testing.assert_allclose(normed[i], power_l2(ref), atol=1e-10)


def test_float32_encoder_stays_within_1e_5_for_larger_models_far_from_the_origin() -> None:
    # K = 48, D = 33, descriptors and GMM 40 standard deviations away from the origin:
    # without centring, float32 quadratic forms (x²/σ² ~ 1600) would lose ~1e-4
    rng = np.random.default_rng(4)
    k, d = 48, 33
    means = rng.standard_normal((k, d)) * 2 + 40.0
    variances = rng.uniform(0.5, 1.5, (k, d))
    weights = rng.dirichlet(np.ones(k) * 3)
    gmm = DiagonalGMM.from_params(weights, means, variances)
    videos = [means[rng.integers(0, k, n)] + rng.standard_normal((n, d)) for n in (3, 517)]
    for kind in ("improved", "vc"):
        fast = FisherEncoder(gmm, kind, normalize=False).transform(videos)
        for i, v in enumerate(videos):
            assert rel(fast[i], reference_fv(v, weights, means, variances, kind)) <= 1e-5


def test_skimage_variant_equals_skimage_fisher_vector() -> None:
    from skimage.feature import fisher_vector
    from sklearn.mixture import GaussianMixture

    x = blobs(900, 6, 4, seed=3)
    sk = GaussianMixture(4, covariance_type="diag", random_state=0).fit(x)
    gmm = DiagonalGMM.from_params(sk.weights_, sk.means_, sk.covariances_)
    videos = [blobs(n, 6, 2, seed=n) for n in (5, 44, 130)]
    for improved in (False, True):
        ours = FisherEncoder(gmm, "skimage", normalize=improved, dtype="float64").transform(videos)
        ref = np.stack([fisher_vector(v, sk, improved=improved) for v in videos])
        assert ours.shape == ref.shape == (3, 2 * 4 * 6 + 4)
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_empty_video_gives_zero_vector_in_a_batch() -> None:
    gmm = fitted_gmm()
    out = FisherEncoder(gmm).transform([blobs(9, 7, 2, 1), np.zeros((0, 7)), blobs(4, 7, 2, 2)])
    assert not out[1].any()
    np.testing.assert_allclose(np.linalg.norm(out[[0, 2]], axis=1), 1.0, rtol=1e-5)


def test_em_never_decreases_and_matches_sklearn_from_the_same_init() -> None:
    from sklearn.mixture import GaussianMixture

    x = blobs(2311, 9, 6, seed=5, spread=2.0)
    start = DiagonalGMM(6, seed=2)
    w0, mu0, var0 = start._kmeans_init(x - x.mean(0), seed=2)
    mu0 = mu0 + x.mean(0)
    init = {"weights_init": w0, "means_init": mu0, "variances_init": var0}
    ours = DiagonalGMM(6, n_iter=300, tol=1e-9, var_floor=1e-6, dtype="float64", **init).fit(x)
    ll = np.array(ours.log_likelihood_)
    assert len(ll) > 3 and np.all(np.diff(ll) >= -1e-12 * np.abs(ll[:-1]))
    fast = DiagonalGMM(6, n_iter=60, tol=0, **init).fit(x)  # float32 path
    assert np.all(np.diff(fast.log_likelihood_) >= -1e-5)
    sk = GaussianMixture(
        6,
        covariance_type="diag",
        weights_init=w0,
        means_init=mu0,
        precisions_init=1 / var0,
        reg_covar=1e-9,
        tol=1e-9,
        max_iter=300,
    ).fit(x)
    assert abs(ours.score(x) - sk.score(x)) <= 0.01 * abs(sk.score(x))
    assert abs(ours.lower_bound_ - ours.score(x)) < 1e-6
    np.testing.assert_allclose(np.sort(ours.weights_), np.sort(sk.weights_), atol=1e-3)


def test_gmm_several_inits_keep_the_best_and_recover_planted_means() -> None:
    rng = np.random.default_rng(7)
    centres = np.array([[0.0, 0, 0], [8, 0, 0], [0, 8, 0], [0, 0, 8]])
    x = centres[rng.integers(0, 4, 3001)] + rng.standard_normal((3001, 3)) * 0.5
    gmm = DiagonalGMM(4, n_init=3, seed=1).fit(x)
    assert len(gmm.log_likelihoods_) == 3
    assert gmm.lower_bound_ == max(r[-1] for r in gmm.log_likelihoods_)
    err = np.abs(np.sort(gmm.means_, axis=0) - np.sort(centres, axis=0)).max()
    assert err < 0.1 and np.allclose(gmm.weights_.sum(), 1.0)
    np.testing.assert_allclose(gmm.variances_, 0.25, rtol=0.15)


def test_gmm_init_reaches_sklearns_likelihood_on_separated_blobs() -> None:
    """k-means++ seeds, as scikit-learn's GaussianMixture (video_cluster's Fisher models)
    starts from: faiss's random-row seeds put two of 8 separated blobs in one component
    (mean log-likelihood −8.80 against −7.45)."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.normal(rng.normal(size=5) * 4, rng.random(5) + 0.2, (800, 5)) for _ in range(8)]
    )
    ours = DiagonalGMM(8, n_iter=200, n_init=3, tol=1e-6).fit(x)
    sk = GaussianMixture(
        8, covariance_type="diag", n_init=3, max_iter=200, tol=1e-6, random_state=0
    )
    assert ours.score(x) >= sk.fit(x).score(x) - 0.01


def test_variance_floor_holds_for_a_collapsed_component() -> None:
    x = np.concatenate([np.random.default_rng(0).standard_normal((500, 4)), np.ones((60, 4))])
    gmm = DiagonalGMM(3, var_floor=1e-3, dtype="float64").fit(x)
    assert np.all(gmm.variances_ >= 1e-3 * x.var(0) * (1 - 1e-9))
    assert np.all(np.isfinite(gmm.means_))


def test_count_sketch_is_linear_and_matches_a_dense_projection() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.integers(-50, 50, (2, 3, 1001)).astype(np.float64)
    sketch = CountSketch(37, seed=4).fit(n_features=1001)
    a, b = 3.0, -7.0
    np.testing.assert_array_equal(
        sketch.transform(a * x + b * y), a * sketch.transform(x) + b * sketch.transform(y)
    )
    dense = np.zeros((1001, 37))
    dense[np.arange(1001), sketch.bucket_] = sketch.sign_
    np.testing.assert_array_equal(sketch.transform(x), x @ dense)
    tensor = sketch.transform(torch.as_tensor(x, dtype=torch.float32))
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 37)


def test_count_sketch_preserves_inner_products_in_expectation() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(503)
    y = 0.6 * x + rng.standard_normal(503)
    exact = x @ y
    values = []
    for seed in range(400):
        s = CountSketch(31, seed=seed).fit(n_features=503)
        sx, sy = s.transform(np.stack([x, y]))
        values.append(sx @ sy)
    values = np.array(values)
    stderr = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - exact) < 4 * stderr
    assert values.std() > 1.0  # a random projection, not the identity


def test_pca_keeps_the_requested_variance_and_matches_sklearn() -> None:
    from sklearn.decomposition import PCA as SkPCA

    rng = np.random.default_rng(2)
    x = rng.standard_normal((401, 23)) @ rng.standard_normal((23, 23)) + 5.0
    for fraction in (0.5, 0.9, 0.99):
        pca = PCA(fraction).fit(x)
        ratio = np.cumsum(PCA(None).fit(x).explained_variance_ratio_)
        k = pca.n_components_
        assert pca.explained_variance_ratio_.sum() >= fraction
        assert k == 1 or ratio[k - 2] < fraction
        sk = SkPCA(k).fit(x)
        np.testing.assert_allclose(pca.explained_variance_, sk.explained_variance_, rtol=1e-8)
        cos = np.abs(np.sum(pca.components_ * sk.components_, axis=1))
        np.testing.assert_allclose(cos, 1.0, atol=1e-6)
    white = PCA(5, whiten=True).fit(x).transform(x)
    np.testing.assert_allclose(white.std(0, ddof=1), 1.0, rtol=1e-8)
    np.testing.assert_allclose(white.mean(0), 0.0, atol=1e-9)


def _videos(n: int, seed: int, dims: dict[str, int]) -> tuple[list[dict], list[int]]:
    """Videos of 3 planted classes: descriptors shifted along a class direction."""
    rng = np.random.default_rng(seed)
    shift = {c: rng.standard_normal((3, d)) for c, d in dims.items()}
    videos, labels = [], []
    for i in range(n):
        cls = i % 3
        t = int(rng.integers(100, 200))
        videos.append(
            {
                c: (rng.standard_normal((t, d)) + shift[c][cls]).astype(np.float32)
                for c, d in dims.items()
            }
        )
        labels.append(cls)
    return videos, labels


@pytest.mark.parametrize("parts", ["per-type", "joint"])
def test_model_round_trip_and_planted_classes(parts: str, tmp_path) -> None:
    dims = {"a": 11, "b": 6}
    videos, labels = _videos(18, 0, dims)
    sample = {c: np.concatenate([v[c] for v in videos]) for c in dims}
    model = FisherModel(["a", "b"], parts=parts, pca_variance=0.95, k=2, n_iter=15, seed=3)
    model.fit(sample)
    assert model.part_names_ == (["a", "b"] if parts == "per-type" else ["joint"])
    full = model.transform(videos, "improved", sketch_dim=0)
    assert full.shape == (18, model.output_dim("improved", 0))
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, rtol=1e-5)
    sketched = model.transform(videos, "improved", sketch_dim=16)
    assert sketched.shape == (18, 16)
    # nearest neighbour by Fisher vector recovers each video's planted class (with the
    # weight gradients: here the GMM's components are the classes themselves, and then
    # 2KD vectors carry little more than noise)
    fv = model.transform(videos, "skimage", sketch_dim=0)
    sim = fv @ fv.T - 2 * np.eye(18)
    assert np.mean(np.array(labels)[sim.argmax(1)] == np.array(labels)) == 1.0
    model.save(tmp_path / "m.zarr", {"parts": parts}, seed=3)
    again = FisherModel.load(tmp_path / "m.zarr")
    for variant in ("improved", "vc", "skimage"):
        np.testing.assert_allclose(
            again.transform(videos[:4], variant, 16), model.transform(videos[:4], variant, 16)
        )


@pytest.mark.parametrize("threads", [1, 3])
def test_row_blocks_and_threads_that_split_videos_change_nothing(threads: int) -> None:
    from vcl.fisher import fisher_vectors

    gmm = fitted_gmm()
    params = gmm._tensors(torch.float64, "cpu")
    videos = [torch.as_tensor(blobs(n, 7, 2, n)) for n in (13, 0, 1, 29, 8, 40)]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole = fisher_vectors(videos, *params, "improved", dtype="float64")
        torch.set_num_threads(threads)  # 91 rows in blocks of 7: 3 row ranges, cut in videos
        split = fisher_vectors(videos, *params, "improved", dtype="float64", chunk_rows=7)
        assert torch.get_num_threads() == threads  # restored after the call
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(split, whole, rtol=1e-12, atol=1e-12)
    assert not split[1].any()


def test_em_statistics_do_not_depend_on_threads_or_blocks() -> None:
    x = torch.as_tensor(blobs(1001, 5, 4, seed=9))
    gmm = fitted_gmm(d=5, k=4, seed=9)
    params = gmm._tensors(torch.float64, "cpu")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = DiagonalGMM(4, dtype="float64")._statistics(x, params)
        torch.set_num_threads(3)
        many = DiagonalGMM(4, dtype="float64", chunk_rows=50)._statistics(x, params)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one, many, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-9)
    # and the total equals the log-likelihood of a plain float64 computation
    np.testing.assert_allclose(float(one[0]), gmm.score_samples(x.numpy()).sum(), rtol=1e-12)


# -- the sparse-posterior path (vcl.fisher.sparse_kernel) ---------------------------


def _mixture(k: int, d: int, seed: int, spread: float, var: tuple[float, float]) -> tuple:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((k, d)) * spread
    return rng.dirichlet(np.ones(k) * 3), means, rng.uniform(*var, (k, d))


def _skimage_reference(x: np.ndarray, w, mu, var, improved: bool) -> np.ndarray:
    """skimage.feature.fisher_vector on a scikit-learn GMM holding the same parameters."""
    from skimage.feature import fisher_vector
    from sklearn.mixture import GaussianMixture

    sk = GaussianMixture(len(w), covariance_type="diag")
    sk.weights_, sk.means_, sk.covariances_ = w, mu, var
    sk.precisions_cholesky_, sk.precisions_ = 1 / np.sqrt(var), 1 / var
    return fisher_vector(x, sk, improved=improved)


@pytest.mark.parametrize("case", ["near-ties", "peaked", "narrow"])
def test_sparse_posteriors_equal_dense_and_the_float64_references(case: str) -> None:
    # K = 83 = 64 + 16 + 3 and D = 37 = 2·16 + 5: every vector width and scalar tail
    k, d = 83, 37
    if case == "near-ties":  # components far closer than their spread: all K kept
        w, mu, var = _mixture(k, d, 0, spread=0.05, var=(4.0, 6.0))
    elif case == "peaked":  # separated: one component a row, the next below e^-100
        w, mu, var = _mixture(k, d, 1, spread=3.0, var=(0.5, 1.5))
    else:  # separated and narrow (σ ~ 0.1, |μ| ~ 6): the dense float32 statistics,
        # centred on the mixture's mean, lose ~μ²/σ² of float32's precision (~3e-4 here);
        # the sparse ones are centred on each component's mean
        w, mu, var = _mixture(k, d, 1, spread=6.0, var=(0.01, 0.02))
    rng = np.random.default_rng(2)
    videos = [
        mu[rng.integers(0, k, n)] + rng.standard_normal((n, d)) * np.sqrt(var.mean())
        for n in (1, 40, 301)
    ]
    gmm = DiagonalGMM.from_params(w, mu, var)
    gamma = gmm.predict_proba(np.concatenate(videos))
    ratio = np.sort(gamma, 1)[:, [0, -2]] / gamma.max(1, keepdims=True)
    if case == "near-ties":
        assert ratio[:, 0].min() > np.exp(-30)  # nothing dropped
    else:
        assert ratio[:, 1].max() < np.exp(-30)  # all but one dropped
    for variant in ("improved", "vc", "skimage"):
        for normalize in (False, True):
            sparse = FisherEncoder(gmm, variant, normalize=normalize).transform(videos)
            dense = FisherEncoder(
                gmm,
                variant,
                normalize=normalize,
                dtype="float32" if case != "narrow" else "float64",
                posterior_floor=None,
            ).transform(videos)
            for i, v in enumerate(videos):
                if variant == "skimage":
                    if not normalize:
                        continue  # skimage's improved=False has no other normalisation
                    ref = _skimage_reference(v, w, mu, var, improved=True)
                else:
                    ref = reference_fv(v, w, mu, var, variant)
                    ref = power_l2(ref) if normalize else ref
                assert rel(sparse[i], ref) <= 1e-5
                assert rel(dense[i], ref) <= 1e-5
                assert rel(sparse[i], dense[i]) <= 1e-5


@pytest.mark.parametrize("k, d", [(83, 37), (82, 101), (7, 5)])
def test_sparse_kernel_keeps_exactly_the_posteriors_within_the_floor(k: int, d: int) -> None:
    # K: 64 + 16 + 3 / 64 + 16 + 2 / 7 components; D: 2·16 + 5 / 64 + 2·16 + 5 / 5 dims
    from vcl.fisher.sparse_kernel import scratch, sparse_statistics

    rng = np.random.default_rng(3)
    n = 13
    logp = rng.uniform(-300, -100, (n, k)).astype(np.float32)  # all far below the floor
    logp[:, 5] = 10.0  # every row's largest
    kept_c, dropped = (70, [20, 81]) if k > 81 else (6, [1, 4])
    logp[:, kept_c] = 10.0 - 29.9  # relative posterior e^-29.9: kept
    logp[:, dropped] = 10.0 - 30.1  # e^-30.1: dropped (81: in the scalar tail)
    y = rng.standard_normal((n, d + 3)).astype(np.float32)  # row stride > D
    lo, hi = 2, 11
    target = np.zeros((k, 2 * d + 1))
    zero = np.zeros((k, d), np.float32)
    sparse_statistics(logp, y, zero, lo, hi, 30.0, target, *scratch(n, k))
    z = np.concatenate([y[lo:hi, :d], y[lo:hi, :d] ** 2, np.ones((hi - lo, 1))], 1)
    kept = np.exp(np.float64(-29.9))
    # float32 sums of 9 rows: relative 1e-7 of the terms' size
    np.testing.assert_allclose(target[5], z.sum(0) / (1 + kept), rtol=1e-6, atol=1e-6)
    scaled = target[kept_c] / kept
    np.testing.assert_allclose(scaled, z.sum(0) / (1 + kept), rtol=1e-5, atol=1e-6)
    others = np.delete(np.arange(k), [5, kept_c])
    assert not target[others].any()  # dropped, and rows outside [lo, hi) never read

    # random log-densities and means: a float64 computation of the same rule, added
    logp = rng.normal(0, 12 if k > 16 else 30, (n, k)).astype(np.float32)
    means = rng.standard_normal((k, d)).astype(np.float32)
    before = rng.standard_normal((k, 2 * d + 1))
    target = before.copy()
    sparse_statistics(logp, y, means, lo, hi, 30.0, target, *scratch(n, k))
    part = logp[lo:hi].astype(np.float64)
    keep = logp[lo:hi] >= (logp[lo:hi].max(1, keepdims=True) - np.float32(30.0))
    gamma = np.where(keep, np.exp(part - part.max(1, keepdims=True)), 0.0)
    gamma /= gamma.sum(1, keepdims=True)  # (rows, K)
    assert 1 < keep.sum(1).mean() < k - 1
    u = y[lo:hi, None, :d].astype(np.float64) - means  # (rows, K, D)
    expected = np.concatenate(
        [
            np.einsum("nk,nkd->kd", gamma, u),
            np.einsum("nk,nkd->kd", gamma, u * u),
            gamma.sum(0)[:, None],
        ],
        1,
    )
    np.testing.assert_allclose(target, before + expected, rtol=1e-5, atol=1e-5)

    logp[4] = np.nan  # NaN in the input: NaN statistics, as the dense path gives
    target = np.zeros((k, 2 * d + 1))
    sparse_statistics(logp, y, means, lo, hi, 30.0, target, *scratch(n, k))
    assert np.isnan(target).any()


def test_sparse_kernel_exp_is_accurate_to_float32() -> None:
    from vcl.fisher.sparse_kernel import _exp_nonpositive

    x = np.concatenate([-np.linspace(0, 87, 100_003), [-1e-30, -0.0]]).astype(np.float32)
    out = x.copy()
    _exp_nonpositive(out, len(out) - 1)  # the last element is left alone
    exact = np.exp(x.astype(np.float64))
    np.testing.assert_allclose(out[:-1], exact[:-1], rtol=2e-7, atol=0)
    assert out[-1] == x[-1]


@pytest.mark.parametrize("threads", [1, 3])
def test_sparse_path_blocks_threads_and_video_boundaries_change_nothing(threads: int) -> None:
    from vcl.fisher import fisher_vectors

    w, mu, var = _mixture(29, 11, 4, spread=1.0, var=(0.5, 1.5))
    params = [torch.as_tensor(a) for a in (w, mu, var)]
    rng = np.random.default_rng(5)
    videos = [torch.as_tensor(rng.standard_normal((n, 11)) * 1.5) for n in (13, 0, 1, 29, 8, 40)]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exact = fisher_vectors(videos, *params, "skimage", dtype="float64")
        one = fisher_vectors(videos, *params, "skimage", chunk_rows=7)  # blocks cut videos
        whole = fisher_vectors(videos, *params, "skimage", chunk_rows=4096)  # 5 cuts in one
        torch.set_num_threads(threads)  # 91 rows in blocks of 7: 3 row ranges with carries
        split = fisher_vectors(videos, *params, "skimage", chunk_rows=7)
    finally:
        torch.set_num_threads(before)
    assert not split[1].any() and not one[1].any()
    for i in (0, 2, 3, 4, 5):
        for fast in (one, whole, split):
            assert rel(fast[i].numpy(), exact[i].numpy()) <= 1e-5
        assert rel(split[i].numpy(), one[i].numpy()) <= 1e-6


def test_sparse_path_nan_rows_and_a_bad_floor() -> None:
    gmm = fitted_gmm()
    videos = [blobs(9, 7, 2, 1), blobs(6, 7, 2, 2)]
    videos[1][3, 2] = np.nan
    for floor in (30.0, None):
        out = FisherEncoder(gmm, posterior_floor=floor).transform(videos)
        assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
    with pytest.raises(ValueError, match="posterior_floor"):
        FisherEncoder(gmm, posterior_floor=-1.0).transform(videos)


def test_a_small_fit_warns_once_and_faiss_prints_nothing(capfd) -> None:
    """Too few descriptors per Gaussian: one vcl warning, not faiss's line per k-means run."""
    from vcl.console import configure

    configure()
    sample = {"a": np.random.default_rng(0).normal(size=(60, 5))}
    FisherModel(["a"], pca_variance=0.95, k=4, n_iter=3, n_init=3, seed=0).fit(sample)
    err = capfd.readouterr().err
    assert err.count("fitting 4 Gaussians on 60 descriptors") == 1, err
    assert "please provide" not in err.lower(), err
