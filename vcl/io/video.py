"""Video input and output: the only module that decodes or encodes video.

A video is a file (anything FFmpeg reads: mp4, avi, mkv, webm, ...) decoded with PyAV,
or a folder of frames (jpg/png, sorted by name in natural order: the ImageNet VID
layout) read with OpenCV. Frames come out as RGB uint8 arrays (H×W×3), optionally
resized so the longer side is at most ``max_side``; ``scale`` records the factor so
that boxes found on resized frames map back to source pixels (divide by it).

Phone videos store frames sideways with a display matrix saying how to turn them
(and, from some front cameras, to mirror them); frames come out turned and mirrored
as players show them (``rotation``, ``mirror``; ``width``/``height`` are the shown
size), so boxes, tracks and crops are of the upright picture.

Declared frame counts are often wrong (OpenCV's tree.avi declares 444 frames and
holds 68), so ``frame_count`` is what the container says and ``count_frames`` decodes.
A packet that fails to decode is skipped with one warning a pass, and a file is
decoded on one thread, so that its frames and their indices are the same for every
stage on every machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vcl.errors import DataError, MissingInputError, OutputError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
_CONTAINER_FORMATS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".avi": "avi",
    ".mkv": "matroska",
    ".webm": "webm",
}
_CODECS = {"mp4v": ("mpeg4", "yuv420p"), "mjpg": ("mjpeg", "yuvj420p")}
_DURATION_TAG = re.compile(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)")  # Matroska: 00:00:02.400000000


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, before decoding it. ``frame_count`` is declared, not counted."""

    path: str
    kind: str  # "file" or "frames"
    width: int
    height: int
    fps: float | None
    frame_count: int | None
    codec: str | None
    rotation: int = 0  # clockwise degrees the file asks players to turn it (phone videos)
    mirror: bool = False  # and then to mirror it left-right (a flipped display matrix)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_hidden(name: str) -> bool:
    """A name starting with '.': macOS's ``._clip.mp4`` / ``._000001.jpg`` AppleDouble
    twins (resource forks, not media), ``.DS_Store``, ``.git``, ``.cache``... never a
    video, frame or image of a folder."""
    return name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """The images of a folder; hidden files (macOS ``._*`` twins) are not images."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden(p.name)
    )


def list_frame_files(folder: Path) -> list[Path]:
    """The frames of a frame folder in natural order. Hidden files are not frames: a
    folder copied from a Mac onto exFAT/FAT holds a ``._000001.jpg`` AppleDouble twin
    (resource fork, not an image) beside every frame."""
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden(p.name) and p.is_file()
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _resized_shape(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    factor = max_side / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


class VideoReader:
    """Iterate ``(frame_index, rgb)`` over a video file or a frame folder.

    ``stride`` keeps every stride-th frame, ``start``/``end`` bound the frame indices
    (end exclusive). Frame indices count decoded frames from 0, whatever the
    container's timestamps say.
    """

    def __init__(
        self,
        path: str | Path,
        max_side: int | None = None,
        stride: int = 1,
        start: int = 0,
        end: int | None = None,
        fps: float | None = None,
    ):
        if stride < 1 or start < 0 or (end is not None and end < start):
            raise ValueError("need stride >= 1 and 0 <= start <= end")
        if max_side is not None and max_side < 1:
            raise ValueError("max_side must be >= 1")
        self.path = Path(path)
        self.max_side, self.stride, self.start, self.end = max_side, stride, start, end
        if not self.path.exists():
            raise MissingInputError("no such video file or frame folder", self.path)
        self.info = probe(self.path, fps=fps)
        out_w, out_h = _resized_shape(self.info.width, self.info.height, max_side)
        self.size = (out_w, out_h)
        self.scale = (out_w / self.info.width, out_h / self.info.height)

    def _wanted(self, index: int) -> bool:
        return index >= self.start and (index - self.start) % self.stride == 0

    def _finish(self, rgb: np.ndarray) -> np.ndarray:
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            import cv2

            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(rgb)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if self.info.kind == "frames":
            yield from self._iter_folder()
        else:
            yield from self._iter_file()

    def _iter_folder(self) -> Iterator[tuple[int, np.ndarray]]:
        import cv2

        files = list_frame_files(self.path)
        stop = len(files) if self.end is None else min(self.end, len(files))
        for index in range(self.start, stop, self.stride):
            bgr = cv2.imread(str(files[index]), cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataError(
                    f"frame {index} ({files[index].name}) is not a readable image", self.path
                )
            if (bgr.shape[1], bgr.shape[0]) != (self.info.width, self.info.height):
                raise DataError(
                    f"frame {index} ({files[index].name}) is {bgr.shape[1]}x{bgr.shape[0]}, "
                    f"not {self.info.width}x{self.info.height} like the first frame",
                    self.path,
                )
            yield index, self._finish(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def _iter_file(self) -> Iterator[tuple[int, np.ndarray]]:
        """Decode from the first frame and number frames by decoding order.

        Frames before ``start`` are decoded and dropped rather than reached by a
        timestamp seek: real files have timestamps that do not count frames (OpenCV's
        tree.avi numbers its 68 frames as if it had 444), and numbering by timestamp
        would then disagree with every reader that starts at 0. Decoding costs about
        1 ms a frame at 768×576; only ``to_ndarray`` and resizing are skipped.
        """
        import av

        with _Decoding(self.path) as decoding:
            try:
                for frame in decoding:
                    index = decoding.decoded - 1
                    if self.end is not None and index >= self.end:
                        break
                    if self._wanted(index):
                        rgb = frame.to_ndarray(format="rgb24")
                        rgb = turn(rgb, self.info.rotation, self.info.mirror)
                        yield index, self._finish(rgb)
                else:
                    decoding.report(finished=True)
                    return
            except av.FFmpegError as exc:  # a frame that decoded but does not convert
                raise DataError(
                    f"corrupt video: decoding failed after {decoding.decoded} frames ({exc})",
                    self.path,
                ) from None
            decoding.report(finished=False)  # stopped at ``end``

    def count_frames(self) -> int:
        """Decode the whole video and count its frames (declared counts can be wrong)."""
        if self.info.kind == "frames":
            return len(list_frame_files(self.path))
        with _Decoding(self.path) as decoding:
            for _ in decoding:
                pass
            decoding.report(finished=True)
        return decoding.decoded


class _Decoding:
    """One pass over a file's video stream: its frames in decoding order, on one thread.

    Every reader of a file goes through here, so that all stages number its frames
    alike. A packet that fails to decode (a few corrupt bytes mid-file) is skipped and
    counted and decoding goes on with the next one, as players do: one bad packet no
    longer rejects a whole video. One thread, because FFmpeg's frame threading reports
    such errors late or never and drops other frames around them, so a damaged file's
    frames, and their indices, would depend on the machine's core count (19 or 21
    frames from one file). Stages decode videos in parallel workers, so little is lost.
    """

    def __init__(self, path: Path):
        self.path = path
        self.container = _open_container(path)
        try:
            self.stream = _video_stream(self.container, path)
            self.stream.codec_context.thread_count = 1
            self.declared_end = _declared_end(self.container, self.stream)
        except BaseException:
            self.container.close()
            raise
        self.decoded = self.skipped = 0  # frames out, packets that failed
        self.first_error = ""
        self.last: Any = None  # the last frame out
        self._frames: Iterator[Any] | None = None

    def __enter__(self) -> _Decoding:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._frames is not None:
            self._frames.close()  # before the container it reads from
        self.container.close()

    def __iter__(self) -> Iterator[Any]:
        self._frames = self._decode()
        return self._frames

    def _decode(self) -> Iterator[Any]:
        import av

        codec = self.stream.codec_context
        packets = self.container.demux(self.stream)  # ends with an empty packet: flush
        while True:
            try:
                packet = next(packets, None)
            except av.FFmpegError as exc:  # the container itself, not one packet
                raise DataError(
                    f"corrupt video: reading failed after {self.decoded} frames ({exc})",
                    self.path,
                ) from None
            if packet is None:
                return
            try:
                frames = codec.decode(packet)
            except av.FFmpegError as exc:
                self.skipped += 1
                self.first_error = self.first_error or (exc.strerror or str(exc))
                continue
            for frame in frames:
                self.decoded += 1
                self.last = frame
                yield frame

    def report(self, finished: bool) -> None:
        """Fail if no frame came out; warn once about skipped packets and, when the pass
        ``finished`` the file, about a file that ends before its header says."""
        if self.decoded == 0 and finished:
            why = (
                f"{self.skipped} packet(s) failed to decode ({self.first_error})"
                if self.skipped
                else "the file is empty or corrupt"
            )
            raise DataError("no frame could be decoded", self.path, why)
        if self.skipped:
            from vcl.console import log

            log.warning(
                "%s: %d packet(s) failed to decode and were skipped (%s); "
                "the %d decoded frames are used",
                self.path,
                self.skipped,
                self.first_error,
                self.decoded,
            )
        if finished:
            _warn_if_cut_short(self.path, self.decoded, self.last, self.declared_end)


def _declared_end(container: Any, stream: Any) -> float | None:
    """Seconds at which the header says the video stream ends (None: it does not say):
    the later of its duration and its frame count at its average rate (a cut AVI keeps
    its header's count while FFmpeg estimates the duration from what is left); in
    Matroska/WebM, which store neither, the track's ``DURATION`` tag (FFmpeg writes the
    track's end time there). The whole file's length stands in only for a file of one
    stream: an audio track may outlast the video by seconds in a file that is whole."""
    start = float((stream.start_time or 0) * stream.time_base) if stream.time_base else 0.0
    ends = []
    if stream.duration and stream.time_base:
        ends.append(start + float(stream.duration * stream.time_base))
    if stream.frames and stream.average_rate:
        ends.append(start + stream.frames / float(stream.average_rate))
    tagged = _DURATION_TAG.fullmatch(stream.metadata.get("DURATION", "").strip())
    if tagged:
        hours, minutes, seconds = tagged.groups()
        ends.append(int(hours) * 3600 + int(minutes) * 60 + float(seconds))
    if ends:
        return max(ends)
    timed = [s for s in container.streams if s.type in ("video", "audio", "subtitle")]
    if container.duration and len(timed) == 1:  # the whole file's length (µs)
        return container.duration / 1e6
    return None


def _warn_if_cut_short(path: Path, decoded: int, last: Any, declared_end: float | None) -> None:
    """A truncated download decodes fine up to where it was cut, silently. Compared by
    time, not frame count: a variable-rate AVI's header counts the repeated frames it
    stores as empty chunks (OpenCV's tree.avi declares 444 frames and decodes 68, all
    of its 29.6 s)."""
    if last is None or last.time is None or declared_end is None:
        return
    missing = declared_end - float(last.time)
    if missing > max(0.5, 0.05 * declared_end):
        from vcl.console import log

        log.warning(
            "%s: decoding ended at %.2f s of the %.2f s its header declares (truncated?); "
            "the %d decoded frames are used",
            path,
            float(last.time),
            declared_end,
            decoded,
        )


def turn(rgb: np.ndarray, rotation: int, mirror: bool = False) -> np.ndarray:
    """``rgb`` turned clockwise by ``rotation`` (0, 90, 180 or 270) degrees, then
    mirrored left-right if ``mirror`` (every flip and quarter turn is one such pair)."""
    if rotation:
        import cv2

        code = {
            90: cv2.ROTATE_90_CLOCKWISE,
            180: cv2.ROTATE_180,
            270: cv2.ROTATE_90_COUNTERCLOCKWISE,
        }[rotation]
        rgb = cv2.rotate(rgb, code)
    return rgb[:, ::-1] if mirror else rgb


def _orientation(matrix: np.ndarray) -> tuple[int, bool]:
    """``(rotation, mirror)`` for ``turn`` that shows a frame as FFmpeg's autorotate does.

    ``matrix``: the display matrix, 9 int32 (a, b, u, c, d, v, x, y, w), a-d in 16.16
    fixed point. FFmpeg reads the angle as ``atan2(b, a)`` (columns normalised) and,
    at a quarter turn, the flips from signs: 0° with d < 0 is a vertical flip; 90°
    with c > 0 is a transpose; 180° flips left-right if a < 0 and up-down if d < 0;
    270° with c < 0 is the anti-transpose (fftools' ``get_rotation`` and the filters
    it inserts). An angle that is no quarter turn (FFmpeg's ``rotate`` filter, black
    corners) is rounded to the nearest one, unmirrored.
    """
    a, b, c, d = (float(v) for v in matrix[[0, 1, 3, 4]])
    scale_a, scale_b = np.hypot(a, c), np.hypot(b, d)
    if not scale_a or not scale_b:
        return 0, False  # degenerate: FFmpeg turns nothing
    theta = np.degrees(np.arctan2(b / scale_b, a / scale_a)) % 360  # clockwise
    quarter = round(theta / 90) % 4
    if abs(theta - 90 * round(theta / 90)) >= 1:
        return quarter * 90, False
    if quarter == 0:
        return (180, True) if d < 0 else (0, False)  # a vertical flip: 180° and a mirror
    if quarter == 1:
        return 90, c > 0
    if quarter == 3:
        return 270, c < 0
    flip_h, flip_v = a < 0, d < 0
    if flip_h and flip_v:
        return 180, False
    return (180 if flip_v else 0), flip_h != flip_v


def _display_orientation(decoding: _Decoding) -> tuple[int, bool]:
    """``_orientation`` of the display matrix on the stream's first frame (PyAV exposes
    it on frames, not streams); no turn if it has none."""
    from av.sidedata.sidedata import Type

    try:
        frame = next(iter(decoding), None)
    except DataError:
        return 0, False  # unreadable: the reader reports it when it decodes
    matrix = None if frame is None else frame.side_data.get(Type.DISPLAYMATRIX)
    if matrix is None:
        return 0, False
    return _orientation(np.frombuffer(bytes(matrix), dtype=np.int32))


def _local(path: Path) -> str:
    """``path`` as FFmpeg must be given a local file: absolute. FFmpeg reads a relative
    ``cam1:front.mp4`` as the URL protocol ``cam1`` (and ``file:odd.mp4`` as the file
    ``odd.mp4``); an absolute path starts with ``/``, which names no protocol."""
    return os.path.abspath(path)


def _open_container(path: Path) -> Any:
    import av

    try:
        container = av.open(_local(path), "r")
    except av.FFmpegError as exc:
        raise DataError(f"not a readable video ({exc.strerror or exc})", path) from None
    if not container.streams.video:
        container.close()
        raise DataError("has no video stream", path)
    return container


def _video_stream(container: Any, path: Path) -> Any:
    """The video stream every reader decodes (probe and decoders pick the same one).

    FFmpeg's choice (``streams.best``, as players make it), not the first stream: a
    Matroska file may hold a one-frame still as track 0 before the video. An attached
    cover picture (an MP4's or M4A's cover art) is never the video, and a stream this
    FFmpeg build has no decoder for (it has no codec context) gives way to one it has.
    """
    from av.stream import Disposition

    moving = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not moving:
        raise DataError("has no video stream, only an attached cover picture", path)
    best = container.streams.best("video")
    ranked = sorted(moving, key=lambda s: best is None or s.index != best.index)  # stable
    decodable = [s for s in ranked if s.codec_context is not None]
    if not decodable:
        raise DataError(
            "no decoder for its video codec in this FFmpeg build",
            path,
            "convert it to a common codec (e.g. H.264) with a full FFmpeg",
        )
    return decodable[0]


def probe(path: str | Path, fps: float | None = None) -> VideoInfo:
    """Read a video's size, rate and declared length without decoding it all."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError("no such video file or frame folder", path)
    if path.is_dir():
        import cv2

        files = list_frame_files(path)
        if not files:
            raise DataError("frame folder holds no jpg/png images", path)
        first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
        if first is None:
            raise DataError(f"{files[0].name} is not a readable image", path)
        return VideoInfo(str(path), "frames", first.shape[1], first.shape[0], fps, len(files), None)
    with _Decoding(path) as decoding:
        stream = decoding.stream
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        declared = stream.frames or None
        codec = stream.codec_context.name
        rotation, mirror = _display_orientation(decoding)
    if not width or not height:
        raise DataError("video stream has no frame size", path)
    if rotation in (90, 270):
        width, height = height, width
    rate = fps or (float(rate) if rate else None)
    return VideoInfo(str(path), "file", width, height, rate, declared, codec, rotation, mirror)


def write_video(
    path: str | Path, frames: Iterable[np.ndarray], fps: float, codec: str = "mp4v"
) -> int:
    """Encode RGB uint8 frames into ``path`` atomically; returns the frame count.

    ``codec``: ``mp4v`` (MPEG-4 part 2, any size) or ``mjpg`` (Motion JPEG). The
    container comes from the extension (.mp4, .avi, .mkv, ...).
    """
    import av

    path = Path(path)
    if codec not in _CODECS:
        raise ValueError(f"codec must be one of {sorted(_CODECS)}")
    fmt = _CONTAINER_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(
            f"unknown video container {path.suffix!r}",
            path,
            f"use one of {', '.join(sorted(_CONTAINER_FORMATS))}",
        )
    codec_name, pix_fmt = _CODECS[codec]
    partial = path.with_name(path.name + ".partial")
    count = 0
    try:
        with av.open(_local(partial), "w", format=fmt) as container:
            stream = None
            for rgb in frames:
                if stream is None:
                    height, width = rgb.shape[:2]
                    stream = container.add_stream(
                        codec_name, rate=Fraction(fps).limit_denominator(1001)
                    )
                    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
                    stream.bit_rate = max(400_000, int(width * height * fps * 1.5))
                    # one encoder thread: the bytes then depend on the frames only, not on the
                    # machine's core count (vcl synth promises the same videos for the same seed)
                    stream.codec_context.thread_count = 1
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                container.mux(stream.encode(frame))
                count += 1
            if stream is not None:
                container.mux(stream.encode())
        if count == 0:
            raise ValueError("no frames to write")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return count


def write_frame_folder(folder: str | Path, frames: Iterable[np.ndarray]) -> int:
    """Write RGB frames as ``000000.png, 000001.png, ...`` (the frame-folder layout)."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, rgb in enumerate(frames, start=1):
        cv2.imwrite(str(folder / f"{count - 1:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return count
