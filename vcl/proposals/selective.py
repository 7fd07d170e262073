"""Selective search (Uijlings et al., IJCV 2013) through OpenCV ximgproc.

Graph-based segmentations of the frame are merged greedily by colour, texture, size
and fill similarity; every region of every merge hierarchy is a proposal. OpenCV
ranks regions as the paper does, by ``level × U(0, 1)`` (level = position in its
hierarchy; earlier merges are smaller and ranked higher), and returns them in that
order: our score is ``1 / (1 + rank)``. The random factor comes from a generator
inside OpenCV that Python cannot seed (``cv2.setRNGSeed`` does not reach it), so two
runs may rank, and deduplicate, a frame's regions differently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MODES = ("fast", "quality")


def create_selective_search(mode: str) -> Any:
    import cv2

    if mode not in MODES:
        raise ValueError(f"selective search mode must be one of {MODES}, got {mode!r}")
    return cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()


def selective_search(
    engine: Any, rgb: np.ndarray, mode: str, rng_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N×4 xyxy float64, in hierarchy-rank order) and scores ``1 / (1 + rank)``."""
    import cv2

    from vcl.boxes import from_xywh

    cv2.setRNGSeed(int(rng_seed))
    engine.setBaseImage(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if mode == "fast":
        engine.switchToSelectiveSearchFast()
    else:
        engine.switchToSelectiveSearchQuality()
    rects = np.asarray(engine.process())
    if rects.size == 0:
        return np.zeros((0, 4)), np.zeros(0)
    boxes = from_xywh(rects)
    return boxes, 1.0 / (1.0 + np.arange(len(boxes), dtype=np.float64))
