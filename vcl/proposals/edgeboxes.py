"""EdgeBoxes (Zitnick & Dollár, ECCV 2014) on a built-in edge map, or on SED edges.

EdgeBoxes scores a window by the edge groups wholly inside it, minus those crossing its
border (Eq. 2–3 of the paper), so it needs a thin edge map E (H×W float32 in [0, 1])
and an orientation map O (H×W float32 in [0, π), the edge *normal*, as OpenCV's
``StructuredEdgeDetection.computeOrientation`` returns). OpenCV's structured forest
needs a ``model.yml.gz`` that no package ships, so by default E is the colour
gradient magnitude of a Gaussian-smoothed frame, thinned by non-maximum suppression
along the gradient. Thinning matters: on unthinned maps every edge is several pixels
wide, EdgeBoxes forms many more edge groups and runs ~7× slower.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vcl.errors import MissingInputError


@dataclass(frozen=True)
class EdgeBoxesParams:
    """OpenCV's EdgeBoxes parameters (defaults: the paper's / OpenCV's, ODCT's maxBoxes)."""

    alpha: float = 0.65  # step of the sliding-window search (IoU between neighbouring windows)
    beta: float = 0.75  # NMS IoU threshold inside EdgeBoxes
    eta: float = 1.0  # adaptation rate of beta
    min_score: float = 0.01  # drop boxes scoring below this
    max_boxes: int = 300  # ODCT: 300 proposals per frame
    edge_min_mag: float = 0.1  # edges weaker than this are ignored
    edge_merge_thr: float = 0.5  # stop growing an edge group when orientations differ by this
    cluster_min_mag: float = 0.5  # a group needs this much summed magnitude
    max_aspect_ratio: float = 3.0
    min_box_area: float = 1000.0  # px² at the processing scale
    gamma: float = 2.0  # affinity sensitivity (Eq. 1)
    kappa: float = 1.5  # scale penalty on large windows (Eq. 3)


@dataclass(frozen=True)
class EdgeParams:
    """The built-in edge detector."""

    sigma: float = 1.0  # Gaussian smoothing before the gradient, px
    gain: float = 5.0  # E = min(1, gain × |∇I|), I in [0, 1]: a 0.5 step gives E ≈ 1


def gradient_edges(rgb: np.ndarray, params: EdgeParams = EdgeParams()) -> tuple[np.ndarray, ...]:
    """Thin edges and their normal orientation from a colour frame (H×W×3 uint8).

    Per pixel, the channel with the strongest Sobel gradient gives the magnitude m and
    direction θ = atan2(gy, gx) mod π. A pixel survives when m is not smaller than m
    interpolated one pixel either way along θ (Canny-style NMS). Returns ``(E, O)``,
    both H×W float32, E in [0, 1], O in [0, π).
    """
    import cv2

    img = rgb.astype(np.float32) * (1.0 / 255.0)
    if params.sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), params.sigma, borderType=cv2.BORDER_REFLECT)
    if img.ndim == 2:
        img = img[..., None]
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    gx, gy = _strongest_channel(gx, gy)
    mag, angle = cv2.cartToPolar(gx, gy)  # angle in [0, 2π)
    orient = np.where(angle >= np.pi, angle - np.pi, angle).astype(np.float32)
    orient[orient >= np.pi] = 0.0  # float rounding can leave exactly π
    safe = np.maximum(mag, 1e-12)
    thin = _suppress(mag, gx / safe, gy / safe)
    edges = np.minimum(thin * params.gain, 1.0).astype(np.float32)
    return edges, orient


def _strongest_channel(gx: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, (gx, gy) of the channel with the largest gx² + gy² (first one on ties)."""
    if gx.ndim == 2:
        return gx, gy
    xs, ys = list(np.moveaxis(gx, 2, 0)), list(np.moveaxis(gy, 2, 0))
    bx, by = xs[0], ys[0]
    best = bx * bx + by * by
    for cx, cy in zip(xs[1:], ys[1:], strict=True):
        m = cx * cx + cy * cy
        better = m > best
        bx, by, best = np.where(better, cx, bx), np.where(better, cy, by), np.maximum(m, best)
    return bx, by


def _suppress(mag: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Magnitude where it is a local maximum along (dx, dy), else 0 (bilinear neighbours)."""
    import cv2

    h, w = mag.shape
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    ahead = cv2.remap(mag, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    behind = cv2.remap(mag, xs - dx, ys - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.where((mag >= ahead) & (mag >= behind), mag, 0.0).astype(np.float32)


@lru_cache(maxsize=2)
def load_edge_model(path: str) -> Any:
    """OpenCV's structured-forest edge detector from a ``model.yml.gz``; exit 66 if unreadable."""
    import cv2

    if not Path(path).is_file():
        raise MissingInputError(
            "no such edge model file", path, "pass the structured-forest model.yml.gz"
        )
    try:
        return cv2.ximgproc.createStructuredEdgeDetection(str(path))
    except cv2.error:
        raise MissingInputError(
            "cannot read the structured edge model",
            path,
            "pass OpenCV's structured-forest model.yml.gz, or leave out --edge-model",
        ) from None


def structured_edges(rgb: np.ndarray, model_path: str) -> tuple[np.ndarray, np.ndarray]:
    """SED edges (Dollár & Zitnick 2013), their orientation, thinned by the model's NMS."""
    model = load_edge_model(model_path)
    edges = model.detectEdges(rgb.astype(np.float32) * (1.0 / 255.0))
    orient = model.computeOrientation(edges)
    return model.edgesNms(edges, orient, r=2, s=0, m=1, isParallel=True), orient


def create_edge_boxes(params: EdgeBoxesParams) -> Any:
    import cv2

    return cv2.ximgproc.createEdgeBoxes(
        alpha=params.alpha,
        beta=params.beta,
        eta=params.eta,
        minScore=params.min_score,
        maxBoxes=int(params.max_boxes),
        edgeMinMag=params.edge_min_mag,
        edgeMergeThr=params.edge_merge_thr,
        clusterMinMag=params.cluster_min_mag,
        maxAspectRatio=params.max_aspect_ratio,
        minBoxArea=float(params.min_box_area),
        gamma=params.gamma,
        kappa=params.kappa,
    )


def edge_boxes(engine: Any, edges: np.ndarray, orient: np.ndarray) -> tuple[np.ndarray, ...]:
    """Run EdgeBoxes: xyxy boxes (N×4 float64) and scores (N,), best first.

    OpenCV returns ``(x, y, w, h)`` rectangles in Dollár's convention (see
    `from_edgeboxes_rects`); scores are ``(N,)`` in 5.0, ``(N, 1)`` in 4.x, and
    ``((), None)`` when the frame has no edges.
    """
    rects, scores = engine.getBoundingBoxes(edges, orient)
    if scores is None or len(rects) == 0:
        return np.zeros((0, 4)), np.zeros(0)
    return from_edgeboxes_rects(rects), np.asarray(scores, dtype=np.float64).reshape(-1)


def from_edgeboxes_rects(rects: np.ndarray) -> np.ndarray:
    """OpenCV EdgeBoxes rectangles (N×4) as 0-based xyxy pixel-edge boxes.

    Internally a box spans pixel columns ``x .. x+w`` and rows ``y .. y+h`` inclusive;
    ``getBoundingBoxes`` reports it as ``(x+1, y+1, w, h)`` (the MATLAB code's 1-based
    corner). Read as 0-based xywh, boxes would sit 1 px right and down and never touch the
    left or top border; ``(X, Y, w, h)`` is the box ``[X-1, Y-1, X+w, Y+h]``.
    """
    r = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([r[:, :2] - 1.0, r[:, :2] + r[:, 2:]], axis=1)
