"""Turn what a user names on the command line into video records.

Every video command accepts, in any mix: a videos manifest (``*.jsonl``), ``-``
(a manifest on stdin), video files, frame folders (a folder holding images is one
video), and folders of videos or frame folders (searched recursively, skipping
names that start with '.'). Ids of plain paths are their path relative to the
deepest folder common to all of them, without extension, so ``a/x.mp4`` and
``b/x.mp4`` stay distinct; files that would share an id but for their extension
keep it (``x.mp4`` and ``x.avi`` beside each other), with a warning. Paths are taken
as named, not resolved: a symbolic link is a video of its own, with the link's id
and path (two links to one file are two videos).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from vcl.errors import DataError, MissingInputError, UsageError
from vcl.io.manifest import (
    VideoRecord,
    is_stream,
    keep_extensions,
    read_records,
    video_id_for_path,
)
from vcl.io.video import IMAGE_EXTENSIONS, is_hidden

# matched lower-cased (00001.MTS is a video); FFmpeg reads them all. A file of another
# extension in a scanned folder is counted in a warning; named alone, any file is read.
# (Not .mod/.tod, old camcorders' MPEG-2: a folder scan would take go.mod for a video.)
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".qt",
        ".avi",
        ".divx",
        ".mkv",
        ".webm",
        ".mpg",
        ".mpeg",
        ".m2v",
        ".vob",
        ".ts",
        ".mts",  # AVCHD camcorders
        ".m2ts",
        ".m2t",
        ".mxf",
        ".dv",
        ".wmv",
        ".asf",
        ".flv",
        ".f4v",
        ".ogv",
        ".ogm",
        ".3gp",
        ".3g2",
        ".rm",
        ".rmvb",
        ".nut",
        ".ivf",
        ".y4m",
        ".mjpeg",
        ".mjpg",
    }
)


def _holds_frames(names: Sequence[str]) -> bool:
    """Images and no video file: a folder of frames. A folder of clips with a stray
    cover.jpg is still a folder of videos (its images are ignored, with a warning)."""
    suffixes = {Path(n).suffix.lower() for n in names}
    return bool(suffixes & IMAGE_EXTENSIONS) and not suffixes & VIDEO_EXTENSIONS


def _is_frame_folder(folder: Path) -> bool:
    return _holds_frames(
        [p.name for p in folder.iterdir() if p.is_file() and not is_hidden(p.name)]
    )


def _find_videos(folder: Path) -> tuple[list[Path], Counter[str]]:
    """Video files and frame folders below ``folder``, in sorted order, and the
    extensions of the other files found (neither videos nor frames). Hidden files and
    folders are skipped (a hidden file named on the command line is still read)."""
    found: list[Path] = []
    images = 0
    others: Counter[str] = Counter()
    for root, dirs, all_files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        files = [f for f in all_files if not is_hidden(f)]
        here = Path(root)
        if here != folder and _holds_frames(files):
            found.append(here)
            dirs.clear()  # a frame folder's subfolders are not more videos
            continue
        for name in sorted(files):
            suffix = Path(name).suffix.lower()
            if suffix in VIDEO_EXTENSIONS:
                found.append(here / name)
            elif suffix in IMAGE_EXTENSIONS:
                images += 1
            else:
                others[suffix or "without extension"] += 1
    if found and (images or others):
        from vcl.console import log

        if images:
            log.warning("%s: %d images beside video files ignored (not frames)", folder, images)
        if others:
            log.warning(
                "%s: %s of other types ignored (%s); name one on the command line "
                "to read it as a video",
                folder,
                _files(others.total()),
                _tally(others),
            )
    return found, others


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _tally(counts: Counter[str], most: int = 5) -> str:
    """``3 .txt, 1 .xml, 2 more`` (commonest first)."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{n} {ext}" for ext, n in ranked[:most])
    rest = sum(n for _, n in ranked[most:])
    return f"{text}, {rest} more" if rest else text


def _absolute(path: Path) -> Path:
    """``path`` made absolute as named: a symbolic link is not replaced by its target
    (in a Hugging Face hub snapshot or a git-annex tree every video is a link into a
    folder of content-addressed blobs, whose names say nothing)."""
    return Path(os.path.abspath(path))


def _ids_for(paths: list[Path]) -> list[str]:
    """Each path's id: its path below the deepest folder common to all, without
    extension; with it where two paths would otherwise share an id (``x.mp4`` beside
    ``x.avi``, or beside a frame folder ``x``), which a warning lists."""
    absolute = [_absolute(p) for p in paths]
    if len(absolute) == 1:
        return [video_id_for_path(absolute[0])]
    common = Path(os.path.commonpath([p.parent for p in absolute]))
    named = [p.relative_to(common).as_posix() for p in absolute]
    ids = [
        Path(n).with_suffix("").as_posix() if p.is_file() else n
        for n, p in zip(named, absolute, strict=True)
    ]
    return keep_extensions(ids, named)


def resolve_videos(inputs: Sequence[str]) -> list[VideoRecord]:
    """Video records for the inputs, in order; duplicate ids are an error."""
    if not inputs:
        raise UsageError("no videos given", None, "pass video files, frame folders or a manifest")
    records: list[VideoRecord] = []
    plain: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.suffix == ".jsonl" or is_stream(item):  # a pipe: no peeking, read once
            listed = read_records(item, VideoRecord)
            if not listed:  # e.g. the `vcl videos` before it in a pipe failed
                raise DataError(
                    "lists no videos", item, "check the step that wrote it (set -o pipefail)"
                )
            records.extend(listed)
        elif not path.exists():
            raise MissingInputError("no such video file, frame folder or manifest", path)
        elif path.is_file():
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                raise UsageError(
                    "is an image, not a video", path, "pass the folder of frames instead"
                )
            plain.append(path)
        elif path.is_dir() and _is_frame_folder(path):
            plain.append(path)
        else:
            found, others = _find_videos(path)
            if not found:
                hint = None
                if others:
                    hint = (
                        f"it holds {_files(others.total())} of other types ({_tally(others)}); "
                        "name one on the command line to read it as a video"
                    )
                raise DataError("holds no video files or frame folders", path, hint)
            plain.extend(found)
    if plain:
        records.extend(
            VideoRecord(id=vid, path=str(_absolute(p)))
            for vid, p in zip(_ids_for(plain), plain, strict=True)
        )
    seen: dict[str, str] = {}
    for record in records:
        if record.id in seen:
            raise DataError(
                f"two videos have the id {record.id!r} ({seen[record.id]} and {record.path})",
                None,
                "give them distinct ids in a manifest",
            )
        seen[record.id] = record.path
    return records


def probe_record(record: VideoRecord, count: bool = False) -> VideoRecord:
    """The record with the video's size, rate and frame count filled in.

    ``frames`` is the declared count unless ``count`` decodes the video to count it
    (declared counts can be wrong); ``frames_counted`` says which. A frame folder is
    counted by reading every frame as the stages do, so an unreadable frame, or one
    of another size than the first, is a DataError naming its file here too.
    """
    from dataclasses import replace

    from vcl.io.video import VideoReader

    reader = VideoReader(record.path, fps=record.fps)
    info = reader.info
    if count and info.kind == "frames":
        frames = sum(1 for _ in reader)
    else:
        frames = reader.count_frames() if count else info.frame_count
    extra = {
        **record.extra,
        "kind": info.kind,
        "width": info.width,
        "height": info.height,
        "frames": frames,
        "frames_counted": bool(count),
    }
    if info.codec:
        extra["codec"] = info.codec
    if info.rotation:  # width/height are the upright size the frames come out at
        extra["rotation"] = info.rotation
    if info.mirror:  # a flipped display matrix: frames come out mirrored, as players show them
        extra["mirror"] = True
    return replace(record, fps=info.fps if info.fps else record.fps, extra=extra)
