"""Class-agnostic object proposals for every (sampled) frame of a video.

ODCT (Alfani et al.) proposes boxes on every frame with EdgeBoxes and links them into
tracks; Wang & Gupta (ICCV'15) and Hickson et al. look for *moving* objects instead.
Methods (`METHODS`): ``edgeboxes`` (default), ``selective-search``, ``motion`` and
``bing`` (needs the BING model files).

Per frame, for every method: frames are resized so the longer side is at most
``max_side`` (ODCT: 600); boxes are clipped to the frame; boxes smaller than
``min_area`` px² *at the max_side scale* are dropped (ODCT: 10,000; for a frame
smaller than max_side the threshold shrinks with the frame, so it is a fixed fraction
of the frame); at most ``max_boxes`` (ODCT: 300) best-scoring boxes go to greedy NMS at
``nms_iou``; the survivors are written best first in SOURCE-frame pixels.

The store (``vcl.proposals/1``): columns ``frame`` (int32), ``box`` (float32 ×4,
xyxy, source pixels), ``score`` (float32); one group per video, the video id as group
id; attrs ``videos`` map each id to its source ``width``/``height``, ``frame_end``
(one past the last frame looked at: the frames proposed on are ``range(0, frame_end,
stride)``, with or without boxes), ``sampled`` (how many) and, for ``motion``,
``rejected`` (sampled frames that failed the moving-fraction test) and
``too_small_for_flow`` (true for a video whose frames DIS flow cannot take,
`vcl.motion.dis_fits`: 1×1, 3000×17 px; it gets no box, with a warning).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vcl.errors import DataError, UsageError, VclError
from vcl.proposals.edgeboxes import EdgeBoxesParams, EdgeParams
from vcl.proposals.moving import MotionParams

SCHEMA = "vcl.proposals/1"
METHODS = ("edgeboxes", "selective-search", "motion", "bing")
COLUMNS = {"frame": ("int32", ()), "box": ("float32", (4,)), "score": ("float32", ())}


@dataclass(frozen=True)
class ProposalConfig:
    """Everything that decides a video's proposals (recorded in the store's params)."""

    method: str = "edgeboxes"
    max_side: int = 600  # ODCT: longer side 600 px; 0 keeps the source size
    max_boxes: int = 300  # ODCT: at most 300 proposals per frame before NMS
    nms_iou: float = 0.7  # greedy NMS IoU threshold (1 turns it off)
    min_area: float = 10000.0  # ODCT: px² at the max_side scale
    stride: int = 1  # propose on every stride-th frame
    seed: int = 0
    edge_model: str | None = None  # structured-forest model.yml.gz instead of gradient edges
    edges: EdgeParams = field(default_factory=EdgeParams)
    edgeboxes: EdgeBoxesParams = field(default_factory=EdgeBoxesParams)
    ss_mode: str = "fast"
    motion: MotionParams = field(default_factory=MotionParams)
    bing_model: str | None = None

    def validate(self) -> None:
        """Raise UsageError naming the bad option; load model files (exit 66 if unreadable)."""
        checks = [
            (self.method in METHODS, "--method", f"must be one of {', '.join(METHODS)}"),
            (self.max_side >= 0, "--max-side", "must be >= 0"),
            (self.max_boxes >= 1, "--max-boxes", "must be >= 1"),
            (0.0 < self.nms_iou <= 1.0, "--nms-iou", "must be in (0, 1]"),
            (self.min_area >= 0, "--min-area", "must be >= 0"),
            (self.stride >= 1, "--stride", "must be >= 1"),
            (self.ss_mode in ("fast", "quality"), "--mode", "must be fast or quality"),
            (
                self.motion.flow_preset in ("ultrafast", "fast", "medium"),
                "--flow-preset",
                "must be ultrafast, fast or medium",
            ),
            (
                0.0 <= self.motion.min_moving <= self.motion.max_moving <= 1.0,
                "--min-moving/--max-moving",
                "need 0 <= min <= max <= 1",
            ),
            (
                self.method != "bing" or self.bing_model is not None,
                "--method bing",
                "needs --bing-model DIR (the trained BING files ship with no package)",
            ),
        ]
        for ok, option, problem in checks:
            if not ok:
                raise UsageError(problem, option)
        if self.method == "edgeboxes" and self.edge_model is not None:
            from vcl.proposals.edgeboxes import load_edge_model

            load_edge_model(self.edge_model)
        if self.method == "bing":
            from vcl.proposals.bing import check_model

            check_model(str(self.bing_model))

    def params(self) -> dict[str, Any]:
        """The parameters that matter for this method, for the store's attrs."""
        out = {k: v for k, v in asdict(self).items() if k != "seed"}
        keep = {
            "edgeboxes": ("edge_model", "edges", "edgeboxes"),
            "selective-search": ("ss_mode",),
            "motion": ("motion",),
            "bing": ("bing_model",),
        }[self.method]
        for name in ("edge_model", "edges", "edgeboxes", "ss_mode", "motion", "bing_model"):
            if name not in keep:
                out.pop(name)
        return out


@dataclass
class VideoProposals:
    """One video's proposals: rows ordered by frame, then by decreasing score."""

    frame: np.ndarray  # (N,) int32
    box: np.ndarray  # (N, 4) float32 xyxy, source pixels
    score: np.ndarray  # (N,) float32
    info: dict[str, Any]  # width, height, frame_end, sampled, rejected (motion)


# Below about 8 px² OpenCV's EdgeBoxes fills its whole budget with 0–1 px specks, which
# the area filter then drops: a small --min-area (or a small frame, which scales it
# down) gave no proposals at all. Its search starts at a 4×4 window instead.
SMALLEST_SEARCH_AREA = 16.0


def area_threshold(config: ProposalConfig, size: tuple[int, int]) -> float:
    """``min_area`` (px² at the max_side scale) in px² of a frame of ``size`` (w, h)."""
    if not config.max_side:
        return config.min_area
    return config.min_area * (max(size) / config.max_side) ** 2


def postprocess(
    boxes: np.ndarray,
    scores: np.ndarray,
    size: tuple[int, int],
    frame_scale: tuple[float, float],
    config: ProposalConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip, drop small boxes, keep the ``max_boxes`` best, NMS, map to source pixels.

    ``boxes`` (N×4 xyxy) are at the processing size ``(w, h)``; the frame was resized
    from the source by ``frame_scale`` = (sx, sy). Returns float32 boxes and scores,
    best first.
    """
    from vcl.boxes import clip, min_area_mask, nms, to_source

    boxes = clip(boxes, *size)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    keep = min_area_mask(boxes, max(area_threshold(config, size), 1e-9))
    boxes, scores = boxes[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")[: config.max_boxes]
    boxes, scores = boxes[order], scores[order]
    kept = nms(boxes, scores, config.nms_iou)
    source = to_source(boxes[kept], frame_scale)
    return source.astype(np.float32), scores[kept].astype(np.float32)


def frame_seed(seed: int, video_id: str, frame: int) -> int:
    """A seed for OpenCV's RNG that depends only on (seed, video, frame)."""
    from vcl.seed import rng

    return int(rng(seed, zlib.crc32(video_id.encode()), frame).integers(2**31 - 1))


class _FrameProposer:
    """Single-frame methods (edgeboxes, selective-search, bing) with their engines."""

    def __init__(self, config: ProposalConfig, size: tuple[int, int]):
        from dataclasses import replace

        self.config = config
        if config.method == "edgeboxes":
            from vcl.proposals.edgeboxes import create_edge_boxes

            # EdgeBoxes searches windows of at least minBoxArea: our area threshold, so that
            # all max_boxes it returns can be kept (with no threshold, OpenCV's 1000 px²),
            # but never below SMALLEST_SEARCH_AREA
            threshold = area_threshold(config, size)
            params = replace(
                config.edgeboxes,
                max_boxes=config.max_boxes,
                min_box_area=max(threshold, SMALLEST_SEARCH_AREA)
                if threshold > 0
                else config.edgeboxes.min_box_area,
            )
            self.engine = create_edge_boxes(params)
        elif config.method == "selective-search":
            from vcl.proposals.selective import create_selective_search

            self.engine = create_selective_search(config.ss_mode)

    def edge_maps(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from vcl.proposals.edgeboxes import gradient_edges, structured_edges

        if self.config.edge_model is not None:
            return structured_edges(rgb, self.config.edge_model)
        return gradient_edges(rgb, self.config.edges)

    def __call__(self, rgb: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        method = self.config.method
        if method == "edgeboxes":
            from vcl.proposals.edgeboxes import edge_boxes

            return edge_boxes(self.engine, *self.edge_maps(rgb))
        if method == "selective-search":
            from vcl.proposals.selective import selective_search

            return selective_search(self.engine, rgb, self.config.ss_mode, seed)
        from vcl.proposals.bing import bing_boxes

        return bing_boxes(str(self.config.bing_model), rgb)


def _motion_frames(
    frames: Iterator[tuple[int, np.ndarray]], stride: int
) -> Iterator[tuple[int, np.ndarray, list[np.ndarray]]]:
    """``(t, rgb_t, [rgb_{t-1}, rgb_{t+1}])`` for sampled t; one neighbour at the ends."""
    window: list[tuple[int, np.ndarray]] = []
    for item in frames:
        window.append(item)
        if len(window) > 3:
            window.pop(0)
        if len(window) >= 2:
            t, centre = window[-2]
            if t % stride == 0:
                neighbours = [window[-1][1]] if len(window) == 2 else [window[0][1], window[-1][1]]
                yield t, centre, neighbours
    if len(window) == 1:  # a one-frame video: nothing moves
        return
    t, last = window[-1]
    if t % stride == 0:
        yield t, last, [window[-2][1]]


def process_video(path: str, video_id: str, config: ProposalConfig) -> VideoProposals:
    """All proposals of one video (the unit of work of ``--workers``)."""
    import cv2

    from vcl.io.video import VideoReader

    cv2.setNumThreads(1)  # one core per worker: parallelism is across videos
    motion = config.method == "motion"
    reader = VideoReader(
        path, max_side=config.max_side or None, stride=1 if motion else config.stride
    )
    size, frame_scale = reader.size, reader.scale
    frames_out, boxes_out, scores_out = [], [], []
    decoded = sampled = rejected = 0

    def add(t: int, boxes: np.ndarray, scores: np.ndarray) -> None:
        b, s = postprocess(boxes, scores, size, frame_scale, config)
        frames_out.append(np.full(len(b), t, np.int32))
        boxes_out.append(b)
        scores_out.append(s)

    if motion:
        from vcl.proposals.moving import flow_fits, motion_frame

        def counted() -> Iterator[tuple[int, np.ndarray]]:
            nonlocal decoded
            for item in reader:
                decoded += 1
                yield item

        # frames DIS cannot take (1x1, 3000x17): every frame is still decoded and counted
        # as proposed on (frame_end, sampled), with no box
        fits = flow_fits(size, config.motion)
        for t, rgb, neighbours in _motion_frames(counted(), config.stride):
            sampled += 1
            if not fits:
                continue
            cv2.setRNGSeed(frame_seed(config.seed, video_id, t))  # RANSAC
            result = motion_frame(rgb, neighbours, config.motion)
            rejected += int(result.rejected)
            add(t, result.boxes, result.scores)
        if decoded == 1:
            sampled += 1  # a one-frame video: its frame was looked at, nothing moves
        if decoded and not fits:
            from vcl.console import log
            from vcl.motion import too_small_for_flow

            source = (reader.info.width, reader.info.height)
            log.warning(too_small_for_flow(path, source, size, "no motion proposals"))
    else:
        proposer = _FrameProposer(config, size)
        last = -1
        for t, rgb in reader:
            last = t
            sampled += 1
            add(t, *proposer(rgb, frame_seed(config.seed, video_id, t)))
        decoded = last + 1
    if decoded == 0:
        raise DataError("no frame could be decoded", path)
    info = {
        "width": reader.info.width,
        "height": reader.info.height,
        "frame_end": decoded,
        "sampled": sampled,
    }
    if motion:
        info["rejected"] = rejected
        if not fits:
            info["too_small_for_flow"] = True
    if not frames_out:
        empty = np.zeros(0, np.float32)
        return VideoProposals(np.zeros(0, np.int32), np.zeros((0, 4), np.float32), empty, info)
    return VideoProposals(
        np.concatenate(frames_out), np.concatenate(boxes_out), np.concatenate(scores_out), info
    )


@dataclass(frozen=True)
class VideoTask:
    video_id: str
    path: str


def try_process_video(
    task: VideoTask, config: ProposalConfig
) -> tuple[str, VideoProposals | None, str | None]:
    """``process_video`` for a worker: ``(id, proposals, None)`` or ``(id, None, error)``."""
    try:
        return task.video_id, process_video(task.path, task.video_id, config), None
    except VclError as exc:
        return task.video_id, None, exc.message
