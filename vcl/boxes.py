"""Vectorised operations on axis-aligned boxes (shared by ``proposals`` and ``track``).

A box is ``(x0, y0, x1, y1)`` in continuous pixel coordinates: pixel ``(x, y)`` covers
``[x, x+1) × [y, y+1)``, so a box around pixels ``x..x+w-1`` is ``[x, x+w]`` and its
area is ``(x1 - x0) * (y1 - y0)`` (no ``+1``; the torchvision convention). Arrays are
float (N×4); every function accepts an empty (0×4) array.
"""

from __future__ import annotations

import numpy as np


def as_boxes(boxes: np.ndarray | list) -> np.ndarray:
    """``boxes`` as a float64 (N×4) array (an empty input becomes 0×4)."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must be N×4 (x0, y0, x1, y1), got shape {arr.shape}")
    return arr


def area(boxes: np.ndarray) -> np.ndarray:
    """Areas (N,) of xyxy boxes; degenerate boxes (x1 < x0 or y1 < y0) have area 0."""
    b = as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas (N×M) of boxes ``a`` (N×4) and ``b`` (M×4), xyxy."""
    a, b = as_boxes(a), as_boxes(b)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return np.prod(np.clip(hi - lo, 0, None), axis=2)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union (N×M) of boxes ``a`` (N×4) and ``b`` (M×4).

    IoU = |a ∩ b| / (|a| + |b| - |a ∩ b|), by broadcasting; 0 where the union is empty.
    """
    a, b = as_boxes(a), as_boxes(b)
    inter = intersection(a, b)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def intersection_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas (N,) of each box of ``a`` (N×4) with the box of ``b`` in the
    same row."""
    a, b = as_boxes(a), as_boxes(b)
    wh = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0, None)
    return wh[:, 0] * wh[:, 1]


def iou_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (N,) of each box of ``a`` (N×4) with the box of ``b`` (N×4) in the same row."""
    a, b = as_boxes(a), as_boxes(b)
    inter = intersection_rows(a, b)
    union = area(a) + area(b) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of kept boxes, highest score first.

    Visit boxes by decreasing score (ties: lower index first); keep one and drop every
    remaining box whose IoU with it exceeds ``iou_threshold`` (as torchvision.ops.nms).
    One IoU matrix, then one vectorised row per *kept* box.
    """
    b = as_boxes(boxes)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) != len(b):
        raise ValueError(f"{len(b)} boxes but {len(s)} scores")
    order = np.argsort(-s, kind="stable")
    if iou_threshold >= 1.0 or len(b) < 2:
        return order
    overlap = iou(b[order], b[order])  # (N, N) in score order
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        alive[i + 1 :] &= overlap[i, i + 1 :] <= iou_threshold
    return order[np.asarray(keep, dtype=np.int64)]


def clip(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Boxes clipped to the frame ``[0, width] × [0, height]``."""
    b = as_boxes(boxes).copy()
    b[:, 0::2] = np.clip(b[:, 0::2], 0, width)
    b[:, 1::2] = np.clip(b[:, 1::2], 0, height)
    return b


def scale(boxes: np.ndarray, sx: float, sy: float | None = None) -> np.ndarray:
    """Boxes with x multiplied by ``sx`` and y by ``sy`` (default ``sx``).

    A frame resized by ``(sx, sy)`` = (out_w / in_w, out_h / in_h) (as
    ``VideoReader.scale``) maps a source box ``b`` to ``scale(b, sx, sy)``; use
    `to_source` to go back.
    """
    sy = sx if sy is None else sy
    return as_boxes(boxes) * np.array([sx, sy, sx, sy])


def to_source(boxes: np.ndarray, frame_scale: tuple[float, float]) -> np.ndarray:
    """Boxes found on a frame resized by ``frame_scale = (sx, sy)``, in source pixels."""
    sx, sy = frame_scale
    return scale(boxes, 1.0 / sx, 1.0 / sy)


def min_area_mask(boxes: np.ndarray, min_area: float) -> np.ndarray:
    """Bool (N,): boxes whose area is at least ``min_area``."""
    return area(boxes) >= min_area


def filter_min_area(
    boxes: np.ndarray, scores: np.ndarray, min_area: float
) -> tuple[np.ndarray, np.ndarray]:
    """The boxes (and their scores) with area at least ``min_area``, in their order."""
    keep = min_area_mask(boxes, min_area)
    return as_boxes(boxes)[keep], np.asarray(scores).reshape(-1)[keep]


def from_xywh(rects: np.ndarray) -> np.ndarray:
    """OpenCV ``(x, y, w, h)`` pixel rectangles (N×4) as xyxy boxes ``[x, x+w] × [y, y+h]``."""
    r = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([r[:, :2], r[:, :2] + r[:, 2:]], axis=1)


def intersection_fast(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`intersection` (N×M) in float32 with in-place operations (hot loops)."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    ax0, ay0, ax1, ay1 = (a[:, i : i + 1] for i in range(4))  # (N, 1) each
    bx0, by0, bx1, by1 = b.T  # (M,) each
    inter = np.minimum(ax1, bx1)
    inter -= np.maximum(ax0, bx0)
    np.maximum(inter, 0, out=inter)
    h = np.minimum(ay1, by1)
    h -= np.maximum(ay0, by0)
    np.maximum(h, 0, out=h)
    inter *= h
    return inter


def area_fast(boxes: np.ndarray) -> np.ndarray:
    """`area` (N,) in float32, as `intersection_fast` computes it."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)


def iou_fast(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`iou` (N×M) in float32 with in-place operations: for per-frame hot loops (tracking).

    About 9× faster than `iou` at 300×300 (fewer, smaller temporaries); agrees with it
    to float32 precision. 0 where the union is empty.
    """
    inter = intersection_fast(a, b)  # (N, M)
    union = area_fast(a)[:, None] + area_fast(b)[None, :]
    union -= inter
    np.maximum(union, np.float32(1e-12), out=union)  # empty union: inter is 0 there too
    inter /= union
    return inter


def overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area (N×M) of boxes a (N×4) and b (M×4) xyxy:
    1 when one holds the other, whatever their sizes (IoU is small for a part of a box).
    0 where the smaller box has no area."""
    a, b = as_boxes(a), as_boxes(b)
    inter = intersection(a, b)
    smaller = np.minimum(area(a)[:, None], area(b)[None, :])
    return np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)
