"""BING objectness (Cheng et al., CVPR 2014) through OpenCV's saliency module.

BING scores windows at quantised sizes with a linear model on 8×8 binarised normed
gradients. OpenCV needs the trained model files (``ObjNessB2W8<space>.{wS1,wS2,idx}.yml.gz``
from the BING authors or opencv_extra's test data); no pip package ships them, so the
method runs only with ``--bing-model DIR``.

OpenCV runs one model per colour space found in the folder (MAXBGR, HSV, I; it skips,
with a printf, a space whose files are absent) and fuses them by rank: the k-th box of
a space gets the cost ``(k + 300) × {1, 3, 5}``, lower is better. The score we store is
``300 / cost``: 1 for MAXBGR's best box, decreasing down every space's list.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vcl.errors import DataError, MissingInputError

COLOUR_SPACES = ("MAXBGR", "HSV", "I")  # OpenCV's _clrName; MAXBGR is required
PARTS = ("wS1", "wS2", "idx")  # 8×8 filter; per-size calibration (n×2); size indices (n×1)
_REPLACE = "use the trained file from the BING authors or opencv_extra"


def _model_file(space: str, part: str) -> str:
    return f"ObjNessB2W8{space}.{part}.yml.gz"


def _read_matrix(path: Path) -> np.ndarray:
    """The matrix OpenCV's matRead takes from one file (node named as the file's stem)."""
    import cv2

    with quiet_opencv():
        try:
            fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
        except (cv2.error, SystemError):  # SystemError wraps a parse error in 5.0
            fs = None
        if fs is None or not fs.isOpened():
            raise DataError("not a readable OpenCV .yml.gz matrix", path, _REPLACE)
        try:
            mat = fs.getNode(path.name.split(".")[0]).mat()
        finally:
            fs.release()
    if mat is None:
        raise DataError(f"holds no {path.name.split('.')[0]} matrix", path, _REPLACE)
    return np.asarray(mat)


def check_model(folder: str) -> list[str]:
    """The colour spaces the folder holds a complete, well-formed model for.

    Exit 66 naming the folder when MAXBGR's files (or part of another space's) are
    missing; exit 65 naming the file when one is not a BING matrix of the right shape.
    OpenCV itself would crash on a space with a filter but no calibration, or print a
    parse error and fail on a damaged file.
    """
    path = Path(folder)
    if not path.is_dir():
        raise MissingInputError("no such BING model folder", path)
    spaces = []
    for space in COLOUR_SPACES:
        names = [_model_file(space, part) for part in PARTS]
        missing = [name for name in names if not (path / name).is_file()]
        if len(missing) == len(names) and space != "MAXBGR":
            continue
        if missing:
            raise MissingInputError(
                f"BING model folder lacks {', '.join(missing)}",
                path,
                "use the folder holding OpenCV's trained ObjNessB2W8* files",
            )
        w, calibration, sizes = (_read_matrix(path / name) for name in names)
        shapes_ok = w.shape == (8, 8) and sizes.size > 1 and calibration.shape == (sizes.size, 2)
        if not shapes_ok:
            raise DataError(
                f"{space} model has shapes wS1 {w.shape}, wS2 {calibration.shape}, "
                f"idx {sizes.shape}",
                path,
                "BING needs an 8×8 filter, n×2 calibration and n>1 size indices",
            )
        spaces.append(space)
    return spaces


@contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV around a call: its log (stderr) and C printf chatter (fd 1).

    BING printf()s timings and "Can't load model" lines to the process's stdout, which
    carries data here; fd 1 goes to /dev/null meanwhile (C's buffer flushed before it
    comes back).
    """
    import ctypes

    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        ctypes.CDLL(None).fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
        cv2.utils.logging.setLogLevel(level)


@lru_cache(maxsize=2)
def load_bing(folder: str) -> Any:
    import cv2

    check_model(folder)
    bing = cv2.saliency.ObjectnessBING_create()
    bing.setTrainingPath(str(folder))  # read per colour space at every computeSaliency
    return bing


def bing_boxes(folder: str, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N×4 xyxy float64) and objectness scores (higher is better)."""
    import cv2

    bing = load_bing(folder)
    with quiet_opencv():
        ok, boxes = bing.computeSaliency(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise MissingInputError("BING could not load its model", folder)
    if boxes is None or np.asarray(boxes).size == 0:
        return np.zeros((0, 4)), np.zeros(0)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)  # (N,4) in 5.0, (N,1,4) in 4.x
    boxes[:, :2] -= 1.0  # OpenCV adds 1 to x0, y0 (Cheng's 1-based corners); x1, y1 are ends
    cost = np.asarray(bing.getobjectnessValues(), dtype=np.float64).reshape(-1)
    if len(cost) != len(boxes):  # older builds return no values: rank order instead
        cost = 300.0 + np.arange(len(boxes), dtype=np.float64)
    return boxes, 300.0 / cost
