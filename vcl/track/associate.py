"""Sparse IoU association: the greedy matching of ODCT's tracker without the dense matrix.

At 300 proposals and ~350 active tracks a frame, a dense float32 IoU matrix is ~10⁵
entries and a dozen full passes over it — most of a frame's budget — although only a
few percent of the pairs can pass the threshold. This module finds a small superset of
the pairs with IoU > θ first, computes the exact IoU on those only, and runs the
sequential greedy on them; the result is exactly ``greedy_match(iou_fast(a, b), θ)``.

**Candidate test.** For intervals of widths w_a, w_b and centre distance d, the 1-D IoU
obeys ``IoU_x ≤ (w_a + w_b − 2|d|) / (w_a + w_b + 2|d|)``, and the box IoU is at most
the IoU of its x (and of its y) intervals (union ≥ i_y·u_x since i_y ≤ h_a, h_b). So
IoU > θ implies ``|d| < k (w_a + w_b)`` with ``k = (1 − θ) / (2 (1 + θ))`` on both axes:
the boxes *shrunk* about their centres to a k-fraction of each side (0.24 at θ = 0.35)
intersect. Per axis that is ``L_b < R_a and R_b > L_a``: a prefix of the proposals
sorted by L, and the complement of a prefix of those sorted by R — rows of (P+1)×W
tables of uint64 bitsets (cumulative OR along each order), picked for every track by
one ``searchsorted``. ANDing four rows gives every track's candidate bitset (A×W
words, 64 pairs an operation). Bits are numbered by centre x, so that a track's
candidates share one or two words and reading the set bits back touches few words.
On the benchmark the candidates are ~3.5 % of the pairs, ~3× the pairs that pass; a
few huge proposals (EdgeBoxes' frame-sized boxes) only widen their own columns.

**Greedy.** Candidates above θ are sorted once by (−IoU, row, column) — one argsort of
a 64-bit key (the IoU's float32 bits, which order like the values, above the pair's
row-major index) — and matched in rounds (see `greedy_rounds`).
"""

from __future__ import annotations

import numpy as np

# Slack on θ for the candidate test, so that float32 rounding in the exact IoU never
# lets a pair through that the candidate test excluded (the test is a necessary
# condition of IoU > θ − SLACK).
SLACK = 1e-3
# When one dense IoU matrix is faster (measured crossovers on 2 cores): below this many
# pairs A·P, or above this estimated fraction of candidates among them.
DENSE_BELOW = 12_000
DENSE_ABOVE = 0.15
_ONE = np.uint64(1)


def _prefix_bits(order: np.ndarray, words: int) -> np.ndarray:
    """(P+1, words) uint64: row i holds the bits of the proposals ``order[:i]``."""
    table = np.zeros((len(order) + 1, words), np.uint64)
    table[np.arange(1, len(order) + 1), order >> 6] = _ONE << (order & 63).astype(np.uint64)
    np.bitwise_or.accumulate(table, axis=0, out=table)
    return table


def candidate_pairs(
    a: np.ndarray, b: np.ndarray, threshold: float, max_fraction: float = 1.0
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rows, cols)`` int64: a superset of the pairs of a (A×4) × b (P×4) with IoU > θ.

    See the module docstring for the test. Rows come out ascending; columns are not
    ordered within a row. None when the candidates are estimated to exceed
    ``max_fraction`` of all pairs (crowded large boxes: the dense matrix is cheaper).
    """
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    n_b = len(b)
    if len(a) == 0 or n_b == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty
    theta = max(float(threshold) - SLACK, -0.5)
    k2 = np.float32((1.0 - theta) / (1.0 + theta))  # 2k: coordinates below are doubled
    words = (n_b + 63) >> 6
    # float32 rounding of the coordinates, covered by an absolute pad (doubled units)
    pad = np.float32(1e-6) * (
        np.fmax.reduce(np.abs(a), axis=None) + np.fmax.reduce(np.abs(b), axis=None) + 1
    )
    perm = np.argsort(b[:, 0] + b[:, 2])  # bit i of a row is proposal perm[i], by centre x
    b = b.take(perm, axis=0)
    picks = []  # per axis: the two sorted orders and every track's prefix lengths
    for lo, hi in ((0, 2), (1, 3)):  # x, then y
        # shrunk intervals [c - k w, c + k w] (doubled) intersect: L_b < R_a and R_b > L_a
        centre_a, half_a = a[:, lo] + a[:, hi], (a[:, hi] - a[:, lo]) * k2
        half_a += pad
        centre_b, half_b = b[:, lo] + b[:, hi], (b[:, hi] - b[:, lo]) * k2
        left_b, right_b = centre_b - half_b, centre_b + half_b
        by_left, by_right = np.argsort(left_b), np.argsort(right_b)
        below = np.searchsorted(left_b[by_left], centre_a + half_a)
        above = np.searchsorted(right_b[by_right], centre_a - half_a, "right")
        picks.append((by_left, below, by_right, above))
    if max_fraction < 1.0:
        # below - above counts each track's intersecting intervals exactly, per axis; the
        # product of the two axes' fractions estimates the candidates' (independence).
        n_pairs = len(a) * n_b
        frac = [float((below - above).sum()) / n_pairs for _, below, _, above in picks]
        if frac[0] * frac[1] > max_fraction:
            return None
    mask = None
    for by_left, below, by_right, above in picks:
        both = _prefix_bits(by_left, words).take(below, axis=0)
        both &= ~_prefix_bits(by_right, words).take(above, axis=0)
        if mask is None:
            mask = both
        else:
            mask &= both
    flat = mask.reshape(-1)
    nonzero = np.flatnonzero(flat)  # the (track, word) cells holding candidates
    bits = np.unpackbits(flat.take(nonzero).astype("<u8").view(np.uint8), bitorder="little")
    pos = np.flatnonzero(bits.view(bool))  # 64 bits per cell, lowest first
    cell = nonzero.take(pos >> 6)
    rows = cell // words
    cols = perm.take(((cell - rows * words) << 6) | (pos & 63))
    return rows, cols


def box_table(boxes: np.ndarray) -> np.ndarray:
    """(5, N) float32 rows x0, y0, x1, y1, area — `iou_fast`'s operands, gathered at once."""
    t = np.empty((5, len(boxes)), np.float32)
    t[:4] = np.asarray(boxes).T
    w = np.maximum(t[2] - t[0], 0)
    w *= np.maximum(t[3] - t[1], 0)
    t[4] = w
    return t


def pair_iou(ta: np.ndarray, tb: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """IoU (K,) float32 of the pairs ``(rows, cols)`` of two `box_table` s.

    The same float32 operations in the same order as `vcl.boxes.iou_fast`, so values
    are bit-identical to the dense matrix's and so are greedy ties and threshold calls.
    """
    ga = ta.take(rows, axis=1)  # (5, K)
    gb = tb.take(cols, axis=1)
    wh = np.minimum(ga[2:4], gb[2:4])  # (2, K): intersection width, height
    wh -= np.maximum(ga[:2], gb[:2])
    np.maximum(wh, 0, out=wh)
    inter = wh[0] * wh[1]
    union = ga[4] + gb[4]
    union -= inter
    np.maximum(union, np.float32(1e-12), out=union)
    inter /= union
    return inter


def greedy_order(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int, n_cols: int
) -> np.ndarray:
    """Permutation sorting pairs by decreasing value, ties by row then column.

    Positive float32 values have bit patterns that order like the values, so one
    argsort of ``(~bits << 32) | (row · n_cols + col)`` (unique keys) does it; other
    cases (a value ≤ 0, more than 2³² pairs) take the slower lexsort.
    """
    if n_rows * n_cols >= 1 << 32 or (values.size and values.min() <= 0):
        return np.lexsort((cols, rows, -values))
    key = np.uint64(0xFFFFFFFF) - values.astype(np.float32).view(np.uint32).astype(np.uint64)
    key <<= np.uint64(32)
    key |= (rows * n_cols + cols).astype(np.uint64)
    return np.argsort(key)


def greedy_rounds(
    rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sequential greedy over pairs already in priority order, in a few vector rounds.

    A pair that comes first in the order among all pairs of its row *and* of its column
    is taken by sequential greedy (nothing before it can block it), and the first pair
    always qualifies; so each round takes all such pairs, then drops the pairs on a
    taken row or column. Returns the taken ``(rows, cols)``.
    """
    first_r = np.empty(n_rows, np.int64)
    first_c = np.empty(n_cols, np.int64)
    out_r, out_c = [], []
    while rows.size:
        k = np.arange(rows.size)
        first_r.fill(rows.size)
        first_c.fill(rows.size)
        np.minimum.at(first_r, rows, k)  # each row's first position in the order
        np.minimum.at(first_c, cols, k)
        take = first_r[rows] == k
        take &= first_c[cols] == k
        taken_r, taken_c = rows[take], cols[take]
        out_r.append(taken_r)
        out_c.append(taken_c)
        if taken_r.size == rows.size:
            break
        first_r[taken_r] = -1
        first_c[taken_c] = -1
        keep = first_r[rows] >= 0
        keep &= first_c[cols] >= 0
        rows, cols = rows[keep], cols[keep]
    if not out_r:
        empty = np.zeros(0, np.int64)
        return empty, empty
    return np.concatenate(out_r), np.concatenate(out_c)


def greedy_pairs(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int, n_cols: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sequential greedy (decreasing value, ties by row then column) over candidate pairs."""
    order = greedy_order(rows, cols, values, n_rows, n_cols)
    return greedy_rounds(rows[order], cols[order], n_rows, n_cols)


def associate(a: np.ndarray, b: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy IoU matching of boxes a (A×4) to b (P×4), accepting IoU > θ.

    Exactly the sequential greedy on ``iou_fast(a, b)``: pairs in decreasing IoU, ties
    by row then column, a pair taken when both ends are free. Small or crowded problems
    use the dense matrix; the others the sparse candidates. Returns ``(rows, cols)`` int64.
    """
    theta = np.float32(threshold)
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    found = None
    if len(a) * len(b) >= DENSE_BELOW:
        found = candidate_pairs(a, b, threshold, DENSE_ABOVE)
    if found is None:
        from vcl.boxes import iou_fast

        overlap = iou_fast(a, b)
        rows, cols = np.nonzero(overlap > theta)
        values = overlap[rows, cols]
    else:
        rows, cols = found
        values = pair_iou(box_table(a), box_table(b), rows, cols)
        keep = values > theta
        rows, cols, values = rows[keep], cols[keep], values[keep]
    return greedy_pairs(rows, cols, values, len(a), len(b))
