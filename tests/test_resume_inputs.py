"""A rerun resumes NAME.partial only when it is of the same input.

A run that fails on a bad video leaves NAME.partial holding the videos it finished;
a rerun on another input list used to resume it and finish with the old videos in it,
under the new command line. Now the partial is refused, naming it and the stale ids
(exit 73), and --overwrite starts over; a rerun on the same input (or a part of it)
still resumes. Checked on the writers themselves and on the stages that resume per video.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.corpus import good_video
from vcl.errors import ExitCode, OutputError
from vcl.io.manifest import TrackRecord, read_records
from vcl.io.store import Store, StoreWriter, partial_path
from vcl.track import TrackWriter


def _interrupted_store(path: Path, ids: list[str]) -> None:
    """A .partial store holding ``ids``, as a run that then failed leaves it."""
    with pytest.raises(RuntimeError), StoreWriter(path, "vcl.test/1", {}) as writer:
        writer.define_columns({"x": ("int32", ())})
        for gid in ids:
            writer.append_group(gid, x=np.arange(3))
        raise RuntimeError("a bad video")


def test_store_writer_refuses_a_partial_of_other_groups(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _interrupted_store(path, ["a", "b"])
    with pytest.raises(OutputError) as caught:
        StoreWriter(path, "vcl.test/1", {}, groups=["b", "c"])
    error = caught.value
    assert error.exit_code == ExitCode.CANNOT_CREATE and error.path == str(partial_path(path))
    assert "'a'" in error.message and "'b'" not in error.message
    assert "--overwrite" in error.message
    assert StoreWriter(path, "vcl.test/1", {}, groups="bac").done_groups == {"a", "b"}
    # --overwrite starts over; the output holds the new input's groups only
    with StoreWriter(path, "vcl.test/1", {}, overwrite=True, groups=["c"]) as writer:
        assert not writer.resumed and writer.done_groups == set()
        writer.define_columns({"x": ("int32", ())})
        writer.append_group("c", x=np.arange(2))
    assert Store(path).group_ids == ["c"]


def test_store_writer_names_a_few_of_many_stale_groups(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _interrupted_store(path, [f"v{i}" for i in range(5)])
    with pytest.raises(OutputError, match=r"5 groups \('v0', 'v1', 'v2', \.\.\.\)"):
        StoreWriter(path, "vcl.test/1", {}, groups=["w"])


def test_track_writer_refuses_a_partial_of_other_videos(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    record = TrackRecord(id="a_t0", video_id="a", frames=[0], boxes=[[0, 0, 2, 2]], score=1.0)
    writer = TrackWriter(path, {"p": 1}, groups=["a", "b"])
    writer.write_video("a", [record])
    writer.close()  # killed before finishing "b"
    with pytest.raises(OutputError, match="left 'a', which this run's input lacks") as caught:
        TrackWriter(path, {"p": 1}, groups=["b"])
    assert caught.value.path == str(path.with_name("t.jsonl.partial"))
    resumed = TrackWriter(path, {"p": 1}, groups=["a", "b"])
    assert resumed.done == {"a"} and resumed.count == 1
    resumed.close()
    fresh = TrackWriter(path, {"p": 1}, overwrite=True, groups=["b"])
    assert fresh.done == set() and fresh.count == 0
    fresh.finish()
    assert path.read_text() == ""


# --- every resuming stage, through the CLI -------------------------------------------

FAST = {
    "proposals": ["--max-side", "0", "--min-area", "50"],
    "idt": ["--track-length", "5", "--no-humans"],
    "track": ["--method", "kcf"],
}


def _tracks(path: Path, ids: list[str]) -> Path:
    """One track a video, over its first 4 frames."""
    lines = [
        {"id": f"{v}_t0", "video_id": v, "frames": [0, 1, 2, 3], "boxes": [[2, 2, 20, 20]] * 4}
        for v in ids
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _command(stage: str, videos: list[Path], out: Path, tmp_path: Path) -> list[object]:
    if stage == "crops":
        ids = [v.stem for v in videos]
        tracks = _tracks(tmp_path / f"tracks_{'_'.join(ids)}.jsonl", ids)
        given = [arg for video in videos for arg in ("--videos", video)]
        return ["crops", tracks, *given, "-o", out, "--size", "9", "-q"]
    return [stage, *videos, "-o", out, *FAST[stage], "-q"]


def _ids(stage: str, out: Path) -> list[str]:
    if stage == "track":
        return sorted({r.video_id for r in read_records(out, TrackRecord)})
    return Store(out).group_ids


@pytest.mark.parametrize("stage", ["proposals", "idt", "track", "crops"])
def test_a_rerun_on_other_videos_does_not_keep_the_old_ones(
    stage: str, invoke, tmp_path: Path
) -> None:
    single = good_video(tmp_path / "single.avi")
    odd = good_video(tmp_path / "odd.avi", seed=1)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    out = tmp_path / ("out.jsonl" if stage == "track" else "out.zarr")
    partial = out.with_name(out.name + ".partial")

    failed = invoke(*_command(stage, [single, empty], out, tmp_path))
    assert failed.exit_code == ExitCode.DATA, failed.stderr
    assert partial.exists() and not out.exists()

    rerun = invoke(*_command(stage, [odd], out, tmp_path))
    assert rerun.exit_code == ExitCode.CANNOT_CREATE, rerun.stderr
    lines = rerun.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {partial}: "), rerun.stderr
    assert "'single'" in lines[0] and "--overwrite" in lines[0]
    assert not out.exists()

    again = invoke(*_command(stage, [odd], out, tmp_path), "--overwrite")
    assert again.exit_code == 0, again.stderr
    # kcf may find no moving patch in 8 frames: an empty tracks file is fine
    assert _ids(stage, out) in (([], ["odd"]) if stage == "track" else (["odd"],))
    assert not partial.exists()
