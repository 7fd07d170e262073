"""vcl.cluster and vcl.cluster_metrics: FINCH against a brute-force twin and the authors'
package, k-means on planted clusters, track k-means, metrics against hand values and
scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.metrics as skm

from vcl import cluster_metrics as cm
from vcl.cluster import (
    canonical,
    finch,
    finch_exact,
    first_neighbours,
    kmeans,
    track_kmeans,
    track_representatives,
)


def blobs(n: int, d: int, centres: int, seed: int, spread: float = 4.0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)) * spread
    y = rng.integers(0, centres, n)
    return (c[y] + rng.normal(size=(n, d))).astype(np.float32), y


# ---------------------------------------------------------------- brute-force FINCH twin


def _brute_distances(x: np.ndarray, metric: str) -> np.ndarray:
    x = x.astype(np.float64)
    if metric == "cosine":
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        d = 1.0 - u @ u.T
    else:
        d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return d


def _brute_components(nn: np.ndarray) -> np.ndarray:
    """Union-find over the edges i - nn[i], in plain Python."""
    parent = list(range(len(nn)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in enumerate(nn):
        a, b = root(i), root(int(j))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return canonical(np.array([root(i) for i in range(len(nn))]))


def brute_finch(x: np.ndarray, metric: str) -> list[np.ndarray]:
    labels = _brute_components(_brute_distances(x, metric).argmin(1))
    levels = [labels]
    while True:
        k = labels.max() + 1
        means = np.stack([x[labels == c].astype(np.float64).mean(0) for c in range(k)])
        merge = _brute_components(_brute_distances(means, metric).argmin(1))
        new = canonical(merge[labels])
        if new.max() == 0 or k - (new.max() + 1) <= 1:
            return levels
        labels = new
        levels.append(labels)


def brute_exact(x: np.ndarray, labels: np.ndarray, target: int, metric: str) -> np.ndarray:
    """Merge the closest pair of cluster means until ``target`` clusters remain."""
    labels = canonical(labels)
    while labels.max() + 1 > target:
        k = labels.max() + 1
        means = np.stack([x[labels == c].astype(np.float64).mean(0) for c in range(k)])
        d = _brute_distances(means, metric)
        a, b = np.unravel_index(np.argmin(d), d.shape)
        labels = canonical(np.where(labels == max(a, b), min(a, b), labels))
    return labels


def test_components_of_functional_graphs_equal_union_find() -> None:
    """Pointer doubling against plain union-find: random graphs, one long chain (the
    deepest tree), self-loops, long cycles and many 2-cycles (mutual neighbours)."""
    from vcl.cluster import _components

    rng = np.random.default_rng(3)
    n = 257
    chain = np.concatenate([[1], np.arange(n - 1)])  # 0 ↔ 1, then i → i − 1
    ring = np.roll(np.arange(n), -1)  # one cycle through every node
    graphs = [chain, ring, np.arange(n), rng.permutation(chain), np.zeros(1, np.int64)]
    graphs += [rng.integers(0, m, m) for m in (2, 3, 10, 100, 1000) for _ in range(3)]
    pairs = rng.permutation(n - 1)  # mutual pairs, with trees hanging off them
    mutual = np.empty(n, np.int64)
    mutual[pairs[0::2]], mutual[pairs[1::2]] = pairs[1::2], pairs[0::2]
    mutual[n - 1] = 0
    graphs.append(mutual)
    for nn in graphs:
        count, labels = _components(nn)
        expected = _brute_components(nn)
        assert labels.dtype == np.int32 and count == expected.max() + 1
        np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_finch_equals_brute_force(metric: str) -> None:
    x, _ = blobs(311, 7, 9, seed=3)
    ours = finch(x, metric)
    ref = brute_finch(x, metric)
    assert ours.n_clusters == [int(r.max()) + 1 for r in ref]
    for level, expected in enumerate(ref):
        assert np.array_equal(canonical(ours.partition(level)), expected)
    assert len(ref) >= 2
    # an exact count between two levels
    target = (ours.n_clusters[0] + ours.n_clusters[1]) // 2
    start = max(i for i, c in enumerate(ours.n_clusters) if c >= target)
    exact = finch_exact(x, ours, target, metric)
    assert exact.max() + 1 == target
    assert np.array_equal(exact, brute_exact(x, ref[start], target, metric))


def test_finch_equals_finch_clust_package() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from finch import FINCH

    x, _ = blobs(1203, 13, 15, seed=5)
    for metric, ref_metric in (("cosine", "cosine"), ("l2", "euclidean")):
        ours = finch(x, metric)
        c, counts, _ = FINCH(x, distance=ref_metric, verbose=False)
        assert ours.n_clusters == list(counts)
        for level in range(len(counts)):
            assert np.array_equal(canonical(ours.partition(level)), canonical(c[:, level]))
        # the paper's exact-count procedure, for a count no level has
        target = next(t for t in range(counts[0] - 1, 1, -1) if t not in counts)
        _, _, requested = FINCH(x, req_clust=target, distance=ref_metric, verbose=False)
        assert np.array_equal(finch_exact(x, ours, target, metric), canonical(requested))


def test_first_neighbours_exclude_self_and_take_duplicates() -> None:
    x, _ = blobs(57, 5, 3, seed=1)
    x[10] = x[20]
    nn, dist = first_neighbours(x, "l2")
    ref = _brute_distances(x, "l2")
    assert nn[10] == 20 and nn[20] == 10 and dist[10] == 0
    others = np.setdiff1d(np.arange(57), [10, 20])
    assert np.array_equal(nn[others], ref.argmin(1)[others])
    np.testing.assert_allclose(dist[others], ref.min(1)[others], rtol=1e-4, atol=1e-4)


def test_finch_is_deterministic_and_handles_tiny_inputs() -> None:
    x, _ = blobs(97, 4, 5, seed=2)
    a, b = finch(x), finch(x)
    assert np.array_equal(a.levels, b.levels)
    two = finch(x[:2])
    assert two.n_clusters == [1]


def _reference_neighbours(x: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """float64 first neighbours, lowest index among exact ties (argmin's first)."""
    x64 = x.astype(np.float64)
    if metric == "cosine":
        norm = np.linalg.norm(x64, axis=1)
        outer = norm[:, None] * norm[None, :]
        d = np.where(outer == 0, 1.0, 1.0 - (x64 @ x64.T) / np.where(outer == 0, 1.0, outer))
    else:
        d = np.sqrt(((x64[:, None, :] - x64[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return d.argmin(1), d.min(1)


def _awkward(seed: int) -> np.ndarray:
    """Clustered points with the cases a float32 search gets wrong: duplicates (pairs and
    a run of five), zero rows, exact equidistant pairs, integer coordinates with ties."""
    x, _ = blobs(1301, 9, 23, seed=seed)
    x[900:960] = x[:60]  # duplicated pairs
    x[1000:1005] = x[77]  # five copies of one point
    x[1100] = 0.0
    x[1101] = 0.0
    x[1200:1210] = np.random.default_rng(seed).integers(0, 2, (10, 9))  # integer grid
    x[1210] = x[1200] + np.eye(9, dtype=np.float32)[0]  # exactly equidistant neighbours
    x[1211] = x[1200] - np.eye(9, dtype=np.float32)[0]
    return x


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_pruned_search_is_exact_on_awkward_data(metric: str, monkeypatch) -> None:
    """The cell-pruned search (forced on small data) equals float64 brute force exactly,
    ties included, and really prunes."""
    import vcl.cluster as vc

    monkeypatch.setattr(vc, "_MIN_PRUNED", 64)
    used = []
    real = vc._ExactSearch._pruned
    monkeypatch.setattr(
        vc._ExactSearch, "_pruned", lambda self: used.append(real(self)) or used[-1]
    )
    x = _awkward(seed=4)
    nn, dist = first_neighbours(x, metric)
    ref_nn, ref_dist = _reference_neighbours(x, metric)
    assert used == [True]
    assert np.array_equal(nn, ref_nn)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-9, atol=1e-12)
    assert nn[1000] == 77 and nn[77] == 1000 and nn[1004] == 77  # lowest-index duplicate


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_cell_bounds_never_exceed_true_distances(metric: str, monkeypatch) -> None:
    """Soundness of the pruning: every cell's lower bound is at most the float64 distance
    from the query to the nearest point of that cell."""
    import vcl.cluster as vc

    monkeypatch.setattr(vc, "_MIN_PRUNED", 64)
    x = _awkward(seed=6)
    search = vc._ExactSearch(x, metric)
    search._finish_cells()
    k = len(search.cells) - 1
    assert k > 20
    lower = search._lower_bounds(np.arange(len(x)), 0, k)  # (N, k), rows by position
    y = search.pts[:, : x.shape[1]].astype(np.float64)  # the vectors compared, by position
    dist = np.sqrt(np.maximum(((y[:, None, :] - y[None, :, :]) ** 2).sum(-1), 0.0))
    nearest = np.minimum.reduceat(dist, search.cells[:-1], axis=1)  # (N, k)
    assert (lower <= nearest + 1e-12).all()
    assert (lower > 0).mean() > 0.5  # and they do rule cells out


def test_search_without_structure_sweeps_everything(monkeypatch) -> None:
    """Unclustered data: the bounds would keep most pairs, so one sweep runs; still exact."""
    import vcl.cluster as vc

    monkeypatch.setattr(vc, "_MIN_PRUNED", 64)
    used = []
    real = vc._ExactSearch._pruned
    monkeypatch.setattr(
        vc._ExactSearch, "_pruned", lambda self: used.append(real(self)) or used[-1]
    )
    x = np.random.default_rng(8).normal(size=(1031, 24)).astype(np.float32)
    x[500] = x[3]
    for metric in ("cosine", "l2"):
        nn, _ = first_neighbours(x, metric)
        assert np.array_equal(nn, _reference_neighbours(x, metric)[0])
    assert used == [False, False]


def test_pruned_finch_equals_brute_force_and_finch_clust(monkeypatch) -> None:
    """Whole hierarchies through the pruned search, against both references."""
    import vcl.cluster as vc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from finch import FINCH

    monkeypatch.setattr(vc, "_MIN_PRUNED", 64)
    x, _ = blobs(1517, 11, 31, seed=9)
    for metric, ref_metric in (("cosine", "cosine"), ("l2", "euclidean")):
        ours = finch(x, metric)
        ref = brute_finch(x, metric)
        c, counts, _ = FINCH(x, distance=ref_metric, verbose=False)
        assert ours.n_clusters == [int(r.max()) + 1 for r in ref] == list(counts)
        for level, expected in enumerate(ref):
            assert np.array_equal(canonical(ours.partition(level)), expected)
            assert np.array_equal(expected, canonical(c[:, level]))


# ---------------------------------------------------------------- approximate FINCH


def _tight_blobs(n: int, d: int, centres: int, seed: int) -> np.ndarray:
    """Well-separated clusters (centres ~8·√2·√d apart, unit noise) plus planted exact
    duplicates: every first neighbour is unambiguous or an exact tie."""
    x, _ = blobs(n, d, centres, seed, spread=8.0)
    x[n - 5 :] = x[[3, 3, 40, 41, 42]]  # duplicates: their first neighbour is the twin
    return x


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_approximate_finch_equals_exact_on_planted_clusters(metric: str, monkeypatch) -> None:
    """With the threshold lowered to 1000, level 0 (3001 points; clusters about one IVF
    list large) searches through the IVF index, finds every exact first neighbour (ties:
    lowest index) and so gives the exact hierarchy; level 1 (~560 means) is exact."""
    import vcl.cluster as vc

    monkeypatch.setattr(vc, "APPROX_MIN_POINTS", 1000)
    x = _tight_blobs(3001, 16, 150, seed=11)
    nn, dist, info = vc.approximate_first_neighbours(x, metric, seed=3)
    ref_nn, ref_dist = first_neighbours(x, metric)
    assert np.array_equal(nn, ref_nn)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-9, atol=1e-12)
    assert nn[2996] == 3 and nn[3] == 2996 and nn[2997] == 3  # lowest-index twin
    assert info["nlist"] == round(4 * np.sqrt(3001)) and info["estimated_recall"] >= 0.995
    exact = finch(x, metric)
    approx = finch(x, metric, neighbours="approximate", seed=3)
    assert approx.n_clusters == exact.n_clusters
    assert np.array_equal(approx.levels, exact.levels)
    assert [a["level"] for a in approx.approximate] == [0] and exact.approximate == []


def test_approximate_search_in_parts_equals_one_index(monkeypatch) -> None:
    """With the index holding 700 points at a time (5 parts), the search gives what one
    index over all 3001 points gives, and the exact first neighbours."""
    import vcl.cluster as vc

    x = _tight_blobs(3001, 16, 150, seed=11)
    whole = vc.approximate_first_neighbours(x, "cosine", seed=3)
    monkeypatch.setattr(vc, "_IVF_PART", 700)
    parts = vc.approximate_first_neighbours(x, "cosine", seed=3)
    assert np.array_equal(parts[0], whole[0]) and np.array_equal(parts[1], whole[1])
    assert parts[2] == whole[2]
    assert np.array_equal(parts[0], first_neighbours(x, "cosine")[0])


def test_approximate_search_is_deterministic_across_runs_and_threads(monkeypatch) -> None:
    import faiss

    import vcl.cluster as vc

    monkeypatch.setattr(vc, "APPROX_MIN_POINTS", 500)
    x = np.random.default_rng(5).normal(size=(2503, 12)).astype(np.float32)  # no structure
    threads = faiss.omp_get_max_threads()
    try:
        runs = []
        for count in (threads, 1, threads):
            faiss.omp_set_num_threads(count)
            runs.append(vc.approximate_first_neighbours(x, "cosine", seed=7))
            runs.append(finch(x, neighbours="approximate", seed=7))
    finally:
        faiss.omp_set_num_threads(threads)
    for nn, dist, info in runs[0::2]:
        assert np.array_equal(nn, runs[0][0]) and np.array_equal(dist, runs[0][1])
        assert info == runs[0][2]
    for result in runs[1::2]:
        assert np.array_equal(result.levels, runs[1].levels)
        assert result.approximate == runs[1].approximate


def test_approximate_search_raises_nprobe_and_its_recall_estimate_holds(monkeypatch) -> None:
    """Unclustered data: the first nprobe misses many neighbours, so it is raised; the
    sampled recall is close to the true one, and a miss is never nearer than the truth."""
    import vcl.cluster as vc

    x = np.random.default_rng(6).normal(size=(4001, 24)).astype(np.float32)
    nn, dist, info = vc.approximate_first_neighbours(x, "l2", seed=0)
    ref_nn, ref_dist = first_neighbours(x, "l2")
    recall = float((nn == ref_nn).mean())
    assert info["nprobe"] > vc._NPROBES[0]
    assert abs(info["estimated_recall"] - recall) < 0.03 and recall > 0.95
    assert (dist >= ref_dist - 1e-9).all() and (dist[nn != ref_nn] > ref_dist[nn != ref_nn]).all()
    assert (nn != np.arange(len(x))).all()


def test_approximate_mode_falls_back_to_exact_below_the_threshold(monkeypatch) -> None:
    import vcl.cluster as vc

    def refuse(*args, **kwargs):
        raise AssertionError("the approximate search ran on a small set")

    monkeypatch.setattr(vc, "approximate_first_neighbours", refuse)
    x, _ = blobs(1201, 10, 25, seed=12)
    approx = vc.finch(x, neighbours="approximate")
    exact = vc.finch(x)
    assert approx.approximate == [] and np.array_equal(approx.levels, exact.levels)
    with pytest.raises(vc.UsageError):
        vc.finch(x, neighbours="fast")


def test_cli_approximate_flag(invoke, tmp_path, monkeypatch) -> None:
    import vcl.cluster as vc
    from vcl.errors import ExitCode
    from vcl.io.store import Store

    monkeypatch.setattr(vc, "APPROX_MIN_POINTS", 500)
    path = tmp_path / "x.npy"
    np.save(path, _tight_blobs(1003, 8, 20, seed=13))
    out = tmp_path / "c.zarr"
    result = invoke("cluster", path, "-o", out, "--method", "finch", "--approximate", "-q")
    assert result.exit_code == 0, result.stderr
    attrs = Store(out).attrs["clusters"]
    assert attrs["neighbours"] == "approximate"
    assert [a["level"] for a in attrs["approximate_search"]] == [0]
    exact = invoke("cluster", path, "-o", tmp_path / "e.zarr", "--method", "finch", "-q")
    assert exact.exit_code == 0
    assert np.array_equal(Store(out)["levels"][:], Store(tmp_path / "e.zarr")["levels"][:])
    bad = invoke("cluster", path, "-o", tmp_path / "k.zarr", "--k", "3", "--approximate")
    assert bad.exit_code == ExitCode.USAGE and "--approximate" in bad.stderr


# ---------------------------------------------------------------- k-means


def simplex_blobs(n: int, d: int, centres: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Planted clusters 17 apart (centres 12·e_i), unit noise: well separated."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, centres, n)
    return (12 * np.eye(centres, d)[y] + rng.normal(size=(n, d))).astype(np.float32), y


def test_kmeans_recovers_planted_clusters_and_is_deterministic() -> None:
    x, y = simplex_blobs(1499, 9, 6, seed=7)
    result = kmeans(x, 6, runs=2, iters=25, seed=0, init="kmeans++")
    assert result.labels.shape == (2, 1499) and result.centroids.shape == (2, 6, 9)
    for labels in result.labels:
        assert skm.normalized_mutual_info_score(y, labels) >= 0.95
    again = kmeans(x, 6, runs=2, iters=25, seed=0, init="kmeans++")
    assert np.array_equal(result.labels, again.labels)
    # run i uses seed seed + i
    shifted = kmeans(x, 6, runs=1, iters=25, seed=1, init="kmeans++")
    assert np.array_equal(shifted.labels[0], result.labels[1])
    # inertia is the sum of squared distances to the assigned centroid
    c = result.centroids[0][result.labels[0]]
    assert result.inertia[0] == pytest.approx(((x - c) ** 2).sum(), rel=1e-5)
    assert result.sizes.sum(axis=1).tolist() == [1499, 1499]


def test_kmeans_random_init_spherical_and_pca() -> None:
    x, y = blobs(801, 16, 4, seed=11, spread=6.0)
    x += 10  # an offset the PCA must remove
    result = kmeans(x, 4, runs=3, seed=2, pca_dim=5, whiten=True)
    assert result.centroids.shape == (3, 4, 5)
    assert max(skm.normalized_mutual_info_score(y, lab) for lab in result.labels) >= 0.95
    projected = result.pca.transform(x)
    np.testing.assert_allclose(projected.mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(np.cov(projected.T), np.eye(5), atol=1e-2)  # whitened
    sph = kmeans(x - 10, 4, seed=0, spherical=True, init="kmeans++")
    np.testing.assert_allclose(np.linalg.norm(sph.centroids[0], axis=1), 1, atol=1e-5)


def test_kmeans_k_larger_than_points_is_a_data_error() -> None:
    from vcl.errors import DataError

    with pytest.raises(DataError, match="larger than the number of points"):
        kmeans(np.ones((5, 3), np.float32), 6)


def test_track_kmeans_gives_zero_intra_track_entropy() -> None:
    x, _ = blobs(613, 6, 5, seed=4)
    rng = np.random.default_rng(0)
    tracks = np.array([f"t{i}" for i in rng.integers(0, 97, 613)])
    result, reps = track_kmeans(x, tracks, 5, seed=3, runs=2)
    assert reps.shape == (2, len(np.unique(tracks)))
    for labels in result.labels:
        assert cm.mean_group_entropy(tracks, labels) == 0.0
    # one representative per track, seeded, and from its own track
    r1, index = track_representatives(tracks, 3)
    r2, _ = track_representatives(tracks, 3)
    assert np.array_equal(r1, r2) and np.array_equal(r1, reps[0])
    assert np.array_equal(index[r1], np.arange(len(r1)))


# ---------------------------------------------------------------- metrics


def test_metrics_on_a_hand_computed_example() -> None:
    labels = np.array(["a", "a", "a", "b", "b", "b"])
    clusters = np.array([0, 0, 1, 1, 2, 2])
    assert cm.purity(labels, clusters) == pytest.approx(5 / 6)
    # Σ C(nij,2) = 2, Σ C(ai,2) = 6, Σ C(bj,2) = 3, C(6,2) = 15
    expected = (2 - 6 * 3 / 15) / ((6 + 3) / 2 - 6 * 3 / 15)
    assert cm.ari(labels, clusters) == pytest.approx(expected)
    h = -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3))
    assert cm.mean_group_entropy(labels, clusters) == pytest.approx(h)
    assert cm.mean_group_entropy(labels, clusters, base=2) == pytest.approx(h / np.log(2))
    # MI = Σ p_ij log(p_ij / p_i p_j): cells (2/6, a, c0), (1/6, a, c1), (1/6, b, c1), (2/6, b, c2)
    mi = 2 * (2 / 6 * np.log((2 / 6) / (0.5 * 2 / 6)) + 1 / 6 * np.log((1 / 6) / (0.5 * 2 / 6)))
    normaliser = (np.log(2) + np.log(3)) / 2
    assert cm.nmi(labels, clusters) == pytest.approx(mi / normaliser)
    assert cm.gini([1, 1, 4]) == pytest.approx(1 / 3)
    assert cm.gini([5, 5, 5]) == 0.0
    stats = cm.size_stats(np.array([0, 0, 2, 2, 2]), k=4)
    assert stats == {
        "clusters": 4,
        "non_empty": 2,
        "empty": 2,
        "min": 2,
        "max": 3,
        "mean": 1.25,
        "gini": pytest.approx(cm.gini([0, 0, 2, 3])),
    }
    assert cm.change_ratio(np.array([0, 1, 2, 3]), np.array([0, 1, 3, 2])) == 0.5
    # the same partition under other ids counts as changed: no relabelling
    assert cm.change_ratio(np.array([0, 0, 1]), np.array([1, 1, 0])) == 1.0


def test_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(2, 400))
        a = rng.integers(0, int(rng.integers(1, 9)), n)
        b = a.copy() if trial % 2 else rng.integers(0, int(rng.integers(1, 13)), n)
        b[: n // 4] = rng.integers(0, 5, n // 4)
        assert cm.nmi(a, b) == pytest.approx(skm.normalized_mutual_info_score(a, b), abs=1e-10)
        assert cm.ari(a, b) == pytest.approx(skm.adjusted_rand_score(a, b), abs=1e-10)
        assert cm.ami(a, b) == pytest.approx(skm.adjusted_mutual_info_score(a, b), abs=1e-9)
    one = np.zeros(7, int)
    assert cm.nmi(one, one) == skm.normalized_mutual_info_score(one, one) == 1.0


def test_nmi_of_a_relabelled_partition_is_exactly_one() -> None:
    """Rounding used to report 1.0000000000000002 (or 0.9999999999999999) for a perfect
    match, e.g. 170 points in 13 clusters."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        n, k = int(rng.integers(5, 200)), int(rng.integers(2, 20))
        a = rng.integers(0, k, n)
        b = rng.permutation(k)[a]
        assert cm.nmi(a, b) == cm.ami(a, b) == 1.0
        moved = b.copy()
        moved[np.argmax(np.bincount(a)[a])] = k  # a point of the largest cluster, alone
        assert cm.nmi(a, moved) < 1.0 and cm.ami(a, moved) < 1.0


def test_evaluate_joins_by_id_not_by_row() -> None:
    rng = np.random.default_rng(1)
    ids = np.array([f"s{i:03d}" for i in range(150)])
    truth = rng.integers(0, 4, 150)
    clusters = np.where(rng.random(150) < 0.8, truth, rng.integers(0, 4, 150))
    order = rng.permutation(150)
    report = cm.evaluate(ids, clusters, labels=(ids[order], truth[order].astype(str)))
    assert report["nmi"] == pytest.approx(skm.normalized_mutual_info_score(truth, clusters))
    assert report["labelled"] == 150 and report["unlabelled"] == 0


# ---------------------------------------------------- approximate FINCH: memory-lean parts


def _invlist(invlists, lst: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, (size, d) float32 vectors) of one faiss inverted list."""
    import faiss

    size = invlists.list_size(lst)
    if size == 0:
        return np.zeros(0, np.int64), np.zeros((0, d), np.float32)
    ids = faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy()
    codes = faiss.rev_swig_ptr(invlists.get_codes(lst), size * d * 4).copy()
    return ids, codes.view(np.float32).reshape(size, d)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_filled_lists_equal_those_of_faiss_add(metric: str, monkeypatch) -> None:
    """Lists sized first and filled a few lists at a time hold exactly what faiss's own
    add (one point at a time) leaves: same ids, same order, same vector bits; for the
    whole set, and for a part of it after a reset (the search holds one part at a time),
    and the candidates merged over parts are those of one index over all points."""
    import faiss

    import vcl.cluster as vc

    monkeypatch.setattr(vc, "_ROWS", 64)  # many groups, and lists larger than a group
    monkeypatch.setattr(vc, "_QUANTIZER_CHUNK", 300)
    cosine = metric == "cosine"
    x, _ = blobs(2999, 12, 40, seed=21)
    y = vc.l2_normalise(x) if cosine else x
    d, nlist = x.shape[1], 50
    quantizer = faiss.IndexFlatIP(d) if cosine else faiss.IndexFlatL2(d)
    clus = faiss.Clustering(d, nlist)
    clus.seed, clus.niter = 1, 3
    clus.train(y, quantizer)
    kind = faiss.METRIC_INNER_PRODUCT if cosine else faiss.METRIC_L2
    ours = faiss.IndexIVFFlat(quantizer, d, nlist, kind)
    ref = faiss.IndexIVFFlat(quantizer, d, nlist, kind)
    ours.is_trained = ref.is_trained = True
    dq, iq = vc._nearest_lists(quantizer, x, cosine, 4)
    assert np.array_equal(iq, quantizer.search(y, 4)[1])
    lists = np.ascontiguousarray(iq[:, 0])
    q = y[::7]
    rows = slice(0, len(x), 7)
    one = faiss.IndexIVFFlat(quantizer, d, nlist, kind)  # one index over all points
    one.is_trained = True
    ids = np.arange(len(x), dtype=np.int64)
    one.add_core(len(x), faiss.swig_ptr(y), faiss.swig_ptr(ids), faiss.swig_ptr(lists))
    one.nprobe = 4
    whole = vc._ivf_candidates(one, q, dq[rows], iq[rows], cosine)
    merged = (np.full(whole[0].shape, np.inf, np.float32), np.full(whole[1].shape, -1))
    for lo, hi in ((1700, 2999), (0, 1700)):  # parts, the way the search files them
        vc._fill_lists(ours, x, cosine, lists, lo, hi)
        ours.nprobe = 4
        merged = vc._keep_best(merged, vc._ivf_candidates(ours, q, dq[rows], iq[rows], cosine))
    assert np.array_equal(merged[1], whole[1]) and np.array_equal(merged[0], whole[0])
    assert (whole[1] >= 0).all() and (np.diff(whole[0], axis=1) >= 0).all()
    vc._fill_lists(ours, x, cosine, lists, 0, len(x))  # the whole set, after a reset
    ref.add_core(len(x), faiss.swig_ptr(y), faiss.swig_ptr(ids), faiss.swig_ptr(lists))
    assert ours.ntotal == ref.ntotal == len(x)
    sizes = np.bincount(lists, minlength=nlist)
    assert sizes.max() > 64  # a list spans more than one group of rows
    for lst in range(nlist):
        a_ids, a_vec = _invlist(ours.invlists, lst, d)
        b_ids, b_vec = _invlist(ref.invlists, lst, d)
        assert np.array_equal(a_ids, b_ids) and np.array_equal(a_vec, b_vec)
        assert np.array_equal(a_vec, y[a_ids])
    ref.nprobe = ours.nprobe
    assert np.array_equal(ours.search(q, 5)[1], ref.search(q, 5)[1])


def test_mutual_rerank_equals_one_global_pass(monkeypatch) -> None:
    """Blocked mutual re-ranking = one lexsort over all forward and reverse pairs
    (nearest, then lowest index), with −1, self and repeated candidates, exact ties and
    rows that no pair reaches."""
    import vcl.cluster as vc

    monkeypatch.setattr(vc, "_ROWS", 48)  # blocks of 96 rows
    rng = np.random.default_rng(4)
    n = 1003
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[500:520] = x[480:500]  # exact duplicates: distance ties
    cand = rng.integers(-1, n, size=(n, 4))
    cand[::5, 0] = np.arange(0, n, 5)  # self
    cand[::7, 1] = cand[::7, 2]  # a repeated candidate
    cand[900:] = -1  # rows found only through the reverse pairs, or not at all
    cand[cand >= 990] = 0
    for cosine in (True, False):
        q = np.repeat(np.arange(n), 4)
        c = cand.ravel()
        ok = (c >= 0) & (c != q)
        q, c = np.concatenate([q[ok], c[ok]]), np.concatenate([c[ok], q[ok]])
        d = vc._distances(x, q, c, cosine)
        ref_nn = np.full(n, -1)
        ref_d = np.full(n, np.inf)
        for i in range(n):  # plain reference: each row's candidates, nearest then lowest
            mine = q == i
            if mine.any():
                best = min(zip(d[mine], c[mine], strict=True))
                ref_d[i], ref_nn[i] = best
        nn, dist = vc._rerank_mutual(x, cand, cosine)
        assert np.array_equal(nn, ref_nn) and np.array_equal(dist, ref_d)
        assert (nn[990:] == -1).all() and (nn[:900] >= 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cluster_means_equal_the_sparse_block_sums_bit_for_bit(dtype) -> None:
    """cluster_means (in-place row-order sums) equals membership-matrix products over
    16384-row blocks, the summation FINCH's partitions were defined with, to the bit."""
    import scipy.sparse as sp

    from vcl.cluster import cluster_means

    rng = np.random.default_rng(8)
    n, k = 40_001, 6000
    x = (rng.normal(size=(n, 5)) * rng.uniform(1e-6, 1e3, size=(n, 1))).astype(dtype)
    labels = rng.integers(0, k - 10, n).astype(np.int32)  # the last clusters are empty
    member = sp.csc_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n))
    sums = np.zeros((k, 5))
    for s in range(0, n, 16384):
        sums += member[:, s : s + 16384] @ x[s : s + 16384].astype(np.float64)
    ref = sums / np.maximum(np.bincount(labels, minlength=k), 1)[:, None]
    for out in (np.float32, np.float64):
        got = cluster_means(x, labels, k, out)
        assert got.dtype == out and np.array_equal(got, ref.astype(out))
    assert (cluster_means(x, labels, k, np.float64)[k - 10 :] == 0).all()


@pytest.mark.parametrize("cosine", [True, False])
def test_blocked_brute_force_candidates_equal_one_full_sort(cosine: bool, monkeypatch) -> None:
    """The exact sweeps used for the recall sample and for rows the IVF lists miss give
    what one full score matrix gives: best (self excluded) / top two (ties: lowest)."""
    import vcl.cluster as vc

    monkeypatch.setattr(vc, "_TILE", 4096)  # many column blocks
    rng = np.random.default_rng(9)
    x = rng.normal(size=(1501, 8)).astype(np.float32)
    x[700:710] = x[10:20]  # ties across blocks
    y = vc.l2_normalise(x) if cosine else x
    scores = y @ y.T if cosine else 2.0 * (y @ y.T) - np.einsum("ij,ij->i", y, y)[None, :]
    rows = np.array([0, 10, 15, 333, 700, 709, 1500])
    top2 = np.argsort(-scores[rows], axis=1, kind="stable")[:, :2]
    assert np.array_equal(vc._brute_candidates(x, rows, cosine), top2)
    masked = scores[rows].copy()
    masked[np.arange(len(rows)), rows] = -np.inf
    assert np.array_equal(vc._sampled_exact(x, rows, cosine), masked.argmax(axis=1))


def test_approximate_search_keeps_no_normalised_copy_of_the_data() -> None:
    """numpy buffers at their peak during the search (tracemalloc sees numpy, not faiss's
    own index) stay far below the size of the data: no N×D copy, no N×k×D gather."""
    import tracemalloc

    import vcl.cluster as vc

    x, _ = blobs(40_011, 128, 400, seed=10)
    vc.approximate_first_neighbours(x[:3000], "cosine", seed=0)  # warm imports and caches
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        vc.approximate_first_neighbours(x, "cosine", seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * x.nbytes, (peak, x.nbytes)


def test_write_clusters_discards_a_partial_of_other_features(tmp_path) -> None:
    """A killed write left clusters.zarr.partial holding other ids; the rerun must not
    resume it (the old rows would stay under the new centroids)."""
    from vcl.cluster import Clustering, write_clusters
    from vcl.io.store import Store

    def clustering(ids: list[str]) -> Clustering:
        n = len(ids)
        return Clustering(
            ids=np.array(ids),
            assignment=np.arange(n, dtype=np.int32)[:, None] % 2,
            centroids=np.zeros((1, 2, 3), np.float32),
            sizes=np.array([[n - n // 2, n // 2]]),
            attrs={"method": "kmeans"},
        )

    out = tmp_path / "c.zarr"
    params = {"method": "kmeans", "k": 2}
    write_clusters(out, clustering(["old0", "old1", "old2"]), params, 0, overwrite=False)
    out.rename(tmp_path / "c.zarr.partial")  # as if the rename had not happened
    write_clusters(out, clustering(["new0", "new1"]), params, 0, overwrite=False)
    assert Store(out)["id"][:].astype(object).astype(str).tolist() == ["new0", "new1"]
