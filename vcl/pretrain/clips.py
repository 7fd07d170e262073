"""Training clips from unlabeled videos: the data of every video method of ``vcl pretrain``.

vcl cuts the clips of every video method alike, after Hara et al.'s 3D-ResNets pipeline
(which both reference codes build on): a clip is ``frames`` consecutive frames (16 by
default; 8/32/64 work) at a random start (or every ``stride``-th frame,
``--frame-stride``: a longer stretch of motion for the same compute, as SlowFast's
sampling rate), cut by a multi-scale random crop (a square of ``scale`` × the shorter
side, scale in {1, 2^-1/4, 2^-1/2, 2^-3/4, 1/2}, at a random position) resized to
``size``, flipped horizontally with p = 0.5, colour-augmented (:class:`ColourParams`: one
draw per clip, the same for all its frames) and normalised (the Kinetics mean/std that
``vcl embed`` uses for video nets, so a trained network sees the same input statistics
when it is embedded). The colour augmentation is each method's reference's: Tokmakov et
al.'s video_cluster code (seed 001) applies RandomGrayscale (p = 0.2) then ColorJitter
(brightness, contrast, saturation, hue 0.4) after its 5-scale crop; SLIC's code (seed
002) ColorJitter (0.5 each, p = 0.8), ColorDrop (grayscale, p = 0.2) and a 15×15
Gaussian blur (σ 2, p = 0.2). Frames are first resized so that the shorter side is
round(size·8/7) (128 for 112), which is also what ``vcl embed`` does before its centre
crop. Videos shorter than a clip are looped (Hara's LoopPadding: frame indices 0, 1,
..., n-1, 0, 1, ...).

Decoding happens in DataLoader worker processes with :class:`vcl.io.video.VideoReader`,
one sequential read per clip (open, decode up to the start, keep ``frames`` frames: no
seeks, whose frame accuracy depends on the container). All clip parameters of an epoch
(crops, flips, colour draws) are drawn in the main process from (seed, epoch)
(:func:`epoch_plans`), so a resumed run reads and augments exactly the clips of an
uninterrupted one, whatever the number of workers. The colour augmentation itself runs
on the training device, vectorised over clips and frames (:func:`to_input`).

API for the video methods:

- :func:`open_videos` → :class:`VideoSet` (ids, paths, labels, decoded frame counts,
  the videos that failed to decode);
- :class:`ClipParams`; :func:`plan_clips` draws the clips of chosen videos
  (``clips_per_video`` ≥ 2 gives several clips of one video per batch item, e.g. an
  anchor and a positive), :func:`epoch_plans` the batches of an epoch, :func:`centre_plan`
  the deterministic test-time view (middle clip, centre crop, no flip, no colour);
- :func:`clip_loader` → DataLoader yielding ``(clips, videos, colour)``: uint8
  (B, V, T, S, S, 3), int64 (B,) video indices and float64 (B, V, C) colour draws
  (:func:`draw_colour`; C = 0 without colour augmentation); :func:`to_input` turns clips
  into the colour-augmented, normalised float network input (B, V, 3, T, S, S) on the
  training device (:func:`colour_augment`).

The pre-decoded alternative: :func:`write_frames` decodes every video once into a
``vcl.frames/1`` store (frames resized to the shorter side round(size·8/7) and
centre-cropped to a square: random crops then stay inside that square) and
:func:`attach_frames` makes the loader read clips from it instead of decoding
(``vcl pretrain --frames-store``); ``benchmarks/bench_pretrain_video.py`` measures both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vcl.console import log
from vcl.errors import DataError, VclError

MEAN = (0.43216, 0.394666, 0.37645)  # Kinetics RGB mean / std (torchvision, vcl embed)
STD = (0.22803, 0.22145, 0.216989)
FRAMES_SCHEMA = "vcl.frames/1"
SCALES = (1.0, 2**-0.25, 2**-0.5, 2**-0.75, 0.5)  # Hara et al.'s MultiScaleRandomCrop


@dataclass(frozen=True)
class ColourParams:
    """A method's per-clip colour augmentation, with its reference code's values.

    The reference codes draw the parameters once per clip (``randomize_parameters()``
    before its frames) and apply them to every frame: so does :func:`colour_augment`.
    The jitter is torchvision's ColorJitter: brightness, contrast, saturation and hue
    adjustments in an order drawn per clip."""

    jitter_p: float  # probability of the colour jitter
    brightness: float  # factor uniform in [max(0, 1 − b), 1 + b]
    contrast: float  # factor uniform in [max(0, 1 − c), 1 + c]
    saturation: float  # factor uniform in [max(0, 1 − s), 1 + s]
    hue: float  # shift uniform in [−h, h] of a turn (h ≤ 0.5)
    grayscale: float  # probability of grayscale (SLIC's "ColorDrop")
    grayscale_first: bool = False  # grayscale before the jitter (video_cluster's order)
    blur: float = 0.0  # probability of a Gaussian blur
    blur_sigma: float = 2.0
    blur_kernel: int = 15  # side of the (square) blur kernel


# The columns of a per-clip colour draw (:func:`draw_colour`): apply-jitter flag, the
# brightness / contrast / saturation factors and hue shift, the jitter order (the
# adjustment applied at each of 4 steps: 0 brightness, 1 contrast, 2 saturation, 3 hue),
# grayscale flag, blur flag.
JITTER, FACTORS, ORDER, GRAY, BLUR = 0, slice(1, 5), slice(5, 9), 9, 10
COLOUR_COLUMNS = 11


@dataclass(frozen=True)
class ClipParams:
    """How a clip is cut: T frames, S×S pixels, and its augmentation."""

    frames: int = 16  # T
    size: int = 112  # S
    scales: tuple[float, ...] = SCALES  # crop side / shorter frame side
    flip: bool = True  # random horizontal flip (p = 0.5)
    stride: int = 1  # every stride-th frame: a clip spans (T − 1)·stride + 1 frames
    colour: ColourParams | None = None  # per-clip colour augmentation (None: none)

    @property
    def span(self) -> int:
        """Frames of the video a clip covers, first to last."""
        return (self.frames - 1) * self.stride + 1

    @property
    def short_side(self) -> int:
        """Frames are resized so their shorter side is this before cropping."""
        return round(self.size * 8 / 7)


@dataclass
class VideoSet:
    """The videos a run trains on (decodable ones only), index = position."""

    source: str  # what the user gave (manifest, folder, file, "-")
    ids: np.ndarray  # (N,) str
    paths: list[str]
    frames: np.ndarray  # (N,) int64 decoded frame counts
    labels: np.ndarray | None  # (N,) str ("" unknown), None when no video has a label
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (id, path, reason)
    store: str | None = None  # a vcl.frames store to read clips from instead of decoding
    offsets: np.ndarray | None = None  # (N,) first row of each video in ``store``

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def n_tracks(self) -> int:  # the training loop records it; videos have no tracks
        return 0

    @property
    def path(self) -> str:
        return self.source

    def sample_keys(self) -> np.ndarray:
        """(N,) str: the video ids, what per-video state (bank, clusters) aligns to."""
        return self.ids

    def short(self, frames: int) -> int:
        """How many videos are shorter than a clip of ``frames`` frames."""
        return int((self.frames < frames).sum())


def _count_task(item: tuple[str, str, int]) -> tuple[int, str]:
    """(decoded frame count, "" or the reason it failed) of one video: picklable."""
    _, path, known = item
    if known > 0:
        return known, ""
    from vcl.io.video import VideoReader

    try:
        n = VideoReader(path).count_frames()
    except VclError as exc:
        return 0, exc.problem
    except Exception as exc:  # a decoder may raise anything on a broken file
        return 0, f"{type(exc).__name__}: {exc}"
    return n, "" if n > 0 else "no frame could be decoded"


def open_videos(inputs: str | Sequence[str], workers: int = 0) -> VideoSet:
    """Resolve the inputs (manifest, ``-``, files, folders) and count each video's frames
    by decoding it (declared counts can be wrong), over ``workers`` processes (0: one per
    core). A manifest line with ``frames`` and ``"frames_counted": true`` (``vcl videos
    --count``) is trusted. Videos that fail are returned in ``failed``, not raised: the
    caller decides (error, or skip under ``--keep-going``)."""
    from vcl.io.sources import resolve_videos
    from vcl.parallel import parallel_map, resolve_workers

    source = inputs if isinstance(inputs, str) else " ".join(inputs)
    records = resolve_videos([inputs] if isinstance(inputs, str) else list(inputs))
    items = []
    for r in records:
        known = int(r.extra.get("frames") or 0) if r.extra.get("frames_counted") else 0
        items.append((r.id, r.path, known))
    workers = min(resolve_workers(workers), max(len(items), 1))
    counted = list(parallel_map(_count_task, items, workers))
    ok = [i for i, (n, _) in enumerate(counted) if n > 0]
    failed = [(records[i].id, records[i].path, counted[i][1]) for i in range(len(records))]
    failed = [f for i, f in enumerate(failed) if counted[i][0] == 0]
    labels = None
    if any(records[i].label for i in ok):
        labels = np.array([records[i].label or "" for i in ok], dtype=str)
    return VideoSet(
        source=source,
        ids=np.array([records[i].id for i in ok], dtype=str),
        paths=[records[i].path for i in ok],
        frames=np.array([counted[i][0] for i in ok], dtype=np.int64),
        labels=labels,
        failed=failed,
    )


def require_decodable(videos: VideoSet, keep_going: bool, frames: int) -> None:
    """Raise for undecodable videos (or warn and go on under ``keep_going``); warn ONCE
    about videos shorter than a clip; refuse fewer than 2 usable videos."""
    if videos.failed:
        vid, path, reason = videos.failed[0]
        if not keep_going:
            more = f" (and {len(videos.failed) - 1} more)" if len(videos.failed) > 1 else ""
            raise DataError(
                f"video {vid!r} cannot be decoded: {reason}{more}",
                path,
                "remove it from the input, or pass --keep-going to skip undecodable videos",
            )
        names = ", ".join(f[0] for f in videos.failed[:5])
        log.warning(
            "skipped %d undecodable video(s): %s%s",
            len(videos.failed),
            names,
            " ..." if len(videos.failed) > 5 else "",
        )
    if videos.n < 2:
        raise DataError(f"{videos.n} decodable video(s); training needs at least 2", videos.source)
    short = videos.short(frames)
    if short:
        log.warning(
            "%d of %d videos are shorter than the %d frames a clip spans; their clips "
            "repeat frames",
            short,
            videos.n,
            frames,
        )


# ---------------------------------------------------------------------------- plans


@dataclass
class ClipPlan:
    """The clips of one batch: B items of V clips each (all arrays indexed [b, v])."""

    videos: np.ndarray  # (B,) int64 video index of each item
    start: np.ndarray  # (B, V) int64 first frame
    scale: np.ndarray  # (B, V) float64 crop side / shorter frame side
    x: np.ndarray  # (B, V) float64 in [0, 1]: crop position along the free width
    y: np.ndarray  # (B, V) float64 in [0, 1]: along the free height
    flip: np.ndarray  # (B, V) bool
    colour: np.ndarray  # (B, V, C) float64 colour draws (draw_colour); C = 0: no colour

    def __len__(self) -> int:
        return len(self.videos)


def plan_clips(
    frames: np.ndarray,
    videos: np.ndarray,
    params: ClipParams,
    rng: np.random.Generator,
    clips_per_video: int = 1,
) -> ClipPlan:
    """Random clips of the given ``videos`` (B,): ``clips_per_video`` independent
    spatio-temporal crops each. ``frames`` (N,) are the videos' frame counts."""
    videos = np.asarray(videos, dtype=np.int64)
    shape = (len(videos), clips_per_video)
    last = np.maximum(frames[videos] - params.span, 0)  # (B,) latest start
    start = np.floor(rng.random(shape) * (last[:, None] + 1)).astype(np.int64)
    scale = np.asarray(params.scales, dtype=np.float64)[rng.integers(0, len(params.scales), shape)]
    x, y = rng.random(shape), rng.random(shape)
    flip = rng.random(shape) < 0.5 if params.flip else np.zeros(shape, bool)
    colour = np.zeros((*shape, 0))
    if params.colour is not None:
        colour = draw_colour(params.colour, rng, shape)
    return ClipPlan(videos, start, scale, x, y, flip, colour)


def draw_colour(p: ColourParams, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Colour augmentation parameters of ``shape`` clips: float64 (*shape, 11), columns
    as :data:`JITTER` ... :data:`BLUR`. Every column is drawn whatever the probabilities,
    so the generator advances by the same amount for every method."""
    n = int(np.prod(shape))
    jitter = rng.random(n) < p.jitter_p
    spread = np.array([p.brightness, p.contrast, p.saturation])
    low = np.maximum(1.0 - spread, 0.0)
    factors = low + rng.random((n, 3)) * (1.0 + spread - low)  # (n, 3)
    hue = (2.0 * rng.random(n) - 1.0) * p.hue
    order = np.argsort(rng.random((n, 4)), axis=1)  # a uniform permutation per clip
    gray = rng.random(n) < p.grayscale
    blur = rng.random(n) < p.blur
    out = np.column_stack([jitter, factors, hue, order, gray, blur]).astype(np.float64)
    return out.reshape(*shape, COLOUR_COLUMNS)


def centre_plan(frames: np.ndarray, videos: np.ndarray, params: ClipParams) -> ClipPlan:
    """The deterministic view: the middle clip of each video, centre crop, no flip."""
    videos = np.asarray(videos, dtype=np.int64)
    shape = (len(videos), 1)
    start = (np.maximum(frames[videos] - params.span, 0) // 2)[:, None]
    half = np.full(shape, 0.5)
    none = np.zeros((*shape, 0))
    return ClipPlan(videos, start, np.ones(shape), half, half.copy(), np.zeros(shape, bool), none)


def epoch_plans(
    videos: VideoSet,
    batch_size: int,
    params: ClipParams,
    seed: int,
    epoch: int,
    clips_per_video: int = 1,
    rank: int = 0,
    world: int = 1,
) -> list[ClipPlan]:
    """This rank's share of every batch of an epoch: the videos in an order drawn from
    (seed, epoch), cut into global batches of ``batch_size`` videos (a last batch smaller
    than 2 per rank is dropped: BatchNorm needs 2 samples); rank r takes items r, r + world,
    ... Clip parameters come from the same (seed, epoch) generator, drawn for the whole
    global batch, so they do not depend on the number of ranks or workers."""
    rng = np.random.default_rng([seed, epoch, 13])
    perm = rng.permutation(videos.n)
    plans = []
    for s in range(0, videos.n, batch_size):
        chunk = perm[s : s + batch_size]
        plan = plan_clips(videos.frames, chunk, params, rng, clips_per_video)
        if len(chunk) >= 2 * world:
            plans.append(_take(plan, slice(rank, None, world)))
    return plans


def iterations(n: int, batch_size: int, world: int = 1) -> int:
    """Batches per epoch of :func:`epoch_plans` (without drawing them)."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 * world else 0)


def _take(plan: ClipPlan, rows: Any) -> ClipPlan:
    return ClipPlan(*(getattr(plan, f)[rows] for f in plan.__dataclass_fields__))


# ---------------------------------------------------------------------------- decoding


def clip_indices(n_frames: int, starts: np.ndarray, frames: int, stride: int = 1) -> np.ndarray:
    """(V, T) frame indices of clips starting at ``starts`` (V,), every ``stride``-th
    frame; past the end of the video, Hara's LoopPadding: s, s+1, ..., n-1, s, s+1, ...
    (with a stride, the offsets k·stride wrap modulo the frames left from s)."""
    n = max(int(n_frames), 1)
    left = np.maximum(n - starts, 1)  # (V,) frames available from each start
    return starts[:, None] + (np.arange(frames) * stride)[None] % left[:, None]


def cut_clips(
    got: dict[int, np.ndarray],
    idx: np.ndarray,
    scale: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    flip: np.ndarray,
    params: ClipParams,
) -> np.ndarray:
    """Crop, resize and flip: frames ``got`` (index → (h, w, 3)) at ``idx`` (V, T) →
    uint8 (V, T, S, S, 3). Crop v is a square of scale[v] × the shorter side at
    (x[v], y[v]) of the free width and height."""
    import cv2

    t = idx.shape[1]
    h, w = next(iter(got.values())).shape[:2]
    out = np.empty((len(idx), t, params.size, params.size, 3), np.uint8)
    for v in range(len(idx)):
        side = max(1, int(min(h, w) * float(scale[v])))
        x0 = round(float(x[v]) * (w - side))
        y0 = round(float(y[v]) * (h - side))
        interp = cv2.INTER_AREA if side > params.size else cv2.INTER_LINEAR
        for i in range(t):  # T resizes of one small crop each
            crop = got[int(idx[v, i])][y0 : y0 + side, x0 : x0 + side]
            out[v, i] = cv2.resize(crop, (params.size, params.size), interpolation=interp)
        if flip[v]:
            out[v] = out[v, :, :, ::-1]
    return out


def _resize_max_side(path: str | Path, short_side: int) -> int | None:
    """VideoReader's ``max_side`` (it bounds the longer side) giving this shorter side."""
    from vcl.io.video import probe

    info = probe(path)
    short = min(info.width, info.height)
    if short <= short_side:
        return None
    return max(1, round(max(info.width, info.height) * short_side / short))


def read_clips(
    path: str | Path,
    n_frames: int,
    starts: np.ndarray,
    scale: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    flip: np.ndarray,
    params: ClipParams,
) -> np.ndarray:
    """V clips of one video → uint8 (V, T, S, S, 3).

    Decodes once, sequentially, from the first frame needed to the last (frames before
    it are decoded and dropped by VideoReader: no seek), keeping only the clips' frames.
    A clip running past the end loops (start, ..., n-1, start, ...). ``n_frames`` is the
    decoded frame count."""
    from vcl.io.video import VideoReader

    idx = clip_indices(n_frames, starts, params.frames, params.stride)
    wanted = np.unique(idx)
    got: dict[int, np.ndarray] = {}
    max_side = _resize_max_side(path, params.short_side)
    reader = VideoReader(path, max_side=max_side, start=int(wanted[0]), end=int(wanted[-1]) + 1)
    keep = set(wanted.tolist())
    for index, rgb in reader:
        if index in keep:
            got[index] = rgb
    if not got:
        raise DataError(f"no frame decoded from frame {int(wanted[0])} on", path)
    if len(got) < len(wanted):  # fewer frames than counted: loop what was decoded
        have = np.array(sorted(got))
        idx = have[np.searchsorted(have, idx).clip(0, len(have) - 1)]
    return cut_clips(got, idx, scale, x, y, flip, params)


_OPEN_STORES: dict[str, Any] = {}  # frames arrays opened in this (worker) process


def read_plan(videos: VideoSet, plan: ClipPlan, params: ClipParams) -> np.ndarray:
    """All clips of a plan → uint8 (B, V, T, S, S, 3), decoding each item's video once,
    or reading the frames from ``videos.store`` when it is set."""
    shape = (len(plan), plan.start.shape[1], params.frames, params.size, params.size, 3)
    out = np.empty(shape, np.uint8)
    if videos.store is not None:
        if videos.store not in _OPEN_STORES:
            from vcl.io.store import Store

            _OPEN_STORES[videos.store] = Store(videos.store, kind="frames")["frame"]
        array = _OPEN_STORES[videos.store]
    for b, vid in enumerate(plan.videos):
        n = int(videos.frames[vid])
        args = (plan.scale[b], plan.x[b], plan.y[b], plan.flip[b], params)
        if videos.store is None:
            out[b] = read_clips(videos.paths[vid], n, plan.start[b], *args)
            continue
        idx = clip_indices(n, plan.start[b], params.frames, params.stride)
        wanted = np.unique(idx)
        rows = array[
            int(videos.offsets[vid] + wanted[0]) : int(videos.offsets[vid] + wanted[-1]) + 1
        ]
        got = {int(i): rows[int(i - wanted[0])] for i in wanted}
        out[b] = cut_clips(got, idx, *args)
    return out


# ---------------------------------------------------------------------------- frames store


def _decode_task(item: tuple[str, int]) -> np.ndarray:
    """Every frame of one video, shorter side resized to ``short_side`` and centre-cropped
    to a square: uint8 (F, s, s, 3). Picklable, for ``parallel_map``."""
    import cv2

    from vcl.io.video import VideoReader

    path, side = item
    frames = []
    for _, rgb in VideoReader(path, max_side=_resize_max_side(path, side)):
        h, w = rgb.shape[:2]
        if min(h, w) != side:  # rounding, or a video smaller than the side
            f = side / min(h, w)
            rgb = cv2.resize(rgb, (max(side, round(w * f)), max(side, round(h * f))))
            h, w = rgb.shape[:2]
        y0, x0 = (h - side) // 2, (w - side) // 2
        frames.append(rgb[y0 : y0 + side, x0 : x0 + side])
    return np.stack(frames)


def write_frames(videos: VideoSet, path: str | Path, params: ClipParams, workers: int = 1) -> Path:
    """The pre-decoded alternative: every frame of every video, shorter side resized to
    ``params.short_side`` and centre-cropped to a square (what ``vcl embed``'s centre
    crop keeps, plus a margin), in a ``vcl.frames/1`` store (column ``frame``
    (F, s, s, 3) uint8, one group per video id, 16 frames a chunk). Resumable."""
    from vcl.io.store import StoreWriter
    from vcl.parallel import parallel_map

    side = params.short_side
    ids = [str(i) for i in videos.ids]
    with StoreWriter(path, FRAMES_SCHEMA, {"short_side": side}, None, groups=ids) as writer:
        writer.define_columns({"frame": ("uint8", (side, side, 3))}, chunk_rows={"frame": 16})
        todo = [i for i in range(videos.n) if str(videos.ids[i]) not in writer.done_groups]
        items = [(videos.paths[i], side) for i in todo]
        for i, frames in zip(todo, parallel_map(_decode_task, items, workers), strict=True):
            writer.append_group(str(videos.ids[i]), frame=frames)
    return Path(path)


def attach_frames(videos: VideoSet, path: str | Path, params: ClipParams) -> VideoSet:
    """``videos`` reading their clips from a frames store (its frame counts replace
    the decoded ones); every video id must be in it, at ``params.short_side``."""
    from dataclasses import replace

    from vcl.io.store import Store

    store = Store(path, kind="frames")
    side = store["frame"].shape[1]
    if side != params.short_side:
        raise DataError(
            f"its frames are {side} px, clips of --size {params.size} need {params.short_side}",
            path,
            "write another frames store for this size",
        )
    pos = {gid: i for i, gid in enumerate(store.group_ids)}
    missing = [str(v) for v in videos.ids if str(v) not in pos]
    if missing:
        raise DataError(
            f"the frames store lacks {len(missing)} of the {videos.n} videos "
            f"(first: {', '.join(missing[:5])})",
            path,
            "delete it so that it is written again for these videos",
        )
    rows = np.array([pos[str(v)] for v in videos.ids])
    offsets = store.offsets[rows]
    frames = store.offsets[rows + 1] - offsets
    return replace(videos, frames=frames.astype(np.int64), store=str(path), offsets=offsets)


class ClipBatches:
    """Item ``i`` of the loader is batch ``i``: (uint8 clips (B, V, T, S, S, 3), int64
    video indices (B,), float64 colour draws (B, V, C)). A ``torch.utils.data.Dataset``
    by duck typing (map-style)."""

    def __init__(self, videos: VideoSet, plans: list[ClipPlan], params: ClipParams):
        self.videos, self.plans, self.params = videos, plans, params

    def __len__(self) -> int:
        return len(self.plans)

    def __getitem__(self, i: int) -> tuple[Any, Any, Any]:
        import torch

        plan = self.plans[i]
        clips = read_plan(self.videos, plan, self.params)
        videos = torch.from_numpy(plan.videos.astype(np.int64))
        return torch.from_numpy(clips), videos, torch.from_numpy(plan.colour)


def clip_loader(
    videos: VideoSet,
    plans: list[ClipPlan],
    params: ClipParams,
    workers: int,
    pin: bool = False,
) -> Any:
    """A DataLoader over precomputed batch plans (order fixed: resume is exact).
    ``workers`` processes decode whole batches; 0 decodes in the training process."""
    import torch

    return torch.utils.data.DataLoader(
        ClipBatches(videos, plans, params),  # type: ignore[arg-type]
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
    )


def to_input(
    clips: Any, device: Any = None, colour: Any = None, params: ColourParams | None = None
) -> Any:
    """uint8 clips (..., T, S, S, 3) → normalised float (..., 3, T, S, S) on ``device``:
    (x/255 − mean) / std with the Kinetics statistics (as ``vcl embed``). With the
    clips' colour draws ``colour`` (..., C) of their plan and the method's ``params``,
    each clip is first colour-augmented (:func:`colour_augment`)."""
    import torch

    x = clips.to(device, non_blocking=True) if device is not None else clips
    lead = x.shape[:-4]
    x = x.reshape(-1, *x.shape[-4:]).permute(0, 1, 4, 2, 3).float() / 255.0  # (N, T, 3, S, S)
    if params is not None and colour is not None and colour.shape[-1]:
        x = colour_augment(x, colour.reshape(-1, colour.shape[-1]), params)
    mean = torch.tensor(MEAN, device=x.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 1, 3, 1, 1)
    x = ((x - mean) / std).transpose(1, 2)  # (N, 3, T, S, S)
    return x.reshape(*lead, *x.shape[1:])


# ---------------------------------------------------------------------------- colour


def _grey(x: Any) -> Any:
    """Luma of float RGB (..., 3, H, W) → (..., 1, H, W), torchvision's weights."""
    from torchvision.transforms.v2 import functional as tvf

    return tvf.rgb_to_grayscale(x)


def _blend(a: Any, b: Any, factor: Any) -> Any:
    """factor·a + (1 − factor)·b clamped to [0, 1] (torchvision's _blend); factor (n,)."""
    f = factor.view(-1, *([1] * (a.ndim - 1)))
    return (f * a + (1 - f) * b).clamp_(0, 1)


def _brightness(x: Any, f: Any) -> Any:
    return _blend(x, x.new_zeros(()), f)


def _contrast(x: Any, f: Any) -> Any:
    return _blend(x, _grey(x).mean(dim=(-3, -2, -1), keepdim=True), f)  # mean of each frame


def _saturation(x: Any, f: Any) -> Any:
    return _blend(x, _grey(x), f)


def _hue(x: Any, shift: Any) -> Any:
    import torch
    from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

    h, s, v = _rgb_to_hsv(x).unbind(dim=-3)
    h = (h + shift.view(-1, *([1] * (h.ndim - 1)))) % 1.0
    return _hsv_to_rgb(torch.stack([h, s, v], dim=-3))


_ADJUST = (_brightness, _contrast, _saturation, _hue)  # the order's codes 0..3


def colour_augment(x: Any, draw: Any, params: ColourParams) -> Any:
    """Colour-augment float clips (N, T, 3, H, W) in [0, 1] with their draws (N, 11)
    (:func:`draw_colour`): grayscale (before the jitter when ``grayscale_first``, else
    after), the jitter's four adjustments in each clip's drawn order, then the blur. One
    draw per clip, the same for all its frames; clips that share an adjustment at a step
    are adjusted in one batched call (at most 16 calls, whatever N). Returns the same
    shape."""
    import torch
    from torchvision.transforms.v2 import functional as tvf

    draw = draw.to(x.device, torch.float32)  # exact for the flags and orders; MPS lacks f64
    gray = draw[:, GRAY] > 0.5

    def grayscale(x: Any) -> Any:
        return torch.where(gray.view(-1, 1, 1, 1, 1), _grey(x).expand_as(x), x)

    if params.grayscale_first:
        x = grayscale(x)
    jitter = torch.nonzero(draw[:, JITTER] > 0.5).flatten()
    if len(jitter):
        y = x[jitter]  # a copy: (n_j, T, 3, H, W)
        factors = draw[jitter, FACTORS]  # (n_j, 4)
        order = draw[jitter, ORDER].long()  # (n_j, 4)
        for step in range(4):
            for code, adjust in enumerate(_ADJUST):
                rows = torch.nonzero(order[:, step] == code).flatten()
                if len(rows):
                    y[rows] = adjust(y[rows], factors[rows, code])
        x = x.index_copy(0, jitter, y)
    if not params.grayscale_first:
        x = grayscale(x)
    blur = torch.nonzero(draw[:, BLUR] > 0.5).flatten()
    if len(blur):
        k, sigma = params.blur_kernel, params.blur_sigma
        chosen = x[blur]
        blurred = tvf.gaussian_blur(chosen.flatten(0, 1), [k, k], [sigma, sigma])
        x = x.index_copy(0, blur, blurred.view_as(chosen))
    return x


__all__ = [
    "ClipParams",
    "ClipPlan",
    "ColourParams",
    "VideoSet",
    "attach_frames",
    "centre_plan",
    "clip_loader",
    "colour_augment",
    "draw_colour",
    "epoch_plans",
    "iterations",
    "open_videos",
    "plan_clips",
    "read_clips",
    "read_plan",
    "require_decodable",
    "to_input",
    "write_frames",
]
