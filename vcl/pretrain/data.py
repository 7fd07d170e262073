"""Training samples from a ``vcl.crops/1`` store, and their augmentation on the device.

Loader workers only read uint8 crops (zarr chunks of a few crops each; a batch reads
each chunk it touches once, as a slice: `read_rows`); augmentation runs afterwards on
the training device on the whole batch, with independent random parameters per sample,
so a GPU is not starved by CPU image work:

- random resized crop (area scale in [``crop_scale``, 1], aspect ratio in [3/4, 4/3]),
  horizontal flip (p = 0.5) and rotation in ±2° are folded into one affine warp per
  sample (a single ``grid_sample`` to ``size``×``size``);
- colour jitter (ODC's values: brightness 0.4, contrast 0.4, saturation 1.0, hue 0.5,
  applied in that fixed order), then grayscale with p = 0.2
  (``torchvision.transforms.v2.functional``);
- ImageNet mean / std normalisation.

Randomness comes from a generator seeded by (seed, iteration), and the sample order of
an epoch from (seed, epoch), so a resumed run sees exactly the batches of an
uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vcl.errors import DataError

_SLICE_BYTES = 16 << 20  # read_rows: most bytes read in one slice (runs of chunks)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass
class CropsInfo:
    """What the training needs to know about a crops store without reading its images."""

    path: Path
    n: int
    side: int  # S of the stored S×S crops
    track_ids: np.ndarray | None  # (N,) str, None when the store has none
    video_ids: np.ndarray  # (N,) str
    sources: tuple[Path, ...] = ()  # every input store (shards read as their merge)

    def open_store(self) -> Any:
        """The crops store(s) as one (``vcl.io.union.open_stores``)."""
        return open_crops_store(self.sources or (self.path,))

    @property
    def track_index(self) -> np.ndarray:
        """(N,) int64 track number of every sample (tracks of different videos differ)."""
        assert self.track_ids is not None
        keys = np.char.add(np.char.add(self.video_ids, "\t"), self.track_ids)
        return np.unique(keys, return_inverse=True)[1].astype(np.int64)

    @property
    def n_tracks(self) -> int:
        return 0 if self.track_ids is None else int(self.track_index.max()) + 1

    def sample_keys(self) -> np.ndarray:
        """(N,) str: every crop's video, track and frame, what per-crop state aligns to."""
        store = self.open_store()
        keys = self.video_ids
        if self.track_ids is not None:
            keys = np.char.add(np.char.add(keys, "\t"), self.track_ids)
        if "frame" in store.columns:
            frames = np.asarray(store["frame"][:]).astype(str)
            keys = np.char.add(np.char.add(keys, "\t"), frames)
        return keys


def as_paths(inputs: str | Path | Sequence[str | Path]) -> list[str]:
    """One input or several (the shards of a ``--shard I/N`` run) as a list of paths."""
    return [str(inputs)] if isinstance(inputs, (str, Path)) else [str(p) for p in inputs]


def open_crops_store(inputs: str | Path | Sequence[str | Path]) -> Any:
    """A ``Store``, or for several inputs their checked ``StoreUnion`` (read as a merge)."""
    from vcl.io.union import open_stores

    return open_stores(as_paths(inputs), kind="crops", version=1)


def open_crops(inputs: str | Path | Sequence[str | Path]) -> CropsInfo:
    """Check a crops store (or several of one run, read as their merge) and read its ids
    (images stay on disk)."""
    paths = as_paths(inputs)
    store = open_crops_store(paths)
    path = store.path  # messages name the first input
    if "image" not in store.columns:
        raise DataError("crops store has no 'image' column", path)
    n = store.n_rows
    if n < 2:
        raise DataError(f"crops store holds {n} crop(s); training needs at least 2", path)
    shape = store["image"].shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise DataError(f"images must be N×S×S×3, got {list(shape)}", path)
    video_ids = (
        np.array(store["video_id"][:].tolist(), dtype=str)
        if "video_id" in store.columns
        else np.repeat(np.array(store.group_ids, dtype=str), np.diff(store.offsets))
    )
    track_ids = None
    if "track_id" in store.columns:
        track_ids = np.array(store["track_id"][:].tolist(), dtype=str)
        if (track_ids == "").any():
            track_ids = None
    sources = tuple(Path(p) for p in paths)
    return CropsInfo(Path(path), n, int(shape[1]), track_ids, video_ids, sources)


class CropsBatches(torch.utils.data.Dataset):
    """Item ``i`` of the loader is batch ``i``: (uint8 images (B, S, S, 3), indices (B,)).

    The store is opened lazily in each loader worker (zarr handles are not shared)."""

    def __init__(self, path: Path | Sequence[Path], batches: list[np.ndarray]):
        self.path = path  # one store or several (read as their merge)
        self.batches = batches
        self._images: Any = None

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._images is None:
            self._images = open_crops_store(self.path)["image"]
        idx = self.batches[i]
        images = read_rows(self._images, idx)
        return torch.from_numpy(images), torch.from_numpy(idx.astype(np.int64))


def read_rows(column: Any, rows: np.ndarray) -> np.ndarray:
    """``column[rows]`` for row numbers in any order (repeats allowed) of a zarr array
    or a ``UnionColumn``, reading each touched chunk once: consecutive touched chunks as
    one contiguous slice, rows picked from it in memory.

    A slice holds at most ``_SLICE_BYTES`` of rows (but always a chunk). zarr's
    orthogonal selection of the same rows costs about twice as much (256 random 224-px
    crops of 4-crop chunks: 0.40 s against 0.23 s), mostly in its per-row indexing.
    """
    from vcl.io.union import UnionColumn

    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    out = np.empty((len(rows), *column.shape[1:]), column.dtype)
    n = int(column.shape[0])
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        bad = rows[(rows < 0) | (rows >= n)][0]
        raise IndexError(f"row {int(bad)} out of range for {n} rows")
    if isinstance(column, UnionColumn):  # each input store has its own chunks
        which = np.searchsorted(column.offsets, rows, side="right") - 1
        for s in np.unique(which):
            mine = which == s
            out[mine] = read_rows(column.arrays[s], rows[mine] - int(column.offsets[s]))
        return out
    if not len(rows):
        return out
    chunk = int(column.chunks[0])
    most = max(1, _SLICE_BYTES // max(1, chunk * out[:1].nbytes))  # chunks in one slice
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    touched = np.unique(ordered // chunk)
    for run in np.split(touched, np.flatnonzero(np.diff(touched) != 1) + 1):
        for first in range(0, len(run), most):
            piece = run[first : first + most]
            start, stop = int(piece[0]) * chunk, min((int(piece[-1]) + 1) * chunk, n)
            lo, hi = np.searchsorted(ordered, (start, stop))
            block = np.asarray(column[start:stop])
            out[order[lo:hi]] = block[ordered[lo:hi] - start]
    return out


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1
) -> list[np.ndarray]:
    """This rank's share of every batch of an epoch: a permutation seeded by (seed, epoch)
    cut into global batches of ``batch_size``; rank r takes positions r, r + world, ...
    A last batch smaller than ``world * 2`` is dropped (BatchNorm needs 2 samples)."""
    perm = np.random.default_rng([seed, epoch, 7]).permutation(n)
    cuts = [perm[s : s + batch_size] for s in range(0, n, batch_size)]
    return [b[rank::world] for b in cuts if len(b) >= 2 * world]


def loader(info: CropsInfo, batches: list[np.ndarray], workers: int, pin: bool) -> Any:
    """A DataLoader over precomputed batches (order fixed, so resume is exact)."""
    return torch.utils.data.DataLoader(
        CropsBatches(list(info.sources or (info.path,)), batches),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )


@dataclass(frozen=True)
class AugmentParams:
    size: int = 224  # output side
    crop_scale: float = 0.08  # smallest crop area fraction (torchvision's default)
    rotation: float = 2.0  # degrees, ±
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 1.0
    hue: float = 0.5
    grayscale: float = 0.2  # probability


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, S, S, 3) → float (B, 3, S, S) in [0, 1]."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)


def normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def plain(images: torch.Tensor, size: int) -> torch.Tensor:
    """The test-time view: resized to ``size`` and normalised. (B, S, S, 3) uint8 →
    (B, 3, size, size)."""
    x = to_float(images)
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return normalise(x)


def _uniform(g: torch.Generator, n: int, lo: float, hi: float, device: Any) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def augment(images: torch.Tensor, p: AugmentParams, g: torch.Generator) -> torch.Tensor:
    """Per-sample random augmentation of a uint8 batch (B, S, S, 3) already on the
    training device → normalised float (B, 3, size, size). ``g`` lives on that device."""
    from torchvision.transforms.v2 import functional as tvf
    from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

    x = to_float(images)
    b, dev = x.shape[0], x.device
    # Geometry: output pixel (u, v) in [-1, 1]² samples the input at A·(u, v) + t.
    area = _uniform(g, b, p.crop_scale, 1.0, dev)
    log_ratio = _uniform(g, b, math.log(3 / 4), math.log(4 / 3), dev)
    w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)  # crop width / image width
    h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    cx = _uniform(g, b, -1.0, 1.0, dev) * (1 - w)
    cy = _uniform(g, b, -1.0, 1.0, dev) * (1 - h)
    angle = _uniform(g, b, -p.rotation, p.rotation, dev) * (math.pi / 180)
    flip = torch.where(torch.rand(b, generator=g, device=dev) < 0.5, -1.0, 1.0)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [
            torch.stack([w * cos * flip, -h * sin, cx], dim=1),
            torch.stack([w * sin * flip, h * cos, cy], dim=1),
        ],
        dim=1,
    )  # (B, 2, 3)
    grid = torch.nn.functional.affine_grid(theta, [b, 3, p.size, p.size], align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", align_corners=False)
    # Colour jitter, each factor drawn per sample (torchvision's ranges).
    view = (b, 1, 1, 1)
    bright = _uniform(g, b, 1 - p.brightness, 1 + p.brightness, dev).clamp(min=0).view(view)
    x = (x * bright).clamp(0, 1)
    contrast = _uniform(g, b, 1 - p.contrast, 1 + p.contrast, dev).clamp(min=0).view(view)
    mean = tvf.rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (contrast * x + (1 - contrast) * mean).clamp(0, 1)
    sat = _uniform(g, b, 1 - p.saturation, 1 + p.saturation, dev).clamp(min=0).view(view)
    x = (sat * x + (1 - sat) * tvf.rgb_to_grayscale(x)).clamp(0, 1)
    if p.hue > 0:
        shift = _uniform(g, b, -p.hue, p.hue, dev).view(b, 1, 1)
        hsv = _rgb_to_hsv(x)
        hsv = torch.stack([(hsv[:, 0] + shift) % 1.0, hsv[:, 1], hsv[:, 2]], dim=1)
        x = _hsv_to_rgb(hsv)
    gray = (torch.rand(b, generator=g, device=dev) < p.grayscale).view(view)
    x = torch.where(gray, tvf.rgb_to_grayscale(x, num_output_channels=3), x)
    return normalise(x)
