"""Clustering for representation learning: faiss k-means, FINCH, track-constrained k-means.

Used by ``vcl cluster`` and reused by ``vcl pretrain`` (ODC's small-cluster split, LA's
multiple k-means, SLIC's FINCH), so everything here takes and returns plain arrays.

- :func:`kmeans`: Lloyd's k-means through ``faiss.Clustering`` (k-means++ is not used:
  faiss draws k distinct points as the initial centroids with the run's seed), ``runs``
  independent clusterings with seeds ``seed + i`` (Tokmakov et al. use 3 runs of
  k = 6000), optional PCA / whitening and spherical (cosine) k-means. On the CPU a seed
  gives the same result every time.
- :func:`finch`: FINCH (Sarfraz et al., CVPR 2019): link every point to its first (nearest)
  neighbour, take the connected components of that graph as clusters, replace them by
  their means and repeat, giving a hierarchy of partitions; an exact number of clusters
  comes from the partition just above it by merging the closest pair of cluster means
  one at a time (the paper's Sec. 3.2). Neighbours are exact, found by faiss in chunks,
  so memory is O(N·d) rather than the O(N²) distance matrix of the reference code.
- :func:`track_kmeans`: ODC-TrackInit / ODCT's initialisation: k-means on one seeded
  random representative per track, labels propagated to all of the track's samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vcl.console import log
from vcl.errors import DataError, UsageError
from vcl.io.labels import is_store, read_id_field

METRICS = ("cosine", "l2")
INITS = ("random", "kmeans++")
_SEARCH_CHUNK = 16384  # queries per faiss search call: bounds the extra memory


# ---------------------------------------------------------------------------- device


_GPU_RESOURCES: dict[int, Any] = {}  # one faiss StandardGpuResources per GPU, kept alive


def _flat_index(dim: int, inner_product: bool, gpu: int | None) -> Any:
    """An exact (brute-force) faiss index, on GPU ``gpu`` when given."""
    import faiss

    if gpu is None:
        return faiss.IndexFlatIP(dim) if inner_product else faiss.IndexFlatL2(dim)
    if gpu not in _GPU_RESOURCES:
        _GPU_RESOURCES[gpu] = faiss.StandardGpuResources()
    config = faiss.GpuIndexFlatConfig()
    config.device = int(gpu)
    cls = faiss.GpuIndexFlatIP if inner_product else faiss.GpuIndexFlatL2
    return cls(_GPU_RESOURCES[gpu], dim, config)


# ---------------------------------------------------------------------------- input checks


def finite_rows(x: np.ndarray, path: Any = None) -> np.ndarray:
    """Boolean mask (N,) of rows without NaN/inf; warns with the count of dropped rows."""
    ok = np.isfinite(x).all(axis=1)
    dropped = int((~ok).sum())
    if len(x) == 0:
        raise DataError("holds no rows", path, "nothing to cluster")
    if dropped == len(x):
        raise DataError("every row has NaN or infinite values", path, "nothing to cluster")
    if dropped:
        where = f" of {path}" if path is not None else ""
        log.warning(
            "dropped %d of %d rows%s with NaN or infinite values (cluster -1)",
            dropped,
            len(x),
            where,
        )
    return ok


def check_variance(x: np.ndarray, path: Any = None) -> None:
    """Refuse features where every dimension is constant; warn about constant dimensions."""
    if len(x) < 2:
        return
    spread = x.max(axis=0) - x.min(axis=0)  # (D,): exact zero when a column is constant
    constant = int((spread == 0).sum())
    if constant == x.shape[1]:
        raise DataError(
            f"zero-variance features: all {len(x)} rows are identical",
            path,
            "check the features; there is nothing to cluster",
        )
    if constant:
        log.warning(
            "%d of %d feature dimensions have zero variance (they carry no information)",
            constant,
            x.shape[1],
        )


# ---------------------------------------------------------------------------- PCA


@dataclass
class PCA:
    """x' = (x - mean) @ components.T; rows of ``components`` are scaled by 1/sqrt(λ) when
    whitening. Fitted in float64 from the D×D covariance, so O(N·D²) time, O(D²) memory."""

    mean: np.ndarray  # (D,) float32
    components: np.ndarray  # (D', D) float32
    explained_variance: np.ndarray  # (D',) float64: eigenvalues λ

    @classmethod
    def fit(cls, x: np.ndarray, dim: int | None, whiten: bool) -> PCA:
        n, d = x.shape
        dim = d if dim is None else dim
        if not 1 <= dim <= d:
            raise UsageError(f"--pca {dim} must be between 1 and the feature dimension {d}")
        mean = x.mean(axis=0, dtype=np.float64)
        cov = np.zeros((d, d))
        for start in range(0, n, 65536):  # chunks bound the float64 copy
            block = x[start : start + 65536].astype(np.float64) - mean
            cov += block.T @ block
        cov /= max(n - 1, 1)
        eigval, eigvec = np.linalg.eigh(cov)  # ascending
        order = np.argsort(eigval)[::-1][:dim]
        eigval, eigvec = np.clip(eigval[order], 0.0, None), eigvec[:, order]
        # Fix each eigenvector's sign (largest |coefficient| positive): LAPACK's is arbitrary.
        signs = np.sign(eigvec[np.abs(eigvec).argmax(axis=0), np.arange(dim)])
        eigvec *= np.where(signs == 0, 1.0, signs)
        components = eigvec.T
        if whiten:
            # A small floor keeps directions of (numerically) zero variance from exploding.
            floor = 1e-8 * max(float(eigval.max()), 1e-30)
            components = components / np.sqrt(eigval + floor)[:, None]
        return cls(mean.astype(np.float32), components.astype(np.float32), eigval)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((x - self.mean) @ self.components.T, dtype=np.float32)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms == 0, 1.0, norms), dtype=np.float32)


# ---------------------------------------------------------------------------- k-means


@dataclass
class KMeansResult:
    """``runs`` clusterings of N points into k clusters."""

    labels: np.ndarray  # (runs, N) int32
    centroids: np.ndarray  # (runs, k, D') float32, in the space clustered (after PCA)
    inertia: np.ndarray  # (runs,) float64: sum of squared distances to the centroid
    seeds: list[int] = field(default_factory=list)
    pca: PCA | None = None

    @property
    def sizes(self) -> np.ndarray:
        """(runs, k) int64 cluster sizes."""
        k = self.centroids.shape[1]
        return np.stack([np.bincount(lab, minlength=k) for lab in self.labels])


def kmeans(
    x: np.ndarray,
    k: int,
    runs: int = 1,
    iters: int = 20,
    seed: int = 0,
    spherical: bool = False,
    pca_dim: int | None = None,
    whiten: bool = False,
    gpu: int | None = None,
    max_points_per_centroid: int | None = None,
    init: str | np.ndarray = "random",
) -> KMeansResult:
    """k-means of ``x`` (N×D float32), ``runs`` times with seeds ``seed + i``.

    ``spherical``: rows (after PCA) are L2-normalised and centroids renormalised every
    iteration (cosine k-means, as for L2-normalised deep features). ``pca_dim`` /
    ``whiten`` project first. ``max_points_per_centroid``: faiss trains on a random
    subset of ``k * max_points_per_centroid`` points when set (None: every point).
    ``init``: "random" (faiss: k distinct random points, what ODC / LA / DeepCluster
    use) or "kmeans++" (greedy k-means++ seeding as in scikit-learn, O(k·N·D) extra),
    or a (k, D') array of starting centroids (in the space clustered, used by every run).
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, _ = x.shape
    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}", "--k")
    if k > n:
        raise DataError(
            f"k = {k} is larger than the number of points ({n})", None, "use a smaller --k"
        )
    given = None if isinstance(init, str) else np.ascontiguousarray(init, dtype=np.float32)
    if given is None and init not in INITS:
        raise UsageError(f"unknown init {init!r}", "--init", "use random or kmeans++")
    pca = PCA.fit(x, pca_dim, whiten) if (pca_dim is not None or whiten) else None
    if pca is not None:
        x = pca.transform(x)
    if spherical:
        x = l2_normalise(x)
    d = x.shape[1]
    labels = np.empty((runs, n), np.int32)
    centroids = np.empty((runs, k, d), np.float32)
    inertia = np.empty(runs)
    seeds = [seed + i for i in range(runs)]
    for r, run_seed in enumerate(seeds):
        cp = faiss.ClusteringParameters()
        cp.niter = iters
        cp.seed = int(run_seed) % 2**31
        cp.spherical = spherical
        cp.min_points_per_centroid = 1  # we warn ourselves; faiss would print to stderr
        cp.max_points_per_centroid = max_points_per_centroid or max(1, -(-n // k))
        cp.verbose = False
        clus = faiss.Clustering(d, k, cp)
        if given is not None or init == "kmeans++":  # faiss starts from centroids set
            seeds_init = given if given is not None else kmeans_plusplus(x, k, run_seed)
            if seeds_init.shape != (k, d):
                raise UsageError(f"initial centroids must be {k}×{d}, got {seeds_init.shape}")
            if spherical:
                seeds_init = l2_normalise(seeds_init)
            faiss.copy_array_to_vector(seeds_init.ravel(), clus.centroids)
        index = _flat_index(d, spherical, gpu)
        clus.train(x, index)
        cent = faiss.vector_to_array(clus.centroids).reshape(k, d)
        index.reset()
        index.add(cent)
        assign, _ = _search1(index, x)
        labels[r] = assign
        centroids[r] = cent
        # inertia in squared L2 whatever the index: comparable across methods
        inertia[r] = float(((x - cent[assign]) ** 2).sum(dtype=np.float64))
        log.debug("k-means run %d (seed %d): inertia %.6g", r, run_seed, inertia[r])
    return KMeansResult(labels, centroids, inertia, seeds, pca)


def kmeans_plusplus(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's variant with
    2 + ⌊ln k⌋ candidates per step, keeping the one that lowers the potential most).

    x: (N, D) float32 → (k, D) initial centroids, drawn from the rows. O(k·N·D).
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    trials = 2 + int(np.log(k))
    sq_norms = np.einsum("ij,ij->i", x, x, dtype=np.float64)

    def sqdist(rows: np.ndarray) -> np.ndarray:  # (len(rows), N) squared distances
        c = x[rows].astype(np.float64)
        d = sq_norms[rows][:, None] + sq_norms[None, :] - 2.0 * (c @ x.T.astype(np.float64))
        return np.maximum(d, 0.0)

    chosen = np.empty(k, np.int64)
    chosen[0] = rng.integers(n)
    closest = sqdist(chosen[:1])[0]  # (N,) distance to the nearest chosen centroid
    for i in range(1, k):
        total = closest.sum()
        if total <= 0:  # every point coincides with a centroid: take any unused row
            unused = np.setdiff1d(np.arange(n), chosen[:i])
            chosen[i] = unused[rng.integers(len(unused))]
            continue
        cand = np.searchsorted(np.cumsum(closest), rng.random(trials) * total)
        cand = np.minimum(cand, n - 1)
        new = np.minimum(closest[None, :], sqdist(cand))  # (trials, N)
        best = int(np.argmin(new.sum(axis=1)))
        chosen[i] = cand[best]
        closest = new[best]
    return np.ascontiguousarray(x[chosen], dtype=np.float32)


def _search1(index: Any, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest entry of ``index`` for each query, in chunks: (N,) int32 ids, (N,) scores."""
    n = len(queries)
    ids = np.empty(n, np.int32)
    scores = np.empty(n, np.float32)
    for start in range(0, n, _SEARCH_CHUNK):
        d, i = index.search(queries[start : start + _SEARCH_CHUNK], 1)
        ids[start : start + len(i)] = i[:, 0]
        scores[start : start + len(i)] = d[:, 0]
    return ids, scores


# ---------------------------------------------------------------------------- FINCH


def first_neighbours(
    x: np.ndarray, metric: str = "cosine", gpu: int | None = None, candidates: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Exact first neighbour of every row of ``x`` (N×D), itself excluded.

    Returns (N,) int64 indices and (N,) float64 distances (cosine: 1 − cos; l2: Euclidean).
    faiss (float32) finds ``candidates`` nearest rows, scanning the data block by block so
    memory stays the N×D index plus a fixed block; the candidates are then re-ranked in
    float64 from ``x`` itself, ties going to the lowest index, so the answer does not
    depend on float32 rounding. A point with an exact duplicate gets that duplicate.
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}", "--metric", "use cosine or l2")
    n = len(x)
    if n < 2:
        return np.zeros(n, np.int64), np.zeros(n)
    cosine = metric == "cosine"
    data = l2_normalise(x) if cosine else np.ascontiguousarray(x, dtype=np.float32)
    index = _flat_index(data.shape[1], cosine, gpu)
    index.add(data)
    kk = min(candidates + 1, n)
    nn = np.empty(n, np.int64)
    dist = np.empty(n)
    chunk = 4096
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        _, cand = index.search(data[start:stop], kk)  # (q, kk), self among them
        q = x[start:stop].astype(np.float64)  # (q, D)
        c = x[np.maximum(cand, 0)].astype(np.float64)  # (q, kk, D)
        if cosine:
            qn = np.linalg.norm(q, axis=1)[:, None]
            cn = np.linalg.norm(c, axis=2)
            dots = np.einsum("qd,qkd->qk", q, c)
            d = 1.0 - dots / np.where(qn * cn == 0, 1.0, qn * cn)
            d[(qn * cn == 0)] = 1.0  # a zero vector: as sklearn's cosine distance
        else:
            d = np.sqrt(((c - q[:, None, :]) ** 2).sum(axis=2))
        d[(cand < 0) | (cand == np.arange(start, stop)[:, None])] = np.inf
        best = np.lexsort((cand, d), axis=-1)[:, 0]  # smallest distance, then lowest index
        rows = np.arange(stop - start)
        nn[start:stop] = cand[rows, best]
        dist[start:stop] = d[rows, best]
    return nn, dist


def _components(nn: np.ndarray) -> tuple[int, np.ndarray]:
    """Weakly connected components of the graph i → nn[i]: (count, (n,) int32 labels).

    Labels number components by their lowest member, as scipy does."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = len(nn)
    graph = sp.csr_matrix((np.ones(n, np.int8), (np.arange(n), nn)), shape=(n, n))
    count, labels = connected_components(graph, directed=True, connection="weak")
    return int(count), labels.astype(np.int32)


def cluster_means(
    x: np.ndarray, labels: np.ndarray, k: int | None = None, dtype: Any = np.float32
) -> np.ndarray:
    """(k, D) mean of the rows of ``x`` in each cluster (zero for an empty one), summed in
    float64 and returned as ``dtype``."""
    import scipy.sparse as sp

    k = int(labels.max()) + 1 if k is None else k
    n = len(labels)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    member = sp.csc_matrix((np.ones(n, np.float64), (labels, np.arange(n))), shape=(k, n))
    sums = np.zeros((k, x.shape[1]))  # (k, D) float64 to sum accurately
    for start in range(0, n, 65536):  # chunks: no float64 copy of the whole of x
        stop = min(start + 65536, n)
        sums += member[:, start:stop] @ x[start:stop].astype(np.float64)
    return (sums / np.maximum(counts, 1.0)[:, None]).astype(dtype)


def canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel so clusters are numbered 0.. in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse].astype(np.int32)


@dataclass
class FinchResult:
    """The FINCH hierarchy: ``levels[:, i]`` is partition i (finest first)."""

    levels: np.ndarray  # (N, L) int32
    n_clusters: list[int]  # (L,) clusters per level, decreasing

    def partition(self, level: int) -> np.ndarray:
        return self.levels[:, level]


def finch(x: np.ndarray, metric: str = "cosine", gpu: int | None = None) -> FinchResult:
    """The FINCH hierarchy of ``x`` (N×D), Sarfraz et al. CVPR 2019, Algorithm 1.

    Level 0 links every point to its first neighbour; each later level links every
    cluster mean (the mean of all the cluster's points) to its first neighbour among the
    means. The loop stops at the first level that has one cluster or merges fewer than
    two clusters; that level is not kept (as in the authors' code).

    The authors' code also computes an "early exit" distance threshold but sets the
    pruned edges to explicit zeros of a scipy sparse matrix, which
    ``connected_components`` still counts as edges, so it never changes a partition;
    this implementation leaves it out and gives the same partitions.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if n < 2:
        return FinchResult(np.zeros((n, 1), np.int32), [n])
    nn, _ = first_neighbours(x, metric, gpu)
    count, labels = _components(nn)
    levels, counts = [labels], [count]
    log.debug("FINCH level 0: %d clusters", count)
    while count > 1:
        means = cluster_means(x, labels, count, np.float64)  # (count, D)
        nn, _ = first_neighbours(means, metric, gpu)
        new_count, merge = _components(nn)
        new_labels = merge[labels]
        if new_count == 1 or count - new_count <= 1:
            break
        labels, count = new_labels, new_count
        levels.append(labels)
        counts.append(count)
        log.debug("FINCH level %d: %d clusters", len(levels) - 1, count)
    return FinchResult(np.stack(levels, axis=1), counts)


def finch_exact(
    x: np.ndarray,
    result: FinchResult,
    n_clusters: int,
    metric: str = "cosine",
    gpu: int | None = None,
) -> np.ndarray:
    """A partition with exactly ``n_clusters`` clusters from the FINCH hierarchy.

    The paper's procedure: start from the level with the fewest clusters still ≥
    ``n_clusters`` and merge, one at a time, the two clusters whose means are closest
    (the two ends of the shortest first-neighbour edge), recomputing the merged mean from
    its points. First neighbours are updated incrementally: only clusters that pointed at
    one of the merged pair are searched again, so each merge costs O(K·D).
    Returns (N,) int32 labels numbered by first appearance.
    """
    counts = result.n_clusters
    if n_clusters < 1:
        raise UsageError(f"--n-clusters must be at least 1, got {n_clusters}")
    if n_clusters >= counts[0]:
        if n_clusters > counts[0]:
            log.warning(
                "asked for %d clusters but FINCH's finest partition has %d; returning it",
                n_clusters,
                counts[0],
            )
        return canonical(result.partition(0))
    if n_clusters in counts:
        return canonical(result.partition(counts.index(n_clusters)))
    start = max(i for i, c in enumerate(counts) if c >= n_clusters)
    labels = result.partition(start).astype(np.int64)
    k = counts[start]
    x = np.ascontiguousarray(x, dtype=np.float32)
    sums = cluster_means(x, labels, k, np.float64)
    sizes = np.bincount(labels, minlength=k).astype(np.float64)
    sums *= sizes[:, None]  # running sums: a merged mean is (s_a + s_b) / (n_a + n_b)
    cosine = metric == "cosine"

    def embed(rows: np.ndarray) -> np.ndarray:
        means = sums[rows] / sizes[rows, None]
        if cosine:
            norms = np.linalg.norm(means, axis=1, keepdims=True)
            means = means / np.where(norms == 0, 1.0, norms)
        return means

    alive = np.ones(k, bool)
    points = embed(np.arange(k))  # (k, D) float64: the vectors compared

    def dist_to(rows: np.ndarray) -> np.ndarray:
        """(len(rows), k) distances from ``rows`` to every cluster; dead and self = inf."""
        q = points[rows]
        if cosine:
            dist = 1.0 - q @ points.T
        else:
            sq = (q**2).sum(1)[:, None] + (points**2).sum(1)[None, :] - 2.0 * q @ points.T
            dist = np.sqrt(np.maximum(sq, 0.0))
        dist[:, ~alive] = np.inf
        dist[np.arange(len(rows)), rows] = np.inf
        return dist

    nn, nd = first_neighbours(sums / sizes[:, None], metric, gpu)  # exact, in float64
    parent = np.arange(k)
    for _ in range(k - n_clusters):
        a = int(np.argmin(np.where(alive, nd, np.inf)))
        b = int(nn[a])
        keep, gone = min(a, b), max(a, b)
        sums[keep] += sums[gone]
        sizes[keep] += sizes[gone]
        alive[gone] = False
        nd[gone] = np.inf
        parent[gone] = keep
        points[keep] = embed(np.array([keep]))[0]
        # Clusters that pointed at either end must search again; others may now prefer
        # the merged cluster.
        stale = np.flatnonzero(alive & ((nn == keep) | (nn == gone)))
        stale = np.union1d(stale, [keep])
        others = np.flatnonzero(alive)
        others = others[~np.isin(others, stale)]
        if len(others):
            d_new = dist_to(np.array([keep]))[0, others]
            closer = d_new < nd[others]
            nn[others[closer]] = keep
            nd[others[closer]] = d_new[closer]
        for s in range(0, len(stale), 2048):
            rows = stale[s : s + 2048]
            dist = dist_to(rows)
            nn[rows] = dist.argmin(1)
            nd[rows] = dist[np.arange(len(rows)), nn[rows]]
    # Follow each cluster's merges to its surviving representative.
    while True:
        up = parent[parent]
        if np.array_equal(up, parent):
            break
        parent = up
    return canonical(parent[labels])


# ---------------------------------------------------------------------------- track k-means


def track_representatives(track_ids: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One uniformly random sample per track, seeded.

    Returns (T,) row indices of the representatives and (N,) int64 track index of every
    row (the representative of row i is ``reps[track_index[i]]``).
    """
    _, track_index = np.unique(track_ids, return_inverse=True)
    keys = np.random.default_rng(seed).random(len(track_ids))
    order = np.lexsort((keys, track_index))  # by track, then by random key
    first = np.flatnonzero(np.r_[True, np.diff(track_index[order]) != 0])
    return order[first], track_index.astype(np.int64)


def track_kmeans(
    x: np.ndarray, track_ids: np.ndarray, k: int, seed: int = 0, **kmeans_args: Any
) -> tuple[KMeansResult, np.ndarray]:
    """ODC-TrackInit: k-means on one random sample per track, labels spread to the track.

    Every run draws its own representatives with seed ``seed + i``. Returns the k-means
    result with labels for every row (runs, N) (its inertia is over the representatives)
    and the (runs, T) representative rows.
    """
    runs = int(kmeans_args.pop("runs", 1))
    pca_dim, whiten = kmeans_args.pop("pca_dim", None), kmeans_args.pop("whiten", False)
    tracks = len(np.unique(track_ids))
    if k > tracks:
        raise DataError(
            f"k = {k} is larger than the number of tracks ({tracks})", None, "use a smaller --k"
        )
    # One projection for all runs, fitted on every sample (not just one run's picks).
    pca = PCA.fit(x, pca_dim, whiten) if (pca_dim is not None or whiten) else None
    if pca is not None:
        x = pca.transform(x)
    labels, centroids, inertia, reps_all = [], [], [], []
    seeds = [seed + r for r in range(runs)]
    for run_seed in seeds:
        reps, track_index = track_representatives(track_ids, run_seed)
        res = kmeans(x[reps], k, runs=1, seed=run_seed, **kmeans_args)
        labels.append(res.labels[0][track_index])
        centroids.append(res.centroids[0])
        inertia.append(res.inertia[0])
        reps_all.append(reps)
    result = KMeansResult(
        np.stack(labels).astype(np.int32), np.stack(centroids), np.array(inertia), seeds, pca
    )
    return result, np.stack(reps_all)


# ---------------------------------------------------------------------------- files

SCHEMA = "vcl.clusters/1"


@dataclass
class Clustering:
    """What ``vcl cluster`` writes: assignments for every input id (−1 for dropped rows).

    ``assignment`` column r is run r (k-means, track-k-means) or the chosen partition
    (FINCH, whose whole hierarchy is in ``levels``).
    """

    ids: np.ndarray  # (N,) str
    assignment: np.ndarray  # (N, runs) int32, −1 = row dropped (NaN / inf)
    centroids: np.ndarray  # (runs, k, D') float32
    sizes: np.ndarray  # (runs, k) int64
    attrs: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # extra plain arrays


def cluster_feature_set(
    ids: np.ndarray,
    x: np.ndarray,
    method: str,
    *,
    k: int | None = None,
    runs: int = 1,
    iters: int = 20,
    spherical: bool = False,
    pca_dim: int | None = None,
    whiten: bool = False,
    init: str = "random",
    metric: str = "cosine",
    level: int | None = None,
    n_clusters: int | None = None,
    track_ids: np.ndarray | None = None,
    seed: int = 0,
    gpu: int | None = None,
    path: Any = None,
) -> Clustering:
    """Run one of ``kmeans``, ``finch``, ``track-kmeans`` on a feature set (N×D).

    Rows with NaN/inf are left out (assignment −1, warned with the count); ``path`` names
    the input in messages.
    """
    ok = finite_rows(x, path)
    xs = np.ascontiguousarray(x[ok], dtype=np.float32)
    n = len(ids)
    check_variance(xs, path)
    attrs: dict[str, Any] = {"method": method, "n_rows": n, "dropped_rows": int(n - ok.sum())}
    arrays: dict[str, np.ndarray] = {}
    if method in ("kmeans", "track-kmeans"):
        if k is None:
            raise UsageError(f"--method {method} needs --k")
        common = dict(
            runs=runs,
            iters=iters,
            spherical=spherical,
            pca_dim=pca_dim,
            whiten=whiten,
            gpu=gpu,
            init=init,
        )
        if method == "kmeans":
            if k > len(xs):
                raise DataError(
                    f"k = {k} is larger than the number of points ({len(xs)})",
                    path,
                    "use a smaller --k",
                )
            result = kmeans(xs, k, seed=seed, **common)  # type: ignore[arg-type]
        else:
            if track_ids is None:
                raise DataError(
                    "has no track_id column",
                    path,
                    "give --tracks FILE (JSONL lines with id and track_id)",
                )
            tracks = np.asarray(track_ids)[ok]
            if k > len(np.unique(tracks)):
                raise DataError(
                    f"k = {k} is larger than the number of tracks ({len(np.unique(tracks))})",
                    path,
                    "use a smaller --k",
                )
            result, reps = track_kmeans(xs, tracks, k, seed=seed, **common)  # type: ignore[arg-type]
            rows = np.flatnonzero(ok)
            arrays["representatives"] = rows[reps].astype(np.int64)  # (runs, T) input rows
            attrs["tracks"] = int(reps.shape[1])
        labels = result.labels
        centroids, sizes = result.centroids, result.sizes
        attrs |= {
            "k": k,
            "runs": runs,
            "init": init,
            "seeds": result.seeds,
            "inertia": result.inertia.tolist(),
        }
        attrs["centroid_space"] = "pca" if result.pca is not None else "input"
        if result.pca is not None:
            arrays["pca_mean"] = result.pca.mean
            arrays["pca_components"] = result.pca.components
        if spherical:
            attrs["centroid_space"] += "+l2-normalised"
    elif method == "finch":
        hierarchy = finch(xs, metric, gpu)
        counts = hierarchy.n_clusters
        if level is not None and n_clusters is not None:
            raise UsageError("give --level or --n-clusters, not both")
        if n_clusters is not None:
            chosen = finch_exact(xs, hierarchy, n_clusters, metric, gpu)
        else:
            level = len(counts) - 1 if level is None else level
            if not 0 <= level < len(counts):
                raise UsageError(
                    f"--level {level} does not exist: FINCH found {len(counts)} levels "
                    f"({', '.join(map(str, counts))} clusters)",
                    "--level",
                )
            chosen = canonical(hierarchy.partition(level))
        labels = chosen[None, :]
        kk = int(chosen.max()) + 1
        centroids = cluster_means(xs, chosen, kk)[None]
        sizes = np.bincount(chosen, minlength=kk)[None].astype(np.int64)
        levels = np.full((n, len(counts)), -1, np.int32)
        levels[ok] = np.stack([canonical(c) for c in hierarchy.levels.T], axis=1)
        arrays["levels"] = levels
        arrays["level_clusters"] = np.asarray(counts, np.int64)
        attrs |= {
            "metric": metric,
            "level": level,
            "n_clusters": n_clusters,
            "level_counts": counts,
            "k": kk,
            "runs": 1,
            "centroid_space": "input",
        }
    else:
        raise UsageError(
            f"unknown method {method!r}", "--method", "use kmeans, finch or track-kmeans"
        )
    assignment = np.full((n, labels.shape[0]), -1, np.int32)
    assignment[ok] = labels.T
    return Clustering(np.asarray(ids).astype(str), assignment, centroids, sizes, attrs, arrays)


def write_clusters(
    path: Any, clustering: Clustering, params: dict[str, Any], seed: int, overwrite: bool
) -> None:
    """Write a ``vcl.clusters/1`` store (atomic: ``.partial`` then rename).

    Columns ``id`` (str) and ``assignment`` (int32 × runs) in one group ``all``; plain
    arrays ``centroids`` (runs × k × D' float32), ``sizes`` (runs × k int64) and the
    method's extras (``levels``, ``level_clusters``, ``pca_mean``, ``pca_components``,
    ``representatives``); attrs ``clusters`` hold the summary.
    """
    from vcl.io.store import StoreWriter

    runs = clustering.assignment.shape[1]
    with StoreWriter(path, SCHEMA, params, seed, overwrite=overwrite) as writer:
        writer.define_columns({"id": (str, ()), "assignment": ("int32", (runs,))})
        if "all" not in writer.done_groups:
            writer.append_group("all", id=clustering.ids, assignment=clustering.assignment)
        writer.write_array("centroids", clustering.centroids.astype(np.float32))
        writer.write_array("sizes", clustering.sizes.astype(np.int64))
        for name, values in clustering.arrays.items():
            writer.write_array(name, values)
        writer.set_attrs(clusters=clustering.attrs)


def write_clusters_jsonl(path: Any, clustering: Clustering, overwrite: bool) -> int:
    """``{"id", "cluster"}`` lines (run 0; ``"clusters"`` lists every run when runs > 1);
    ``-`` is stdout. A file is written beside and renamed, so it appears complete or not."""
    import json
    import os
    import sys
    from pathlib import Path

    from vcl.errors import OutputError

    runs = clustering.assignment.shape[1]
    first = clustering.assignment[:, 0].tolist()
    if runs > 1:
        every = clustering.assignment.tolist()
        lines = (
            json.dumps({"id": i, "cluster": c, "clusters": a})
            for i, c, a in zip(clustering.ids.tolist(), first, every, strict=True)
        )
    else:
        lines = (
            json.dumps({"id": i, "cluster": c})
            for i, c in zip(clustering.ids.tolist(), first, strict=True)
        )
    if str(path) == "-":
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return len(first)
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError("exists already", path, "pass --overwrite to replace it")
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("w", encoding="utf-8") as stream:
            stream.writelines(line + "\n" for line in lines)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OutputError(f"cannot write ({exc.strerror})", path) from None
    return len(first)


def read_assignment(
    path: Any, run: int = 0, level: int | None = None
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(ids, (N,) int64 cluster, declared k or None) from a clusters store or JSONL.

    ``run`` picks an ``assignment`` column; ``level`` a FINCH hierarchy level instead.
    """
    label = str(path)
    if is_store(path):
        from vcl.io.store import Store

        store = Store(path, kind="clusters", version=1)
        ids = store["id"][:].astype(object).astype(str)
        if level is not None:
            if "levels" not in store:
                raise UsageError("--level needs a FINCH clusters store", label)
            levels = store["levels"][:]
            if not 0 <= level < levels.shape[1]:
                raise UsageError(f"--level {level}: the store has {levels.shape[1]} levels", label)
            values = levels[:, level].astype(np.int64)
            return ids, values, int(store["level_clusters"][:][level])
        assignment = store["assignment"][:]
        if not 0 <= run < assignment.shape[1]:
            raise UsageError(f"--run {run}: the store has {assignment.shape[1]} runs", label)
        sizes = store["sizes"][:] if "sizes" in store else None
        k = int(sizes.shape[1]) if sizes is not None else None
        return ids, assignment[:, run].astype(np.int64), k
    if run or level is not None:
        raise UsageError("--run and --level need a clusters store, not JSONL", label)
    ids, values = read_id_field(path, "cluster")
    try:
        clusters = np.array([int(v) if v != "" else -1 for v in values.tolist()], np.int64)
    except ValueError:
        raise DataError("'cluster' must be an integer on every line", label) from None
    return ids, clusters, None
