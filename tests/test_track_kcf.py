"""vcl track --method kcf: Wang & Gupta's moving-patch pairs on a planted moving object."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np

from tests.conftest import jsonl
from vcl.boxes import iou
from vcl.io.video import write_video
from vcl.track.kcf import densest_window, patch_side


def checker_video(n: int = 36, w: int = 161, h: int = 121, side: int = 48, seed: int = 0):
    """A checkered square sliding over a static blocky background; its boxes per frame."""
    import cv2

    rng = np.random.default_rng(seed)
    blocks = rng.uniform(60, 180, (h // 8 + 1, w // 8 + 1))
    bg = cv2.resize(blocks, None, fx=8, fy=8, interpolation=cv2.INTER_NEAREST)[:h, :w]
    bg = np.repeat(bg[..., None], 3, 2).astype(np.uint8)
    oy, ox = np.mgrid[0:side, 0:side]
    obj = np.where(((ox // 6) + (oy // 6)) % 2 == 0, 235, 15).astype(np.uint8)
    obj = np.stack([obj, obj // 2, 255 - obj], -1)
    frames, boxes = [], []
    for t in range(n):
        f = bg.copy()
        x, y = 10 + 2 * t, 30 + t // 2
        f[y : y + side, x : x + side] = obj
        frames.append(f)
        boxes.append([x, y, x + side, y + side])
    return frames, np.array(boxes, float)


def test_densest_window_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.uniform(0, 1, (40, 2)) * [37, 23], rng.uniform(12, 19, (15, 2))])
    x, y, n = densest_window(points, (23, 37), 9)
    best = 0
    for yy in range(23 - 9 + 1):
        for xx in range(37 - 9 + 1):
            inside = (
                (points[:, 0].astype(int) >= xx)
                & (points[:, 0].astype(int) < xx + 9)
                & (points[:, 1].astype(int) >= yy)
                & (points[:, 1].astype(int) < yy + 9)
            )
            best = max(best, int(inside.sum()))
    assert n == best
    inside = (
        (points[:, 0].astype(int) >= x)
        & (points[:, 0].astype(int) < x + 9)
        & (points[:, 1].astype(int) >= y)
        & (points[:, 1].astype(int) < y + 9)
    )
    assert inside.sum() == n


def test_patch_side_scales_with_the_frame() -> None:
    assert patch_side(227, 600, 448) == 227
    assert patch_side(227, 300, 224) == 114


def test_kcf_pairs_follow_a_moving_object(tmp_path: Path, invoke) -> None:
    frames, boxes = checker_video()
    write_video(tmp_path / "clip.mp4", frames, fps=10)
    # Box side 48 px on a 121-px shorter side: --box-size 48 * 448 / 121 ≈ 178.
    result = invoke("track", "--method", "kcf", tmp_path / "clip.mp4", "--length", "10",
                    "--box-size", "178", "-o", "-")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    tracks = jsonl(result.stdout)
    assert len(tracks) >= 2
    for t in tracks:
        assert t["method"] == "kcf" and len(t["frames"]) == 11
        assert t["frames"] == list(range(t["frames"][0], t["frames"][0] + 11))
        query, tracked = np.array(t["boxes"][0]), np.array(t["boxes"][-1])
        assert iou(query[None], boxes[t["frames"][0]][None])[0, 0] > 0.6
        assert iou(tracked[None], boxes[t["frames"][-1]][None])[0, 0] > 0.5
    starts = [t["frames"][0] for t in tracks]
    assert all(b - a >= 10 for a, b in pairwise(starts))  # no overlap


def test_kcf_static_video_gives_no_pairs(tmp_path: Path, invoke) -> None:
    frames, _ = checker_video(n=8)
    write_video(tmp_path / "still.mp4", [frames[0]] * 8, fps=10)
    result = invoke("track", "--method", "kcf", tmp_path / "still.mp4", "--length", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    warning = [x for x in result.stderr.splitlines() if x.startswith("warning: ")]
    assert len(warning) == 1 and "no kcf track" in warning[0] and "--min-moving 0.25" in warning[0]


def test_kcf_still_frames_seed_no_patch_with_the_fraction_test_off(tmp_path: Path, invoke) -> None:
    frames, _ = checker_video(n=8)
    write_video(tmp_path / "still.mp4", [frames[0]] * 8, fps=10)
    result = invoke("track", "--method", "kcf", tmp_path / "still.mp4", "--length", "3",
                    "--min-moving", "0", "--max-moving", "1", "-o", "-")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # not a score-0 box at the top-left corner
    warning = [x for x in result.stderr.splitlines() if x.startswith("warning: ")]
    assert len(warning) == 1 and "no kcf track" in warning[0] and "some points move" in warning[0]


def panning_greys(n: int = 6) -> list[np.ndarray]:
    """Grey frames of a synth video with a panning camera and moving objects."""
    import cv2

    from vcl.synth import SynthConfig, plan_video, render_frame

    plan = plan_video(SynthConfig(width=200, height=150, frames=n, camera="pan", seed=2), 0)
    return [cv2.cvtColor(render_frame(plan, t)[0], cv2.COLOR_RGB2GRAY) for t in range(n)]


def test_moving_points_carrying_features_equal_the_separate_calls() -> None:
    """Each frame detected once (flow matches shared, ORB features carried to the next
    pair) gives bit for bit the points and moves of the public per-pair functions."""
    from vcl.motion import camera_homography, dense_flow, flow_matches
    from vcl.track.kcf import moving_points

    features = None
    moved = 0
    for prev, nxt in pairwise(panning_greys()):
        points, moving, features = moving_points(prev, nxt, 0.5, features)
        flow = dense_flow(prev, nxt, "dis", "fast")
        src, dst = flow_matches(prev, flow)
        H, _ = camera_homography(prev, nxt, flow)
        camera = np.concatenate([src, np.ones((len(src), 1), np.float32)], axis=1) @ H.T
        residual = np.linalg.norm(dst - camera[:, :2] / camera[:, 2:3], axis=1)
        assert np.array_equal(points, src) and np.array_equal(moving, residual > 0.5)
        moved += int(moving.sum())
    assert moved > 0


def test_kcf_seeding_detects_each_frame_once(tmp_path: Path, monkeypatch) -> None:
    """While no patch is tracked every frame pair is searched: corners and ORB features
    of a frame used to be computed twice per pair and ORB again as the next pair's prev."""
    import vcl.motion as motion
    from vcl.track.kcf import KcfParams, track_video

    calls = {"flow_matches": 0, "detect_features": 0}
    for name in calls:
        original = getattr(motion, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(motion, name, counted)
    frames, _ = checker_video(n=8)
    write_video(tmp_path / "still.mp4", [frames[0]] * 8, fps=10)
    assert track_video(tmp_path / "still.mp4", KcfParams(length=3)) == []
    assert calls == {"flow_matches": 7, "detect_features": 8}


def test_kcf_skips_a_video_too_small_for_flow_with_a_warning(tmp_path: Path, invoke) -> None:
    """3000×17 frames are 600×3 at --max-side 600: DIS cannot take them (the old guard,
    a longer side under 12 px, let them through: exit 70). Such a video gives no pair
    and a warning naming it and its size; the other videos are tracked."""
    frames, _ = checker_video()
    write_video(tmp_path / "clip.mp4", frames, fps=10)
    wide = [np.full((17, 3000, 3), 40 * (t % 5), np.uint8) for t in range(6)]
    write_video(tmp_path / "wide.mp4", wide, fps=10)
    result = invoke("track", "--method", "kcf", tmp_path / "wide.mp4", tmp_path / "clip.mp4",
                    "--length", "10", "--box-size", "178", "-o", "-")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    warnings = [x for x in result.stderr.splitlines() if x.startswith("warning: ")]
    assert warnings == [
        f"warning: {tmp_path / 'wide.mp4'}: frames of 3000x17 px (600x3 at the flow's scale) "
        "are too small or too elongated for DIS optical flow: no kcf tracks"
    ]
    tracks = jsonl(result.stdout)
    assert tracks and {t["video_id"] for t in tracks} == {"clip"}
