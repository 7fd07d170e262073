"""Moving-object proposals: boxes around regions that move against the camera.

After Wang & Gupta (ICCV 2015) and Hickson et al.: dense DIS flow from frame t to
its neighbours t-1 and t+1, the camera's homography from keypoint and flow matches with RANSAC
(`vcl.motion.camera_homography`), and the residual flow r = flow − camera flow.
Wang & Gupta classify a tracked point as moving when |r| > 0.5 px and skip frames
where fewer than 25 % (noise) or more than 75 % (camera motion left over) of the
points move; the points here are good-features-to-track corners of frame t (SURF is
not in pip OpenCV). Each connected region of moving pixels becomes a box; regions are
also cut at fractions of their peak |r| (`region_boxes`), since flow bleeds past
outlines.

Dense flow also smooths small objects away (DIS underestimates a 15-px object moving
3 px a frame) and merges neighbours into one region. So the frames' change is a second
cue: three-frame differencing (Kameda & Minoh 1996) after undoing the camera, i.e. a
pixel *changed* when it differs by more than ``diff_threshold`` (0–255, in any colour
channel) from both neighbours warped onto frame t by the camera's homography. Its
regions hug each object at frame t, separate from its neighbours (`change_boxes`).
Objects that touch or overlap still change as one region; the residual flow of its
moving pixels, split in two by k-means, separates them when they move differently
(`split_by_motion`).

A box's score (`motion_scores`) is its motion energy times its fill: Σ |r|² over the
moving pixels inside, times the fraction of its pixels that move. Energy alone ranks
every box above the boxes it encloses, so NMS would keep the loosest; the fill ranks a
box fitting one object above the box merging it with its neighbour. A box with no
moving pixel scores 0 and is dropped, so change that does not move (flicker,
compression noise) adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MotionParams:
    threshold: float = 0.5  # px of residual flow for a point / pixel to move (Wang & Gupta)
    min_moving: float = 0.25  # reject a frame when fewer points move ...
    max_moving: float = 0.75  # ... or more (the camera was not compensated)
    flow_preset: str = "medium"  # DIS preset: ultrafast | fast | medium (its refinement)
    # ... with flow at full resolution and small patches: the presets stop at half
    # resolution, which blurs the motion of small objects (recall 0.78 -> 0.83 on synth)
    patch_size: int = 8
    patch_stride: int = 4
    finest_scale: int = 0
    detector: str = "orb"  # keypoints for the homography: orb | sift
    max_points: int = 1000  # corners tested for the moving fraction
    open_px: int = 3  # morphological opening of the moving mask (removes speckle)
    diff_threshold: float = 16.0  # changed by more against both aligned neighbours (0-255)
    close_px: int = 5  # closing of the changed mask (fills an untextured interior)
    levels: tuple[float, ...] = (
        0.2,
        0.35,
        0.5,
        0.65,
        0.8,
    )  # also cut regions at these fractions of peak


@dataclass(frozen=True)
class MotionFrame:
    boxes: np.ndarray  # (N, 4) xyxy at the processing scale
    scores: np.ndarray  # (N,) motion energy × moving fraction (`motion_scores`)
    moving_fraction: float  # of the tracked points
    rejected: bool  # the frame failed the 25 % / 75 % test


def moving_fraction(prev: np.ndarray, magnitude: np.ndarray, params: MotionParams) -> float:
    """Fraction of the corners of ``prev`` whose residual flow exceeds the threshold."""
    import cv2

    corners = cv2.goodFeaturesToTrack(prev, params.max_points, 0.001, 3)
    if corners is None or len(corners) == 0:
        return 0.0
    xy = np.rint(corners.reshape(-1, 2)).astype(np.int64)
    h, w = magnitude.shape
    moving = magnitude[np.clip(xy[:, 1], 0, h - 1), np.clip(xy[:, 0], 0, w - 1)] > params.threshold
    return float(moving.mean())


def region_boxes(magnitude: np.ndarray, params: MotionParams) -> np.ndarray:
    """Rects (N×4 x, y, w, h) of connected moving regions, at several levels.

    Level 0 is every pixel with |r| > threshold. Dense flow bleeds a few pixels past
    an object's outline, so each region is also cut at fractions ``levels`` of its own
    peak |r| (the object's interior moves fully, the bleeding decays): nested boxes,
    the tighter ones fitting the object.
    """
    import cv2

    mask = (magnitude > params.threshold).astype(np.uint8)
    if params.open_px > 1:
        kernel = np.ones((params.open_px, params.open_px), np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return np.zeros((0, 4), np.int64)
    moving = np.where(mask > 0, magnitude, 0.0)
    peak = np.zeros(count)
    np.maximum.at(peak, labels.ravel(), moving.ravel())
    rects = [stats[1:, :4]]
    relative = moving / np.maximum(peak[labels], 1e-12)
    for level in params.levels:
        sub = (relative >= level).astype(np.uint8)
        n, _, sub_stats, _ = cv2.connectedComponentsWithStats(sub, connectivity=8)
        rects.append(sub_stats[1:n, :4])
    return np.concatenate(rects).astype(np.int64)


def _close(mask: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if size <= 1:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)


def _regions(mask: np.ndarray, least: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, stats)`` of the 8-connected regions of ``mask``; ``stats`` rows
    (x, y, w, h, area, label) of the regions of at least ``least`` pixels."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    stats = np.column_stack([stats, np.arange(count)])[1:]
    return labels, stats[stats[:, 4] >= least]


def change_boxes(
    change: np.ndarray,
    params: MotionParams,
    residual: np.ndarray | None = None,
    magnitude: np.ndarray | None = None,
) -> np.ndarray:
    """Rects (N×4 x, y, w, h) of the connected regions of changed pixels (``change`` >
    diff_threshold), after a closing: an untextured interior does not change, only a
    rim as wide as the motion, which an opening would erase. Regions of fewer than
    open_px² pixels are speckle.

    With the ``residual`` flow (H×W×2) and its ``magnitude``, each region's moving
    pixels are also split in two by k-means on their residual flow vectors, when the
    two mean motions differ by more than 2 × threshold: objects that touch or overlap
    change as one region but move apart (`split_by_motion`).
    """
    least = params.open_px**2
    mask = _close((change > params.diff_threshold).astype(np.uint8), params.close_px)
    labels, stats = _regions(mask, least)
    rects = [stats[:, :4]]
    if residual is not None and magnitude is not None:
        moving = magnitude > params.threshold
        rects += [split_by_motion(labels, row, residual, moving, params) for row in stats]
    return np.concatenate(rects).astype(np.int64)


def split_by_motion(
    labels: np.ndarray,
    region: np.ndarray,
    residual: np.ndarray,
    moving: np.ndarray,
    params: MotionParams,
) -> np.ndarray:
    """Rects of the two motions of one region (``region`` = x, y, w, h, area, label), or
    none when its moving pixels move alike. Seeded k-means++ (OpenCV's RNG, reseeded per
    frame by the caller), 2 attempts; each part closed and cut into regions again."""
    import cv2

    x, y, w, h, _, label = (int(v) for v in region)
    window = np.s_[y : y + h, x : x + w]
    inside = (labels[window] == label) & moving[window]
    vectors = residual[window][inside].astype(np.float32)
    least = params.open_px**2
    if len(vectors) < 2 * least:
        return np.zeros((0, 4), np.int64)
    stop = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.01)
    _, assign, centres = cv2.kmeans(vectors, 2, None, stop, 2, cv2.KMEANS_PP_CENTERS)
    if np.linalg.norm(centres[0] - centres[1]) <= 2 * params.threshold:
        return np.zeros((0, 4), np.int64)
    part = np.zeros(inside.shape, np.uint8)
    part[inside] = assign.ravel() + 1
    rects = [
        _regions(_close((part == c).astype(np.uint8), params.close_px), least)[1][:, :4]
        for c in (1, 2)
    ]
    return np.concatenate(rects) + np.array([x, y, 0, 0])


def motion_scores(rects: np.ndarray, magnitude: np.ndarray, threshold: float) -> np.ndarray:
    """Σ |r|² over the moving pixels (|r| > threshold) of each rect (N×4 x, y, w, h),
    times the fraction of its pixels that move (two integral images)."""
    import cv2

    moving = magnitude > threshold
    energy = cv2.integral(np.where(moving, magnitude, 0.0).astype(np.float64) ** 2)
    count = cv2.integral(moving.astype(np.uint8))
    x, y, w, h = np.asarray(rects, np.int64).reshape(-1, 4).T

    def inside(table: np.ndarray) -> np.ndarray:
        return (table[y + h, x + w] - table[y, x + w] - table[y + h, x] + table[y, x]).astype(float)

    return inside(energy) * inside(count) / np.maximum(w * h, 1)


def _dis(preset: str, patch_size: int, patch_stride: int, finest_scale: int) -> Any:
    """A new DIS engine with our patch size, stride and finest scale (never cached:
    see ``vcl.motion.dis_engine``)."""
    from vcl.motion import dis_engine

    return dis_engine(preset, patch_size, patch_stride, finest_scale)


def flow_fits(size: tuple[int, int], params: MotionParams) -> bool:
    """Whether frames of ``size`` (w, h, at the processing scale) can carry the DIS flow
    this method needs (`vcl.motion.dis_fits`): a 1×1, 2×2 or 3000×17 video cannot."""
    from vcl.motion import dis_fits

    return dis_fits(*size, params.flow_preset, params.patch_size, params.finest_scale)


def _grey(image: np.ndarray) -> np.ndarray:
    import cv2

    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def residual_motion(
    frame: np.ndarray, other: np.ndarray, params: MotionParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(|r|, change, r)`` of ``frame`` towards ``other`` (RGB or grey), H×W float32
    (r: H×W×2).

    r is the DIS flow frame -> other minus the camera's homography flow; change is
    |frame − other warped onto frame|, the largest over the colour channels (an object
    as bright as the background still differs in hue).
    """
    from vcl.motion import align_to_previous, camera_homography, dis_calc, residual_flow

    grey, other_grey = _grey(frame), _grey(other)
    dis = _dis(params.flow_preset, params.patch_size, params.patch_stride, params.finest_scale)
    flow = dis_calc(dis, grey, other_grey)
    H, _ = camera_homography(grey, other_grey, flow, detector=params.detector)
    residual = residual_flow(flow, H)
    change = np.abs(frame.astype(np.float32) - align_to_previous(other, H).astype(np.float32))
    if change.ndim == 3:
        change = change.max(axis=2)
    return np.sqrt((residual * residual).sum(axis=2)), change, residual


def motion_frame(
    frame: np.ndarray, neighbours: list[np.ndarray], params: MotionParams
) -> MotionFrame:
    """Proposals for ``frame`` (RGB or grey uint8) from its motion towards its neighbours.

    With both the previous and the next frame, a pixel moves when its residual flow
    exceeds the threshold towards *both* (the minimum of the two magnitudes): flow
    into the area an object is about to cover, or has just uncovered, is wrong in one
    direction only, so the moving region hugs the object at this frame. Likewise a
    pixel changed when it differs from both aligned neighbours (three-frame
    differencing); with one neighbour (the video's ends) from that one.
    """
    magnitude, change, residual = residual_motion(frame, neighbours[0], params)
    for other in neighbours[1:]:
        m, c, _ = residual_motion(frame, other, params)
        magnitude, change = np.minimum(magnitude, m), np.minimum(change, c)
    fraction = moving_fraction(_grey(frame), magnitude, params)
    if not params.min_moving <= fraction <= params.max_moving:
        return MotionFrame(np.zeros((0, 4)), np.zeros(0), fraction, True)
    rects = region_boxes(magnitude, params)
    if params.diff_threshold > 0:
        rects = np.concatenate([rects, change_boxes(change, params, residual, magnitude)])
    scores = motion_scores(rects, magnitude, params.threshold)
    keep = scores > 0
    x, y, w, h = rects[keep].T
    boxes = np.stack([x, y, x + w, y + h], axis=1).astype(np.float64)
    return MotionFrame(boxes, scores[keep], fraction, False)
