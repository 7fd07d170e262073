"""Human boxes, whose keypoint matches are left out of the camera's homography.

People move on their own, so matches on them would bend the camera fit (Wang &
Schmid ICCV 2013, sec. 2.1). The release reads boxes from a detector run beforehand;
here the default is OpenCV's HOG people detector (Dalal & Triggs; ships with OpenCV,
nothing to download), or boxes from any detector in a JSONL file.

Boxes file (``--human-boxes``), one JSON object a line, boxes ``[x0, y0, x1, y1]`` in
source-video pixels, frames 0-based; either one frame's boxes::

    {"video_id": "v1", "frame": 12, "boxes": [[10, 20, 50, 120], ...]}

or a whole track (the ``vcl track`` output)::

    {"video_id": "v1", "frames": [12, 13], "boxes": [[10, 20, 50, 120], [12, 20, 52, 121]]}
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from vcl.errors import DataError, MissingInputError
from vcl.io.manifest import iter_json_lines

FrameBoxes = dict[int, np.ndarray]  # frame -> (M, 4) xyxy


class PeopleDetector:
    """OpenCV's default HOG people detector on the working-size frames."""

    def __init__(self, hit_threshold: float = 0.0, scale: float = 1.05):
        import cv2

        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.hit_threshold, self.scale = hit_threshold, scale

    def __call__(self, grey: np.ndarray) -> np.ndarray:
        """(M, 4) xyxy boxes of people in ``grey`` (H×W uint8)."""
        if grey.shape[0] < 128 or grey.shape[1] < 64:  # smaller than one window
            return np.zeros((0, 4), np.float32)
        rects, _ = self.hog.detectMultiScale(
            grey, hitThreshold=self.hit_threshold, winStride=(8, 8), scale=self.scale
        )
        rects = np.asarray(rects, np.float32).reshape(-1, 4)
        rects[:, 2:] += rects[:, :2]
        return rects


def _boxes(value: Any, what: str) -> np.ndarray:
    boxes = np.asarray(value, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4), np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
        raise ValueError(f"{what} must be a list of [x0, y0, x1, y1] boxes")
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise ValueError(f"{what}: a box has x1 < x0 or y1 < y0")
    return boxes.astype(np.float32)


def _frame(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("'frame' must be an integer >= 0")
    return value


def read_human_boxes(path: str | Path) -> dict[str, FrameBoxes]:
    """``video_id -> frame -> (M, 4)`` boxes (source pixels) from a JSONL file.

    A malformed line raises DataError naming the file and the line number.
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError("no such human-boxes file", path)
    found: dict[str, dict[int, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    for lineno, obj in iter_json_lines(path):
        try:
            video = obj.get("video_id")
            if not isinstance(video, str) or not video:
                raise ValueError("'video_id' must be a non-empty string")
            if "frames" in obj:
                frames = obj["frames"]
                boxes = _boxes(obj.get("boxes"), "'boxes'")
                if not isinstance(frames, list) or len(frames) != len(boxes):
                    raise ValueError("'frames' and 'boxes' must be lists of the same length")
                for frame, box in zip(frames, boxes, strict=True):
                    found[video][_frame(frame)].append(box[None])
            elif "frame" in obj:
                found[video][_frame(obj["frame"])].append(_boxes(obj.get("boxes", []), "'boxes'"))
            else:
                raise ValueError("needs 'frame' and 'boxes', or 'frames' and 'boxes'")
        except (ValueError, TypeError) as exc:
            raise DataError(f"line {lineno}: {exc}", path) from None
    return {
        video: {frame: np.concatenate(parts) for frame, parts in frames.items()}
        for video, frames in found.items()
    }
