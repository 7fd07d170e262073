"""Crops of tracked objects: the training samples of ODCT (and Wang & Gupta's pairs).

For each track, K frames equally spaced in time (ODCT: K = 10): the K instants
``linspace(first, last, K)`` each take the nearest frame the track has a box in; where
a gap makes two instants pick the same frame, the K distinct frames nearest the
instants overall are taken, so a track of n boxes always gives min(K, n) crops. Each
box is cropped from the decoded source frame with an optional ``context`` margin,
resized to S×S and stored as uint8.

Crop region (``shape``):

- ``square`` (default): a square of side ``max(w, h) · (1 + 2·context)`` around the
  box centre. Resizing a square to S×S keeps the object's proportions, so a tall
  pedestrian and a wide car are not stretched into the same square blob — the
  network sees true shapes, and a crop is what a random-resized-crop augmentation
  of a square image expects.
- ``box``: the box grown by ``context`` of its width and height on each side, then
  stretched to S×S (aspect ratio not kept).

Regions partly outside the frame are clipped to it (the crop then is stretched); a
box entirely outside the frame is an error naming its track. Pixel regions are
``[floor(x0), ceil(x1)) × [floor(y0), ceil(y1))``; shrinking uses area interpolation,
enlarging bilinear. Every video is decoded once, sequentially, from frame 0 to its
last needed frame.

``pairs`` (Wang & Gupta): exactly the first and last box of every track (query,
tracked), in that order, two rows per track.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vcl.errors import DataError, VclError
from vcl.io.manifest import TrackRecord

SHAPES = ("square", "box")
CHUNK_SAMPLES = 4  # images per zarr chunk: a random read decompresses 4 crops, not 27


@dataclass(frozen=True)
class CropParams:
    per_track: int = 10  # K crops per track, equally spaced in time
    size: int = 224  # S: crops are S×S
    context: float = 0.0  # margin added on each side, as a fraction of the region side
    shape: str = "square"  # square | box (see the module docstring)
    pairs: bool = False  # first and last box only (query, tracked)

    def validate(self) -> None:
        checks = [
            (self.per_track >= 1, f"--per-track must be >= 1, got {self.per_track}"),
            (self.size >= 1, f"--size must be >= 1, got {self.size}"),
            (0 <= self.context <= 10, f"--context must be in [0, 10], got {self.context}"),
            (self.shape in SHAPES, f"--shape must be one of {', '.join(SHAPES)}"),
        ]
        for ok, problem in checks:
            if not ok:
                raise ValueError(problem)

    def to_json(self) -> dict:
        return asdict(self)


def sample_indices(frames: np.ndarray, k: int) -> np.ndarray:
    """Indices (min(k, n), increasing) of the n track frames nearest to k instants equally
    spaced between its first and last frame.

    Each instant takes its nearest frame; where a gap makes two instants pick the same
    frame, the k distinct frames closest to the instants overall are taken instead
    (`_spread`), so a track with at least k boxes always gives k crops.
    """
    frames = np.asarray(frames, np.float64)
    if len(frames) <= 1 or k == 1:
        return np.zeros(min(1, len(frames)), np.int64)
    if len(frames) <= k:
        return np.arange(len(frames))
    targets = np.linspace(frames[0], frames[-1], k)
    pos = np.clip(np.searchsorted(frames, targets), 1, len(frames) - 1)
    left_closer = targets - frames[pos - 1] <= frames[pos] - targets
    nearest = np.where(left_closer, pos - 1, pos)  # non-decreasing
    if (np.diff(nearest) > 0).all():
        return nearest
    return _spread(frames, targets)


def _spread(frames: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Indices i_1 < … < i_k minimising Σ_j |frames[i_j] − targets[j]| (k ≤ n).

    Both sorted, so an optimal matching keeps order: dynamic programming over
    (instant j, frame i), best[j, i] = |frames[i] − t_j| + min over i' < i of
    best[j − 1, i']; O(k·n).
    """
    n, k = len(frames), len(targets)
    cost = np.abs(frames[None, :] - targets[:, None])  # (k, n)
    best = np.full((k, n), np.inf)
    back = np.zeros((k, n), np.int64)
    best[0] = cost[0]
    index = np.arange(n)
    for j in range(1, k):
        prev = best[j - 1]
        running = np.minimum.accumulate(prev)
        arg = np.maximum.accumulate(np.where(prev == running, index, 0))  # argmin of prev[:i+1]
        best[j, 1:] = cost[j, 1:] + running[:-1]
        back[j, 1:] = arg[:-1]
    out = np.empty(k, np.int64)
    out[-1] = int(np.argmin(best[-1]))
    for j in range(k - 1, 0, -1):
        out[j - 1] = back[j, out[j]]
    return out


def crop_region(
    box: np.ndarray, width: int, height: int, context: float = 0.0, shape: str = "square"
) -> tuple[int, int, int, int]:
    """Integer pixel region ``(x0, y0, x1, y1)`` (x1, y1 exclusive) to cut for ``box``.

    The caller has checked the box meets the frame; the region is clipped to it and is
    at least one pixel wide and high.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    if shape == "square":
        w = h = max(w, h)
    w, h = w * (1 + 2 * context), h * (1 + 2 * context)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rx0 = min(max(math.floor(cx - w / 2), 0), width - 1)
    ry0 = min(max(math.floor(cy - h / 2), 0), height - 1)
    rx1 = max(min(math.ceil(cx + w / 2), width), rx0 + 1)
    ry1 = max(min(math.ceil(cy + h / 2), height), ry0 + 1)
    return rx0, ry0, rx1, ry1


def resize_crop(patch: np.ndarray, size: int) -> np.ndarray:
    """An (h×w×3) patch as size×size: area interpolation to shrink, bilinear to enlarge."""
    import cv2

    shrink = patch.shape[0] * patch.shape[1] >= size * size
    return cv2.resize(
        np.ascontiguousarray(patch),
        (size, size),
        interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
    )


@dataclass(frozen=True)
class CropTask:
    video_id: str
    video_path: str
    tracks: tuple[TrackRecord, ...]
    params: CropParams
    source: str  # the tracks file, for error messages


def plan_rows(task: CropTask, width: int, height: int) -> list[tuple[str, int, np.ndarray]]:
    """``(track_id, frame, box)`` of every crop of a video, in track then time order."""
    rows = []
    k = 2 if task.params.pairs else task.params.per_track
    for t in task.tracks:
        frames = np.asarray(t.frames)
        boxes = np.asarray(t.boxes, np.float64).reshape(-1, 4)
        if len(frames) == 0:
            raise DataError(f"track {t.id!r} has no boxes", task.source)
        if task.params.pairs:
            if len(frames) < 2:
                raise DataError(
                    f"track {t.id!r} has one box: no (query, tracked) pair", task.source
                )
            idx = np.array([0, len(frames) - 1])
        else:
            idx = sample_indices(frames, k)
        for i in idx:
            b = boxes[i]
            if b[2] <= 0 or b[3] <= 0 or b[0] >= width or b[1] >= height:
                raise DataError(
                    f"track {t.id!r}: the box {b.round(2).tolist()} at frame {int(frames[i])} "
                    f"lies entirely outside the {width}x{height} frame",
                    task.source,
                )
            rows.append((t.id, int(frames[i]), b))
    return rows


def crop_video(task: CropTask) -> dict[str, np.ndarray]:
    """The crops of one video's tracks as store columns (decoding the video once);
    ``label`` is the track's label, "" when it has none."""
    from vcl.io.video import VideoReader

    reader = VideoReader(task.video_path)
    width, height = reader.info.width, reader.info.height
    rows = plan_rows(task, width, height)
    s = task.params.size
    images = np.zeros((len(rows), s, s, 3), np.uint8)
    if rows:
        by_frame: dict[int, list[int]] = {}
        for r, (_, frame, _) in enumerate(rows):
            by_frame.setdefault(frame, []).append(r)
        last = max(by_frame)
        # From frame 0, not a seek to `first`: frames are numbered by decoding order, and
        # seeking numbers them by timestamp, which is wrong in files with broken
        # timestamps (OpenCV's tree.avi); the skipped frames only cost decoding.
        reader = VideoReader(task.video_path, end=last + 1)
        for index, rgb in reader:
            for r in by_frame.pop(index, ()):
                x0, y0, x1, y1 = crop_region(
                    rows[r][2], width, height, task.params.context, task.params.shape
                )
                images[r] = resize_crop(rgb[y0:y1, x0:x1], s)
        if by_frame:
            frame = min(by_frame)
            track = rows[by_frame[frame][0]][0]
            raise DataError(
                f"track {track!r} names frame {frame}, past the end of the video {task.video_path}",
                task.source,
            )
    label_of = {t.id: t.label or "" for t in task.tracks}
    return {
        "image": images,
        "label": np.array([label_of[r[0]] for r in rows], dtype=str).reshape(-1),
        "track_id": np.array([r[0] for r in rows], dtype=str).reshape(-1),
        "video_id": np.array([task.video_id] * len(rows), dtype=str).reshape(-1),
        "frame": np.array([r[1] for r in rows], np.int32).reshape(-1),
        "box": np.array([r[2] for r in rows], np.float32).reshape(-1, 4),
    }


def try_crop_video(task: CropTask) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """``crop_video`` for ``--keep-going``: ``(columns, None)`` or ``(None, error)`` when
    the video is missing or cannot be decoded (or a track does not fit it)."""
    try:
        return crop_video(task), None
    except VclError as exc:
        return None, exc.message


def columns_spec(size: int, labels: bool = False) -> dict[str, tuple[object, tuple[int, ...]]]:
    """The ``vcl.crops/1`` columns; ``label`` (the track's class, e.g. from ``vcl track
    --method gt --keep-class``) when the tracks carry labels, so that embeddings of the
    crops can be probed and their clusters scored without another file."""
    spec: dict[str, tuple[object, tuple[int, ...]]] = {
        "image": ("uint8", (size, size, 3)),
        "track_id": (str, ()),
        "video_id": (str, ()),
        "frame": ("int32", ()),
        "box": ("float32", (4,)),
    }
    if labels:
        spec["label"] = (str, ())
    return spec


def projected_bytes(n_crops: int, size: int) -> int:
    """Raw bytes of ``n_crops`` S×S×3 crops (zstd usually saves a third to a half)."""
    return n_crops * size * size * 3


def store_bytes(path: str | Path) -> int:
    """Size on disk of a store folder."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
