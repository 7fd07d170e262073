"""Object tracks: link proposals into tracks, mine moving patches, import ground truth.

Three ways to make a tracks JSONL (one ``vcl.track/1`` record a line):

- `vcl.track.iou`: ODCT's greedy IoU tracker over frame-wise proposals, with optical
  flow registration (Cuffaro et al. 2016 as used by ODCT §IV);
- `vcl.track.kcf`: Wang & Gupta's (ICCV'15) moving-patch mining tracked with KCF;
- `vcl.track.gt`: ground-truth tracks from `vcl synth` or ImageNet VID XML.

`vcl.track.evaluate` scores predicted tracks against ground truth.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcl.errors import DataError, ErrorMessage, OutputError, VclError
from vcl.io.manifest import TrackRecord, dumps

METHODS = ("iou", "kcf", "gt")


@dataclass(frozen=True)
class VideoTask:
    """One video's work for a worker process (picklable)."""

    video_id: str
    video_path: str
    method: str  # "iou" or "kcf"
    params: dict[str, Any]
    proposals: str | None = None  # the proposals store (iou)


@dataclass
class VideoResult:
    video_id: str
    tracks: list[TrackRecord] = field(default_factory=list)
    # set when the video failed: skipped by --keep-going, else raised again with its exit
    # code (`vcl.errors.worker_error`)
    error: ErrorMessage | None = None


def to_records(
    video_id: str, tracks: Iterable[Any], method: str, params: dict[str, Any]
) -> list[TrackRecord]:
    """RawTracks as ``vcl.track/1`` records ``<video>_t0000, ...`` carrying method and params."""
    out = []
    for k, t in enumerate(tracks):
        out.append(
            TrackRecord(
                id=f"{video_id}_t{k:04d}",
                video_id=video_id,
                frames=[int(f) for f in t.frames],
                boxes=[[round(float(v), 2) for v in b] for b in t.boxes],
                score=round(t.score, 6),
                extra={"method": method, "params": params},
            )
        )
    return out


def read_proposals(path: str | Path, video_id: str) -> tuple[Any, Any, Any, dict[str, Any]]:
    """``frame (N,), box (N×4), score (N,)`` of one video from a ``vcl.proposals/1`` store,
    and what its attrs record of the video: ``size``, the source ``(width, height)``, and
    ``frame_end`` with the store's ``stride`` (the frames proposed on are ``range(0,
    frame_end, stride)``); None where they do not (older or hand-made stores)."""
    from vcl.io.store import Store

    store = Store(path, kind="proposals", version=1)
    missing = [c for c in ("frame", "box", "score") if c not in store.columns]
    if missing:
        raise DataError(f"proposals store lacks the column {missing[0]!r}", path)
    group = store.read_group(video_id)
    videos = store.attrs.get("videos")
    info = videos.get(video_id) if isinstance(videos, dict) else None
    info = info if isinstance(info, dict) else {}
    width, height, end = info.get("width"), info.get("height"), info.get("frame_end")
    params = store.attrs.get("params")
    stride = params.get("stride", 1) if isinstance(params, dict) else 1
    ints = isinstance(width, int) and isinstance(height, int)
    sampled = isinstance(end, int) and isinstance(stride, int) and stride >= 1
    recorded = {
        "size": (width, height) if ints else None,
        "frame_end": end if sampled else None,
        "stride": stride if sampled else 1,
    }
    return group["frame"], group["box"], group["score"], recorded


def check_source_size(video_id: str, video_path: str, size: tuple[int, int]) -> None:
    """Refuse a video whose size differs from the one its proposals were made on.

    Proposal boxes are in pixels of the video proposed on (upright, before --max-side
    resizing: the size `vcl.io.video.probe` reports), so the manifest's video must have
    that size. A resized copy under the same id decodes fine, but registers flow at the
    wrong scale and gives tracks, then crops, of the wrong regions.
    """
    from vcl.io.video import probe

    info = probe(video_path)
    if (info.width, info.height) != tuple(size):
        raise DataError(
            f"video {video_id!r} is {info.width}x{info.height} but its proposals were made "
            f"on a {size[0]}x{size[1]} video",
            video_path,
            "the proposals were made from another video (pass the manifest they were made from)",
        )


def process_video(task: VideoTask) -> VideoResult:
    """Track one video; a bad video comes back as an error message (for --keep-going)."""
    try:
        if task.method == "iou":
            from vcl.track.iou import IouParams, track_video

            frames, boxes, scores, info = read_proposals(task.proposals, task.video_id)
            if info["size"] is not None:
                check_source_size(task.video_id, task.video_path, info["size"])
            params = IouParams(**task.params)
            raw = track_video(
                task.video_path, frames, boxes, scores, params, info["frame_end"], info["stride"]
            )
        elif task.method == "kcf":
            from vcl.track.kcf import KcfParams
            from vcl.track.kcf import track_video as kcf_video

            raw = kcf_video(task.video_path, KcfParams(**task.params))
        else:
            raise ValueError(f"unknown method {task.method!r}")
    except VclError as exc:
        return VideoResult(task.video_id, error=exc.message)
    return VideoResult(task.video_id, to_records(task.video_id, raw, task.method, task.params))


class TrackWriter:
    """Tracks JSONL written video by video, resumably (or to stdout for ``-``).

    ``NAME.partial`` holds the tracks of finished videos and ``NAME.partial.done`` lists
    them (its first line holds the parameters). A video's tracks are flushed before its
    id is added to ``.done``, so a rerun after a kill keeps exactly the finished videos
    (dropping lines of a video cut short) and skips them. ``finish`` renames the
    partial file to NAME; a rerun with other parameters is refused, and so is one whose
    ``groups`` (the video ids of its input) lack a finished video, as for stores
    (`vcl.io.store.check_resumable`; --overwrite starts over).

    For ``-`` the lines are held in memory and written to stdout by ``finish`` only, as
    `vcl videos` writes its manifest: a run that fails on its second video leaves
    nothing on stdout, where the first video's tracks would have reached the next stage
    of a pipe (``vcl crops -``), which cannot tell a cut stream from a complete one and
    made a complete-looking store of them. Such a run has no resume (there is no
    file to resume from) and its tracks are a few hundred bytes each.
    """

    def __init__(
        self,
        path: str | Path,
        params: dict[str, Any],
        overwrite: bool = False,
        groups: Iterable[str] | None = None,
    ):
        self.to_stdout = str(path) == "-"
        self.done: set[str] = set()
        self.count = 0
        self._held: list[str] = []  # stdout's lines, until `finish`
        if self.to_stdout:
            return
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.done_file = self.path.with_name(self.path.name + ".partial.done")
        if self.path.exists() and not overwrite:
            raise OutputError("exists already", self.path, "pass --overwrite to replace it")
        header = json.dumps({"params": params}, sort_keys=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not (
                self.partial.exists()
                and self.done_file.exists()
                and self._resume(header, groups, overwrite)
            ):
                self.partial.write_text("", encoding="utf-8")
                self.done_file.write_text(header + "\n", encoding="utf-8")
            self._stream = self.partial.open("a", encoding="utf-8")
            self._done_stream = self.done_file.open("a", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write ({exc.strerror})", self.path) from None

    def _resume(self, header: str, groups: Iterable[str] | None, overwrite: bool) -> bool:
        """Keep the finished videos' lines; False: --overwrite discards another input's."""
        from vcl.io.store import check_resumable, discard_other_run

        text = self.done_file.read_text(encoding="utf-8")
        lines = text.splitlines()
        if lines and not text.endswith("\n"):  # an id cut by the kill: not done
            lines.pop()
            tmp = self.done_file.with_name(self.done_file.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            os.replace(tmp, self.done_file)
        if not lines or lines[0] != header:
            done = max(len(lines) - 1, 0)
            discard_other_run(self.partial, "different parameters", done, overwrite, "file")
            return False
        if not check_resumable(self.partial, dict.fromkeys(lines[1:]), groups, overwrite):
            return False
        self.done = set(lines[1:])
        kept = []
        with self.partial.open(encoding="utf-8") as stream:
            for line in stream:
                try:
                    if json.loads(line).get("video_id") in self.done:
                        kept.append(line if line.endswith("\n") else line + "\n")
                except json.JSONDecodeError:
                    continue  # a line cut by the kill
        tmp = self.partial.with_name(self.partial.name + ".tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, self.partial)
        self.count = len(kept)
        return True

    def write_video(self, video_id: str, records: Sequence[TrackRecord]) -> None:
        if self.to_stdout:
            self._held.extend(dumps(record, None) + "\n" for record in records)
        else:
            base = self.path.resolve().parent
            for record in records:
                self._stream.write(dumps(record, base) + "\n")
            self._stream.flush()
            os.fsync(self._stream.fileno())
            self._done_stream.write(video_id + "\n")
            self._done_stream.flush()
        self.count += len(records)
        self.done.add(video_id)

    def close(self) -> None:
        """Close the files (a failed run: stdout's held lines are dropped unwritten)."""
        self._held = []
        if not self.to_stdout:
            self._stream.close()
            self._done_stream.close()

    def finish(self) -> None:
        """Move the complete file into place (the only way NAME appears), or write every
        held line to stdout (the only time ``-`` gets any)."""
        if self.to_stdout:
            import sys

            sys.stdout.write("".join(self._held))
            sys.stdout.flush()
        self.close()
        if not self.to_stdout:
            os.replace(self.partial, self.path)
            self.done_file.unlink(missing_ok=True)
