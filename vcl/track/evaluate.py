"""How well predicted tracks follow ground-truth objects.

Per video, boxes go into dense (tracks × frames × 4) arrays (NaN where a track has no
box) so that every (predicted, ground-truth) pair's per-frame IoU is one broadcast:

- **coverage**: fraction of ground-truth tracks with at least ``min_len`` boxes that
  some predicted track follows with mean IoU ≥ ``iou`` over the frames both have;
- **purity** (ID purity): per predicted track, the fraction of its boxes on its
  majority ground-truth object (a box is *on* the object it overlaps most, when that
  IoU ≥ ``iou``; a box on no object counts against purity); mean over predicted tracks;
- **fragmentation**: for each covered ground-truth track, how many predicted tracks
  have it as their majority object (the object most of their boxes are on, as for
  purity; 1 is ideal); the mean over covered tracks (None when none is covered). A
  covered track counts 0 when the tracks covering it are mostly on other objects;
  uncovered tracks do not count, whatever tracks have them as majority object;
- **mean_length**: mean number of boxes of a predicted track.

Every video of either side counts: a tracks file cannot say "ran, found nothing", so
a ground-truth video without tracks is all missed, and tracks of a video without
ground truth are on no object (purity 0). Files sharing no video at all are an error.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from vcl.io.manifest import TrackRecord


def _dense(tracks: Sequence[TrackRecord], n_frames: int) -> np.ndarray:
    out = np.full((len(tracks), n_frames, 4), np.nan)
    for i, t in enumerate(tracks):
        out[i, t.frames] = np.asarray(t.boxes, float)
    return out


def _pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (P×G×T) of dense boxes a (P×T×4) and b (G×T×4); NaN where either is absent."""
    a, b = a[:, None], b[None, :]
    lo = np.maximum(a[..., :2], b[..., :2])
    hi = np.minimum(a[..., 2:], b[..., 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area_a = np.prod(a[..., 2:] - a[..., :2], axis=-1)
    area_b = np.prod(b[..., 2:] - b[..., :2], axis=-1)
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.where(np.isnan(union), np.nan, 0.0))


def evaluate(
    predicted: Sequence[TrackRecord],
    truth: Sequence[TrackRecord],
    min_len: int = 40,
    iou: float = 0.5,
    names: tuple[str, str] = ("tracks", "ground truth"),
) -> dict:
    """The metrics above, as a JSON-able dict (also the counts they come from).

    No video in common is an error naming both files (``names``: predicted, ground
    truth): it is the wrong pair of files, not a tracker that found nothing. The
    counts of videos on one side only are returned (the caller warns).
    """
    from vcl.errors import DataError, first_ids

    pred_by, gt_by = defaultdict(list), defaultdict(list)
    for t in predicted:
        pred_by[t.video_id].append(t)
    for t in truth:
        gt_by[t.video_id].append(t)
    videos = sorted(set(pred_by) & set(gt_by))
    if not videos:
        raise DataError(
            f"shares no video id with {names[1]} (video ids here: {first_ids(sorted(pred_by))}; "
            f"there: {first_ids(sorted(gt_by))})",
            names[0],
            "score tracks of the videos the ground truth annotates",
        )
    long_gt = covered = 0
    purities: list[float] = []
    fragments: list[int] = []
    for video in sorted(set(pred_by) | set(gt_by)):
        preds, gts = pred_by.get(video, []), gt_by.get(video, [])
        n_frames = 1 + max(t.frames[-1] for t in [*preds, *gts])
        is_long = np.array([len(t.frames) >= min_len for t in gts], bool)
        long_gt += int(is_long.sum())
        if not preds:
            continue
        if not gts:
            purities += [0.0] * len(preds)
            continue
        ious = _pair_iou(_dense(preds, n_frames), _dense(gts, n_frames))  # (P, G, T)
        shared = np.isfinite(ious)
        with np.errstate(invalid="ignore"):
            mean_iou = np.nansum(ious, axis=2) / np.maximum(shared.sum(axis=2), 1)  # (P, G)
        mean_iou[shared.sum(axis=2) == 0] = 0.0
        is_covered = (mean_iou >= iou).any(axis=0) & is_long  # (G,)
        covered += int(is_covered.sum())
        # Each predicted box is on the object it overlaps most, if that IoU >= iou.
        filled = np.nan_to_num(ious, nan=-1.0)
        best = filled.argmax(axis=1)  # (P, T)
        on = np.take_along_axis(filled, best[:, None], axis=1)[:, 0] >= iou
        majority = np.full(len(preds), -1)
        for p, t in enumerate(preds):
            objects = best[p, t.frames][on[p, t.frames]]
            if objects.size:
                counts = np.bincount(objects, minlength=len(gts))
                majority[p] = int(counts.argmax())
                purities.append(float(counts.max() / len(t.frames)))
            else:
                purities.append(0.0)
        pieces = np.bincount(majority[majority >= 0], minlength=len(gts))  # (G,)
        fragments += pieces[is_covered].tolist()
    lengths = [len(t.frames) for t in predicted]
    return {
        "coverage": covered / long_gt if long_gt else None,
        "purity": float(np.mean(purities)) if purities else None,
        "fragmentation": float(np.mean(fragments)) if fragments else None,
        "mean_length": float(np.mean(lengths)) if lengths else None,
        "videos": len(videos),
        "videos_only_predicted": len(pred_by) - len(videos),
        "videos_only_gt": len(gt_by) - len(videos),
        "gt_tracks": len(truth),
        "gt_tracks_long": long_gt,
        "gt_tracks_covered": covered,
        "predicted_tracks": len(predicted),
        "min_len": min_len,
        "iou": iou,
    }
