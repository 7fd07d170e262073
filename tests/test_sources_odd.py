"""vcl.io.sources on the folders people actually have: links into blob stores, macOS
litter, camcorder file names, and clips that share a name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.corpus import good_video
from vcl.io.sources import resolve_videos


def _lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_symlinked_videos_keep_the_links_id_and_path(tmp_path: Path, invoke) -> None:
    """A Hugging Face hub snapshot (or git-annex tree) links each named video to a blob
    named by its hash: the ids were the blobs' hashes ('3f2a9c') and the paths the blobs',
    and two links to one blob were one id twice."""
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshot"
    blobs.mkdir()
    good_video(blobs / "clip.mp4").rename(blobs / "3f2a9c")
    for sub in ("walk", "run"):
        (snapshot / sub).mkdir(parents=True)
        (snapshot / sub / "clip1.mp4").symlink_to("../../blobs/3f2a9c")
    walk, run = snapshot / "walk" / "clip1.mp4", snapshot / "run" / "clip1.mp4"

    records = resolve_videos([str(snapshot)])
    assert [(r.id, r.path) for r in records] == [("run/clip1", str(run)), ("walk/clip1", str(walk))]
    (alone,) = resolve_videos([str(walk)])
    assert (alone.id, alone.path) == ("clip1", str(walk))

    result = invoke("videos", snapshot, "-q")
    assert result.exit_code == 0, result.stderr
    assert [(r["id"], r["path"]) for r in _lines(result.stdout)] == [
        ("run/clip1", str(run)),
        ("walk/clip1", str(walk)),
    ]


def test_hidden_files_and_folders_are_not_videos_of_a_folder(tmp_path: Path, invoke) -> None:
    """Clips copied from a Mac onto exFAT each have an AppleDouble '._clip.mp4' twin: the
    scan took them as videos and `vcl videos DIR` exited 65 on '._a.mp4'. Files in .git or
    any hidden folder were videos too. A hidden file named on the command line still is."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a", "b"):
        good_video(clips / f"{name}.mp4")
        (clips / f"._{name}.mp4").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X" * 64)
    (clips / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" * 16)
    for folder in (clips / ".git" / "annex", clips / "sub"):
        folder.mkdir(parents=True)
    good_video(clips / ".git" / "annex" / "c.mp4")
    good_video(clips / "sub" / ".hidden.mp4")

    assert [r.id for r in resolve_videos([str(clips)])] == ["a", "b"]
    result = invoke("videos", clips, "-q")
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in _lines(result.stdout)] == ["a", "b"]
    (named,) = resolve_videos([str(clips / "sub" / ".hidden.mp4")])
    assert named.path == str(clips / "sub" / ".hidden.mp4")


def _mpeg_ts(path: Path, n: int = 4) -> Path:
    """A small MPEG-2 transport stream, the container of AVCHD camcorders' .MTS/.m2ts."""
    import av

    from tests.corpus import GOOD_SIZE, frames

    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=25)
        stream.width, stream.height = GOOD_SIZE
        stream.pix_fmt = "yuv420p"
        for rgb in frames(n, *GOOD_SIZE):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_camcorder_extensions_are_videos_and_other_files_are_counted(
    tmp_path: Path, invoke, caplog
) -> None:
    """A camcorder's 00001.MTS and 00002.m2ts beside phone.MP4 were skipped without a word
    (only the .MP4 was listed); files of unknown types are now counted in one warning, and
    a folder holding only those says what it holds."""
    import logging

    cam = tmp_path / "cam"
    cam.mkdir()
    _mpeg_ts(cam / "00001.MTS")
    _mpeg_ts(cam / "00002.m2ts")
    _mpeg_ts(cam / "00003.VOB.partial")  # not a finished video: counted, not listed
    good_video(cam / "phone.mp4").rename(cam / "phone.MP4")
    (cam / "notes.txt").write_text("day 1\n")
    (cam / "INDEX").write_bytes(b"\x00" * 16)

    with caplog.at_level(logging.WARNING, logger="vcl"):
        assert [r.id for r in resolve_videos([str(cam)])] == ["00001", "00002", "phone"]
    assert "3 files of other types ignored (1 .partial, 1 .txt, 1 without extension)" in caplog.text
    result = invoke("videos", cam, "--count")
    assert result.exit_code == 0, result.stderr
    listed = _lines(result.stdout)
    assert [(r["id"], r["frames"]) for r in listed] == [("00001", 4), ("00002", 4), ("phone", 8)]
    assert "3 files of other types ignored" in result.stderr

    other = tmp_path / "other"
    other.mkdir()
    (other / "clip.h264").write_bytes(b"\x00\x00\x00\x01" * 8)
    result = invoke("videos", other)
    assert result.exit_code == 65
    assert (
        f"error: {other}: holds no video files or frame folders; it holds 1 file of other "
        "types (1 .h264)" in result.stderr
    )


def test_clips_sharing_a_name_keep_their_extension_in_the_id(
    tmp_path: Path, invoke, caplog
) -> None:
    """x.mp4 and x.avi in one folder were both id 'x': `vcl videos DIR` exited 65 ("two
    videos have the id"), --skip-bad or not. Their ids now keep the extension, with a
    warning; every other id is as before, and one file named twice is still an error."""
    import logging

    import numpy as np

    from vcl.errors import DataError
    from vcl.io.video import write_frame_folder

    clips = tmp_path / "clips"
    (clips / "sub").mkdir(parents=True)
    good_video(clips / "x.mp4")
    good_video(clips / "x.avi", seed=1)
    good_video(clips / "y.mp4")
    good_video(clips / "sub" / "x.mp4")
    good_video(clips / "z.mp4")
    write_frame_folder(clips / "z", [np.zeros((8, 8, 3), np.uint8)] * 2)  # frames of z.mp4

    with caplog.at_level(logging.WARNING, logger="vcl"):
        records = resolve_videos([str(clips)])
    assert [r.id for r in records] == ["x.avi", "x.mp4", "y", "z.mp4", "sub/x", "z"]
    assert "ids keep the extension" in caplog.text and "x.avi, x.mp4, z.mp4" in caplog.text
    result = invoke("videos", clips, "--skip-bad", "-q")
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in _lines(result.stdout)] == [r.id for r in records]

    with pytest.raises(DataError, match="two videos have the id 'y'"):
        resolve_videos([str(clips / "y.mp4"), str(clips / "y.mp4"), str(clips / "x.mp4")])


def test_image_folders_and_retrieve_media_skip_hidden_files(tmp_path) -> None:
    """embed's image folders and retrieve's --media folders took macOS ``._*`` twins
    (AppleDouble metadata, not images) as images, and a twin could shadow its file."""
    import cv2
    import numpy as np

    from vcl.cli.retrieve import _folder_media
    from vcl.io.video import list_images

    image = np.zeros((8, 8, 3), np.uint8)
    for name in ("a.jpg", "b.png"):
        cv2.imwrite(str(tmp_path / name), image)
    (tmp_path / "._a.jpg").write_bytes(b"\x00\x05\x16\x07 mac metadata")
    (tmp_path / ".cache").mkdir()
    cv2.imwrite(str(tmp_path / ".cache" / "c.jpg"), image)
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.png"]
    media = _folder_media(tmp_path)
    assert sorted(media) == ["a", "b"] and media["a"] == tmp_path / "a.jpg"
