"""Compiled kernels of the IoU association (numba): candidate sweep, exact IoU, greedy.

At 300 proposals and ~350 active tracks a frame, numpy spends most of a frame's budget
on the overhead of its ~40 calls; these loops do the whole step in two calls.

**Candidates.** For intervals of widths w_a, w_b and centre distance d, the 1-D IoU
obeys ``IoU_x ≤ (w_a + w_b − 2|d|) / (w_a + w_b + 2|d|)``, and a box IoU is at most the
IoU of its x (and of its y) intervals. So IoU > θ implies ``|d| < k (w_a + w_b)`` on
both axes with ``k = (1 − θ) / (2 (1 + θ))``: the boxes *shrunk* about their centres
to a k-fraction of each side (0.24 at θ = 0.35) intersect. The y range is cut into
bands about one mean shrunk height tall; in each band, the shrunk x intervals of both
sets that meet it are swept in order of their left ends, with active lists: an interval
that starts meets the other set's active intervals (those that ended are dropped), and
each such pair that also meets in y gets its exact IoU. A pair is tested only in the
first band both are in (one of them starts there), so once. On the benchmark that is
two radix sorts of ~650 keys and ~5,000 IoUs, against 10⁵ for the dense matrix; a few
frame-sized boxes only cost their own pairs. The pair test has no data-dependent
branch (outcomes are random: a branch would mispredict every few pairs).

**Exact IoU.** The float32 operations of `vcl.boxes.iou_fast`, in its order (no
fast-math, so no fused multiply-adds): values are bit-identical to the dense matrix's,
and so are threshold calls and ties.

**Greedy.** Pairs above θ sorted once by (−IoU, row, column) — a radix sort of keys of
at most 64 bits (the IoU's float32 bits mapped to an unsigned order, less their minimum,
above the row-major pair index) — then taken in that order when both ends are free:
sequential greedy, exactly.

Compiled on first use (5–9 s of CPU, once) and cached on disk (``cache=True``: in
``__pycache__`` beside this file, or numba's user cache directory where that cannot be
written, as in a read-only install); a later process loads them in ~0.1 s, plus ~0.4 s
to import numba. `vcl.track.associate` imports this module only when it first matches.
"""

from __future__ import annotations

import numba
import numpy as np

# Slack on θ for the candidate test, so that float32 rounding in the exact IoU never
# lets a pair through that the test excluded (the test is necessary for IoU > θ − SLACK).
SLACK = 1e-3
_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
# columns of the item table of `candidates_above`
RIGHT, LOW, HIGH, X0, Y0, X1, Y1, AREA = range(8)


@numba.njit(**_JIT)
def _ordered(bits):
    """float32 bits (as uint64 < 2³²) → uint64 < 2³² in the floats' order (no NaN)."""
    if bits >= np.uint64(0x80000000):  # negative: larger magnitude comes first
        return bits ^ np.uint64(0xFFFFFFFF)
    return bits | np.uint64(0x80000000)


@numba.njit(**_JIT)
def _bit_length(x):
    """Bits of a uint64 (0 for 0)."""
    n = 0
    while x:
        x >>= np.uint64(1)
        n += 1
    return n


@numba.njit(**_JIT)
def radix_sort(keys, bits=64):
    """Sorted copy of uint64 keys (K,) below 2**bits: LSD radix sort, 8-bit digits.

    Passes whose digit all keys share are skipped. Its scatter has no data-dependent
    branch, where a comparison sort of random keys mispredicts every other comparison
    (~3× slower at the ~1,000 keys a frame here).
    """
    n = keys.shape[0]
    src = keys.copy()
    digits = (bits + 7) // 8
    if n < 2:
        return src
    counts = np.zeros((digits, 256), np.int64)
    for t in range(n):
        k = src[t]
        for d in range(digits):
            counts[d, np.intp((k >> np.uint64(8 * d)) & np.uint64(255))] += 1
    dst = np.empty_like(src)
    offset = np.empty(256, np.int64)
    for d in range(digits):
        shift = np.uint64(8 * d)
        if counts[d, np.intp((src[0] >> shift) & np.uint64(255))] == n:
            continue  # one digit for all: nothing to reorder
        total = 0
        for v in range(256):
            offset[v] = total
            total += counts[d, v]
        for t in range(n):
            k = src[t]
            v = np.intp((k >> shift) & np.uint64(255))
            dst[offset[v]] = k
            offset[v] += 1
        src, dst = dst, src
    return src


@numba.njit(**_JIT)
def _sort_pairs(high, low, low_bits):
    """Sorted keys ``(high − min high) << low_bits | low`` (K,) uint64, or an empty
    array when they need more than 64 bits. Fewer bits, fewer radix passes."""
    n = high.shape[0]
    if n == 0:
        return np.zeros(0, np.uint64)
    base, top = high[0], high[0]
    for t in range(n):
        base = min(base, high[t])
        top = max(top, high[t])
    bits = _bit_length(top - base) + low_bits
    if bits > 64:
        return np.zeros(0, np.uint64)
    keys = np.empty(n, np.uint64)
    shift = np.uint64(low_bits)
    for t in range(n):
        keys[t] = ((high[t] - base) << shift) | low[t]
    return radix_sort(keys, bits)


@numba.njit(**_JIT)
def _sorted_by_left(left):
    """Permutation (V,) int64 sorting float32 ``left`` ascending."""
    n = left.shape[0]
    bits = left.view(np.uint32)
    high = np.empty(n, np.uint64)
    low = np.empty(n, np.uint64)
    for t in range(n):
        high[t] = _ordered(np.uint64(bits[t]))
        low[t] = t
    width = _bit_length(np.uint64(max(n - 1, 0)))
    keys = _sort_pairs(high, low, width)  # ≤ 32 + 32 bits: always fits
    mask = (np.uint64(1) << np.uint64(width)) - np.uint64(1)
    order = np.empty(n, np.int64)
    for t in range(n):
        order[t] = np.int64(keys[t] & mask)
    return order


@numba.njit(**_JIT)
def candidates_above(a, b, theta):
    """Every pair of a (A×4) × b (P×4) float32 with IoU > θ: ``(rows, cols, iou)`` (K,).

    θ ≥ 0 sweeps the shrunk intervals (module docstring). Boxes that are not finite
    with x1 > x0 and y1 > y0 are left out: their IoU with any box is 0 or NaN (an empty
    side, or an infinite area), which never passes θ ≥ 0 (θ < 0 passes every pair: the
    caller uses the dense matrix). Pairs come in no particular order.
    """
    na, nb = a.shape[0], b.shape[0]
    if theta < 0:
        raise ValueError("θ < 0 passes every pair: use the dense IoU matrix")
    tc = np.float64(theta) - SLACK
    k2 = (1.0 - tc) / (1.0 + tc)  # 2k: the intervals are in doubled coordinates
    top = 1.0
    for boxes in (a, b):
        for i in range(boxes.shape[0]):
            for c in range(4):
                if np.isfinite(boxes[i, c]):
                    top = max(top, abs(np.float64(boxes[i, c])))
    pad = 1e-6 * top  # > 4·top·2⁻²⁴: the float32 rounding of an endpoint
    # Both sets in one table, a row per item (a valid box): its shrunk intervals
    # (float64 padded, then float32: they contain the exact ones; doubled coordinates),
    # its box and area — 32 bytes, one cache line for all a pair test reads of it.
    size = na + nb
    left = np.empty(size, np.float32)
    item = np.empty((size, 8), np.float32)  # RIGHT, LOW, HIGH, X0, Y0, X1, Y1, AREA
    side = np.empty(size, np.int64)  # 0: a track (row), 1: a proposal (column)
    index = np.empty(size, np.int64)
    m = 0
    for s, boxes in ((0, a), (1, b)):
        for i in range(boxes.shape[0]):
            x0, y0 = np.float64(boxes[i, 0]), np.float64(boxes[i, 1])
            x1, y1 = np.float64(boxes[i, 2]), np.float64(boxes[i, 3])
            if not (np.isfinite(x0) and np.isfinite(y0) and np.isfinite(x1) and np.isfinite(y1)):
                continue
            if not (x1 > x0 and y1 > y0):
                continue
            hx = (x1 - x0) * k2 + pad
            hy = (y1 - y0) * k2 + pad
            left[m] = x0 + x1 - hx
            item[m, RIGHT] = x0 + x1 + hx
            item[m, LOW] = y0 + y1 - hy
            item[m, HIGH] = y0 + y1 + hy
            for c in range(4):
                item[m, X0 + c] = boxes[i, c]
            item[m, AREA] = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            side[m], index[m] = s, i
            m += 1
    order = _sorted_by_left(left[:m].copy())
    start, members, first, count = _bands(order, item)
    cap = 64 + 4 * size
    while True:  # the buffers are sized by a first try, never regrown inside the sweep
        rows = np.empty(cap, np.int64)
        cols = np.empty(cap, np.int64)
        vals = np.empty(cap, np.float32)
        n = _sweep(start, members, first, count, side, index, left, item, theta, rows, cols, vals)
        if n < cap:  # the last slot takes the writes of pairs that fail
            return rows[:n], cols[:n], vals[:n]
        cap = n + 1


@numba.njit(**_JIT)
def _lesser(x, y):
    return x if x < y else y


@numba.njit(**_JIT)
def _greater(x, y):
    return x if x > y else y


@numba.njit(**_JIT)
def _band(v, lowest, scale, count):
    """Band (int) of a y value: monotonic in v, so an interval meets a contiguous range."""
    return _lesser(_greater(int((v - lowest) * scale), 0), count - 1)


@numba.njit(**_JIT)
def _bands(order, item):
    """Horizontal bands of the y range, each about one mean shrunk height (≤ 64).

    Each item (of ``order``, by left end) joins every band its y interval meets. Returns
    ``(start (G+1,), members, first (M,), G)``: band g holds
    ``members[start[g]:start[g + 1]]``, in order; ``first`` is each item's first band.
    """
    m = order.shape[0]
    first = np.empty(m, np.int64)
    if m == 0:
        return np.zeros(2, np.int64), np.zeros(0, np.int64), first, 1
    lowest, highest, mean = np.inf, -np.inf, 0.0
    for t in range(m):
        low, high = np.float64(item[t, LOW]), np.float64(item[t, HIGH])
        lowest = min(lowest, low)
        highest = max(highest, high)
        mean += high - low
    mean /= m
    count = int(min(64.0, max(1.0, (highest - lowest) / max(mean, 1e-300))))
    scale = count / (highest - lowest) if highest > lowest else 0.0
    final = np.empty(m, np.int64)
    start = np.zeros(count + 1, np.int64)
    for t in range(m):
        first[t] = _band(item[t, LOW], lowest, scale, count)
        final[t] = _band(item[t, HIGH], lowest, scale, count)
        for g in range(first[t], final[t] + 1):
            start[g + 1] += 1
    for g in range(count):
        start[g + 1] += start[g]
    fill = start[:-1].copy()
    members = np.empty(start[count], np.int64)
    for t in range(m):
        x = order[t]
        for g in range(first[x], final[x] + 1):
            members[fill[g]] = x
            fill[g] += 1
    return start, members, first, count


@numba.njit(**_JIT)
def _meet(active, n_active, x, mine, left, item, index, theta, rows, cols, vals, n):
    """Test item x on the items ``active[:n_active]`` of the other set.

    Drops the active items that ended before x's left end (no later item meets them
    either), writes the pairs above θ at rows, cols, vals[n:] and returns the new
    ``(n_active, n)``. The test of a pair has no data-dependent branch (the IoU is
    computed for every pair met and written at the next slot whether it passes or not;
    the last slot takes the writes past the buffers' end): random outcomes would cost
    a misprediction each.
    """
    zero, tiny = np.float32(0.0), np.float32(1e-12)
    last = rows.shape[0] - 1
    # x's row in locals: for the compiler, the stores below could alias it
    left_x, low_x, high_x = left[x], item[x, LOW], item[x, HIGH]
    x0, y0, x1, y1, area_x = item[x, X0], item[x, Y0], item[x, X1], item[x, Y1], item[x, AREA]
    i_x = index[x]
    k = 0
    while k < n_active:
        y = active[k]
        row = item[y]
        if row[RIGHT] <= left_x:  # ended
            n_active -= 1
            active[k] = active[n_active]
            continue
        k += 1
        # `iou_fast`'s float32 operations (min, max, + commute exactly: symmetric)
        w = _lesser(x1, row[X1]) - _greater(x0, row[X0])
        w = _greater(w, zero)
        h = _lesser(y1, row[Y1]) - _greater(y0, row[Y0])
        h = _greater(h, zero)
        inter = w * h
        union = area_x + row[AREA]
        union = union - inter
        union = _greater(union, tiny)
        v = inter / union
        slot = _lesser(n, last)
        rows[slot] = i_x if mine else index[y]
        cols[slot] = index[y] if mine else i_x
        vals[slot] = v
        n += (v > theta) & (row[LOW] < high_x) & (low_x < row[HIGH])
    return n_active, n


@numba.njit(**_JIT)
def _sweep(start, members, first, count, side, index, left, item, theta, rows, cols, vals):
    """The sweep in each band over its items by left end (see `candidates_above`).

    A pair is tested in the first band both are in — where one of them is *fresh*
    (its first band) — so once: per band and set, fresh and continuing items are kept
    in separate active lists, and two continuing items are never tested. Writes the
    pairs above θ into rows, cols, vals (K,) while they fit (all of them when the count
    returned is < K) and returns how many there are. (No array is reassigned in the
    loops: numba would then count references at every iteration.)
    """
    active = np.empty((2, 2, members.shape[0]), np.int64)  # [set, fresh | continuing]
    n_active = np.zeros((2, 2), np.int64)
    n = 0
    for g in range(count):
        n_active[:] = 0
        for t in range(start[g], start[g + 1]):
            x = members[t]  # x's interval starts: test it on the other set's active ones
            mine, other = side[x], 1 - side[x]
            kinds = 2 if first[x] == g else 1  # fresh x: both lists; else the fresh one
            for kind in range(kinds):
                n_active[other, kind], n = _meet(
                    active[other, kind], n_active[other, kind], x, mine == 0,
                    left, item, index, theta, rows, cols, vals, n,
                )  # fmt: skip
            kind = 0 if first[x] == g else 1
            active[mine, kind, n_active[mine, kind]] = x
            n_active[mine, kind] += 1
    return n


@numba.njit(**_JIT)
def greedy(rows, cols, vals, n_rows, n_cols):
    """Sequential greedy over pairs (K,): by decreasing value, ties by row then column.

    A pair is taken when its row and column are both free. Values must not be NaN.
    Sort keys: the value's order (inverted: descending) in the high bits, the row-major
    pair index in the low ones; where both need more than 64 bits, the values are first
    replaced by their dense rank. Returns the taken ``(rows, cols)`` int64, in the order
    taken.
    """
    n = rows.shape[0]
    bits = (vals + np.float32(0.0)).view(np.uint32)  # + 0 turns −0 into +0
    high = np.empty(n, np.uint64)
    pair = np.empty(n, np.uint64)
    for t in range(n):
        high[t] = np.uint64(0xFFFFFFFF) - _ordered(np.uint64(bits[t]))
        pair[t] = np.uint64(rows[t] * n_cols + cols[t])
    width = _bit_length(np.uint64(max(n_rows * n_cols - 1, 0)))  # of the pair index
    keys = _sort_pairs(high, pair, width)
    if keys.shape[0] < n:  # too many bits: rank the values (sorted by value, then t)
        by_value = _sort_pairs(high, np.arange(n).astype(np.uint64), 32)
        r = np.uint64(0)
        for s in range(n):
            t = np.int64(by_value[s] & np.uint64(0xFFFFFFFF))
            if s and (by_value[s] >> np.uint64(32)) != (by_value[s - 1] >> np.uint64(32)):
                r += np.uint64(1)
            high[t] = r
        keys = _sort_pairs(high, pair, width)
        if keys.shape[0] < n:
            raise ValueError("too many pairs for the greedy's 64-bit sort keys")
    mask = (np.uint64(1) << np.uint64(width)) - np.uint64(1) if width < 64 else ~np.uint64(0)
    used_r = np.zeros(n_rows, np.bool_)
    used_c = np.zeros(n_cols, np.bool_)
    out_r = np.empty(min(n_rows, n_cols, n) + 1, np.int64)  # + 1: a slot for the rest
    out_c = np.empty_like(out_r)
    m = 0
    for t in range(n):  # no data-dependent branch: which pairs are free is random
        p = np.int64(keys[t] & mask)
        i = p // n_cols
        j = p - i * n_cols
        free = not (used_r[i] | used_c[j])
        used_r[i] |= free
        used_c[j] |= free
        out_r[m] = i
        out_c[m] = j
        m += free
    return out_r[:m], out_c[:m]
