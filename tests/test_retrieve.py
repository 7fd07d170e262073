"""vcl.retrieve: faiss search against a numpy reference, metrics, R@k, index files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vcl.errors import DataError, MissingInputError, UsageError
from vcl.io.labels import lookup, read_id_fields
from vcl.retrieve import (
    IndexParams,
    average_by,
    brute_force,
    build_index,
    check_queries,
    exact_search,
    exclude_rows,
    meta_path,
    neighbour_recall,
    prepare,
    read_index,
    recall_at_k,
    search,
    set_search_params,
    write_index,
)


def half_units(n: int, dim: int, rng: np.random.Generator, distinct: int) -> np.ndarray:
    """Rows with four ±0.5 entries (norm exactly 1) drawn from ``distinct`` patterns.

    Every dot product and distance is a multiple of 0.25, computed exactly in float32
    by any BLAS, so ties are true ties and the tie rule alone decides the order.
    """
    patterns = np.zeros((distinct, dim), np.float32)
    for p in patterns:
        p[rng.choice(dim, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    return patterns[rng.integers(0, distinct, n)]


def flat(gallery: np.ndarray, metric: str):
    config = IndexParams(metric=metric).resolved(*gallery.shape)
    return build_index(prepare(gallery, metric), config)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("n_queries", [7, 29])  # faiss: per-query path below 20, BLAS above
def test_flat_equals_brute_force_with_ties(metric: str, n_queries: int) -> None:
    rng = np.random.default_rng(3)
    gallery = half_units(203, 9, rng, distinct=12)  # ~17 duplicates of each row: many ties
    queries = half_units(n_queries, 9, rng, distinct=40)
    if metric == "ip":
        gallery = gallery * rng.integers(1, 4, (len(gallery), 1)).astype(np.float32)
    for k in (1, 10, 203):
        scores, rows = search(flat(gallery, metric), prepare(queries, metric), k)
        ref_scores, ref_rows = brute_force(gallery, queries, k, metric)
        np.testing.assert_array_equal(rows, ref_rows)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
    # ties really occur and go to the smaller gallery row
    tied = np.diff(scores, axis=1) == 0
    assert tied.sum() > 100
    assert (np.diff(rows, axis=1)[tied] > 0).all()


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("n_queries", [7, 29])  # faiss: per-query path below 20, BLAS above
def test_exact_search_is_brute_force_on_ties(metric: str, n_queries: int) -> None:
    """eval's exact reference (a flat faiss index) orders ties as numpy's brute force
    did: by gallery row. Exact-arithmetic rows, then duplicated random rows."""
    rng = np.random.default_rng(5)
    tied = half_units(203, 9, rng, distinct=12), half_units(n_queries, 9, rng, distinct=40)
    distinct = rng.normal(size=(60, 16)).astype(np.float32)
    dup = distinct[rng.permutation(np.repeat(np.arange(60), 5))]  # every row 5 times
    for gallery, queries in (tied, (dup, rng.normal(size=(n_queries, 16)).astype(np.float32))):
        for k in (1, 10, len(gallery)):
            ref_scores, ref_rows = brute_force(gallery, queries, k, metric)
            scores, rows = exact_search(
                prepare(gallery, metric), prepare(queries, metric), k, metric
            )
            np.testing.assert_array_equal(rows, ref_rows)
            np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
        ties = np.diff(scores, axis=1) == 0
        assert ties.sum() > 50 and (np.diff(rows, axis=1)[ties] > 0).all()


def test_brute_force_reference_against_plain_loops() -> None:
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(23, 5)).astype(np.float32)
    queries = rng.normal(size=(4, 5)).astype(np.float32)
    for metric in ("cosine", "ip", "l2"):
        _, rows = brute_force(gallery, queries, 6, metric)
        for q, row in zip(queries, rows, strict=True):
            if metric == "l2":
                key = [float(((q - g) ** 2).sum()) for g in gallery]
            elif metric == "ip":
                key = [-float(q @ g) for g in gallery]
            else:
                key = [-float(q @ g / np.linalg.norm(q) / np.linalg.norm(g)) for g in gallery]
            assert list(row) == sorted(range(len(gallery)), key=lambda i: (key[i], i))[:6]


def test_metric_semantics_by_hand() -> None:
    gallery = np.array([[1, 0], [10, 1], [0.5, 0.5]], np.float32)
    query = np.array([[1, 0]], np.float32)
    expect = {
        "cosine": ([0, 1, 2], [1.0, 10 / np.sqrt(101), np.sqrt(0.5)]),  # angle only
        "ip": ([1, 0, 2], [10.0, 1.0, 0.5]),  # length counts
        "l2": ([0, 2, 1], [0.0, 0.5, 82.0]),  # squared distance, smaller first
    }
    for metric, (rows, scores) in expect.items():
        s, r = search(flat(gallery, metric), prepare(query, metric), 3)
        assert r[0].tolist() == rows
        np.testing.assert_allclose(s[0], scores, rtol=1e-6, atol=1e-6)


def test_cosine_is_scale_invariant_and_zero_rows_stay_zero() -> None:
    x = np.array([[3, 4], [0, 0]], np.float32)
    np.testing.assert_allclose(prepare(x, "cosine"), [[0.6, 0.8], [0, 0]])
    np.testing.assert_array_equal(prepare(x, "ip"), x)


def test_recall_at_k_planted_by_hand() -> None:
    q = np.array(["a", "b", "c", "a", ""])
    nb = np.array(
        [
            ["a", "x", "x", "x"],  # hit at rank 1
            ["x", "x", "b", "x"],  # hit at rank 3
            ["x", "x", "x", "x"],  # never
            ["", "x", "x", "a"],  # hit at rank 4 ("" never matches)
            ["", "", "", ""],  # unlabelled query: left out
        ]
    )
    out = recall_at_k(q, nb, [1, 2, 3, 4])
    assert out["recall"] == {"R@1": 0.25, "R@2": 0.25, "R@3": 0.5, "R@4": 0.75}
    # k beyond the columns (a small gallery) must not count queries without a match
    assert recall_at_k(q, nb, [9])["recall"] == {"R@9": 0.75}
    assert out["queries"] == 4 and out["unlabelled_queries"] == 1


def test_exclude_rows_drops_self_and_keeps_k() -> None:
    scores = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7]], np.float32)
    rows = np.array([[5, 2, 7], [1, 3, 4]])
    s, r = exclude_rows(scores, rows, np.array([2, -1]), 2)
    assert r.tolist() == [[5, 7], [1, 3]]
    np.testing.assert_allclose(s, [[0.9, 0.7], [0.9, 0.8]])
    # k as large as the gallery: the search returned no spare column; self must still go
    s, r = exclude_rows(scores, rows, np.array([2, -1]), 3)
    assert r.tolist() == [[5, 7, -1], [1, 3, 4]] and np.isnan(s[0, 2])


def test_neighbour_recall() -> None:
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    approx = np.array([[2, 1, 9], [7, 8, 4]])
    assert neighbour_recall(approx, exact, [1, 2, 3]) == {"1": 0.0, "2": 0.5, "3": 0.5}


def clustered(n: int, dim: int, centres: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim)) * 4
    return (c[rng.integers(0, centres, n)] + rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize(
    ("index_type", "extra", "floor"),
    [
        ("ivf", {"nlist": 40, "nprobe": 4}, 0.9),
        ("ivfpq", {"nlist": 20, "nprobe": 4, "pq_m": 24, "pq_bits": 4}, 0.45),  # lossy codes
        ("hnsw", {}, 0.9),
    ],
)
def test_approximate_indexes_find_the_exact_neighbours(index_type, extra, floor) -> None:
    x = clustered(3001, 24, 40, seed=1)
    gallery, queries = x[:2800], x[2800:]
    for metric in ("cosine", "l2"):
        config = IndexParams(index_type=index_type, metric=metric, seed=0, **extra).resolved(
            *gallery.shape
        )
        index = build_index(prepare(gallery, metric), config)
        set_search_params(index, config, {})
        _, rows = search(index, prepare(queries, metric), 10)
        _, exact = brute_force(gallery, queries, 10, metric)
        assert neighbour_recall(rows, exact, [10])["10"] > floor


def test_ivf_is_reproducible_with_a_seed() -> None:
    x = clustered(1500, 16, 20, seed=2)
    config = IndexParams(index_type="ivf", nlist=20, nprobe=2, seed=5).resolved(*x.shape)
    runs = []
    for _ in range(2):
        index = build_index(prepare(x, "cosine"), config)
        set_search_params(index, config, {})
        runs.append(search(index, prepare(x[:50], "cosine"), 5)[1])
    np.testing.assert_array_equal(*runs)


def test_resolved_defaults_and_bad_parameters() -> None:
    config = IndexParams(index_type="ivfpq").resolved(10_000, 256)
    assert config["nlist"] == 256  # 4·√N = 400, capped at N/39 = 256
    assert 256 % config["pq_m"] == 0 and config["pq_m"] == 64
    with pytest.raises(UsageError):
        IndexParams(index_type="lsh").validate()
    with pytest.raises(UsageError):
        IndexParams(metric="hamming").validate()
    with pytest.raises(UsageError):
        IndexParams(index_type="ivfpq", pq_m=7).resolved(1000, 32)


def test_index_files_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(41, 6)).astype(np.float32)
    ids = np.array([f"item-{i:03d}" for i in range(41)])
    config = IndexParams(index_type="hnsw", metric="l2").resolved(*x.shape)
    source = {"path": "f.zarr", "schema": "vcl.features/1", "provenance": {"seed": 3}}
    path = tmp_path / "g.index"
    write_index(path, build_index(prepare(x, "l2"), config), ids, config, source, "cpu")
    gallery = read_index(path)
    assert gallery.ids.tolist() == ids.tolist()
    assert (gallery.metric, gallery.dimension) == ("l2", 6)
    meta = json.loads(meta_path(path).read_text())
    assert meta["vcl_schema"] == "vcl.index/1" and meta["source"] == source
    assert meta["params"]["hnsw_m"] == 32 and meta["index_type"] == "hnsw"
    set_search_params(gallery.index, gallery.meta, {"ef_search": 100})
    _, rows = search(gallery.index, x[:5], 1)
    assert rows[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(DataError, match="dimension 5"):
        check_queries(gallery, 5, None, "q.npy")
    with pytest.raises(UsageError, match="metric"):
        check_queries(gallery, 6, "cosine", "q.npy")


def test_index_without_or_with_stale_metadata_is_refused(tmp_path) -> None:
    x = np.eye(4, dtype=np.float32)
    config = IndexParams().resolved(*x.shape)
    a, b = tmp_path / "a.index", tmp_path / "b.index"
    write_index(a, build_index(x, config), np.array(list("abcd")), config, {}, "cpu")
    write_index(b, build_index(x[:3], config), np.array(list("abc")), config, {}, "cpu")
    b.write_bytes(a.read_bytes())  # index replaced, metadata kept
    with pytest.raises(DataError, match="does not match"):
        read_index(b)
    meta_path(a).unlink()
    with pytest.raises(DataError, match="no metadata"):
        read_index(a)
    with pytest.raises(MissingInputError):
        read_index(tmp_path / "none.index")


def test_average_by_groups() -> None:
    feats = np.array([[1, 0], [3, 2], [5, 5], [0, 1]], np.float32)
    groups = np.array(["v2", "v2", "v1", "v2"])
    labels = np.array(["x", "x", "y", "x"])
    keys, means, lab = average_by(feats, labels, groups)
    assert keys.tolist() == ["v1", "v2"] and lab.tolist() == ["y", "x"]
    np.testing.assert_allclose(means, [[5, 5], [4 / 3, 1]])


def test_label_reader_and_lookup(tmp_path) -> None:
    path = tmp_path / "labels.jsonl"
    lines = [{"id": "a", "label": "cat", "split": "train"}, {"id": "b", "label": None}, {"id": 3}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    ids, fields = read_id_fields(path, ["label", "split"])
    assert ids.tolist() == ["a", "b", "3"]
    assert fields["label"].tolist() == ["cat", "", ""]
    assert lookup(np.array(["3", "zz", "a"]), ids, fields["split"]).tolist() == ["", "", "train"]
    path.write_text('{"id": "a"}\n{"id": "a"}\n')
    with pytest.raises(DataError, match="duplicate"):
        read_id_fields(path, ["label"])


def test_metadata_paths_are_relative_to_the_index_folder(tmp_path, monkeypatch) -> None:
    """Paths written into INDEX.json name files from its folder (or absolutely); read
    back, they are usable from the working directory, and an older metadata file's
    paths (from the working directory that wrote it) still resolve."""
    from pathlib import Path

    from vcl.retrieve import record_model, record_path, resolve_model, resolve_path

    monkeypatch.chdir(tmp_path)
    for folder in ("idx/run", "run", "elsewhere"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "w.pt").write_bytes(b"")
    idx = Path("idx")
    assert record_path("idx/f.zarr", idx) == "f.zarr"
    assert record_path("run", idx) == str(tmp_path / "run")  # not below idx: absolute
    assert record_model("idx/run", idx) == "run"
    assert record_model("weights:resnet18:w.pt", idx) == f"weights:resnet18:{tmp_path}/w.pt"
    assert record_model("random:resnet18", idx) == "random:resnet18"
    assert record_model("gone/run", idx) == "gone/run"  # nothing there: kept as written
    monkeypatch.chdir(tmp_path / "elsewhere")
    there = Path("../idx")
    assert resolve_path("f.zarr", there) == "../idx/f.zarr"
    assert resolve_model("run", there) == "../idx/run"  # beside the index first
    assert resolve_model(str(tmp_path / "run"), there) == str(tmp_path / "run")
    assert resolve_model("random:resnet18", there) == "random:resnet18"
    (tmp_path / "elsewhere" / "old").mkdir()
    assert resolve_path("old", there) == "old"  # only from here: an older index's path
    assert resolve_path("none", there) == "../idx/none"  # nowhere: the contract's place
