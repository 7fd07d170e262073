"""Sharding: every per-video stage's shards merged equal the single run; every reading
command given the shards (``vcl track p0.zarr p1.zarr p2.zarr``) gives what it gives on
their merge; mixed, mismatched or overlapping inputs are refused by both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vcl.errors import ExitCode
from vcl.io.manifest import TrackRecord, read_records
from vcl.io.store import Store, partial_path

PROPOSALS = ["--max-side", "0", "--min-area", "100"]
CROPS = ["--size", "16", "--per-track", "3"]
IDT = ["--track-length", "5", "--no-humans"]
FIT = ["--columns", "traj,hog", "--k", "2", "--pca-dim", "4", "--iters", "3", "--inits", "1"]
ENCODE = ["--sketch-dim", "0", "--device", "cpu"]
EMBED = ["--device", "cpu", "--batch-size", "64"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Synthetic videos; every per-video stage as one run (X.zarr / X.jsonl) and as 3
    shards (X0, X1, X2), each shard from the single run of the stage before."""
    from typer.testing import CliRunner

    from vcl.cli.app import app

    root = tmp_path_factory.mktemp("merge")

    def vcl(*args) -> None:
        result = CliRunner().invoke(app, [str(a) for a in args] + ["-q"])
        assert result.exit_code == 0, result.output

    vcl("synth", root / "d", "--videos", "4", "--width", "64", "--height", "48", "--frames", "9")
    videos = root / "d" / "videos.jsonl"
    track = ["--videos", videos, "--min-len", "3", "--no-flow"]
    model = root / "fm.zarr"
    stages = {  # name -> (output, command line without -o and --shard)
        "p": ("p.zarr", ["proposals", videos, *PROPOSALS]),
        "t": ("t.jsonl", ["track", root / "p.zarr", *track]),
        "c": ("c.zarr", ["crops", root / "t.jsonl", "--videos", videos, *CROPS]),
        "i": ("i.zarr", ["idt", videos, *IDT]),
        "f": ("f.zarr", ["fisher", "encode", root / "i.zarr", "--model", model, *ENCODE]),
        "e": ("e.zarr", ["embed", "random:resnet18", root / "c.zarr", *EMBED]),
    }
    for name, (output, command) in stages.items():
        vcl(*command, "-o", root / output)
        suffix = Path(output).suffix
        for i in range(3):
            vcl(*command, "-o", root / f"{name}{i}{suffix}", "--shard", f"{i}/3")
        if name == "i":
            vcl("fisher", "fit", root / "i.zarr", "-o", model, *FIT, "--device", "cpu")
    return {"root": root, "videos": videos, "model": model}


def _same_store_rows(merged: Store, single: Store) -> None:
    """Same groups (in any order), same rows per group, same plain arrays."""
    assert sorted(merged.group_ids) == sorted(single.group_ids)
    assert merged.n_rows == single.n_rows
    for gid in single.group_ids:
        a, b = merged.read_group(gid), single.read_group(gid)
        for column in single.columns:
            x, y = a[column], b[column]
            if x.dtype.kind == "f":
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=f"{gid} {column}")
            else:
                assert np.array_equal(x.astype(y.dtype), y), (gid, column)
    assert merged.arrays == single.arrays
    assert not merged.verify()


@pytest.mark.parametrize(
    "name,kind",
    [("p", "proposals"), ("c", "crops"), ("i", "idt"), ("f", "features"), ("e", "features")],
)
def test_three_store_shards_merge_to_the_single_run(name, kind, runs, invoke):
    root = runs["root"]
    shards = [root / f"{name}{i}.zarr" for i in range(3)]
    assert all(Store(s).group_ids for s in shards), "a shard is empty: the test proves less"
    result = invoke("merge", *shards, "-o", root / f"merged_{name}.zarr")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    merged, single = Store(root / f"merged_{name}.zarr"), Store(root / f"{name}.zarr")
    assert summary["groups"] == len(single.group_ids) and summary["rows"] == single.n_rows
    # groups come in input order: shard 0's, then shard 1's, then shard 2's
    assert merged.group_ids == [g for s in shards for g in Store(s).group_ids]
    assert merged.attrs["params"] == {
        k: v for k, v in single.attrs["params"].items() if k != "shard"
    }
    assert merged.attrs["vcl_schema"] == f"vcl.{kind}/1"
    assert merged.attrs["seed"] == single.attrs["seed"]
    if name in ("p", "i"):  # per-video information is united
        assert merged.attrs["videos"] == single.attrs["videos"]
    _same_store_rows(merged, single)


def test_three_track_shards_merge_to_the_single_run(runs, invoke):
    root = runs["root"]
    shards = [root / f"t{i}.jsonl" for i in range(3)]
    result = invoke("merge", *shards, "-o", root / "sub" / "tracks.jsonl")
    assert result.exit_code == 0, result.stderr
    merged = read_records(root / "sub" / "tracks.jsonl", TrackRecord)
    single = read_records(root / "t.jsonl", TrackRecord)
    assert sorted(r.to_json().items().__repr__() for r in merged) == sorted(
        r.to_json().items().__repr__() for r in single
    )
    assert len(merged) == len(single) > 0


def test_merged_video_manifest_paths_follow_the_new_folder(runs, invoke, tmp_path):
    lines = Path(runs["videos"]).read_text().splitlines()
    (runs["root"] / "d" / "a.jsonl").write_text("\n".join(lines[:3]) + "\n")
    (runs["root"] / "d" / "b.jsonl").write_text("\n".join(lines[3:]) + "\n")
    out = tmp_path / "elsewhere" / "all.jsonl"
    result = invoke(
        "merge", runs["root"] / "d" / "a.jsonl", runs["root"] / "d" / "b.jsonl", "-o", out
    )
    assert result.exit_code == 0, result.stderr
    from vcl.io.manifest import VideoRecord

    merged = read_records(out, VideoRecord)
    original = read_records(runs["videos"], VideoRecord)
    assert [(r.id, r.path) for r in merged] == [(r.id, r.path) for r in original]


def test_merged_hand_written_manifest_paths_follow_the_new_folder(invoke, tmp_path):
    """Regression: lines without ``schema`` kept their relative ``path``, so the merged
    file named other (or no) videos from its own folder."""
    for shard, vid in (("ma", "a"), ("mb", "b")):
        (tmp_path / shard).mkdir()
        line = {"video_id" if vid == "b" else "id": vid, "path": f"../{vid}.mp4", "label": "x"}
        (tmp_path / shard / "v.jsonl").write_text(json.dumps(line) + "\n")
    (tmp_path / "mc" / "deep").mkdir(parents=True)
    (tmp_path / "mc" / "a.mp4").write_bytes(b"another video of the same name")
    (tmp_path / "mc" / "b.mp4").write_bytes(b"another video of the same name")
    out = tmp_path / "mc" / "deep" / "v.jsonl"  # ../a.mp4 from here is the decoy
    result = invoke("merge", tmp_path / "ma" / "v.jsonl", tmp_path / "mb" / "v.jsonl", "-o", out)
    assert result.exit_code == 0, result.stderr
    from vcl.io.manifest import VideoRecord

    merged = read_records(out, VideoRecord)
    assert [(r.id, r.path) for r in merged] == [(v, str(tmp_path / f"{v}.mp4")) for v in ("a", "b")]
    assert [r.label for r in merged] == ["x", "x"]
    again = invoke("merge", tmp_path / "mb" / "v.jsonl", tmp_path / "mb" / "v.jsonl", "-o", out)
    assert again.exit_code == ExitCode.CANNOT_CREATE  # exists already
    overlap = invoke("merge", *[tmp_path / "mb" / "v.jsonl"] * 2, "-o", tmp_path / "o.jsonl")
    assert overlap.exit_code == ExitCode.DATA and "'b' is also in" in overlap.stderr


def _tracks(*ids: str) -> str:
    return "".join(
        json.dumps(TrackRecord(id=i, video_id="v", frames=[0, 1], boxes=[[0, 0, 4, 4]] * 2)
                   .to_json()) + "\n"
        for i in ids
    )  # fmt: skip


def test_merge_reads_jsonl_from_stdin_and_writes_it_to_stdout(invoke, tmp_path, monkeypatch):
    """Regression: ``-`` was refused both ways ("-: no such file or store", "merge writes
    a file"), though every reader of JSONL takes stdin and every JSONL writer stdout."""
    (tmp_path / "a.jsonl").write_text(_tracks("a1", "a2"))
    (tmp_path / "b.jsonl").write_text(_tracks("b1"))
    a, b, out = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "m.jsonl"
    result = invoke("merge", a, "-", "-o", out, input=_tracks("s1", "s2"))
    assert result.exit_code == 0, result.stderr
    assert [r.id for r in read_records(out, TrackRecord)] == ["a1", "a2", "s1", "s2"]
    assert json.loads(result.stdout)["records"] == 4
    # to stdout: the merged lines only, the summary on stderr
    result = invoke("merge", a, b, "-o", "-")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [x["id"] for x in lines] == ["a1", "a2", "b1"]
    assert {x["schema"] for x in lines} == {"vcl.track/1"}
    assert '"records": 3' in result.stderr
    result = invoke("merge", "-", b, "-o", "-", input=_tracks("s1"))
    assert result.exit_code == 0, result.stderr
    assert [json.loads(x)["id"] for x in result.stdout.splitlines()] == ["s1", "b1"]
    # stdin's relative paths are the working directory's, typed or not
    monkeypatch.chdir(tmp_path)
    typed = json.dumps({"schema": "vcl.video/1", "id": "v", "path": "clips/v.mp4"}) + "\n"
    result = invoke("merge", "-", "-o", tmp_path / "sub" / "v.jsonl", input=typed)
    assert result.exit_code == 0, result.stderr
    from vcl.io.manifest import VideoRecord

    merged = read_records(tmp_path / "sub" / "v.jsonl", VideoRecord)
    assert [r.path for r in merged] == [str(tmp_path / "clips" / "v.mp4")]
    untyped = json.dumps({"id": "v", "path": "clips/v.mp4"}) + "\n"
    result = invoke("merge", "-", "-o", "-", input=untyped)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["path"] == str(tmp_path / "clips" / "v.mp4")


@pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd")
def test_merge_reads_a_pipe_whole(invoke, tmp_path):
    """Regression: a pipe (bash's ``<(cmd)``, /dev/fd/N) was read twice, schemas then
    records, and the second read found it drained: "records": 0, exit 0."""
    import os

    read, write = os.pipe()
    os.write(write, _tracks("p1", "p2").encode())
    os.close(write)
    try:
        result = invoke("merge", f"/dev/fd/{read}", "-o", tmp_path / "m.jsonl")
    finally:
        os.close(read)
    assert result.exit_code == 0, result.stderr
    assert [r.id for r in read_records(tmp_path / "m.jsonl", TrackRecord)] == ["p1", "p2"]


def test_merge_stdin_and_stdout_mistakes_are_clear(invoke, tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_text(_tracks("a1", "a2"))
    result = invoke("merge", "-", "-", "-o", tmp_path / "m.jsonl", input=_tracks("s"))
    assert result.exit_code == ExitCode.USAGE and "read once" in result.stderr
    # an overlap found late writes nothing to stdout, and names stdin as -
    result = invoke("merge", a, "-", "-o", "-", input=_tracks("s", "a2"))
    assert result.exit_code == ExitCode.DATA and not result.stdout
    assert "-: id 'a2' is also in" in result.stderr
    # empty stdin is a failed upstream step, not an empty shard: nothing is written
    for out in (tmp_path / "empty.jsonl", "-"):
        result = invoke("merge", "-", "-o", out, input="")
        assert result.exit_code == ExitCode.DATA and not result.stdout
        assert "error: -: is empty; check the step that wrote it" in result.stderr
    assert not (tmp_path / "empty.jsonl").exists()
    result = invoke("merge", "-", "-o", "-", input='{"id": "x"}\n{bad\n')
    assert result.exit_code == ExitCode.DATA and "-: line 2" in result.stderr
    # stores need paths, in and out
    from vcl.io.features import FeatureSet, write_feature_set

    fs = FeatureSet(ids=np.array(["x"]), features=np.zeros((1, 2), np.float32))
    zarr = write_feature_set(tmp_path / "f.zarr", fs, params={})
    result = invoke("merge", zarr, "-o", "-")
    assert result.exit_code == ExitCode.USAGE and "zarr store" in result.stderr
    assert not (tmp_path / "-").exists() and not Path("-").exists()
    result = invoke("merge", zarr, "-", "-o", tmp_path / "m.zarr", input=_tracks("s"))
    assert result.exit_code == ExitCode.USAGE and "stores with JSONL" in result.stderr


def test_merge_refuses_mixed_mismatched_and_overlapping_inputs(runs, invoke, tmp_path):
    root = runs["root"]
    p0, p1 = root / "p0.zarr", root / "p1.zarr"
    out = tmp_path / "m.zarr"
    # another schema
    result = invoke("merge", p0, root / "d" / "videos.jsonl", "-o", out)
    assert result.exit_code == ExitCode.USAGE
    other = tmp_path / "other.zarr"
    from vcl.io.store import StoreWriter

    with StoreWriter(other, "vcl.idt/1", {}, 0) as writer:
        writer.define_columns({"frame": ("int32", ())})
    result = invoke("merge", p0, other, "-o", out)
    assert result.exit_code == ExitCode.DATA and "vcl.idt/1" in result.stderr
    # other parameters
    changed = tmp_path / "changed.zarr"
    extra = ["--max-side", "0", "--min-area", "50", "--shard", "1/3"]
    assert invoke("proposals", runs["videos"], "-o", changed, *extra, "-q").exit_code == 0
    result = invoke("merge", p0, changed, "-o", out)
    assert result.exit_code == ExitCode.DATA and "min_area" in result.stderr
    # overlapping ids: refused, or the first copy kept with --allow-overlap
    result = invoke("merge", p0, p1, p0, "-o", out)
    assert result.exit_code == ExitCode.DATA and "also in" in result.stderr
    assert not out.exists()
    result = invoke("merge", p0, p1, p0, "-o", out, "--allow-overlap")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["skipped_overlapping"] == len(Store(p0).group_ids)
    assert Store(out).group_ids == Store(p0).group_ids + Store(p1).group_ids
    # an existing output, and a partial input
    assert invoke("merge", p0, p1, "-o", out).exit_code == ExitCode.CANNOT_CREATE
    partial_path(p0).mkdir()
    try:
        result = invoke("merge", partial_path(p0), p1, "-o", tmp_path / "x.zarr")
        assert result.exit_code == ExitCode.DATA and "incomplete" in result.stderr
    finally:
        partial_path(p0).rmdir()
    # JSONL of two schemas
    t0 = root / "t0.jsonl"
    result = invoke("merge", t0, runs["videos"], "-o", tmp_path / "x.jsonl")
    assert result.exit_code == ExitCode.DATA and "vcl.video/1" in result.stderr
    result = invoke("merge", t0, t0, "-o", tmp_path / "x.jsonl")
    assert result.exit_code == ExitCode.DATA or not read_records(t0, TrackRecord)


# ------------------------------------------------ several inputs read as their merge


def _image_features(path: Path, groups: dict[str, list[str]]) -> Path:
    """A features store like ``vcl embed`` writes for images: batches of images as
    groups whose ids carry the shard, so stores of overlapping runs share no group id
    yet may share row ids."""
    from vcl.io.features import feature_columns
    from vcl.io.store import StoreWriter

    rng = np.random.default_rng(len(groups))
    with StoreWriter(path, "vcl.features/1", {"backbone": "x"}, 0) as writer:
        writer.define_columns(feature_columns(3))
        for gid, ids in groups.items():
            rows = rng.random((len(ids), 3)).astype(np.float32)
            writer.append_group(gid, id=np.array(ids), features=rows)
    return path


def test_merge_refuses_row_ids_held_twice_under_other_groups(invoke, tmp_path):
    whole = _image_features(tmp_path / "all.zarr", {"images000000": ["im0", "im1", "im2"]})
    shard = _image_features(tmp_path / "s.zarr", {"images000000-shard0of2": ["im0", "im2"]})
    out = tmp_path / "m.zarr"
    result = invoke("merge", whole, shard, "-o", out)
    assert result.exit_code == ExitCode.DATA, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and "'im0'" in line
    assert str(whole) in line and str(shard) in line
    assert not out.exists() and not partial_path(out).exists()
    # reading both at once (vcl cluster, probe, ...) is refused the same way
    result = invoke("cluster", whole, shard, "-o", tmp_path / "c.zarr", "--k", "2", "-q")
    assert result.exit_code == ExitCode.DATA and "'im0' is also in" in result.stderr


def test_merge_allow_overlap_keeps_the_first_copy_of_each_row_id(invoke, tmp_path):
    shard = _image_features(
        tmp_path / "s.zarr", {"images000000-shard0of2": ["im0"], "images000002-shard0of2": ["im4"]}
    )
    whole = _image_features(
        tmp_path / "all.zarr", {"images000000": ["im0", "im1"], "images000002": ["im4"]}
    )
    out = tmp_path / "m.zarr"
    result = invoke("merge", shard, whole, "-o", out, "--allow-overlap", "-q")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped_rows"] == 2 and summary["rows"] == 3
    merged = Store(out)
    ids = [str(i) for i in merged["id"][:]]
    assert ids == ["im0", "im4", "im1"]  # the first input's copies, then what is new
    # a group left with no rows of its own is dropped like an overlapping group
    assert merged.group_ids == ["images000000-shard0of2", "images000002-shard0of2", "images000000"]
    first, second = Store(shard), Store(whole)
    np.testing.assert_array_equal(merged["features"][:2], first["features"][:])
    np.testing.assert_array_equal(merged["features"][2:], second["features"][1:2])
    assert not merged.verify()


@pytest.fixture(scope="module")
def merged(runs) -> dict[str, Path]:
    """``vcl merge`` of the 3 shards of every stage."""
    from typer.testing import CliRunner

    from vcl.cli.app import app

    root = runs["root"]
    out = {}
    for name, suffix in [("p", ".zarr"), ("t", ".jsonl"), ("i", ".zarr"), ("f", ".zarr")]:
        out[name] = root / f"all_{name}{suffix}"
        shards = [str(root / f"{name}{i}{suffix}") for i in range(3)]
        result = CliRunner().invoke(app, ["merge", *shards, "-o", str(out[name]), "-q"])
        assert result.exit_code == 0, result.output
    out["c"] = root / "all_c.zarr"  # crops of the merged tracks: the input of embed below
    result = CliRunner().invoke(
        app, ["crops", str(out["t"]), "--videos", str(runs["videos"]), "-o", str(out["c"]), *CROPS]
    )
    assert result.exit_code == 0, result.output
    return out


def _shards(runs, name: str, suffix: str = ".zarr") -> list[Path]:
    return [runs["root"] / f"{name}{i}{suffix}" for i in range(3)]


def _ok(result) -> str:
    assert result.exit_code == 0, result.stderr
    return result.stdout


def _compare_stores(a: Path, b: Path) -> None:
    """Same groups in the same order, same rows and arrays (provenance aside)."""
    x, y = Store(a), Store(b)
    assert x.group_ids == y.group_ids
    _same_store_rows(x, y)
    for name in x.arrays:
        u, v = x[name][...], y[name][...]
        assert u.shape == v.shape and np.array_equal(u, v, equal_nan=u.dtype.kind == "f"), name


def test_track_and_its_eval_read_several_inputs(runs, merged, invoke, tmp_path):
    videos = runs["videos"]
    args = ["--videos", videos, "--min-len", "3", "--no-flow"]
    many = _ok(invoke("track", *_shards(runs, "p"), *args))
    one = _ok(invoke("track", merged["p"], *args))
    assert many == one and many.strip()
    gt = videos.parent / "gt_tracks.jsonl"
    scores = _ok(invoke("track", "eval", *_shards(runs, "t", ".jsonl"), "--gt", gt))
    assert scores == _ok(invoke("track", "eval", merged["t"], "--gt", gt))


def test_proposals_eval_reads_several_stores(runs, merged, invoke):
    gt = runs["videos"].parent / "gt_tracks.jsonl"
    many = json.loads(_ok(invoke("proposals", "eval", *_shards(runs, "p"), "--gt", gt)))
    one = json.loads(_ok(invoke("proposals", "eval", merged["p"], "--gt", gt)))
    assert many.pop("store") == [str(p) for p in _shards(runs, "p")]
    one.pop("store")
    assert many == one and many["videos"] == 4


def test_crops_reads_several_track_files(runs, merged, invoke, tmp_path):
    """crops t0 t1 t2 (the track shards) = crops of their merge."""
    out = tmp_path / "c.zarr"
    _ok(
        invoke(
            "crops", *_shards(runs, "t", ".jsonl"), "--videos", runs["videos"], "-o", out, *CROPS
        )
    )
    _compare_stores(out, merged["c"])


def test_fisher_fit_and_encode_read_several_stores(runs, merged, invoke, tmp_path):
    shards = _shards(runs, "i")
    fit = [*FIT, "--device", "cpu"]
    _ok(invoke("fisher", "fit", *shards, "-o", tmp_path / "m1.zarr", *fit))
    _ok(invoke("fisher", "fit", merged["i"], "-o", tmp_path / "m2.zarr", *fit))
    _compare_stores(tmp_path / "m1.zarr", tmp_path / "m2.zarr")  # same sample, same model
    model = runs["model"]
    _ok(invoke("fisher", "encode", *shards, "--model", model, "-o", tmp_path / "f1.zarr", *ENCODE))
    _ok(
        invoke(
            "fisher", "encode", merged["i"], "--model", model, "-o", tmp_path / "f2.zarr", *ENCODE
        )
    )
    _compare_stores(tmp_path / "f1.zarr", tmp_path / "f2.zarr")
    assert Store(tmp_path / "f1.zarr").attrs["params"]["store"] == [str(p) for p in shards]


def test_embed_reads_several_crops_stores(runs, invoke, tmp_path):
    """embed c0 c1 c2 (the crops shards) = the merge of embed --shard I/3 of their merge."""
    out = tmp_path / "e.zarr"
    _ok(invoke("embed", "random:resnet18", *_shards(runs, "c"), "-o", out, *EMBED))
    merged = tmp_path / "merged.zarr"
    _ok(invoke("merge", *_shards(runs, "e"), "-o", merged))
    _compare_stores(out, merged)
    assert Store(out).attrs["params"]["input"] == [str(p) for p in _shards(runs, "c")]


def test_cluster_probe_and_retrieve_read_several_features_stores(runs, merged, invoke, tmp_path):
    shards = _shards(runs, "f")
    cluster = ["--k", "2", "--device", "cpu", "--jsonl"]
    assert _ok(invoke("cluster", "run", *shards, *cluster)) == _ok(
        invoke("cluster", "run", merged["f"], *cluster)
    )
    # probe: train on two shards (repeated --train) = train on their merge
    two = tmp_path / "f01.zarr"
    _ok(invoke("merge", shards[0], shards[1], "-o", two))
    labels = ["--labels", runs["videos"], "--k", "1"]
    many = json.loads(
        _ok(
            invoke(
                "probe",
                "knn",
                "--train",
                shards[0],
                "--train",
                shards[1],
                "--test",
                shards[2],
                *labels,
            )
        )
    )
    one = json.loads(_ok(invoke("probe", "knn", "--train", two, "--test", shards[2], *labels)))
    assert many["layers"] == one["layers"]
    # retrieve: an index over the shards holds the merge's ids and answers alike
    for name, inputs in (("a", shards), ("b", [merged["f"]])):
        _ok(
            invoke(
                "retrieve", "index", *inputs, "-o", tmp_path / f"{name}.index", "--device", "cpu"
            )
        )
    meta = [json.loads((tmp_path / f"{n}.index.json").read_text()) for n in "ab"]
    assert meta[0]["ids"] == meta[1]["ids"]
    query = ["-k", "3", "--device", "cpu"]
    assert _ok(invoke("retrieve", "query", tmp_path / "a.index", merged["f"], *query)) == _ok(
        invoke("retrieve", "query", tmp_path / "b.index", merged["f"], *query)
    )


def test_several_inputs_are_refused_like_a_merge(runs, invoke, tmp_path):
    root = runs["root"]
    p0, p1 = root / "p0.zarr", root / "p1.zarr"
    track = ["--videos", runs["videos"], "--min-len", "3", "--no-flow"]
    # another schema
    result = invoke("track", p0, root / "i0.zarr", *track)
    assert result.exit_code == ExitCode.DATA and "vcl.idt" in result.stderr
    assert "i0.zarr" in result.stderr.splitlines()[-1]
    result = invoke("fisher", "fit", root / "i0.zarr", root / "c0.zarr", "-o", tmp_path / "m.zarr")
    assert result.exit_code == ExitCode.DATA and "vcl.crops/1 store" in result.stderr
    # overlapping groups, ids in two JSONL files, rows in two features stores
    result = invoke("track", p0, p1, p0, *track)
    assert result.exit_code == ExitCode.DATA and "also in" in result.stderr
    t0 = root / "t0.jsonl"
    result = invoke("crops", t0, t0, "--videos", runs["videos"], "-o", tmp_path / "c.zarr", *CROPS)
    assert result.exit_code == ExitCode.DATA and "also in" in result.stderr
    assert not (tmp_path / "c.zarr").exists()
    f0 = root / "f0.zarr"
    result = invoke("cluster", "run", f0, f0, "--k", "2", "--jsonl", "--device", "cpu")
    assert result.exit_code == ExitCode.DATA and "also in" in result.stderr
    # other parameters
    changed = tmp_path / "changed.zarr"
    extra = [*PROPOSALS[:2], "--min-area", "50", "--shard", "1/3"]
    _ok(invoke("proposals", runs["videos"], "-o", changed, *extra, "-q"))
    result = invoke(
        "proposals", "eval", p0, changed, "--gt", runs["videos"].parent / "gt_tracks.jsonl"
    )
    assert result.exit_code == ExitCode.DATA and "min_area" in result.stderr
    # embed: inputs of two kinds
    result = invoke(
        "embed", "random:resnet18", root / "c0.zarr", runs["videos"], "-o", tmp_path / "e.zarr"
    )
    assert result.exit_code == ExitCode.USAGE and "different kinds" in result.stderr


def test_merge_holds_stores_to_the_version_vcl_reads_for_their_kind(invoke, tmp_path):
    """Regression: merge opened its inputs without a version and merged proposals/2
    shards into a proposals/2 store. A known kind of another major version is refused,
    naming the input; a kind vcl does not write (another tool's descriptors, which
    fisher fit reads as columns) is merged as plain columns."""
    from vcl.io.store import StoreWriter

    def shards(schema: str) -> list[Path]:
        paths = []
        for gid in ("a", "b"):
            path = tmp_path / f"{schema.replace('/', '_')}.{gid}.zarr"
            with StoreWriter(path, schema, {"shard": gid}, 0) as writer:
                writer.define_columns({"x": ("float32", ())})
                writer.append_group(gid, x=np.ones(2, np.float32))
            paths.append(path)
        return paths

    newer = shards("vcl.proposals/2")
    result = invoke("merge", *newer, "-o", tmp_path / "m.zarr")
    assert result.exit_code == ExitCode.DATA
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {newer[0]}: schema vcl.proposals/2 is not the vcl.proposals/1 this vcl"
        " reads; upgrade vcl"
    )
    assert not (tmp_path / "m.zarr").exists()
    result = invoke("merge", *shards("vcl.sift/4"), "-o", tmp_path / "s.zarr", "-q")
    assert result.exit_code == 0, result.stderr
    merged = Store(tmp_path / "s.zarr")
    assert (merged.attrs["vcl_schema"], merged.group_ids) == ("vcl.sift/4", ["a", "b"])
