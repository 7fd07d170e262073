"""Odd but real video inputs: names, hidden files, streams and codecs that the common
case never shows. Every video is made here with PyAV (tiny, odd-sized)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import moving_square_frames
from vcl.errors import DataError, ExitCode
from vcl.io.video import (
    VideoReader,
    list_frame_files,
    probe,
    write_frame_folder,
    write_video,
)


def test_hidden_files_in_a_frame_folder_are_not_frames(tmp_path: Path) -> None:
    """A folder copied from a Mac holds an AppleDouble ``._`` twin beside every frame."""
    folder = tmp_path / "frames"
    write_frame_folder(folder, moving_square_frames(3, width=19, height=13))
    for png in list(folder.iterdir()):
        (folder / f"._{png.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    cv2.imwrite(str(folder / ".thumb.png"), np.zeros((5, 5, 3), np.uint8))
    assert [p.name for p in list_frame_files(folder)] == [f"00000{i}.png" for i in range(3)]
    assert probe(folder).frame_count == 3
    assert [i for i, _ in VideoReader(folder)] == [0, 1, 2]


def test_names_that_look_like_urls_are_read_and_written_as_files(
    tmp_path: Path, monkeypatch
) -> None:
    """FFmpeg reads ``cam1:front.mp4`` as the protocol ``cam1`` unless the path is absolute."""
    monkeypatch.chdir(tmp_path)
    frames = moving_square_frames(5, width=38, height=22)
    for name in ("cam1:front.mp4", "file:odd.mp4", "rec 12:30:00.avi"):
        write_video(tmp_path / name, frames, fps=10)
        assert (probe(name).width, probe(name).height) == (38, 22)
        assert VideoReader(Path(name)).count_frames() == 5
        assert len(list(VideoReader(name))) == 5
        Path(name).unlink()
        assert write_video(name, frames, fps=10) == 5  # written under its own name
        assert VideoReader(tmp_path / name).count_frames() == 5


def _unknown_codec(path: Path) -> Path:
    """A video whose stream names a codec no FFmpeg decodes (its codec id patched)."""
    write_video(path, moving_square_frames(4, width=38, height=22), fps=10)  # MPEG-4 part 2
    data = path.read_bytes()
    for tag, unknown in ((b"V_MPEG4/ISO/ASP", b"V_QUUX/ABCD/XYZ"), (b"FMP4", b"QQQQ")):
        data = data.replace(tag, unknown)  # Matroska's codec id, AVI's fourcc
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("suffix", [".mkv", ".avi"])
def test_a_codec_without_a_decoder_is_a_data_error(tmp_path: Path, suffix: str) -> None:
    path = _unknown_codec(tmp_path / f"quux{suffix}")
    with pytest.raises(DataError, match=r"quux\.\w+: no decoder for its video codec"):
        probe(path)
    with pytest.raises(DataError, match="no decoder"):
        VideoReader(path)


def test_a_codec_without_a_decoder_is_skipped_as_a_bad_video(tmp_path: Path, invoke) -> None:
    """Was an AttributeError (exit 70) that --skip-bad did not skip."""
    good = tmp_path / "good.mp4"
    write_video(good, moving_square_frames(3, width=38, height=22), fps=10)
    bad = _unknown_codec(tmp_path / "quux.avi")
    result = invoke("videos", good, bad, "--count")
    assert result.exit_code == ExitCode.DATA and "quux.avi: no decoder" in result.stderr
    result = invoke("videos", good, bad, "--count", "--skip-bad")
    assert result.exit_code == 0 and "quux.avi: no decoder" in result.stderr
    assert len(result.stdout.splitlines()) == 1


def _still_then_video(path: Path) -> None:
    """Matroska: a one-frame 16×16 still as track 0, then an 8-frame 38×22 video."""
    import av

    with av.open(str(path), "w") as container:
        still = container.add_stream("mjpeg", rate=1)
        still.width, still.height, still.pix_fmt = 16, 16, "yuvj420p"
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 38, 22, "yuv420p"
        grey = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 200, np.uint8), format="rgb24")
        container.mux(still.encode(grey))
        container.mux(still.encode())
        for rgb in moving_square_frames(8, width=38, height=22):
            container.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(video.encode())


def test_the_video_stream_is_the_one_ffmpeg_picks_not_the_first(tmp_path: Path) -> None:
    path = tmp_path / "still_first.mkv"
    _still_then_video(path)
    info = probe(path)
    assert (info.width, info.height, info.codec) == (38, 22, "mpeg4")  # was 16×16 mjpeg
    assert VideoReader(path).count_frames() == 8
    assert [rgb.shape for _, rgb in VideoReader(path)] == [(22, 38, 3)] * 8


def test_a_cover_picture_is_not_a_video(tmp_path: Path) -> None:
    """An M4A-like file: audio and its cover art (attached picture), no video."""
    import av
    from av.stream import Disposition

    path = tmp_path / "song.mp4"
    with av.open(str(path), "w") as container:
        cover = container.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 16, 16, "yuvj420p"
        cover.disposition = Disposition.attached_pic
        audio = container.add_stream("aac", rate=8000)
        art = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 200, np.uint8), format="rgb24")
        container.mux(cover.encode(art))
        container.mux(cover.encode())
        for i in range(4):
            sound = np.zeros((1, 1024), np.float32)
            frame = av.AudioFrame.from_ndarray(sound, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    with pytest.raises(DataError, match=r"song\.mp4: has no video stream, only an attached cover"):
        probe(path)


def _damaged_h264(path: Path, bad: tuple[int, ...], n: int = 12) -> Path:
    """An H.264 MP4 of ``n`` frames (a keyframe every 4) whose packets ``bad`` are
    overwritten with seeded noise: they fail to decode, the file around them is whole."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10, options={"g": "4", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = 38, 22, "yuv420p"
        stream.codec_context.thread_count = 1
        for rgb in moving_square_frames(n, width=38, height=22):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        spans = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    noise = np.random.default_rng(0)
    for i in bad:
        pos, size = spans[i]
        data[pos : pos + size] = noise.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def test_a_bad_packet_is_skipped_counted_and_named_once(tmp_path: Path, caplog) -> None:
    """One corrupt packet of 12 rejected the whole video (or not, by the core count)."""
    import logging

    path = _damaged_h264(tmp_path / "damaged.mp4", bad=(6,))
    with caplog.at_level(logging.WARNING, logger="vcl"):
        frames = list(VideoReader(path))
    assert [i for i, _ in frames] == list(range(11))  # decoded frames, numbered from 0
    (record,) = caplog.records
    message = record.getMessage()
    assert "damaged.mp4" in message and "1 packet(s) failed to decode" in message
    assert "the 11 decoded frames" in message
    assert VideoReader(path).count_frames() == 11  # every stage numbers them alike
    part = list(VideoReader(path, start=5, end=10, stride=2))
    assert [i for i, _ in part] == [5, 7, 9]
    for i, rgb in part:
        np.testing.assert_array_equal(rgb, frames[i][1])


def test_a_damaged_file_decodes_the_same_on_any_core_count(tmp_path: Path) -> None:
    """FFmpeg's frame threads (one per core) drop other frames around a bad packet."""
    import os

    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs a way to run on one core and on several")
    path = _damaged_h264(tmp_path / "damaged.mp4", bad=(2, 6, 9), n=16)
    many = list(VideoReader(path))
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        one = list(VideoReader(path))
    finally:
        os.sched_setaffinity(0, cores)
    assert [i for i, _ in one] == [i for i, _ in many] == list(range(13))
    for (_, a), (_, b) in zip(one, many, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_file_of_bad_packets_only_is_still_an_error(tmp_path: Path) -> None:
    path = _damaged_h264(tmp_path / "noise.mp4", bad=tuple(range(6)), n=6)
    with pytest.raises(DataError, match=r"noise\.mp4: no frame could be decoded; 6 packet"):
        VideoReader(path).count_frames()
    with pytest.raises(DataError, match="no frame could be decoded"):
        list(VideoReader(path))


ONE = 1 << 16  # 1.0 in a display matrix's 16.16 fixed point
# display matrix (a, b, c, d) -> (rotation, mirror), and the picture FFmpeg's autorotate
# shows of a stored frame ``raw`` (H×W×3): hflip, vflip, transpose, anti-transpose, ...
MATRICES = {
    "hflip": ((-ONE, 0, 0, ONE), (0, True), lambda raw: raw[:, ::-1]),
    "vflip": ((ONE, 0, 0, -ONE), (180, True), lambda raw: raw[::-1]),
    "transpose": ((0, ONE, ONE, 0), (90, True), lambda raw: raw.transpose(1, 0, 2)),
    "antitranspose": (
        (0, -ONE, -ONE, 0),
        (270, True),
        lambda raw: raw[::-1, ::-1].transpose(1, 0, 2),
    ),
    "rotate180": ((-ONE, 0, 0, -ONE), (180, False), lambda raw: raw[::-1, ::-1]),
    "clockwise90": ((0, ONE, -ONE, 0), (90, False), lambda raw: np.rot90(raw, -1)),
}


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_a_flipped_display_matrix_is_shown_flipped(tmp_path: Path, name: str) -> None:
    """A mirrored matrix (some front cameras) was read as a 180° turn."""
    import av

    (a, b, c, d), orientation, shown = MATRICES[name]
    path = tmp_path / f"{name}.mp4"
    yy, xx = np.mgrid[0:22, 0:38]
    frames = [np.stack([xx * 6, yy * 11, xx + yy + 9 * i], -1).astype(np.uint8) for i in range(3)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 38, 22, "yuv420p"
        stream.set_display_matrix([a, b, 0, c, d, 0, 0, 0, 1 << 30])
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        stored = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    info = probe(path)
    assert (info.rotation, info.mirror) == orientation
    assert (info.height, info.width) == shown(stored[0]).shape[:2]
    for (_, rgb), raw in zip(VideoReader(path), stored, strict=True):
        np.testing.assert_array_equal(rgb, shown(raw))
    from vcl.io.sources import probe_record, resolve_videos

    extra = probe_record(resolve_videos([str(path)])[0]).extra  # the manifest says so too
    assert (extra.get("rotation", 0), extra.get("mirror", False)) == orientation


def _video_with_audio(path: Path, video_s: float, audio_s: float) -> Path:
    """10 fps video of ``video_s`` seconds beside ``audio_s`` seconds of silent audio."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 38, 22, "yuv420p"
        audio = container.add_stream("aac", rate=8000) if audio_s else None
        for rgb in moving_square_frames(round(video_s * 10), width=38, height=22):
            container.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(video.encode())
        for i in range(round(audio_s * 8000 / 1024)) if audio else ():
            sound = np.zeros((1, 1024), np.float32)
            frame = av.AudioFrame.from_ndarray(sound, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            container.mux(audio.encode(frame))
        if audio:
            container.mux(audio.encode())
    return path


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_audio_outlasting_the_video_is_not_a_truncation(
    tmp_path: Path, suffix: str, caplog
) -> None:
    """Matroska stores no stream duration: the whole file's (the audio's) stood in for
    the video's, and a whole file was named as truncated."""
    import logging

    path = _video_with_audio(tmp_path / f"long_audio{suffix}", video_s=1.0, audio_s=4.0)
    with caplog.at_level(logging.WARNING, logger="vcl"):
        assert VideoReader(path).count_frames() == 10
        assert len(list(VideoReader(path))) == 10
    assert not caplog.records


def test_a_cut_matroska_file_is_still_named_as_truncated(tmp_path: Path, caplog) -> None:
    """Its track's DURATION tag (at the start of the file) says how long it was."""
    import logging

    whole = tmp_path / "whole.mkv"
    noise = np.random.default_rng(0).integers(0, 256, (40, 22, 38, 3), dtype=np.uint8)
    write_video(whole, noise, fps=10)  # noise: the frames fill the file
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="vcl"):
        n = VideoReader(cut).count_frames()
    assert n < 30 and any(
        "cut.mkv" in r.getMessage() and "of the 4.00 s" in r.getMessage() for r in caplog.records
    )


def test_info_decodes_a_video_as_the_stages_do(tmp_path: Path, invoke) -> None:
    """vcl info read only the header: a video no stage could decode was described as fine."""
    import json

    empty = tmp_path / "empty.avi"  # a whole header, cut before its first frame
    write_video(empty, moving_square_frames(4, width=38, height=22), fps=10, codec="mjpg")
    empty.write_bytes(empty.read_bytes()[: empty.read_bytes().find(b"movi") + 4])
    result = invoke("info", empty)
    assert result.exit_code == ExitCode.DATA
    assert "empty.avi: no frame could be decoded" in result.stderr
    header = invoke("info", empty, "--no-verify", "--json")  # the slow check skipped
    assert header.exit_code == 0 and "frames_decoded" not in json.loads(header.stdout)
    damaged = _damaged_h264(tmp_path / "damaged.mp4", bad=(6,))
    result = invoke("info", damaged, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["frames_decoded"] == 11
    assert "damaged.mp4: 1 packet(s) failed to decode" in result.stderr
    folder = tmp_path / "frames"
    write_frame_folder(folder, moving_square_frames(3, width=19, height=13))
    (folder / "000001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    result = invoke("info", folder)
    assert result.exit_code == ExitCode.DATA and "000001.png" in result.stderr
