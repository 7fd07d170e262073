"""vcl cluster / vcl cluster eval through the CLI: outputs, joins by id, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics as skm

from tests.conftest import jsonl
from vcl.errors import ExitCode
from vcl.io.features import FeatureSet, write_feature_set
from vcl.io.store import Store


def planted(n: int = 211, d: int = 9, k: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = (12 * np.eye(k, d)[y] + rng.normal(size=(n, d))).astype(np.float32)
    return x, y


def one_error_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in stderr, stderr
    return errors[0]


@pytest.fixture
def npy(tmp_path: Path) -> tuple[Path, np.ndarray]:
    x, y = planted()
    x[7] = np.nan
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy", y


def write_labels(path: Path, ids, labels, seed: int = 0, drop: tuple[int, ...] = ()) -> Path:
    """A shuffled two-field JSONL with an extra field; rows in ``drop`` lack a label."""
    order = np.random.default_rng(seed).permutation(len(ids))
    with path.open("w") as f:
        for i in order:
            row = {"id": str(ids[i]), "note": "ignored"}
            if i not in drop:
                row["label"] = f"class{labels[i]}"
            f.write(json.dumps(row) + "\n")
    return path


def test_kmeans_store_and_eval_with_shuffled_labels(invoke, tmp_path, npy) -> None:
    path, y = npy
    out = tmp_path / "c.zarr"
    result = invoke("cluster", path, "-o", out, "--k", "5", "--runs", "2", "--init", "kmeans++")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["dropped_rows"] == 1 and summary["runs"] == 2 and summary["seeds"] == [0, 1]
    assert "dropped 1 of 211 rows" in result.stderr
    store = Store(out, kind="clusters", version=1)
    assert store.columns == ["id", "assignment"]
    assignment = store["assignment"][:]
    assert assignment.shape == (211, 2) and assignment.dtype == np.int32
    assert assignment[7].tolist() == [-1, -1]
    assert store["centroids"].shape == (2, 5, 9) and store["sizes"][:].sum(1).tolist() == [210] * 2
    assert store.attrs["params"]["k"] == 5 and store.attrs["seed"] == 0

    labels = write_labels(tmp_path / "labels.jsonl", np.arange(211), y, drop=(3, 4))
    report = invoke("cluster", "eval", out, "--labels", labels)
    assert report.exit_code == 0, report.stderr
    metrics = json.loads(report.stdout)
    keep = np.setdiff1d(np.arange(211), [3, 4, 7])
    expected = skm.normalized_mutual_info_score(y[keep], assignment[keep, 0])
    assert metrics["nmi"] == pytest.approx(expected) and metrics["nmi"] >= 0.95
    assert metrics["ari"] == pytest.approx(skm.adjusted_rand_score(y[keep], assignment[keep, 0]))
    assert metrics["unlabelled"] == 2 and metrics["unassigned"] == 1 and metrics["labelled"] == 208
    assert metrics["entropy_unit"] == "nats" and metrics["sizes"]["clusters"] == 5
    # a different shuffle gives the same figures: labels are joined by id
    labels2 = write_labels(tmp_path / "l2.jsonl", np.arange(211), y, seed=9, drop=(3, 4))
    again = json.loads(invoke("cluster", "eval", out, "--labels", labels2).stdout)
    assert again["nmi"] == metrics["nmi"] and again["purity"] == metrics["purity"]
    bits = json.loads(invoke("cluster", "eval", out, "--labels", labels, "--bits").stdout)
    assert bits["entropy_unit"] == "bits"
    assert bits["intra_class_entropy"] == pytest.approx(metrics["intra_class_entropy"] / np.log(2))
    # change ratio between the two runs, no relabelling
    jl = tmp_path / "run1.jsonl"
    ids = [str(i) for i in range(211)]
    jl.write_text(
        "".join(
            json.dumps({"id": i, "cluster": int(c)}) + "\n"
            for i, c in zip(ids, assignment[:, 1], strict=True)
        )
    )
    vs = json.loads(invoke("cluster", "eval", out, "--vs", jl).stdout)
    valid = assignment[:, 0] >= 0
    assert vs["compared"] == 210
    assert vs["change_ratio"] == pytest.approx(
        (assignment[valid, 0] != assignment[valid, 1]).mean()
    )


def test_jsonl_to_stdout_and_finch(invoke, tmp_path, npy) -> None:
    path, y = npy
    result = invoke("cluster", path, "--method", "finch", "--n-clusters", "5", "--jsonl")
    assert result.exit_code == 0, result.stderr
    rows = jsonl(result.stdout)  # stdout is data only: the summary went to stderr
    assert [r["id"] for r in rows] == [str(i) for i in range(211)]
    dash = invoke("cluster", path, "--method", "finch", "--n-clusters", "5", "--jsonl", "-o", "-")
    assert dash.exit_code == 0 and jsonl(dash.stdout) == rows  # -o - is stdout too
    clusters = np.array([r["cluster"] for r in rows])
    assert clusters[7] == -1 and len(np.unique(clusters[clusters >= 0])) == 5
    keep = clusters >= 0
    assert skm.normalized_mutual_info_score(y[keep], clusters[keep]) >= 0.95
    out = tmp_path / "f.zarr"
    assert invoke("cluster", path, "-o", out, "--method", "finch", "--level", "0").exit_code == 0
    store = Store(out)
    levels, counts = store["levels"][:], store["level_clusters"][:]
    assert levels.shape[1] == len(counts) and levels[7].tolist() == [-1] * len(counts)
    assert np.array_equal(store["assignment"][:, 0], levels[:, 0])
    bad = invoke("cluster", path, "-o", tmp_path / "g.zarr", "--method", "finch", "--level", "99")
    assert bad.exit_code == ExitCode.USAGE and "levels" in one_error_line(bad.stderr)
    # more clusters than FINCH's finest partition: it only merges, so it was returned
    # with fewer clusters than asked, exit 0 and n_clusters recorded as asked
    many = int(counts[0]) + 1
    bad = invoke("cluster", path, "-o", tmp_path / "g.zarr", "--method", "finch",
                 "--n-clusters", str(many))  # fmt: skip
    line = one_error_line(bad.stderr)
    assert bad.exit_code == ExitCode.DATA and f"has {counts[0]} clusters" in line
    assert line.startswith(f"error: {path}: ")  # the features file, named by the CLI
    assert not (tmp_path / "g.zarr").exists()
    again = invoke("cluster", path, "-o", out, "--method", "finch")
    assert again.exit_code == ExitCode.CANNOT_CREATE and "--overwrite" in again.stderr


def test_track_kmeans_from_a_features_store(invoke, tmp_path) -> None:
    x, y = planted(n=307, k=4, seed=2)
    rng = np.random.default_rng(3)
    tracks = np.array([f"t{t}" for t in rng.integers(0, 60, 307)])
    order = np.argsort(tracks, kind="stable")
    ids = np.array([f"crop{i}" for i in range(307)])
    fs = FeatureSet(
        ids=ids[order],
        features=x[order],
        labels=np.array([f"c{v}" for v in y])[order],
        track_ids=tracks[order],
        video_ids=tracks[order],
    )
    store = write_feature_set(tmp_path / "feats.zarr", fs, params={})
    out = tmp_path / "t.zarr"
    result = invoke("cluster", store, "-o", out, "--method", "track-kmeans", "--k", "4")
    assert result.exit_code == 0, result.stderr
    n_tracks = len(np.unique(tracks))
    assert json.loads(result.stdout)["tracks"] == n_tracks
    report = json.loads(invoke("cluster", "eval", out, "--labels", store).stdout)
    assert report["intra_track_entropy"] == 0.0 and report["tracks"] == n_tracks
    assert report["tracks_from"] == str(store) and report["classes"] == 4
    too_many = invoke(
        "cluster",
        store,
        "-o",
        tmp_path / "u.zarr",
        "--method",
        "track-kmeans",
        "--k",
        str(n_tracks + 1),
    )
    assert too_many.exit_code == ExitCode.DATA
    assert "number of tracks" in one_error_line(too_many.stderr)


@pytest.mark.parametrize(
    ("array", "args", "message"),
    [
        (np.ones((9, 4)), ["--k", "2"], "zero-variance"),
        (np.arange(12.0).reshape(4, 3), ["--k", "5"], "larger than the number of points"),
        (np.full((4, 3), np.nan), ["--k", "2"], "NaN"),
    ],
    ids=["zero-variance", "k-too-large", "all-nan"],
)
def test_bad_features(invoke, tmp_path, array, args, message) -> None:
    np.save(tmp_path / "bad.npy", array.astype(np.float32))
    result = invoke("cluster", tmp_path / "bad.npy", "-o", tmp_path / "c.zarr", *args)
    assert result.exit_code == ExitCode.DATA
    line = one_error_line(result.stderr)
    assert message in line and "bad.npy" in line
    assert not (tmp_path / "c.zarr").exists()


def test_bad_labels_and_usage(invoke, tmp_path, npy) -> None:
    path, y = npy
    out = tmp_path / "c.zarr"
    assert invoke("cluster", path, "-o", out, "--k", "3").exit_code == 0
    stranger = write_labels(tmp_path / "other.jsonl", [f"x{i}" for i in range(20)], y[:20])
    result = invoke("cluster", "eval", out, "--labels", stranger)
    assert result.exit_code == ExitCode.DATA and "other.jsonl" in one_error_line(result.stderr)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "1", "label": "a"}\n{"id": 2,\n')
    result = invoke("cluster", "eval", out, "--labels", broken)
    assert result.exit_code == ExitCode.DATA and "line 2" in one_error_line(result.stderr)
    assert invoke("cluster", "eval", out, "--labels", tmp_path / "nope.jsonl").exit_code == (
        ExitCode.NO_INPUT
    )
    assert invoke("cluster", path, "-o", tmp_path / "d.zarr").exit_code == ExitCode.USAGE  # no k
    wrong = invoke("cluster", path, "-o", tmp_path / "d.zarr", "--k", "3", "--method", "dbscan")
    assert wrong.exit_code == ExitCode.USAGE and "dbscan" in one_error_line(wrong.stderr)
    gpu = invoke("cluster", path, "-o", tmp_path / "d.zarr", "--k", "3", "--device", "cuda:7")
    assert gpu.exit_code == ExitCode.UNAVAILABLE
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"item{i}" for i in range(211)))
    named = invoke("cluster", path, "--ids", ids, "--k", "3", "--jsonl")
    assert jsonl(named.stdout)[0]["id"] == "item0"


def test_eval_with_nothing_labelled_is_an_error(invoke, tmp_path, npy) -> None:
    """Scores over no labelled sample would read as perfect (NMI 1.0) beside a NaN."""
    path, y = npy
    out = tmp_path / "c.zarr"
    assert invoke("cluster", path, "-o", out, "--k", "3").exit_code == 0
    unlabelled = write_labels(tmp_path / "none.jsonl", np.arange(211), y, drop=tuple(range(211)))
    result = invoke("cluster", "eval", out, "--labels", unlabelled)
    assert result.exit_code == ExitCode.DATA and not result.stdout
    line = one_error_line(result.stderr)
    assert "none.jsonl" in line and "c.zarr" in line and "no id of the clusters" in line
    assert "'0', '1', '2'" in line  # the first clustered ids, to compare with the labels
    # the only labelled id is the row dropped for NaN (not clustered)
    others = (*range(7), *range(8, 211))
    only = write_labels(tmp_path / "only7.jsonl", np.arange(211), y, drop=others)
    result = invoke("cluster", "eval", out, "--labels", only)
    assert result.exit_code == ExitCode.DATA and "'7'" in one_error_line(result.stderr)


def test_eval_tracks_file_without_track_ids_is_named(invoke, tmp_path, npy) -> None:
    """A vcl.track/1 file (one line per track) given as --tracks has no per-item track_id."""
    path, _ = npy
    out = tmp_path / "c.zarr"
    assert invoke("cluster", path, "-o", out, "--k", "3").exit_code == 0
    tracks = tmp_path / "tracks.jsonl"
    track = {"id": "t0", "video_id": "v", "frames": [0, 1], "boxes": [[0, 0, 5, 5]] * 2}
    tracks.write_text(json.dumps(track) + "\n")
    result = invoke("cluster", "eval", out, "--tracks", tracks)
    assert result.exit_code == ExitCode.DATA
    assert "tracks.jsonl: has no track_id field" in one_error_line(result.stderr)


def test_eval_json_has_no_bare_nan(invoke, tmp_path, npy, monkeypatch) -> None:
    import vcl.cluster_metrics

    path, _ = npy
    out = tmp_path / "c.zarr"
    assert invoke("cluster", path, "-o", out, "--k", "3").exit_code == 0
    nan = {"nmi": float("nan"), "sizes": {"mean": float("inf")}, "per": [float("-inf"), 1.0]}
    monkeypatch.setattr(vcl.cluster_metrics, "evaluate", lambda *a, **k: dict(nan))
    result = invoke("cluster", "eval", out)
    assert result.exit_code == 0, result.stderr

    def refuse(token: str) -> None:
        raise AssertionError(f"bare {token} in {result.stdout}")

    report = json.loads(result.stdout, parse_constant=refuse)
    assert report["nmi"] is None and report["sizes"]["mean"] is None
    assert report["per"] == [None, 1.0]


def _crops_store(path: Path, labels: list[str] | None) -> Path:
    """A tiny vcl.crops/1 store: 2 tracks × 3 crops (ids t<i>@<frame>), 5×5 images."""
    from vcl.crops import columns_spec
    from vcl.io.store import StoreWriter

    tracks, frames = np.repeat(["t0", "t1"], 3), np.tile([0, 2, 4], 2)
    with StoreWriter(path, "vcl.crops/1", {}, None) as writer:
        writer.define_columns(columns_spec(5, labels is not None))
        columns = {
            "image": np.zeros((6, 5, 5, 3), np.uint8),
            "track_id": tracks,
            "video_id": np.full(6, "v"),
            "frame": frames.astype(np.int32),
            "box": np.zeros((6, 4), np.float32),
        }
        if labels is not None:
            columns["label"] = np.array(labels)
        writer.append_group("v", **columns)
    return path


def test_eval_labels_from_a_crops_store_join_by_crop_id(invoke, tmp_path) -> None:
    clusters = tmp_path / "clusters.jsonl"
    assign = {"t1@4": 0, "t0@0": 1, "t1@0": 0, "t0@2": 1, "t0@4": 1, "t1@2": 0}  # shuffled
    clusters.write_text(
        "".join(json.dumps({"id": i, "cluster": c}) + "\n" for i, c in assign.items())
    )
    crops = _crops_store(tmp_path / "crops.zarr", ["cat"] * 3 + ["dog"] * 3)
    result = invoke("cluster", "eval", clusters, "--labels", crops)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["labelled"] == 6 and report["classes"] == 2
    assert report["nmi"] == pytest.approx(1.0) and report["purity"] == 1.0
    assert report["tracks"] == 2 and report["intra_track_entropy"] == 0.0  # its track_id
    bare = _crops_store(tmp_path / "bare.zarr", None)
    result = invoke("cluster", "eval", clusters, "--labels", bare)
    assert result.exit_code == ExitCode.DATA
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: {bare}: store has no 'label' column")


def test_layer_picks_the_column_to_cluster_and_is_recorded(invoke, tmp_path) -> None:
    """Two layers of one store: the planted clusters are only in stage4 (pool is noise)."""
    from vcl.io.features import SCHEMA, feature_columns
    from vcl.io.store import StoreWriter

    x, y = planted(n=97, d=11, k=3, seed=4)
    noise = np.random.default_rng(5).normal(size=(97, 6)).astype(np.float32)
    ids = np.array([f"v{i}" for i in range(97)])
    store = tmp_path / "f.zarr"
    with StoreWriter(store, SCHEMA, {"layers": ["stage4", "pool"]}) as w:
        w.define_columns(feature_columns(0, layers={"stage4": 11, "pool": 6}))
        w.append_group("all", id=ids, features_stage4=x, features_pool=noise)
        w.set_attrs(default_layer="pool")
    out = tmp_path / "c.zarr"
    r = invoke("cluster", store, "--layer", "stage4", "-o", out, "--k", "3")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["layer"] == "stage4" and summary["dimension"] == 11
    clusters = Store(out, kind="clusters", version=1)
    assert clusters.attrs["params"]["layer"] == "stage4"
    assignment = clusters["assignment"][:][:, 0]
    assert skm.adjusted_rand_score(y, assignment) == 1.0
    default = invoke("cluster", store, "-o", tmp_path / "d.zarr", "--k", "3")  # the default
    assert default.exit_code == 0, default.stderr
    assert json.loads(default.stdout)["layer"] == "pool"
    assert Store(tmp_path / "d.zarr", kind="clusters", version=1).attrs["params"]["layer"] == "pool"
    missing = invoke("cluster", store, "--layer", "stage2", "-o", tmp_path / "e.zarr", "--k", "3")
    assert missing.exit_code == ExitCode.DATA and not (tmp_path / "e.zarr").exists()
    assert "no layer 'stage2'" in one_error_line(missing.stderr)


@pytest.mark.parametrize("output", ["c.zarr", "c.jsonl"])
def test_output_whose_folder_cannot_be_made_is_refused_before_clustering(
    invoke, tmp_path, npy, monkeypatch, output
) -> None:
    """Was: with a file in the way of the output's folder (-o t.jsonl/c.zarr, or --jsonl
    -o t.jsonl/c.jsonl) the whole clustering ran, then exit 73."""
    import vcl.cluster

    def clustered(*args, **kwargs):
        raise AssertionError("clustered before the output was checked")

    monkeypatch.setattr(vcl.cluster, "cluster_feature_set", clustered)
    path, _ = npy
    (tmp_path / "afile").write_text("")
    jsonl = ["--jsonl"] if output.endswith(".jsonl") else []
    result = invoke("cluster", path, "--k", "3", *jsonl, "-o", tmp_path / "afile" / output)
    assert result.exit_code == ExitCode.CANNOT_CREATE, result.stderr
    error = one_error_line(result.stderr)
    assert f"afile/{output}: cannot create its folder ({tmp_path / 'afile'} is a file)" in error
    (tmp_path / output).mkdir()
    result = invoke("cluster", path, "--k", "3", *jsonl, "-o", tmp_path / output)
    assert result.exit_code == ExitCode.CANNOT_CREATE and "exists already" in result.stderr


def test_eval_jsonl_with_sparse_cluster_ids_counts_its_clusters(invoke, tmp_path) -> None:
    """JSONL ids need not be 0..k-1: ids 0/1000/2000 were 2001 clusters, 1998 empty."""
    path = tmp_path / "sparse.jsonl"
    rows = [{"id": f"r{i}", "cluster": 1000 * (i % 3)} for i in range(30)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = invoke("cluster", "eval", path)
    assert result.exit_code == 0, result.stderr
    sizes = json.loads(result.stdout)["sizes"]
    assert sizes["clusters"] == 3 and sizes["empty"] == 0 and sizes["mean"] == 10.0
    assert sizes["gini"] == 0.0


@pytest.mark.parametrize(
    "lines, words",
    [
        ([], "no rows"),
        ([{"id": "a", "cluster": -1}, {"id": "b", "cluster": -1}], "none of its 2 rows"),
        ([{"id": "a", "cluster": 0}, {"id": "b"}], "no 'cluster' field (id 'b')"),
    ],
)
def test_eval_of_nothing_clustered_is_one_error_line(invoke, tmp_path, lines, words) -> None:
    """An empty file or one with no assigned row crashed with exit 70 (max of an empty
    array); a line without a cluster read silently as unassigned."""
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    result = invoke("cluster", "eval", path)
    assert result.exit_code == ExitCode.DATA and not result.stdout
    line = one_error_line(result.stderr)
    assert "c.jsonl" in line and words in line
