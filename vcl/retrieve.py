"""Nearest-neighbour retrieval over feature sets with faiss, and its R@k evaluation.

An index is two files: the faiss index (``gallery.index``) and its metadata beside
it (``gallery.index.json``, schema ``vcl.index/1``): gallery ids in row order,
dimension, metric, index type and its parameters, the source store, the model its
features were embedded with and the store's provenance, and the size and SHA-256 of
the index file, so that a stale or foreign pair is refused instead of answering with
wrong ids. Paths in the metadata are relative to the index's folder unless absolute
(see ``record_path``), so the pair is read from any working directory.

Metrics (faiss does inner product or squared L2):

- ``cosine``: rows L2-normalised, then inner product; score = cos(q, g), higher is better;
- ``ip``: raw inner product ⟨q, g⟩, higher is better;
- ``l2``: squared Euclidean distance ‖q − g‖², lower is better.

Index types: ``flat`` (exact), ``ivf`` (IVF-Flat: k-means coarse quantiser of
``nlist`` lists, ``nprobe`` visited at search), ``ivfpq`` (IVF + product quantiser of
``m`` sub-vectors × ``nbits`` bits), ``hnsw`` (HNSW graph, ``M`` links, efSearch).
IVF/PQ train on a seeded random sample of the gallery.

Ties (equal scores) are broken by gallery row, smaller row first: each result list
is re-sorted by (score, row), and ties at the k-th place are resolved by fetching
more results (see ``search``), so a flat index reproduces a brute-force ranking
exactly, ids and order.

R@k follows SLIC (Hosseini Khorasgani et al.): a query is a hit at k when any of its
k nearest gallery items shares its class; R@k is the fraction of hits over the
labelled queries.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vcl.console import log
from vcl.errors import DataError, MissingInputError, UsageError, first_ids

INDEX_TYPES = ("flat", "ivf", "ivfpq", "hnsw")
METRICS = ("cosine", "l2", "ip")
META_SCHEMA = "vcl.index/1"


@dataclass(frozen=True)
class IndexParams:
    """How to build an index; ``None`` = chosen from the gallery size (see ``resolved``)."""

    index_type: str = "flat"
    metric: str = "cosine"
    nlist: int | None = None  # IVF lists; default ≈ 4·√N, at most N/39 (faiss's rule)
    nprobe: int = 16  # IVF lists visited per query (stored; a query may override)
    pq_m: int | None = None  # PQ sub-vectors; must divide D; default ≈ D/4, at most 64
    pq_bits: int = 8  # bits per PQ code (lowered when the training sample is small)
    hnsw_m: int = 32  # HNSW links per node
    ef_construction: int = 40  # HNSW build breadth
    ef_search: int = 64  # HNSW search breadth (stored; a query may override)
    train_size: int | None = None  # training sample for IVF/PQ; default 256 per list
    seed: int = 0

    def validate(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise UsageError(
                f"unknown index type {self.index_type!r}", "--index", "use " + "|".join(INDEX_TYPES)
            )
        if self.metric not in METRICS:
            raise UsageError(
                f"unknown metric {self.metric!r}", "--metric", "use " + "|".join(METRICS)
            )

    def resolved(self, n: int, dim: int) -> dict[str, Any]:
        """Concrete build parameters for an N×D gallery."""
        out: dict[str, Any] = {"index_type": self.index_type, "metric": self.metric}
        if self.index_type in ("ivf", "ivfpq"):
            nlist = self.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
            if nlist > n:
                raise UsageError(f"--nlist {nlist} is larger than the gallery ({n} rows)")
            train = min(n, self.train_size or max(256 * nlist, 1000))
            if train < nlist:
                raise UsageError(f"--train-size {train} is smaller than --nlist {nlist}")
            out |= {"nlist": nlist, "nprobe": min(self.nprobe, nlist), "train_size": train}
        if self.index_type == "ivfpq":
            m = self.pq_m or _default_pq_m(dim)
            if dim % m:
                raise UsageError(f"--pq-m {m} does not divide the dimension {dim}")
            # faiss needs at least 2^nbits training points per sub-quantiser
            bits = max(1, min(self.pq_bits, int(math.log2(max(2, out["train_size"] // 39)))))
            if bits < self.pq_bits:
                log.warning(
                    "PQ: %d training rows are too few for %d-bit codes; using %d bits",
                    out["train_size"],
                    self.pq_bits,
                    bits,
                )
            out |= {"pq_m": m, "pq_bits": bits}
        if self.index_type == "hnsw":
            out |= {
                "hnsw_m": self.hnsw_m,
                "ef_construction": self.ef_construction,
                "ef_search": self.ef_search,
            }
        out["seed"] = self.seed
        return out


def _default_pq_m(dim: int) -> int:
    target = max(1, min(64, dim // 4))
    return max(m for m in range(1, target + 1) if dim % m == 0)


def prepare(x: np.ndarray, metric: str) -> np.ndarray:
    """float32, C-contiguous; rows L2-normalised for cosine (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)
    return x


def check_finite(x: np.ndarray, what: str | Path | None) -> None:
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise DataError(
            f"{int(bad.sum())} rows hold NaN or inf (first: row {int(np.flatnonzero(bad)[0])})",
            what,
            "drop or fix those rows before indexing",
        )


_GPU_RESOURCES: dict[int, Any] = {}


def _to_gpu(index: Any, gpu: int, index_type: str) -> Any:
    import faiss

    if index_type == "hnsw":
        log.info("faiss has no GPU HNSW index: building and searching on the CPU")
        return index
    if gpu not in _GPU_RESOURCES:
        _GPU_RESOURCES[gpu] = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(_GPU_RESOURCES[gpu], gpu, index)


def _on_cpu(index: Any) -> Any:
    import faiss

    return faiss.index_gpu_to_cpu(index) if "Gpu" in type(index).__name__ else index


def build_index(x: np.ndarray, config: dict[str, Any], gpu: int | None = None) -> Any:
    """A faiss index over the prepared N×D float32 gallery ``x`` (see ``prepare``)."""
    import faiss

    n, dim = x.shape
    metric = faiss.METRIC_L2 if config["metric"] == "l2" else faiss.METRIC_INNER_PRODUCT
    kind = config["index_type"]
    if kind == "flat":
        index = faiss.IndexFlat(dim, metric)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config["hnsw_m"], metric)
        index.hnsw.efConstruction = config["ef_construction"]
    else:
        quantizer = faiss.IndexFlat(dim, metric)
        if kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, config["nlist"], metric)
        else:
            index = faiss.IndexIVFPQ(
                quantizer, dim, config["nlist"], config["pq_m"], config["pq_bits"], metric
            )
        index.cp.seed = config["seed"]  # k-means of the coarse quantiser
        if kind == "ivfpq":
            index.pq.cp.seed = config["seed"]
    if gpu is not None:
        index = _to_gpu(index, gpu, kind)
    if kind in ("ivf", "ivfpq"):
        rng = np.random.default_rng(config["seed"])
        sample = np.sort(rng.choice(n, size=config["train_size"], replace=False))
        log.info("training %s on %d of %d rows (seed %d)", kind, len(sample), n, config["seed"])
        index.train(x[sample])
    index.add(x)
    return index


def set_search_params(index: Any, config: dict[str, Any], overrides: dict[str, Any]) -> None:
    """nprobe (IVF) or efSearch (HNSW) from the metadata unless overridden."""
    import faiss

    kind = config["index_type"]
    if kind in ("ivf", "ivfpq"):
        nprobe = overrides.get("nprobe") or config.get("nprobe", 16)
        if "Gpu" in type(index).__name__:
            index.nprobe = int(nprobe)
        else:
            faiss.extract_index_ivf(index).nprobe = int(nprobe)
    elif kind == "hnsw":
        ef = overrides.get("ef_search") or config.get("ef_search", 64)
        faiss.downcast_index(index).hnsw.efSearch = int(ef)


def search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, rows)`` (Q×k each) best first, ties by smaller gallery row.

    Scores: similarity for inner-product metrics, squared distance for L2. Rows are
    -1 (score NaN) where the index returned fewer than k results.

    faiss returns *some* of the items tied at the k-th place, not the smallest rows.
    So one more result is fetched than asked: if the k-th score is strictly better
    than the last fetched one, every item tied with the k-th is among those fetched
    and the (score, row) sort is exact; queries where it is not are searched again
    with twice as many results, until that holds or the whole gallery is fetched.
    """
    n = int(index.ntotal)
    k = int(min(k, n))
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if len(q) == 0 or k == 0:
        return np.zeros((len(q), k), np.float32), np.zeros((len(q), k), np.int64)
    higher_better = index.metric_type != 1  # faiss.METRIC_L2 == 1
    cap = min(n, 2048) if "Gpu" in type(index).__name__ else n  # GPU k-select limit
    out_scores = np.empty((len(q), k), np.float32)
    out_rows = np.empty((len(q), k), np.int64)
    todo = np.arange(len(q))
    fetch = min(k + 1, cap)
    while len(todo):
        scores, rows = _tie_sort(*index.search(q[todo], fetch), higher_better)
        last = scores[:, fetch - 1]
        open_tie = (scores[:, k - 1] == last) & (rows[:, fetch - 1] >= 0)
        done = ~open_tie if fetch < cap else np.ones(len(todo), bool)
        out_scores[todo[done]] = scores[done, :k]
        out_rows[todo[done]] = rows[done, :k]
        todo = todo[~done]
        fetch = min(2 * fetch, cap)
    return out_scores, out_rows


def _tie_sort(scores: np.ndarray, rows: np.ndarray, higher_better: bool) -> tuple[Any, Any]:
    """Re-sort each row by (score, gallery row); missing results (-1) last."""
    missing = rows < 0
    key = np.where(missing, np.inf, -scores if higher_better else scores)
    tie = np.where(missing, np.iinfo(np.int64).max, rows)
    order = np.lexsort((tie, key), axis=-1)
    scores = np.take_along_axis(scores, order, 1).astype(np.float32)
    rows = np.take_along_axis(rows, order, 1)
    scores[rows < 0] = np.nan
    return scores, rows


def exact_search(
    gallery: np.ndarray, queries: np.ndarray, k: int, metric: str, gpu: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours of the prepared ``queries`` among the prepared ``gallery`` (see
    ``prepare``): a flat faiss index searched with ``search``, so ties go to the smaller
    gallery row, as ``brute_force`` orders them.

    The reference of ``retrieve eval``'s exact recall. faiss computes the scores in
    blocks (never a Q×N matrix) and several times faster than numpy; they equal
    ``brute_force``'s up to float32 rounding, so equal scores (duplicated rows, exact
    arithmetic) are ordered alike, and only neighbours whose scores differ by a
    rounding error (~1e-7) may come in either order.
    """
    index = build_index(gallery, {"index_type": "flat", "metric": metric}, gpu)
    return search(index, queries, k)


def brute_force(
    gallery: np.ndarray, queries: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours by numpy (the tests' reference): same scores and tie rule as
    ``search``. Builds the Q×N score matrix: ``exact_search`` is the one to use.

    Scores are computed in float64 (products of float32 values are exact) and rounded
    to float32, so identical gallery rows score identically: a float32 BLAS product may
    round a row differently by its position in the matrix (OpenBLAS's blocking), which
    would break ties by arithmetic noise instead of by row."""
    g = prepare(gallery, metric).astype(np.float64)
    q = prepare(queries, metric).astype(np.float64)
    if metric == "l2":
        scores = ((q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2 * q @ g.T).astype(
            np.float32
        )
        key = scores
    else:
        scores = (q @ g.T).astype(np.float32)
        key = -scores
    k = min(k, len(g))
    rows = np.broadcast_to(np.arange(len(g)), key.shape)
    order = np.lexsort((rows, key), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, 1).astype(np.float32), order.astype(np.int64)


# ---------------------------------------------------------------------------
# Index files: the faiss index plus its JSON metadata


def meta_path(index_path: str | Path) -> Path:
    index_path = Path(index_path)
    return index_path.with_name(index_path.name + ".json")


# Paths in the metadata (``source.path``, ``source.ids_file``, ``source.model``) are
# relative to the index's own folder unless absolute, as DESIGN.md has paths inside
# manifests: ``record_*`` writes them so, ``resolve_*`` turns them back into paths usable
# from the working directory. Metadata written before this named them as typed, relative
# to the working directory of the command that wrote it; so a relative path is looked up
# beside the index first and, when nothing is there, as written. ``source.provenance`` is
# the features store's attrs, copied unchanged (its paths are as that store recorded them).


def model_spec_path(spec: str) -> tuple[str, str] | None:
    """``(prefix, path)`` of a model spec naming a file or folder (a run directory, or
    ``weights:ARCH:PATH``): spec == prefix + path; None for ``random:ARCH``."""
    if spec.startswith("random:"):
        return None
    if spec.startswith("weights:"):
        parts = spec.split(":", 2)
        return (f"weights:{parts[1]}:", parts[2]) if len(parts) == 3 and parts[2] else None
    return ("", spec) if spec else None


def record_path(value: str | Path, folder: Path) -> str:
    """``value`` (a path from the working directory) as metadata in ``folder`` records
    it: relative to ``folder`` when below it, else absolute."""
    from vcl.io.manifest import relative_path

    return relative_path(os.path.abspath(value), folder)


def resolve_path(value: str, folder: Path) -> str:
    """A path that metadata in ``folder`` records, as a path from the working directory:
    an absolute one as is; a relative one beside the metadata, unless only the path as
    written (from the working directory: older metadata) exists."""
    if os.path.isabs(value):
        return value
    beside = folder / value
    return value if not beside.exists() and Path(value).exists() else str(beside)


def record_model(spec: str, folder: Path) -> str:
    """A model spec as metadata in ``folder`` records it: its run directory or weights
    file relative to ``folder`` (or absolute); a path that does not exist from the
    working directory (the features were embedded elsewhere) is kept as written."""
    named = model_spec_path(spec)
    if named is None or not Path(named[1]).exists():
        return spec
    return named[0] + record_path(named[1], folder)


def resolve_model(spec: str, folder: Path) -> str:
    """A model spec that metadata in ``folder`` records, usable from the working
    directory (see ``resolve_path``)."""
    named = model_spec_path(spec)
    return spec if named is None else named[0] + resolve_path(named[1], folder)


@dataclass
class Gallery:
    """A loaded index with the ids of its rows and how it was built."""

    index: Any
    ids: np.ndarray  # (N,) str, row i of the index is ids[i]
    meta: dict[str, Any]
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return self.meta["metric"]

    @property
    def dimension(self) -> int:
        return int(self.meta["dimension"])

    @property
    def folder(self) -> Path:
        """The folder of the index and its metadata, which the metadata's paths are
        relative to."""
        return meta_path(self.path).parent

    @property
    def model(self) -> str | None:
        """The model the gallery was embedded with, usable from the working directory:
        ``source.model``, or (metadata written before it) the model the features store
        recorded; None when neither names one (an .npy array, Fisher vectors)."""
        source = self.meta.get("source") or {}
        spec = source.get("model")
        if not isinstance(spec, str):
            spec = ((source.get("provenance") or {}).get("params") or {}).get("model")
        return resolve_model(spec, self.folder) if isinstance(spec, str) and spec else None


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_index(
    path: str | Path,
    index: Any,
    ids: np.ndarray,
    config: dict[str, Any],
    source: dict[str, Any],
    device: str,
) -> dict[str, Any]:
    """Write ``path`` and ``path.json`` atomically (each written beside, then renamed).

    The metadata is written last and names the index file's size and SHA-256, so an
    index replaced without its metadata (or the reverse) is refused on loading.
    """
    import faiss

    from vcl.io.store import provenance

    path = Path(path)
    data = faiss.serialize_index(_on_cpu(index)).tobytes()
    meta = provenance(META_SCHEMA, config, config.get("seed"))
    meta |= {
        "index_file": path.name,
        "index_bytes": len(data),
        "index_sha256": hashlib.sha256(data).hexdigest(),
        "index_type": config["index_type"],
        "metric": config["metric"],
        "dimension": int(index.d),
        "count": len(ids),
        "built_on": device,
        "source": source,
        "ids": [str(i) for i in ids],
    }
    meta_file = meta_path(path)
    if meta_file.exists():
        meta_file.unlink()  # never leave old metadata beside a new index
    _atomic_write_bytes(path, data)
    _atomic_write_bytes(meta_file, (json.dumps(meta) + "\n").encode())
    return meta


def read_index_meta(path: Path) -> tuple[Path, dict[str, Any]]:
    """``(metadata file, metadata)`` of the index ``path``: valid JSON of the index schema
    this vcl reads. The one check of `read_index` and ``vcl info``."""
    from vcl.io.manifest import parse_schema
    from vcl.io.store import check_version

    mpath = meta_path(path)
    if not mpath.exists():
        raise DataError(
            f"index has no metadata file {mpath.name} beside it (ids, metric, dimension)",
            path,
            "rebuild it with vcl retrieve index, which writes both",
        )
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
        kind, major = parse_schema(meta.get("vcl_schema"))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, ValueError) as exc:
        raise DataError(f"not valid index metadata ({exc})", mpath) from None
    if kind != "index":
        raise DataError(f"schema {meta.get('vcl_schema')} is not {META_SCHEMA}", mpath)
    check_version(meta["vcl_schema"], kind, major, parse_schema(META_SCHEMA)[1], mpath)
    return mpath, meta


def check_index_file(path: Path, meta: dict[str, Any], size: int, sha256: str | None) -> None:
    """The index file must be the one its metadata describes: its size and, unless
    ``sha256`` is None (``vcl info --no-verify``), its SHA-256."""
    digest = meta.get("index_sha256")
    if size != meta.get("index_bytes") or (sha256 is not None and sha256 != digest):
        raise DataError(
            f"the index file does not match its metadata {meta_path(path).name} "
            "(replaced or damaged)",
            path,
            "rebuild it with vcl retrieve index",
        )


def read_index(path: str | Path, gpu: int | None = None) -> Gallery:
    """Load an index and its metadata, checking they belong together."""
    import faiss

    path = Path(path)
    if not path.exists():
        raise MissingInputError("no such index file", path)
    if path.is_dir():
        raise DataError("is a folder, not a faiss index", path, "build one with vcl retrieve index")
    _, meta = read_index_meta(path)
    data = path.read_bytes()
    check_index_file(path, meta, len(data), hashlib.sha256(data).hexdigest())
    try:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError as exc:
        raise DataError(f"not a readable faiss index ({str(exc).splitlines()[0]})", path) from None
    ids = np.array(meta["ids"], dtype=str)
    if index.ntotal != len(ids) or index.d != meta["dimension"]:
        raise DataError(
            f"index holds {index.ntotal}×{index.d} but its metadata says "
            f"{len(ids)}×{meta['dimension']}",
            path,
            "rebuild it",
        )
    if gpu is not None:
        index = _to_gpu(index, gpu, meta["index_type"])
    return Gallery(index=index, ids=ids, meta=meta, path=path)


def check_queries(gallery: Gallery, dim: int, metric: str | None, what: str | Path) -> None:
    """Query vectors must match the gallery's dimension (and metric, when asked for)."""
    if dim != gallery.dimension:
        raise DataError(
            f"queries have dimension {dim} but the index {gallery.path.name} holds "
            f"dimension {gallery.dimension}",
            what,
            "embed queries with the model and layer the gallery was built with",
        )
    if metric is not None and metric != gallery.metric:
        raise UsageError(
            f"--metric {metric} differs from the index's metric {gallery.metric}",
            gallery.path,
            f"drop --metric or rebuild the index with --metric {metric}",
        )


def gallery_rows(gallery: Gallery, item_ids: Sequence[str]) -> np.ndarray:
    """(len(item_ids),) int64 index rows of the gallery items ``item_ids``; a DataError
    naming the index and the first id it does not hold."""
    pos = {str(g): i for i, g in enumerate(gallery.ids)}
    missing = [str(i) for i in item_ids if str(i) not in pos]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(
            f"no gallery item {missing[0]!r}{more} (ids look like {first_ids(gallery.ids)})",
            gallery.path,
        )
    return np.array([pos[str(i)] for i in item_ids], dtype=np.int64)


def item_vectors(gallery: Gallery, rows: np.ndarray) -> np.ndarray:
    """(len(rows), D) float32 query vectors of gallery rows, read back from the index.

    They are in the space the index searches (L2-normalised for cosine: ``prepare`` ran
    before the rows were added), so they are searched as they come. Exact for flat,
    hnsw (flat storage) and ivf (IVF-Flat, through a direct map from row to inverted
    list, built here: a read index has none); for ivfpq they are the decoded PQ codes,
    centroid + quantised residual, not the features indexed, and are L2-normalised
    again for cosine as any query is.

    A GPU index is copied to the CPU first (faiss's GPU indexes cannot all reconstruct);
    through a pre-transform faiss maps the rows back to the input space, which search
    maps forward again.
    """
    import faiss

    index = _on_cpu(gallery.index)
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:  # not an IVF index
        ivf = None
    if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
        ivf.make_direct_map()
    try:
        x = index.reconstruct_batch(np.ascontiguousarray(rows, dtype=np.int64))
    except RuntimeError as exc:
        raise DataError(
            f"cannot read rows back from a faiss {type(index).__name__} "
            f"({str(exc).splitlines()[0]})",
            gallery.path,
            "query with the gallery's features store instead",
        ) from None
    x = np.asarray(x, dtype=np.float32).reshape(len(rows), -1)
    if gallery.meta.get("index_type") == "ivfpq":
        log.info(
            "ivfpq: rows read back from the index are their decoded PQ codes, approximations "
            "of the features indexed (a features store gives exact queries)"
        )
        x = prepare(x, gallery.metric)
    return x


# ---------------------------------------------------------------------------
# Evaluation


def exclude_rows(
    scores: np.ndarray, rows: np.ndarray, drop: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Remove, per query, the result whose gallery row is ``drop[q]`` (−1: none); keep k.

    Used for leave-one-out (``--exclude-self``): search k+1, drop the query itself.
    When the search could not return k+1 (k ≥ the gallery), the dropped result leaves
    a −1 row (score NaN), as a search that found fewer than k does.
    """
    hit = rows == drop[:, None]
    order = np.argsort(hit, axis=1, kind="stable")[:, :k]
    dropped = np.take_along_axis(hit, order, 1)
    rows = np.where(dropped, -1, np.take_along_axis(rows, order, 1))
    scores = np.where(dropped, np.nan, np.take_along_axis(scores, order, 1))
    return scores, rows


def recall_at_k(
    query_labels: np.ndarray, neighbour_labels: np.ndarray, ks: Sequence[int]
) -> dict[str, Any]:
    """SLIC's R@k: hit when any of the top-k shares the query's (non-empty) label.

    ``neighbour_labels`` is Q×K (K ≥ max k) with "" for unlabelled or missing
    neighbours (never a match). Unlabelled queries are left out and counted.
    """
    labelled = query_labels != ""
    match = (neighbour_labels == query_labels[:, None]) & (neighbour_labels != "")
    match = match[labelled]
    # first rank (0-based) with a match, or never: hit@k ⇔ first < k (also for k > K)
    first = np.where(match.any(1), match.argmax(1), np.iinfo(np.int64).max)
    n = int(labelled.sum())
    out = {f"R@{k}": (float((first < k).mean()) if n else float("nan")) for k in sorted(set(ks))}
    return {"recall": out, "queries": n, "unlabelled_queries": int((~labelled).sum())}


def neighbour_recall(approx: np.ndarray, exact: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Recall of the exact neighbours: mean |approx top-k ∩ exact top-k| / k."""
    out = {}
    for k in sorted(set(ks)):
        a, e = approx[:, :k], exact[:, :k]
        inter = (a[:, :, None] == e[:, None, :]) & (a[:, :, None] >= 0)
        out[f"{k}"] = float(inter.any(2).sum(1).mean() / max(1, e.shape[1])) if len(a) else 0.0
    return out


def average_by(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean feature per group (SLIC averages its clips' features per video).

    ``features`` (N, D), ``labels`` and ``groups`` (N,) → (G group ids, sorted; G×D
    means; each group's label, taken from its first row, with a warning when mixed).
    """
    keys, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
    sums = np.add.reduceat(features[order].astype(np.float64), starts, axis=0)
    counts = np.diff(np.r_[starts, len(order)])[:, None]
    mixed = np.bincount(inverse, weights=labels != labels[first][inverse], minlength=len(keys))
    if (mixed > 0).any():
        log.warning(
            "%d groups mix labels: each takes its first row's label", int((mixed > 0).sum())
        )
    return keys.astype(str), (sums / counts).astype(np.float32), labels[first]


# ---------------------------------------------------------------------------
# Montage: each query beside its neighbours, the picture retrieval papers show

THUMB = 112  # thumbnail side in pixels
CAPTION = 30  # caption band under each thumbnail


class Thumbnails:
    """RGB thumbnails by id: a crops store's rows, image files, or a frame of a video.

    Crops are found by the store's ``id`` column, else as ``<track_id>@<frame>`` (the
    ids ``vcl embed`` gives crops), else by row number.
    """

    def __init__(self, crops: str | Path | None = None, files: dict[str, Path] | None = None):
        self.files = dict(files or {})
        self.crops = None
        self.rows: dict[str, int] = {}
        if crops is not None:
            from vcl.io.features import item_ids
            from vcl.io.store import Store

            store = Store(crops)
            if "image" not in store.columns:
                raise DataError("has no 'image' column: not a crops store", crops)
            self.crops = store["image"]
            self.rows = {str(n): i for i, n in enumerate(item_ids(store))}

    def get(self, item_id: str) -> np.ndarray | None:
        import cv2

        if self.crops is not None and item_id in self.rows:
            return np.asarray(self.crops[self.rows[item_id]])
        path = self.files.get(item_id, Path(item_id))
        if not path.is_file():
            return None
        from vcl.io.video import IMAGE_EXTENSIONS

        if path.suffix.lower() in IMAGE_EXTENSIONS:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return _video_frame(path)


def _video_frame(path: Path) -> np.ndarray | None:
    """The middle frame (by the declared count), else the first; None when unreadable."""
    from vcl.errors import VclError
    from vcl.io.video import VideoReader

    try:
        reader = VideoReader(path, max_side=4 * THUMB)
        mid = (reader.info.frame_count or 0) // 2
        for start in (mid, 0):
            for _, rgb in VideoReader(path, max_side=4 * THUMB, start=start, end=start + 1):
                return rgb
    except (VclError, OSError, ValueError, RuntimeError):
        return None
    return None


def _cell(image: np.ndarray | None, lines: list[str], colour: tuple[int, int, int]) -> np.ndarray:
    """A THUMB×THUMB letterboxed thumbnail over a caption band (RGB uint8)."""
    import cv2

    cell = np.full((THUMB + CAPTION, THUMB, 3), 255, np.uint8)
    if image is None:
        cell[:THUMB] = 200
        cv2.line(cell, (0, 0), (THUMB - 1, THUMB - 1), (150, 150, 150), 1)
        cv2.line(cell, (0, THUMB - 1), (THUMB - 1, 0), (150, 150, 150), 1)
    else:
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        h, w = image.shape[:2]
        s = THUMB / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        small = cv2.resize(np.ascontiguousarray(image[:, :, :3]), (nw, nh), interpolation=interp)
        y, x = (THUMB - nh) // 2, (THUMB - nw) // 2
        cell[:THUMB] = 235
        cell[y : y + nh, x : x + nw] = small
    cv2.rectangle(cell, (0, 0), (THUMB - 1, THUMB - 1), colour, 2)
    for i, text in enumerate(lines[:2]):
        text = text if len(text) <= 18 else "…" + text[-17:]
        cv2.putText(
            cell,
            text.replace("…", "~"),
            (2, THUMB + 12 + 13 * i),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return cell


def draw_montage(
    path: str | Path,
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    scores: np.ndarray,
    rows: np.ndarray,
    thumbs: Thumbnails,
    max_rows: int = 20,
) -> Path:
    """One row per query: its thumbnail (blue frame), a gap, then its neighbours by rank.

    Neighbours sharing the query's id or image are not marked; captions give the
    rank and score. Written atomically as PNG (or any format OpenCV knows by suffix).
    """
    import cv2

    path = Path(path)
    n = min(len(query_ids), max_rows)
    k = rows.shape[1] if rows.ndim == 2 else 0
    gap = np.full((THUMB + CAPTION, 12, 3), 255, np.uint8)
    lines = []
    for qi in range(n):
        cells = [
            _cell(thumbs.get(str(query_ids[qi])), ["query", str(query_ids[qi])], (40, 90, 220))
        ]
        cells.append(gap)
        for r in range(k):
            row = int(rows[qi, r])
            if row < 0:
                cells.append(np.full_like(cells[0], 255))
                continue
            gid = str(gallery_ids[row])
            caption = [f"#{r + 1} {float(scores[qi, r]):.3f}", gid]
            cells.append(_cell(thumbs.get(gid), caption, (90, 90, 90)))
        lines.append(np.concatenate(cells, axis=1))
        lines.append(np.full((6, lines[-1].shape[1], 3), 255, np.uint8))
    if not lines:
        raise DataError("no queries to draw", path)
    canvas = np.concatenate(lines[:-1], axis=0)
    ok, data = cv2.imencode(path.suffix or ".png", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    if not ok:
        from vcl.errors import OutputError

        raise OutputError("OpenCV cannot write this image format", path, "use .png or .jpg")
    _atomic_write_bytes(path, data.tobytes())
    return path
