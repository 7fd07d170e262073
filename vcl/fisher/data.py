"""Reading local descriptors from any store that is ragged by video (``vcl.idt/1`` or other).

A descriptor store is a columnar ``vcl`` store with one group per video (group id =
video id) and 2-D numeric columns (N×d) holding descriptor parts. For ``vcl.idt``
stores the parts default to ``traj, hog, hof, mbhx, mbhy`` (30, 96, 108, 96, 96
dims); for other kinds, to every 2-D numeric column in the store's column order.
vcl's own stores of something else (proposals, crops, ...) are refused.
Rows with a NaN or infinite value in any used column are dropped (and counted).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from vcl.console import log
from vcl.errors import DataError, UsageError

IDT_COLUMNS = ("traj", "hog", "hof", "mbhx", "mbhy")
# vcl's own stores that hold no descriptors (their 2-D columns are boxes, pixels, model
# parameters): a GMM fit on them runs but means nothing. Unknown kinds are taken as
# descriptors from another tool.
NOT_DESCRIPTORS = {
    "proposals": "boxes and scores",
    "crops": "image crops",
    "clusters": "cluster assignments",
    "fisher_model": "a Fisher model",
    "frames": "decoded frames",
    "demo": "a demo",
}

Video = dict[str, np.ndarray]  # column → (T, d) float32 rows of one video


def finite_rows(columns: Video) -> np.ndarray:
    """(T,) bool: rows finite in every column."""
    masks = [np.isfinite(v).all(axis=1) for v in columns.values()]
    return np.logical_and.reduce(masks) if masks else np.zeros(0, bool)


class DescriptorStore:
    """A store of local descriptors opened for reading; ``columns`` picks the parts.

    ``path`` may be several stores (the shards of one run): they read as their merge
    (``vcl.io.union``), videos in input order.
    """

    def __init__(
        self, path: str | Path | Sequence[str | Path], columns: Sequence[str] | None = None
    ):
        from vcl.io.union import open_stores

        paths = list(path) if isinstance(path, (list, tuple)) else [path]
        self.store = open_stores(paths)
        self.path: Path | str = Path(paths[0]) if len(paths) == 1 else ", ".join(map(str, paths))
        if self.store.version != 1:  # every vcl schema is at major 1: a newer one may differ
            raise DataError(
                f"schema {self.store.attrs['vcl_schema']} is newer than this vcl reads",
                self.path,
                "upgrade vcl",
            )
        if self.store.kind in NOT_DESCRIPTORS:
            raise DataError(
                f"is a {self.store.attrs['vcl_schema']} store "
                f"({NOT_DESCRIPTORS[self.store.kind]}), not local descriptors",
                self.path,
                "give an idt store (vcl idt), a features store (vcl embed) or another "
                "store of descriptors grouped by video",
            )
        numeric = [c for c in self.store.columns if self._is_descriptor(c)]
        if columns:
            for name in columns:
                if name not in self.store.columns:
                    raise DataError(
                        f"has no column {name!r} (columns: {', '.join(self.store.columns)})",
                        self.path,
                        "pick descriptor columns with --columns",
                    )
                if name not in numeric:
                    raise UsageError(
                        f"column {name!r} is not a 2-D numeric descriptor column", self.path
                    )
            self.columns = list(columns)
        elif self.store.kind == "idt":
            missing = [c for c in IDT_COLUMNS if c not in numeric]
            if missing:
                raise DataError(f"vcl.idt store lacks descriptor columns {missing}", self.path)
            self.columns = list(IDT_COLUMNS)
        else:
            if not numeric:
                raise DataError(
                    "has no 2-D numeric column to read descriptors from",
                    self.path,
                    "is this a store of local descriptors?",
                )
            self.columns = numeric
        self.dims = {c: int(self.store[c].shape[1]) for c in self.columns}
        self.video_ids = list(self.store.group_ids)
        self.lengths = np.diff(self.store.offsets)

    def _is_descriptor(self, name: str) -> bool:
        arr = self.store[name]
        return len(arr.shape) == 2 and np.dtype(str(arr.dtype)).kind in "fiu"

    def sample(self, n_videos: int, per_video: int, seed: int) -> tuple[Video, int]:
        """Up to ``per_video`` random finite rows from each of ``n_videos`` random videos.

        Returns (column → (N, d) float32, number of non-finite rows dropped). A video
        whose sampled rows are all non-finite is an error naming it.
        """
        rng = np.random.default_rng([seed, 0xF15])
        nonempty = np.flatnonzero(self.lengths > 0)
        if nonempty.size == 0:
            raise DataError("has no descriptors in any video", self.path)
        chosen = np.sort(rng.choice(nonempty, size=min(n_videos, nonempty.size), replace=False))
        picks, owners = [], []
        for v in chosen:  # one draw per video, not per row
            n = int(self.lengths[v])
            rows = np.sort(rng.choice(n, size=min(per_video, n), replace=False))
            picks.append(rows + self.store.offsets[v])
            owners.append(np.full(rows.size, v))
        index = np.concatenate(picks)
        owner = np.concatenate(owners)
        sample = {c: self._take(c, index) for c in self.columns}
        keep = finite_rows(sample)
        dropped = int((~keep).sum())
        if dropped:
            kept_per_video = np.bincount(owner[keep], minlength=len(self.lengths))
            bad = [v for v in chosen if kept_per_video[v] == 0]
            if bad:
                self._all_nonfinite(int(bad[0]), int(self.lengths[bad[0]]))
            log.warning("dropped %d sampled descriptors with NaN or infinite values", dropped)
            sample = {c: v[keep] for c, v in sample.items()}
        return sample, dropped

    def _all_nonfinite(self, video: int, n: int) -> None:
        raise DataError(
            f"video {self.video_ids[video]!r}: all {n} descriptors read are NaN or infinite",
            self.path,
            "fix or remove that video's descriptors",
        )

    def _take(self, column: str, index: np.ndarray, block: int = 1 << 18) -> np.ndarray:
        arr = self.store[column]
        parts = [
            np.asarray(arr.get_orthogonal_selection((index[i : i + block],)), dtype=np.float32)
            for i in range(0, index.size, block)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.dims[column]), np.float32)

    def batches(
        self, video_ids: Sequence[str], max_rows: int = 1 << 17, max_videos: int = 256
    ) -> Iterator[list[tuple[str, Video, int]]]:
        """Consecutive videos in batches: (video id, finite rows per column, rows dropped).

        Each batch is read with one slice per column (stores are laid out video after
        video). A video with rows that are all non-finite is an error naming it.
        """
        index = {vid: i for i, vid in enumerate(self.video_ids)}
        order = [index[v] for v in video_ids]
        start = 0
        while start < len(order):
            stop = start + 1
            rows = int(self.lengths[order[start]])
            while (
                stop < len(order)
                and order[stop] == order[stop - 1] + 1
                and stop - start < max_videos
                and rows + int(self.lengths[order[stop]]) <= max_rows
            ):
                rows += int(self.lengths[order[stop]])
                stop += 1
            first, last = order[start], order[stop - 1]
            lo, hi = int(self.store.offsets[first]), int(self.store.offsets[last + 1])
            block = {c: np.asarray(self.store[c][lo:hi], dtype=np.float32) for c in self.columns}
            batch = []
            for v in order[start:stop]:
                a, b = int(self.store.offsets[v]) - lo, int(self.store.offsets[v + 1]) - lo
                video = {c: x[a:b] for c, x in block.items()}
                keep = finite_rows(video)
                dropped = int(b - a - keep.sum())
                if dropped:
                    if dropped == b - a:
                        self._all_nonfinite(v, b - a)
                    video = {c: x[keep] for c, x in video.items()}
                batch.append((self.video_ids[v], video, dropped))
            yield batch
            start = stop
