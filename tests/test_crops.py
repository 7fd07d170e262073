"""vcl crops: equally spaced, pixel-exact crops of tracks, pairs, clipping and bad input."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from vcl.crops import CHUNK_SAMPLES, crop_region, sample_indices
from vcl.errors import ExitCode
from vcl.io.manifest import TrackRecord, VideoRecord, write_records
from vcl.io.store import Store
from vcl.io.video import VideoReader, write_video

W, H, N = 61, 43, 14


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A 61×43 video of smooth seeded noise, and its manifest."""
    import cv2

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(N):
        small = rng.uniform(0, 255, (H // 4 + 1, W // 4 + 1, 3)).astype(np.float32)
        frames.append(cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC).clip(0, 255))
    write_video(tmp_path / "clip.mp4", [f.astype(np.uint8) for f in frames], fps=10)
    write_records(tmp_path / "videos.jsonl", [VideoRecord(id="clip", path="clip.mp4")])
    return tmp_path


def track(tid: str, frames: list[int], boxes: list[list[float]]) -> TrackRecord:
    return TrackRecord(id=tid, video_id="clip", frames=frames, boxes=boxes)


def decoded(path: Path) -> dict[int, np.ndarray]:
    return dict(VideoReader(path))


def test_sample_indices_are_equally_spaced_in_time() -> None:
    assert sample_indices(np.arange(91), 10).tolist() == list(range(0, 91, 10))
    assert sample_indices(np.array([0, 1, 2, 50, 51, 99]), 3).tolist() == [0, 3, 5]
    assert sample_indices(np.array([4, 5, 6]), 10).tolist() == [0, 1, 2]
    assert sample_indices(np.array([7]), 10).tolist() == [0]


def test_gappy_tracks_give_k_distinct_boxes() -> None:
    """Two instants nearest the same frame (a gap) used to give K - 1 crops."""
    assert sample_indices(np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 12]), 10).tolist() == list(range(10))
    assert sample_indices(np.array([0, 1, 2, 50]), 10).tolist() == [0, 1, 2, 3]  # n < K: all
    # the slow twin: the best K-subset by brute force, same total deviation from the instants
    rng = np.random.default_rng(4)
    for _ in range(60):
        n, k = int(rng.integers(3, 11)), int(rng.integers(2, 7))
        frames = np.sort(rng.choice(40, size=n, replace=False))
        got = sample_indices(frames, k)
        assert len(got) == min(n, k) and (np.diff(got) > 0).all()
        if n > k:
            targets = np.linspace(frames[0], frames[-1], k)
            best = min(
                np.abs(frames[list(c)] - targets).sum() for c in itertools.combinations(range(n), k)
            )
            assert np.abs(frames[got] - targets).sum() == pytest.approx(best)


def test_crop_region_hand_computed() -> None:
    box = np.array([10.5, 8.0, 20.5, 30.0])  # 10 × 22
    assert crop_region(box, W, H, 0.0, "box") == (10, 8, 21, 30)
    # square: side 22 × 1.5 = 33 around (15.5, 19) -> [-1, 2.5, 32, 35.5], clipped at x = 0
    assert crop_region(box, W, H, 0.25, "square") == (0, 2, 32, 36)
    # partly outside: clipped to the frame
    assert crop_region(np.array([50.0, 30, 70, 50]), W, H, 0.0, "box") == (50, 30, 61, 43)


@pytest.mark.parametrize(("shape", "context", "size"), [("box", 0.0, 17), ("square", 0.2, 9)])
def test_crops_are_pixel_exact(clip: Path, invoke, shape: str, context: float, size: int) -> None:
    import cv2

    boxes = [[3.0 + t, 4.0 + t / 2, 21.5 + t, 30.0 + t / 2] for t in range(N)]
    write_records(clip / "tracks.jsonl", [track("a", list(range(N)), boxes)])
    out = clip / f"crops-{shape}.zarr"
    result = invoke("crops", clip / "tracks.jsonl", "--videos", clip / "videos.jsonl", "-o", out,
                    "--per-track", 5, "--size", size, "--shape", shape,
                    "--context", context)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "MiB" in result.stderr
    store = Store(out, kind="crops")
    assert store["frame"][:].tolist() == [0, 3, 6, 10, 13]  # round(linspace(0, 13, 5))
    frames = decoded(clip / "clip.mp4")
    for row, f in enumerate(store["frame"][:]):
        b = boxes[f]
        w, h = b[2] - b[0], b[3] - b[1]
        if shape == "square":
            w = h = max(w, h)
        w, h = w * (1 + 2 * context), h * (1 + 2 * context)
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        x0, y0 = max(int(np.floor(cx - w / 2)), 0), max(int(np.floor(cy - h / 2)), 0)
        x1, y1 = min(int(np.ceil(cx + w / 2)), W), min(int(np.ceil(cy + h / 2)), H)
        patch = frames[int(f)][y0:y1, x0:x1]
        interp = cv2.INTER_AREA if patch.shape[0] * patch.shape[1] >= size * size else 1
        expected = cv2.resize(patch, (size, size), interpolation=interp)
        np.testing.assert_array_equal(store["image"][row], expected)
        np.testing.assert_allclose(store["box"][row], b, atol=1e-4)
    assert store["track_id"][:].tolist() == ["a"] * 5
    assert store["video_id"][:].tolist() == ["clip"] * 5
    assert store["image"].chunks[0] == CHUNK_SAMPLES
    order = np.random.default_rng(0).permutation(5)
    for i in order:  # random single-sample reads, as a training loader does
        np.testing.assert_array_equal(store["image"][int(i)], store["image"][:][i])


def test_pairs_take_first_and_last_boxes(clip: Path, invoke) -> None:
    tracks = [
        track("p0", [0, 1, 2, 3], [[5.0, 5, 20, 20]] * 4),
        track("p1", [2, 5, 9], [[30.0, 10, 50, 30]] * 3),
    ]
    write_records(clip / "pairs.jsonl", tracks)
    out = clip / "pairs.zarr"
    result = invoke("crops", clip / "pairs.jsonl", "--videos", clip / "videos.jsonl", "-o", out,
                    "--pairs", "--size", "8")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    store = Store(out, kind="crops")
    assert store["track_id"][:].tolist() == ["p0", "p0", "p1", "p1"]
    assert store["frame"][:].tolist() == [0, 3, 2, 9]


def test_track_labels_reach_the_crops_and_their_features(clip: Path, invoke) -> None:
    """Labelled tracks (vcl track --method gt --keep-class) give crops with a label
    column, and vcl embed carries it to the features; unlabelled tracks add none."""
    from vcl.io.features import read_feature_set

    cat = TrackRecord(id="a", video_id="clip", frames=[0, 4], boxes=[[5.0, 5, 20, 20]] * 2,
                      label="cat")  # fmt: skip
    dog = TrackRecord(id="b", video_id="clip", frames=[1, 6], boxes=[[30.0, 9, 50, 30]] * 2,
                      label="dog")  # fmt: skip
    write_records(clip / "labelled.jsonl", [cat, dog, track("c", [2, 3], [[1.0, 1, 9, 9]] * 2)])
    out = clip / "labelled.zarr"
    result = invoke("crops", clip / "labelled.jsonl", "--videos", clip / "videos.jsonl", "-o",
                    out, "--per-track", "2", "--size", "8")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    store = Store(out, kind="crops")
    assert store["label"][:].tolist() == ["cat", "cat", "dog", "dog", "", ""]
    feats = clip / "f.zarr"
    assert invoke("embed", "random:resnet18", out, "-o", feats, "-q").exit_code == 0
    fs = read_feature_set(feats)
    assert dict(zip(fs.ids, fs.labels, strict=True)) == {
        "a@0": "cat", "a@4": "cat", "b@1": "dog", "b@6": "dog", "c@2": "", "c@3": ""
    }  # fmt: skip
    write_records(clip / "plain.jsonl", [track("c", [2, 3], [[1.0, 1, 9, 9]] * 2)])
    plain = clip / "plain.zarr"
    result = invoke("crops", clip / "plain.jsonl", "--videos", clip / "videos.jsonl", "-o", plain)
    assert result.exit_code == 0 and "label" not in Store(plain, kind="crops")


def test_bad_inputs(clip: Path, invoke) -> None:
    args = ["--videos", clip / "videos.jsonl", "--size", "8"]
    outside = clip / "outside.jsonl"
    write_records(outside, [track("gone", [0, 1], [[70.0, 5, 90, 20], [1.0, 1, 5, 5]])])
    r = invoke("crops", outside, *args, "-o", clip / "o.zarr", "--per-track", "2")
    assert r.exit_code == ExitCode.DATA and "'gone'" in r.stderr and "outside" in r.stderr
    late = clip / "late.jsonl"
    write_records(late, [track("late", [0, 40], [[1.0, 1, 9, 9]] * 2)])
    r = invoke("crops", late, *args, "-o", clip / "l.zarr")
    assert r.exit_code == ExitCode.DATA and "'late'" in r.stderr and "frame 40" in r.stderr
    stranger = clip / "stranger.jsonl"
    stranger.write_text(
        json.dumps({"id": "s", "video_id": "nope", "frames": [0], "boxes": [[1, 1, 5, 5]]}) + "\n"
    )
    r = invoke("crops", stranger, *args, "-o", clip / "s.zarr")
    assert r.exit_code == ExitCode.DATA and "'nope'" in r.stderr
    empty_track = clip / "empty.jsonl"
    empty_track.write_text('{"id": "e", "video_id": "clip", "frames": [], "boxes": []}\n')
    r = invoke("crops", empty_track, *args, "-o", clip / "e.zarr")
    assert r.exit_code == ExitCode.DATA and "line 1" in r.stderr
    single = clip / "single.jsonl"
    write_records(single, [track("one", [3], [[1.0, 1, 9, 9]])])
    r = invoke("crops", single, *args, "-o", clip / "p.zarr", "--pairs")
    assert r.exit_code == ExitCode.DATA and "'one'" in r.stderr
    r = invoke("crops", single, *args, "-o", clip / "ok.zarr")
    assert r.exit_code == 0
    r = invoke("crops", single, *args, "-o", clip / "ok.zarr")
    assert r.exit_code == ExitCode.CANNOT_CREATE
    r = invoke("crops", single, *args, "-o", clip / "x.zarr", "--shape", "round")
    assert r.exit_code == ExitCode.USAGE
