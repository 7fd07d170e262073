"""vcl proposals: source-pixel mapping, post-processing, planted recall, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import jsonl
from vcl.boxes import iou
from vcl.errors import ExitCode
from vcl.io.manifest import TrackRecord, VideoRecord, write_records
from vcl.io.store import Store, StoreWriter
from vcl.io.video import write_frame_folder, write_video
from vcl.proposals import COLUMNS, SCHEMA, ProposalConfig, area_threshold, postprocess
from vcl.proposals import process_video as propose

W, H = 171, 97  # odd, non-square: catches x/y and width/height mix-ups
RECT = (50.0, 25.0, 101.0, 63.0)  # planted box, source pixels


def planted_frames(n: int, dx: int = 0) -> list[np.ndarray]:
    """A bright checkered rectangle (moving ``dx`` px a frame) on a seeded textured background."""
    import cv2

    noise = np.random.default_rng(0).uniform(0, 255, (H, W, 3)).astype(np.float32)
    background = np.clip(
        2.5 * cv2.GaussianBlur(noise, (0, 0), 1.5) - 190, 0, 255
    )  # textured: the camera is seen
    frames = []
    for t in range(n):
        frame = background.astype(np.uint8)
        x0, y0, x1, y1 = (int(v) for v in RECT)
        yy, xx = np.mgrid[0 : y1 - y0, 0 : x1 - x0]
        checker = ((yy // 8 + xx // 8) % 2)[..., None]  # moves with the rectangle
        frame[y0:y1, x0 + dx * t : x1 + dx * t] = np.where(checker, (230, 200, 40), (170, 120, 60))
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """Three short default-size synth videos with ground truth (static camera)."""
    from vcl.synth import SynthConfig, generate_video

    out = tmp_path_factory.mktemp("synth")
    config = SynthConfig(videos=3, frames=24, seed=5)
    videos, tracks = [], []
    for i in range(3):
        video, t = generate_video(config, i, out)
        videos.append(video)
        tracks += t
    write_records(out / "videos.jsonl", videos)
    write_records(out / "gt_tracks.jsonl", tracks)
    return out


def test_boxes_map_back_to_source_pixels_at_odd_sizes(tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    write_frame_folder(folder, planted_frames(2))
    config = ProposalConfig(max_side=120, min_area=1000.0, nms_iou=0.7)
    result = propose(str(folder), "odd", config)  # frames resized to 120×68
    assert result.info["width"] == W and result.info["height"] == H
    assert result.box.dtype == np.float32 and result.box.shape[1] == 4
    assert (result.box[:, 0::2] <= W).all() and (result.box[:, 1::2] <= H).all()
    assert (result.box >= 0).all() and set(result.frame.tolist()) == {0, 1}
    best = iou(np.array([RECT]), result.box[result.frame == 0]).max()
    assert best > 0.7, best
    # the same frames at full size find the same rectangle in the same coordinates
    full = propose(str(folder), "odd", ProposalConfig(max_side=0, min_area=300.0))
    assert iou(np.array([RECT]), full.box[full.frame == 0]).max() > 0.7


@pytest.mark.parametrize("min_area", [1.0, 100.0])
def test_a_small_min_area_still_proposes_the_object(tmp_path: Path, min_area: float) -> None:
    """On a 171×97 frame --min-area 100 scales to 8 px²: OpenCV's EdgeBoxes then filled
    its budget with 1 px specks, which the area filter dropped: no proposals, exit 0."""
    folder = tmp_path / "small"
    write_frame_folder(folder, planted_frames(1))
    config = ProposalConfig(min_area=min_area)  # ODCT's max_side 600
    result = propose(str(folder), "small", config)
    areas = (result.box[:, 2] - result.box[:, 0]) * (result.box[:, 3] - result.box[:, 1])
    assert len(result.box) >= 50 and (areas >= area_threshold(config, (W, H))).all()
    assert iou(np.array([RECT]), result.box).max() > 0.7


def test_motion_boxes_the_moving_rectangle_in_source_pixels(tmp_path: Path) -> None:
    folder = tmp_path / "moving"
    write_frame_folder(folder, planted_frames(5, dx=3))
    from vcl.proposals.moving import MotionParams

    everything = MotionParams(min_moving=0.0, max_moving=1.0)  # no frame rejected
    config = ProposalConfig(method="motion", max_side=120, min_area=0.0, motion=everything)
    result = propose(str(folder), "moving", config)
    assert result.info["sampled"] == 5 and result.info["frame_end"] == 5
    assert result.info["rejected"] == 0
    strict = ProposalConfig(method="motion", max_side=120, motion=MotionParams(min_moving=0.99))
    rejected = propose(str(folder), "moving", strict)  # Wang & Gupta's test, made impossible
    assert rejected.info["rejected"] == 5 and len(rejected.frame) == 0
    for t in range(5):
        truth = np.array([[RECT[0] + 3 * t, RECT[1], RECT[2] + 3 * t, RECT[3]]])
        boxes = result.box[result.frame == t]
        assert len(boxes) and iou(truth, boxes).max() > 0.7, (t, boxes)


def striped(w: int, h: int, n: int = 6) -> list[np.ndarray]:
    """n frames of w×h whose content moves (a bright stripe sweeping across)."""
    frames = []
    for t in range(n):
        frame = np.full((h, w, 3), 60, np.uint8)
        x = t * max(w // n, 1)
        frame[:, x : x + max(w // 8, 1)] = (230, 200, 40)
        frames.append(frame)
    return frames


def test_motion_skips_videos_too_small_for_flow_with_a_warning(tmp_path: Path, invoke) -> None:
    """1×1, 2×2 and 3000×17 (600×3 at --max-side 600) videos: DIS cannot take their
    frames. Each gets no box and a warning naming it and its size; its frames are still
    counted as proposed on (frame_end, sampled), so vcl track steps over them. Before:
    exit 70 with OpenCV's two-line message, not skipped by --keep-going, and a
    .partial store left behind."""
    videos = {}
    for w, h in ((1, 1), (2, 2), (3000, 17)):
        videos[f"v{w}x{h}"] = tmp_path / f"v{w}x{h}.mp4"
        write_video(videos[f"v{w}x{h}"], striped(w, h), fps=10)
    write_records(
        tmp_path / "videos.jsonl", [VideoRecord(id=k, path=str(p)) for k, p in videos.items()]
    )
    out = tmp_path / "m.zarr"
    run = invoke("proposals", tmp_path / "videos.jsonl", "--method", "motion", "-o", out)
    assert run.exit_code == 0, run.stderr
    warnings = [x for x in run.stderr.splitlines() if x.startswith("warning: ")]
    assert len(warnings) == 3, warnings  # no "got no proposal" line: these are explained
    sizes = ("1x1 px", "2x2 px", "3000x17 px (600x3 ")
    for path, size in zip(videos.values(), sizes, strict=True):
        (line,) = [x for x in warnings if str(path) in x]
        assert size in line and "too small or too elongated for DIS optical flow" in line
        assert line.endswith("no motion proposals")
    store = Store(out, kind="proposals", version=1)
    for vid in videos:
        assert len(store.read_group(vid)["frame"]) == 0
        info = store.attrs["videos"][vid]
        assert info["frame_end"] == info["sampled"] == 6 and info["too_small_for_flow"]
    assert not Path(f"{out}.partial").exists()


def test_videos_without_any_proposal_are_counted_in_a_warning(tmp_path: Path, invoke) -> None:
    """A video whose every frame gave no box (here a flat one) was written silently: the
    first sign was vcl track finding no track. Videos with boxes are not named."""
    write_frame_folder(tmp_path / "flat", [np.full((23, 37, 3), 128, np.uint8)] * 3)
    write_frame_folder(tmp_path / "planted", planted_frames(2))
    run = invoke("proposals", tmp_path / "flat", tmp_path / "planted", "--min-area", "1000",
                 "-o", tmp_path / "p.zarr")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    warnings = [x for x in run.stderr.splitlines() if x.startswith("warning: ")]
    assert warnings == [
        "warning: 1 of 2 videos got no proposal on any frame: 'flat' (no box found, or "
        "every box was under --min-area 1000)"
    ]


def test_postprocess_clips_filters_ranks_nms_and_scales() -> None:
    config = ProposalConfig(max_side=100, min_area=400.0, max_boxes=3, nms_iou=0.5)
    # processing frame 50×40 (longer side 50): the 400 px² threshold becomes 100 px²
    assert area_threshold(config, (50, 40)) == pytest.approx(100.0)
    boxes = np.array(
        [
            [-10, 0, 10, 10],  # clipped to 10×10 = 100 px²: kept (>=)
            [0, 0, 9, 11],  # 99 px²: dropped
            [1, 0, 11, 10],  # IoU 9/11 with box 0: suppressed by NMS
            [30, 20, 60, 45],  # clipped to 20×20
            [30, 0, 45, 15],  # 4th best after the area filter: cut by max_boxes
        ],
        float,
    )
    scores = np.array([0.5, 0.99, 0.9, 0.7, 0.1])
    out, kept = postprocess(boxes, scores, (50, 40), (0.5, 0.25), config)
    assert kept.tolist() == pytest.approx([0.9, 0.7]) and kept.dtype == np.float32
    assert out.tolist() == [[2, 0, 22, 40], [60, 80, 100, 160]]  # x / 0.5, y / 0.25


def test_empty_edges_frame_gives_no_boxes(tmp_path: Path) -> None:
    from vcl.proposals.edgeboxes import (
        EdgeBoxesParams,
        create_edge_boxes,
        edge_boxes,
        gradient_edges,
    )

    flat = np.full((23, 37, 3), 128, np.uint8)
    edges, orient = gradient_edges(flat)
    assert not edges.any()
    boxes, scores = edge_boxes(create_edge_boxes(EdgeBoxesParams()), edges, orient)
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    folder = tmp_path / "flat"
    write_frame_folder(folder, [flat] * 3)
    result = propose(str(folder), "flat", ProposalConfig())
    assert len(result.frame) == 0 and result.info["sampled"] == 3


def test_edgeboxes_rects_are_read_with_opencvs_one_based_corner() -> None:
    """getBoundingBoxes reports a box over pixels x..x+w as (x+1, y+1, w, h)."""
    from vcl.proposals.edgeboxes import from_edgeboxes_rects

    rects = np.array([[1, 1, 95, 60], [20, 14, 26, 21]], np.int32)
    assert from_edgeboxes_rects(rects).tolist() == [[0, 0, 96, 61], [19, 13, 46, 35]]


def test_edgeboxes_boxes_reach_every_border() -> None:
    """On a frame textured to its borders, boxes touch all four of them, mirrored too.

    Reading OpenCV's 1-based corner as 0-based put every box 1 px right and down: none
    touched the left or top border while the right and bottom ones were reached.
    """
    from vcl.proposals.edgeboxes import (
        EdgeBoxesParams,
        create_edge_boxes,
        edge_boxes,
        gradient_edges,
    )

    rng = np.random.default_rng(0)
    img = np.kron(rng.integers(0, 256, (8, 12, 3)), np.ones((8, 8, 1))).astype(np.uint8)[:61]
    h, w = img.shape[:2]
    engine = create_edge_boxes(EdgeBoxesParams(min_box_area=200, max_boxes=2000, beta=0.95))
    for frame in (img, np.ascontiguousarray(img[::-1, ::-1])):
        boxes, _ = edge_boxes(engine, *gradient_edges(frame))
        assert boxes[:, :2].min(0).tolist() == [0, 0]
        assert boxes[:, 2:].max(0).tolist() == [w, h]


def test_gradient_edges_are_thin_with_normal_orientation() -> None:
    from vcl.proposals.edgeboxes import gradient_edges

    img = np.zeros((31, 41, 3), np.uint8)
    img[:, 20:] = 200  # a vertical step: gradient (and the edge normal) along x
    img[:8, :] = 90  # and a horizontal step at the top: normal along y
    edges, orient = gradient_edges(img)
    row = edges[20]  # across the vertical edge
    assert np.count_nonzero(row > 0.1) <= 2 and row[19:21].max() > 0.5
    assert abs(orient[20, 19:21][row[19:21].argmax()]) < 0.1  # normal along x: 0
    col = edges[:, 5]
    assert np.count_nonzero(col > 0.1) <= 2
    assert abs(orient[col.argmax(), 5] - np.pi / 2) < 0.1
    assert (orient >= 0).all() and (orient < np.pi).all() and edges.max() <= 1


def test_planted_synth_objects_are_recalled(invoke, synth: Path, tmp_path: Path) -> None:
    """recall@300 at IoU 0.5 >= 0.8 on synth objects (static camera), every method.

    Synth objects are 17-34 px in a 160 px frame, many below ODCT's 10,000 px² at
    600 px (711 px² here), so the run uses --min-area 2000 (142 px² here); motion runs
    without Wang & Gupta's frame test, which rejects most synth frames (see README).
    """
    no_frame_test = ["--min-moving", "0", "--max-moving", "1"]
    for method, extra in (("edgeboxes", []), ("selective-search", []), ("motion", no_frame_test)):
        out = tmp_path / f"{method}.zarr"
        options = ["--method", method, "--min-area", "2000", "-q", *extra]
        run = invoke("proposals", synth / "videos.jsonl", "-o", out, *options)
        assert run.exit_code == 0, run.stderr
        report = invoke(
            "proposals", "eval", out, "--gt", synth / "gt_tracks.jsonl", "--kind", "object"
        )
        assert report.exit_code == 0, report.stderr
        figures = json.loads(report.stdout)
        assert figures["gt_boxes"] > 50 and figures["frames"] == 72
        assert figures["recall"]["0.5"]["300"] >= 0.8, (method, figures)
        assert figures["abo"]["300"] >= figures["abo"]["10"]


def test_frames_emptied_by_the_moving_points_test_are_counted(invoke, synth, tmp_path) -> None:
    out = tmp_path / "m.zarr"
    options = ["--method", "motion", "--min-moving", "0.99", "--max-moving", "1"]
    run = invoke("proposals", synth / "videos.jsonl", "-o", out, *options)
    assert run.exit_code == 0, run.stderr
    warnings = [x for x in run.stderr.splitlines() if x.startswith("warning: ")]
    assert len(warnings) == 1 and "72 of 72 sampled frames have no proposals" in warnings[0]
    assert "--min-moving 0.99" in warnings[0]


@pytest.mark.parametrize(("camera", "least"), [("static", 0.9), ("pan", 0.85)])
def test_moving_objects_are_recalled(invoke, tmp_path: Path, camera: str, least: float) -> None:
    """Motion proposals on 10 default synth videos, static and panning camera (the
    homography removes the pan): recall of the moving objects at IoU 0.5 (the issue
    asks >= 0.7 under pan). Measured 0.930 static and 0.911 pan (on 20 videos: 0.940 and
    0.916); flow regions alone, as before the change cue, its split by motion and the
    fill score, gave 0.822 and 0.773 on 20. Shorter videos read lower: a video's first
    and last frames have one neighbour, so the flow's wrong side at the object's
    trailing edge is not cut off."""
    from vcl.synth import SynthConfig, generate_video

    data = tmp_path / camera
    config = SynthConfig(videos=10, camera=camera)
    videos, tracks = [], []
    for i in range(config.videos):
        video, t = generate_video(config, i, data)
        videos.append(video)
        tracks += t
    write_records(data / "videos.jsonl", videos)
    write_records(data / "gt_tracks.jsonl", tracks)
    out = tmp_path / "motion.zarr"
    options = ["--method", "motion", "--min-area", "2000", "--min-moving", "0", "--max-moving", "1"]
    run = invoke("proposals", data / "videos.jsonl", "-o", out, *options, "-q")
    assert run.exit_code == 0, run.stderr
    report = invoke("proposals", "eval", out, "--gt", data / "gt_tracks.jsonl", "--kind", "object")
    figures = json.loads(report.stdout)
    assert figures["gt_boxes"] > 50 and figures["recall"]["0.5"]["300"] >= least, figures


def test_touching_objects_moving_apart_get_a_box_each() -> None:
    """Two checkered squares overlapping by 7 px, one moving right and one down at the
    same speed: the flow's magnitude (every level cut) and the change both see one
    region; k-means on the residual flow splits it into the two objects."""
    import cv2

    from vcl.proposals.moving import MotionParams, motion_frame

    noise = np.random.default_rng(0).uniform(0, 255, (96, 128, 3)).astype(np.float32)
    background = np.clip(2.5 * cv2.GaussianBlur(noise, (0, 0), 1.5) - 190, 0, 255)
    yy, xx = np.mgrid[0:20, 0:20]
    checker = ((yy // 5 + xx // 5) % 2)[..., None]
    frames, truth = [], []
    for t in range(3):
        frame, boxes = background.astype(np.uint8), []
        for x0, y0, dx, dy, colour in [
            (30, 30, 3, 0, (230, 200, 40)),
            (46, 40, 0, 3, (40, 160, 230)),
        ]:
            x, y = x0 + dx * t, y0 + dy * t
            frame[y : y + 20, x : x + 20] = np.where(checker, colour, np.array(colour) // 2)
            boxes.append([x, y, x + 20, y + 20])
        frames.append(frame)
        truth.append(boxes)
    params = MotionParams(min_moving=0.0, max_moving=1.0)
    result = motion_frame(frames[1], [frames[0], frames[2]], params)
    assert (iou(np.array(truth[1], float), result.boxes).max(axis=1) > 0.7).all(), result.boxes


def test_change_boxes_and_motion_scores_by_hand() -> None:
    """Change regions: a square's rim (all a flat square changes) closes into one box,
    speckle opens away; scores: Σ |r|² × moving fraction, 0 without motion."""
    from vcl.proposals.moving import MotionParams, change_boxes, motion_scores

    change = np.zeros((40, 60), np.float32)
    change[5:15, 5:15] = 40.0
    change[7:13, 7:13] = 0.0  # flat interior: only a 2-px rim changed
    change[20:30, 40:52] = 30.0  # a second region
    change[35, 5] = change[2, 55] = 255.0  # speckle
    change[25:28, 10:13] = 10.0  # below the threshold
    rects = change_boxes(change, MotionParams(diff_threshold=16.0))
    assert sorted(map(tuple, rects.tolist())) == [(5, 5, 10, 10), (40, 20, 12, 10)]

    magnitude = np.zeros((40, 60), np.float32)
    magnitude[5:15, 5:15] = 2.0  # 100 moving px of |r|² = 4
    magnitude[0:2, 0:2] = 0.4  # under the 0.5 px threshold: not moving
    rects = np.array([[5, 5, 10, 10], [5, 5, 20, 10], [40, 20, 12, 10], [3, 3, 4, 4], [0, 0, 2, 2]])
    scores = motion_scores(rects, magnitude, threshold=0.5)
    np.testing.assert_allclose(scores, [400.0, 400.0 * 100 / 200, 0.0, 16.0 * 4 / 16, 0.0])


def test_eval_by_hand(invoke, tmp_path: Path) -> None:
    store = tmp_path / "p.zarr"
    params = ProposalConfig(stride=2).params()
    with StoreWriter(store, SCHEMA, params, seed=0) as writer:
        writer.define_columns(COLUMNS)
        writer.append_group(
            "v",
            frame=np.array([0, 0, 2]),
            box=np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 5]]),
            score=np.array([0.1, 0.9, 0.5]),
        )
        writer.set_attrs(videos={"v": {"width": 40, "height": 40, "frame_end": 4, "sampled": 2}})
    gt = tmp_path / "gt.jsonl"
    tracks = [
        TrackRecord(
            id="a",
            video_id="v",
            frames=[0, 1, 2, 4],
            boxes=[[0, 0, 10, 10]] * 4,
            extra={"kind": "object", "visible": [1.0, 1.0, 1.0, 1.0]},
        ),
        TrackRecord(
            id="d",
            video_id="v",
            frames=[0],
            boxes=[[20, 20, 30, 31]],
            extra={"kind": "distractor", "visible": [0.2]},
        ),
    ]
    write_records(gt, tracks)
    result = invoke("proposals", "eval", store, "--gt", gt, "--top", "1,2")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # frames 0 and 2 count (stride 2, frame_end 4): a@0 best IoU 0 (top 1) then 1; a@2 0.5;
    # d@0 IoU 10/11 at top 1
    assert report["gt_boxes"] == 3 and report["frames"] == 2
    assert report["recall"]["0.5"] == pytest.approx({"1": 2 / 3, "2": 1.0}, abs=1e-4)
    assert report["recall"]["0.7"] == pytest.approx({"1": 1 / 3, "2": 2 / 3}, abs=1e-4)
    assert report["abo"]["2"] == pytest.approx(round((1 + 0.5 + 10 / 11) / 3, 4))
    objects = json.loads(invoke("proposals", "eval", store, "--gt", gt, "--kind", "object").stdout)
    assert objects["gt_boxes"] == 2
    visible = json.loads(
        invoke("proposals", "eval", store, "--gt", gt, "--min-visible", "0.5").stdout
    )
    assert visible["gt_boxes"] == 2
    # --gt - reads stdin (was "no such ground-truth file"), once, and names it
    piped = invoke("proposals", "eval", store, "--gt", "-", "--top", "1,2", input=gt.read_text())
    assert piped.exit_code == 0, piped.stderr
    assert json.loads(piped.stdout) == {**report, "gt": "-"}
    assert json.loads(piped.stdout)["gt"] == "-" and report["gt"] == str(gt)


def test_eval_without_a_shared_video_is_an_error(invoke, tmp_path: Path) -> None:
    """No video in common used to print all-null recall with exit 0."""
    store = tmp_path / "p.zarr"
    with StoreWriter(store, SCHEMA, ProposalConfig().params(), seed=0) as writer:
        writer.define_columns(COLUMNS)
        box = np.array([[0, 0, 10, 10]])
        writer.append_group("v", frame=np.array([0]), box=box, score=np.array([0.5]))
        writer.set_attrs(videos={"v": {"width": 40, "height": 40, "frame_end": 1, "sampled": 1}})
    gt = tmp_path / "gt.jsonl"
    write_records(gt, [TrackRecord(id="a", video_id="w", frames=[0], boxes=[[0, 0, 10, 10]])])
    result = invoke("proposals", "eval", store, "--gt", gt)
    assert result.exit_code == ExitCode.DATA and not result.stdout
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "p.zarr" in lines[0] and "gt.jsonl" in lines[0] and "'w'" in lines[0]
    only = invoke("proposals", "eval", store, "--gt", gt, "--kind", "distractor")
    assert only.exit_code == ExitCode.DATA and "no ground-truth box" in only.stderr
    # one video shared, one only in the ground truth: scored, with one warning
    both = [TrackRecord(id=v, video_id=v, frames=[0], boxes=[[0, 0, 10, 10]]) for v in "vw"]
    write_records(gt, both)
    result = invoke("proposals", "eval", store, "--gt", gt)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["videos"] == 1 and report["recall"]["0.5"]["10"] == 1.0
    warnings = [x for x in result.stderr.splitlines() if x.startswith("warning: ")]
    assert len(warnings) == 1 and "1 of 2 ground-truth videos" in warnings[0]


def _read(path: Path) -> dict[str, dict[str, np.ndarray]]:
    store = Store(path, kind="proposals", version=1)
    return {vid: store.read_group(vid) for vid in store.group_ids}


def test_resume_skips_finished_videos_and_matches_a_full_run(invoke, tmp_path: Path) -> None:
    from tests.conftest import moving_square_frames

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        write_video(clips / f"c{i}.avi", moving_square_frames(6, 41, 29, seed=i), 5, "mjpg")
    manifest = tmp_path / "videos.jsonl"
    records = [VideoRecord(id=f"c{i}", path=str(clips / f"c{i}.avi")) for i in range(3)]
    write_records(manifest, records)
    # edgeboxes: OpenCV's selective search ranks with an RNG Python cannot seed
    options = ["--min-area", "0", "--max-side", "40", "--seed", "4", "-o"]
    full = invoke("proposals", manifest, *options, tmp_path / "full.zarr", "--workers", "2")
    assert full.exit_code == 0, full.stderr

    # an interrupted run: the third video is corrupt, so the run stops after two
    good = (clips / "c2.avi").read_bytes()
    (clips / "c2.avi").write_bytes(b"not a video")
    out = tmp_path / "resumed.zarr"
    broken = invoke("proposals", manifest, *options, out)
    assert broken.exit_code == ExitCode.DATA and "c2.avi" in broken.stderr
    assert not out.exists() and Path(f"{out}.partial").exists()
    with pytest.raises(Exception, match="incomplete"):
        Store(out)
    (clips / "c2.avi").write_bytes(good)
    resumed = invoke("proposals", manifest, *options, out)
    assert resumed.exit_code == 0, resumed.stderr
    assert "2 of 3 videos already done" in resumed.stderr
    a, b = _read(tmp_path / "full.zarr"), _read(out)
    assert list(a) == list(b) == ["c0", "c1", "c2"]
    for vid in a:
        for column in ("frame", "box", "score"):
            assert np.array_equal(a[vid][column], b[vid][column]), (vid, column)
    assert Store(out).attrs["videos"] == Store(tmp_path / "full.zarr").attrs["videos"]


def test_cli_bad_inputs(invoke, tmp_path: Path) -> None:
    from tests.conftest import moving_square_frames

    good = tmp_path / "good.avi"
    write_video(good, moving_square_frames(4, 33, 21), 5, "mjpg")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00" * 100)
    out = tmp_path / "p.zarr"

    missing = invoke("proposals", tmp_path / "nope.mp4", "-o", out)
    assert missing.exit_code == ExitCode.NO_INPUT and "nope.mp4" in missing.stderr
    bad = invoke("proposals", good, corrupt, "-o", out, "--min-area", "0")
    assert bad.exit_code == ExitCode.DATA and "corrupt.mp4" in bad.stderr
    assert "Traceback" not in bad.stderr and not out.exists()

    kept = invoke(
        "proposals", good, corrupt, "-o", out, "--min-area", "0", "--keep-going", "--overwrite"
    )
    assert kept.exit_code == 3
    failures = [
        r for r in jsonl("\n".join(x for x in kept.stderr.splitlines() if x.startswith("{")))
    ]
    assert [f["video_id"] for f in failures] == ["corrupt"] and "corrupt.mp4" in failures[0][
        "error"
    ]
    store = Store(out, kind="proposals", version=1)
    assert store.group_ids == ["good"] and store.attrs["failed"] == ["corrupt"]
    assert store.attrs["videos"]["good"]["width"] == 33

    model = tmp_path / "model.yml.gz"
    model.write_text("junk")
    edge = invoke("proposals", good, "-o", tmp_path / "e.zarr", "--edge-model", model)
    assert edge.exit_code == ExitCode.NO_INPUT and str(model) in edge.stderr
    absent = invoke("proposals", good, "-o", tmp_path / "e.zarr", "--edge-model", tmp_path / "x")
    assert absent.exit_code == ExitCode.NO_INPUT
    bing = invoke("proposals", good, "-o", tmp_path / "b.zarr", "--method", "bing")
    assert bing.exit_code == ExitCode.USAGE and "--bing-model" in bing.stderr
    empty_dir = tmp_path / "bing"
    empty_dir.mkdir()
    bing = invoke(
        "proposals", good, "-o", tmp_path / "b.zarr", "--method", "bing", "--bing-model", empty_dir
    )
    assert bing.exit_code == ExitCode.NO_INPUT and "ObjNess" in bing.stderr
    method = invoke("proposals", good, "-o", tmp_path / "m.zarr", "--method", "sift")
    assert method.exit_code == ExitCode.USAGE
    exists = invoke("proposals", good, "-o", out)
    assert exists.exit_code == ExitCode.CANNOT_CREATE

    no_gt = invoke("proposals", "eval", out, "--gt", tmp_path / "gt.jsonl")
    assert no_gt.exit_code == ExitCode.NO_INPUT and "gt.jsonl" in no_gt.stderr
    gt = tmp_path / "gt.jsonl"
    gt.write_text("")
    partial = invoke("proposals", "eval", tmp_path / "resumable.zarr", "--gt", gt)
    assert partial.exit_code in (ExitCode.NO_INPUT, ExitCode.DATA)
    bad_top = invoke("proposals", "eval", out, "--gt", gt, "--top", "ten")
    assert bad_top.exit_code == ExitCode.USAGE


def write_bing_model(folder: Path, spaces=("MAXBGR",), seed: int = 0) -> Path:
    """A small, well-formed BING model (OpenCV's layout): 8×8 filter, n×2 calibration, n sizes."""
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = np.array([[0], [1], [6], [7], [8], [13], [14], [20], [21]], np.int32)  # 16-64 px
    for space in spaces:
        name = f"ObjNessB2W8{space}"
        mats = {
            "wS1": rng.normal(0, 1e-3, (8, 8)).astype(np.float32),
            "wS2": np.stack([rng.uniform(0.5, 2, len(sizes)), -np.ones(len(sizes))], 1),
            "idx": sizes,
        }
        for part, mat in mats.items():
            fs = cv2.FileStorage(str(folder / f"{name}.{part}.yml.gz"), cv2.FILE_STORAGE_WRITE)
            fs.write(name, mat.astype(np.float32) if part == "wS2" else mat)
            fs.release()
    return folder


def test_bing_keeps_stdout_clean_and_ranks_its_best_box_first(tmp_path: Path) -> None:
    from tests.conftest import run_vcl
    from vcl.proposals.bing import bing_boxes

    write_video(tmp_path / "v.mp4", planted_frames(3), fps=10)
    model = write_bing_model(tmp_path / "bing")
    out = tmp_path / "b.zarr"
    proc = run_vcl("proposals", tmp_path / "v.mp4", "-o", out, "--method", "bing",
                   "--bing-model", model, "--max-side", "0", "--min-area", "0", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""  # no printf chatter, no OpenCV log lines
    store = Store(out, kind="proposals", version=1)
    frame, score = store["frame"][:], store["score"][:]
    first = score[frame == 0]
    assert len(first) > 1 and first[0] == 1.0 and np.all(np.diff(first) <= 0)
    # OpenCV returns rank costs (lower is better) and 1-based x0, y0: scores fall, boxes fit
    boxes, scores = bing_boxes(str(model), planted_frames(1)[0])
    assert scores[0] == 1.0 and np.all(np.diff(scores) < 0)
    assert boxes[:, :2].min() == 0 and boxes[:, 2].max() <= W and boxes[:, 3].max() <= H


def test_bing_model_damaged_or_partial_is_refused_before_output(tmp_path: Path, invoke) -> None:
    write_video(tmp_path / "v.mp4", planted_frames(2), fps=10)
    model = write_bing_model(tmp_path / "bing", spaces=("MAXBGR", "HSV"))
    (model / "ObjNessB2W8HSV.wS1.yml.gz").write_text("junk\n")
    out = tmp_path / "b.zarr"
    args = ("proposals", tmp_path / "v.mp4", "-o", out, "--method", "bing", "--bing-model", model)
    result = invoke(*args)
    assert result.exit_code == ExitCode.DATA, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(model / "ObjNessB2W8HSV.wS1.yml.gz") in lines[0]
    assert not out.exists() and not Path(f"{out}.partial").exists()
    (model / "ObjNessB2W8HSV.wS2.yml.gz").unlink()  # a colour space without its calibration
    result = invoke(*args)
    assert result.exit_code == ExitCode.NO_INPUT and "ObjNessB2W8HSV.wS2" in result.stderr
    assert not Path(f"{out}.partial").exists()


def test_options_of_another_method_are_a_usage_error(tmp_path: Path, invoke) -> None:
    write_video(tmp_path / "v.mp4", planted_frames(2), fps=10)
    out = tmp_path / "p.zarr"
    result = invoke("proposals", tmp_path / "v.mp4", "-o", out, "--mode", "quality")
    assert result.exit_code == ExitCode.USAGE
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: --mode:") and "selective-search" in error
    assert "edgeboxes" in error and not Path(f"{out}.partial").exists()
    result = invoke("proposals", tmp_path / "v.mp4", "-o", out, "--method", "motion",
                    "--alpha", "0.5", "--min-moving", "0.1")  # fmt: skip
    assert result.exit_code == ExitCode.USAGE and "--alpha" in result.stderr
    assert "--min-moving" not in result.stderr.splitlines()[-1]
    result = invoke("proposals", tmp_path / "v.mp4", "-o", out, "--method", "selective-search",
                    "--mode", "fast", "--max-side", "60", "-q")  # fmt: skip
    assert result.exit_code == 0, result.stderr
