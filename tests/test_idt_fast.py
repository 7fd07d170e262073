"""vcl idt's fast paths against plain twins: the same numbers, bit for bit.

The speed work (reused buffers, shared patch corners, one compaction a frame, one
median call for both flow channels, batched keypoint matching) must not change any
output; each test here runs a fast path beside a slow, obvious one on odd-sized data.
"""

from __future__ import annotations

import numpy as np
import pytest

from vcl.idt.config import IdtConfig
from vcl.idt.descriptors import (
    HistogramWorkspace,
    block_dims,
    channel_layout,
    frame_descriptor_matrix,
    integral_histograms,
    orientation_votes,
    stacked_votes,
)
from vcl.idt.tracking import Tracks, step


def _fields(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    grey = rng.integers(0, 256, (h, w)).astype(np.uint8)
    flow = rng.normal(0, 1.5, (h, w, 2)).astype(np.float32)
    flow[rng.random((h, w)) < 0.3] *= 0.1  # plenty of pixels for HOF's zero bin
    return grey, flow


def test_stacked_votes_equal_one_field_at_a_time() -> None:
    rng = np.random.default_rng(0)
    k, h, w = 4, 13, 29
    dx, dy = rng.normal(0, 2, (2, k, h, w)).astype(np.float32)
    dx[0, 0, :3] = 0  # angle exactly 0 and a vector of length 0
    dy[0, 0, :3] = 0
    bins, offsets, zero = [8, 9, 6, 5], [0, 8, 17, 23], [False, True, False, True]
    fast = np.zeros((28, h, w), np.float32)
    stacked_votes(dx, dy, bins, offsets, zero, 0.4, fast)
    slow = np.zeros_like(fast)
    for i in range(k):
        orientation_votes(dx[i], dy[i], bins[i], slow, offsets[i], zero[i], 0.4)
    np.testing.assert_array_equal(fast, slow)
    # a plain per-pixel twin of the vote split (degrees from arctan2, so not bit-exact)
    ang = np.degrees(np.arctan2(dy[0], dx[0])) % 360
    mag = np.hypot(dx[0], dy[0])
    lower = np.floor(ang / 45).astype(int) % 8
    frac = ang / 45 - np.floor(ang / 45)
    plain = np.zeros((8, h, w))
    for y in range(h):
        for x in range(w):
            plain[lower[y, x], y, x] += mag[y, x] * (1 - frac[y, x])
            plain[(lower[y, x] + 1) % 8, y, x] += mag[y, x] * frac[y, x]
    np.testing.assert_allclose(fast[:8], plain, atol=2e-2)


@pytest.mark.parametrize(
    "config", [IdtConfig(), IdtConfig(xy_cells=4, hog_bins=6, hof_bins=5, min_flow=0.1)]
)
def test_a_reused_workspace_gives_fresh_integrals(config: IdtConfig) -> None:
    """Buffers reused frame after frame carry nothing over (the votes are re-zeroed)."""
    rng = np.random.default_rng(1)
    h, w = 41, 67
    workspace = HistogramWorkspace(h, w, config)
    for _ in range(3):
        grey, flow = _fields(rng, h, w)
        reused = integral_histograms(grey, flow, config, workspace).copy()
        fresh = integral_histograms(grey, flow, config)
        np.testing.assert_array_equal(reused, fresh)
        assert reused.shape == (sum(b for _, b in channel_layout(config).values()), h + 1, w + 1)


def _descriptors_plain(integral: np.ndarray, points: np.ndarray, config: IdtConfig) -> np.ndarray:
    """The 16-lookup formula of the release, one cell and one point at a time."""
    h, w = integral.shape[1] - 1, integral.shape[2] - 1
    n, cell = config.patch_size, config.patch_size // config.xy_cells
    out = []
    for x, y in points:
        x0 = min(max(int(np.rint(x)) - n // 2, 0), w - n)
        y0 = min(max(int(np.rint(y)) - n // 2, 0), h - n)
        row = []
        for start, bins in channel_layout(config).values():
            hist = []
            for cx in range(config.xy_cells):
                for cy in range(config.xy_cells):
                    a, b = x0 + cx * cell, y0 + cy * cell
                    ii = integral[start : start + bins].astype(np.float64)
                    s = (
                        ii[:, b + cell, a + cell]
                        + ii[:, b, a]
                        - ii[:, b + cell, a]
                        - ii[:, b, a + cell]
                    )
                    hist.append(np.maximum(s, 0) + config.epsilon)
            vec = np.concatenate(hist)
            row.append(np.sqrt(vec / vec.sum()))
        out.append(np.concatenate(row))
    return np.array(out).reshape(len(points), sum(block_dims(config).values()))


def test_descriptor_matrix_matches_the_plain_formula_and_takes_no_points() -> None:
    rng = np.random.default_rng(2)
    config = IdtConfig(xy_cells=4)
    h, w = 45, 51
    grey, flow = _fields(rng, h, w)
    integral = integral_histograms(grey, flow, config)
    points = rng.uniform([-3, -3], [w + 3, h + 3], (23, 2)).astype(np.float32)
    fast = frame_descriptor_matrix(integral, points, config)
    np.testing.assert_allclose(fast, _descriptors_plain(integral, points, config), rtol=1e-4)
    empty = frame_descriptor_matrix(integral, np.zeros((0, 2), np.float32), config)
    assert empty.shape == (0, fast.shape[1])


def _random_tracks(rng: np.random.Generator, n: int, config: IdtConfig) -> Tracks:
    tracks = Tracks.empty(config).add(rng.uniform(5, 30, (n, 2)).astype(np.float32))
    tracks.points[:] = rng.uniform(5, 30, tracks.points.shape)
    tracks.disp[:] = rng.normal(0, 1, tracks.disp.shape)
    tracks.age[:] = rng.integers(0, config.track_length, n)
    tracks.desc[:] = rng.random(tracks.desc.shape)
    return tracks


def test_compact_is_select_then_add() -> None:
    rng = np.random.default_rng(3)
    config = IdtConfig()
    tracks = _random_tracks(rng, 17, config)
    for keep_share, new in ((0.6, 5), (1.0, 0), (0.0, 3), (1.0, 4)):
        keep = rng.random(17) < keep_share
        points = rng.uniform(0, 40, (new, 2)).astype(np.float32)
        fast, slow = tracks.compact(keep, points), tracks.select(keep).add(points)
        for name in ("points", "disp", "age", "desc"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))


def test_step_marks_points_that_leave_even_all_of_them() -> None:
    rng = np.random.default_rng(4)
    config = IdtConfig()
    h, w = 37, 41
    grey, flow = _fields(rng, h, w)
    integral = integral_histograms(grey, flow, config)
    tracks = _random_tracks(rng, 9, config)
    before = tracks.age.copy()
    push = np.zeros((h, w, 2), np.float32)
    push[..., 0] = 100  # everything leaves through the right edge
    alive = step(tracks, push, push, integral, config)
    assert alive.shape == (9,) and not alive.any()
    np.testing.assert_array_equal(tracks.age, before)  # rows that left stay untouched
    push[:, :20, 0] = 1.0  # now only the left part stays inside
    alive = step(tracks, push, push, integral, config)
    start = tracks.points[np.arange(9), before]
    np.testing.assert_array_equal(alive, np.rint(start[:, 0]) < 20)
    np.testing.assert_array_equal(tracks.age, before + alive)


def test_median_flow_is_a_3x3_median_of_each_channel() -> None:
    from vcl import motion

    rng = np.random.default_rng(5)
    flow = rng.normal(0, 3, (19, 23, 2)).astype(np.float32)
    padded = np.pad(flow, ((1, 1), (1, 1), (0, 0)), mode="edge")
    windows = [padded[dy : dy + 19, dx : dx + 23] for dy in range(3) for dx in range(3)]
    np.testing.assert_array_equal(motion.median_flow(flow, 3), np.median(windows, axis=0))


@pytest.mark.parametrize("detector", ["orb", "sift"])
def test_batched_matching_equals_knn_match(detector: str) -> None:
    """The vectorised ratio test keeps exactly BFMatcher.knnMatch's matches."""
    import cv2

    from vcl import motion

    rng = np.random.default_rng(6)
    noise = rng.integers(0, 256, (131, 173)).astype(np.float32)
    a = cv2.GaussianBlur(noise, (0, 0), 1.5)
    a = cv2.normalize(a, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    b = np.roll(a, (2, 3), axis=(0, 1))
    fa, fb = (motion.detect_features(g, detector, 500) for g in (a, b))
    norm = cv2.NORM_HAMMING if detector == "orb" else cv2.NORM_L2
    pairs = cv2.BFMatcher(norm).knnMatch(fa[1], fb[1], k=2)
    idx = np.array(
        [(p[0].queryIdx, p[0].trainIdx) for p in pairs if p[0].distance < 0.8 * p[1].distance]
    )
    src, dst = motion.match_features(fa, fb, detector, 0.8, window=None)
    assert len(src) > 20
    np.testing.assert_array_equal(src, fa[0][idx[:, 0]])
    np.testing.assert_array_equal(dst, fb[0][idx[:, 1]])
