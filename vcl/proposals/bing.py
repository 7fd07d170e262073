"""BING objectness (Cheng et al., CVPR 2014) through OpenCV's saliency module.

BING scores windows at quantised sizes with a linear model on 8×8 binarised normed
gradients. OpenCV needs the trained model files (``ObjNessB2W8MAXBGR.*.yml.gz``,
from the BING authors or opencv_contrib's test data); no pip package ships them, so
the method runs only with ``--bing-model DIR``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vcl.errors import MissingInputError

MODEL_FILES = (
    "ObjNessB2W8MAXBGR.idx.yml.gz",
    "ObjNessB2W8MAXBGR.wS1.yml.gz",
    "ObjNessB2W8MAXBGR.wS2.yml.gz",
)


def check_model(folder: str) -> None:
    """Exit 66 naming the folder when the BING model files are not all there."""
    path = Path(folder)
    if not path.is_dir():
        raise MissingInputError("no such BING model folder", path)
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise MissingInputError(
            f"BING model folder lacks {', '.join(missing)}",
            path,
            "use the folder holding OpenCV's trained ObjNessB2W8MAXBGR files",
        )


@lru_cache(maxsize=2)
def load_bing(folder: str) -> Any:
    import cv2

    check_model(folder)
    bing = cv2.saliency.ObjectnessBING_create()
    bing.setTrainingPath(str(folder))
    return bing


def bing_boxes(folder: str, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N×4 xyxy float64) and objectness scores, best first."""
    import cv2

    bing = load_bing(folder)
    ok, boxes = bing.computeSaliency(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise MissingInputError("BING could not load its model", folder)
    if boxes is None or np.asarray(boxes).size == 0:
        return np.zeros((0, 4)), np.zeros(0)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)  # (N,4) in 5.0, (N,1,4) in 4.x
    boxes[:, 2:] += 1.0  # inclusive pixel corners -> continuous xyxy
    scores = np.asarray(bing.getobjectnessValues(), dtype=np.float64).reshape(-1)
    if len(scores) != len(boxes):  # older builds return no values: rank order instead
        scores = 1.0 / (1.0 + np.arange(len(boxes), dtype=np.float64))
    return boxes, scores
