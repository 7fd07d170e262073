"""Free disk space, checked before a stage that writes a large output starts.

A job that fills the disk after hours of work wastes the hours and can leave other
users' jobs failing on the same machine. Stages that write large outputs (proposals,
idt, crops, embed, fisher encode, retrieve index) estimate the output's size first and
fail at once, naming the estimate and the free space, when it does not fit. The
estimates are of raw (uncompressed) bytes, an upper bound for zstd-compressed stores;
rows per frame of proposals and idt are predicted from a few probed videos.

``VCL_NO_SPACE_CHECK=1`` skips the check (when a filesystem misreports its free space,
or an estimate is known to be far too high for the data).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vcl.console import log
from vcl.errors import OutputError

SKIP_ENV = "VCL_NO_SPACE_CHECK"
PROBED_VIDEOS = 16  # videos probed to predict the frames and pixels of all of them
_MIN_BYTES_PER_FRAME = 16  # a declared frame count above size/16 is not believed


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _existing_folder(path: Path) -> Path:
    """The output's folder, or its nearest existing ancestor (the folder may be made later)."""
    folder = path.resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


def check_free_space(output: str | Path, need: float, what: str) -> None:
    """Raise OutputError naming ``need`` (bytes) and the free space when it does not fit.

    A ``NAME.partial`` left by an interrupted run is counted as already written, since
    the rerun resumes into it.
    """
    if os.environ.get(SKIP_ENV, "") not in ("", "0"):
        return
    output = Path(output)
    folder = _existing_folder(output)
    done = _size_on_disk(output.with_name(output.name + ".partial"))
    need = max(0.0, float(need) - done)
    free = shutil.disk_usage(folder).free
    log.debug(
        "%s: about %s to write, %s free in %s", output, human_bytes(need), human_bytes(free), folder
    )
    if need > free:
        raise OutputError(
            f"{what} need about {human_bytes(need)} but only {human_bytes(free)} is free "
            f"in {folder}",
            output,
            f"free some space, write elsewhere, or set {SKIP_ENV}=1 if the estimate is wrong",
        )


def predict_videos(paths: Sequence[str], max_side: int | None = None) -> tuple[float, float]:
    """``(frames, pixels)``: the predicted frames of all videos and the mean pixels per frame
    (after resizing the longer side to ``max_side``), from up to ``PROBED_VIDEOS`` of them.

    Declared frame counts are used (decoding to count would cost as much as the work);
    a count implausible for the file's size is capped, and a video that cannot be probed
    is left out (the stage itself reports it).
    """
    from vcl.io.video import VideoReader

    if not paths:
        return 0.0, 0.0
    step = max(1, len(paths) // PROBED_VIDEOS)
    frames, pixels = [], []
    for path in list(paths)[::step][:PROBED_VIDEOS]:
        try:
            info = VideoReader(path).info
        except Exception:  # broken video: the stage reports it (or skips it)
            continue
        count = int(info.frame_count or 0)
        if info.kind == "file":
            count = min(count, _size_on_disk(Path(path)) // _MIN_BYTES_PER_FRAME)
        scale = 1.0
        if max_side and max(info.width, info.height) > max_side:
            scale = max_side / max(info.width, info.height)
        frames.append(count)
        pixels.append(info.width * info.height * scale * scale)
    if not frames:
        return 0.0, 0.0
    mean_frames = sum(frames) / len(frames)
    return mean_frames * len(paths), sum(pixels) / len(pixels)


def feature_bytes(rows: int, dims: Any, itemsize: int = 4) -> int:
    """Raw bytes of ``rows`` feature rows of ``dims`` (an int or the dims of several layers)."""
    total = sum(dims) if isinstance(dims, (list, tuple)) else int(dims)
    return int(rows) * total * itemsize
