"""vcl track: the IoU tracker's rules on planted tracks, evaluation, GT import, the CLI."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import jsonl
from vcl.errors import DataError, ExitCode
from vcl.io.manifest import TrackRecord, read_records
from vcl.io.store import StoreWriter
from vcl.synth import SynthConfig, generate_video
from vcl.track import TrackWriter, to_records
from vcl.track.evaluate import evaluate
from vcl.track.iou import (
    IouParams,
    IouTracker,
    RawTrack,
    fb_shift,
    flow_shift,
    greedy_match_reference,
    interpolate,
    pairs_within_columns,
    select,
    track_video,
)

# ----------------------------------------------------------------------------- helpers


def make_synth(folder: Path, videos: int = 3, camera: str = "static", **kw) -> Path:
    """A tiny vcl synth data set (videos.jsonl + gt_tracks.jsonl) in ``folder``."""
    from vcl.io.manifest import write_records

    config = SynthConfig(videos=videos, width=97, height=75, frames=kw.pop("frames", 40),
                         camera=camera, seed=kw.pop("seed", 3), **kw)  # fmt: skip
    made = [generate_video(config, i, folder) for i in range(videos)]
    write_records(folder / "videos.jsonl", [v for v, _ in made])
    write_records(folder / "gt_tracks.jsonl", [t for _, ts in made for t in ts])
    return folder


def write_proposals(
    path: Path,
    per_video: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    params: dict | None = None,
    videos: dict | None = None,
) -> Path:
    """A proposals store; ``params`` and ``videos`` (the attrs `vcl proposals` writes:
    stride; width, height, frame_end) are left out unless given, as in older stores."""
    with StoreWriter(path, "vcl.proposals/1", params or {"test": True}, 0, overwrite=True) as w:
        w.define_columns(
            {"frame": ("int32", ()), "box": ("float32", (4,)), "score": ("float32", ())}
        )
        if videos is not None:
            w.set_attrs(videos=videos)
        for vid, (f, b, s) in per_video.items():
            w.append_group(vid, frame=f, box=b, score=s)
    return path


def jittered_proposals(gt: Path, out: Path, size: tuple[int, int] = (97, 75), **kwargs) -> Path:
    """Proposals from GT boxes (visible ≥ 30 %) with relative jitter, plus random boxes."""
    from vcl.synth import jittered_proposals as make

    return write_proposals(out, make(read_records(gt, TrackRecord), size=size, **kwargs))


def run_tracker(frames_boxes: list[np.ndarray], threshold=0.35, ttl=3, scores=None):
    """Feed per-frame boxes (no flow) and return all raw tracks."""
    tracker = IouTracker(threshold, ttl)
    for t, boxes in enumerate(frames_boxes):
        s = np.ones(len(boxes)) if scores is None else scores[t]
        tracker.step(t, np.asarray(boxes, float).reshape(-1, 4), s)
    return tracker.finish()


# ------------------------------------------------------------------------- association


def random_boxes(rng: np.random.Generator, n: int, extent: int, integer: bool) -> np.ndarray:
    """n boxes (xyxy) of widely varying size; integer corners make many exact IoU ties."""
    xy = rng.uniform(-5, extent, (n, 2))
    wh = np.exp(rng.uniform(np.log(0.5), np.log(extent / 2), (n, 2)))
    boxes = np.concatenate([xy, xy + wh], 1)
    return np.round(boxes) if integer else boxes


def plain_tracker(frames: list[np.ndarray], threshold: float, ttl: int) -> list[list[int]]:
    """The tracker's rules with dicts and the plain greedy: each track's proposal indices."""
    from vcl.boxes import iou_fast

    active: list[dict] = []  # {"box", "misses", "items"} in creation order
    done: list[dict] = []
    offset = 0
    for boxes in frames:
        last = np.array([t["box"] for t in active]).reshape(-1, 4)
        pairs = dict(sorted(greedy_match_reference(iou_fast(last, boxes), threshold)))
        taken = set(pairs.values())
        for i, t in enumerate(active):
            if i in pairs:
                t.update(box=boxes[pairs[i]], misses=0)
                t["items"].append(offset + pairs[i])
            else:
                t["misses"] += 1
        done += [t for t in active if t["misses"] > ttl]
        active = [t for t in active if t["misses"] <= ttl]
        active += [{"box": boxes[j], "misses": 0, "items": [offset + j]}
                   for j in range(len(boxes)) if j not in taken]  # fmt: skip
        offset += len(boxes)
    return sorted(t["items"] for t in done + active)


def test_tracker_equals_plain_twin() -> None:
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 200, (60, 2))
    frames = []
    for _ in range(30):
        xy = xy + rng.normal(0, 2.0, xy.shape)
        keep = rng.random(len(xy)) > 0.15  # objects missed now and then: TTL at work
        fresh = random_boxes(rng, 25, 220, integer=True)  # clutter and ties
        frames.append(np.concatenate([np.concatenate([xy, xy + 25], 1)[keep], fresh]))
    tracker = IouTracker(0.35, 2)
    for t, boxes in enumerate(frames):
        tracker.step(t, boxes, np.ones(len(boxes)))
    offsets = np.cumsum([0] + [len(b) for b in frames])
    flat = np.concatenate(frames)
    got = []
    for tr in tracker.finish():
        items = [int(offsets[f] + np.flatnonzero((frames[f] == b).all(1))[0])
                 for f, b in zip(tr.frames, tr.boxes, strict=True)]  # fmt: skip
        got.append(items)
    assert len(flat) == sum(len(g) for g in got)  # every proposal is in one track
    assert sorted(got) == plain_tracker(frames, 0.35, 2)


def test_iou_fast_agrees_with_boxes_iou() -> None:
    from vcl.boxes import iou, iou_fast

    rng = np.random.default_rng(2)
    a = rng.uniform(0, 40, (13, 4))
    a[:, 2:] += a[:, :2] * rng.uniform(0, 1, (13, 2))
    b = np.concatenate([a[:4] + 1.5, rng.uniform(0, 40, (6, 4))])
    b[-1] = [5, 5, 5, 5]  # degenerate
    b[-2, 2:] = b[-2, :2] + 3
    np.testing.assert_allclose(iou_fast(a, b), iou(a, b), atol=1e-6)
    assert iou_fast(np.zeros((0, 4)), b).shape == (0, 10)


def test_flow_shift_moves_boxes_by_the_median_flow() -> None:
    flow = np.zeros((23, 37, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, -1.5
    flow[5:7, 5:7] = 50.0  # an outlier patch inside the first box: the median ignores it
    boxes = np.array([[2.0, 2.0, 20.0, 14.0], [20.0, 10.0, 36.0, 22.0]])
    out = flow_shift(boxes, flow, (1.0, 1.0))
    np.testing.assert_allclose(out, boxes + np.array([3, -1.5, 3, -1.5]))
    # Flow computed at half resolution: displacements double in source pixels.
    half = flow_shift(boxes * 2, flow, (0.5, 0.5))
    np.testing.assert_allclose(half, boxes * 2 + [6, -3, 6, -3])


# ------------------------------------------------------------------- registration (#4)


def bilinear(field: np.ndarray, x: float, y: float) -> np.ndarray:
    """Plain bilinear sample of an h×w×c field at (x, y), clamped at the border."""
    h, w = field.shape[:2]
    x, y = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)
    x0, y0 = min(int(x), w - 2), min(int(y), h - 2)
    fx, fy = x - x0, y - y0
    top = field[y0, x0] * (1 - fx) + field[y0, x0 + 1] * fx
    bottom = field[y0 + 1, x0] * (1 - fx) + field[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def plain_median_flow(box, flow, back, grid=10) -> np.ndarray:
    """Kalal's Median-Flow written plainly: grid points, FB error, median of the better half.

    Points are tile centres of the box (edge convention: pixel i covers [i, i + 1)),
    sampled where pixel i's value sits, at i: half a pixel less."""
    h, w = flow.shape[:2]
    moves, errors = [], []
    for i in range(grid):
        for j in range(grid):
            x = box[0] + (box[2] - box[0]) * (j + 0.5) / grid - 0.5
            y = box[1] + (box[3] - box[1]) * (i + 0.5) / grid - 0.5
            d = bilinear(flow, x, y)
            ax, ay = x + d[0], y + d[1]
            inside = 0 <= ax <= w - 1 and 0 <= ay <= h - 1
            e = np.hypot(*(d + bilinear(back, ax, ay))) if inside else np.inf
            moves.append(d)
            errors.append(e)
    errors = np.array(errors)
    keep = (errors <= np.median(errors)) & np.isfinite(errors)
    return np.asarray(box) + np.tile(np.median(np.array(moves)[keep], axis=0), 2)


def test_fb_shift_hand_computed_aliasing_case() -> None:
    # The right half of the box has flow aliased by a period (-6 instead of +2 px): the
    # backward flow (-2 px everywhere) does not undo it, so only the left half votes.
    flow = np.zeros((40, 41, 2), np.float32)
    flow[:, :20, 0], flow[:, 20:, 0] = 2.0, -6.0
    back = np.zeros_like(flow)
    back[..., 0] = -2.0
    box = np.array([[10.0, 10.0, 30.0, 30.0]])
    right = np.array([2.0, 0, 2, 0])
    np.testing.assert_allclose(fb_shift(box, flow, back, (1.0, 1.0)), box + right)
    # the plain median of a 7×7 grid (4 of its 7 columns aliased) moves it the wrong way
    np.testing.assert_allclose(flow_shift(box, flow, (1.0, 1.0)), box - 3 * right)


def test_fb_shift_equals_plain_median_flow() -> None:
    import cv2

    rng = np.random.default_rng(4)
    flow = cv2.GaussianBlur(rng.normal(0, 3, (29, 43, 2)).astype(np.float32), (7, 7), 2)
    back = cv2.GaussianBlur(rng.normal(0, 3, (29, 43, 2)).astype(np.float32), (7, 7), 2)
    back = (back - flow).astype(np.float32)  # roughly consistent, with errors that vary
    boxes = np.array([[3.0, 2.0, 17.5, 21.0], [20.2, 5.1, 41.0, 27.9], [-4.0, -3.0, 6.0, 9.0]])
    for scale in ((1.0, 1.0), (0.5, 0.25)):
        got = fb_shift(boxes / np.tile(scale, 2), flow, back, scale)
        want = [plain_median_flow(b, flow, back) for b in boxes]
        # cv2.remap's bilinear weights are fixed-point (1/32 px steps): ~0.03 px apart
        np.testing.assert_allclose(got * np.tile(scale, 2), want, atol=0.05)


def test_verify_picks_the_shift_that_matches_the_content() -> None:
    import cv2

    from vcl.track.iou import ncc, verify

    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(4, 50)), rng.normal(size=(3, 4, 50))
    b[1] = 2 * a + 1  # perfectly correlated
    a[3] = 7.0  # flat: no correlation defined, ranks last
    want = [[np.corrcoef(a[i], b[k, i])[0, 1] for i in range(3)] for k in range(3)]
    np.testing.assert_allclose(ncc(a, b)[:, :3], want, atol=1e-9)
    assert (ncc(a, b)[:, 3] == -1).all()
    prev = cv2.GaussianBlur(rng.uniform(0, 255, (61, 83)), (5, 5), 1.5).astype(np.uint8)
    nxt = np.roll(prev, (3, 5), axis=(0, 1))  # everything moved by (+5, +3)
    last = np.array([[20.0, 15.0, 36.0, 33.0], [40.0, 10.0, 60.0, 25.0]])
    true, wrong = last + np.array([5, 3, 5, 3]), last - np.array([4, 0, 4, 0])
    got = verify(last, np.stack([wrong, last, true]), prev, nxt, (1.0, 1.0))
    np.testing.assert_allclose(got, true)
    # at half resolution the same boxes (in source pixels) are compared on a half frame
    half = cv2.resize(prev, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    half_next = np.roll(half, (2, 3), axis=(0, 1))  # (+6, +4) source px
    moved = last + np.array([6, 4, 6, 4])
    got = verify(last, np.stack([last, moved]), half, half_next, (0.5, 0.5))
    np.testing.assert_allclose(got, moved)


def ring_object_video(folder: Path, n: int = 20, speed=(5.0, 3.0), period: float = 3.2):
    """A disc with concentric rings (period ~ its motion a frame) crossing a textured
    background: the dense flow inside it aliases. Returns the true boxes (n×4)."""
    from vcl.io.video import write_frame_folder

    w, h, radius = 131, 97, 8.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    background = 90 + 40 * np.sin(xx / 5 + 1.0) * np.sin(yy / 6 + 2.0)
    frames, boxes = [], []
    for t in range(n):
        cx, cy = 12.0 + speed[0] * t, 12.0 + speed[1] * t
        r = np.hypot(xx - cx, yy - cy)
        rings = 128 + 120 * np.tanh(3 * np.sin(2 * np.pi * r / period))
        grey = np.clip(np.where(r <= radius, rings, background), 0, 255).astype(np.uint8)
        frames.append(np.repeat(grey[..., None], 3, axis=-1))
        boxes.append([cx - radius, cy - radius, cx + radius, cy + radius])
    write_frame_folder(folder, frames)
    return np.array(boxes)


def test_periodic_texture_fast_object_stays_one_track(tmp_path: Path) -> None:
    truth = ring_object_video(tmp_path / "rings")
    rng = np.random.default_rng(1)
    proposals = truth + rng.normal(0, 0.04, truth.shape) * np.tile(truth[:, 2:] - truth[:, :2], 2)
    frames = np.arange(len(truth))

    def lengths(**kw) -> list[int]:
        params = IouParams(min_len=1, top=0, **kw)
        tracks = track_video(tmp_path / "rings", frames, proposals, np.ones(len(frames)), params)
        return sorted(len(t) for t in tracks)

    # the flow inside the disc misses most of its 5.8 px a frame: the plain median
    # registration (last session's tracker) breaks the object into pieces
    assert len(lengths(registration="median", verify=False, confirm=0)) > 1
    # the track's own motion, checked against the box content, carries it through
    assert lengths() == [len(truth)]


def crossing_video(folder: Path, n: int = 24, speed: float = 4.0) -> tuple[np.ndarray, ...]:
    """Textured square A (16 px) moving right, behind textured square B (20 px) moving
    left; they cross around frame 12. Returns A's boxes, B's boxes, A's visible part."""
    import cv2

    from vcl.io.video import write_frame_folder

    rng = np.random.default_rng(3)
    w, h = 131, 61
    background = cv2.GaussianBlur(rng.uniform(60, 200, (h, w)), (0, 0), 3)
    tex_a = cv2.GaussianBlur(rng.uniform(0, 255, (16, 16)), (0, 0), 1.0)
    tex_b = cv2.GaussianBlur(rng.uniform(0, 255, (20, 20)), (0, 0), 1.0)
    frames, a_boxes, b_boxes = [], [], []
    for t in range(n):
        img = background.copy()
        ax, bx = int(8 + speed * t), int(w - 30 - speed * t)
        img[22:38, ax : ax + 16] = tex_a
        img[20:40, bx : bx + 20] = tex_b  # B in front
        frames.append(np.repeat(img.astype(np.uint8)[..., None], 3, axis=-1))
        a_boxes.append([ax, 22, ax + 16, 38])
        b_boxes.append([bx, 20, bx + 20, 40])
    write_frame_folder(folder, frames)
    a, b = np.array(a_boxes, float), np.array(b_boxes, float)
    overlap = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    return a, b, 1 - overlap * 16 / 256


def test_track_survives_an_occluding_crossing(tmp_path: Path) -> None:
    a, b, visible = crossing_video(tmp_path / "cross")
    seen = visible >= 0.5  # A has no proposal while mostly hidden (3 frames: TTL 3)
    assert (~seen).sum() == 3
    frames = np.concatenate([np.flatnonzero(seen), np.arange(len(b))])
    boxes = np.concatenate([a[seen], b])
    order = np.argsort(frames, kind="stable")

    def tracks(**kw) -> list[RawTrack]:
        params = IouParams(min_len=1, top=0, **kw)
        return track_video(tmp_path / "cross", frames[order], boxes[order],
                           np.ones(len(frames)), params)  # fmt: skip

    got = {len(t): t for t in tracks()}
    assert sorted(got) == [int(seen.sum()), len(b)]  # A across the gap, B whole
    np.testing.assert_array_equal(got[int(seen.sum())].boxes, a[seen])
    # with the flow alone, A's box follows B while hidden and A's track breaks
    old = tracks(registration="median", verify=False, confirm=0)
    assert max(len(t) for t in old if t.boxes[0, 1] == 22) < seen.sum()


def test_tentative_track_cannot_steal_an_established_object() -> None:
    # An object moving 2 px a frame; at frame 5 a stray box S, slightly taller, starts a
    # track. At frame 6 S overlaps the object's box (IoU 0.95) more than the object's own
    # last box does (0.82): one plain greedy hands the object to the newcomer.
    obj = [np.array([[2.0 * t, 0, 2.0 * t + 20, 20]]) for t in range(10)]
    stray = np.array([[12.0, 0, 32, 21]])
    frames = [np.concatenate([b, stray]) if t == 5 else b for t, b in enumerate(obj)]

    def tracks(confirm: int) -> list[list[int]]:
        tracker = IouTracker(0.35, 3, confirm)
        for t, boxes in enumerate(frames):
            tracker.step(t, boxes, np.ones(len(boxes)))
        return sorted(t.frames.tolist() for t in tracker.finish())

    assert tracks(0) == [[0, 1, 2, 3, 4, 5], [5, 6, 7, 8, 9]]  # the object is split
    assert tracks(3) == [list(range(10)), [5]]  # tentative S matched last, then ended


def test_births_one_track_per_object() -> None:
    # Each frame an object gets a tight box T (score 0.6) and a looser one L around it
    # (IoU 400 / 676 = 0.59, score 0.5); a far object F, and from frame 3 a neighbour N
    # overlapping T by IoU 0.18. ODCT starts a track from every unmatched proposal, so L
    # follows the object as a duplicate; with birth 0.5 L never starts a track (NMS at
    # birth: T wins at frame 0, later T is matched) — not even a one-box one, which it
    # was before — while F and N start theirs.
    frames, scores = [], []
    for t in range(10):
        tight, loose = [2.0 * t, 0, 2 * t + 20, 20], [2.0 * t - 3, -3, 2 * t + 23, 23]
        far = [100.0 + t, 50, 120 + t, 70]
        boxes, s = [tight, loose, far], [0.6, 0.5, 0.4]
        if t >= 3:
            boxes.append([2.0 * t + 14, 0, 2 * t + 34, 20])
            s.append(0.3)
        frames.append(np.array(boxes))
        scores.append(np.array(s))

    def tracks(birth: float) -> list[tuple[int, float]]:
        tracker = IouTracker(0.35, 3, 0, birth)
        for t, boxes in enumerate(frames):
            tracker.step(t, boxes, scores[t])
        return sorted((len(r), round(r.score, 2)) for r in tracker.finish())

    assert tracks(0.0) == [(7, 0.3), (10, 0.4), (10, 0.5), (10, 0.6)]
    assert tracks(0.5) == [(7, 0.3), (10, 0.4), (10, 0.6)]


def test_births_refuse_a_part_or_a_holder_of_a_matched_box() -> None:
    # An object moving 2 px a frame has a tight box T (score 0.6) from frame 0; from
    # frame 3 it also gets a part P of it (its left 8 of 20 px: IoU 0.4 with T) and a box
    # H holding T and 24 px beside it (IoU 400 / 880 = 0.45): --birth 0.5 refuses
    # neither. A neighbour N overlaps T by a quarter of its area, a far object F by
    # nothing. With birth alone P and H start tracks that follow the object as
    # duplicates; with nest 0.7 neither does, and N and F still do.
    frames, scores = [], []
    for t in range(10):
        x = 2.0 * t
        tight, part, holder = [x, 0, x + 20, 20], [x, 0, x + 8, 20], [x, 0, x + 44, 20]
        neighbour = [x + 15, 0, x + 35, 20]  # 5 × 20 of its 400 px² in T: 0.25
        far = [100.0 + t, 50, 120 + t, 70]
        boxes, s = [tight, neighbour, far], [0.6, 0.3, 0.4]
        if t >= 3:
            boxes += [part, holder]
            s += [0.5, 0.45]
        frames.append(np.array(boxes))
        scores.append(np.array(s))

    def tracks(nest: float) -> list[tuple[int, float]]:
        tracker = IouTracker(0.35, 3, 0, birth=0.5, nest=nest)
        for t, boxes in enumerate(frames):
            tracker.step(t, boxes, scores[t])
        return sorted((len(r), round(r.score, 2)) for r in tracker.finish())

    assert tracks(0.0) == [(7, 0.45), (7, 0.5), (10, 0.3), (10, 0.4), (10, 0.6)]
    assert tracks(0.7) == [(10, 0.3), (10, 0.4), (10, 0.6)]


def test_groups_hand_computed() -> None:
    # Established tracks: A and B side by side (apart), D a part of A (a duplicate); T a
    # tentative track. Proposal 0 holds A and B: a group, which neither fits (IoU 0.5 and
    # less); proposal 1 holds A and its part D only: no group; proposal 2 holds B, fits
    # it (IoU 100 / 185 = 0.54) and holds 0.75 of A: a group B may still take, A not.
    # Proposal 3 holds A and B but is far larger than their joint box (IoU 0.12): a
    # window holding two objects and background, as EdgeBoxes gives, is no group.
    tracker = IouTracker(0.35, 3, 3, group=0.7)
    tracker.hits = np.array([5, 5, 5, 1])
    a, b, d, t = [0.0, 0, 10, 10], [11.0, 0, 21, 10], [0.0, 0, 5, 10], [30.0, 0, 40, 10]
    predicted = np.array([a, b, d, t])
    proposals = np.array([[0.0, 0, 21, 10], [0.0, 0, 10.5, 10], [2.5, 0, 21, 10], [0, 0, 60, 30]])
    banned, held, group = tracker.groups(predicted, proposals)
    np.testing.assert_array_equal(group, [True, False, True, False])
    np.testing.assert_array_equal(held, [True, True, True, False])
    # A, B and D (inside it) may not take the group of A and B; A may not take 2
    np.testing.assert_array_equal(
        banned[:, :3],
        [[True, False, True], [True, False, False], [True, False, False], [False] * 3],
    )
    assert not banned[:, 3].any()
    rows, cols = tracker.match(predicted, proposals, banned)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 2)]
    # off, or with only one established member, there is no group
    assert IouTracker(0.35, 3, 3).groups(predicted, proposals) is None
    tracker.hits = np.array([5, 1, 5, 1])
    assert tracker.groups(predicted, proposals) is None


def test_pairs_within_columns_are_every_ordered_pair_of_a_column() -> None:
    rng = np.random.default_rng(2)
    mask = rng.uniform(size=(9, 7)) < 0.4
    mask[:, 0] = False  # an empty column
    mask[:, 1] = False
    mask[4, 1] = True  # a column of one: no pair
    first, second, column = pairs_within_columns(mask)
    want = {
        (i, j, c)
        for c in range(7)
        for i in np.flatnonzero(mask[:, c])
        for j in np.flatnonzero(mask[:, c])
        if i != j
    }
    got = list(zip(first.tolist(), second.tolist(), column.tolist(), strict=True))
    assert len(got) == len(want) and set(got) == want


def side_by_side_video(folder: Path, n: int = 24, speed: float = 3.0) -> tuple[np.ndarray, ...]:
    """Textured squares A and B (16 px, 2 px apart) moving right together on a textured
    background. Returns their boxes (n×4 each)."""
    import cv2

    from vcl.io.video import write_frame_folder

    rng = np.random.default_rng(5)
    w, h = 160, 48
    background = cv2.GaussianBlur(rng.uniform(60, 200, (h, w)), (0, 0), 3)
    tex = [cv2.GaussianBlur(rng.uniform(0, 255, (16, 16)), (0, 0), 1.0) for _ in range(2)]
    frames, a_boxes, b_boxes = [], [], []
    for t in range(n):
        img = background.copy()
        x = round(6 + speed * t)
        img[16:32, x : x + 16] = tex[0]
        img[16:32, x + 18 : x + 34] = tex[1]
        frames.append(np.repeat(img.astype(np.uint8)[..., None], 3, axis=-1))
        a_boxes.append([x, 16, x + 16, 32])
        b_boxes.append([x + 18, 16, x + 34, 32])
    write_frame_folder(folder, frames)
    return np.array(a_boxes, float), np.array(b_boxes, float)


def test_tracks_follow_their_objects_through_a_group(tmp_path: Path) -> None:
    # A and B get their own boxes, except for frames 8-15 (longer than TTL 3), where the
    # only proposal is one box holding both, as motion proposals give two objects moving
    # alike. With groups, both tracks follow their objects through it by registration
    # (boxes without a score) and the group starts no track; without, one track takes
    # the group's box and the other ends.
    a, b = side_by_side_video(tmp_path / "pair")
    merged = np.arange(8, 16)
    frames, boxes = [], []
    for t in range(len(a)):
        if t in merged:
            frames.append(t)
            boxes.append([a[t, 0], a[t, 1], b[t, 2], b[t, 3]])
        else:
            frames += [t, t]
            boxes += [a[t], b[t]]
    frames, boxes = np.array(frames), np.array(boxes)

    def tracks(**kw) -> list[RawTrack]:
        params = IouParams(min_len=1, top=0, **kw)
        return track_video(tmp_path / "pair", frames, boxes, np.ones(len(frames)), params)

    got = tracks()
    assert len(got) == 2
    for track, truth in zip(sorted(got, key=lambda r: r.boxes[0, 0]), (a, b), strict=True):
        np.testing.assert_array_equal(track.frames, np.arange(len(a)))
        np.testing.assert_allclose(track.boxes, truth, atol=1.5)
        np.testing.assert_array_equal(np.isnan(track.scores), np.isin(track.frames, merged))
        assert track.score == 1.0
    assert sorted(len(t) for t in tracks(group=0.0)) != [len(a), len(a)]
    # without the content check (--no-verify) members could not follow a group: none
    plain, off = tracks(verify=False), tracks(verify=False, group=0.0)
    assert [t.frames.tolist() for t in plain] == [t.frames.tolist() for t in off]


def test_only_unmatched_members_whose_content_still_matches_follow_a_group() -> None:
    import cv2

    from vcl.track.iou import box_patches

    rng = np.random.default_rng(6)
    frame = cv2.GaussianBlur(rng.uniform(0, 255, (40, 90)), (0, 0), 1.5).astype(np.float32)
    boxes = np.array([[2.0, 2, 22, 22], [30.0, 2, 50, 22], [60.0, 2, 80, 22]])
    tracker = IouTracker(0.35, 3, 3, group=0.7)
    tracker.template = box_patches(frame, boxes, (1.0, 1.0))
    changed = frame.copy()
    changed[2:22, 60:80] = rng.uniform(0, 255, (20, 20))  # the third one's object is gone
    held, matched = np.ones(3, bool), np.array([0])  # the first matched another proposal
    got = tracker.coasting(held, matched, boxes, (frame, frame), (1.0, 1.0))
    np.testing.assert_array_equal(got, [False, True, True])
    got = tracker.coasting(held, matched, boxes, (frame, changed), (1.0, 1.0))
    np.testing.assert_array_equal(got, [False, True, False])
    not_held = tracker.coasting(np.array([True, False, True]), matched, boxes,
                                (frame, frame), (1.0, 1.0))  # fmt: skip
    np.testing.assert_array_equal(not_held, [False, False, True])


def test_a_member_following_a_group_moves_on_with_its_velocity() -> None:
    # A and B move right 2 px a frame over a texture moving with them (the flow says so);
    # at frame 4 the only proposal is their joint box: both follow their registration,
    # misses stay 0, and the constant-velocity prediction restarts from the followed box.
    import cv2

    rng = np.random.default_rng(7)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (40, 120)), (0, 0), 1.5)
    flow = np.zeros((40, 120, 2), np.float32)
    flow[..., 0] = 2.0
    a, b = np.array([2.0, 2, 22, 22]), np.array([24.0, 2, 44, 22])
    tracker = IouTracker(0.35, 3, 3, group=0.7)
    prev = None
    for t in range(5):
        image = np.roll(texture, 2 * t, axis=1).astype(np.float32)
        shift = np.array([2.0 * t, 0, 2.0 * t, 0])
        boxes = [a + shift, b + shift] if t < 4 else [[a[0] + 8, 2, b[2] + 8, 22]]
        tracker.step(t, np.array(boxes), np.ones(len(boxes)),
                     None if prev is None else flow, (1.0, 1.0), None, (prev, image))  # fmt: skip
        prev = image
    want = np.array([a, b]) + np.array([8.0, 0, 8, 0])
    np.testing.assert_allclose(tracker.last, want, atol=0.01)
    np.testing.assert_allclose(tracker.anchor, want, atol=0.01)
    np.testing.assert_allclose(tracker.velocity, [[2.0, 0, 2, 0]] * 2, atol=0.01)
    assert tracker.misses.tolist() == [0, 0]
    (frame, owners, boxes, scores) = tracker._log[-1]
    assert frame == 4 and len(owners) == 2 and np.isnan(scores).all()


def test_constant_velocity_prediction_moves_the_centre_only() -> None:
    # The matched proposal shrinks from 20 to 12 px wide (a part of the object), its left
    # edge 3 px right, its centre 1 px left: the prediction moves by the centre's motion
    # and keeps the box's size, instead of extrapolating the shrinking into a 4-px box.
    tracker = IouTracker(0.35, 3, 0)
    tracker.step(0, np.array([[10.0, 10, 30, 30]]), np.ones(1))
    tracker.step(1, np.array([[13.0, 14, 25, 26]]), np.ones(1))  # centre (20,20) -> (19,20)
    np.testing.assert_allclose(tracker.velocity, [[-1.0, 0.0, -1.0, 0.0]])
    predicted = tracker.anchor + tracker.velocity * (tracker.misses[:, None] + 1)
    np.testing.assert_allclose(predicted, [[12.0, 14, 24, 26]])


# ------------------------------------------------------------------------ planted rules


def sliding(n: int, step: float, y: float = 10.0, side: float = 10.0) -> list[np.ndarray]:
    return [np.array([[5 + step * t, y, 5 + step * t + side, y + side]]) for t in range(n)]


def test_iou_threshold_rule() -> None:
    # A 10-px box moving 4 px a frame: consecutive IoU = 60 / 140 = 0.4286.
    frames = sliding(12, 4.0)
    assert [len(t) for t in run_tracker(frames, threshold=0.40)] == [12]
    assert [len(t) for t in run_tracker(frames, threshold=0.43)] == [1] * 12


def test_ttl_gaps_and_interpolation() -> None:
    frames = sliding(20, 0.5)
    gap3 = [b if not 8 <= t < 11 else np.zeros((0, 4)) for t, b in enumerate(frames)]
    gap4 = [b if not 8 <= t < 12 else np.zeros((0, 4)) for t, b in enumerate(frames)]
    (one,) = run_tracker(gap3, ttl=3)
    assert one.frames.tolist() == [*range(8), *range(11, 20)]  # gaps are not invented
    assert [len(t) for t in run_tracker(gap4, ttl=3)] == [8, 8]
    assert [len(t) for t in run_tracker(gap4, ttl=4)] == [16]
    filled = interpolate(one, 1)
    assert filled.frames.tolist() == list(range(20))
    np.testing.assert_allclose(filled.boxes, np.concatenate(frames), atol=1e-9)
    assert np.isnan(filled.scores[8:11]).all() and filled.score == 1.0


def test_two_objects_keep_their_ids() -> None:
    a = sliding(15, 1.0, y=0)
    b = sliding(15, 1.0, y=30)
    tracks = run_tracker([np.concatenate([x, y]) for x, y in zip(a, b, strict=True)])
    assert sorted(len(t) for t in tracks) == [15, 15]
    assert all(np.ptp(t.boxes[:, 1]) == 0 for t in tracks)


def raw(n: int, score: float, start: int = 0) -> RawTrack:
    return RawTrack(np.arange(start, start + n), np.tile([0.0, 0, 5, 5], (n, 1)), np.full(n, score))


def test_length_filter_drop_and_split() -> None:
    tracks = [raw(5, 0.9), raw(20, 0.5), raw(50, 0.7), raw(61, 0.8)]
    keep = select(tracks, IouParams(min_len=10, max_len=30, top=0, long="drop"))
    assert [len(t) for t in keep] == [20]
    split = select(tracks, IouParams(min_len=10, max_len=30, top=0, long="split"))
    assert sorted(len(t) for t in split) == [20, 20, 20, 21, 25, 25]
    assert all(10 <= len(t) <= 30 for t in split)
    pieces = [t for t in split if np.isclose(t.score, 0.7)]
    assert np.concatenate([t.frames for t in pieces]).tolist() == list(range(50))


def test_top_n_by_mean_objectness() -> None:
    tracks = [raw(12, s, start=k) for k, s in enumerate([0.2, 0.9, 0.5, 0.7, 0.1])]
    tracks[0].scores[:6] = 1.0  # mean 0.6
    best = select(tracks, IouParams(min_len=10, max_len=30, top=3))
    assert sorted(round(t.score, 3) for t in best) == [0.6, 0.7, 0.9]
    assert [int(t.frames[0]) for t in best] == sorted(int(t.frames[0]) for t in best)


# ------------------------------------------------------------------------------ quality


@pytest.fixture(scope="module")
def static_data(tmp_path_factory) -> Path:
    folder = make_synth(tmp_path_factory.mktemp("static"), videos=4, frames=40)
    jittered_proposals(folder / "gt_tracks.jsonl", folder / "p.zarr")
    return folder


def test_quality_on_jittered_gt_boxes(static_data: Path, invoke) -> None:
    out = static_data / "tracks.jsonl"
    result = invoke("track", static_data / "p.zarr", "--videos", static_data / "videos.jsonl",
                    "-o", out, "--min-len", "25", "--overwrite")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    records = jsonl(out.read_text())
    assert records and all(r["schema"] == "vcl.track/1" for r in records)
    assert all(r["method"] == "iou" and r["params"]["iou"] == 0.35 for r in records)
    report = invoke("track", "eval", out, "--gt", static_data / "gt_tracks.jsonl", "--min-len", 25)
    metrics = json.loads(report.stdout)
    assert metrics["coverage"] >= 0.9 and metrics["purity"] >= 0.95, metrics


def test_odct_as_published_options_reach_the_tracker(static_data: Path, invoke) -> None:
    """--no-verify --confirm 0 --birth 0 --birth-nest 0 --group 0 (ODCT's tracker as
    published) and
    --registration are recorded in every track's params; a bad --registration is a
    usage error."""
    out = static_data / "plain.jsonl"
    result = invoke("track", static_data / "p.zarr", "--videos", static_data / "videos.jsonl",
                    "-o", out, "--min-len", "25", "--no-verify", "--confirm", "0",
                    "--birth", "0", "--birth-nest", "0", "--group", "0", "--registration", "fb",
                    "--overwrite")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    records = jsonl(out.read_text())
    assert records
    assert all(
        (r["params"]["verify"], r["params"]["confirm"], r["params"]["birth"]) == (False, 0, 0.0)
        and r["params"]["nest"] == r["params"]["group"] == 0.0
        and r["params"]["registration"] == "fb"
        for r in records
    )
    bad = invoke("track", static_data / "p.zarr", "--videos", static_data / "videos.jsonl",
                 "-o", static_data / "bad.jsonl", "--registration", "affine")  # fmt: skip
    assert bad.exit_code == ExitCode.USAGE and "registration" in bad.stderr
    assert not (static_data / "bad.jsonl").exists()


def test_flow_registration_beats_no_flow_under_pan(tmp_path: Path, invoke) -> None:
    folder = make_synth(tmp_path, videos=4, camera="pan", frames=40, seed=5)
    jittered_proposals(folder / "gt_tracks.jsonl", folder / "p.zarr", stride=2, distractors=4)
    coverage = {}
    for flag in ("--flow", "--no-flow"):
        out = tmp_path / f"t{flag}.jsonl"
        result = invoke("track", folder / "p.zarr", "--videos", folder / "videos.jsonl", "-o",
                        out, flag, "--min-len", "12", "--iou", "0.5")  # fmt: skip
        assert result.exit_code == 0, result.stderr
        report = invoke("track", "eval", out, "--gt", folder / "gt_tracks.jsonl", "--min-len", 24)
        coverage[flag] = json.loads(report.stdout)["coverage"]
    assert coverage["--flow"] > coverage["--no-flow"], coverage


# --------------------------------------------------------------------------- evaluation


def rec(rid: str, frames: list[int], boxes: list[list[float]], vid: str = "v") -> TrackRecord:
    return TrackRecord(id=rid, video_id=vid, frames=frames, boxes=boxes)


def test_evaluate_hand_computed_case() -> None:
    a = [[0.0, 0, 10, 10]] * 4
    b = [[50.0, 50, 60, 60]] * 4
    gt = [rec("g1", [0, 1, 2, 3], a), rec("g2", [0, 1, 2, 3], b), rec("g3", [0], a[:1])]
    perfect = [rec("p1", [0, 1, 2, 3], a), rec("p2", [0, 1, 2, 3], b)]
    m = evaluate(perfect, gt, min_len=2)
    assert (m["coverage"], m["purity"], m["fragmentation"]) == (1.0, 1.0, 1.0)
    assert m["gt_tracks_long"] == 2 and m["mean_length"] == 4.0
    # p1 follows g1 for three frames, then jumps to g2; p2 follows g1's last two frames.
    switch = [rec("p1", [0, 1, 2, 3], a[:3] + b[:1]), rec("p2", [2, 3], a[:2])]
    m = evaluate(switch, gt, min_len=2)
    assert m["purity"] == pytest.approx((0.75 + 1.0) / 2)
    assert m["coverage"] == 0.5  # g1 (p1: mean IoU 0.75); g2 is not (p1: 0.25)
    assert m["fragmentation"] == 2.0  # g1 is the majority object of p1 and of p2


def test_eval_counts_one_sided_videos_and_none_shared_is_an_error(tmp_path, invoke) -> None:
    """Tracks of other videos used to score coverage 0.0 and purity 0.0, exit 0."""
    from vcl.io.manifest import write_records

    a, b = [[0.0, 0, 10, 10]] * 4, [[50.0, 50, 60, 60]] * 4
    gt = tmp_path / "gt.jsonl"
    write_records(gt, [rec("g1", [0, 1, 2, 3], a, "v1"), rec("g2", [0, 1, 2, 3], b, "v2")])
    stranger = tmp_path / "other.jsonl"
    write_records(stranger, [rec("p1", [0, 1, 2, 3], a, "x1")])
    result = invoke("track", "eval", stranger, "--gt", gt, "--min-len", "2")
    assert result.exit_code == ExitCode.DATA and not result.stdout
    errors = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    assert "other.jsonl" in errors[0] and "gt.jsonl" in errors[0] and "'x1'" in errors[0]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = invoke("track", "eval", empty, "--gt", gt)
    assert result.exit_code == ExitCode.DATA and "empty.jsonl: holds no tracks" in result.stderr
    # v1 is shared, x1 only predicted, v2 only in the ground truth: a tracks file cannot
    # say "ran, found nothing", so v2's object is missed and x1's track is impure
    some = tmp_path / "some.jsonl"
    write_records(some, [rec("p1", [0, 1, 2, 3], a, "v1"), rec("p2", [0, 1], b[:2], "x1")])
    result = invoke("track", "eval", some, "--gt", gt, "--min-len", "2")
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)
    assert (m["coverage"], m["purity"], m["videos"]) == (0.5, 0.5, 1)
    assert (m["videos_only_predicted"], m["videos_only_gt"], m["gt_tracks"]) == (1, 1, 2)
    warnings = [x for x in result.stderr.splitlines() if x.startswith("warning: ")]
    assert len(warnings) == 1 and "1 only in the tracks" in warnings[0]
    assert "1 only in" in warnings[0] and "missed" in warnings[0]


@pytest.mark.parametrize("iou", ["2", "0", "-0.5"])
def test_eval_refuses_an_iou_outside_zero_one(tmp_path, invoke, iou) -> None:
    """--iou 2 used to score every track missed, silently (mean IoU never reaches 2)."""
    from vcl.io.manifest import write_records

    gt = tmp_path / "gt.jsonl"
    write_records(gt, [rec("g1", [0, 1, 2, 3], [[0.0, 0, 10, 10]] * 4, "v1")])
    result = invoke("track", "eval", gt, "--gt", gt, "--min-len", "2", "--iou", iou)
    assert result.exit_code == ExitCode.USAGE and not result.stdout
    assert "--iou" in result.stderr and "(0, 1]" in result.stderr
    result = invoke("track", "eval", gt, "--gt", gt, "--min-len", "2", "--iou", "1")
    assert result.exit_code == 0 and json.loads(result.stdout)["coverage"] == 1.0


# ------------------------------------------------------------------------------ import


VID_XML = """<annotation><folder>ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000</folder>
<filename>{frame:06d}</filename><size><width>64</width><height>48</height></size>
{objects}</annotation>"""
VID_OBJECT = """<object><trackid>{tid}</trackid><name>{name}</name><bndbox>
<xmax>{x1}</xmax><xmin>{x0}</xmin><ymax>{y1}</ymax><ymin>{y0}</ymin></bndbox>
<occluded>0</occluded><generated>0</generated></object>"""


def write_vid(root: Path) -> Path:
    plan = {  # video -> frame -> [(trackid, name, box)]
        "snippet_a": {
            0: [(0, "n02084071", (1, 2, 11, 12)), (1, "n02121808", (30, 5, 40, 20))],
            1: [(0, "n02084071", (2, 2, 12, 12))],
            2: [(1, "n02121808", (31, 6, 41, 21)), (0, "n02084071", (3, 2, 13, 12))],
        },
        "snippet_b": {0: [], 1: [(0, "n01503061", (5, 5, 9, 9))]},
    }
    for video, frames in plan.items():
        folder = root / "Annotations" / "VID" / "train" / video
        folder.mkdir(parents=True)
        for frame, objects in frames.items():
            body = "".join(
                VID_OBJECT.format(tid=t, name=n, x0=b[0], y0=b[1], x1=b[2], y1=b[3])
                for t, n, b in objects
            )
            (folder / f"{frame:06d}.xml").write_text(VID_XML.format(frame=frame, objects=body))
    return root / "Annotations" / "VID" / "train"


def test_imagenet_vid_xml_import(tmp_path: Path, invoke) -> None:
    root = write_vid(tmp_path)
    result = invoke("track", "--method", "gt", root, "-o", "-")
    assert result.exit_code == 0, result.stderr
    tracks = {r["id"]: r for r in jsonl(result.stdout)}
    assert sorted(tracks) == ["snippet_a/0", "snippet_a/1", "snippet_b/0"]
    assert tracks["snippet_a/0"]["frames"] == [0, 1, 2]
    assert tracks["snippet_a/0"]["boxes"] == [[1, 2, 11, 12], [2, 2, 12, 12], [3, 2, 13, 12]]
    assert tracks["snippet_a/1"]["frames"] == [0, 2] and tracks["snippet_b/0"]["frames"] == [1]
    assert all("label" not in r and r["method"] == "gt" for r in tracks.values())
    kept = jsonl(invoke("track", "--method", "gt", root, "--keep-class").stdout)
    assert {r["label"] for r in kept} == {"n02084071", "n02121808", "n01503061"}


def test_imagenet_vid_boxes_are_clipped_to_the_frame_and_outside_is_an_error(
    tmp_path: Path, invoke
) -> None:
    """Boxes past <size> used to pass unclipped; one wholly outside failed only at crops."""
    folder = tmp_path / "vid" / "snippet"
    folder.mkdir(parents=True)

    def frame(index: int, box: tuple) -> None:
        body = VID_OBJECT.format(tid=0, name="n0", x0=box[0], y0=box[1], x1=box[2], y1=box[3])
        (folder / f"{index:06d}.xml").write_text(VID_XML.format(frame=index, objects=body))

    frame(0, (-5, 40, 20, 60))  # the frame is 64x48: left and bottom edges reach past it
    frame(1, (50, 10, 64, 48))  # touches the right and bottom edges: unchanged
    result = invoke("track", "--method", "gt", tmp_path / "vid", "-o", "-")
    assert result.exit_code == 0, result.stderr
    (track,) = jsonl(result.stdout)
    assert track["boxes"] == [[0, 40, 20, 48], [50, 10, 64, 48]]
    assert "1 boxes reached past" in result.stderr
    assert "start past frame 0" not in result.stderr
    frame(2, (64, 10, 80, 20))  # starts at the right edge: no pixel inside
    result = invoke("track", "--method", "gt", tmp_path / "vid", "-o", tmp_path / "t.jsonl")
    assert result.exit_code == ExitCode.DATA and not (tmp_path / "t.jsonl").exists()
    errors = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(errors) == 1 and "000002.xml" in errors[0] and "outside the 64x48" in errors[0]


def test_vid_annotations_numbered_from_one_are_pointed_out(tmp_path: Path, invoke) -> None:
    """ffmpeg writes frames as 000001.jpg, ...; XMLs named alike put every box one frame
    late against a frame folder read by position, silently."""
    folder = tmp_path / "vid" / "clip"
    folder.mkdir(parents=True)
    body = VID_OBJECT.format(tid=0, name="n0", x0=1, y0=1, x1=9, y1=9)
    for index in (1, 2):
        (folder / f"{index:06d}.xml").write_text(VID_XML.format(frame=index, objects=body))
    result = invoke("track", "--method", "gt", tmp_path / "vid", "-o", "-")
    assert result.exit_code == 0 and jsonl(result.stdout)[0]["frames"] == [1, 2]
    assert "start past frame 0 (first: " in result.stderr and "000001.xml" in result.stderr


def test_synth_gt_import_and_perfect_score(static_data: Path, invoke, tmp_path: Path) -> None:
    out = tmp_path / "gt.jsonl"
    assert (
        invoke("track", "--method", "gt", static_data / "gt_tracks.jsonl", "-o", out).exit_code == 0
    )
    gt = read_records(static_data / "gt_tracks.jsonl", TrackRecord)
    imported = read_records(out, TrackRecord)
    assert [t.frames for t in imported] == [t.frames for t in gt]
    assert all(t.label is None for t in imported)
    m = evaluate(imported, gt, min_len=1)
    assert m["coverage"] == 1.0 and m["purity"] == 1.0


# ------------------------------------------------------------------ resume and bad input


def test_resume_skips_finished_videos(static_data: Path, invoke, tmp_path: Path) -> None:
    args = ["track", static_data / "p.zarr", "--videos", static_data / "videos.jsonl",
            "--min-len", "25", "--no-flow"]  # fmt: skip
    fresh = tmp_path / "fresh.jsonl"
    assert invoke(*args, "-o", fresh).exit_code == 0
    lines = fresh.read_text().splitlines()
    first = json.loads(lines[0])["video_id"]
    out = tmp_path / "t.jsonl"
    # An interrupted run: one video finished, and a stray line of an unfinished video.
    params = {"method": "iou", **IouParams(min_len=25, flow=False).to_json()}
    writer = TrackWriter(out, params)
    done = [x for x in lines if json.loads(x)["video_id"] == first]
    writer.write_video(first, [TrackRecord.from_json(json.loads(x)) for x in done])
    writer._stream.write('{"schema": "vcl.track/1", "id": "cut", "video_id": "v0003", "fr')
    writer.close()
    result = invoke(*args, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "resuming: 1 of 4" in result.stderr
    assert out.read_text() == fresh.read_text()
    assert not (tmp_path / "t.jsonl.partial").exists()
    other = TrackWriter(tmp_path / "u.jsonl", params)
    other.write_video(first, [TrackRecord.from_json(json.loads(x)) for x in done])
    other.close()
    refused = invoke(*args, "-o", tmp_path / "u.jsonl", "--ttl", "5")
    assert refused.exit_code == ExitCode.CANNOT_CREATE and "different parameters" in refused.stderr
    assert "--overwrite" in refused.stderr
    # --overwrite starts over (it was refused too: a Makefile passing it stayed stuck)
    redone = invoke(*args, "-o", tmp_path / "u.jsonl", "--ttl", "5", "--overwrite")
    assert redone.exit_code == 0, redone.stderr
    assert (
        "discarded (--overwrite)" in redone.stderr and not (tmp_path / "u.jsonl.partial").exists()
    )
    # a partial of other parameters with no video done holds nothing to keep: started over
    TrackWriter(tmp_path / "w.jsonl", params).close()
    assert invoke(*args, "-o", tmp_path / "w.jsonl", "--ttl", "5").exit_code == 0
    assert invoke(*args, "-o", out).exit_code == ExitCode.CANNOT_CREATE  # exists


def test_bad_inputs(static_data: Path, invoke, tmp_path: Path) -> None:
    videos = static_data / "videos.jsonl"
    f, b, s = np.array([0, 1], np.int32), np.tile([1.0, 1, 9, 9], (2, 1)), np.ones(2)
    stranger = write_proposals(tmp_path / "x.zarr", {"v0000": (f, b, s), "nope": (f, b, s)})
    r = invoke("track", stranger, "--videos", videos, "-o", tmp_path / "a.jsonl")
    assert r.exit_code == ExitCode.DATA and "'nope'" in r.stderr and "not in the videos" in r.stderr
    r = invoke("track", stranger, "--videos", videos, "-o", tmp_path / "a.jsonl", "--keep-going",
               "--min-len", "1")  # fmt: skip
    assert r.exit_code == 3 and "1 of 2 videos failed" in r.stderr
    assert '{"video_id": "nope", "error": "not in the videos manifest"}' in r.stderr
    assert {x["video_id"] for x in jsonl((tmp_path / "a.jsonl").read_text())} == {"v0000"}
    # a missing video fails its own shard only (every shard counted it before)
    from vcl.parallel import shard_of

    other = 1 - shard_of("nope", 2)
    r = invoke("track", stranger, "--videos", videos, "-o", "-", "--shard", f"{other}/2",
               "--min-len", "1")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    late = write_proposals(tmp_path / "late.zarr", {"v0000": (f + 500, b, s), "v0001": (f, b, s)})
    r = invoke("track", late, "--videos", videos, "-o", tmp_path / "b.jsonl", "--min-len", "1")
    assert r.exit_code == ExitCode.DATA and "frame 500" in r.stderr and "v0000" in r.stderr
    r = invoke("track", late, "--videos", videos, "-o", tmp_path / "b.jsonl", "--keep-going",
               "--min-len", "1")  # fmt: skip
    assert r.exit_code == 3 and "1 of 2 videos failed" in r.stderr
    assert '{"video_id": "v0000", "error": ' in r.stderr
    assert {x["video_id"] for x in jsonl((tmp_path / "b.jsonl").read_text())} == {"v0001"}
    empty = write_proposals(tmp_path / "empty.zarr", {})
    r = invoke("track", empty, "--videos", videos, "-o", tmp_path / "c.jsonl")
    assert r.exit_code == ExitCode.DATA and "no videos" in r.stderr
    r = invoke("track", tmp_path / "missing.zarr", "--videos", videos)
    assert r.exit_code == ExitCode.NO_INPUT
    r = invoke("track", empty, "-o", "-")
    assert r.exit_code == ExitCode.USAGE and "--videos" in r.stderr
    bad_gt = tmp_path / "bad.jsonl"
    bad_gt.write_text('{"id": "t", "video_id": "v", "frames": [], "boxes": []}\n')
    r = invoke("track", "--method", "gt", bad_gt)
    assert r.exit_code == ExitCode.DATA and "line 1" in r.stderr
    r = invoke("track", empty, "--videos", videos, "--long", "keep")
    assert r.exit_code == ExitCode.USAGE


def test_a_video_of_another_size_than_its_proposals_is_refused(tmp_path: Path, invoke) -> None:
    """Proposals made on 97×75 videos, then a manifest naming a 131×101 copy of one of them
    (same id): its boxes would be registered, then cropped, at the wrong scale (exit 0
    before). Refused naming the id and both sizes; skipped under --keep-going, the other
    video still tracked. A store that records no sizes (older ones) is still accepted."""
    paths = {}
    for name, (w, h) in {"small": (97, 75), "big": (131, 101)}.items():
        config = SynthConfig(videos=2, width=w, height=h, frames=12, seed=3)
        for i in range(2):
            video, _ = generate_video(config, i, tmp_path / name)
            paths[name, video.id] = tmp_path / name / video.path

    def manifest(path: Path, sources: dict[str, str]) -> Path:
        lines = [json.dumps({"id": v, "path": str(paths[n, v])}) for v, n in sources.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    small = manifest(tmp_path / "small.jsonl", {"v0000": "small", "v0001": "small"})
    made = invoke("proposals", small, "-o", tmp_path / "p.zarr", "--max-side", "0",
                  "--min-area", "50", "-q")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    mixed = manifest(tmp_path / "mixed.jsonl", {"v0000": "big", "v0001": "small"})
    args = ("track", tmp_path / "p.zarr", "--videos", mixed, "--min-len", "2")
    r = invoke(*args, "-o", tmp_path / "t.jsonl")
    assert r.exit_code == ExitCode.DATA, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert "'v0000'" in line and "131x101" in line and "97x75" in line, line
    assert not (tmp_path / "t.jsonl").exists()
    r = invoke(*args, "-o", tmp_path / "k.jsonl", "--keep-going")
    assert (
        r.exit_code == 3 and '{"video_id": "v0000", "error": ' in r.stderr and "131x101" in r.stderr
    )
    assert {x["video_id"] for x in jsonl((tmp_path / "k.jsonl").read_text())} == {"v0001"}
    f, b, s = np.array([0, 1], np.int32), np.tile([1.0, 1, 9, 9], (2, 1)), np.ones(2)
    old = write_proposals(tmp_path / "old.zarr", {"v0000": (f, b, s)})  # no "videos" attrs
    r = invoke("track", old, "--videos", mixed, "--min-len", "1", "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 0, r.stderr


def test_records_carry_schema_method_and_params() -> None:
    (record,) = to_records("vid", [raw(3, 0.5)], "iou", {"ttl": 3})
    line = record.to_json()
    assert line["schema"] == "vcl.track/1" and line["id"] == "vid_t0000"
    assert line["method"] == "iou" and line["params"] == {"ttl": 3} and line["score"] == 0.5


# ------------------------------------------------------ frames proposed on, video ends


def planted_video(folder: Path, n: int = 30) -> Path:
    """A frame folder of n identical 64×48 frames: a textured background and a bright
    square on [10, 30)²; the flow is zero, so a track's box stays on the square."""
    from vcl.io.video import write_frame_folder

    yy, xx = np.mgrid[0:48, 0:64]
    grey = 90 + 40 * np.sin(xx / 4.0) * np.sin(yy / 5.0)
    grey[10:30, 10:30] = 230
    frame = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)
    write_frame_folder(folder, [frame] * n)
    return folder


def manifest_of(path: Path, videos: dict[str, Path]) -> Path:
    lines = [json.dumps({"id": v, "path": str(p)}) for v, p in videos.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_frames_proposed_on_without_boxes_count_towards_ttl(tmp_path: Path, invoke) -> None:
    """A square proposed on frames 0-9 and 20-29 of a 30-frame video whose frames 10-19
    were proposed on but got no box (the store records frame_end 30, stride 1): ten
    misses, so TTL 3 or 9 ends the track and TTL 10 carries it over, with flow and
    without. Before, the tracker stepped only over frames holding proposals: one track
    at any TTL, which --interpolate then filled over frames 10-19."""
    video = planted_video(tmp_path / "planted")
    frames = np.r_[0:10, 20:30].astype(np.int32)
    boxes, scores = np.tile([10.0, 10, 30, 30], (20, 1)), np.ones(20)
    sampled = {"v": {"width": 64, "height": 48, "frame_end": 30, "sampled": 30}}
    store = write_proposals(tmp_path / "p.zarr", {"v": (frames, boxes, scores)},
                            {"stride": 1}, sampled)  # fmt: skip
    manifest = manifest_of(tmp_path / "videos.jsonl", {"v": video})

    def spans(*options: str) -> list[tuple[int, int, int]]:
        out = tmp_path / "t.jsonl"
        r = invoke("track", store, "--videos", manifest, "--min-len", "1", "--overwrite",
                   "-o", out, "-q", *options)  # fmt: skip
        assert r.exit_code == 0, r.stderr
        return sorted((t["frames"][0], t["frames"][-1], len(t["frames"]))
                      for t in jsonl(out.read_text()))  # fmt: skip

    for flow in ("--flow", "--no-flow"):
        for ttl in ("3", "9"):
            assert spans(flow, "--ttl", ttl, "--interpolate") == [(0, 9, 10), (20, 29, 10)]
        assert spans(flow, "--ttl", "10") == [(0, 29, 20)]
        assert spans(flow, "--ttl", "10", "--interpolate") == [(0, 29, 30)]
    # a store that does not say which frames were proposed on: the frames holding
    # proposals are the steps (as documented), so the gap is not seen
    params = IouParams(ttl=3, min_len=1, flow=False)
    (one,) = track_video(video, frames, boxes, scores, params)
    assert one.frames.tolist() == frames.tolist()


def test_tracking_steps_cover_the_frames_proposed_on() -> None:
    from vcl.track.iou import tracking_steps

    held = np.array([14, 4, 4, 2])
    assert tracking_steps(held, None, 1).tolist() == [2, 4, 14]
    assert tracking_steps(held, 20, 2).tolist() == [2, 4, 6, 8, 10, 12, 14]
    assert tracking_steps(np.array([3, 9]), 20, 3).tolist() == [3, 6, 9]
    # a frame off the recorded stride (a hand-edited store) is stepped on too
    assert tracking_steps(np.array([3, 7]), 20, 3).tolist() == [3, 6, 7]


def overdeclared_avi(path: Path) -> Path:
    """An AVI holding 12 frames whose header declares 122 (timestamps with gaps; OpenCV's
    tree.avi declares 444 and holds 68)."""
    import av

    from vcl.io.video import probe

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), "rgb24")
            frame.pts, frame.time_base = i * i, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert probe(path).frame_count == 122
    return path


def test_frames_past_the_decoded_end_are_refused_without_flow(
    tmp_path: Path, invoke, monkeypatch
) -> None:
    """Proposals naming frames 0-14 of a 12-frame video whose header declares 122. With
    --no-flow only the header was checked: exit 0 and tracks on frames the video lacks
    (the flow path, which decodes, refused them). Now a store that does not record the
    frames proposed on is checked by decoding; one recording frame_end (12) must cover
    the proposals, with no decoding."""
    import vcl.track.iou

    video = overdeclared_avi(tmp_path / "short.avi")
    manifest = manifest_of(tmp_path / "videos.jsonl", {"v": video})
    frames = np.arange(15, dtype=np.int32)
    rows = (frames, np.tile([10.0, 10, 30, 30], (15, 1)), np.ones(15))
    old = write_proposals(tmp_path / "old.zarr", {"v": rows})
    args = ("--videos", manifest, "--min-len", "1", "--overwrite")
    for flow in ("--flow", "--no-flow"):
        r = invoke("track", old, *args, flow, "-o", tmp_path / f"old{flow}.jsonl")
        assert r.exit_code == ExitCode.DATA, r.stderr
        assert "ends before" in r.stderr and "short.avi" in r.stderr
    fits = write_proposals(tmp_path / "fits.zarr", {"v": tuple(c[:12] for c in rows)})
    assert invoke("track", fits, *args, "--no-flow", "-o", tmp_path / "fits.jsonl").exit_code == 0
    recorded = {"v": {"width": 64, "height": 48, "frame_end": 12, "sampled": 12}}
    made = write_proposals(tmp_path / "made.zarr", {"v": rows}, {"stride": 1}, recorded)

    def no_decoding(*_: object) -> bool:
        raise AssertionError("decoded the video")

    monkeypatch.setattr(vcl.track.iou, "_has_frame", no_decoding)
    for flow in ("--flow", "--no-flow"):
        r = invoke("track", made, *args, flow, "-o", tmp_path / f"made{flow}.jsonl")
        assert r.exit_code == ExitCode.DATA, r.stderr
        assert "frame 14" in r.stderr and "store" in r.stderr
    made = write_proposals(tmp_path / "made.zarr", {"v": tuple(c[:12] for c in rows)},
                           {"stride": 1}, recorded)  # fmt: skip
    assert invoke("track", made, *args, "--no-flow", "-o", tmp_path / "ok.jsonl").exit_code == 0
    with pytest.raises(DataError, match="frame -1"):  # no-flow accepted it too
        track_video(video, np.array([-1, 0]), rows[1][:2], rows[2][:2], IouParams(flow=False))


# ------------------------------------------------------------------ birth, eval, sampling


def test_a_proposal_refused_a_birth_starts_no_track(tmp_path: Path) -> None:
    """Two overlapping proposals a frame (IoU 0.88) on 5 frames, --birth 0.5, --min-len
    1: the better one's track takes its box each frame, the other starts no track (it
    was a one-box track each frame: 6 tracks)."""
    video = planted_video(tmp_path / "planted", 5)
    frames = np.repeat(np.arange(5), 2)
    boxes = np.tile([[10.0, 10, 40, 40], [11, 11, 41, 41]], (5, 1))
    scores = np.tile([0.9, 0.8], 5)
    for flow in (False, True):
        params = IouParams(min_len=1, top=0, flow=flow, birth=0.5)
        (one,) = track_video(video, frames, boxes, scores, params)
        assert one.frames.tolist() == list(range(5)) and one.score == pytest.approx(0.9)


def test_fragmentation_counts_covered_objects_only() -> None:
    """g1 and g2 live 10 frames. p1 follows g1; p2 and p3 are on g2 4 frames of 10 and
    far from anything the rest: g2 is their majority object, but their mean IoU with it
    is 0.4, so g2 is not covered. Fragmentation is predicted tracks per *covered* object:
    1 (p1 on g1), not (1 + 2) / 2 as when every long object counted. Nothing covered:
    None, not 1."""
    a, b, far = [0.0, 0, 10, 10], [50.0, 50, 60, 60], [200.0, 200, 210, 210]
    frames = list(range(10))
    gt = [rec("g1", frames, [a] * 10), rec("g2", frames, [b] * 10)]
    preds = [rec("p1", frames, [a] * 10), rec("p2", frames, [b] * 4 + [far] * 6),
             rec("p3", frames, [far] * 6 + [b] * 4)]  # fmt: skip
    m = evaluate(preds, gt, min_len=5, iou=0.5)
    assert (m["coverage"], m["fragmentation"]) == (0.5, 1.0)
    assert m["purity"] == pytest.approx((1.0 + 0.4 + 0.4) / 3)
    m = evaluate(preds[1:], gt, min_len=5, iou=0.5)
    assert (m["coverage"], m["fragmentation"]) == (0.0, None)


def test_patches_sample_the_tile_centres() -> None:
    """Boxes are in the edge convention (pixel i covers [i, i + 1), its value at its
    centre i + 0.5); cv2.remap puts pixel i's value at i. On a ramp whose value at x is
    3x + 2y, a box's 12×12 patch holds the ramp at its tile centres; the samples were
    half a pixel down-right (+2.5) before."""
    from vcl.track.iou import PATCH, box_patches

    yy, xx = np.mgrid[0:60, 0:80].astype(np.float32) + 0.5  # pixel centres
    ramp = 3 * xx + 2 * yy
    boxes = np.array([[10.0, 8.0, 46.0, 32.0], [20.3, 15.7, 33.1, 41.9]])
    t = (np.arange(PATCH) + 0.5) / PATCH
    for scale in ((1.0, 1.0), (0.5, 0.5)):
        got = box_patches(ramp * scale[0], boxes / scale[0], scale)
        for box, patch in zip(boxes, got, strict=True):
            cx, cy = box[0] + (box[2] - box[0]) * t, box[1] + (box[3] - box[1]) * t
            want = (3 * cx[None, :] + 2 * cy[:, None]) * scale[0]
            # remap's bilinear weights are fixed-point (1/32 px): 5/64 at most
            np.testing.assert_allclose(patch.reshape(PATCH, PATCH), want, atol=0.08)


def test_a_video_too_small_for_flow_is_tracked_without_flow(tmp_path: Path, invoke) -> None:
    """A 17×1200 video is 5×320 at --flow-side 320, which DIS cannot take: it is tracked
    as with --no-flow (the same tracks), with a warning naming it and both sizes.
    Before: exit 70 with OpenCV's message, not skipped by --keep-going."""
    from vcl.io.video import write_video

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (1200, 17, 3), dtype=np.uint8) for _ in range(6)]
    video = tmp_path / "tall.mp4"
    write_video(video, frames, fps=10)
    steps = np.arange(6, dtype=np.int32)
    boxes = np.array([[2.0, 100 + 10 * t, 15, 300 + 10 * t] for t in range(6)])
    sampled = {"v": {"width": 17, "height": 1200, "frame_end": 6, "sampled": 6}}
    store = write_proposals(tmp_path / "p.zarr", {"v": (steps, boxes, np.ones(6))},
                            {"stride": 1}, sampled)  # fmt: skip
    manifest = manifest_of(tmp_path / "videos.jsonl", {"v": video})
    out = {}
    for flow in ("--flow", "--no-flow"):
        r = invoke("track", store, "--videos", manifest, "--min-len", "2", flow,
                   "-o", tmp_path / f"t{flow}.jsonl")  # fmt: skip
        assert r.exit_code == 0, r.stderr
        tracks = jsonl((tmp_path / f"t{flow}.jsonl").read_text())
        out[flow] = [(t["frames"], t["boxes"]) for t in tracks]
        warnings = [x for x in r.stderr.splitlines() if x.startswith("warning: ")]
        if flow == "--flow":
            assert warnings == [
                f"warning: {video}: frames of 17x1200 px (5x320 at the flow's scale) are too "
                "small or too elongated for DIS optical flow: tracked without flow registration "
                "(as --no-flow)"
            ]
        else:
            assert warnings == []
    assert out["--flow"] == out["--no-flow"] and len(out["--flow"]) == 1


def test_a_failed_run_to_stdout_writes_no_track(tmp_path: Path, invoke) -> None:
    """`vcl track -o -` failing on its second video: stdout gets nothing, as with
    `vcl videos`. Before, the first video's tracks were already in the pipe and
    `vcl crops -` made a complete-looking store of them. --keep-going, which finishes
    the run (exit 3), writes the tracks of the videos that worked."""
    video = planted_video(tmp_path / "planted", n=12)
    manifest = manifest_of(tmp_path / "videos.jsonl", {"a": video, "b": video})
    rows = (np.arange(12, dtype=np.int32), np.tile([10.0, 10, 30, 30], (12, 1)), np.ones(12))
    late = (rows[0] + 20, *rows[1:])  # frames 20-31 of a 12-frame video
    store = write_proposals(tmp_path / "p.zarr", {"a": rows, "b": late})
    args = ("track", store, "--videos", manifest, "--min-len", "2", "-o", "-")
    failed = invoke(*args)
    assert failed.exit_code == ExitCode.DATA and "ends before" in failed.stderr
    assert failed.stdout == ""
    skipped = invoke(*args, "--keep-going")
    assert skipped.exit_code == 3
    assert {t["video_id"] for t in jsonl(skipped.stdout)} == {"a"}
    fine = write_proposals(tmp_path / "fine.zarr", {"a": rows, "b": rows})
    both = invoke("track", fine, "--videos", manifest, "--min-len", "2", "-o", "-")
    assert both.exit_code == 0 and [t["video_id"] for t in jsonl(both.stdout)] == ["a", "b"]
