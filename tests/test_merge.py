"""vcl merge: shards merged equal the single run; mixed or overlapping inputs refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vcl.errors import ExitCode
from vcl.io.manifest import TrackRecord, read_records
from vcl.io.store import Store, partial_path

PROPOSALS = ["--max-side", "0", "--min-area", "100"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Synthetic videos; proposals and tracks as one run and as 3 shards."""
    from typer.testing import CliRunner

    from vcl.cli.app import app

    root = tmp_path_factory.mktemp("merge")

    def vcl(*args) -> None:
        result = CliRunner().invoke(app, [str(a) for a in args] + ["-q"])
        assert result.exit_code == 0, result.output

    vcl("synth", root / "d", "--videos", "6", "--width", "64", "--height", "48", "--frames", "10")
    videos = root / "d" / "videos.jsonl"
    vcl("proposals", videos, "-o", root / "p.zarr", *PROPOSALS)
    track = ["--videos", videos, "--min-len", "3", "--no-flow"]
    vcl("track", root / "p.zarr", *track, "-o", root / "t.jsonl")
    for i in range(3):
        vcl("proposals", videos, "-o", root / f"p{i}.zarr", *PROPOSALS, "--shard", f"{i}/3")
        vcl("track", root / "p.zarr", *track, "-o", root / f"t{i}.jsonl", "--shard", f"{i}/3")
    return {"root": root, "videos": videos}


def test_three_proposal_shards_merge_to_the_single_run(runs, invoke):
    root = runs["root"]
    shards = [root / f"p{i}.zarr" for i in range(3)]
    result = invoke("merge", *shards, "-o", root / "merged.zarr")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    merged, single = Store(root / "merged.zarr"), Store(root / "p.zarr")
    assert summary["groups"] == len(single.group_ids) and summary["rows"] == single.n_rows
    # groups come in input order: shard 0's, then shard 1's, then shard 2's
    assert merged.group_ids == [g for s in shards for g in Store(s).group_ids]
    assert sorted(merged.group_ids) == sorted(single.group_ids)
    assert merged.attrs["params"] == single.attrs["params"]
    assert merged.attrs["videos"] == single.attrs["videos"]
    assert merged.attrs["vcl_schema"] == "vcl.proposals/1" and merged.attrs["seed"] == 0
    for gid in single.group_ids:
        a, b = merged.read_group(gid), single.read_group(gid)
        for column in single.columns:
            assert np.array_equal(a[column], b[column]), (gid, column)
    assert not merged.verify()


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
