"""vcl idt through the CLI: the store, text format round trips, bad input, resume."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_idt import _moving_object_video
from vcl.errors import ExitCode
from vcl.idt import BLOCKS, HEADER
from vcl.idt.textformat import read_text, write_text
from vcl.io.store import Store
from vcl.io.video import write_frame_folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("idtcli") / "obj"
    _moving_object_video(folder, frames=19)
    return folder


@pytest.fixture(scope="module")
def store(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from vcl.cli.app import app

    out = tmp_path_factory.mktemp("idtstore") / "idt.zarr"
    result = CliRunner().invoke(app, ["idt", str(clip), "-o", str(out), "--no-humans", "-q"])
    assert result.exit_code == 0, result.output
    return out


def _random_columns(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = {"frame": rng.integers(15, 500, n).astype(np.int32)}
    for name in HEADER[1:]:
        cols[name] = rng.uniform(0, 300, n).astype(np.float32)
    for name, dim in BLOCKS.items():
        cols[name] = rng.uniform(-1, 1, (n, dim)).astype(np.float32)
    return cols


def test_text_format_round_trip(tmp_path: Path) -> None:
    cols = _random_columns(7)
    buf = io.StringIO()
    assert write_text(buf, cols) == 7
    lines = buf.getvalue().splitlines()
    assert len(lines) == 7 and all(len(line.split()) == 436 for line in lines)
    assert lines[0].split("\t")[0] == str(cols["frame"][0])  # %d, then tab-separated
    path = tmp_path / "v.txt"
    path.write_text(buf.getvalue())
    back = read_text(path)
    for name in cols:
        np.testing.assert_allclose(back[name], cols[name], atol=1e-6 if name in BLOCKS else 1e-4)
        assert back[name].dtype == cols[name].dtype


def test_text_reader_names_a_bad_line(tmp_path: Path) -> None:
    buf = io.StringIO()
    write_text(buf, _random_columns(3))
    lines = buf.getvalue().splitlines()
    lines[1] = lines[1].rsplit("\t", 2)[0]  # one field short
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    from vcl.errors import DataError

    with pytest.raises(DataError, match="line 2"):
        read_text(path)


def test_run_writes_the_idt_store(store: Path) -> None:
    s = Store(store, kind="idt", version=1)
    assert s.group_ids == ["obj"]
    assert s.columns == ["frame", *HEADER[1:], *BLOCKS]
    data = s.read_group("obj")
    assert len(data["frame"]) > 20
    assert data["frame"].dtype == np.int32 and data["hog"].dtype == np.float32
    assert {k: data[k].shape[1] for k in BLOCKS} == BLOCKS
    assert s.attrs["params"]["track_length"] == 15 and s.attrs["seed"] == 0
    assert s.attrs["videos"]["obj"]["frames"] == 19


def test_convert_round_trip_store_text_store(store: Path, tmp_path: Path, invoke) -> None:
    result = invoke("idt", "convert", store, "-o", tmp_path / "txt", "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "txt" / "obj.txt").exists()
    result = invoke("idt", "convert", tmp_path / "txt", "-o", tmp_path / "back.zarr", "-q")
    assert result.exit_code == 0, result.output
    a, b = Store(store).read_group("obj"), Store(tmp_path / "back.zarr").read_group("obj")
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-4)


def test_text_output_equals_store(store: Path, clip: Path, tmp_path: Path, invoke) -> None:
    out = tmp_path / "txt"
    result = invoke("idt", clip, "-o", out, "--format", "text", "--no-humans", "-q")
    assert result.exit_code == 0, result.output
    text = read_text(out / "obj.txt")
    ref = Store(store).read_group("obj")
    np.testing.assert_allclose(text["hof"], ref["hof"], atol=1e-6)
    np.testing.assert_array_equal(text["frame"], ref["frame"])


def test_max_per_video_is_a_seeded_sample(store: Path, clip: Path, tmp_path: Path, invoke) -> None:
    full = Store(store).read_group("obj")
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / f"{name}.zarr"
        result = invoke(
            "idt", clip, "-o", out, "--no-humans", "--max-per-video", 10, "--seed", seed,
            "--dtype", "float16", "-q",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        runs[name] = Store(out).read_group("obj")
    assert len(runs["a"]["frame"]) == 10 and runs["a"]["hog"].dtype == np.float16
    np.testing.assert_array_equal(runs["a"]["mean_x"], runs["b"]["mean_x"])
    assert not np.array_equal(runs["a"]["mean_x"], runs["c"]["mean_x"])
    assert np.isin(runs["a"]["mean_x"], full["mean_x"]).all()  # rows of the full set


def test_short_video_gives_no_trajectories_and_a_warning(tmp_path: Path, invoke) -> None:
    from tests.conftest import moving_square_frames

    write_frame_folder(tmp_path / "short", moving_square_frames(9, width=41, height=37))
    result = invoke("idt", tmp_path / "short", "-o", tmp_path / "s.zarr", "--no-humans")
    assert result.exit_code == 0, result.output
    assert "warning" in result.stderr and "fewer than the 16" in result.stderr
    s = Store(tmp_path / "s.zarr")
    assert s.group_ids == ["short"] and s.n_rows == 0


def test_bad_human_boxes_line_is_named(clip: Path, tmp_path: Path, invoke) -> None:
    boxes = tmp_path / "boxes.jsonl"
    good = {"video_id": "obj", "frame": 0, "boxes": [[1, 2, 30, 40]]}
    boxes.write_text(
        json.dumps(good) + "\n" + json.dumps({"video_id": "obj", "frame": 1, "boxes": [[1, 2]]})
    )
    result = invoke("idt", clip, "-o", tmp_path / "x.zarr", "--human-boxes", boxes)
    assert result.exit_code == ExitCode.DATA
    assert "boxes.jsonl" in result.stderr and "line 2" in result.stderr
    assert not (tmp_path / "x.zarr").exists()


def test_human_boxes_are_used(clip: Path, tmp_path: Path, invoke) -> None:
    boxes = tmp_path / "people.jsonl"
    track = {"video_id": "obj", "frames": [0, 1], "boxes": [[1, 2, 30, 40], [2, 2, 31, 40]]}
    boxes.write_text(json.dumps(track) + "\n")
    result = invoke("idt", clip, "-o", tmp_path / "h.zarr", "--human-boxes", boxes, "-q")
    assert result.exit_code == 0, result.output
    assert Store(tmp_path / "h.zarr").attrs["params"]["humans"] == "boxes"


def test_human_boxes_of_other_videos_are_refused_or_warned(clip, tmp_path, invoke) -> None:
    boxes = tmp_path / "people.jsonl"
    track = {"video_id": "elsewhere", "frames": [0], "boxes": [[1, 2, 30, 40]]}
    boxes.write_text(json.dumps(track) + "\n")
    result = invoke("idt", clip, "-o", tmp_path / "h.zarr", "--human-boxes", boxes)
    assert result.exit_code == ExitCode.USAGE and not (tmp_path / "h.zarr").exists()
    assert "no boxes for any of the 1 videos" in result.stderr and "elsewhere" in result.stderr
    both = tmp_path / "both.jsonl"
    both.write_text(f"{json.dumps({'id': 'obj', 'path': str(clip)})}\n"
                    f"{json.dumps({'id': 'obj2', 'path': str(clip)})}\n")  # fmt: skip
    boxes.write_text(json.dumps({**track, "video_id": "obj"}) + "\n")
    result = invoke("idt", both, "-o", tmp_path / "w.zarr", "--human-boxes", boxes)
    assert result.exit_code == 0, result.stderr
    assert "1 of 2 videos have no boxes" in result.stderr and "obj2" in result.stderr


def test_bad_inputs_exit_codes(store: Path, clip: Path, tmp_path: Path, invoke) -> None:
    result = invoke("idt", tmp_path / "missing.mp4", "-o", tmp_path / "m.zarr")
    assert result.exit_code == ExitCode.NO_INPUT
    result = invoke("idt", clip, "-o", store, "--no-humans")
    assert result.exit_code == ExitCode.CANNOT_CREATE and "--overwrite" in result.stderr
    result = invoke("idt", clip, "-o", tmp_path / "f.zarr", "--flow", "tvl1")
    assert result.exit_code == ExitCode.USAGE and "flow" in result.stderr
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00" * 2000)
    result = invoke("idt", corrupt, "-o", tmp_path / "c.zarr")
    assert result.exit_code == ExitCode.DATA and "corrupt.mp4" in result.stderr
    assert not (tmp_path / "c.zarr").exists()


def test_convert_refuses_files_that_are_not_release_text(tmp_path: Path, invoke) -> None:
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    out = tmp_path / "z.zarr"
    result = invoke("idt", "convert", zero, "-o", out)
    assert result.exit_code == ExitCode.DATA
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {zero}: not a .txt or .txt.gz")
    assert not out.exists() and not Path(f"{out}.partial").exists()
    empty = tmp_path / "clip.txt"  # the release's output for a video with no trajectories
    empty.write_text("")
    result = invoke("idt", "convert", empty, "-o", out, "-q")
    assert result.exit_code == 0, result.stderr
    assert Store(out, kind="idt", version=1).group_ids == ["clip"]


def _fields(path: Path) -> set[int]:
    return {len(line.split("\t")) - 1 for line in path.read_text().splitlines()}  # tab-ended


def test_text_rerun_with_other_parameters_is_refused(clip: Path, tmp_path: Path, invoke) -> None:
    out = tmp_path / "txt"
    args = ["idt", clip, "-o", out, "--format", "text", "--no-humans", "--flow", "dis", "-q"]
    assert invoke(*args).exit_code == 0
    before = (out / "obj.txt").read_bytes()
    assert _fields(out / "obj.txt") == {436}
    assert json.loads((out / "params.json").read_text())["params"]["track_length"] == 15
    result = invoke(*args, "--track-length", 10)
    assert result.exit_code == ExitCode.CANNOT_CREATE
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {out}: ")
    assert "different parameters (track_length 15, not 10" in result.stderr
    assert "--overwrite" in result.stderr
    assert (out / "obj.txt").read_bytes() == before
    result = invoke(*args[:-1])  # the same parameters: kept, as a resume
    assert result.exit_code == 0 and "skipping 1 videos" in result.stderr
    result = invoke(*args, "--track-length", 10, "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert _fields(out / "obj.txt") == {10 + 20 + 396}
    assert json.loads((out / "params.json").read_text())["blocks"]["traj"] == 20
    (out / "params.json").unlink()  # the release's files, or an older vcl's: unknown
    result = invoke(*args, "--track-length", 10)
    assert result.exit_code == ExitCode.CANNOT_CREATE and "no params.json" in result.stderr


def test_convert_reads_text_of_another_track_length(clip: Path, tmp_path: Path, invoke) -> None:
    common = [clip, "--no-humans", "--flow", "dis", "--track-length", 10, "-q"]
    assert invoke("idt", *common, "-o", tmp_path / "txt", "--format", "text").exit_code == 0
    assert invoke("idt", *common, "-o", tmp_path / "direct.zarr").exit_code == 0
    result = invoke("idt", "convert", tmp_path / "txt", "-o", tmp_path / "back.zarr", "-q")
    assert result.exit_code == 0, result.stderr
    direct = Store(tmp_path / "direct.zarr").read_group("obj")
    back = Store(tmp_path / "back.zarr")
    assert back.attrs["blocks"]["traj"] == 20 and back.columns == list(direct)
    for name, values in back.read_group("obj").items():
        np.testing.assert_allclose(values, direct[name], atol=1e-4 if name in HEADER else 1e-6)
    # store -> text -> store keeps the widths through the params.json written beside
    result = invoke("idt", "convert", tmp_path / "direct.zarr", "-o", tmp_path / "txt2", "-q")
    assert result.exit_code == 0, result.stderr
    result = invoke("idt", "convert", tmp_path / "txt2", "-o", tmp_path / "back2.zarr", "-q")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_allclose(Store(tmp_path / "back2.zarr").read_group("obj")["traj"],
                               direct["traj"], atol=1e-6)  # fmt: skip
    # the release's own files have no params.json: --track-length says, a wrong L is named
    release = tmp_path / "release"
    release.mkdir()
    (release / "obj.txt").write_bytes((tmp_path / "txt" / "obj.txt").read_bytes())
    result = invoke("idt", "convert", release, "-o", tmp_path / "r.zarr")
    assert result.exit_code == ExitCode.DATA and "pass --track-length 10" in result.stderr
    assert not (tmp_path / "r.zarr").exists() and not (tmp_path / "r.zarr.partial").exists()
    result = invoke("idt", "convert", release, "-o", tmp_path / "r.zarr", "--track-length", 10)
    assert result.exit_code == 0, result.stderr
    np.testing.assert_allclose(Store(tmp_path / "r.zarr").read_group("obj")["hog"],
                               direct["hog"], atol=1e-6)  # fmt: skip
    result = invoke("idt", "convert", tmp_path / "txt", "-o", tmp_path / "x.zarr",
                    "--track-length", 15)  # fmt: skip
    assert result.exit_code == ExitCode.USAGE and "contradicts its params.json" in result.stderr


def test_release_text_of_default_length_converts(store: Path, tmp_path: Path, invoke) -> None:
    """Files of the original binary (L 15, no params.json) convert as before."""
    result = invoke("idt", "convert", store, "-o", tmp_path / "txt", "-q")
    assert result.exit_code == 0, result.stderr
    (tmp_path / "txt" / "params.json").unlink()
    assert _fields(tmp_path / "txt" / "obj.txt") == {436}
    result = invoke("idt", "convert", tmp_path / "txt" / "obj.txt", "-o", tmp_path / "b.zarr")
    assert result.exit_code == 0, result.stderr
    back = Store(tmp_path / "b.zarr")
    assert back.attrs["blocks"] == BLOCKS and back.attrs["params"]["made_with"] is None
    ref = Store(store).read_group("obj")
    np.testing.assert_allclose(back.read_group("obj")["mbhy"], ref["mbhy"], atol=1e-6)
