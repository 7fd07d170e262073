from __future__ import annotations

import cv2
import numpy as np
import pytest

from vcl.motion import (
    align_to_previous,
    camera_flow,
    camera_homography,
    dense_flow,
    detect_features,
    dis_calc,
    dis_engine,
    dis_fits,
    estimate_homography,
    flow_matches,
    homography_from_matches,
    match_features,
    median_flow,
    residual_flow,
)
from vcl.synth import SynthConfig, camera_matrix, plan_video, render_background


def grey(rgb_float: np.ndarray) -> np.ndarray:
    return cv2.cvtColor((rgb_float * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def true_homography(plan, t: int) -> np.ndarray:
    """prev -> next pixel map of the planted camera: A_{t+1} A_t^{-1}."""
    a0, a1 = (np.vstack([camera_matrix(plan, i), [0, 0, 1]]) for i in (t, t + 1))
    return a1 @ np.linalg.inv(a0)


def corner_error(H: np.ndarray, truth: np.ndarray, w: int, h: int) -> float:
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], float).T
    p, q = H @ corners, truth @ corners
    return float(np.abs(p[:2] / p[2] - q[:2] / q[2]).max())


@pytest.mark.parametrize("camera", ["pan", "zoom"])
@pytest.mark.parametrize("detector", ["orb", "sift"])
def test_camera_homography_recovers_planted_camera(camera: str, detector: str) -> None:
    plan = plan_video(
        SynthConfig(
            width=171, height=97, frames=12, camera=camera, min_objects=0, max_objects=0, seed=3
        ),
        0,
    )
    for t in (2, 7):
        prev, nxt = grey(render_background(plan, t)), grey(render_background(plan, t + 1))
        flow = dense_flow(prev, nxt, "dis")
        H, inliers = camera_homography(prev, nxt, flow, detector=detector)
        truth = true_homography(plan, t)
        assert corner_error(H, truth, 171, 97) < 0.75 and inliers > 0.5
        # with the camera undone, the residual motion of the static scene is ~0
        residual = residual_flow(flow, H)[10:-10, 10:-10]
        assert np.median(np.linalg.norm(residual, axis=-1)) < 0.25
        aligned = align_to_previous(nxt, H)
        inner = (slice(8, -8), slice(8, -8))
        assert (
            np.abs(aligned[inner].astype(int) - prev[inner]).mean()
            < 0.5 * np.abs(nxt[inner].astype(int) - prev[inner]).mean()
        )


def test_homography_from_matches_found_once_is_camera_homography() -> None:
    """Callers that keep the features and flow matches get the very same H and inliers."""
    plan = plan_video(SynthConfig(width=171, height=97, frames=6, camera="pan", seed=3), 0)
    prev, nxt = (grey(render_background(plan, t)) for t in (2, 3))
    flow = dense_flow(prev, nxt, "dis")
    boxes = np.array([[10.0, 10.0, 60.0, 50.0]])
    keypoints = match_features(detect_features(prev), detect_features(nxt), window=None)
    H, inliers = homography_from_matches(keypoints, flow_matches(prev, flow), boxes)
    H0, inliers0 = camera_homography(prev, nxt, flow, boxes)
    assert np.array_equal(H, H0) and inliers == inliers0 and inliers > 0.5


def test_flow_of_a_known_shift() -> None:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (81, 123), dtype=np.uint8), (0, 0), 2.5)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)
    shifted = np.roll(base, (2, 3), axis=(0, 1))  # content moves +3 px in x, +2 px in y
    for method, preset in (("dis", "medium"), ("farneback", "fast")):
        flow = median_flow(dense_flow(base, shifted, method, dis_preset=preset))
        inner = flow[15:-15, 15:-15].reshape(-1, 2)
        np.testing.assert_allclose(np.median(inner, axis=0), [3, 2], atol=0.1)


def test_farneback_defaults_are_the_idt_releases() -> None:
    """DenseTrack calls Farneback with (√2/2, 5, 10, 2, 7, 1.5): a pyramid step of 0.702
    (an older default here) gives other flow on real texture."""
    rng = np.random.default_rng(2)
    base = cv2.GaussianBlur(rng.integers(0, 255, (61, 97), dtype=np.uint8), (0, 0), 1.5)
    shifted = np.roll(base, (1, 2), axis=(0, 1))
    release = cv2.calcOpticalFlowFarneback(
        base, shifted, None, np.sqrt(2) / 2, 5, 10, 2, 7, 1.5, cv2.OPTFLOW_FARNEBACK_GAUSSIAN
    )
    assert np.array_equal(dense_flow(base, shifted, "farneback"), release)


def test_camera_flow_of_a_translation_and_boxes_excluded() -> None:
    H = np.array([[1, 0, 2.5], [0, 1, -1.0], [0, 0, 1]])
    flow = camera_flow(H, (7, 9))
    assert flow.shape == (7, 9, 2)
    np.testing.assert_allclose(flow[..., 0], 2.5)
    np.testing.assert_allclose(flow[..., 1], -1.0)
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (200, 2)).astype(np.float32)
    dst = src + np.float32([2.5, -1.0])
    inside = (src[:, 0] < 40) & (src[:, 1] < 40)
    dst[inside] += 15  # a person walking: its matches must not bend the camera fit
    H_fit, _ = estimate_homography(src, dst, exclude_boxes=np.array([[0, 0, 40, 40]]))
    np.testing.assert_allclose(H_fit, H, atol=1e-3)
    assert estimate_homography(src[:5], dst[:5])[1] == 0.0  # too few: identity, 0 inliers


# (w, h) frames OpenCV 5.0's DIS refuses with an error: "width or height >= 12" (1×1,
# 11×11, 600×3) or, with the presets' finest scale 1 or 2, a pyramid level of 0 rows
# (320×8; 3000×17 at scale 2); and frames it gives NaN flow (181×8) or segfaults on
# (40×8, 40×12), never handed to OpenCV here. With proposals --method motion's finest
# scale 0 the last five are fine.
REFUSED = [(1, 1), (2, 2), (11, 11), (300, 7), (7, 300), (600, 3), (5, 320)]
REFUSED_AT_SCALE = {"ultrafast": [(320, 8), (3000, 17)], "fast": [(320, 8), (3000, 17)],
                    "medium": [(320, 8)], "motion": []}  # fmt: skip
NAN_OR_SEGFAULT = [(181, 8), (40, 8), (40, 12)]


@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium", "motion"])
def test_dis_fits_says_which_frame_sizes_dis_can_take(preset: str) -> None:
    """dis_fits against OpenCV itself: every size it accepts gives finite flow of the
    frame's size; the sizes it refuses that OpenCV refuses with an error do raise (the
    ones that crash the process or give NaN are only checked as refused). Before, the
    stages handed such frames to DIS: exit 70 (or a segfault) on a 1×1, 2×2, 3000×17
    or 17×1200 video."""
    retune = (8, 0) if preset == "motion" else (None, None)  # proposals --method motion
    name = "medium" if preset == "motion" else preset

    def engine():
        return dis_engine(name, retune[0], None, retune[1])

    rng = np.random.default_rng(0)
    fitting = [(8, 12), (12, 8), (9, 600), (600, 9), (16, 16), (24, 320), (17, 11), (3000, 17)]
    fitting += [(int(w), int(h)) for w, h in rng.integers(8, 400, (12, 2))]
    if preset == "motion":
        fitting += [(320, 8), *NAN_OR_SEGFAULT]
    tried = 0
    for w, h in fitting:
        if not dis_fits(w, h, name, *retune):
            continue
        tried += 1
        a = rng.integers(0, 255, (h, w), dtype=np.uint8)
        flow = engine().calc(a, np.roll(a, 1, 1), None)
        assert flow.shape == (h, w, 2) and np.isfinite(flow).all(), (w, h)
    assert tried >= 12
    for w, h in REFUSED + REFUSED_AT_SCALE[preset]:
        assert not dis_fits(w, h, name, *retune), (w, h)
        a = np.zeros((h, w), np.uint8)
        with pytest.raises(cv2.error):
            engine().calc(a, a, None)
    if preset != "motion":
        for w, h in NAN_OR_SEGFAULT:
            assert not dis_fits(w, h, name), (w, h)


def test_dis_calc_refuses_a_frame_dis_cannot_take_with_a_data_error() -> None:
    """The net under the stages' checks: a DataError (exit 65, skipped by --keep-going),
    not OpenCV's internal error, NaN flow or a segfault; dense_flow goes through it."""
    from vcl.errors import DataError

    frame = np.zeros((8, 40), np.uint8)  # segfaults OpenCV 5.0's fast DIS
    with pytest.raises(DataError, match="frames of 40x8 px are too small"):
        dis_calc(dis_engine("fast"), frame, frame)
    with pytest.raises(DataError, match="frames of 40x8 px"):
        dense_flow(frame, frame, "dis", "fast")
    ok = np.random.default_rng(0).integers(0, 255, (48, 64), dtype=np.uint8)
    assert dis_calc(dis_engine("fast"), ok, ok).shape == (48, 64, 2)
