"""vcl idt: descriptors against hand-computed histograms, planted motion, invariants."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from vcl.idt import BLOCKS, HEADER
from vcl.idt.config import IdtConfig
from vcl.idt.descriptors import (
    channel_layout,
    frame_descriptors,
    integral_histograms,
    orientation_votes,
)
from vcl.idt.pipeline import extract
from vcl.idt.sampling import dense_sample, pyramid_sizes
from vcl.io.video import write_frame_folder

# ----------------------------------------------------------------- hand-built fields


def _votes(dx, dy, bins, zero_bin=False):
    out = np.zeros((bins, *np.shape(dx)), np.float32)
    orientation_votes(
        np.asarray(dx, np.float32), np.asarray(dy, np.float32), bins, out, 0, zero_bin, 0.4
    )
    return out


def test_orientation_votes_split_between_neighbouring_bins() -> None:
    # 8 bins of 45°: 22.5° is half bin 0 / half bin 1; 300° is 1/3 bin 6, 2/3 bin 7;
    # 0° all in bin 0; 90° all in bin 2 (y points down, as in image coordinates).
    angles = np.radians([22.5, 300.0, 0.0, 90.0])
    mags = np.array([2.0, 3.0, 5.0, 1.0])
    dx, dy = (mags * np.cos(angles))[None], (mags * np.sin(angles))[None]
    v = _votes(dx, dy, 8)[:, 0]  # (8 bins, 4 pixels)
    expected = np.zeros((8, 4))
    expected[[0, 1], 0] = 1.0
    expected[6, 1], expected[7, 1] = 1.0, 2.0
    expected[0, 2] = 5.0
    expected[2, 3] = 1.0
    np.testing.assert_allclose(v, expected, atol=0.02)  # fastAtan2 is good to ~0.3°


def test_hof_zero_bin_counts_slow_pixels_once() -> None:
    # |flow| <= 0.4 -> a vote of 1 in the 9th bin, whatever its length; else 8 bins.
    dx = np.array([[0.3, 0.0, 2.0]])
    dy = np.array([[0.2, 0.0, 0.0]])
    v = _votes(dx, dy, 9, zero_bin=True)[:, 0]
    np.testing.assert_allclose(v[:, 0], [0] * 8 + [1])
    np.testing.assert_allclose(v[:, 1], [0] * 8 + [1])
    np.testing.assert_allclose(v[:, 2], [2] + [0] * 8, atol=1e-6)


def _expected_per_frame(cells: list[np.ndarray], eps: float = 0.05) -> np.ndarray:
    """The release's per-frame vector: cell histograms (x-major) + eps, L1, sqrt."""
    vec = np.concatenate(cells) + eps
    return np.sqrt(vec / vec.sum())


def test_hog_hof_mbh_of_hand_built_fields_equal_hand_computed_histograms() -> None:
    h, w = 61, 77  # odd sizes
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # a ramp image brighter to the right: centred differences give dx = 2 * 3 = 6, dy = 0
    grey = (3 * xx).astype(np.uint8)
    # flow: u = 0.5 x (so du/dx = 1: MBHx all in bin 0); v = 0.25 y (dv/dy = 0.5: MBHy
    # at 90°, bin 2). HOF: left half moves right at 2 px (bin 0), right half is still.
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = 0.5 * xx
    flow[..., 1] = 0.25 * yy
    config = IdtConfig()
    integral = integral_histograms(grey, flow, config)
    point = np.array([[38.0, 30.0]], np.float32)  # patch [22, 54) x [14, 46): interior
    got = frame_descriptors(integral, point, config)
    # hand: every pixel of a 16×16 cell votes the same
    n = 16 * 16
    hog_cell = np.zeros(8)
    hog_cell[0] = 6 * n
    np.testing.assert_allclose(got["hog"][0], _expected_per_frame([hog_cell] * 4), rtol=1e-4)
    mbhx_cell = np.zeros(8)
    mbhx_cell[0] = 1.0 * n
    np.testing.assert_allclose(got["mbhx"][0], _expected_per_frame([mbhx_cell] * 4), rtol=1e-4)
    mbhy_cell = np.zeros(8)
    mbhy_cell[2] = 0.5 * n
    np.testing.assert_allclose(got["mbhy"][0], _expected_per_frame([mbhy_cell] * 4), rtol=1e-4)
    # HOF of the flow itself, per pixel: angle atan2(0.25 y, 0.5 x), length > 0.4 here
    u, v = flow[14:46, 22:54, 0], flow[14:46, 22:54, 1]
    ang = np.degrees(np.arctan2(v, u)) % 360
    mag = np.hypot(u, v)
    fbin = ang * 8 / 360
    b0 = np.floor(fbin).astype(int)
    cells = []
    for cx in range(2):  # x-major, as the release prints cells
        for cy in range(2):
            sl = (slice(cy * 16, cy * 16 + 16), slice(cx * 16, cx * 16 + 16))
            hist = np.zeros(9)
            np.add.at(hist, b0[sl], (mag * (1 - (fbin - b0)))[sl])
            np.add.at(hist, (b0[sl] + 1) % 8, (mag * (fbin - b0))[sl])
            cells.append(hist)
    np.testing.assert_allclose(got["hof"][0], _expected_per_frame(cells), rtol=2e-3)


def test_frame_descriptors_match_a_plain_loop_at_random_points() -> None:
    rng = np.random.default_rng(3)
    h, w = 53, 71
    grey = rng.integers(0, 256, (h, w)).astype(np.uint8)
    flow = rng.normal(0, 2, (h, w, 2)).astype(np.float32)
    config = IdtConfig()
    integral = integral_histograms(grey, flow, config)
    points = rng.uniform([0, 0], [w, h], (40, 2)).astype(np.float32)
    fast = frame_descriptors(integral, points, config)
    # the reference sums votes directly (no integral image), one point at a time
    votes = np.diff(np.diff(integral, axis=1), axis=2)  # back to per-pixel votes
    for i, (x, y) in enumerate(points):
        x0 = min(max(int(np.rint(x)) - 16, 0), w - 32)
        y0 = min(max(int(np.rint(y)) - 16, 0), h - 32)
        for kind, (start, bins) in channel_layout(config).items():
            cells = [
                votes[start : start + bins, y0 + cy : y0 + cy + 16, x0 + cx : x0 + cx + 16].sum(
                    axis=(1, 2)
                )
                for cx in (0, 16)
                for cy in (0, 16)
            ]
            np.testing.assert_allclose(fast[kind][i], _expected_per_frame(cells), rtol=1e-3)


def test_empty_histograms_with_zero_epsilon_are_zeros_not_nan() -> None:
    # a flat frame has no gradient (HOG) and a constant flow none either (MBH): with
    # epsilon 0 their histograms sum to 0, which the release leaves at zeros
    import warnings

    config = IdtConfig(epsilon=0.0)
    grey = np.full((40, 48), 90, np.uint8)
    flow = np.broadcast_to(np.float32([1.5, -0.5]), (40, 48, 2)).copy()
    points = np.float32([[20, 20], [5, 30]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 RuntimeWarning either
        got = frame_descriptors(integral_histograms(grey, flow, config), points, config)
    for kind in ("hog", "mbhx", "mbhy"):
        np.testing.assert_array_equal(got[kind], 0)
    np.testing.assert_allclose(np.square(got["hof"]).sum(axis=1), 1, rtol=1e-5)


# ----------------------------------------------------------------------- sampling


# InitPry by hand, in float32 as the release computes it: stride = float(sqrt 2) =
# 1.41421354; the shorter side is divided by it while >= 32 (256 -> ... -> 32.0 exactly
# after six divisions, so a 7th scale; float64 reaches 31.99999999999999 and stops);
# factor i = factor i-1 × stride (1.99999988 at i = 2, 7.99999905 at i = 6); sizes are
# cvRound(side / factor) (65 / 1.99999988 = 32.500004 -> 33).
PYRAMIDS = {
    (341, 256): [(341, 256), (241, 181), (171, 128), (121, 91), (85, 64), (60, 45), (43, 32)],
    (320, 240): [(320, 240), (226, 170), (160, 120), (113, 85), (80, 60), (57, 42)],
    (65, 49): [(65, 49), (46, 35)],
    (97, 65): [(97, 65), (69, 46), (49, 33)],
    (64, 64): [(64, 64), (45, 45), (32, 32)],
    (128, 128): [(128, 128), (91, 91), (64, 64), (45, 45), (32, 32)],
    (200, 33): [(200, 33)],
    (31, 40): [(31, 40)],  # smaller than a patch: still one scale
}


@pytest.mark.parametrize("frame", list(PYRAMIDS))
def test_pyramid_sizes_are_the_releases_float32_ones(frame: tuple[int, int]) -> None:
    factors, sizes = pyramid_sizes(*frame, 8, math.sqrt(2), 32)
    assert sizes == PYRAMIDS[frame]
    assert factors.dtype == np.float32 and len(factors) == len(sizes)
    expected = np.float32(math.sqrt(2)) ** np.arange(len(sizes), dtype=np.float32)
    np.testing.assert_allclose(factors, expected, rtol=2e-7)


def test_pyramid_factors_are_float32_products() -> None:
    factors, sizes = pyramid_sizes(768, 576, 8, math.sqrt(2), 32)
    assert len(sizes) == 8 and sizes[-1] == (68, 51)  # capped at --scales
    assert factors[2] == np.float32(1.99999988) and factors[6] == np.float32(7.99999905)


def test_dense_sample_skips_flat_areas_and_occupied_cells() -> None:
    rng = np.random.default_rng(0)
    grey = np.full((43, 57), 128, np.uint8)
    grey[:, 30:] = rng.integers(0, 256, (43, 27))  # texture on the right only
    pts = dense_sample(grey, np.zeros((0, 2)), step=5, quality=0.001)
    assert len(pts) and (pts[:, 0] >= 27).all()  # flat left part gets nothing
    assert set(np.unique(pts[:, 0] % 5)) == {2} and set(np.unique(pts[:, 1] % 5)) == {2}
    again = dense_sample(grey, pts[:3] + 0.4, step=5, quality=0.001)
    assert len(again) == len(pts) - 3  # the three occupied cells are skipped


# ---------------------------------------------------------------- planted motion


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    import cv2

    noise = rng.integers(0, 256, (h, w)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 1.2)


def _moving_object_video(folder: Path, frames: int = 22, speed: float = 2.0) -> dict:
    """A textured square moving right at ``speed`` px/frame over a still, textured scene."""
    rng = np.random.default_rng(5)
    h, w, side = 97, 131, 34
    background = 0.5 * _texture(rng, h, w) + 64
    patch = 1.6 * (_texture(rng, side, side) - 128) + 128
    out, boxes = [], []
    for t in range(frames):
        frame = background.copy()
        x0 = 10 + speed * t  # integer speed: exact shift, no resampling
        frame[30 : 30 + side, int(x0) : int(x0) + side] = patch
        out.append(np.repeat(np.clip(frame, 0, 255).astype(np.uint8)[..., None], 3, axis=2))
        boxes.append((x0, 30, x0 + side, 30 + side))
    write_frame_folder(folder, out)
    return {"boxes": boxes, "speed": speed}


def test_moving_object_trajectories_shape_and_hof(tmp_path: Path) -> None:
    video = _moving_object_video(tmp_path / "obj")
    res = extract(tmp_path / "obj", IdtConfig(), max_side=None, humans="none")
    cols = res.columns
    assert res.rows >= 20
    # trajectories concentrate on the object: their mean lies on its path
    first, last = video["boxes"][0], video["boxes"][-1]
    on_path = (
        (cols["mean_x"] > first[0] - 4)
        & (cols["mean_x"] < last[2] + 4)
        & (cols["mean_y"] > first[1] - 4)
        & (cols["mean_y"] < first[3] + 4)
    )
    assert on_path.mean() > 0.9
    traj = cols["traj"][on_path].reshape(-1, 15, 2)
    # each step is (speed, 0) / (15 speed): x = 1/15, y = 0
    np.testing.assert_allclose(np.median(traj[..., 0], axis=0), 1 / 15, atol=0.01)
    np.testing.assert_allclose(np.median(traj[..., 1], axis=0), 0, atol=0.01)
    assert np.median(cols["length"][on_path]) == pytest.approx(15 * video["speed"], rel=0.1)
    hof = cols["hof"][on_path].reshape(-1, 3, 4, 9).mean(axis=(0, 1, 2))
    assert np.argmax(hof[:8]) == 0  # bin 0 is rightward motion


def _slow_object_video(folder: Path, speed: float = 0.8, frames: int = 24) -> None:
    """A textured square gliding right at a sub-pixel ``speed`` over a still scene."""
    import cv2

    rng = np.random.default_rng(3)
    h, w, side = 120, 160, 40
    background = _texture(rng, h, w)
    patch = _texture(rng, side, side)
    ones = np.ones((side, side), np.float32)
    out = []
    for t in range(frames):
        shift = np.float32([[1, 0, 40 + speed * t], [0, 1, 40]])
        inside = cv2.warpAffine(ones, shift, (w, h))
        frame = background * (1 - inside) + cv2.warpAffine(patch, shift, (w, h)) * inside
        out.append(np.repeat(np.clip(frame, 0, 255).astype(np.uint8)[..., None], 3, axis=2))
    write_frame_folder(folder, out)


def test_slow_motion_is_kept_without_camera_compensation(tmp_path: Path) -> None:
    # 0.8 px a frame: every step is below min_camera_disp (1 px); the camera-only rule
    # belongs to compensation (DenseTrackStab's IsCameraMotion) and must not drop these
    _slow_object_video(tmp_path / "slow")
    plain = extract(tmp_path / "slow", IdtConfig(compensate=False), None, humans="none")
    no_rule = IdtConfig(compensate=False, min_camera_disp=0.0)
    everything = extract(tmp_path / "slow", no_rule, None, humans="none")
    assert everything.rows > 50
    assert plain.rows == everything.rows


def _pan_video(folder: Path, frames: int = 24) -> None:
    from vcl.synth import SynthConfig, plan_video, render_frame

    config = SynthConfig(
        videos=1, width=123, height=95, frames=frames, camera="pan", min_objects=0, max_objects=0
    )
    plan = plan_video(config, 0)
    write_frame_folder(folder, [render_frame(plan, t)[0] for t in range(frames)])


def test_camera_pan_is_compensated(tmp_path: Path) -> None:
    _pan_video(tmp_path / "pan")
    plain = extract(tmp_path / "pan", IdtConfig(compensate=False), None, humans="none")
    comp = extract(tmp_path / "pan", IdtConfig(), None, humans="none")
    assert plain.rows > 100  # without compensation the pan leaves many trajectories
    assert comp.candidates > 100  # with it, as many are tracked...
    assert comp.rows <= 0.05 * plain.rows  # ...and (almost) all removed as camera motion
    # what survives, and the compensated motion fields, carry (almost) no motion:
    if comp.rows:
        hof = comp.columns["hof"].reshape(-1, 3, 4, 9)
        zero_share = (hof[..., 8] ** 2).sum() / (hof**2).sum()
        assert zero_share > 0.5


def test_compensated_flow_energy_of_a_pan_is_near_zero(tmp_path: Path) -> None:
    """HOF/MBH energy of the compensated fields, measured the way descriptors see them."""
    import cv2

    from vcl import motion
    from vcl.idt.pipeline import CameraModel

    _pan_video(tmp_path / "pan", frames=6)
    frames = [
        cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((tmp_path / "pan").iterdir())
    ]
    config = IdtConfig()
    camera = CameraModel(config)
    camera.start(frames[0])
    raw, comp = [], []
    for prev, grey in itertools.pairwise(frames):
        flow = motion.dense_flow(prev, grey, "farneback")
        H = camera.fit(prev, grey, flow, None, None)
        warped = motion.warp_into_previous(grey, prev, H)
        compensated = motion.dense_flow(prev, warped, "farneback")
        inner = (slice(10, -10), slice(10, -10))
        raw.append(np.median(np.hypot(*flow[inner].reshape(-1, 2).T)))
        comp.append(np.median(np.hypot(*compensated[inner].reshape(-1, 2).T)))
    assert np.median(raw) > 1.0
    # what is left is below HOF's 0.4 px zero-bin threshold (Farneback's own bias on
    # this blurry texture is ~0.15 px), so HOF votes go to the zero-motion bin
    assert np.median(comp) < 0.4 and np.median(comp) < 0.25 * np.median(raw)


def _fake_flows(monkeypatch: pytest.MonkeyPatch, h: int, w: int) -> None:
    """Every flow a constant 2 px step right; the compensated one (each second call)
    also has isolated outlier vectors on a 7 px grid, which a 3×3 or 5×5 median removes."""
    from vcl import motion
    from vcl.idt.pipeline import CameraModel

    calls = iter(range(10**6))

    def dense_flow(prev, nxt, *args, **kwargs):
        flow = np.zeros((h, w, 2), np.float32)
        flow[..., 0] = 2
        if next(calls) % 2:
            flow[3::7, 3::7] = (-6, 5)
        return flow

    monkeypatch.setattr(motion, "dense_flow", dense_flow)
    monkeypatch.setattr(CameraModel, "fit", lambda self, *args: np.eye(3))


@pytest.mark.parametrize("median", [3, 5])
def test_the_compensated_flow_is_median_filtered(tmp_path, monkeypatch, median: int) -> None:
    # the release median-filters both flows: outliers of the compensated flow reach
    # neither HOF/MBH nor the shape, so every trajectory gets the constant flow's rows
    assert IdtConfig().median_size == 5  # the release's MedianBlurFlow(flow, 5)
    h, w = 72, 120
    frames = [np.repeat(_texture(np.random.default_rng(1), h, w).astype(np.uint8)[..., None], 3, 2)]
    write_frame_folder(tmp_path / "still", frames * 17)
    _fake_flows(monkeypatch, h, w)
    config = IdtConfig(scales=1, median_size=median)
    cols = extract(tmp_path / "still", config, None, humans="none").columns
    assert len(cols["frame"]) > 20
    for name in ("traj", "hof", "mbhx", "mbhy"):
        np.testing.assert_array_equal(np.ptp(cols[name], axis=0), 0, err_msg=name)
    assert (cols["hof"].reshape(-1, 12, 9).argmax(axis=2) == 0).all()  # rightward
    _fake_flows(monkeypatch, h, w)  # unfiltered, the outliers do show
    raw = extract(tmp_path / "still", IdtConfig(scales=1, median_size=1), None, humans="none")
    assert np.ptp(raw.columns["hof"], axis=0).max() > 0.01


def test_init_gap_resamples_every_gap_frames(tmp_path, monkeypatch) -> None:
    # a deliberate deviation (IdtConfig's docstring): the release resets its counter
    # every frame and never re-samples with a gap above 1; here new points start on
    # frames 3, 6, ... so trajectories (15 steps) end on frames 15, 18, 21 only
    from vcl import motion

    h, w = 72, 120
    frames = [np.repeat(_texture(np.random.default_rng(1), h, w).astype(np.uint8)[..., None], 3, 2)]
    write_frame_folder(tmp_path / "still", frames * 23)
    step = np.broadcast_to(np.float32([2.0, 1.0]), (h, w, 2))  # cells empty every frame
    monkeypatch.setattr(motion, "dense_flow", lambda *args, **kwargs: step.copy())
    config = IdtConfig(scales=1, init_gap=3, compensate=False)
    cols = extract(tmp_path / "still", config, None, humans="none").columns
    assert set(np.unique(cols["frame"]).tolist()) == {15, 18, 21}


# ------------------------------------------------------------------- invariants


@pytest.fixture(scope="module")
def object_result(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("idt") / "obj"
    _moving_object_video(folder, frames=20)
    return folder, extract(folder, IdtConfig(), max_side=None, humans="none")


def test_dimensions_and_normalisation_invariants(object_result) -> None:
    _, res = object_result
    cols = res.columns
    assert set(cols) == {*HEADER, *BLOCKS}
    for name, dim in BLOCKS.items():
        assert cols[name].shape == (res.rows, dim) and cols[name].dtype == np.float32
    assert cols["frame"].dtype == np.int32
    # the shape descriptor's 15 step lengths sum to 1
    steps = np.hypot(*cols["traj"].reshape(-1, 15, 2).transpose(2, 0, 1))
    np.testing.assert_allclose(steps.sum(axis=1), 1, rtol=1e-4)
    # a time cell averages 5 unit-L2 positive vectors: its L2 norm is in [1/sqrt(5), 1]
    for name, bins in (("hog", 8), ("hof", 9), ("mbhx", 8), ("mbhy", 8)):
        cells = cols[name].reshape(-1, 3, 4 * bins)
        norms = np.linalg.norm(cells, axis=2)
        assert (norms <= 1 + 1e-5).all() and (norms >= 1 / math.sqrt(5) - 1e-5).all()
        assert (cells > 0).all()  # +epsilon keeps every bin positive
    for name in ("x_pos", "y_pos", "t_pos"):
        assert (cols[name] >= 0).all() and (cols[name] <= 0.999).all()
    assert (cols["frame"] >= 15).all()
    assert (np.maximum(cols["var_x"], cols["var_y"]) >= math.sqrt(3)).all()
    assert set(np.round(np.log(cols["scale"]) / np.log(math.sqrt(2))).astype(int)) <= set(range(8))


def test_deterministic(object_result) -> None:
    folder, first = object_result
    again = extract(folder, IdtConfig(), max_side=None, humans="none")
    for name in first.columns:
        np.testing.assert_array_equal(first.columns[name], again.columns[name])
