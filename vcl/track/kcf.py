"""Wang & Gupta (ICCV'15) patch mining: track moving patches with KCF.

Their §3.1: find interest points whose motion is not the camera's (IDT-style: camera
motion removed with a homography), reject frames where the moving points are fewer
than 25 % or more than 75 % of all points (too little motion / camera motion the
homography failed to explain), take the box (227×227 on 448×600 frames) that holds the
most moving points, and track it with KCF for 30 frames; the first and last patches
are a (query, tracked) pair that should look alike.

Here, on frames resized to ``max_side``: points are good-features-to-track corners
(SURF is not in pip builds of OpenCV) moved by DIS flow to the next frame; the camera's
homography comes from ORB + flow matches (`vcl.motion.homography_from_matches`); a
point moves when its residual displacement exceeds ``moving_px``. The best box is found
by one integral image of the moving-point counts (every window position at once).
A frame with no moving point seeds no patch, whatever the fraction test allows.
Tracks do not overlap in time: the search resumes after a track ends. A track whose
KCF update fails before ``length`` frames is discarded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vcl.track.iou import RawTrack

Features = tuple[np.ndarray, np.ndarray | None]  # keypoint positions, descriptors


@dataclass(frozen=True)
class KcfParams:
    """Parameters of moving-patch mining; defaults are Wang & Gupta's."""

    length: int = 30  # frames KCF tracks a patch (the pair is `length` frames apart)
    box_size: int = 227  # patch side on a frame whose shorter side is 448 px (scaled)
    moving_px: float = 0.5  # residual displacement (px) above which a point moves
    min_moving: float = 0.25  # reject frames with a smaller moving fraction ...
    max_moving: float = 0.75  # ... or a larger one
    max_side: int = 600  # frames are resized so their longer side is at most this

    def validate(self) -> None:
        checks = [
            (self.length >= 1, f"--length must be >= 1, got {self.length}"),
            (self.box_size >= 8, f"--box-size must be >= 8, got {self.box_size}"),
            (self.moving_px > 0, "--moving-px must be > 0"),
            (0 <= self.min_moving < self.max_moving <= 1, "need 0 <= min-moving < max-moving <= 1"),
            (self.max_side >= 32, "--max-side must be >= 32"),
        ]
        for ok, problem in checks:
            if not ok:
                raise ValueError(problem)

    def to_json(self) -> dict:
        return asdict(self)


def moving_points(
    prev: np.ndarray,
    nxt: np.ndarray,
    moving_px: float = 0.5,
    prev_features: Features | None = None,
) -> tuple[np.ndarray, np.ndarray, Features | None]:
    """Points (N×2) of grey frame ``prev``, whether each moves (N,) once the camera is
    out, and ``nxt``'s ORB features (None when not computed: no points to judge).

    Residual = flow displacement − the displacement the camera homography gives the
    point (``H p − p``). The flow matches serve both, and ``prev_features`` (the last
    call's third value, when ``prev`` was its ``nxt``) spares detecting ``prev`` again.
    """
    from vcl.motion import (
        dense_flow,
        detect_features,
        flow_matches,
        homography_from_matches,
        match_features,
    )

    flow = dense_flow(prev, nxt, "dis", "fast")
    src, dst = flow_matches(prev, flow)
    if len(src) == 0:
        return src, np.zeros(0, bool), None
    if prev_features is None:
        prev_features = detect_features(prev)
    features = detect_features(nxt)
    keypoints = match_features(prev_features, features, window=None)
    H, _ = homography_from_matches(keypoints, (src, dst))
    ph = np.concatenate([src, np.ones((len(src), 1), np.float32)], axis=1) @ H.T  # (N, 3)
    camera = ph[:, :2] / ph[:, 2:3]
    residual = np.linalg.norm(dst - camera, axis=1)
    return src, residual > moving_px, features


def densest_window(points: np.ndarray, shape: tuple[int, int], side: int) -> tuple[int, int, int]:
    """Top-left (x, y) of the side×side window holding most points, and how many it holds.

    One integral image of point counts; window sums for every position by four lookups.
    """
    h, w = shape
    side = int(min(side, h, w))
    counts = np.zeros((h, w), np.int32)
    xi = np.clip(points[:, 0].astype(np.int64), 0, w - 1)
    yi = np.clip(points[:, 1].astype(np.int64), 0, h - 1)
    np.add.at(counts, (yi, xi), 1)
    ii = np.zeros((h + 1, w + 1), np.int64)
    ii[1:, 1:] = counts.cumsum(0).cumsum(1)
    sums = ii[side:, side:] - ii[:-side, side:] - ii[side:, :-side] + ii[:-side, :-side]
    y, x = np.unravel_index(int(sums.argmax()), sums.shape)
    return int(x), int(y), int(sums[y, x])


def patch_side(box_size: int, width: int, height: int) -> int:
    """``box_size`` is for a 448-px shorter side (the paper's 448×600 frames): scale it."""
    return max(8, round(box_size * min(width, height) / 448))


def _kcf() -> object:
    import cv2

    return cv2.TrackerKCF_create()


def track_video(video_path: str | Path, params: KcfParams) -> list[RawTrack]:
    """Moving-patch tracks of one video (boxes in source pixels), in time order.

    Each track has ``length + 1`` boxes: the seed frame and ``length`` KCF updates.
    Its score is the fraction of the seed frame's moving points inside the box. A video
    whose frames DIS flow cannot take (`vcl.motion.dis_fits`: 1×1, 3000×17 px) has no
    moving points: no track, and a warning naming it.
    """
    import cv2

    from vcl.io.video import VideoReader
    from vcl.motion import dis_fits

    reader = VideoReader(video_path, max_side=params.max_side)
    sx, sy = reader.scale
    w, h = reader.size
    side = patch_side(params.box_size, w, h)
    tracks: list[RawTrack] = []
    if not dis_fits(w, h, "fast"):  # no flow, no moving points to seed a patch
        from vcl.console import log
        from vcl.motion import too_small_for_flow

        source = (reader.info.width, reader.info.height)
        log.warning(too_small_for_flow(video_path, source, (w, h), "no kcf tracks"))
        return tracks
    prev = prev_grey = prev_features = None
    prev_index = -1
    tracker = None
    frames: list[int] = []
    boxes: list[list[float]] = []
    score = 0.0
    for index, rgb in reader:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        features = None  # this frame's ORB features, when seeding computed them
        if tracker is None and prev is not None:
            points, moving, features = moving_points(
                prev_grey, grey, params.moving_px, prev_features
            )
            fraction = float(moving.mean()) if len(moving) else 0.0
            # A window with no moving point is not a moving patch (--min-moving 0 lets
            # still frames through the fraction test; argmax of zeros is the corner).
            if moving.any() and params.min_moving <= fraction <= params.max_moving:
                x, y, n = densest_window(points[moving], (h, w), side)
                s = min(side, h, w)
                score = n / max(int(moving.sum()), 1)
                tracker = _kcf()
                tracker.init(prev, (x, y, s, s))
                frames, boxes = [prev_index], [[x, y, x + s, y + s]]
        if tracker is not None:
            ok, rect = tracker.update(rgb)
            if not ok:
                tracker = None  # lost before `length` frames: discard
            else:
                x, y, rw, rh = rect
                frames.append(index)
                boxes.append([x, y, x + rw, y + rh])
                if len(frames) == params.length + 1:
                    b = np.asarray(boxes, float) / np.array([sx, sy, sx, sy])
                    tracks.append(RawTrack(np.asarray(frames), b, np.full(len(frames), score)))
                    tracker = None
        prev, prev_grey, prev_index, prev_features = rgb, grey, index, features
    return tracks
