"""Dense sampling of feature points on a spatial pyramid (Wang et al. IJCV 2013, 2.1).

Points lie on a grid of step W at each scale; a cell already holding a tracked point
is skipped, and so is a homogeneous cell, whose centre's smaller structure-tensor
eigenvalue is below ``quality`` × the frame's largest (those points cannot be tracked).
"""

from __future__ import annotations

import numpy as np


def pyramid_sizes(
    width: int, height: int, max_scales: int, stride: float, patch_size: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Scale factors (S,) and (w, h) sizes of the pyramid, as the release builds it.

    The release's InitPry works in float32 (its stride is ``float sqrt(2)``, a hair
    below √2): the scale count, the factors (each the previous × stride) and the
    rounded sizes are reproduced in float32 here, since float64 loses a scale at short
    sides of 64, 128, 256 px and gets odd sides at the ~2×, 4× levels 1 px short
    (341×256: 7 scales, down to 43×32; 65 px at factor 1.99999988: 33, not 32).
    """
    stride32 = np.float32(stride)
    count = min(max_scales, _scale_count(min(width, height), stride32, patch_size))
    steps = np.full(count - 1, stride32, np.float32)
    factors = np.concatenate([np.ones(1, np.float32), np.cumprod(steps, dtype=np.float32)])
    widths = np.rint(np.float32(width) / factors[1:]).astype(int)  # cvRound: half to even
    heights = np.rint(np.float32(height) / factors[1:]).astype(int)
    sizes = [(width, height), *zip(widths.tolist(), heights.tolist(), strict=True)]
    return factors, sizes


def _scale_count(shorter: int, stride: np.float32, patch_size: int) -> int:
    """Scales while the shorter side, divided by ``stride`` in float32 each time, is
    still at least one patch (at least one scale): InitPry's loop."""
    side, count = np.float32(shorter), 0
    while side >= patch_size:
        side = np.float32(side / stride)
        count += 1
    return max(1, count)


def build_pyramid(grey: np.ndarray, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Each level resized (bilinear) from the one before, as in the release."""
    import cv2

    levels = [grey]
    for size in sizes[1:]:
        levels.append(cv2.resize(levels[-1], size, interpolation=cv2.INTER_LINEAR))
    return levels


def dense_sample(
    grey: np.ndarray, existing: np.ndarray, step: int = 5, quality: float = 0.001
) -> np.ndarray:
    """New points (M×2 float32, x y) at the centres of empty, textured grid cells.

    ``existing`` (N×2) are the current points of live trajectories at this scale; a
    cell containing one gets no new point (re-sampling where no trajectory is within W).
    """
    import cv2

    h, w = grey.shape[:2]
    rows, cols = h // step, w // step
    if rows == 0 or cols == 0:
        return np.zeros((0, 2), np.float32)
    eig = cv2.cornerMinEigenVal(grey, 3, 3)
    threshold = float(eig.max()) * quality
    occupied = np.zeros((rows, cols), bool)
    if len(existing):
        xi = np.floor(existing[:, 0]).astype(np.int64)
        yi = np.floor(existing[:, 1]).astype(np.int64)
        inside = (xi >= 0) & (yi >= 0) & (xi < cols * step) & (yi < rows * step)
        occupied[yi[inside] // step, xi[inside] // step] = True
    offset = step // 2
    centres_y = np.arange(rows) * step + offset
    centres_x = np.arange(cols) * step + offset
    textured = eig[np.ix_(centres_y, centres_x)] > threshold
    yy, xx = np.nonzero(textured & ~occupied)  # row-major, like the release's loop
    return np.stack([centres_x[xx], centres_y[yy]], axis=1).astype(np.float32)
