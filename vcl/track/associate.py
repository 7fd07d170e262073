"""IoU association: the greedy matching of ODCT's tracker, compiled.

``associate(a, b, θ)`` is exactly ``greedy_match(iou_fast(a, b), θ)`` — pairs in
decreasing IoU, ties by row then column, a pair taken when both ends are free — without
the dense matrix: a sort-and-sweep finds the few pairs whose boxes, shrunk about their
centres, overlap (a necessary condition of IoU > θ), computes their exact float32 IoU,
and the sequential greedy runs on those above θ. Both steps are numba kernels in
`vcl.track.match_kernel` (where the test, the tie order and the JIT cache are
explained); numba is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import numpy as np


def _boxes(x: np.ndarray) -> np.ndarray:
    """(N, 4) float32 C-contiguous: the one layout the kernels are compiled for."""
    return np.ascontiguousarray(np.asarray(x, np.float32).reshape(-1, 4))


def associate(
    a: np.ndarray, b: np.ndarray, threshold: float, banned: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy IoU matching of boxes a (A×4) to b (P×4), accepting IoU > θ, never taking
    a pair ``banned`` (A×P bool) holds.

    Returns ``(rows, cols)`` int64, in the order the greedy took them (decreasing IoU).
    """
    from vcl.track.match_kernel import candidates_above

    a, b = _boxes(a), _boxes(b)
    theta = np.float32(threshold)
    if theta < 0:  # every pair but a NaN one passes: nothing to prune
        from vcl.boxes import iou_fast

        overlap = iou_fast(a, b)
        rows, cols = np.nonzero(overlap > theta)
        values = overlap[rows, cols]
    else:
        rows, cols, values = candidates_above(a, b, theta)
    if banned is not None:
        keep = ~banned[rows, cols]
        rows, cols, values = rows[keep], cols[keep], values[keep]
    return greedy_pairs(rows, cols, values, len(a), len(b))


def greedy_pairs(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int, n_cols: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sequential greedy over pairs (K,): decreasing value, ties by row then column.

    A pair is taken when its row and column are both free. ``values`` are compared as
    float32 and must not be NaN. Returns the taken ``(rows, cols)`` int64, in order.
    """
    from vcl.track.match_kernel import greedy

    return greedy(
        np.ascontiguousarray(rows, np.int64),
        np.ascontiguousarray(cols, np.int64),
        np.ascontiguousarray(values, np.float32),
        int(n_rows),
        int(n_cols),
    )
