"""ODCT's greedy IoU tracker: link frame-wise proposals into class-agnostic tracks.

ODCT §IV (after Cuffaro et al., ECCV-W 2016): at each frame, every active track's last
box is *registered* onto the next frame by shifting it with the optical flow inside it,
then shifted boxes are matched greedily to the next frame's proposals in decreasing
order of IoU, accepting IoU > θ. An unmatched track stays alive for up to TTL frames
(its box keeps following the flow); an unmatched proposal starts a new track. A track's
score is the mean objectness of its boxes; tracks whose length is outside [l, L] are
dropped (or, with ``long="split"``, longer ones are cut into equal pieces), and the N
best per video by score are kept.

Registration here is the **median** of the DIS flow sampled on a g×g grid inside the
box (g = 7): a pure translation, robust to the background pixels a loose box holds
(an affine fit would also model scale, but is noisier on small boxes). Flow is
computed on frames resized so their longer side is ``flow_side`` — shrunk for large
videos, and enlarged for small ones, because DIS's fast preset works at 1/4
resolution, where the objects of a 160×120 video would be a few pixels wide.

Proposal frames are the "steps": the tracker advances from one frame holding proposals
to the next (proposals made with a stride give tracks with that stride). The
association step (`vcl.track.associate`) finds the few track × proposal pairs that
can pass θ with bitsets, computes their IoU, and runs the greedy in vector rounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from vcl.errors import DataError
from vcl.track.associate import associate, greedy_pairs

LONG_POLICIES = ("drop", "split")
GRID = 7  # flow samples per box side for registration (odd: the median is a sample)


@dataclass(frozen=True)
class IouParams:
    """Parameters of the IoU tracker; defaults are ODCT's."""

    iou: float = 0.35  # θ: accept a match when IoU > θ
    ttl: int = 3  # frames a track survives without a match
    min_len: int = 40  # l: shortest track kept (boxes)
    max_len: int = 100  # L: longest track kept (boxes)
    long: str = "drop"  # a track longer than L: "drop" (ODCT) or "split" into pieces
    top: int = 15  # N best tracks per video by score (0: all)
    interpolate: bool = False  # fill frames a track missed by linear interpolation
    flow: bool = True  # register boxes with optical flow
    flow_side: int = 320  # frames are resized (down or up) to this longer side for flow
    dis_preset: str = "fast"  # DIS preset: ultrafast | fast | medium

    def validate(self) -> None:
        checks = [
            (0.0 <= self.iou < 1.0, f"--iou must be in [0, 1), got {self.iou}"),
            (self.ttl >= 0, f"--ttl must be >= 0, got {self.ttl}"),
            (1 <= self.min_len <= self.max_len, "need 1 <= --min-len <= --max-len"),
            (self.long in LONG_POLICIES, f"--long must be one of {', '.join(LONG_POLICIES)}"),
            (self.top >= 0, f"--top must be >= 0, got {self.top}"),
            (self.flow_side >= 16, f"--flow-side must be >= 16, got {self.flow_side}"),
            (self.dis_preset in ("ultrafast", "fast", "medium"), "bad --dis-preset"),
        ]
        for ok, problem in checks:
            if not ok:
                raise ValueError(problem)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class RawTrack:
    """A track before it becomes a record: frames (T,), boxes (T×4), scores (T,).

    ``scores`` is NaN at interpolated frames (they carry no objectness).
    """

    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    @property
    def score(self) -> float:
        s = self.scores[np.isfinite(self.scores)]
        return float(s.mean()) if s.size else 0.0

    def __len__(self) -> int:
        return len(self.frames)


# --------------------------------------------------------------------------- association


def greedy_match(overlap: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy assignment in decreasing order of ``overlap`` (A×P), keeping values > θ.

    Returns ``(rows, cols)``, exactly what sequential greedy gives (sort the pairs by
    value, ties by row then column; take a pair when both ends are free); see
    `vcl.track.associate.greedy_rounds` for how it runs in a few vector rounds.
    """
    overlap = np.asarray(overlap, np.float32)
    rows, cols = np.nonzero(overlap > np.float32(threshold))
    return greedy_pairs(rows, cols, overlap[rows, cols], *overlap.shape)


def greedy_match_reference(overlap: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """The plain sequential greedy (sort pairs, take when both free): the tests' twin."""
    pairs = sorted(
        ((overlap[i, j], i, j) for i in range(overlap.shape[0]) for j in range(overlap.shape[1])),
        key=lambda p: (-p[0], p[1], p[2]),
    )
    used_r, used_c, out = set(), set(), []
    for v, i, j in pairs:
        if v > threshold and i not in used_r and j not in used_c:
            used_r.add(i)
            used_c.add(j)
            out.append((i, j))
    return out


def flow_shift(boxes: np.ndarray, flow: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Boxes (A×4, source px) moved by the median flow inside each (one translation each).

    ``flow`` (h×w×2) is computed on frames resized by ``scale = (sx, sy)``; the flow is
    sampled on a GRID×GRID lattice of points inside every box (all boxes at once).
    """
    if len(boxes) == 0:
        return boxes
    h, w = flow.shape[:2]
    sx, sy = scale
    t = (np.arange(GRID) + 0.5) / GRID  # (g,) relative positions inside the box
    xs = (boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * t) * sx  # (A, g)
    ys = (boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * t) * sy
    xi = np.clip(xs.astype(np.int64), 0, w - 1)[:, None, :]  # (A, 1, g)
    yi = np.clip(ys.astype(np.int64), 0, h - 1)[:, :, None]  # (A, g, 1)
    at = (yi * w + xi).reshape(len(boxes), GRID * GRID)  # (A, g²) flat pixel indices
    samples = flow.reshape(-1, 2).take(at, axis=0)  # (A, g², 2)
    # the median of an odd count is its middle order statistic: a partition, no sort
    d = np.partition(samples, GRID * GRID // 2, axis=1)[:, GRID * GRID // 2]  # (A, 2)
    d = d / np.array([sx, sy])
    return boxes + np.concatenate([d, d], axis=1)


class IouTracker:
    """The per-frame state machine; feed frames in order with `step`, then `finish`.

    Active tracks are three arrays (ids, last boxes, misses), in order of creation.
    Every proposal of a frame joins a track (its match's, or a new one), so the log of
    a frame is just its proposals with an owner id each; tracks are assembled once, at
    the end. Ids are ``frame offset + proposal index`` for new tracks (increasing, with
    gaps), which keeps creation order without counting.
    """

    def __init__(self, threshold: float = 0.35, ttl: int = 3):
        self.threshold, self.ttl = threshold, ttl
        self.ids = np.zeros(0, np.int64)  # (A,) ids of active tracks
        self.last = np.zeros((0, 4), np.float64)  # (A, 4) each active track's box
        self.misses = np.zeros(0, np.int64)  # (A,) steps since the last match
        self.next_id = 0
        self._log: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []

    def predict(self, flow: np.ndarray | None, scale: tuple[float, float]) -> np.ndarray:
        return self.last if flow is None else flow_shift(self.last, flow, scale)

    def step(
        self,
        frame: int,
        boxes: np.ndarray,
        scores: np.ndarray,
        flow: np.ndarray | None = None,
        scale: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        """Advance to ``frame`` with its proposals (P×4, P); ``flow`` from the last step."""
        boxes = np.array(boxes, np.float64).reshape(-1, 4)  # a copy: the log keeps it
        n = len(boxes)
        predicted = self.predict(flow, scale)
        rows, cols = associate(predicted, boxes, self.threshold)
        owner = np.arange(self.next_id, self.next_id + n)  # (P,) new ids by default
        owner[cols] = self.ids[rows]
        self.next_id += n
        self._log.append((frame, owner, boxes, np.array(scores, np.float64).reshape(-1)))
        # Unmatched tracks keep following the flow until their TTL runs out.
        misses = self.misses + 1
        misses[rows] = 0
        last = predicted.copy() if predicted is self.last else predicted
        last[rows] = boxes[cols]
        alive = misses <= self.ttl
        fresh = np.ones(n, bool)
        fresh[cols] = False
        self.ids = np.concatenate([self.ids[alive], owner[fresh]])
        self.last = np.concatenate([last[alive], boxes[fresh]])
        self.misses = np.concatenate([misses[alive], np.zeros(n - len(cols), np.int64)])

    def finish(self) -> list[RawTrack]:
        """All tracks ever started, in order of their first frame."""
        if not self._log:
            return []
        ids = np.concatenate([e[1] for e in self._log])
        frames = np.repeat([e[0] for e in self._log], [len(e[1]) for e in self._log])
        boxes = np.concatenate([e[2] for e in self._log]).reshape(-1, 4)
        scores = np.concatenate([e[3] for e in self._log])
        order = np.argsort(ids, kind="stable")  # log is in frame order already
        ids, frames, boxes, scores = ids[order], frames[order], boxes[order], scores[order]
        cuts = np.flatnonzero(np.diff(ids)) + 1
        return [
            RawTrack(f, b, s)
            for f, b, s in zip(
                np.split(frames, cuts), np.split(boxes, cuts), np.split(scores, cuts), strict=True
            )
        ]


# ------------------------------------------------------------------------------ selection


def interpolate(track: RawTrack, stride: int) -> RawTrack:
    """Fill the frames a track skipped (at the proposals' ``stride``) linearly; score NaN."""
    f0, f1 = int(track.frames[0]), int(track.frames[-1])
    full = np.arange(f0, f1 + 1, stride)
    full = np.union1d(full, track.frames)
    if len(full) == len(track.frames):
        return track
    boxes = np.stack([np.interp(full, track.frames, track.boxes[:, c]) for c in range(4)], 1)
    scores = np.full(len(full), np.nan)
    scores[np.searchsorted(full, track.frames)] = track.scores
    return RawTrack(full, boxes, scores)


def select(tracks: Iterable[RawTrack], params: IouParams) -> list[RawTrack]:
    """Length filter [l, L] (drop or split longer ones), then the ``top`` best by score.

    Length is the number of boxes. ``split`` cuts a track of n > L boxes into
    ceil(n / L) nearly equal consecutive pieces (each > L / 2), keeping those ≥ l.
    The result is ordered by first frame, then score.
    """
    kept: list[RawTrack] = []
    for t in tracks:
        n = len(t)
        if n > params.max_len:
            if params.long == "drop":
                continue
            k = -(-n // params.max_len)
            bounds = np.linspace(0, n, k + 1).round().astype(int)
            pieces = [
                RawTrack(t.frames[a:b], t.boxes[a:b], t.scores[a:b]) for a, b in pairwise(bounds)
            ]
        else:
            pieces = [t]
        kept.extend(p for p in pieces if params.min_len <= len(p) <= params.max_len)
    scores = np.array([t.score for t in kept])
    order = np.argsort(-scores, kind="stable")
    if params.top:
        order = order[: params.top]
    best = [kept[i] for i in order]
    best.sort(key=lambda t: (int(t.frames[0]), -t.score))
    return best


# --------------------------------------------------------------------------------- video


def _grey_frames(
    path: Path, side: int, wanted: np.ndarray, up: float
) -> Iterator[tuple[int, np.ndarray]]:
    """Grey frames (h×w uint8) at the wanted indices, decoded once, in order.

    Frames are shrunk by the reader to ``side``, or enlarged by ``up`` when smaller:
    DIS's coarse presets work at 1/4 resolution, where a 10-px object of a small video
    would be 2 px, so small videos get flow on an enlarged copy.
    """
    import cv2

    from vcl.io.video import VideoReader

    # From frame 0 (decoding order numbers frames; a seek numbers them by timestamp,
    # which is wrong in files with broken timestamps, e.g. OpenCV's tree.avi).
    reader = VideoReader(path, max_side=side, end=int(wanted[-1]) + 1)
    want = set(wanted.tolist())
    for index, rgb in reader:
        if index in want:
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            if up != 1.0:
                grey = cv2.resize(grey, None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR)
            yield index, grey


def proposal_stride(frames: np.ndarray) -> int:
    """The proposals' frame step: the smallest gap between frames holding proposals."""
    steps = np.diff(np.unique(frames))
    return int(steps.min()) if steps.size else 1


def track_video(
    video_path: str | Path,
    frames: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    params: IouParams,
) -> list[RawTrack]:
    """Tracks of one video from its proposals (rows: frame (N,), box (N×4), score (N,)).

    Decodes the video once (at ``flow_side``) when flow registration is on; a proposal
    frame the video does not have is a DataError naming the video.
    """
    from vcl.motion import dense_flow

    frames = np.asarray(frames, np.int64)
    if len(frames) == 0:
        return []
    order = np.argsort(frames, kind="stable")
    frames, boxes, scores = frames[order], np.asarray(boxes)[order], np.asarray(scores)[order]
    steps, starts = np.unique(frames, return_index=True)
    ends = np.append(starts[1:], len(frames))
    tracker = IouTracker(params.iou, params.ttl)
    from vcl.io.video import VideoReader

    reader = VideoReader(video_path, max_side=params.flow_side)
    declared = reader.info.frame_count
    if not params.flow and declared and steps[-1] >= declared:  # no decoding to check
        raise DataError(
            f"proposals name frame {int(steps[-1])} but the video has {declared} frames",
            video_path,
            "the proposals were made from another video",
        )
    if params.flow:
        up = max(1.0, params.flow_side / max(reader.size))
        scale = (reader.scale[0] * up, reader.scale[1] * up)
        decoded = _grey_frames(Path(video_path), params.flow_side, steps, up)
    prev = None
    for k, frame in enumerate(steps):
        flow = None
        if params.flow:
            got = next(decoded, None)
            if got is None or got[0] != frame:
                raise DataError(
                    f"proposals name frame {int(frame)} but the video ends before it",
                    video_path,
                    "the proposals were made from another video",
                )
            grey = got[1]
            if prev is not None:
                flow = dense_flow(prev, grey, "dis", params.dis_preset)
            prev = grey
        sl = slice(starts[k], ends[k])
        tracker.step(int(frame), boxes[sl], scores[sl], flow, scale if params.flow else (1, 1))
    tracks = tracker.finish()
    if params.interpolate:
        stride = proposal_stride(steps)
        tracks = [interpolate(t, stride) for t in tracks]
    return select(tracks, params)
