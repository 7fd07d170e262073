"""vcl retrieve index / query / eval through the CLI, including the bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import jsonl
from vcl.errors import ExitCode
from vcl.io.features import FeatureSet, write_feature_set
from vcl.retrieve import brute_force, meta_path


def store(path, features, ids, labels=None, video_ids=None):
    fs = FeatureSet(
        ids=np.asarray(ids, dtype=str),
        features=np.asarray(features, np.float32),
        labels=None if labels is None else np.asarray(labels, dtype=str),
        video_ids=None if video_ids is None else np.asarray(video_ids, dtype=str),
    )
    return write_feature_set(path, fs, params={"test": True}, seed=7)


@pytest.fixture
def gallery(tmp_path):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(57, 13)).astype(np.float32)
    ids = [f"g{i:02d}" for i in range(57)]
    path = store(tmp_path / "gallery.zarr", x, ids, labels=[f"c{i % 5}" for i in range(57)])
    return path, x, np.array(ids)


def test_index_then_query_returns_ids_in_brute_force_order(invoke, tmp_path, gallery) -> None:
    path, x, ids = gallery
    out = tmp_path / "g.index"
    result = invoke("retrieve", "index", path, "-o", out, "--metric", "l2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["count"] == 57 and summary["dimension"] == 13 and summary["metric"] == "l2"
    meta = json.loads(meta_path(out).read_text())
    assert meta["ids"] == ids.tolist()
    assert meta["source"]["schema"] == "vcl.features/1"
    assert meta["source"]["provenance"]["seed"] == 7
    queries = x[[3, 40, 8]] + 0.05
    qpath = store(tmp_path / "q.zarr", queries, ["qa", "qb", "qc"])
    result = invoke("retrieve", "query", out, qpath, "-k", "4")
    assert result.exit_code == 0, result.output
    lines = jsonl(result.stdout)
    assert len(lines) == 12
    assert {line["schema"] for line in lines} == {"vcl.match/1"}
    ref_scores, ref_rows = brute_force(x, queries, 4, "l2")
    for qi, qid in enumerate(["qa", "qb", "qc"]):
        mine = [line for line in lines if line["query"] == qid]
        assert [m["rank"] for m in mine] == [1, 2, 3, 4]
        assert [m["neighbour"] for m in mine] == ids[ref_rows[qi]].tolist()
        np.testing.assert_allclose([m["score"] for m in mine], ref_scores[qi], rtol=1e-4)
    # refusing to overwrite, then --overwrite
    again = invoke("retrieve", "index", path, "-o", out)
    assert again.exit_code == ExitCode.CANNOT_CREATE
    assert invoke("retrieve", "index", path, "-o", out, "--overwrite").exit_code == 0


def test_query_exclude_self_and_npy_with_ids(invoke, tmp_path, gallery) -> None:
    path, x, _ = gallery
    out = tmp_path / "g.index"
    assert invoke("retrieve", "index", path, "-o", out, "--index", "hnsw").exit_code == 0
    np.save(tmp_path / "q.npy", x[:2])
    (tmp_path / "ids.txt").write_text("g00\ng01\n")
    result = invoke(
        "retrieve", "query", out, tmp_path / "q.npy", "--ids", tmp_path / "ids.txt", "-k", "3"
    )
    lines = jsonl(result.stdout)
    assert [line["neighbour"] for line in lines if line["rank"] == 1] == ["g00", "g01"]
    result = invoke(
        "retrieve", "query", out, tmp_path / "q.npy", "--ids", tmp_path / "ids.txt", "-k", "3",
        "--exclude-self",
    )  # fmt: skip
    lines = jsonl(result.stdout)
    assert len(lines) == 6 and all(line["neighbour"] != line["query"] for line in lines)


def test_bad_inputs(invoke, tmp_path, gallery) -> None:
    path, x, _ = gallery
    out = tmp_path / "g.index"
    assert invoke("retrieve", "index", path, "-o", out).exit_code == 0
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5), np.float32))
    result = invoke("retrieve", "query", out, tmp_path / "wrong.npy")
    assert result.exit_code == ExitCode.DATA
    assert "dimension 5" in result.stderr and "dimension 13" in result.stderr
    np.save(tmp_path / "q.npy", x[:2])
    result = invoke("retrieve", "query", out, tmp_path / "q.npy", "--metric", "l2")
    assert result.exit_code == ExitCode.USAGE and "cosine" in result.stderr
    result = invoke("retrieve", "index", path, "-o", tmp_path / "x.index", "--index", "lsh")
    assert result.exit_code == ExitCode.USAGE
    meta_path(out).unlink()
    result = invoke("retrieve", "query", out, tmp_path / "q.npy")
    assert result.exit_code == ExitCode.DATA and "metadata" in result.stderr
    assert "Traceback" not in result.output
    result = invoke("retrieve", "query", tmp_path / "none.index", tmp_path / "q.npy")
    assert result.exit_code == ExitCode.NO_INPUT
    # a features store is needed, or --model for images
    (tmp_path / "pic.png").write_bytes(b"\x89PNG not really")
    assert invoke("retrieve", "index", path, "-o", out, "--overwrite").exit_code == 0
    result = invoke("retrieve", "query", out, tmp_path / "pic.png")
    assert result.exit_code == ExitCode.USAGE and "--model" in result.stderr
    x[0, 0] = np.nan
    bad = store(tmp_path / "nan.zarr", x, [f"n{i}" for i in range(len(x))])
    result = invoke("retrieve", "index", bad, "-o", tmp_path / "nan.index")
    assert result.exit_code == ExitCode.DATA and "NaN" in result.stderr
    assert not (tmp_path / "nan.index").exists()


def planted(tmp_path):
    """Three classes on three axes; query q_b sits nearest a gallery item of class a."""
    gallery = np.array(
        [[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.2], [0, 0, 1], [0.1, 0, 0.9]],
        np.float32,
    )
    g_ids = ["ga1", "ga2", "gb1", "gb2", "gc1", "gc2"]
    queries = np.array([[1, 0.05, 0], [0.8, 0.5, 0], [0.05, 0, 1], [1, 1, 1]], np.float32)
    q_ids = ["qa", "qb", "qc", "qnone"]
    labels = dict(zip(g_ids, "aabbcc", strict=True)) | {"qa": "a", "qb": "b", "qc": "c"}
    lab = tmp_path / "labels.jsonl"
    lab.write_text("".join(json.dumps({"id": i, "label": v}) + "\n" for i, v in labels.items()))
    store(tmp_path / "train.zarr", gallery, g_ids)
    store(tmp_path / "test.zarr", queries, q_ids)
    return tmp_path / "train.zarr", tmp_path / "test.zarr", lab


def test_eval_recall_at_k_planted_by_hand(invoke, tmp_path) -> None:
    train, test, labels = planted(tmp_path)
    result = invoke(
        "retrieve", "eval", "--query", test, "--gallery", train, "--labels", labels, "-k", "1,2,3"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # qa → ga1 (hit@1); qb → ga1, ga2, gb1 (hit at 3); qc → gc1 (hit@1); qnone unlabelled
    assert report["recall"] == {"R@1": 2 / 3, "R@2": 2 / 3, "R@3": 1.0}
    assert report["queries"] == 3 and report["unlabelled_queries"] == 1
    assert "exact_recall" not in report
    approx = invoke(
        "retrieve", "eval", "--query", test, "--gallery", train, "--labels", labels,
        "--index", "hnsw", "-k", "1,3",
    )  # fmt: skip
    assert json.loads(approx.stdout)["exact_recall"] == {"1": 1.0, "3": 1.0}


def test_eval_split_field_exclude_self_and_average(invoke, tmp_path) -> None:
    rng = np.random.default_rng(5)
    centres = np.eye(4, dtype=np.float32) * 5
    ids = [f"v{i:02d}/clip{j}" for i in range(20) for j in range(2)]
    videos = [f"v{i:02d}" for i in range(20) for _ in range(2)]
    vclass = np.arange(20) // 2 % 4  # both clips of a video share its class
    x = centres[np.repeat(vclass, 2)] + rng.normal(size=(40, 4)).astype(np.float32) * 0.3
    path = store(tmp_path / "f.zarr", x, ids, video_ids=videos)
    manifest = tmp_path / "videos.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"id": f"v{i:02d}", "label": f"c{vclass[i]}", "split": "tv"[i % 2 == 0]})
            + "\n"
            for i in range(20)
        )
    )
    result = invoke(
        "retrieve", "eval", "--query", path, "--labels", manifest, "--split-field", "split",
        "--query-split", "v", "--gallery-split", "t", "--average-by", "video_id", "-k", "1,5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["queries"] == 10 and report["gallery_size"] == 10
    assert report["recall"]["R@1"] == 1.0
    # leave-one-out on the clip store: labels by clip id are absent, so none labelled
    loo = invoke("retrieve", "eval", "--query", path, "--exclude-self", "--labels", manifest)
    assert loo.exit_code == ExitCode.DATA and "label" in loo.stderr
    clip_labels = tmp_path / "clips.jsonl"
    clip_labels.write_text(
        "".join(
            json.dumps({"id": i, "label": f"c{c}"}) + "\n"
            for i, c in zip(ids, np.repeat(vclass, 2), strict=True)
        )
    )
    loo = invoke("retrieve", "eval", "--query", path, "--exclude-self", "--labels", clip_labels)
    report = json.loads(loo.stdout)
    assert report["queries"] == 40 and report["recall"]["R@1"] == 1.0
    one = invoke("retrieve", "eval", "--query", path, "--labels", clip_labels)
    assert one.exit_code == ExitCode.USAGE
    # the same store as query and gallery: each query finds itself, which is said once
    same = invoke("retrieve", "eval", "--query", path, "--gallery", path, "--labels", clip_labels)
    assert same.exit_code == 0 and json.loads(same.stdout)["recall"]["R@1"] == 1.0
    assert "40 of 40 queries are also in the gallery" in same.stderr
    assert "--exclude-self" in same.stderr and "also in the gallery" not in loo.stderr


def test_exclude_self_holds_when_k_reaches_the_gallery_size(invoke, tmp_path) -> None:
    """-k 5 on 5 items used to keep the query as its own 5th neighbour: R@5 = 1.0 although
    v4's class has no other member."""
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.7, 0.7]], np.float32)
    ids = [f"v{i}" for i in range(5)]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": i, "label": c}) + "\n"
                              for i, c in zip(ids, "aabbz", strict=True)))  # fmt: skip
    path = store(tmp_path / "f.zarr", x, ids)
    for ks in ("1,4", "1,5", "9"):
        r = invoke("retrieve", "eval", "--query", path, "--exclude-self", "--labels", labels,
                   "-k", ks)  # fmt: skip
        assert r.exit_code == 0, r.output
        assert max(json.loads(r.stdout)["recall"].values()) == 0.8, ks
    index = tmp_path / "g.index"
    assert invoke("retrieve", "index", path, "-o", index).exit_code == 0
    r = invoke("retrieve", "query", index, path, "-k", "5", "--exclude-self")
    lines = jsonl(r.stdout)
    assert r.exit_code == 0 and len(lines) == 5 * 4
    assert all(line["neighbour"] != line["query"] for line in lines)


def test_montage_from_crops_store(invoke, tmp_path, gallery) -> None:
    path, x, ids = gallery
    out = tmp_path / "g.index"
    assert invoke("retrieve", "index", path, "-o", out).exit_code == 0
    from vcl.io.store import StoreWriter

    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "crops.zarr", "vcl.crops/1", {}, 0) as writer:
        writer.define_columns({"image": ("uint8", (17, 17, 3)), "id": (str, ())})
        writer.append_group("v", image=rng.integers(0, 255, (57, 17, 17, 3), np.uint8), id=ids)
    np.save(tmp_path / "q.npy", x[:3])
    png = tmp_path / "m.png"
    result = invoke(
        "retrieve", "query", out, tmp_path / "q.npy", "-k", "5", "--montage", png,
        "--crops", tmp_path / "crops.zarr",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    import cv2

    image = cv2.imread(str(png))
    assert image.shape[0] == 3 * (112 + 30) + 2 * 6 and image.shape[1] == 6 * 112 + 12


def test_montage_media_matches_ids_with_a_folder_part(invoke, tmp_path) -> None:
    """--media keyed files by stem only: ``<class>/<name>`` ids (vcl videos, vcl images
    --class-folders) matched nothing and every cell was a placeholder. A stem two
    subfolders share must name neither file."""
    import cv2

    colours = {"a/x": (0, 0, 255), "a/y": (0, 255, 0), "b/x": (255, 0, 0), "b/z": (0, 255, 255)}
    root = tmp_path / "media"
    for item, bgr in colours.items():
        (root / item).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / f"{item}.png"), np.full((16, 16, 3), bgr, np.uint8))
    ids = [*colours, "x", "z"]  # plain ids: "x" is ambiguous, "z" only in b/
    x = np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.5, 0.5]])
    out = tmp_path / "g.index"
    assert invoke("retrieve", "index", store(tmp_path / "g.zarr", x, ids), "-o", out).exit_code == 0
    png = tmp_path / "m.png"
    result = invoke(
        "retrieve", "query", out, "--id", "a/x", "-k", "6", "--montage", png, "--media", root
    )
    assert result.exit_code == 0, result.output
    neighbours = [line["neighbour"] for line in jsonl(result.stdout)]
    assert sorted(neighbours) == sorted(ids)
    image = cv2.imread(str(png))
    centre = 112 // 2

    def cell(col: int) -> tuple[int, ...]:
        return tuple(int(v) for v in image[centre, col + centre])

    assert cell(0) == colours["a/x"]  # the query
    expected = {**colours, "z": colours["b/z"]}
    for r, gid in enumerate(neighbours):
        got = cell(112 + 12 + r * 112)
        if gid == "x":  # a/x or b/x: neither is drawn, a placeholder instead
            assert got not in colours.values(), got
        else:
            assert got == expected[gid], gid


def test_thumbnails_find_crops_by_embed_ids(tmp_path) -> None:
    from vcl.io.store import StoreWriter
    from vcl.retrieve import Thumbnails

    images = np.zeros((3, 9, 9, 3), np.uint8)
    images[:, 0, 0, 0] = [10, 20, 30]
    with StoreWriter(tmp_path / "crops.zarr", "vcl.crops/1", {}, 0) as writer:
        columns = {"image": ("uint8", (9, 9, 3)), "track_id": (str, ()), "frame": ("int32", ())}
        writer.define_columns(columns)
        writer.append_group(
            "v", image=images, track_id=np.array(["t1", "t1", "t2"]), frame=np.array([0, 5, 2])
        )
    thumbs = Thumbnails(tmp_path / "crops.zarr")
    assert thumbs.get("t1@5")[0, 0, 0] == 20 and thumbs.get("t2@2")[0, 0, 0] == 30
    assert thumbs.get("t9@0") is None


def test_image_query_through_random_resnet18(invoke, tmp_path) -> None:
    pytest.importorskip("vcl.embedding")
    import cv2

    from vcl.embedding import embed_paths, load_model

    rng = np.random.default_rng(1)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        image = cv2.GaussianBlur(rng.integers(0, 255, (41 + 3 * i, 29, 3), np.uint8), (0, 0), 2)
        cv2.imwrite(str(folder / f"im{i}.png"), image)
    model = load_model("random:resnet18", device="cpu")
    fs = embed_paths([folder], model, size=64)
    gal = write_feature_set(tmp_path / "g.zarr", fs, {"model": "random:resnet18", "size": 64})
    out = tmp_path / "g.index"
    assert invoke("retrieve", "index", gal, "-o", out).exit_code == 0
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    args = ["retrieve", "query", out, folder / "im3.png", bad, folder / "im1.png", "-k", "2"]
    result = invoke(*args, "--device", "cpu")  # model and size come from the gallery
    assert result.exit_code == 3
    assert "skipped" in result.stderr and "1 of 3" in result.stderr
    lines = jsonl(result.stdout)
    firsts = {line["query"]: line["neighbour"] for line in lines if line["rank"] == 1}
    assert firsts == {"im3": "im3", "im1": "im1"}
    assert lines[0]["score"] == pytest.approx(1.0, abs=1e-5)
    result = invoke(*args, "--model", "random:resnet18", "--size", "64", "--keep-going")
    assert result.exit_code == 0 and len(jsonl(result.stdout)) == 4


def _embedded(path, x, ids, model, layers=("pool",)):
    """A features store as vcl embed writes one: params name the model, one column per
    layer, the last the default."""
    from vcl.io.features import SCHEMA, feature_columns
    from vcl.io.store import StoreWriter

    params = {"model": model, "layers": list(layers)}
    with StoreWriter(path, SCHEMA, params) as w:
        w.define_columns(feature_columns(0, layers={k: x.shape[1] for k in layers}))
        w.append_group("v", id=np.array(ids), **{f"features_{k}": x for k in layers})
        w.set_attrs(layers=list(layers), default_layer=layers[-1])
    return path


def test_query_from_another_model_is_warned_about(invoke, tmp_path) -> None:
    x = np.random.default_rng(3).normal(size=(9, 7)).astype(np.float32)
    ids = [f"i{i}" for i in range(9)]
    two = _embedded(tmp_path / "g.zarr", x, ids, "random:resnet18", ("stage5", "pool"))
    out = tmp_path / "g.index"
    assert invoke("retrieve", "index", two, "-o", out).exit_code == 0
    assert json.loads(meta_path(out).read_text())["source"]["layer"] == "pool"  # the default
    same = _embedded(tmp_path / "same.zarr", x, ids, "random:resnet18")
    other = _embedded(tmp_path / "other.zarr", x, ids, "runs/odct")
    np.save(tmp_path / "plain.npy", x)
    for quiet in (same, tmp_path / "plain.npy"):  # same model, or nothing recorded
        result = invoke("retrieve", "query", out, quiet, "-k", "2")
        assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
    result = invoke("retrieve", "query", out, other, "-k", "2")
    assert result.exit_code == 0 and len(jsonl(result.stdout)) == 18
    warnings = [x for x in result.stderr.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1
    assert "other.zarr" in warnings[0] and "runs/odct" in warnings[0]
    assert "g.index" in warnings[0] and "random:resnet18" in warnings[0]
    result = invoke("retrieve", "query", out, two, "--layer", "stage5", "-k", "2")
    assert result.exit_code == 0
    assert "layer stage5" in result.stderr and "layer pool" in result.stderr


def test_eval_across_models_is_warned_about(invoke, tmp_path) -> None:
    x = np.random.default_rng(4).normal(size=(9, 7)).astype(np.float32)
    ids, labels = [f"i{i}" for i in range(9)], tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": i, "label": i[-1]}) + "\n" for i in ids))
    a = _embedded(tmp_path / "a.zarr", x, ids, "random:resnet18")
    b = _embedded(tmp_path / "b.zarr", x, ids, "weights:resnet18:r18.pt")
    args = ("retrieve", "eval", "--labels", labels, "--exclude-self", "-k", "1")
    result = invoke(*args, "--query", a, "--gallery", b)
    assert result.exit_code == 0, result.stderr
    assert (
        "queries (" in result.stderr
        and "a.zarr) were embedded with random:resnet18" in result.stderr
    )
    assert "b.zarr) with weights:resnet18:r18.pt" in result.stderr
    result = invoke(*args, "--query", a, "--gallery", a)
    assert result.exit_code == 0 and "embedded with" not in result.stderr


def test_eval_labels_from_a_crops_store(invoke, tmp_path) -> None:
    from tests.test_cluster_cli import _crops_store

    crops = _crops_store(tmp_path / "crops.zarr", ["cat"] * 3 + ["dog"] * 3)
    ids = [f"t{t}@{f}" for t in range(2) for f in (0, 2, 4)]
    x = np.repeat(np.eye(2, 3, dtype=np.float32), 3, axis=0) + 0.01 * np.arange(6)[:, None]
    features = store(tmp_path / "f.zarr", x, ids)
    result = invoke("retrieve", "eval", "--query", features, "--labels", crops, "--exclude-self")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["recall"]["R@1"] == 1.0


def test_eval_of_two_npy_arrays_needs_their_ids(invoke, tmp_path) -> None:
    """Both arrays are numbered by row, so query i and gallery item i shared id "i" and
    one label: R@1 read 0.333 where every query's neighbour is its own copy (1.0)."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=(6, 4)).astype(np.float32)
    np.save(tmp_path / "g.npy", g)
    np.save(tmp_path / "q.npy", g[[0, 2, 4]] + 0.01)
    labels = tmp_path / "labels.jsonl"
    rows = [(f"g{i}", c) for i, c in enumerate("abcdef")] + [
        (f"q{j}", c) for j, c in enumerate("ace")
    ]
    labels.write_text("".join(json.dumps({"id": i, "label": c}) + "\n" for i, c in rows))
    args = ["retrieve", "eval", "--query", tmp_path / "q.npy", "--gallery", tmp_path / "g.npy",
            "--labels", labels, "-k", "1"]  # fmt: skip
    r = invoke(*args)
    assert r.exit_code == ExitCode.USAGE and not r.stdout
    assert "numbered by row" in r.stderr and "--query-ids" in r.stderr
    (tmp_path / "q.txt").write_text("q0\nq1\nq2\n")
    (tmp_path / "g.txt").write_text("".join(f"g{i}\n" for i in range(6)))
    r = invoke(*args, "--query-ids", tmp_path / "q.txt", "--gallery-ids", tmp_path / "g.txt")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["recall"] == {"R@1": 1.0}


def test_index_paths_are_the_index_folders_and_queries_work_from_anywhere(
    invoke, tmp_path, monkeypatch
) -> None:
    """Regression: INDEX.json kept the store path and the gallery's model (a run
    directory) as typed, from the working directory, and query reused the model as is:
    ``vcl retrieve index feats.zarr -o sub/g.index``, then ``cd sub && vcl retrieve
    query g.index image.png`` failed with "run: no such run directory" (exit 66)."""
    pytest.importorskip("vcl.embedding")
    import shutil

    import cv2
    import torch

    from vcl.backbones import build_backbone
    from vcl.embedding import embed_paths, load_model

    monkeypatch.chdir(tmp_path)
    run, sub, other = Path("run"), Path("sub"), Path("elsewhere")
    for folder in (run, sub, other, Path("imgs")):
        folder.mkdir()
    (run / "config.json").write_text(json.dumps({"arch": "resnet18"}))
    torch.save({"backbone": build_backbone("resnet18").state_dict()}, run / "checkpoint.pt")
    rng = np.random.default_rng(2)
    for i in range(4):
        image = cv2.GaussianBlur(rng.integers(0, 255, (40, 36, 3), np.uint8), (0, 0), 2)
        cv2.imwrite(f"imgs/im{i}.png", image)
    fs = embed_paths(["imgs"], load_model("run", device="cpu"), size=32)
    write_feature_set(sub / "g.zarr", fs, {"model": "run", "size": 32})  # as vcl embed
    result = invoke("retrieve", "index", "sub/g.zarr", "-o", "sub/g.index", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    source = json.loads(meta_path(sub / "g.index").read_text())["source"]
    assert source["path"] == "g.zarr"  # beside the index
    assert Path(sub, source["model"]).resolve() == run.resolve()  # absolute: not below sub
    assert source["provenance"]["params"]["model"] == "run"  # the store's attrs, unchanged
    image = tmp_path / "imgs" / "im2.png"

    def first_neighbour(where: Path, index: str) -> str:
        monkeypatch.chdir(tmp_path / where)
        result = invoke("retrieve", "query", index, image, "-k", "1", "--device", "cpu")
        assert result.exit_code == 0, result.stderr
        assert "warning" not in result.stderr, result.stderr  # the gallery's own model
        return jsonl(result.stdout)[0]["neighbour"]

    assert first_neighbour(sub, "g.index") == "im2"
    assert first_neighbour(other, "../sub/g.index") == "im2"
    assert first_neighbour(Path("."), "sub/g.index") == "im2"
    # an index written before: no source.model, the store's model as typed; it is
    # looked up beside the index first, then from the working directory as before
    meta = json.loads(meta_path(tmp_path / "sub" / "g.index").read_text())
    del meta["source"]["model"]
    meta_path(tmp_path / "sub" / "g.index").write_text(json.dumps(meta))
    assert first_neighbour(Path("."), "sub/g.index") == "im2"  # run/ from here, as before
    shutil.copytree(tmp_path / "run", tmp_path / "sub" / "run")
    assert first_neighbour(other, "../sub/g.index") == "im2"  # sub/run, beside the index


def test_video_query_against_fisher_vectors_names_their_model(invoke, tmp_path) -> None:
    """A Fisher-vector gallery records its Fisher model (a zarr store) as its model; a
    video query used to try it as a pretrain run ("not a vcl pretrain run directory")."""
    from tests.corpus import good_video
    from vcl.io.store import StoreWriter

    model = tmp_path / "m.zarr"
    with StoreWriter(model, "vcl.fisher_model/1", {}) as writer:
        writer.write_array("pca_mean", np.zeros(3))
    fs = FeatureSet(ids=np.array(["v1", "v2"]), features=np.eye(2, 4, dtype=np.float32))
    path = write_feature_set(tmp_path / "fv.zarr", fs, params={"model": str(model)}, seed=0)
    assert invoke("retrieve", "index", path, "-o", tmp_path / "g.index").exit_code == 0
    video = good_video(tmp_path / "q.mp4")
    result = invoke("retrieve", "query", tmp_path / "g.index", video, "-k", "1")
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "m.zarr: is a zarr store, not a network" in result.stderr
    assert "vcl fisher encode" in result.stderr


def _npy_split(tmp_path, gallery, queries, g_labels, q_labels) -> list:
    """``retrieve eval`` arguments for .npy query and gallery arrays, with ids and labels."""
    np.save(tmp_path / "g.npy", gallery)
    np.save(tmp_path / "q.npy", queries)
    g_ids = [f"g{i}" for i in range(len(gallery))]
    q_ids = [f"q{i}" for i in range(len(queries))]
    (tmp_path / "g.txt").write_text("".join(i + "\n" for i in g_ids))
    (tmp_path / "q.txt").write_text("".join(i + "\n" for i in q_ids))
    pairs = [*zip(g_ids, g_labels, strict=True), *zip(q_ids, q_labels, strict=True)]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": i, "label": str(c)}) + "\n" for i, c in pairs))
    return ["retrieve", "eval", "--query", tmp_path / "q.npy", "--gallery", tmp_path / "g.npy",
            "--query-ids", tmp_path / "q.txt", "--gallery-ids", tmp_path / "g.txt",
            "--labels", labels, "--device", "cpu"]  # fmt: skip


def test_eval_exact_recall_against_brute_force_with_duplicated_rows(invoke, tmp_path) -> None:
    """The exact reference (a flat faiss index, no longer numpy's Q×N brute force) gives
    the same recall where rows are duplicated: ties go to the smaller gallery row."""
    from vcl.retrieve import (
        IndexParams,
        build_index,
        neighbour_recall,
        prepare,
        search,
        set_search_params,
    )

    rng = np.random.default_rng(4)
    distinct = rng.normal(size=(80, 8)).astype(np.float32)
    pick = rng.permutation(np.repeat(np.arange(80), 5))  # 400 rows, each 5 times
    gallery, queries = distinct[pick], rng.normal(size=(60, 8)).astype(np.float32)
    args = _npy_split(tmp_path, gallery, queries, pick % 7, np.arange(60) % 7)
    for metric in ("cosine", "l2"):
        r = invoke(*args, "--metric", metric, "--index", "ivf", "--nlist", "8", "--nprobe", "2",
                   "-k", "1,5,10,20")  # fmt: skip
        assert r.exit_code == 0, r.output
        config = IndexParams(index_type="ivf", metric=metric, nlist=8, nprobe=2).resolved(400, 8)
        index = build_index(prepare(gallery, metric), config)
        set_search_params(index, config, {})
        _, rows = search(index, prepare(queries, metric), 20)
        _, exact = brute_force(gallery, queries, 20, metric)
        expected = neighbour_recall(rows, exact, [1, 5, 10, 20])
        assert json.loads(r.stdout)["exact_recall"] == expected
        assert min(expected.values()) < 1.0  # the index does miss some


def test_eval_exact_recall_of_a_flat_index_is_one(invoke, tmp_path) -> None:
    """Gallery rows equal but for float32 rounding noise: numpy's brute force (the old
    reference) and faiss rank them in different orders, so a flat index scored short of
    its own exact neighbours."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(20, 32)).astype(np.float32)
    gallery = base[rng.integers(0, 20, 400)]
    gallery = gallery + 1e-7 * rng.normal(size=gallery.shape).astype(np.float32)
    queries = rng.normal(size=(30, 32)).astype(np.float32)
    args = _npy_split(tmp_path, gallery, queries, np.arange(400) % 3, np.arange(30) % 3)
    for metric in ("cosine", "l2"):
        r = invoke(*args, "--metric", metric, "--exact-recall", "-k", "1,5,10")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["exact_recall"] == {"1": 1.0, "5": 1.0, "10": 1.0}


def test_eval_exact_recall_makes_no_query_by_gallery_matrix(invoke, tmp_path) -> None:
    """The exact reference used to be numpy's brute force: a Q×N score matrix and its
    full lexsort (~400 MB at 10k × 2.5k); faiss scores a block at a time."""
    import tracemalloc

    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(4000, 16)).astype(np.float32)
    queries = rng.normal(size=(1000, 16)).astype(np.float32)
    args = _npy_split(tmp_path, gallery, queries, np.arange(4000) % 9, np.arange(1000) % 9)
    tracemalloc.start()
    try:
        r = invoke(*args, "--index", "ivf", "--nlist", "16", "-k", "1,10")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.exit_code == 0, r.output
    assert "exact_recall" in json.loads(r.stdout)
    assert peak < 1000 * 4000 * 4 / 2  # half of one float32 Q×N matrix


def test_query_blocks_start_at_multiples_and_a_short_tail_joins(monkeypatch) -> None:
    from vcl.cli import retrieve as cli_retrieve

    assert cli_retrieve.QUERY_BLOCK % 4096 == 0  # faiss's own query batches
    monkeypatch.setattr(cli_retrieve, "QUERY_BLOCK", 4)
    assert cli_retrieve._blocks(0) == []
    assert cli_retrieve._blocks(3) == [(0, 3)]
    assert cli_retrieve._blocks(9) == [(0, 4), (4, 9)]  # a tail of 1 joins the block before
    assert cli_retrieve._blocks(10) == [(0, 4), (4, 8), (8, 10)]


@pytest.mark.parametrize(("metric", "k", "exclude"), [("l2", 4, True), ("cosine", 60, False)])
def test_query_lines_as_one_search_of_all_writes_them(
    invoke, tmp_path, gallery, monkeypatch, metric, k, exclude
) -> None:
    """Searched and written a block at a time, the lines are byte for byte those of one
    search of every query (json.dumps of each match), ids with quotes and accents, -k
    beyond the gallery, --exclude-self."""
    from vcl.cli import retrieve as cli_retrieve
    from vcl.retrieve import exclude_rows, prepare, read_index, search

    _, x, _ = gallery
    odd = np.array([f'g"{i}é' if i % 3 else str(i) for i in range(57)])
    np.save(tmp_path / "g.npy", x)
    (tmp_path / "g.txt").write_text("".join(i + "\n" for i in odd), encoding="utf-8")
    index = tmp_path / "g.index"
    r = invoke("retrieve", "index", tmp_path / "g.npy", "--ids", tmp_path / "g.txt", "-o", index,
               "--metric", metric)  # fmt: skip
    assert r.exit_code == 0, r.output
    queries = np.concatenate([x[:20], x[:11] + 0.01])  # 31: blocks of 4, a tail of 3
    monkeypatch.setattr(cli_retrieve, "QUERY_BLOCK", 4, raising=False)
    np.save(tmp_path / "q.npy", queries)
    qids = odd[np.r_[0:20, 30:41]]
    (tmp_path / "q.txt").write_text("".join(i + "\n" for i in qids), encoding="utf-8")
    args = ["retrieve", "query", index, tmp_path / "q.npy", "--ids", tmp_path / "q.txt",
            "-k", str(k)] + (["--exclude-self"] if exclude else [])  # fmt: skip
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    g = read_index(index)
    scores, rows = search(g.index, prepare(queries, metric), k + exclude)
    if exclude:
        self_rows = np.array([list(odd).index(q) for q in qids])
        scores, rows = exclude_rows(scores, rows, self_rows, k)
    expected = "".join(
        json.dumps({"schema": "vcl.match/1", "query": str(q), "neighbour": str(odd[row]),
                    "rank": rank, "score": round(float(s), 6), "metric": metric}) + "\n"
        for q, srow, rrow in zip(qids, scores, rows, strict=True)
        for rank, (s, row) in enumerate(zip(srow, rrow, strict=True), start=1) if row >= 0
    )  # fmt: skip
    assert r.stdout == expected
    assert len(r.stdout.splitlines()) == 31 * min(k, 57)


def test_query_writes_each_block_before_searching_the_next(
    invoke, tmp_path, gallery, monkeypatch
) -> None:
    """100k queries used to be searched, then every line built as a dict (836 MB), before
    the first was written; now a search failing at the second block leaves the first
    block's lines written."""
    import vcl.retrieve
    from vcl.cli import retrieve as cli_retrieve

    path, x, _ = gallery
    index = tmp_path / "g.index"
    assert invoke("retrieve", "index", path, "-o", index).exit_code == 0
    np.save(tmp_path / "q.npy", x[:12])
    whole = invoke("retrieve", "query", index, tmp_path / "q.npy", "-k", "3")
    assert whole.exit_code == 0 and len(whole.stdout.splitlines()) == 36
    monkeypatch.setattr(cli_retrieve, "QUERY_BLOCK", 4, raising=False)
    real, calls = vcl.retrieve.search, []

    def failing_second(index, queries, k):
        calls.append(len(queries))
        if len(calls) == 2:
            raise MemoryError("the second block")
        return real(index, queries, k)

    monkeypatch.setattr(vcl.retrieve, "search", failing_second)
    r = invoke("retrieve", "query", index, tmp_path / "q.npy", "-k", "3")
    assert r.exit_code != 0 and calls == [4, 4]
    assert r.stdout.splitlines() == whole.stdout.splitlines()[:12]  # the first 4 queries


def test_index_makes_its_folder_as_other_stages_do(invoke, tmp_path, gallery) -> None:
    path, _, _ = gallery
    out = tmp_path / "new" / "sub" / "g.index"
    assert invoke("retrieve", "index", path, "-o", out).exit_code == 0 and out.is_file()
    (tmp_path / "afile").write_text("")
    result = invoke("retrieve", "index", path, "-o", tmp_path / "afile" / "g.index")
    assert result.exit_code == ExitCode.CANNOT_CREATE, result.stderr
    assert "afile/g.index: cannot create its folder" in result.stderr
