"""ODCT's greedy IoU tracker: link frame-wise proposals into class-agnostic tracks.

ODCT §IV (after Cuffaro et al., ECCV-W 2016): at each frame, every active track's last
box is *registered* onto the next frame by shifting it with the optical flow inside it,
then shifted boxes are matched greedily to the next frame's proposals in decreasing
order of IoU, accepting IoU > θ. An unmatched track stays alive for up to TTL frames
(its box keeps following the flow); an unmatched proposal starts a new track. A track's
score is the mean objectness of its boxes; tracks whose length is outside [l, L] are
dropped (or, with ``long="split"``, longer ones are cut into equal pieces), and the N
best per video by score are kept.

Registration (``registration="median"``, the default) moves the box by the median of
the DIS flow sampled on a 7×7 grid inside it: a pure translation, robust to the
background pixels a loose box holds (an affine fit would also model scale, but is
noisier on small boxes). ``"fb"`` is Kalal's **Median-Flow** on dense flow: a 10×10
grid of points goes forward with the flow F and back with the backward flow B; the
points whose forward–backward error is at most the median vote. It needs a second
flow a frame and, measured on synth (benchmarks/quality_track.py), does not help there:
a periodic texture aliased by one period forward is aliased by one period backward
too, so the FB error passes it. Flow is computed on frames resized so their longer
side is ``flow_side`` — shrunk for large videos, and enlarged for small ones, because
DIS's fast preset works at 1/4 resolution, where the objects of a 160×120 video would
be a few pixels wide.

Flow alone is not enough on small, fast objects with periodic texture (``vcl synth``'s
rings and checkers moving about one texture period a frame): the flow inside them
aliases or sticks to zero — consistently both ways, so the forward–backward check
keeps it. With ``verify`` (default) each track's flow shift competes with its own
constant-velocity predictions (its last matched box moved by the last matched motion
times the steps since — SORT's prediction, which also carries a track through a miss —
and its box moved by the last registration's motion) and with no motion; the candidate
whose content in the next frame best matches the track's *template* (its box's content
when it last matched, 12×12 resampled patches) by NCC is the registration — the
appearance check Median-Flow applies to its points, applied to whole boxes, and the
template of template trackers, so an occluder passing over the box does not pull it
along. No threshold is involved. The constant-velocity prediction moves the last
matched box by its *centre's* motion: a proposal's size jitters (a tight box, then a
part), and extrapolating that jitter shrank or swelled the prediction off its object
(coverage 0.663 -> 0.667 with motion proposals, and with ``nest`` 0.674 -> 0.706).

New tracks are **tentative** until they have matched ``confirm`` boxes (3, as SORT's
``min_hits`` and DeepSORT's ``n_init``): established tracks are matched first, then
tentative ones against the proposals left, and a tentative track ends at its first
miss. Without it a stray proposal overlapping an object starts a duplicate track that,
registered onto the same object, takes the object's next proposal whenever its box
happens to overlap it more — the main cause of broken tracks measured on synth.
``confirm=0`` is the plain single greedy.

One object gets several proposals a frame (a tight box, a looser one, a part), and in
ODCT's tracker each unmatched one starts a track: duplicates that follow the object
too, take its best box from each other in turn, and each end up shorter than the
length filter. With ``birth`` (0.5) an unmatched proposal starts a track only if it
overlaps no matched proposal, and no better-scored unmatched one, by IoU > birth (NMS
at birth): one new track per object. Measured on synth with motion proposals
(benchmarks/quality_track.py) it raised coverage from 0.59 to 0.66 (0.62 to 0.67 with
today's velocity); with
jittered ground-truth boxes it changes nothing. ``birth=0`` starts a track from every
unmatched proposal, as published. IoU misses the loosest duplicates: a part of a
tracked object, or a box holding it and its neighbour, overlaps its tight box by IoU
0.3–0.5. Such a track then converges on the object and, once established, takes its
boxes from the track that was there first. With ``nest`` (0.7, the "Min" overlap of
MTCNN's NMS) a proposal also starts no track when its intersection with a matched
proposal exceeds 0.7 of the smaller box's area: it lies inside the match or holds it.
Only matched boxes refuse births so: among the unmatched, the best-scored box is
often the region of two objects moving together, which would refuse both objects'
own boxes (coverage 0.63).
Measured (motion proposals, 5 seeds): coverage 0.667 -> 0.706, purity 0.856 -> 0.871,
alike for 0.5-0.8; unchanged on jittered ground truth. A small object in front of a
tracked big one waits for its birth until they part.

Two objects that touch and move alike make one region of motion, so motion proposals
give one box holding both (benchmarks/quality_track.py: most of the frames where an
object has no fitting proposal), for longer than TTL; the tracker as published hands
that box to one of the two tracks, whose box swells, and ends the other. The blob
trackers' *group* (McKenna et al., CVIU 2000; Haritaoglu et al.'s W4) keeps both: with
``group`` (0.7), a proposal holding the registered boxes of two established tracks
apart from each other (each inside by more than 0.7 of its area, the two overlapping by
less than half of the smaller) is their group when it is their joint box (IoU > 0.5
with the box of all the tracks it holds; EdgeBoxes' windows holding two objects and
background are not). A member may not take it unless its box fits it (IoU > 0.5: the
big object in front of a small one), the group starts no track, and a member left
unmatched follows its registration — the motion it shares with the group — with no TTL
while the group lasts, as long as its box's content still matches its template (NCC >
0.5; below that it has lost its object, and misses as usual). Such boxes carry no score
(NaN, as interpolated ones). Without flow or ``verify`` there is no content to check,
and no groups. Measured (motion proposals, 5 seeds ×
20 videos): coverage 0.706 -> 0.768, purity 0.871 -> 0.879 (0.780 / 0.866 without the
content check); unchanged on jittered ground truth, where no proposal holds two objects.

The frames proposed on are the "steps": the tracker advances from one to the next
(proposals made with a stride give tracks with that stride), and a frame proposed on
that got no box is a step without proposals, a miss for every track (TTL counts
steps). A store that does not record which frames were proposed on (``frame_end``)
gives only the frames holding proposals. The
association step (`vcl.track.associate`) finds the few track × proposal pairs that
can pass θ with a sort-and-sweep, computes their exact IoU and runs the sequential
greedy, compiled (`vcl.track.match_kernel`).
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
REGISTRATIONS = ("fb", "median")
GRID = 7  # flow samples per box side for registration (odd: the median is a sample)
FB_GRID = 10  # Median-Flow's 10×10 point grid inside the box (Kalal et al. 2010)
PATCH = 12  # samples per box side when comparing a box's content across frames
GROUP_APART = 0.5  # two group members overlap by less than this share of the smaller box
GROUP_FIT = 0.5  # IoU of a group's box with its members' joint box; a member fitting it so
# (a big object in front of a small one) may still take it
COAST_NCC = 0.5  # a member follows a group while its box content matches its template so
_CENTRE = np.array([[0.5, 0.0], [0.0, 0.5], [0.5, 0.0], [0.0, 0.5]])  # xyxy @ it: centre


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
    registration: str = "median"  # "median" of the flow in the box; "fb": Median-Flow
    verify: bool = True  # flow vs the track's own motion vs none: best box-content NCC wins
    confirm: int = 3  # tentative until this many matches: matched last, end at a miss
    birth: float = 0.5  # no new track from a proposal overlapping a matched or better one more
    nest: float = 0.7  # ... nor from one nested with a matched one (share of the smaller)
    group: float = 0.7  # a proposal holding 2+ tracks' boxes (share inside) is their group

    def validate(self) -> None:
        checks = [
            (0.0 <= self.iou < 1.0, f"--iou must be in [0, 1), got {self.iou}"),
            (self.ttl >= 0, f"--ttl must be >= 0, got {self.ttl}"),
            (1 <= self.min_len <= self.max_len, "need 1 <= --min-len <= --max-len"),
            (self.long in LONG_POLICIES, f"--long must be one of {', '.join(LONG_POLICIES)}"),
            (self.top >= 0, f"--top must be >= 0, got {self.top}"),
            (self.flow_side >= 16, f"--flow-side must be >= 16, got {self.flow_side}"),
            (self.dis_preset in ("ultrafast", "fast", "medium"), "bad --dis-preset"),
            (0.0 <= self.birth <= 1.0, f"--birth must be in [0, 1], got {self.birth}"),
            (0.0 <= self.nest <= 1.0, f"--birth-nest must be in [0, 1], got {self.nest}"),
            (0.0 <= self.group <= 1.0, f"--group must be in [0, 1], got {self.group}"),
            (
                self.registration in REGISTRATIONS,
                f"--registration must be {' or '.join(REGISTRATIONS)}, got {self.registration!r}",
            ),
        ]
        for ok, problem in checks:
            if not ok:
                raise ValueError(problem)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class RawTrack:
    """A track before it becomes a record: frames (T,), boxes (T×4), scores (T,).

    ``scores`` is NaN at interpolated frames and at frames the track followed through a
    group by its registration (they carry no objectness).
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
    value, ties by row then column; take a pair when both ends are free), compiled in
    `vcl.track.match_kernel`.
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
    theta = np.float32(threshold)  # compared in float32, as `greedy_match` does
    for v, i, j in pairs:
        if v > theta and i not in used_r and j not in used_c:
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


def grid_points(
    boxes: np.ndarray, scale: tuple[float, float], grid: int
) -> tuple[np.ndarray, np.ndarray]:
    """A grid×grid lattice of points inside every box (A×4, source px), in flow pixels.

    Returns the maps ``(x, y)``, (A, grid²) float32 each, at the centres of a grid×grid
    tiling of each box (row-major), ready for ``cv2.remap``. Boxes use the edge
    convention (pixel i covers [i, i + 1)), remap the centre one (pixel i's value is at
    i): the maps are the tile centres less half a pixel, so a sample is the image's
    value at the tile centre, not half a pixel down-right of it.
    """
    t = ((np.arange(grid) + 0.5) / grid).astype(np.float32)  # (g,) relative positions
    b = np.asarray(boxes, np.float32)
    half = np.float32(0.5)
    xs = (b[:, 0:1] + (b[:, 2:3] - b[:, 0:1]) * t) * np.float32(scale[0]) - half  # (A, g)
    ys = (b[:, 1:2] + (b[:, 3:4] - b[:, 1:2]) * t) * np.float32(scale[1]) - half
    a = len(b)
    x = np.empty((a, grid, grid), np.float32)
    y = np.empty((a, grid, grid), np.float32)
    x[:] = xs[:, None, :]
    y[:] = ys[:, :, None]
    return x.reshape(a, grid * grid), y.reshape(a, grid * grid)


def sample_flow(flow: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``flow`` (h×w×c) at maps x, y (A×n, flow px; border clamped).

    Returns (A, n, c) float32, or (A, n) for a single-channel image.
    """
    import cv2

    if x.size == 0:
        return np.zeros((*x.shape, *flow.shape[2:]), np.float32)
    return cv2.remap(flow, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def fb_shift(
    boxes: np.ndarray,
    flow: np.ndarray,
    back: np.ndarray,
    scale: tuple[float, float],
    grid: int = FB_GRID,
) -> np.ndarray:
    """Boxes (A×4, source px) moved by Kalal's Median-Flow on dense flow (one shift each).

    Median-Flow (Kalal, Mikolajczyk & Matas, ICPR 2010): points x_i on a grid×grid
    lattice in the box are tracked forward, x'_i = x_i + F(x_i), and back again,
    x''_i = x'_i + B(x'_i), with ``flow`` F (prev → next) and ``back`` B (next → prev),
    both h×w×2 on frames resized by ``scale``. The forward–backward error
    e_i = ‖x''_i − x_i‖ flags points whose flow is not self-consistent — the flow of a
    periodic texture aliased by a whole period one way is not undone the other way,
    occluded and border points fail too — and the box moves by the median F(x_i) over
    the points with e_i ≤ median_j e_j (the better half). Points whose forward position
    leaves the frame do not vote.
    """
    if len(boxes) == 0:
        return boxes
    h, w = flow.shape[:2]
    x, y = grid_points(boxes, scale, grid)  # (A, n) each
    d = sample_flow(flow, x, y)  # (A, n, 2) forward displacement
    ax, ay = x + d[..., 0], y + d[..., 1]  # where the points land (remap convention)
    inside = (ax >= 0) & (ax <= w - 1) & (ay >= 0) & (ay <= h - 1)
    err = np.linalg.norm(d + sample_flow(back, ax, ay), axis=-1)  # (A, n) FB error
    err[~inside] = np.inf
    med = np.median(err, axis=1, keepdims=True)  # (A, 1); inf when most points left
    keep = (err <= med) & inside
    keep[~keep.any(axis=1)] = True  # every point left the frame: plain median
    shift = masked_median(d, keep) / np.array([scale[0], scale[1]])  # (A, 2)
    return boxes + np.concatenate([shift, shift], axis=1)


def masked_median(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Median over axis 1 of values (A×n×c) where ``keep`` (A×n, ≥ 1 true a row): (A, c).

    One sort with the dropped entries pushed to the end, then the middle one or two of
    each row's kept count (``np.nanmedian`` does the same row by row, 20× slower).
    """
    ordered = np.sort(np.where(keep[..., None], values, np.inf), axis=1)  # (A, n, c)
    count = keep.sum(axis=1)  # (A,)
    rows = np.arange(len(values))
    low = ordered[rows, (count - 1) // 2]  # (A, c)
    high = ordered[rows, count // 2]
    return (low + high) / 2


def box_patches(grey: np.ndarray, boxes: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Each box's content (A×4, source px) resampled to PATCH×PATCH: (A, PATCH²) float32.

    ``grey`` is a float32 frame at flow resolution; bilinear samples, border replicated.
    """
    return sample_flow(grey, *grid_points(boxes, scale, PATCH))


def ncc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Zero-mean normalised cross-correlation of the rows of a (A×n) with those of b
    (A×n, or K×A×n: K candidates each): (A,) or (K, A) in [-1, 1]; -1 for a flat row."""

    def unit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = x - x.mean(axis=-1, keepdims=True)
        norm = np.sqrt(np.einsum("...n,...n->...", x, x))
        ok = norm > 1e-6
        x /= np.where(ok, norm, 1.0)[..., None]
        return x, ok

    (ua, oka), (ub, okb) = unit(a), unit(b)
    return np.where(oka & okb, np.einsum("an,...an->...a", ua, ub), -1.0)


def pairs_within_columns(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ordered pair of distinct true rows of each column of ``mask`` (R×C bool):
    ``(first, second, column)``, (K,) each, without a loop over columns."""
    column, row = np.nonzero(mask.T)  # entries grouped by column
    count = np.bincount(column, minlength=mask.shape[1])
    start = np.cumsum(count) - count  # each column's first entry
    partners = count[column]  # entries of its column, per entry
    left = np.repeat(np.arange(len(row)), partners)  # (Σ count², ) entry indices
    offset = np.arange(len(left)) - np.repeat(np.cumsum(partners) - partners, partners)
    right = start[column[left]] + offset
    distinct = left != right
    return row[left[distinct]], row[right[distinct]], column[left[distinct]]


def verify(
    last: np.ndarray,
    candidates: np.ndarray,
    prev: np.ndarray,
    nxt: np.ndarray,
    scale: tuple[float, float],
    template: np.ndarray | None = None,
) -> np.ndarray:
    """Per box, the candidate (K×A×4) whose content in ``nxt`` best matches its reference.

    The reference is ``template`` (A×PATCH², a box's content when its track last
    matched; rows of NaN: none yet) or else ``last``'s content in ``prev``. The
    appearance check of Median-Flow (NCC between a point's patch before and after)
    applied to whole boxes: a shift that puts the box on the same pixels wins. Ties
    go to the earlier candidate.
    """
    k, a = candidates.shape[:2]
    # a candidate equal to an earlier one of its box (new tracks: no motion yet) is
    # not sampled again
    same = (candidates[:, None] == candidates[None]).all(axis=-1)  # (K, K, A)
    distinct = ~np.tril(same.transpose(2, 0, 1), k=-1).any(axis=2).T  # (K, A)
    which, rows = np.nonzero(distinct)
    ref = box_patches(np.float32(prev), last, scale)  # (A, n)
    if template is not None:
        known = np.isfinite(template[:, 0])
        ref[known] = template[known]
    moved = box_patches(np.float32(nxt), candidates[which, rows], scale)  # (m, n)
    scores = np.full((k, a), -np.inf)
    scores[which, rows] = ncc(ref[rows], moved)
    best = scores.argmax(axis=0)
    return candidates[best, np.arange(a)]


class IouTracker:
    """The per-frame state machine; feed frames in order with `step`, then `finish`.

    Active tracks are arrays (ids, last boxes, misses, and for registration and
    matching: hits, last matched box, its motion, the last registration's motion, the
    content template), row-aligned, in order of creation.
    A proposal joins a track (its match's, or a new one) unless ``birth`` refuses it a
    track, so the log of a frame is its proposals that joined one, with an owner id each;
    tracks are assembled once, at the end. Ids are ``frame offset + proposal index`` for
    new tracks (increasing, with gaps), which keeps creation order without counting.
    """

    def __init__(
        self,
        threshold: float = 0.35,
        ttl: int = 3,
        confirm: int = 0,
        birth: float = 0.0,
        nest: float = 0.0,
        group: float = 0.0,
    ):
        self.threshold, self.ttl, self.confirm = threshold, ttl, confirm
        self.birth, self.nest, self.group = birth, nest, group
        self.hits = np.zeros(0, np.int64)  # (A,) boxes each active track has matched
        self.ids = np.zeros(0, np.int64)  # (A,) ids of active tracks
        self.last = np.zeros((0, 4), np.float64)  # (A, 4) each active track's box
        self.misses = np.zeros(0, np.int64)  # (A,) steps since the last match
        self.anchor = np.zeros((0, 4), np.float64)  # (A, 4) each track's last matched box
        self.velocity = np.zeros((0, 4), np.float64)  # (A, 4) box motion a step, last match
        self.shift = np.zeros((0, 4), np.float64)  # (A, 4) last registration's box motion
        self.template = np.zeros((0, PATCH * PATCH), np.float32)  # (A, n) content at match
        self.next_id = 0
        self._log: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []

    def predict(
        self,
        flow: np.ndarray | None,
        scale: tuple[float, float],
        back: np.ndarray | None = None,
        images: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Active boxes registered onto the next frame: FB-checked with ``back``, else plain.

        With ``images`` (the two grey frames the flow is computed on), the flow's shift,
        the track's constant-velocity predictions and no motion compete; the one whose
        content best matches the track's template (NCC) is taken (see the module doc).
        """
        if flow is None:
            return self.last
        if back is None:
            flowed = flow_shift(self.last, flow, scale)
        else:
            flowed = fb_shift(self.last, flow, back, scale)
        if images is None or images[0] is None or len(self.last) == 0:
            return flowed
        moved = self.anchor + self.velocity * (self.misses[:, None] + 1)
        again = self.last + self.shift
        candidates = np.stack([flowed, moved, again, self.last])
        return verify(self.last, candidates, images[0], images[1], scale, self.template)

    def groups(
        self, predicted: np.ndarray, boxes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(banned, held, group)``, or None when no proposal is a group (see the
        module doc): ``group`` (P,) the proposals holding the registered boxes of two
        established tracks apart from each other (each inside by more than ``group`` of
        its area, the two overlapping by less than GROUP_APART of the smaller) that are
        their joint box (IoU with the box of all those they hold > GROUP_FIT); ``held``
        (A,) the tracks in a group; ``banned`` (A×P) the pairs a match may not take: a
        group and a member whose box does not fit it (IoU ≤ GROUP_FIT)."""
        est = np.flatnonzero(self.hits >= max(self.confirm, 1))  # tentative: no members
        if not self.group or len(est) < 2 or not len(boxes):
            return None
        from vcl.boxes import area_fast, intersection_fast, intersection_rows, iou_rows

        size = area_fast(predicted[est])[:, None]  # (E, 1)
        inside = intersection_fast(predicted[est], boxes) > np.float32(self.group) * size
        inside &= area_fast(boxes)[None, :] >= size  # the proposal holds the box  (E, P)
        cols = np.flatnonzero(inside.sum(axis=0) >= 2)  # holding two: maybe a group
        if not len(cols):
            return None
        inside = inside[:, cols]
        rows = np.flatnonzero(inside.any(axis=1))
        inside, members = inside[rows], predicted[est[rows]].astype(np.float32)
        # the box of the tracks each holds (C, 4): its joint box? (the cheaper test first)
        hull = np.stack(
            [np.where(inside, members[:, k : k + 1], np.inf).min(axis=0) for k in (0, 1)]
            + [np.where(inside, members[:, k : k + 1], -np.inf).max(axis=0) for k in (2, 3)],
            axis=1,
        )
        joint = iou_rows(hull, boxes[cols]) > GROUP_FIT
        cols, inside = cols[joint], inside[:, joint]
        pair = np.zeros(len(cols), bool)
        first, second, col = pairs_within_columns(inside)
        overlap = intersection_rows(members[first], members[second])
        smaller = np.minimum(size[rows[first], 0], size[rows[second], 0])
        pair[col[overlap < np.float32(GROUP_APART) * smaller]] = True  # two members apart
        if not pair.any():
            return None
        cols, inside = cols[pair], inside[:, pair]
        group = np.zeros(len(boxes), bool)
        group[cols] = True
        i, j = np.nonzero(inside)  # (member, group) pairs
        track, proposal = est[rows[i]], cols[j]
        unfit = iou_rows(predicted[track], boxes[proposal]) <= GROUP_FIT
        banned = np.zeros((len(predicted), len(boxes)), bool)
        banned[track[unfit], proposal[unfit]] = True
        member = np.zeros(len(predicted), bool)
        member[track] = True
        return banned, member, group

    def match(
        self, predicted: np.ndarray, boxes: np.ndarray, banned: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Greedy IoU matching; with ``confirm``, established tracks pick first.

        Tracks with at least ``confirm`` matched boxes are matched before younger ones
        (SORT's / DeepSORT's tentative tracks: a track born on a stray box next to an
        object cannot steal the object from the track that has followed it). ``banned``
        (A×P, from `groups`) are pairs that may not match.
        """
        if not self.confirm:
            return associate(predicted, boxes, self.threshold, banned)
        est = np.flatnonzero(self.hits >= self.confirm)
        young = np.flatnonzero(self.hits < self.confirm)
        r1, c1 = associate(
            predicted[est], boxes, self.threshold, None if banned is None else banned[est]
        )
        free = np.ones(len(boxes), bool)
        free[c1] = False
        left = np.flatnonzero(free)
        r2, c2 = associate(predicted[young], boxes[left], self.threshold)  # no members
        return np.concatenate([est[r1], young[r2]]), np.concatenate([c1, left[c2]])

    def coasting(
        self,
        held: np.ndarray,
        rows: np.ndarray,
        predicted: np.ndarray,
        images: tuple[np.ndarray, np.ndarray],
        scale: tuple[float, float],
    ) -> np.ndarray:
        """(A,) bool: the group members left unmatched whose registered box still shows
        what they last matched (NCC with the template > COAST_NCC) in ``images[1]``
        (`step` finds groups only where it has the frames)."""
        coast = held.copy()
        coast[rows] = False
        at = np.flatnonzero(coast)
        now = box_patches(np.float32(images[1]), predicted[at], scale)
        coast[at] = ncc(self.template[at], now) > COAST_NCC
        return coast

    def births(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        cols: np.ndarray,
        groups: np.ndarray | None = None,
    ) -> np.ndarray:
        """(P,) bool: the proposals that start a track — the unmatched ones, less (with
        ``birth``) those overlapping a matched proposal by IoU > birth and (with ``nest``)
        those nested with one (`vcl.boxes.overlap_of_smaller` > nest), then NMS at
        ``birth`` among the rest (by score; not by nest, see the module doc). ``groups``
        (P,) bool, from `groups`, start none and suppress none."""
        fresh = np.ones(len(boxes), bool)
        fresh[cols] = False
        if groups is not None:
            fresh &= ~groups
        if not (self.birth or self.nest) or not fresh.any():
            return fresh
        from vcl.boxes import iou_fast, nms, overlap_of_smaller

        free = np.flatnonzero(fresh)
        if len(cols):
            matched = boxes[cols]
            covered = np.zeros(len(free), bool)
            if self.birth:
                covered |= (iou_fast(boxes[free], matched) > self.birth).any(axis=1)
            if self.nest:
                covered |= (overlap_of_smaller(boxes[free], matched) > self.nest).any(axis=1)
            free = free[~covered]
        fresh[:] = False
        if self.birth:
            free = free[nms(boxes[free], np.asarray(scores).reshape(-1)[free], self.birth)]
        fresh[free] = True
        return fresh

    def step(
        self,
        frame: int,
        boxes: np.ndarray,
        scores: np.ndarray,
        flow: np.ndarray | None = None,
        scale: tuple[float, float] = (1.0, 1.0),
        back: np.ndarray | None = None,
        images: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Advance to ``frame`` with its proposals (P×4, P).

        ``flow`` is the flow from the last step's frame to this one, ``back`` the flow
        from this frame back to the last (Median-Flow's forward–backward check; None:
        the plain median of ``flow``), ``images`` the grey frames (last, this one) at
        flow resolution for the verified registration (``images[0]`` None at the first
        step; ``images=None``: flow only).
        """
        boxes = np.array(boxes, np.float64).reshape(-1, 4)  # a copy: the log keeps it
        n = len(boxes)
        predicted = self.predict(flow, scale, back, images)
        # members follow a group only with their content checked: no frames, no groups
        checked = images is not None and images[0] is not None
        grouped = self.groups(predicted, boxes) if checked else None
        rows, cols = self.match(predicted, boxes, None if grouped is None else grouped[0])
        owner = np.arange(self.next_id, self.next_id + n)  # (P,) new ids by default
        owner[cols] = self.ids[rows]
        self.next_id += n
        # a group is tracked by its members: no track of its own
        fresh = self.births(boxes, scores, cols, None if grouped is None else grouped[2])
        coast = np.zeros(len(predicted), bool)
        if grouped is not None:
            coast = self.coasting(grouped[1], rows, predicted, images, scale)
        joins = fresh.copy()  # a proposal refused a birth (--birth) joins no track
        joins[cols] = True
        scores = np.array(scores, np.float64).reshape(-1)
        self._log.append(
            (
                frame,
                np.concatenate([owner[joins], self.ids[coast]]),
                np.concatenate([boxes[joins], predicted[coast]]),
                np.concatenate([scores[joins], np.full(int(coast.sum()), np.nan)]),
            )
        )
        # Unmatched tracks keep following the flow until their TTL runs out; a group's
        # members follow it as long as it lasts.
        misses = self.misses + 1
        misses[rows] = 0
        misses[coast] = 0
        shift = predicted - self.last  # (A, 4) this step's registration
        last = predicted.copy() if predicted is self.last else predicted
        last[rows] = boxes[cols]
        velocity, anchor = self.velocity.copy(), self.anchor.copy()
        # the centre's motion only: a proposal's size jitters from frame to frame (a tight
        # box, then a part), and extrapolating that jitter shrinks or swells the prediction
        centre = ((boxes[cols] - anchor[rows]) @ _CENTRE) / (self.misses[rows, None] + 1)
        velocity[rows] = np.concatenate([centre, centre], axis=1)
        anchor[rows] = boxes[cols]
        anchor[coast] = predicted[coast]  # the velocity holds through a group
        alive = misses <= self.ttl
        hits = self.hits.copy()
        hits[rows] += 1
        if self.confirm:  # a tentative track ends at its first miss (DeepSORT)
            alive &= (hits >= self.confirm) | (misses == 0)
        n_fresh = int(fresh.sum())
        self.ids = np.concatenate([self.ids[alive], owner[fresh]])
        self.last = np.concatenate([last[alive], boxes[fresh]])
        self.misses = np.concatenate([misses[alive], np.zeros(n_fresh, np.int64)])
        self.hits = np.concatenate([hits[alive], np.ones(n_fresh, np.int64)])
        self.anchor = np.concatenate([anchor[alive], boxes[fresh]])
        self.velocity = np.concatenate([velocity[alive], np.zeros((n_fresh, 4))])
        self.shift = np.concatenate([shift[alive], np.zeros((n_fresh, 4))])
        template = self.template.copy()
        fresh_template = np.full((n_fresh, PATCH * PATCH), np.nan, np.float32)
        if images is not None:
            now = np.float32(images[1])
            if len(cols):
                template[rows] = box_patches(now, boxes[cols], scale)
            fresh_template = box_patches(now, boxes[fresh], scale)
        self.template = np.concatenate([template[alive], fresh_template])

    def finish(self) -> list[RawTrack]:
        """All tracks ever started, in order of their first frame."""
        if not self._log:
            return []
        ids = np.concatenate([e[1] for e in self._log])
        if not len(ids):  # frames without proposals only
            return []
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


def tracking_steps(frames: np.ndarray, frame_end: int | None, stride: int) -> np.ndarray:
    """The frames the tracker steps over, sorted: every frame proposed on (``range(0,
    frame_end, stride)``, with or without boxes) from the first to the last holding
    proposals, so that a frame proposed on without a box counts towards TTL; just the
    frames holding proposals when ``frame_end`` is unknown."""
    held = np.unique(frames)
    if frame_end is None:
        return held
    first = -(-int(held[0]) // stride) * stride  # the first sampled frame >= held[0]
    # union: a frame off the recorded stride (a hand-edited store) is still stepped on
    return np.union1d(np.arange(first, int(held[-1]) + 1, stride), held)


def _has_frame(path: Path, index: int) -> bool:
    """Whether the video decodes to frame ``index`` (frames before it are decoded, not
    converted: about 1 ms each)."""
    from vcl.io.video import VideoReader

    return any(True for _ in VideoReader(path, start=index, end=index + 1))


def check_frames(path: Path, steps: np.ndarray, frame_end: int | None, decodes: bool) -> None:
    """Refuse proposals naming a frame the video does not have (a DataError naming it).

    ``steps`` are the frames to track (sorted); frames count from 0.

    Headers' frame counts are wrong both ways (OpenCV's tree.avi declares 444 frames
    and holds 68), so they are not used. A store recording ``frame_end`` (one past the
    last frame `vcl proposals` decoded and proposed on, from a video of this id and
    size) must cover the last step: a store check, no decoding. A store recording none (an
    older or another tool's) is checked against the video: by the flow's decoding
    (``decodes``, in `track_video`'s loop), else by decoding up to the last step here.
    """
    first, last = int(steps[0]), int(steps[-1])
    if first < 0:
        raise DataError(
            f"proposals name frame {first}", path, "frames are numbered from 0 in decoding order"
        )
    if frame_end is not None and last >= frame_end:
        raise DataError(
            f"proposals name frame {last} but their store says the frames proposed on "
            f"end before {frame_end}",
            path,
            "the proposals store is inconsistent: make it again with vcl proposals",
        )
    if frame_end is None and not decodes and not _has_frame(path, last):
        raise DataError(
            f"the video ends before frame {last}, which its proposals were made on",
            path,
            "the proposals were made from another video",
        )


def track_video(
    video_path: str | Path,
    frames: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    params: IouParams,
    frame_end: int | None = None,
    stride: int = 1,
) -> list[RawTrack]:
    """Tracks of one video from its proposals (rows: frame (N,), box (N×4), score (N,)).

    ``frame_end`` and ``stride`` (from the proposals store) say which frames were
    proposed on, ``range(0, frame_end, stride)``: the tracker steps over each of them
    (`tracking_steps`), those without proposals with none, so they count as misses
    towards TTL and flow goes from sampled frame to sampled frame. Without them (stores
    that do not record it), it steps over the frames holding proposals only, and a
    frame proposed on that got no box is not seen at all. Decodes the video once (at
    ``flow_side``) when flow registration is on; a proposal frame the video does not
    have is a DataError naming the video (`check_frames`). A video whose frames DIS
    cannot take at the flow's size (`vcl.motion.dis_fits`: 17×1200 px is 5×320) is
    tracked as with ``flow=False``, with a warning naming it.
    """
    from vcl.motion import dense_flow, dis_fits

    frames = np.asarray(frames, np.int64)
    if len(frames) == 0:
        return []
    order = np.argsort(frames, kind="stable")
    frames, boxes, scores = frames[order], np.asarray(boxes)[order], np.asarray(scores)[order]
    steps = tracking_steps(frames, frame_end, stride)
    starts = np.searchsorted(frames, steps, side="left")  # rows of each step's proposals
    ends = np.searchsorted(frames, steps, side="right")
    tracker = IouTracker(
        params.iou, params.ttl, params.confirm, params.birth, params.nest, params.group
    )
    flow_on = params.flow
    if flow_on:
        from vcl.io.video import VideoReader

        reader = VideoReader(video_path, max_side=params.flow_side)
        up = max(1.0, params.flow_side / max(reader.size))
        scale = (reader.scale[0] * up, reader.scale[1] * up)
        size = reader.size
        if up != 1.0:  # cv2.resize's size for fx = fy = up: cvRound, as round() (half-even)
            size = (round(size[0] * up), round(size[1] * up))
        if not dis_fits(*size, params.dis_preset):
            from vcl.console import log
            from vcl.motion import too_small_for_flow

            source = (reader.info.width, reader.info.height)
            outcome = "tracked without flow registration (as --no-flow)"
            log.warning(too_small_for_flow(video_path, source, size, outcome))
            flow_on = False
    check_frames(Path(video_path), steps, frame_end, flow_on)
    if flow_on:
        decoded = _grey_frames(Path(video_path), params.flow_side, steps, up)
    prev = None
    for k, frame in enumerate(steps):
        flow = back = None
        if flow_on:
            got = next(decoded, None)
            if got is None or got[0] != frame:
                raise DataError(
                    f"the video ends before frame {int(frame)}, which its proposals were made on",
                    video_path,
                    "the proposals were made from another video",
                )
            grey = got[1]
            prev_grey = prev
            if prev is not None:
                flow = dense_flow(prev, grey, "dis", params.dis_preset)
                if params.registration == "fb":
                    back = dense_flow(grey, prev, "dis", params.dis_preset)
            prev = grey
        sl = slice(starts[k], ends[k])
        images = (prev_grey, grey) if flow_on and params.verify else None
        tracker.step(
            int(frame), boxes[sl], scores[sl], flow, scale if flow_on else (1, 1), back, images
        )
    tracks = tracker.finish()
    if params.interpolate:
        step = stride if frame_end is not None else proposal_stride(steps)
        tracks = [interpolate(t, step) for t in tracks]
    return select(tracks, params)
