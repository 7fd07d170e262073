"""Synthetic videos: determinism, and ground truth that agrees with the rendered pixels."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from vcl.io.manifest import TrackRecord, VideoRecord
from vcl.io.video import VideoReader, list_frame_files
from vcl.synth import (
    MOTIONS,
    SynthConfig,
    camera_matrix,
    class_names,
    generate_video,
    object_box,
    object_mask,
    plan_video,
    render_background,
    render_frame,
    video_split,
)

SMALL = SynthConfig(
    videos=4, width=64, height=48, frames=14, classes=8, motions=5, max_objects=3, distractors=2
)


def _index_of(track: TrackRecord, plan) -> int:
    """Object index in plan.objects (moving objects first, then distractors) of a track id."""
    kind, number = track.id.rsplit("_", 1)[1][0], int(track.id.rsplit("_", 1)[1][1:])
    moving = sum(o.kind == "object" for o in plan.objects)
    return number if kind == "o" else moving + number


def _mask_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float64)


@pytest.mark.parametrize(
    "change",
    [
        {"width": 15},
        {"height": 8},
        {"frames": 1},
        {"classes": 0},
        {"classes": 9},
        {"motions": 0},
        {"motions": 6},
        {"min_objects": 4, "max_objects": 3},
        {"min_objects": -1},
        {"camera": "dolly"},
        {"test_fraction": 1.0},
        {"test_fraction": -0.1},
        {"codec": "h264"},
        {"fps": 0.0},
        {"videos": 0},
        {"distractors": -1},
        {"seed": -1},
    ],
)
def test_validate_rejects_bad_configs(change):
    with pytest.raises(ValueError):
        dataclasses.replace(SynthConfig(), **change).validate()


def test_validate_accepts_defaults_and_edges():
    SynthConfig().validate()
    SynthConfig(
        width=16,
        height=16,
        frames=2,
        classes=1,
        motions=1,
        min_objects=0,
        max_objects=0,
        camera="mixed",
        test_fraction=0.0,
    ).validate()


def test_class_names_distinct():
    names = class_names(8)
    assert len(set(names)) == 8 and class_names(3) == names[:3]
    with pytest.raises(ValueError):
        class_names(9)


def test_deterministic_and_seed_dependent():
    a, b = plan_video(SMALL, 1), plan_video(SMALL, 1)
    other = plan_video(dataclasses.replace(SMALL, seed=1), 1)
    for t in (0, 7, 13):
        (rgb_a, lab_a), (rgb_b, lab_b) = render_frame(a, t), render_frame(b, t)
        np.testing.assert_array_equal(rgb_a, rgb_b)
        np.testing.assert_array_equal(lab_a, lab_b)
    assert not np.array_equal(render_frame(a, 0)[0], render_frame(other, 0)[0])


def test_plan_does_not_depend_on_video_count():
    few = plan_video(dataclasses.replace(SMALL, videos=2), 5)
    many = plan_video(dataclasses.replace(SMALL, videos=60), 5)
    assert (few.motion, few.camera, len(few.objects)) == (
        many.motion,
        many.camera,
        len(many.objects),
    )
    for p, q in zip(few.objects, many.objects, strict=True):
        np.testing.assert_array_equal(p.pos, q.pos)
        assert p.label == q.label
    np.testing.assert_array_equal(render_frame(few, 9)[0], render_frame(many, 9)[0])


def test_generate_video_records_repeat(tmp_path):
    first = generate_video(SMALL, 2, tmp_path / "a")
    second = generate_video(SMALL, 2, tmp_path / "b")
    assert first[0].to_json() == second[0].to_json()
    assert [t.to_json() for t in first[1]] == [t.to_json() for t in second[1]]


@pytest.mark.parametrize("camera", ["static", "pan", "zoom"])
def test_ground_truth_matches_pixels(tmp_path, camera):
    config = dataclasses.replace(SMALL, camera=camera, independent=True)
    checked = 0
    for index in range(3):
        video, tracks = generate_video(config, index, tmp_path)
        video.validate()
        plan = plan_video(config, index)
        assert video.extra["camera"] == camera and video.label == plan.motion
        labels = [render_frame(plan, t)[1] for t in range(plan.frames)]
        by_index = {_index_of(track, plan): track for track in tracks}
        for k in range(len(plan.objects)):
            masks = [object_mask(plan, k, t) for t in range(plan.frames)]
            shown = [t for t, m in enumerate(masks) if m.any()]
            track = by_index.get(k)
            assert (track.frames if track else []) == shown
            if track is None:
                continue
            track.validate()
            assert track.extra["kind"] == plan.objects[k].kind
            assert track.label == plan.objects[k].label
            for t, box, vis in zip(track.frames, track.boxes, track.extra["visible"], strict=True):
                mask, label = masks[t], labels[t]
                np.testing.assert_allclose(_mask_box(mask), box, atol=1.01)
                np.testing.assert_allclose(object_box(plan, k, t), box, atol=0.006)
                own = label == k
                assert not (own & ~mask).any(), "label map outside the object's silhouette"
                if own.any():  # every labelled pixel [x, x+1) lies inside the box (1 px slack)
                    lx0, ly0, lx1, ly1 = _mask_box(own)
                    assert lx0 >= box[0] - 1 and ly0 >= box[1] - 1
                    assert lx1 <= box[2] + 1 and ly1 <= box[3] + 1
                assert abs(own.sum() / mask.sum() - vis) <= 0.01
                checked += 1
        for t in range(plan.frames):  # nothing on screen without a track
            assert set(np.unique(labels[t])) <= {-1, *by_index}
    assert checked > 50


def test_render_frame_types():
    plan = plan_video(dataclasses.replace(SMALL, width=97, height=61), 0)
    rgb, label = render_frame(plan, 3)
    assert rgb.shape == (61, 97, 3) and rgb.dtype == np.uint8
    assert label.shape == (61, 97) and label.dtype == np.int16
    assert label.min() >= -1 and label.max() < len(plan.objects) and (label >= 0).any()


def _phase_shifts(plan) -> list[tuple[np.ndarray, np.ndarray]]:
    """(measured, expected) background shift between consecutive frames."""
    window = cv2.createHanningWindow((plan.width, plan.height), cv2.CV_64F)
    out = []
    for t in range(plan.frames - 1):
        a, b = (_gray(render_frame(plan, s)[0]) for s in (t, t + 1))
        (dx, dy), _ = cv2.phaseCorrelate(a, b, window)
        expected = camera_matrix(plan, t + 1)[:, 2] - camera_matrix(plan, t)[:, 2]
        out.append((np.array([dx, dy]), expected))
    return out


def test_camera_pan_moves_background_as_planned():
    config = SynthConfig(width=97, height=61, frames=8, min_objects=0, max_objects=0, camera="pan")
    for index in range(2):
        plan = plan_video(config, index)
        shifts = _phase_shifts(plan)
        assert max(np.abs(e).max() for _, e in shifts) > 1.0
        for measured, expected in shifts:
            np.testing.assert_allclose(measured, expected, atol=0.5)


def test_static_camera_background_still():
    plan = plan_video(SynthConfig(width=97, height=61, frames=6, min_objects=0, max_objects=0), 0)
    for measured, expected in _phase_shifts(plan):
        assert np.abs(expected).max() == 0 and np.abs(measured).max() < 0.1
    np.testing.assert_array_equal(render_background(plan, 0), render_background(plan, 5))


@pytest.mark.parametrize("camera", ["pan", "zoom"])
def test_distractors_move_only_with_camera(camera):
    config = SynthConfig(
        width=97, height=61, frames=10, min_objects=0, max_objects=0, distractors=3, camera=camera
    )
    plan = plan_video(config, 0)
    for k in range(3):
        b0, b9 = np.array(object_box(plan, k, 0)), np.array(object_box(plan, k, 9))
        m0, m9 = camera_matrix(plan, 0), camera_matrix(plan, 9)
        # the world box, seen through each camera (distractors are inside every view)
        world = (b0.reshape(2, 2) - m0[:, 2]) / m0[0, 0]
        np.testing.assert_allclose((world * m9[0, 0] + m9[:, 2]).ravel(), b9, atol=1e-6)
        assert not np.allclose(b0, b9)


def test_tied_classes_follow_motion_and_independent_do_not():
    tied = SynthConfig(videos=200, classes=8, motions=4)
    free = dataclasses.replace(tied, independent=True)
    names = class_names(8)
    motions_of: dict[str, set[str]] = defaultdict(set)
    free_motions_of: dict[str, set[str]] = defaultdict(set)
    video_motions = Counter()
    for index in range(80):
        plan = plan_video(tied, index)
        video_motions[plan.motion] += 1
        for obj in plan.objects:
            assert obj.motion == plan.motion
            motions_of[obj.label].add(plan.motion)
        for obj in plan_video(free, index).objects:
            free_motions_of[obj.label].add(obj.motion)
    assert video_motions == Counter({m: 20 for m in MOTIONS[:4]})  # balanced per block
    for c, name in enumerate(names):
        assert motions_of[name] == {MOTIONS[c % 4]}
        assert len(free_motions_of[name]) >= 2


def test_fewer_classes_than_motions():
    config = SynthConfig(classes=2, motions=5)
    for index in range(10):
        plan = plan_video(config, index)
        expected = class_names(2)[MOTIONS.index(plan.motion) % 2]
        assert {o.label for o in plan.objects} == {expected}


def test_motion_patterns():
    config = SynthConfig(
        width=97, height=61, frames=16, classes=5, motions=5, min_objects=3, max_objects=3
    )
    for index in range(10):
        plan = plan_video(config, index)
        for k, obj in enumerate(plan.objects):
            ratio = obj.scale.max() / obj.scale.min()
            assert ratio > 1.4 if obj.motion == "pulsating" else ratio < 1.25
            if obj.motion != "linear":  # only linear objects may enter or leave
                assert all(object_mask(plan, k, t).any() for t in range(plan.frames))
            if obj.motion == "bouncing":  # never clipped by the frame
                for t in range(plan.frames):
                    x0, y0, x1, y1 = object_box(plan, k, t)
                    assert x0 > 0 and y0 > 0 and x1 < 97 and y1 < 61


def test_splits():
    config = SynthConfig(videos=40)
    splits = [video_split(config, i) for i in range(40)]
    assert 6 <= splits.count("test") <= 14
    for n in (2, 3, 5):
        few = [video_split(dataclasses.replace(config, videos=n), i) for i in range(n)]
        assert set(few) == {"train", "test"}
    assert {video_split(dataclasses.replace(config, test_fraction=0.0), i) for i in range(40)} == {
        "train"
    }


@pytest.mark.parametrize("codec, suffix", [("mp4v", ".mp4"), ("mjpg", ".avi")])
def test_generate_video_writes_readable_files(tmp_path, codec, suffix):
    config = SynthConfig(width=97, height=61, frames=12, codec=codec, frame_folders=True)
    video, tracks = generate_video(config, 3, tmp_path)
    assert video.path == f"videos/v0003{suffix}" and video.id == "v0003"
    assert VideoRecord.from_json(video.to_json()).extra["frames"] == 12
    assert all(t.id.startswith("v0003_o") for t in tracks) and tracks
    assert video.extra["classes"] == sorted({t.label for t in tracks})
    decoded = list(VideoReader(tmp_path / video.path))
    assert [i for i, _ in decoded] == list(range(12))
    assert all(rgb.shape == (61, 97, 3) for _, rgb in decoded)
    plan = plan_video(config, 3)
    error = np.abs(decoded[5][1].astype(float) - render_frame(plan, 5)[0]).mean()
    assert error < 12
    files = list_frame_files(Path(tmp_path / "frames" / "v0003"))
    assert [f.name for f in files[:2]] == ["000000.png", "000001.png"] and len(files) == 12
    png = cv2.cvtColor(cv2.imread(str(files[5])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(png, render_frame(plan, 5)[0])
