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
  one at a time (the paper's Sec. 3.2). Neighbours are exact (float32 BLAS blocks pruned
  by k-means cells and the triangle inequality, near-ties settled in float64), so memory
  is O(N·d) rather than the O(N²) distance matrix of the reference code; opt-in,
  ``neighbours="approximate"`` searches levels of ≥ 20k points through a seeded faiss IVF
  index (:func:`approximate_first_neighbours`), as the reference code does past 20k.
- :func:`track_kmeans`: ODC-TrackInit / ODCT's initialisation: k-means on one seeded
  random representative per track, labels propagated to all of the track's samples.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vcl.console import log
from vcl.errors import DataError, UsageError

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
    x_t = x.T.astype(np.float64)  # (D, N) once: converting it at every step cost k copies

    def sqdist(rows: np.ndarray) -> np.ndarray:  # (len(rows), N) squared distances
        d = sq_norms[rows][:, None] + sq_norms[None, :] - 2.0 * (x_t[:, rows].T @ x_t)
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

_TILE = 1 << 20  # float32 scores per block of the exact search (4 MB): bounds its memory
_U32 = 2.0**-24  # float32 unit roundoff
_MIN_PRUNED = 4096  # below this many points one brute-force sweep is as fast as pruning
_CELL_SIZE = 32  # mean points per cell of the pruned search (before wide cells split)
_NEAR_CELLS = 3  # other cells every query meets first, to get a tight bound early
_MAX_WORK = 0.25  # share of all N² pairs above which pruning gives way to one sweep
_BOUND_CELLS = 32  # cells whose bounds are computed together: an (N, 32) block
# Rows per block of row-by-row work (normalising, differences, float64 distances): the
# results do not depend on it, the transient memory does (2048 × 128 float32: 1 MB).
_ROWS = 2048


def _one_blas_thread() -> Any:
    """A context keeping BLAS on one thread: the pruned search makes thousands of small
    products, and waking a second BLAS thread for each costs more than it saves (much
    more on a loaded machine). A no-op without threadpoolctl."""
    import contextlib

    controller = _blas_controller()
    if controller is None:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    _default_blas_threads()  # note the usual count before limiting it
    return controller.limit(limits=1, user_api="blas")


def _all_blas_threads() -> Any:
    """Inside :func:`_one_blas_thread`, give BLAS its usual threads back for a while."""
    import contextlib

    controller = _blas_controller()
    if controller is None:  # pragma: no cover
        return contextlib.nullcontext()
    return controller.limit(limits=_default_blas_threads(), user_api="blas")


@functools.cache
def _default_blas_threads() -> int:
    """BLAS's thread count as loaded (first asked outside any limit)."""
    controller = _blas_controller()
    found = [lib["num_threads"] for lib in controller.info() if lib["user_api"] == "blas"]
    return max(found, default=1)


@functools.cache
def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS (made once, after numpy loaded it)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover
        return None
    return ThreadpoolController()


class _Top2:
    """Running best and second-best score of each query row (higher score: nearer)."""

    def __init__(self, n: int) -> None:
        self.best = np.full(n, -np.inf, np.float32)
        self.second = np.full(n, -np.inf, np.float32)
        self.arg = np.full(n, -1, np.int64)

    def update(self, rows: np.ndarray, v1: np.ndarray, i1: np.ndarray, v2: np.ndarray) -> None:
        """Merge a block's top two (v1 at column i1, v2) into the rows' running top two."""
        m = self.best[rows]
        self.second[rows] = np.maximum(np.maximum(self.second[rows], v2), np.minimum(m, v1))
        better = v1 > m
        self.best[rows] = np.where(better, v1, m)
        self.arg[rows] = np.where(better, i1, self.arg[rows])


class _ExactSearch:
    """Exact first neighbours: float32 BLAS blocks pruned by cells, near-ties in float64.

    The points (cosine: L2-normalised, so that Euclidean order is cosine order) are split
    into cells of ~32 by two-level seeded Lloyd k-means (~√(N/32) coarse groups, then
    cells inside each), and cells much wider than the median are halved; each
    cell keeps its mean μ_c and radius r_c. A cell's points meet their own cell and the 3
    cells with the nearest means first, then only the cells whose triangle-inequality
    bound ‖y − μ_c‖ − r_c does not exceed their best distance so far. The answer is exact
    whatever the cells (they set the speed only); where the bounds would keep over a
    quarter of all pairs (data without cluster structure) one brute-force sweep runs
    instead, with BLAS's usual threads (the pruned sweep keeps BLAS on one thread).

    Scores are float32 (cosine: q·y; l2: 2 q·y − ‖y‖² = ‖q‖² − d², one matmul). A row whose
    best and second-best scores are closer than twice the float32 error bound
    (4 (D + 4) u times the scale) is settled in float64 among all candidates within that
    bound: nearest, then lowest index. Any other row's float32 winner is the float64 one.

    Memory: the N×D float32 points (N×(D+1) for l2), 4 MB score blocks, (N, 32) bounds.
    """

    def __init__(self, x: np.ndarray, metric: str) -> None:
        self.x = x  # (N, D) the caller's array: float64 distances are taken from it
        self.cosine = metric == "cosine"
        n, d = x.shape
        self.n, self.d = n, d
        self.order = np.arange(n)  # search position -> row of x
        self.cells = np.array([0, n])  # cell c holds positions cells[c]:cells[c + 1]
        if n >= _MIN_PRUNED:
            with _one_blas_thread():
                self.pts = self._make_cells()
            _release_freed_memory()  # the k-means' and splits' scratch buffers
        else:
            self.pts = self._prepare(self.order)  # (N, D) float32, search order
        self.sq = np.einsum("ij,ij->i", self.pts, self.pts)  # (N,) float32 ‖y‖²
        if not self.cosine:  # augmented rows [y, ‖y‖²]: one matmul gives 2 q·y − ‖y‖²
            self.pts = np.concatenate([self.pts, self.sq[:, None]], axis=1)
        # Score tolerance per row: twice the worst float32 error of a score difference.
        norms = np.sqrt(self.sq)
        scale = np.ones(n) if self.cosine else (norms + norms.max()) ** 2
        self.eps = (4.0 * (d + 4) * _U32 * scale).astype(np.float32)
        self.eps_d2 = self.eps * (2.0 if self.cosine else 1.0)  # in squared distance
        self.top = _Top2(n)

    # -- points and cells

    def _prepare(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), D) float32 search vectors of rows of x, built in chunks."""
        out = np.empty((len(rows), self.d), np.float32)
        for s in range(0, len(rows), _ROWS):
            block = np.asarray(self.x[rows[s : s + _ROWS]], dtype=np.float32)
            out[s : s + len(block)] = l2_normalise(block) if self.cosine else block
        return out

    @staticmethod
    def _nearest(y: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """(len(y),) index of each row's nearest centre (Euclidean), in blocks."""
        lin, bias = 2.0 * centres.T, -np.einsum("ij,ij->i", centres, centres)
        step = max(1, _TILE // len(centres))
        out = np.empty(len(y), np.int64)
        for s in range(0, len(y), step):
            out[s : s + step] = (y[s : s + step] @ lin + bias).argmax(1)
        return out

    @classmethod
    def _lloyd(cls, y: np.ndarray, k: int, rng: np.random.Generator, iters: int) -> np.ndarray:
        """(k, D) centres from a few Lloyd iterations on up to 16k rows of y."""
        sample = y[np.sort(rng.choice(len(y), min(len(y), 16 * k), replace=False))]
        centres = sample[rng.choice(len(sample), k, replace=False)].copy()
        for _ in range(iters):
            lab = cls._nearest(sample, centres)
            full = np.bincount(lab, minlength=k) > 0
            centres[full] = cluster_means(sample, lab, k)[full]
        return centres

    def _make_cells(self) -> np.ndarray:
        """Two-level k-means cells; sets order and cells, returns the sorted points."""
        n = self.n
        rng = np.random.default_rng(0)
        groups = int(np.clip(np.sqrt(n / _CELL_SIZE), 2, 512))
        sample = self._prepare(np.sort(rng.choice(n, min(n, 32 * groups), replace=False)))
        coarse = self._lloyd(sample, groups, rng, iters=4)
        glabel = np.concatenate(
            [
                self._nearest(self._prepare(np.arange(s, min(s + 16384, n))), coarse)
                for s in range(0, n, 16384)
            ]
        )
        self.order = np.argsort(glabel, kind="stable")
        pts = self._prepare(self.order)
        bounds = np.r_[0, np.cumsum(np.bincount(glabel, minlength=groups))]
        sizes = []
        for g in range(groups):
            lo, hi = bounds[g], bounds[g + 1]
            k = (hi - lo) // _CELL_SIZE
            if k < 2:
                sizes.append(hi - lo)
                continue
            y = pts[lo:hi]
            lab = self._nearest(y, self._lloyd(y, k, rng, iters=3))
            perm = np.argsort(lab, kind="stable")
            pts[lo:hi] = y[perm]
            self.order[lo:hi] = self.order[lo:hi][perm]
            sizes.extend(np.bincount(lab, minlength=k).tolist())
        sizes_arr = np.array([s for s in sizes if s > 0])
        limit = None
        for _ in range(6):  # split cells far wider than most: they straddle clusters
            sizes_arr, limit = self._split_wide(pts, sizes_arr, limit)
        self.cells = np.r_[0, np.cumsum(sizes_arr)]
        return pts

    def _split_wide(
        self, pts: np.ndarray, sizes: np.ndarray, limit: float | None
    ) -> tuple[np.ndarray, float]:
        """Split in two (a cut across the main axis, then 2-means) every cell whose radius
        exceeds ``limit`` (first call: 1.5 × the median radius); reorders pts and order in
        place. Returns the new sizes and the limit."""
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        means = np.add.reduceat(pts, starts, axis=0) / sizes[:, None]
        cell = np.repeat(np.arange(len(sizes)), sizes)
        dist2 = np.empty(len(pts), np.float32)
        for s in range(0, len(pts), _ROWS):  # chunks: no second N×D array
            diff = pts[s : s + _ROWS] - means[cell[s : s + _ROWS]]
            dist2[s : s + len(diff)] = np.einsum("ij,ij->i", diff, diff)
        radii = np.sqrt(np.maximum.reduceat(dist2, starts))
        limit = 1.5 * float(np.median(radii)) if limit is None else limit
        wide = np.flatnonzero((radii > limit) & (sizes >= 2))
        if not len(wide):
            return sizes, limit
        parts = [[int(v)] for v in sizes]
        rng = np.random.default_rng(len(sizes))
        for c in wide:
            lo, hi = starts[c], starts[c] + sizes[c]
            y = pts[lo:hi]
            centred = y - means[c]
            v = rng.standard_normal(self.d).astype(np.float32)
            for _ in range(4):  # power iteration: the cell's main axis of spread
                v = centred.T @ (centred @ v)
                v /= max(float(np.linalg.norm(v)), 1e-30)
            side = centred @ v > 0
            for _ in range(2):  # then 2-means from that cut
                if side.all() or not side.any():
                    break
                a, b = y[~side].mean(axis=0), y[side].mean(axis=0)
                side = np.einsum("ij,ij->i", y - b, y - b) < np.einsum("ij,ij->i", y - a, y - a)
            if side.all() or not side.any():
                continue
            perm = np.argsort(side, kind="stable")
            pts[lo:hi] = y[perm]
            self.order[lo:hi] = self.order[lo:hi][perm]
            parts[c] = [int((~side).sum()), int(side.sum())]
        return np.array([v for p in parts for v in p]), limit

    def _finish_cells(self) -> None:
        """Cell means μ and radii r (float64 sums, float32 results)."""
        n, d = self.n, self.d
        sizes = np.diff(self.cells)
        k = len(sizes)
        self.cell_of = np.repeat(np.arange(k), sizes)  # (N,) cell of each position
        y = self.pts[:, :d]
        self.centres = cluster_means(y, self.cell_of, k)
        self.centre_sq = np.einsum("ij,ij->i", self.centres, self.centres)
        rho = np.empty(n)  # each point's distance to its cell's mean
        for s in range(0, n, _ROWS):
            diff = y[s : s + _ROWS].astype(np.float64) - self.centres[self.cell_of[s : s + _ROWS]]
            rho[s : s + len(diff)] = np.einsum("ij,ij->i", diff, diff)
        radii = np.sqrt(np.maximum.reduceat(rho, self.cells[:-1]))  # cells are contiguous
        self.radii = (radii * (1 + 1e-6)).astype(np.float32)
        # float32 error of a squared distance between a point or centre and a centre
        scale = max(float(self.sq.max()), float(self.centre_sq.max()))
        self.bound_err = np.float32(16.0 * (d + 4) * _U32 * scale)

    def _centre_distance(self, a: np.ndarray) -> np.ndarray:
        """(len(a), C) lower bounds of the distances from the centres of cells a to all."""
        mu = self.centres
        d2 = self.centre_sq[a, None] + self.centre_sq[None, :] - 2.0 * (mu[a] @ mu.T)
        return np.sqrt(np.maximum(d2 - self.bound_err, 0.0))

    def _positions(self, cells: np.ndarray) -> np.ndarray:
        """The positions of the points of ``cells``, concatenated."""
        starts = self.cells[cells]
        lens = self.cells[cells + 1] - starts
        return np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(lens.sum())

    def _threshold(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows),) float32 distance beyond which no point can score within
        tolerance of the row's best so far."""
        best = self.top.best[rows]
        d2 = 2.0 - 2.0 * best if self.cosine else self.sq[rows] - best
        return np.sqrt(np.maximum(d2, 0.0) + 3.0 * self.eps_d2[rows])

    def _candidates(self, rows: np.ndarray, c0: int, c1: int) -> np.ndarray:
        """(len(rows), c1 − c0) bool: whether cells c0:c1 may hold a point within
        tolerance of each row's best. ``rows`` ascending."""
        return self._lower_bounds(rows, c0, c1) <= self._threshold(rows)[:, None]

    def _lower_bounds(self, rows: np.ndarray, c0: int, c1: int) -> np.ndarray:
        """(len(rows), c1 − c0) float32 lower bounds ‖y − μ_c‖ − r_c on the distance from
        each row to any point of cells c0:c1 (float32 error subtracted first)."""
        w = -2.0 * self.centres[c0:c1].T  # (D, c)
        if not self.cosine:  # [y, ‖y‖²] @ [−2μ; 1] = ‖y‖² − 2 y·μ
            w = np.vstack([w, np.ones((1, c1 - c0), np.float32)])
        d2 = (self.pts if len(rows) == self.n else self.pts[rows]) @ w  # (r, c)
        if self.cosine:
            d2 += self.sq[rows][:, None]
        d2 += self.centre_sq[c0:c1] - self.bound_err
        np.maximum(d2, 0.0, out=d2)
        return np.sqrt(d2, out=d2) - self.radii[c0:c1]

    # -- sweeps

    def _queries(self, rows: np.ndarray) -> np.ndarray:
        q = self.pts[rows]
        if not self.cosine:
            q[:, : self.d] *= 2.0
            q[:, self.d] = -1.0
        return q

    def _scan(self, rows: np.ndarray, cols: np.ndarray | slice, pairs: list | None = None) -> None:
        """Compare query positions ``rows`` with positions ``cols`` (a slice may hold the
        rows themselves, which are skipped): update the running top two or, with
        ``pairs``, collect every pair scoring within tolerance of the row's best."""
        if isinstance(cols, slice):
            lo, hi = cols.start, cols.stop
            base = None
        else:
            lo, hi = 0, len(cols)
            base = self.pts[cols]
        cc = min(hi - lo, 4096)
        rr = max(1, min(8192, _TILE // cc))  # ≤ 8192 queries gathered at a time (4 MB)
        for c0 in range(lo, hi, cc):
            c1 = min(c0 + cc, hi)
            block = self.pts[c0:c1] if base is None else base[c0:c1]
            for r0 in range(0, len(rows), rr):
                rws = rows[r0 : r0 + rr]
                s = self._queries(rws) @ block.T  # (r, c) scores
                if base is None:
                    own = np.flatnonzero((rws >= c0) & (rws < c1))
                    s[own, rws[own] - c0] = -np.inf
                    where = np.arange(c0, c1)
                else:
                    where = cols[c0:c1]
                if pairs is not None:
                    ri, ci = np.nonzero(s >= (self.top.best[rws] - self.eps[rws])[:, None])
                    pairs.append((rws[ri], where[ci]))
                    continue
                at = np.arange(len(rws))
                i1 = s.argmax(1)
                v1 = s[at, i1]
                s[at, i1] = -np.inf
                self.top.update(rws, v1, where[i1], s.max(1))

    def _pruned(self) -> bool:
        """The cell-pruned sweep; False (nothing kept) where bounds would not pay."""
        n, k = self.n, len(self.cells) - 1
        cells = np.arange(k)
        near = min(_NEAR_CELLS, k - 1)
        first = np.empty((k, near), np.int64)  # each cell's nearest other cells
        for b in range(0, k, 256):
            dist = self._centre_distance(cells[b : b + 256])
            dist[np.arange(len(dist)), cells[b : b + 256]] = np.inf
            first[b : b + 256] = np.argpartition(dist, near - 1, axis=1)[:, :near]
        for a in range(k):
            rows = np.arange(self.cells[a], self.cells[a + 1])
            self._scan(rows, slice(int(rows[0]), int(rows[-1]) + 1))
            self._scan(rows, self._positions(first[a]))
        sizes = np.diff(self.cells)
        probe = np.sort(np.random.default_rng(0).choice(n, min(n, 256), replace=False))
        kept = sum(
            float(
                (
                    self._candidates(probe, c0, min(c0 + _BOUND_CELLS, k))
                    @ sizes[c0 : c0 + _BOUND_CELLS]
                ).sum()
            )
            for c0 in range(0, k, _BOUND_CELLS)
        )
        if kept > _MAX_WORK * len(probe) * n:
            return False
        everything = np.arange(n)
        met = np.concatenate([cells[:, None], first], axis=1)  # (k, 1 + near) swept already
        for c0 in range(0, k, _BOUND_CELLS):
            c1 = min(c0 + _BOUND_CELLS, k)
            with _all_blas_threads():  # one large product: worth both threads
                cand = self._candidates(everything, c0, c1).T.copy()  # (cells, N)
            for c in range(c0, c1):
                sel = np.flatnonzero(cand[c - c0])
                sel = sel[~(met[self.cell_of[sel]] == c).any(axis=1)]
                if len(sel):
                    self._scan(sel, slice(int(self.cells[c]), int(self.cells[c + 1])))
        return True

    def _settle(self, unsure: np.ndarray, pruned: bool) -> list:
        """Every pair (query, position) scoring within tolerance of an unsure row's best."""
        pairs: list = []
        if not pruned:
            self._scan(unsure, slice(0, self.n), pairs)
            return pairs
        k = len(self.cells) - 1
        for c0 in range(0, k, _BOUND_CELLS):
            c1 = min(c0 + _BOUND_CELLS, k)
            cand = self._candidates(unsure, c0, c1).T.copy()  # (cells, rows)
            for c in range(c0, c1):
                sel = unsure[cand[c - c0]]
                if len(sel):
                    self._scan(sel, slice(int(self.cells[c]), int(self.cells[c + 1])), pairs)
        return pairs

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        """(N,) int64 first neighbours (rows of x) and (N,) float64 distances."""
        n = self.n
        pruned = False
        if len(self.cells) > 2:
            self._finish_cells()
            _release_freed_memory()
            with _one_blas_thread():
                pruned = self._pruned()
            if not pruned:
                log.debug("FINCH search: no cluster structure to prune with; one sweep")
                self.top = _Top2(n)
        if not pruned:
            self._scan(np.arange(n), slice(0, n))
        top = self.top
        zero = self.sq == 0 if self.cosine else np.zeros(n, bool)
        unsure = np.flatnonzero((top.second >= top.best - self.eps) & ~zero)
        result = np.empty(n, np.int64)
        result[self.order] = self.order[top.arg]
        if len(unsure):
            with _one_blas_thread():
                pairs = self._settle(unsure, pruned)
            qi = self.order[np.concatenate([p[0] for p in pairs])]
            cj = self.order[np.concatenate([p[1] for p in pairs])]
            d = _distances(self.x, qi, cj, self.cosine)
            pick = np.lexsort((cj, d, qi))  # by row, then nearest, then lowest index
            first = pick[np.r_[True, qi[pick][1:] != qi[pick][:-1]]]
            result[qi[first]] = cj[first]
        if zero.any():  # a zero vector is at cosine distance 1 from everything
            rows = self.order[zero]
            result[rows] = np.where(rows == 0, 1, 0)
        return result, _distances(self.x, np.arange(n), result, self.cosine)


def _distances(x: np.ndarray, i: np.ndarray, j: np.ndarray, cosine: bool) -> np.ndarray:
    """float64 distances between rows i and j of x (cosine: 1 − cos, 1 for a zero row)."""
    out = np.empty(len(i))
    step = _ROWS // 2  # float64 (1024, D) blocks: little extra memory
    for s in range(0, len(i), step):
        a = np.asarray(x[i[s : s + step]], np.float64)
        b = np.asarray(x[j[s : s + step]], np.float64)
        if cosine:
            norm = np.sqrt(np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", b, b))
            cos = np.einsum("ij,ij->i", a, b) / np.where(norm == 0, 1.0, norm)
            out[s : s + len(a)] = np.where(norm == 0, 1.0, 1.0 - cos)
        else:
            out[s : s + len(a)] = np.sqrt(np.einsum("ij,ij->i", a - b, a - b))
    return out


def first_neighbours(
    x: np.ndarray, metric: str = "cosine", gpu: int | None = None, candidates: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Exact first neighbour of every row of ``x`` (N×D), itself excluded.

    Returns (N,) int64 indices and (N,) float64 distances (cosine: 1 − cos; l2: Euclidean).
    Ties go to the lowest index and the answer does not depend on float32 rounding, so a
    point with an exact duplicate gets that duplicate. On the CPU: :class:`_ExactSearch`
    (memory O(N·D)). On GPU ``gpu``: faiss finds ``candidates`` nearest rows, re-ranked
    in float64 from ``x`` itself.
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}", "--metric", "use cosine or l2")
    n = len(x)
    if n < 2:
        return np.zeros(n, np.int64), np.zeros(n)
    if gpu is None:
        return _ExactSearch(x, metric).run()
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


NEIGHBOURS = ("exact", "approximate")
APPROX_MIN_POINTS = 20_000  # fewer points than this: the approximate mode searches exactly
_IVF_LISTS = 4.0  # IVF lists per √N
_IVF_TRAIN = 8  # k-means training points per list (a seeded sample)
_IVF_ITERS = 5  # k-means iterations of the coarse quantizer
_IVF_CANDIDATES = 4  # neighbours fetched per query (self among them), re-ranked in float64
_NPROBES = (4, 8, 16, 32, 64, 128)  # tried in turn until the sampled recall reaches the target
_RECALL_TARGET = 0.995
_RECALL_SAMPLE = 512  # queries whose exact first neighbour estimates the recall
# Queries per faiss search call of the approximate search: faiss scores them against
# the list centres in blocks of up to 4096 × 1024 float32 (16 MB); smaller calls are
# slower (each wakes faiss's threads), larger ones no faster.
_QUANTIZER_CHUNK = 4096
# Points the IVF index holds at a time: the points are filed and searched in parts of at
# most this many (candidates merged across parts), so the index's copy stays ≤ 32 MB at
# D = 128 whatever N.
_IVF_PART = 1 << 16


def _release_freed_memory() -> None:
    """Hand the C heap's free pages back to the OS (glibc's ``malloc_trim``; a no-op
    elsewhere). Freed buffers in the middle of the heap (faiss's thousands of inverted
    lists, a level's float64 sums) otherwise stay resident, and the next level's buffers
    come partly from fresh pages: the peak memory would add them up."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None


def _search_rows(x: np.ndarray, rows: np.ndarray | slice, cosine: bool) -> np.ndarray:
    """Rows of ``x`` as the approximate search sees them: float32, cosine: L2-normalised.

    Made a block at a time rather than once for all of x: a normalised copy of the whole
    set would add N·D·4 bytes to the peak memory (51 MB at 100k × 128). Normalising is
    row by row, so a block's rows equal those of the whole set's copy bit for bit."""
    block = x[rows]
    return l2_normalise(block) if cosine else np.ascontiguousarray(block, dtype=np.float32)


def _ivf_candidates(
    index: Any, y: np.ndarray, dq: np.ndarray, iq: np.ndarray, cosine: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The _IVF_CANDIDATES best of ``index`` for the queries y (a block), probing the lists
    iq (scores dq): ((q, c) float32 costs, lower is nearer; (q, c) int64 ids, −1 where
    those lists hold too few points, with an infinite cost)."""
    k = min(_IVF_CANDIDATES, index.ntotal)
    cost = np.full((len(y), _IVF_CANDIDATES), np.inf, np.float32)
    ids = np.full((len(y), _IVF_CANDIDATES), -1, np.int64)
    if k:
        score, ids[:, :k] = index.search_preassigned(y, k, iq, dq)
        cost[:, :k] = -score if cosine else score
        cost[ids < 0] = np.inf
    return cost, ids


def _keep_best(
    best: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise, the _IVF_CANDIDATES lowest-cost of two (cost, id) candidate sets (ties:
    lowest id, missing ids last): one part of the points' candidates merged into those
    of the parts before, so that the result is what one index over all parts returns."""
    cost = np.concatenate([best[0], new[0]], axis=1)
    ids = np.concatenate([best[1], new[1]], axis=1)
    order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), cost), axis=1)
    order = order[:, :_IVF_CANDIDATES]
    return np.take_along_axis(cost, order, 1), np.take_along_axis(ids, order, 1)


def _rerank(
    x: np.ndarray, rows: np.ndarray, cand: np.ndarray, cosine: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest candidate of each row in float64 (self and −1 excluded; ties: lowest index).

    Returns (len(rows),) int64 neighbours (−1: no candidate) and float64 distances."""
    q = np.repeat(rows, cand.shape[1])
    c = cand.ravel()
    ok = (c >= 0) & (c != q)
    return _nearest_pairs(x, q[ok], c[ok], rows, cosine)


def _nearest_pairs(
    x: np.ndarray, q: np.ndarray, c: np.ndarray, rows: np.ndarray, cosine: bool
) -> tuple[np.ndarray, np.ndarray]:
    """For each of the sorted ``rows``, its nearest candidate among the pairs (q, c) in
    float64: nearest, then lowest index; (−1, inf) for a row without pairs."""
    d = _distances(x, q, c, cosine)
    pick = np.lexsort((c, d, q))  # by row, then nearest, then lowest index
    first = pick[np.r_[True, q[pick][1:] != q[pick][:-1]]] if len(q) else pick
    where = np.searchsorted(rows, q[first])
    nn = np.full(len(rows), -1, np.int64)
    dist = np.full(len(rows), np.inf)
    nn[where], dist[where] = c[first], d[first]
    return nn, dist


def _rerank_mutual(x: np.ndarray, cand: np.ndarray, cosine: bool) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_rerank` of all N rows where row j is also a candidate of every row i it
    found (i ∈ cand[j]): a neighbour missed in one direction is still caught in the
    other (the IVF search probes lists asymmetrically).

    Done in blocks of 2·_ROWS rows, each with its own candidates and the rows that
    found it (grouped once by a stable sort of the reverse pairs), so the pairs' float64
    distances and the sort keys are never held for all 2·N·k pairs at once. Every row
    meets the same candidates as in one global pass, so the answer is the same."""
    n, k = cand.shape
    src = np.repeat(np.arange(n, dtype=np.int32), k)  # (N·k,) row that found each candidate
    dst = cand.ravel()
    ok = (dst >= 0) & (dst != src)
    src, dst = src[ok], dst[ok].astype(np.int32)
    del ok
    order = np.argsort(dst, kind="stable")
    back_dst, back_src = dst[order], src[order]  # reverse pairs grouped by their row
    del order, src, dst
    step = 2 * _ROWS
    bounds = np.searchsorted(back_dst, np.arange(0, n + step, step))
    nn = np.empty(n, np.int64)
    dist = np.empty(n)
    for b, s in enumerate(range(0, n, step)):
        e = min(s + step, n)
        rows = np.arange(s, e)
        q = np.repeat(rows, k)
        c = cand[s:e].ravel()
        keep = (c >= 0) & (c != q)
        q = np.concatenate([q[keep], back_dst[bounds[b] : bounds[b + 1]]])
        c = np.concatenate([c[keep], back_src[bounds[b] : bounds[b + 1]]])
        nn[s:e], dist[s:e] = _nearest_pairs(x, q, c, rows, cosine)
    return nn, dist


def _sampled_exact(x: np.ndarray, rows: np.ndarray, cosine: bool) -> np.ndarray:
    """(len(rows),) int64 first neighbour of each sampled row by one float32 BLAS sweep
    over the search's rows y of x (cosine: best q·y; l2: best 2 q·y − ‖y‖²), itself
    excluded; y made a block at a time, (S, block) scores of 1 MB."""
    q = _search_rows(x, rows, cosine)
    best = np.full(len(rows), -np.inf, np.float32)
    arg = np.zeros(len(rows), np.int64)
    step = max(1, _TILE // 4 // len(rows))
    with _one_blas_thread():  # small products: a second BLAS thread costs more than it saves
        for s in range(0, len(x), step):
            block = _search_rows(x, slice(s, s + step), cosine)
            scores = q @ block.T  # (S, block)
            if not cosine:
                scores = 2.0 * scores - np.einsum("ij,ij->i", block, block)[None, :]
            inside = (rows >= s) & (rows < s + len(block))
            scores[np.flatnonzero(inside), rows[inside] - s] = -np.inf  # not itself
            top = scores.argmax(axis=1)
            value = scores[np.arange(len(rows)), top]
            better = value > best
            best[better], arg[better] = value[better], s + top[better]
    return arg


def _nearest_lists(
    quantizer: Any, x: np.ndarray, cosine: bool, probes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(N, probes) float32 scores and int64 ids of each row's ``probes`` nearest lists
    (the first is its own), found a chunk of rows at a time."""
    n = len(x)
    dq = np.empty((n, probes), np.float32)
    iq = np.empty((n, probes), np.int64)
    for s in range(0, n, _QUANTIZER_CHUNK):
        y = _search_rows(x, slice(s, s + _QUANTIZER_CHUNK), cosine)
        dq[s : s + len(y)], iq[s : s + len(y)] = quantizer.search(y, probes)
    return dq, iq


def _fill_lists(
    index: Any, x: np.ndarray, cosine: bool, lists: np.ndarray, lo: int, hi: int
) -> None:
    """Empty the IVF ``index`` and file rows lo:hi of x in their lists ``lists[lo:hi]``
    (ids = row numbers, each list in increasing id order, as one ``add`` would leave it).

    The lists are sized exactly before they are filled: adding the points one at a time
    grows each list's buffer by doubling, which at 100k × 128 held 80 MB for 51 MB of
    vectors."""
    import faiss

    index.reset()
    order = lo + np.argsort(lists[lo:hi], kind="stable")  # (hi − lo,) rows by list, then row
    sizes = np.bincount(lists[lo:hi], minlength=index.nlist)
    ends = np.cumsum(sizes)
    invlists = index.invlists
    first = 0  # next list to write
    while first < index.nlist:  # lists of about _ROWS points at a time, each written once
        last = max(first + 1, int(np.searchsorted(ends, ends[first] - sizes[first] + _ROWS)))
        a0, b0 = int(ends[first] - sizes[first]), int(ends[last - 1])
        y = _search_rows(x, order[a0:b0], cosine)  # (b0 − a0, D) rows of lists first:last
        for lst in range(first, last):
            a, b = int(ends[lst] - sizes[lst]) - a0, int(ends[lst]) - a0
            if b > a:
                ids = order[a0 + a : a0 + b]  # int64, increasing
                codes = y[a:b].view(np.uint8)  # (b − a, D·4) bytes
                invlists.resize(lst, b - a)
                invlists.update_entries(lst, 0, b - a, faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        first = last
    index.ntotal = hi - lo


def approximate_first_neighbours(
    x: np.ndarray, metric: str = "cosine", seed: int = 0
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Approximate first neighbour of every row of ``x`` (N×D) through a faiss IVF index.

    What finch-clust does past 20k points (there with NN-descent or HNSW, unseeded), but
    deterministic for ``seed`` whatever the thread count: the points (cosine:
    L2-normalised, inner product; l2: as given) are split into nlist ≈ 4√N lists by faiss
    k-means (seed ``seed``, 5 iterations, on a seeded sample of 8 points per list: a
    coarse quantizer needs no more), each point is filed in its nearest list, each query
    scans its nprobe nearest lists for 4 candidates (itself among them), and every point
    also becomes a candidate of each point it found (the first-neighbour relation is
    often mutual, while the probing is not). Candidates are re-ranked in float64: nearest,
    then lowest index, as the exact search. nprobe is the first of 4, 8, …, 128 whose
    one-way recall on 512 seeded sample queries, against their brute-force first
    neighbours, reaches 0.995 (a warning says when even 128 does not: data with little
    cluster structure). Cost O(N·(√N + nprobe·√N/4)·D) rather than O(N²·D).

    Memory: the index's copy of at most ``_IVF_PART`` (65,536) points at a time (the
    points are filed and searched in parts, each query's best candidates merged across
    them: what one index over all points would return) and O(N) ids and scores beyond
    ``x``; normalised rows, scores and float64 distances exist a block of rows at a time.

    Returns (N,) int64 neighbours, (N,) float64 distances and the search's parameters:
    ``{"points", "nlist", "nprobe", "estimated_recall"}``.
    """
    import faiss

    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}", "--metric", "use cosine or l2")
    cosine = metric == "cosine"
    n, d = x.shape
    if n < 3:  # nothing to approximate
        nn, dist = first_neighbours(x, metric)
        return nn, dist, {"points": n, "nlist": 0, "nprobe": 0, "estimated_recall": 1.0}
    nlist = int(np.clip(round(_IVF_LISTS * np.sqrt(n)), 1, n))
    rng = np.random.default_rng(seed)
    train = _search_rows(
        x, np.sort(rng.choice(n, min(n, _IVF_TRAIN * nlist), replace=False)), cosine
    )
    quantizer = faiss.IndexFlatIP(d) if cosine else faiss.IndexFlatL2(d)
    clus = faiss.Clustering(d, nlist)
    clus.seed = int(seed) % 2**31
    clus.niter = _IVF_ITERS
    clus.spherical = cosine
    clus.min_points_per_centroid = 1  # a small training sample is enough for a quantizer
    clus.max_points_per_centroid = _IVF_TRAIN + 1
    clus.train(train, quantizer)
    del train, clus
    index = faiss.IndexIVFFlat(
        quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT if cosine else faiss.METRIC_L2
    )
    index.is_trained = True
    first = min(_NPROBES[0], nlist)
    dq, iq = _nearest_lists(quantizer, x, cosine, first)
    lists = np.ascontiguousarray(iq[:, 0])
    parts = -(-n // _IVF_PART)  # the index holds one part of the points at a time
    cuts = list(itertools.pairwise(np.linspace(0, n, parts + 1).round().astype(int).tolist()))

    sample = np.sort(rng.choice(n, min(n, _RECALL_SAMPLE), replace=False))
    truth = _distances(x, sample, _sampled_exact(x, sample, cosine), cosine)  # (S,)
    probes = sorted({min(p, nlist) for p in _NPROBES})
    queries = _search_rows(x, sample, cosine)
    s_dq, s_iq = quantizer.search(queries, probes[-1])
    none = (
        np.full((len(sample), _IVF_CANDIDATES), np.inf, np.float32),
        np.full((len(sample), _IVF_CANDIDATES), -1, np.int64),
    )
    sampled = dict.fromkeys(probes, none)  # nprobe → the sample's candidates
    for lo, hi in cuts:
        _fill_lists(index, x, cosine, lists, lo, hi)
        for p in probes:
            index.nprobe = p
            found = _ivf_candidates(index, queries, s_dq[:, :p], s_iq[:, :p], cosine)
            sampled[p] = _keep_best(sampled[p], found)
    nprobe, recall = probes[-1], 0.0
    for p in probes:
        found, dist = _rerank(x, sample, sampled[p][1], cosine)
        # A hit: as near as the exact neighbour (up to float32 near-ties).
        recall = float(np.mean((found >= 0) & (dist <= truth + 1e-6 * np.maximum(truth, 1.0))))
        if recall >= _RECALL_TARGET:
            nprobe = p
            break
    if recall < _RECALL_TARGET:
        log.warning(
            "approximate first neighbours: estimated recall only %.3f at nprobe %d "
            "(the data have little cluster structure); the exact search is safer",
            recall,
            nprobe,
        )
    del sampled, queries, s_dq, s_iq
    index.nprobe = nprobe
    cost = np.full((n, _IVF_CANDIDATES), np.inf, np.float32)  # (N, 4) candidates, self
    cand = np.full((n, _IVF_CANDIDATES), -1, np.int64)  # among them, over the parts so far
    for part, (lo, hi) in enumerate(reversed(cuts)):  # the last part is filed already
        if part:
            _fill_lists(index, x, cosine, lists, lo, hi)
        for s in range(0, n, _QUANTIZER_CHUNK):
            y = _search_rows(x, slice(s, s + _QUANTIZER_CHUNK), cosine)
            if nprobe == first:  # the nearest lists found when filing them
                bq, bi = dq[s : s + len(y)], iq[s : s + len(y)]
            else:
                bq, bi = quantizer.search(y, nprobe)  # (q, nprobe) the nearest lists
            rows = slice(s, s + len(y))
            merged = _keep_best((cost[rows], cand[rows]), _ivf_candidates(index, y, bq, bi, cosine))
            cost[rows], cand[rows] = merged
    del index, quantizer, y, dq, iq, cost
    _release_freed_memory()  # the index's lists: the next levels reuse little of them
    nn, dist = _rerank_mutual(x, cand, cosine)
    del cand
    lost = np.flatnonzero(nn < 0)
    if len(lost):  # lists too small to hold a neighbour: search those rows exactly
        nn[lost], dist[lost] = _rerank(x, lost, _brute_candidates(x, lost, cosine), cosine)
    info = {"points": n, "nlist": nlist, "nprobe": int(nprobe), "estimated_recall": recall}
    log.debug("FINCH approximate search: %s", info)
    _release_freed_memory()
    return nn, dist, info


def _brute_candidates(x: np.ndarray, rows: np.ndarray, cosine: bool) -> np.ndarray:
    """(len(rows), 2) the two best-scoring rows of the search's rows y of x for each of
    ``rows`` (self included; cosine: q·y, l2: 2 q·y − ‖y‖²; ties: lowest index), swept
    over y in blocks as :func:`_sampled_exact` does."""
    out = np.empty((len(rows), 2), np.int64)
    with _one_blas_thread():  # small products, as in _sampled_exact
        for r in range(0, len(rows), 256):
            q = _search_rows(x, rows[r : r + 256], cosine)
            best = np.full((len(q), 2), -np.inf, np.float32)  # running top two, best first
            arg = np.zeros((len(q), 2), np.int64)
            step = max(2, _TILE // 4 // len(q))
            for s in range(0, len(x), step):
                block = _search_rows(x, slice(s, s + step), cosine)
                scores = q @ block.T  # (q, block)
                if not cosine:
                    scores = 2.0 * scores - np.einsum("ij,ij->i", block, block)[None, :]
                top = np.argsort(-scores, axis=1, kind="stable")[:, :2]  # ties: lowest index
                value = np.take_along_axis(scores, top, axis=1)
                # Merge: earlier blocks (lower indices) win ties, as one stable sort would.
                both_v = np.concatenate([best, value], axis=1)
                both_i = np.concatenate([arg, s + top], axis=1)
                keep = np.argsort(-both_v, axis=1, kind="stable")[:, :2]
                best = np.take_along_axis(both_v, keep, axis=1)
                arg = np.take_along_axis(both_i, keep, axis=1)
            out[r : r + len(q)] = arg
    return out


def _components(nn: np.ndarray) -> tuple[int, np.ndarray]:
    """Weakly connected components of the graph i → nn[i]: (count, (n,) int32 labels).

    Every node has one out-edge, so each component holds exactly one cycle. Pointer
    doubling finds it: after t rounds ``jump`` = f^(2^t) and ``low[j]`` = the lowest node
    among f^0(j) … f^(2^t − 1)(j); once 2^t ≥ n, f^(2^t)(i) lies on i's cycle and ``low``
    there is the cycle's lowest node, one name per component. O(n log n) time, a few
    (n,) arrays of memory. Labels number components by their lowest member (as scipy's
    ``connected_components`` does)."""
    n = len(nn)
    jump = np.asarray(nn, np.int64)
    low = np.arange(n, dtype=np.int64)
    for _ in range(max(1, (n - 1).bit_length())):
        np.minimum(low, low[jump], out=low)
        jump = jump[jump]
    labels = canonical(low[jump])
    return int(labels.max()) + 1 if n else 0, labels


def cluster_means(
    x: np.ndarray, labels: np.ndarray, k: int | None = None, dtype: Any = np.float32
) -> np.ndarray:
    """(k, D) mean of the rows of ``x`` in each cluster (zero for an empty one), summed in
    float64 and returned as ``dtype``.

    Each block of 16384 rows is summed on its own, row by row in order, and the blocks'
    sums added up (what a sparse membership matrix times the block computes); the rows
    are converted to float64 2048 at a time, so beyond the (k, D) result the extra
    memory is one (k, D) block sum."""
    k = int(labels.max()) + 1 if k is None else k
    n = len(labels)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.zeros((k, x.shape[1]))  # (k, D) float64 to sum accurately
    part = np.empty_like(sums)
    for start in range(0, n, 16384):
        stop = min(start + 16384, n)
        part[:] = 0.0
        for s in range(start, stop, 2048):  # in place, in row order: no (block, D) copy
            e = min(s + 2048, stop)
            np.add.at(part, labels[s:e], np.asarray(x[s:e], np.float64))
        sums += part
    del part
    sums /= np.maximum(counts, 1.0)[:, None]
    return sums.astype(dtype, copy=False)


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
    # One entry per level searched approximately: {"level", "points", "nlist", "nprobe",
    # "estimated_recall"} (empty when every search was exact).
    approximate: list[dict[str, Any]] = field(default_factory=list)

    def partition(self, level: int) -> np.ndarray:
        return self.levels[:, level]


def finch(
    x: np.ndarray,
    metric: str = "cosine",
    gpu: int | None = None,
    neighbours: str = "exact",
    seed: int = 0,
) -> FinchResult:
    """The FINCH hierarchy of ``x`` (N×D), Sarfraz et al. CVPR 2019, Algorithm 1.

    Level 0 links every point to its first neighbour; each later level links every
    cluster mean (the mean of all the cluster's points) to its first neighbour among the
    means. The loop stops at the first level that has one cluster or merges fewer than
    two clusters; that level is not kept (as in the authors' code).

    ``neighbours="exact"`` (the default) finds every first neighbour exactly.
    ``"approximate"`` uses :func:`approximate_first_neighbours` (faiss IVF, seeded:
    deterministic for ``seed``) at every level with at least ``APPROX_MIN_POINTS``
    points, as finch-clust does past its ``ann_threshold``; smaller levels, and every
    level on a GPU (whose brute-force search is fast), stay exact.

    The authors' Python code (ssarfraz/FINCH-Clustering, ``ensure_early_exit=True``)
    and MATLAB code also prune each level's edges longer than an "early exit" distance
    threshold, which can split a partition further; that heuristic is not in the
    paper's Algorithm 1 and is left out here. finch-clust 0.2.3 on PyPI stores the
    pruned edges as explicit zeros, which still count, so its partitions equal these.
    """
    if neighbours not in NEIGHBOURS:
        raise UsageError(
            f"unknown neighbour search {neighbours!r}", hint="use exact or approximate"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if n < 2:
        return FinchResult(np.zeros((n, 1), np.int32), [n])
    approximate: list[dict[str, Any]] = []

    def search(points: np.ndarray, level: int) -> np.ndarray:
        """(len(points),) first neighbours for the partition ``level``."""
        if neighbours == "approximate" and gpu is None and len(points) >= APPROX_MIN_POINTS:
            nn, _, info = approximate_first_neighbours(points, metric, seed)
            approximate.append({"level": level, **info})
            return nn
        return first_neighbours(points, metric, gpu)[0]

    count, labels = _components(search(x, 0))
    levels, counts = [labels], [count]
    log.debug("FINCH level 0: %d clusters", count)
    while count > 1:
        _release_freed_memory()
        means = cluster_means(x, labels, count, np.float64)  # (count, D)
        _release_freed_memory()
        new_count, merge = _components(search(means, len(levels)))
        new_labels = merge[labels]
        if new_count == 1 or count - new_count <= 1:
            break
        labels, count = new_labels, new_count
        levels.append(labels)
        counts.append(count)
        log.debug("FINCH level %d: %d clusters", len(levels) - 1, count)
    approximate = [a for a in approximate if a["level"] < len(levels)]
    if neighbours == "approximate" and not approximate:
        log.info(
            "FINCH: no level had %d points or more (or a GPU searched): all neighbours exact",
            APPROX_MIN_POINTS,
        )
    return FinchResult(np.stack(levels, axis=1), counts, approximate)


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
    if n_clusters > counts[0]:  # FINCH only merges: more clusters than its finest level
        raise DataError(  # cannot be had (k-means' k > N is refused the same way)
            f"FINCH's finest partition has {counts[0]} clusters, fewer than --n-clusters "
            f"{n_clusters}",
            None,
            f"ask for {counts[0]} or fewer, or use --method kmeans",
        )
    if n_clusters == counts[0]:
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
    neighbours: str = "exact",
    track_ids: np.ndarray | None = None,
    seed: int = 0,
    gpu: int | None = None,
    path: Any = None,
) -> Clustering:
    """Run one of ``kmeans``, ``finch``, ``track-kmeans`` on a feature set (N×D).

    Rows with NaN/inf are left out (assignment −1, warned with the count); ``path`` names
    the input in messages. ``neighbours`` ("exact" or "approximate") is FINCH's first-
    neighbour search (see :func:`finch`).
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
        hierarchy = finch(xs, metric, gpu, neighbours=neighbours, seed=seed)
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
            "neighbours": neighbours,
            "approximate_search": hierarchy.approximate,
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
    ``representatives``); attrs ``clusters`` hold the summary. A ``.partial`` left by a
    killed write is discarded, not resumed: the clustering is computed whole before it is
    written, and the partial's rows may be of other features (a file rewritten in place).
    """
    import shutil

    from vcl.io.store import StoreWriter, partial_path

    shutil.rmtree(partial_path(path), ignore_errors=True)
    runs = clustering.assignment.shape[1]
    with StoreWriter(path, SCHEMA, params, seed, overwrite=overwrite) as writer:
        writer.define_columns({"id": (str, ()), "assignment": ("int32", (runs,))})
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
        with contextlib.suppress(OSError):  # its folder may be what could not be made
            partial.unlink(missing_ok=True)
        raise OutputError(f"cannot write ({exc.strerror})", path) from None
    return len(first)
