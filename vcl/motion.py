"""Apparent motion between frames: dense optical flow and the camera's homography.

Shared by every stage that separates object motion from camera motion (``idt``'s
camera-motion compensation, ``proposals --method motion``, KCF seeding in ``track``).
Conventions: frames are grey uint8 (H×W); flow is float32 (H×W×2) with
``next[y + fy, x + fx] ≈ prev[y, x]``; a homography ``H`` maps pixel coordinates of
the previous frame to the next (``p_next ≈ H p_prev``).

The C++ IDT release matches SURF keypoints and good-features-to-track points moved by
the flow, then fits H with RANSAC after removing matches inside human boxes. SURF is
not in pip builds of OpenCV, so keypoints here are ORB (default, fast) or SIFT.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FLOW_METHODS = ("farneback", "dis")
FARNEBACK_PYR_SCALE = float(np.sqrt(0.5))  # the IDT release's pyramid step, 1/√2
DETECTORS = ("orb", "sift")


def dis_engine(
    preset: str = "fast",
    patch_size: int | None = None,
    patch_stride: int | None = None,
    finest_scale: int | None = None,
) -> Any:
    """A new OpenCV DIS engine (ultrafast | fast | medium preset, optionally retuned).

    Never share one across frame pairs: OpenCV's DIS keeps state between ``calc``
    calls, so a cached engine made a video's flow depend on what the process had
    computed before (seen: 0.15 px differences, and a test that failed only after
    other tests had run).
    """
    import cv2

    presets = {
        "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
        "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }
    if preset not in presets:
        raise ValueError(f"DIS preset must be one of {sorted(presets)}, got {preset!r}")
    dis = cv2.DISOpticalFlow_create(presets[preset])
    if patch_size is not None:
        dis.setPatchSize(patch_size)
    if patch_stride is not None:
        dis.setPatchStride(patch_stride)
    if finest_scale is not None:
        dis.setFinestScale(finest_scale)
    return dis


def dis_pyramid_fits(width: int, height: int, patch_size: int, finest_scale: int) -> bool:
    """Whether OpenCV's DIS (5.0, ``dis_flow.cpp``'s ``calc``) computes flow on
    width×height frames with this patch size and finest scale.

    DIS picks its coarsest pyramid level c = min(trunc(log2(max side / 4p) + 0.5),
    trunc(log2(min side // p))) for patch size p (with min side // p = 0, -inf). With
    c < 0 it refuses the frame ("either width or height >= 12"). With c below the finest
    scale it picks p and c again from the *width* alone (OF_DIS's rule: p = 12 for
    finest scales 3 and 4, else 8; c = max(0, floor(log2(2w / 5p)))). Level c is the
    frame halved c times (w >> c by h >> c); when a side of it is under p, ``calc``
    fails in ``resize`` (a side of 0), returns NaN flow or reads out of bounds
    (segfaults): seen on 40×8, 181×8 and 320×8 frames with the fast preset, on
    3000×17 with any. Checked against OpenCV 5.0 on every size up to 69×69, and
    70..3000 by 1..69 both ways, for the three presets, ``proposals --method motion``'s
    retuning (p = 8, finest 0) and p = 4, 12, 16 with finest scales 1, 3, 4.
    """
    import math

    if width < 1 or height < 1:
        return False
    p = patch_size
    by_max = int(math.log(max(width, height) / (4.0 * p)) / math.log(2.0) + 0.5)
    blocks = min(width, height) // p
    coarsest = min(by_max, int(math.log(blocks) / math.log(2.0))) if blocks else -1
    if coarsest < 0:
        return False
    if coarsest < finest_scale:
        p = 12 if finest_scale in (3, 4) else 8
        coarsest = max(0, math.floor(math.log2(2.0 * width / (5.0 * p))))
    return (width >> coarsest) >= p and (height >> coarsest) >= p


def dis_fits(
    width: int,
    height: int,
    preset: str = "fast",
    patch_size: int | None = None,
    finest_scale: int | None = None,
) -> bool:
    """Whether dense DIS flow can be computed on width×height frames with the engine
    ``dis_engine`` makes from these arguments (`dis_pyramid_fits`).

    The one test every stage asks before computing flow on a video: a video whose
    frames are too small or too elongated (1×1, 2×2, 3000×17 px) is skipped or handled
    without flow, with a warning naming it, instead of crashing inside OpenCV.
    """
    dis = dis_engine(preset, patch_size, None, finest_scale)
    return dis_pyramid_fits(width, height, dis.getPatchSize(), dis.getFinestScale())


def too_small_for_flow(
    video: str | Path, source: tuple[int, int], flow: tuple[int, int], outcome: str
) -> str:
    """The one warning of a video `dis_fits` refuses: its path, its frame size (w, h)
    and, when it differs, the size flow would have been computed at; then ``outcome``
    (what the stage does instead)."""
    at = "" if tuple(flow) == tuple(source) else f" ({flow[0]}x{flow[1]} at the flow's scale)"
    return (
        f"{video}: frames of {source[0]}x{source[1]} px{at} are too small or too elongated "
        f"for DIS optical flow: {outcome}"
    )


def dis_calc(dis: Any, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """``dis.calc(prev, nxt)`` (grey uint8 H×W each) -> H×W×2 float32 flow, refusing a
    frame size DIS cannot handle with a `DataError` (OpenCV would raise an internal
    error, return NaN or segfault; see `dis_pyramid_fits`). Stages check `dis_fits`
    first; this is the net under them."""
    from vcl.errors import DataError

    h, w = prev.shape[:2]
    if not dis_pyramid_fits(w, h, dis.getPatchSize(), dis.getFinestScale()):
        raise DataError(
            f"frames of {w}x{h} px are too small or too elongated for DIS optical flow",
            hint="a side of at least 8 px is needed at the flow's scale, more for elongated frames",
        )
    return dis.calc(prev, nxt, None)


def dense_flow(
    prev: np.ndarray,
    nxt: np.ndarray,
    method: str = "dis",
    dis_preset: str = "fast",
    farneback: Sequence[float] | None = None,
) -> np.ndarray:
    """Dense flow prev -> next (H×W×2 float32).

    ``farneback`` parameters are (pyr_scale, levels, winsize, iterations, poly_n,
    poly_sigma); the default is the IDT release's (1/√2, 5, 10, 2, 7, 1.5): DenseTrack's
    call, and the √2 scale stride of DenseTrackStab's own pyramid.
    ``dis_preset``: ultrafast | fast | medium (OpenCV's DIS presets).
    """
    import cv2

    if method == "dis":
        return dis_calc(dis_engine(dis_preset), prev, nxt)
    if method == "farneback":
        pyr_scale, levels, winsize, iterations, poly_n, poly_sigma = farneback or (
            FARNEBACK_PYR_SCALE,
            5,
            10,
            2,
            7,
            1.5,
        )
        return cv2.calcOpticalFlowFarneback(
            prev,
            nxt,
            None,
            pyr_scale,
            int(levels),
            int(winsize),
            int(iterations),
            int(poly_n),
            poly_sigma,
            cv2.OPTFLOW_FARNEBACK_GAUSSIAN,
        )
    raise ValueError(f"flow method must be one of {FLOW_METHODS}, got {method!r}")


def median_flow(flow: np.ndarray, ksize: int = 3) -> np.ndarray:
    """Median-filter each flow component (the IDT release filters every flow with a 5×5
    median, the IJCV paper with a 3×3 one).

    One ``medianBlur`` call on both channels (it filters each channel on its own, the
    same numbers as two single-channel calls, a third of the time).
    """
    import cv2

    return cv2.medianBlur(np.ascontiguousarray(flow, np.float32), ksize)


def outside_boxes(points: np.ndarray, boxes: np.ndarray | None) -> np.ndarray:
    """Mask of points (N×2) outside every box (M×4 xyxy)."""
    if boxes is None or len(boxes) == 0 or len(points) == 0:
        return np.ones(len(points), dtype=bool)
    x, y = points[:, :1], points[:, 1:2]
    inside = (x >= boxes[:, 0]) & (x <= boxes[:, 2]) & (y >= boxes[:, 1]) & (y <= boxes[:, 3])
    return ~inside.any(axis=1)


def keypoint_matches(
    prev: np.ndarray,
    nxt: np.ndarray,
    detector: str = "orb",
    max_features: int = 1000,
    ratio: float = 0.8,
) -> tuple[np.ndarray, np.ndarray]:
    """Matched keypoint positions (N×2 each) of two frames, by a descriptor ratio test."""
    return match_features(
        detect_features(prev, detector, max_features),
        detect_features(nxt, detector, max_features),
        detector,
        ratio,
        window=None,
    )


def flow_matches(
    prev: np.ndarray,
    flow: np.ndarray,
    max_points: int = 1000,
    quality: float = 0.001,
    min_distance: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Good features to track in ``prev`` and where the flow moves them (N×2 each)."""
    import cv2

    corners = cv2.goodFeaturesToTrack(prev, max_points, quality, min_distance)
    if corners is None:
        empty = np.zeros((0, 2), np.float32)
        return empty, empty
    src = corners.reshape(-1, 2).astype(np.float32)
    h, w = prev.shape[:2]
    xi = np.clip(np.rint(src[:, 0]).astype(int), 0, w - 1)
    yi = np.clip(np.rint(src[:, 1]).astype(int), 0, h - 1)
    return src, src + flow[yi, xi]


def estimate_homography(
    src: np.ndarray,
    dst: np.ndarray,
    exclude_boxes: np.ndarray | None = None,
    threshold: float = 1.0,
    min_matches: int = 10,
) -> tuple[np.ndarray, float]:
    """RANSAC homography src -> dst, ignoring matches that start inside ``exclude_boxes``.

    Returns ``(H, inlier_fraction)``; the identity and 0.0 when there are too few
    matches or the fit fails (a static camera is the safest assumption).
    """
    import cv2

    keep = outside_boxes(src, exclude_boxes)
    src, dst = src[keep], dst[keep]
    if len(src) < min_matches:
        return np.eye(3), 0.0
    H, inliers = cv2.findHomography(src, dst, cv2.RANSAC, threshold)
    if H is None or not np.all(np.isfinite(H)) or abs(H[2, 2]) < 1e-12:
        return np.eye(3), 0.0
    return H / H[2, 2], float(inliers.mean())


def camera_homography(
    prev: np.ndarray,
    nxt: np.ndarray,
    flow: np.ndarray,
    exclude_boxes: np.ndarray | None = None,
    detector: str = "orb",
    threshold: float = 1.0,
) -> tuple[np.ndarray, float]:
    """The camera's homography prev -> next from keypoint matches plus flow matches."""
    keypoints = keypoint_matches(prev, nxt, detector)
    return homography_from_matches(keypoints, flow_matches(prev, flow), exclude_boxes, threshold)


def homography_from_matches(
    keypoints: tuple[np.ndarray, np.ndarray],
    flow_pairs: tuple[np.ndarray, np.ndarray],
    exclude_boxes: np.ndarray | None = None,
    threshold: float = 1.0,
) -> tuple[np.ndarray, float]:
    """`camera_homography` from matches already found (``match_features``, ``flow_matches``).

    For callers that need the flow matches themselves, or keep each frame's features
    for the next pair: nothing is detected twice, and H is the same.
    """
    (k_src, k_dst), (f_src, f_dst) = keypoints, flow_pairs
    return estimate_homography(
        np.concatenate([k_src, f_src]), np.concatenate([k_dst, f_dst]), exclude_boxes, threshold
    )


def align_to_previous(nxt: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Warp the next frame into the previous frame's coordinates (undo the camera)."""
    import cv2

    h, w = nxt.shape[:2]
    return cv2.warpPerspective(
        nxt,
        H,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def camera_flow(H: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The flow (H×W×2) a static scene would have under homography ``H``."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    den = H[2, 0] * xs + H[2, 1] * ys + H[2, 2]
    u = (H[0, 0] * xs + H[0, 1] * ys + H[0, 2]) / den - xs
    v = (H[1, 0] * xs + H[1, 1] * ys + H[1, 2]) / den - ys
    return np.dstack([u, v]).astype(np.float32)


def residual_flow(flow: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Flow minus the camera's: what moved relative to the scene."""
    return flow - camera_flow(H, flow.shape[:2])


def detect_features(
    grey: np.ndarray, detector: str = "orb", max_features: int = 1000
) -> tuple[np.ndarray, np.ndarray | None]:
    """Keypoint positions (N×2 float32) and descriptors of one frame.

    Split from matching so a video pipeline detects each frame once and matches it
    against the previous frame's features (the IDT release keeps them the same way).
    """
    import cv2

    if detector == "orb":
        extractor = cv2.ORB_create(nfeatures=max_features)
    elif detector == "sift":
        extractor = cv2.SIFT_create(nfeatures=max_features)
    else:
        raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
    keypoints, descriptors = extractor.detectAndCompute(grey, None)
    points = np.float32([k.pt for k in keypoints]).reshape(-1, 2)
    return points, descriptors


def match_features(
    prev: tuple[np.ndarray, np.ndarray | None],
    nxt: tuple[np.ndarray, np.ndarray | None],
    detector: str = "orb",
    ratio: float = 0.8,
    window: float | None = 25.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Match ``detect_features`` outputs: ratio test, then (optionally) only matches
    that moved less than ``window`` px along each axis (the release's windowed mask).
    """
    import cv2

    (p1, d1), (p2, d2) = prev, nxt
    empty = np.zeros((0, 2), np.float32)
    if d1 is None or d2 is None or len(p1) < 2 or len(p2) < 2:
        return empty, empty
    # the two nearest neighbours of each query, as BFMatcher.knnMatch(k=2) finds them
    # (it calls batchDistance), without building 2N DMatch objects; distances compared
    # as the Python floats knnMatch hands out
    hamming = detector == "orb"
    dist, nearest = cv2.batchDistance(
        d1,
        d2,
        cv2.CV_32S if hamming else cv2.CV_32F,
        normType=cv2.NORM_HAMMING if hamming else cv2.NORM_L2,
        K=2,
    )
    dist = dist.astype(np.float32).astype(np.float64)
    good = np.flatnonzero((nearest[:, 1] >= 0) & (dist[:, 0] < ratio * dist[:, 1]))
    src, dst = p1[good], p2[nearest[good, 0]]
    if window is not None and len(src):
        keep = np.all(np.abs(dst - src) < window, axis=1)
        src, dst = src[keep], dst[keep]
    return src, dst


def warp_into_previous(
    nxt: np.ndarray, prev: np.ndarray, H: np.ndarray, margin: int = 5
) -> np.ndarray:
    """``align_to_previous``, but pixels whose source falls within ``margin`` px of the
    next frame's border (or outside it) are copied from ``prev``, so the frame edge
    that the camera uncovered creates no flow (as the IDT release's warp does).
    """
    import cv2

    h, w = nxt.shape[:2]
    warped = align_to_previous(nxt, H)
    inside = np.zeros((h, w), np.uint8)
    inside[margin + 1 : h - 1 - margin, margin + 1 : w - 1 - margin] = 1
    valid = cv2.warpPerspective(
        inside,
        H,
        (w, h),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return np.where(valid.astype(bool), warped, prev)
