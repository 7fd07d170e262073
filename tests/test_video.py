from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import moving_square_frames
from vcl.errors import DataError, MissingInputError
from vcl.io.video import VideoReader, probe, write_frame_folder, write_video


@pytest.fixture
def clip(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    frames = moving_square_frames(40, width=37, height=23)
    path = tmp_path / "clip.mp4"
    assert write_video(path, frames, fps=12.5) == 40
    return path, frames


def test_round_trip_odd_size(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, frames = clip
    info = probe(path)
    assert (info.width, info.height, info.fps, info.frame_count) == (37, 23, 12.5, 40)
    decoded = list(VideoReader(path))
    assert [i for i, _ in decoded] == list(range(40))
    for (_, got), want in zip(decoded, frames, strict=True):
        assert got.shape == (23, 37, 3) and got.dtype == np.uint8
        # lossy codec: close on average, and the square is where it was drawn
        assert np.abs(got.astype(int) - want).mean() < 8
    red = decoded[10][1][5:11, 10:16, 0].mean()
    assert red > 150


def test_stride_start_end_match_sequential(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = clip
    full = dict(VideoReader(path))
    part = list(VideoReader(path, start=27, end=36, stride=3))
    assert [i for i, _ in part] == [27, 30, 33]
    for i, frame in part:
        np.testing.assert_array_equal(frame, full[i])
    assert list(VideoReader(path, start=38)) and [i for i, _ in VideoReader(path, start=38)] == [
        38,
        39,
    ]


def test_resize_records_scale(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = clip
    reader = VideoReader(path, max_side=20)
    _, frame = next(iter(reader))
    assert frame.shape == (12, 20, 3) and reader.size == (20, 12)
    assert reader.scale == pytest.approx((20 / 37, 12 / 23))
    assert VideoReader(path, max_side=100).scale == (1.0, 1.0)  # never upsampled


def test_frame_folder_natural_order(tmp_path: Path) -> None:
    frames = moving_square_frames(12, width=19, height=13)
    folder = tmp_path / "vid"
    folder.mkdir()
    for i, frame in enumerate(frames):  # 0.png ... 11.png: lexical order would put 10 first
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not a frame")
    info = probe(folder, fps=30)
    assert (info.kind, info.width, info.height, info.frame_count, info.fps) == (
        "frames",
        19,
        13,
        12,
        30,
    )
    got = list(VideoReader(folder, start=1, stride=4))
    assert [i for i, _ in got] == [1, 5, 9]
    for i, frame in got:
        np.testing.assert_array_equal(frame, frames[i])  # png is lossless
    assert VideoReader(folder).count_frames() == 12


def test_write_frame_folder(tmp_path: Path) -> None:
    frames = moving_square_frames(5)
    assert write_frame_folder(tmp_path / "f", frames) == 5
    np.testing.assert_array_equal(dict(VideoReader(tmp_path / "f"))[4], frames[4])


def test_count_frames_decodes(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = clip
    assert VideoReader(path).count_frames() == 40


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, b"RIFF" + bytes(range(256)) * 8])
def test_corrupt_or_empty_files_are_data_errors(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=r"bad\.mp4"):
        list(VideoReader(bad))


def test_truncated_file_fails_or_yields_fewer_frames(
    clip: tuple[Path, list[np.ndarray]], tmp_path: Path
) -> None:
    path, _ = clip
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    write_video(cut, moving_square_frames(30), fps=10, codec="mjpg")
    cut.write_bytes(cut.read_bytes()[: len(cut.read_bytes()) // 2])
    try:
        frames = list(VideoReader(cut))
    except DataError as exc:
        assert "cut.avi" in str(exc)
    else:
        assert 0 < len(frames) < 30
    assert data  # the intact clip is untouched


def test_a_cut_file_is_named_in_a_warning_and_a_whole_one_is_not(tmp_path: Path, caplog) -> None:
    """Half a download decoded its first half silently, as if that were the video."""
    import logging

    whole = tmp_path / "whole.avi"
    noise = np.random.default_rng(0).integers(0, 256, (40, 64, 96, 3), dtype=np.uint8)
    write_video(whole, noise, fps=10, codec="mp4v")  # noise: the frames fill the file
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="vcl"):
        assert len(list(VideoReader(whole))) == 40
        assert len(list(VideoReader(whole, end=10))) == 10  # stopped early on purpose
        assert not caplog.records
        n = len(list(VideoReader(cut)))
    (record,) = caplog.records
    assert "cut.avi" in record.getMessage() and "of the 4.00 s" in record.getMessage()
    assert f"the {n} decoded frames" in record.getMessage() and n < 30
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vcl"):
        assert VideoReader(cut).count_frames() == n  # vcl videos --count says so too
    assert len(caplog.records) == 1 and "cut.avi" in caplog.records[0].getMessage()


def test_frame_folder_problems(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no jpg/png"):
        probe(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    write_frame_folder(mixed, moving_square_frames(2, width=19, height=13))
    cv2.imwrite(str(mixed / "000002.png"), np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(DataError, match="not 19x13"):
        list(VideoReader(mixed))
    with pytest.raises(MissingInputError):
        VideoReader(tmp_path / "missing.mp4")


def test_real_video_with_wrong_declared_count() -> None:
    tree = Path(__file__).resolve().parents[2] / "shared" / "data" / "tree.avi"
    if not tree.exists():
        pytest.skip("../shared/data is not on this machine")
    assert probe(tree).frame_count == 444 and VideoReader(tree).count_frames() == 68


def test_frames_are_numbered_by_decoding_order_not_timestamps(tmp_path: Path) -> None:
    """A file whose timestamps jump (variable frame rate) still numbers frames 0, 1, 2..."""
    import av

    frames = [np.full((24, 32, 3), 20 * i, np.uint8) for i in range(12)]  # frame i: grey 20i
    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i * i  # gaps grow: timestamps do not count frames
            frame.time_base = Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    every = dict(VideoReader(path))
    assert sorted(every) == list(range(12))
    part = list(VideoReader(path, start=5, end=9, stride=2))
    assert [i for i, _ in part] == [5, 7]
    for i, frame in part:
        np.testing.assert_array_equal(frame, every[i])
        assert frame.mean() == pytest.approx(20 * i, abs=3)  # frame i's content


@pytest.mark.parametrize("counter_clockwise", [-90, 90, 180])
def test_display_rotation_is_applied_as_opencv_applies_it(
    tmp_path: Path, counter_clockwise: int
) -> None:
    """A phone video (frames stored sideways, a display matrix saying how to turn them)
    comes out upright, as OpenCV's auto-orienting reader shows it."""
    import av

    yy, xx = np.mgrid[0:48, 0:80]
    frames = [
        np.stack([xx * 3, yy * 5, (xx + yy + 8 * i) % 256], axis=-1).astype(np.uint8)
        for i in range(4)
    ]
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 80, 48, "yuv420p"
        stream.set_display_rotation(counter_clockwise)
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    info = probe(path)
    assert info.rotation == (-counter_clockwise) % 360
    upright = (48, 80) if counter_clockwise == 180 else (80, 48)
    assert (info.height, info.width) == upright
    cap = cv2.VideoCapture(str(path))
    for _, rgb in VideoReader(path):
        ok, bgr = cap.read()
        assert ok and rgb.shape == bgr.shape
        assert np.abs(rgb.astype(int) - bgr[..., ::-1]).mean() < 2.0
