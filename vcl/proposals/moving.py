"""Moving-object proposals: boxes around regions that move against the camera.

After Wang & Gupta (ICCV 2015) and Hickson et al.: dense DIS flow from frame t to
its neighbours t-1 and t+1, the camera's homography from keypoint and flow matches with RANSAC
(`vcl.motion.camera_homography`), and the residual flow r = flow − camera flow.
Wang & Gupta classify a tracked point as moving when |r| > 0.5 px and skip frames
where fewer than 25 % (noise) or more than 75 % (camera motion left over) of the
points move; the points here are good-features-to-track corners of frame t (SURF is
not in pip OpenCV). Each connected region of moving pixels becomes a box scored by
its motion energy, Σ |r|² over the moving pixels inside the box; regions are also cut
at fractions of their peak |r| (`region_boxes`), since flow bleeds past outlines.
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
    scores: np.ndarray  # (N,) motion energy
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


def region_boxes(magnitude: np.ndarray, params: MotionParams) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of connected moving regions, at several levels, scored by Σ |r|² inside.

    Level 0 is every pixel with |r| > threshold. Dense flow bleeds a few pixels past
    an object's outline, so each region is also cut at fractions ``levels`` of its own
    peak |r| (the object's interior moves fully, the bleeding decays): nested boxes,
    the tighter ones fitting the object. Energies come from one integral image.
    """
    import cv2

    mask = (magnitude > params.threshold).astype(np.uint8)
    if params.open_px > 1:
        kernel = np.ones((params.open_px, params.open_px), np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return np.zeros((0, 4)), np.zeros(0)
    moving = np.where(mask > 0, magnitude, 0.0)
    peak = np.zeros(count)
    np.maximum.at(peak, labels.ravel(), moving.ravel())
    rects = [stats[1:, :4]]
    relative = moving / np.maximum(peak[labels], 1e-12)
    for level in params.levels:
        sub = (relative >= level).astype(np.uint8)
        n, _, sub_stats, _ = cv2.connectedComponentsWithStats(sub, connectivity=8)
        rects.append(sub_stats[1:n, :4])
    x, y, w, h = np.concatenate(rects).astype(np.int64).T
    energy = cv2.integral(moving * moving)
    scores = energy[y + h, x + w] - energy[y, x + w] - energy[y + h, x] + energy[y, x]
    boxes = np.stack([x, y, x + w, y + h], axis=1).astype(np.float64)
    return boxes, scores


def _dis(preset: str, patch_size: int, patch_stride: int, finest_scale: int) -> Any:
    """A new DIS engine with our patch size, stride and finest scale (never cached:
    see ``vcl.motion.dis_engine``)."""
    from vcl.motion import dis_engine

    return dis_engine(preset, patch_size, patch_stride, finest_scale)


def residual_magnitude(frame: np.ndarray, other: np.ndarray, params: MotionParams) -> np.ndarray:
    """|r| (H×W float32): DIS flow frame -> other minus the camera's homography flow."""
    from vcl.motion import camera_homography, residual_flow

    flow = _dis(params.flow_preset, params.patch_size, params.patch_stride, params.finest_scale)
    flow = flow.calc(frame, other, None)
    H, _ = camera_homography(frame, other, flow, detector=params.detector)
    residual = residual_flow(flow, H)
    return np.sqrt((residual * residual).sum(axis=2))


def motion_frame(
    frame: np.ndarray, neighbours: list[np.ndarray], params: MotionParams
) -> MotionFrame:
    """Proposals for ``frame`` (grey uint8 H×W) from its motion towards its neighbours.

    With both the previous and the next frame, a pixel moves when its residual flow
    exceeds the threshold towards *both* (the minimum of the two magnitudes): flow
    into the area an object is about to cover, or has just uncovered, is wrong in one
    direction only, so the moving region hugs the object at this frame.
    """
    magnitude = residual_magnitude(frame, neighbours[0], params)
    for other in neighbours[1:]:
        magnitude = np.minimum(magnitude, residual_magnitude(frame, other, params))
    fraction = moving_fraction(frame, magnitude, params)
    if not params.min_moving <= fraction <= params.max_moving:
        return MotionFrame(np.zeros((0, 4)), np.zeros(0), fraction, True)
    boxes, scores = region_boxes(magnitude, params)
    return MotionFrame(boxes, scores, fraction, False)
