"""Proposal quality against ground-truth boxes: recall at IoU thresholds and ABO.

For every ground-truth box on a frame the proposals were made for, its best IoU with
the top-k proposals of that frame (by score) is taken; recall@k at IoU τ is the
fraction of boxes whose best IoU reaches τ (Hosang et al., "What makes for effective
detection proposals?", PAMI 2016), and the average best overlap (ABO, Uijlings et al.
2013) is the mean best IoU. A frame that got no proposal (e.g. a motion frame that was
rejected) counts: its boxes are missed, unless ``skip_empty`` asks otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vcl.errors import DataError

KINDS = ("any", "object", "distractor")


def load_ground_truth(
    path: str | Path, kind: str = "any", min_visible: float = 0.0
) -> dict[str, dict[int, np.ndarray]]:
    """``video_id -> frame -> (G, 4) boxes`` of the ground-truth tracks that count.

    ``kind``: the tracks' ``kind`` field (vcl synth writes object | distractor; tracks
    without one are objects). ``min_visible``: drop boxes whose ``visible`` fraction
    (per frame, when the track has it) is below this.
    """
    from vcl.io.manifest import TrackRecord, read_records

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    gt: dict[str, dict[int, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    for track in read_records(path, TrackRecord):
        if kind != "any" and track.extra.get("kind", "object") != kind:
            continue
        visible = track.extra.get("visible")
        if visible is not None and len(visible) != len(track.frames):
            raise DataError(
                f"track {track.id!r} has {len(visible)} visible values for "
                f"{len(track.frames)} frames",
                path,
            )
        for i, (t, box) in enumerate(zip(track.frames, track.boxes, strict=True)):
            if visible is not None and visible[i] < min_visible:
                continue
            gt[track.video_id][t].append(box)
    return {
        vid: {t: np.asarray(b, np.float64).reshape(-1, 4) for t, b in frames.items()}
        for vid, frames in gt.items()
    }


def best_overlaps(gt: np.ndarray, proposals: np.ndarray, tops: Sequence[int]) -> np.ndarray:
    """(G, len(tops) + 1): best IoU of each gt box with the top-k proposals, then with all.

    ``proposals`` are sorted best first; a running maximum over the IoU matrix's
    columns gives every k at once.
    """
    from vcl.boxes import iou

    out = np.zeros((len(gt), len(tops) + 1))
    if len(proposals) == 0 or len(gt) == 0:
        return out
    running = np.maximum.accumulate(iou(gt, proposals), axis=1)  # (G, P)
    columns = [min(k, len(proposals)) - 1 for k in tops] + [len(proposals) - 1]
    return running[:, columns]


def evaluate(
    store_path: str | Path | Sequence[str | Path],
    gt_path: str | Path | dict[str, dict[int, np.ndarray]],
    tops: Sequence[int] = (10, 100, 300),
    thresholds: Sequence[float] = (0.5, 0.7),
    kind: str = "any",
    min_visible: float = 0.0,
    skip_empty: bool = False,
) -> dict[str, Any]:
    """Recall@k at each IoU threshold and ABO@k of a proposals store, as a JSON-able dict.

    ``store_path`` may list several stores (the shards of one run): read as their merge.
    ``gt_path``: a tracks file, or what ``load_ground_truth`` read from one (stdin is
    read once).
    """
    from vcl.io.union import input_label, open_stores

    paths = list(store_path) if isinstance(store_path, (list, tuple)) else [store_path]
    store = open_stores(paths, kind="proposals", version=1)
    gt = gt_path if isinstance(gt_path, dict) else load_ground_truth(gt_path, kind, min_visible)
    stride = int(store.attrs.get("params", {}).get("stride", 1))
    info = store.attrs.get("videos", {})
    best: list[np.ndarray] = []
    frames_scored = empty_frames = 0
    sampled = sum(int(v.get("sampled", 0)) for v in info.values())
    for vid in store.group_ids:
        truth = gt.get(vid)
        if not truth:
            continue
        rows = store.read_group(vid)
        order = np.argsort(rows["frame"], kind="stable")  # rows are by frame already
        frame, box, score = rows["frame"][order], rows["box"][order], rows["score"][order]
        starts = np.searchsorted(frame, list(truth), side="left")
        ends = np.searchsorted(frame, list(truth), side="right")
        end = int(info.get(vid, {}).get("frame_end", np.iinfo(np.int64).max))
        for (t, boxes), lo, hi in zip(truth.items(), starts, ends, strict=True):
            if t >= end or t % stride:
                continue  # not a frame the proposals were made for
            if hi == lo:
                empty_frames += 1
                if skip_empty:
                    continue
            ranked = np.argsort(-score[lo:hi], kind="stable")
            best.append(best_overlaps(boxes, box[lo:hi][ranked].astype(np.float64), tops))
            frames_scored += 1
    missing = sorted(set(gt) - set(store.group_ids))
    overlaps = np.concatenate(best) if best else np.zeros((0, len(tops) + 1))

    def mean(values: np.ndarray) -> float | None:
        return round(float(values.mean()), 4) if len(values) else None

    return {
        "store": input_label(paths),
        "gt": None if isinstance(gt_path, dict) else str(gt_path),  # the caller names it
        "method": store.attrs.get("params", {}).get("method"),
        "videos": len(set(store.group_ids) & set(gt)),
        "videos_missing": len(missing),
        "frames": frames_scored,
        "frames_without_proposals": empty_frames,
        "gt_boxes": len(overlaps),
        "proposals_per_frame": round(store.n_rows / sampled, 2) if sampled else None,
        "recall": {
            f"{th:g}": {str(k): mean(overlaps[:, i] >= th) for i, k in enumerate(tops)}
            for th in thresholds
        },
        "abo": {
            **{str(k): mean(overlaps[:, i]) for i, k in enumerate(tops)},
            "all": mean(overlaps[:, -1]),
        },
    }
