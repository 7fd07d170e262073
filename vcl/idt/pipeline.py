"""One video through IDT: flow, camera motion, tracking, descriptors, rows.

Per frame pair (t-1, t), as in the C++ release:
1. dense flow t-1 -> t (Farneback with the release's parameters, or DIS);
2. the camera's homography from keypoint matches plus flow matches (human boxes
   excluded), RANSAC; frame t warped back onto t-1 and the flow recomputed: the
   *compensated* flow, which holds only what moved relative to the scene;
3. at each scale, both flows median-filtered (the release's Farneback filters every
   level of each, 5×5): points move by the first; HOG of frame t-1 and HOF/MBH of
   the compensated flow are sampled around them; trajectories reaching L steps are
   pruned and written out; empty grid cells get new points.

Deviation from the release: its Farneback computes a flow per pyramid level; here
the flow is computed once at full size and resized (area-averaged, rescaled) to
each scale, which is what its coarse-to-fine levels approximate.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vcl.console import log
from vcl.errors import ErrorMessage, VclError
from vcl.idt import HEADER
from vcl.idt.config import IdtConfig
from vcl.idt.descriptors import HistogramWorkspace, integral_histograms
from vcl.idt.humans import FrameBoxes, PeopleDetector
from vcl.idt.sampling import build_pyramid, dense_sample, pyramid_sizes
from vcl.idt.tracking import Tracks, finish, step

HUMANS = ("detect", "none", "boxes")


@dataclass
class VideoResult:
    """Rows of one video (columns of the idt store) and what was measured on it."""

    columns: dict[str, np.ndarray]
    frames: int
    size: tuple[int, int]  # working (w, h)
    resize: tuple[float, float]  # working / source pixels
    timings: dict[str, float] = field(default_factory=dict)
    candidates: int = 0  # trajectories reaching L steps, before pruning

    @property
    def rows(self) -> int:
        return len(self.columns["frame"])


def empty_columns(config: IdtConfig) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {"frame": np.zeros(0, np.int32)}
    cols.update({name: np.zeros(0, np.float32) for name in HEADER[1:]})
    cols.update({name: np.zeros((0, d), np.float32) for name, d in config.dims.items()})
    return cols


class _Clock:
    """Accumulates CPU seconds per named stage (CPU time, so a busy machine does not
    inflate the breakdown; with one OpenCV thread it is one core's time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._t = time.process_time()

    def lap(self, name: str) -> None:
        now = time.process_time()
        self.seconds[name] += now - self._t
        self._t = now


class CameraModel:
    """The camera's homography between consecutive frames (release: SURF + flow)."""

    def __init__(self, config: IdtConfig):
        self.config = config
        self.prev_features: Any = None

    def start(self, grey: np.ndarray) -> None:
        from vcl import motion

        self.prev_features = motion.detect_features(
            grey, self.config.detector, self.config.max_features
        )

    def fit(
        self,
        prev: np.ndarray,
        grey: np.ndarray,
        flow: np.ndarray,
        prev_boxes: np.ndarray | None,
        boxes: np.ndarray | None,
    ) -> np.ndarray:
        """H (3×3) mapping t-1 pixels to t; the identity when the fit is weak."""
        from vcl import motion

        c = self.config
        features = motion.detect_features(grey, c.detector, c.max_features)
        k_src, k_dst = motion.match_features(self.prev_features, features, c.detector)
        self.prev_features = features
        f_src, f_dst = motion.flow_matches(prev, flow, max_points=1000, quality=0.001)
        src, dst = np.concatenate([f_src, k_src]), np.concatenate([f_dst, k_dst])
        keep = motion.outside_boxes(src, prev_boxes) & motion.outside_boxes(dst, boxes)
        src, dst = src[keep], dst[keep]
        if len(src) <= c.min_matches:
            return np.eye(3)
        H, inlier_fraction = motion.estimate_homography(
            src, dst, None, c.ransac_threshold, min_matches=c.min_matches
        )
        return H if inlier_fraction * len(src) > c.min_inliers else np.eye(3)


def _flow_at(flow: np.ndarray, size: tuple[int, int], factor: float) -> np.ndarray:
    import cv2

    if factor == 1:
        return flow
    return cv2.resize(flow, size, interpolation=cv2.INTER_AREA) * np.float32(1 / factor)


def _filtered(flow: np.ndarray, size: tuple[int, int], factor: float, ksize: int) -> np.ndarray:
    from vcl import motion

    scaled = _flow_at(flow, size, factor)
    return motion.median_flow(scaled, ksize) if ksize > 1 else scaled


def flows_at(
    flow: np.ndarray,
    compensated: np.ndarray | None,
    size: tuple[int, int],
    factor: float,
    config: IdtConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """The flow moving the points and the one the descriptors read, at one scale.

    Both are median-filtered (``median_size``), as the release's Farneback filters
    every level of its raw and its warped flow alike: an outlier vector neither moves
    a point nor votes in HOF/MBH. Without compensation (``compensated`` None) both are
    the same array.
    """
    track = _filtered(flow, size, factor, config.median_size)
    if compensated is None:
        return track, track
    return track, _filtered(compensated, size, factor, config.median_size)


def extract(
    path: str | Path,
    config: IdtConfig,
    max_side: int | None = 320,
    humans: str = "detect",
    boxes: FrameBoxes | None = None,
    max_frames: int | None = None,
) -> VideoResult:
    """All trajectories of one video (rows in the order they finish).

    ``max_frames`` stops after that many frames (benchmarks, quick looks).
    ``humans``: ``detect`` (HOG people detector), ``none``, or ``boxes`` (``boxes``:
    frame -> (M, 4) in source pixels, as read by ``read_human_boxes``).
    """
    import cv2

    from vcl import motion
    from vcl.io.video import VideoReader

    reader = VideoReader(path, max_side=max_side, end=max_frames)
    width, height = reader.size
    sx, sy = reader.scale
    factors, sizes = pyramid_sizes(
        width, height, config.scales, config.scale_stride, config.patch_size
    )
    too_small = min(width, height) < config.patch_size
    detector = PeopleDetector() if humans == "detect" and config.compensate else None
    camera = CameraModel(config) if config.compensate else None
    tracks = [Tracks.empty(config) for _ in factors]
    workspaces = [] if too_small else [HistogramWorkspace(h, w, config) for w, h in sizes]
    no_points = np.zeros((0, 2), np.float32)
    parts: list[dict[str, np.ndarray]] = []
    clock = _Clock()
    candidates, frames, gap = 0, 0, 0
    prev = prev_pyr = prev_boxes = None

    def human_boxes(index: int, grey: np.ndarray) -> np.ndarray | None:
        if detector is not None:
            out = detector(grey)
            clock.lap("humans")
            return out
        if humans == "boxes" and boxes and index in boxes:
            return boxes[index] * np.float32([sx, sy, sx, sy])
        return None

    for index, rgb in reader:
        clock.lap("decode")
        frames += 1
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if too_small:
            continue
        pyr = build_pyramid(grey, sizes)
        cur_boxes = human_boxes(index, grey) if camera is not None else None
        if prev is None:
            if camera is not None:
                camera.start(grey)
                clock.lap("homography")
            for s in range(len(factors)):
                tracks[s] = tracks[s].add(
                    dense_sample(pyr[s], np.zeros((0, 2)), config.step, config.quality)
                )
            clock.lap("tracking")
            prev, prev_pyr, prev_boxes = grey, pyr, cur_boxes
            continue
        flow = motion.dense_flow(prev, grey, config.flow, config.dis_preset)
        clock.lap("flow")
        if camera is not None:
            H = camera.fit(prev, grey, flow, prev_boxes, cur_boxes)
            warped = motion.warp_into_previous(grey, prev, H)
            clock.lap("homography")
            compensated = motion.dense_flow(prev, warped, config.flow, config.dis_preset)
            clock.lap("flow_warped")  # the release computes this second flow too
        else:
            compensated = None
        gap += 1
        resample = gap >= config.init_gap
        for s, factor in enumerate(factors):
            track_flow, comp = flows_at(flow, compensated, sizes[s], float(factor), config)
            clock.lap("tracking")
            integral = integral_histograms(prev_pyr[s], comp, config, workspaces[s])
            clock.lap("descriptors")
            alive = step(tracks[s], track_flow, comp, integral, config)
            clock.lap("descriptors")
            done = tracks[s].age >= config.track_length  # (a track that left is younger)
            if done.any():
                rows, keep = finish(tracks[s].select(done), float(factor), config)
                candidates += int(done.sum())
                if keep.any():
                    rows = {k: v[keep] for k, v in rows.items()}
                    rows["frame"] = np.full(int(keep.sum()), index, np.int32)
                    parts.append(rows)
                alive &= ~done
            new = no_points
            if resample:
                occupied = tracks[s].current()[alive]
                new = dense_sample(pyr[s], occupied, config.step, config.quality)
            tracks[s] = tracks[s].compact(alive, new)
            clock.lap("tracking")
        if resample:
            gap = 0
        prev, prev_pyr, prev_boxes = grey, pyr, cur_boxes

    if too_small:
        log.warning(
            "%s: frames of %dx%d px are smaller than one %d px patch: no trajectories",
            path,
            width,
            height,
            config.patch_size,
        )
    elif frames < config.track_length + 1:
        log.warning(
            "%s: %d frames, fewer than the %d a trajectory needs: no trajectories",
            path,
            frames,
            config.track_length + 1,
        )
    columns = empty_columns(config)
    if parts:
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        merged["x_pos"] = np.clip(merged["mean_x"] / width, 0, 0.999)
        merged["y_pos"] = np.clip(merged["mean_y"] / height, 0, 0.999)
        t_mid = merged["frame"] - config.track_length / 2.0
        merged["t_pos"] = np.clip(t_mid / max(frames, 1), 0, 0.999)
        columns = {k: np.ascontiguousarray(merged[k], columns[k].dtype) for k in columns}
    return VideoResult(columns, frames, (width, height), (sx, sy), dict(clock.seconds), candidates)


def subsample(
    columns: dict[str, np.ndarray], k: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """A uniform sample of ``k`` rows without replacement, kept in their order."""
    n = len(columns["frame"])
    if k <= 0 or n <= k:
        return columns
    keep = np.sort(rng.choice(n, size=k, replace=False))
    return {name: values[keep] for name, values in columns.items()}


@dataclass(frozen=True)
class VideoJob:
    """Everything a worker process needs for one video (picklable)."""

    video_id: str
    path: str
    config: IdtConfig
    max_side: int | None
    humans: str
    boxes: FrameBoxes | None
    max_rows: int
    seed: int


def stable_key(text: str) -> int:
    """A 63-bit integer from an id, the same in every process and run."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def process_video(job: VideoJob) -> tuple[VideoJob, VideoResult]:
    """``extract`` then the seeded ``--max-per-video`` sample (a module-level function,
    so ``parallel_map`` can send it to worker processes)."""
    import cv2

    from vcl.seed import rng

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one core per worker, as in proposals: --workers spreads videos
    try:
        result = extract(job.path, job.config, job.max_side, job.humans, job.boxes)
    finally:
        cv2.setNumThreads(threads)
    if job.max_rows > 0:
        generator = rng(job.seed, stable_key(job.video_id))
        result.columns = subsample(result.columns, job.max_rows, generator)
    return job, result


def try_process_video(
    job: VideoJob,
) -> tuple[VideoJob, VideoResult | None, ErrorMessage | None]:
    """``process_video`` that returns a bad video's error instead of raising it (for
    ``--keep-going``): ``(job, result, None)`` or ``(job, None, message)``; the message
    keeps its exit code (`vcl.errors.worker_error` raises it again)."""
    try:
        return (*process_video(job), None)
    except VclError as exc:
        return job, None, exc.message
