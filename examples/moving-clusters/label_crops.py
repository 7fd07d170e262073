"""Give each object crop the class of the ground-truth box it covers, for `vcl cluster eval`.

usage: python label_crops.py CROPS.zarr GT_TRACKS.jsonl [--iou 0.5] > labels.jsonl

A crop (id ``<track_id>@<frame>``, as `vcl embed` and `vcl pretrain --method
moving-clusters` name them) takes the ``label`` of the ground-truth track whose box at
the same frame of the same video overlaps its box most, when that IoU reaches --iou;
other crops are written without a label (counted as unlabelled by `vcl cluster eval`).
Evaluation only: the labels never reach training.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with boxes (M, 4), all x1, y1, x2, y2."""
    lo, hi = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / np.maximum(area - inter, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crops")
    parser.add_argument("gt")
    parser.add_argument("--iou", type=float, default=0.5)
    args = parser.parse_args()
    from vcl.io.store import Store

    # (video, frame) -> (boxes M x 4, labels M) of the ground-truth objects
    gt: dict[tuple[str, int], tuple[list, list]] = {}
    with open(args.gt) as f:
        for line in filter(str.strip, f):
            t = json.loads(line)
            for frame, box in zip(t["frames"], t["boxes"], strict=True):
                boxes, labels = gt.setdefault((t["video_id"], int(frame)), ([], []))
                boxes.append(box)
                labels.append(t.get("label"))
    store = Store(args.crops, kind="crops")
    tracks, videos = store["track_id"][:], store["video_id"][:]
    frames, boxes = store["frame"][:], store["box"][:]
    for track, video, frame, box in zip(tracks, videos, frames, boxes, strict=True):
        row = {"id": f"{track}@{int(frame)}"}
        found = gt.get((str(video), int(frame)))
        if found is not None:
            overlap = iou(np.asarray(box, float), np.asarray(found[0], float))
            best = int(overlap.argmax())
            if overlap[best] >= args.iou and found[1][best] is not None:
                row["label"] = found[1][best]
        sys.stdout.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
