"""vcl.io.sources: what a user names on the command line, read as video records.

Named pipes matter because shells hand them out for ``<(cmd)``: ``--videos <(vcl videos
a.mp4)`` is ``/dev/fd/63``, a FIFO that is neither a file nor a folder and can be read
once only.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from tests.corpus import good_video
from vcl.io.sources import resolve_videos
from vcl.io.store import Store

T = TypeVar("T")

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")


@contextmanager
def fed_fifo(path: Path, text: str) -> Iterator[Path]:
    """A named pipe that a thread fills with ``text`` once, as ``<(cat FILE)`` does.

    A reader that opened it twice would wait forever on the second open, so the test
    reads it with a deadline; an unread pipe is drained at the end to free the thread.
    """
    os.mkfifo(path)

    def feed() -> None:
        try:
            with open(path, "w", encoding="utf-8") as stream:
                stream.write(text)
        except OSError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        yield path
    finally:
        if writer.is_alive():
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            writer.join(5)
            os.close(fd)


def _within(seconds: float, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a thread, failing the test if it has not returned in time."""
    box: dict[str, object] = {}

    def call() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s (opened the pipe twice?)"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def test_a_named_pipe_is_one_manifest_read_once(tmp_path: Path, monkeypatch) -> None:
    """Relative paths in a piped manifest are taken from the working directory, as for
    stdin (the pipe's own folder is /proc/PID/fd)."""
    monkeypatch.chdir(tmp_path)
    lines = [{"id": "a", "path": "clips/a.mp4"}, {"id": "b", "path": "/data/b.mp4"}]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    with fed_fifo(tmp_path / "pipe", text) as pipe:
        records = _within(10, resolve_videos, [str(pipe)])
    assert [(r.id, r.path) for r in records] == [
        ("a", str(tmp_path / "clips/a.mp4")),
        ("b", "/data/b.mp4"),
    ]


def test_proposals_read_a_manifest_from_a_named_pipe(tmp_path: Path, invoke) -> None:
    """`vcl proposals <(cat videos.jsonl)` was an internal error (iterdir on a FIFO)."""
    clip = good_video(tmp_path / "clip.avi")
    out = tmp_path / "p.zarr"
    text = json.dumps({"id": "clip", "path": str(clip)}) + "\n"
    with fed_fifo(tmp_path / "pipe", text) as pipe:
        args = ("proposals", pipe, "-o", out, "--max-side", "0", "--min-area", "50", "-q")
        result = _within(60, invoke, *args)
    assert result.exit_code == 0, result.stderr
    assert Store(out, kind="proposals").group_ids == ["clip"]


def test_embed_takes_a_piped_manifest_without_peeking(tmp_path: Path, monkeypatch) -> None:
    """vcl embed used to open a *.jsonl input to peek at its kind: on a pipe that ate the
    first line (or waited forever on the second open)."""
    from vcl.cli.embed import _input_kind

    monkeypatch.chdir(tmp_path)
    text = json.dumps({"id": "a", "path": "a.png"}) + "\n"  # an images manifest, as a file
    (tmp_path / "m.jsonl").write_text(text)
    assert _input_kind(tmp_path / "m.jsonl") == "images"
    with fed_fifo(tmp_path / "p.jsonl", text) as pipe:
        assert _within(10, _input_kind, pipe) == "videos"  # not opened: still unread
        assert _within(10, pipe.read_text, "utf-8") == text


def test_an_empty_manifest_is_an_error_not_an_empty_output(tmp_path: Path, invoke) -> None:
    """`vcl videos DIR | vcl proposals -`: when the first step fails it writes nothing, and
    the next must not turn that into a complete, empty store that later stages accept."""
    (tmp_path / "empty.jsonl").write_text("")
    from vcl.errors import DataError

    with pytest.raises(DataError, match="lists no videos"):
        resolve_videos([str(tmp_path / "empty.jsonl")])
    r = invoke("proposals", tmp_path / "empty.jsonl", "-o", tmp_path / "p.zarr")
    assert r.exit_code == 65 and "empty.jsonl: lists no videos" in r.stderr
    assert not (tmp_path / "p.zarr").exists() and not (tmp_path / "p.zarr.partial").exists()


def test_a_stray_image_beside_videos_does_not_make_a_frame_folder(tmp_path: Path, caplog) -> None:
    """clips/{a,b}.mp4 + cover.jpg was read as one 1-frame video 'clips', dropping both
    clips, exit 0; the same in a subfolder."""
    import logging

    import cv2
    import numpy as np

    from vcl.io.video import write_frame_folder

    clips = tmp_path / "clips"
    clips.mkdir()
    good_video(clips / "a.mp4")
    good_video(clips / "b.mp4", seed=1)
    cv2.imwrite(str(clips / "cover.jpg"), np.zeros((8, 8, 3), np.uint8))
    frames = tmp_path / "frames"
    write_frame_folder(frames / "v0", [np.zeros((8, 8, 3), np.uint8)] * 2)
    with caplog.at_level(logging.WARNING, logger="vcl"):
        assert [r.id for r in resolve_videos([str(clips)])] == ["a", "b"]
        assert [r.id for r in resolve_videos([str(tmp_path)])] == [
            "clips/a",
            "clips/b",
            "frames/v0",
        ]
    assert "1 images beside video files ignored" in caplog.text
    (record,) = resolve_videos([str(frames / "v0")])  # a folder of frames only: one video
    assert record.id == "v0"
