"""ODC / ODCT memories and their update rules, as torch tensors on the training device.

- Samples Memory ``features`` (N, 256): L2-normalised head output of every sample.
- ``labels`` (N,) int64: pseudo-label of every sample (the classifier's targets).
- Centroids Memory ``centroids`` (K, 256): mean of each cluster's members.
- Track Memory (:class:`TrackMemory`, ODCT): the members of every track, laid out as
  CSR (``order`` sorted by track, ``offsets``) so a sample's track-mates are a slice:
  an O(1) lookup, and a whole batch's members one padded gather.

"Nearest centroid" is the largest inner product with the centroid, as in ODC's code
(``argmax(centroids @ f)``), not the Euclidean distance to the un-normalised mean.

:func:`faiss_gpu` is where every ``vcl pretrain`` method clusters (k-means, FINCH): on
the GPU it trains on, when faiss can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vcl.cluster import kmeans
from vcl.console import log

EPS = 1e-10

_WARNED_CPU: set[str] = set()  # training devices already warned about (once per run)


def faiss_gpu(device: Any) -> int | None:
    """The faiss GPU that clusters for a run training on ``device`` (a ``torch.device``):
    its CUDA index, or ``None`` (the CPU) for a CPU / MPS run.

    The same decision as ``vcl cluster --device`` (:func:`vcl.device.faiss_device`: faiss
    is asked, not torch, as it sees GPUs through its own CUDA runtime), except that a
    CUDA run whose faiss cannot use that GPU (the faiss-cpu wheel) clusters on the CPU
    with a warning instead of failing: the training itself still runs on the GPU.
    """
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    from vcl.device import faiss_gpu_count

    index = dev.index if dev.index is not None else 0
    count = faiss_gpu_count()
    if index < count:
        return index
    if str(dev) not in _WARNED_CPU:
        _WARNED_CPU.add(str(dev))
        found = f"faiss sees {count} GPU(s)" if count else "faiss sees no GPU (faiss-cpu?)"
        log.warning(
            "training on %s but %s: k-means / FINCH run on the CPU "
            "(install faiss-gpu to cluster on the GPU)",
            dev,
            found,
        )
    return None


def l2n(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (ODC's ``x / (‖x‖ + 1e-10)``)."""
    return x / (x.norm(dim=1, keepdim=True) + EPS)


@dataclass
class TrackMemory:
    """Samples grouped by track: track ``t`` holds ``order[offsets[t]:offsets[t+1]]``."""

    track_of: torch.Tensor  # (N,) int64 track index of every sample
    order: torch.Tensor  # (N,) int64 sample indices sorted by track
    offsets: torch.Tensor  # (T+1,) int64

    @classmethod
    def from_index(cls, track_index: np.ndarray, device: Any = "cpu") -> TrackMemory:
        track_index = np.asarray(track_index, np.int64)
        order = np.argsort(track_index, kind="stable")
        counts = np.bincount(track_index)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        as_t = lambda a: torch.as_tensor(a, dtype=torch.int64, device=device)  # noqa: E731
        return cls(as_t(track_index), as_t(order), as_t(offsets))

    def members(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Track-mates of each sample of ``idx`` (B,): (B, L) sample indices and a (B, L)
        validity mask, L the longest of these tracks (the sample itself is included)."""
        t = self.track_of[idx]
        start, length = self.offsets[t], self.offsets[t + 1] - self.offsets[t]
        pos = torch.arange(int(length.max()), device=idx.device)
        valid = pos[None, :] < length[:, None]
        flat = (start[:, None] + pos[None, :]).clamp(max=len(self.order) - 1)
        return self.order[flat], valid


def odct_weights(f: torch.Tensor, mates: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """ODCT step (iii): weights d_j = d(x_i, x') / d(x_i, x_j), x' the track member whose
    memory feature is closest to f(x_i); Euclidean d.

    f: (B, D) normalised features, mates: (B, L, D) memory features, valid: (B, L).
    A member at distance 0 gets weight 1 (it is x'); then every other gets 0 / d = 0.
    Invalid (padding) entries get 0. Returns (B, L).
    """
    dist = (mates - f[:, None, :]).norm(dim=2)  # (B, L)
    dist = torch.where(valid, dist, torch.full_like(dist, float("inf")))
    nearest = dist.min(dim=1, keepdim=True).values  # (B, 1): d(x_i, x')
    w = torch.where(dist > 0, nearest / dist.clamp(min=EPS), torch.ones_like(dist))
    return torch.where(valid, w, torch.zeros_like(w))


def odct_update(
    f: torch.Tensor, mates: torch.Tensor, valid: torch.Tensor, m: float
) -> torch.Tensor:
    """ODCT eq. 1: F(x_i) ← m·f/‖f‖ + (1 − m)·Σ_j d_j F(x_j) / Σ_j d_j, renormalised.

    f: (B, D) head outputs, mates: (B, L, D) the track members' memory features.
    """
    f = l2n(f)
    w = odct_weights(f, mates, valid)  # (B, L), Σ_j w_j ≥ 1 (x' has weight 1)
    track_mean = (w[:, :, None] * mates).sum(dim=1) / w.sum(dim=1, keepdim=True)
    return l2n(m * f + (1.0 - m) * track_mean)


def odc_update(f: torch.Tensor, old: torch.Tensor, m: float) -> torch.Tensor:
    """ODC's update: F(x_i) ← m·f/‖f‖ + (1 − m)·F(x_i), renormalised. (B, D) → (B, D)."""
    return l2n(m * l2n(f) + (1.0 - m) * old)


def assign(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """ODCT eq. 2: each sample's nearest centroid. (B, D), (K, D) → (B,) int64."""
    return (features @ centroids.T).argmax(dim=1)


def centroids_of(features: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Centroids Memory: (K, D) mean of each cluster's members (zero for an empty one)."""
    sums = torch.zeros(k, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=k).clamp(min=1).to(features.dtype)
    return sums / counts[:, None]


def class_weights(labels: torch.Tensor, k: int) -> torch.Tensor:
    """ODC's loss re-weighting: w_c ∝ (n_c + 1e-10)^(-1/2), normalised to sum 1. (K,)"""
    hist = torch.bincount(labels, minlength=k).to(torch.float32)
    inv = (hist + EPS) ** -0.5
    return inv / inv.sum()


def split_in_two(x: np.ndarray, seed: int, gpu: int | None = None) -> np.ndarray:
    """Boolean (n,) mask of the second half of a 2-means split of ``x`` (n, D); a seeded
    random halving when k-means gives an empty side (ODC's fallback). ``gpu``: the faiss
    GPU of the k-means (None: the CPU)."""
    if len(x) >= 2:
        second = kmeans(x, 2, seed=seed, gpu=gpu).labels[0] == 1
        if 0 < second.sum() < len(x):
            return second
    order = np.random.default_rng(seed).permutation(len(x))
    second = np.zeros(len(x), bool)
    second[order[len(x) // 2 :]] = True
    return second


def fix_small_clusters(
    features: torch.Tensor,
    labels: torch.Tensor,
    centroids: torch.Tensor,
    min_cluster: int,
    seed: int,
    gpu: int | None = None,
) -> int:
    """ODC's small-cluster rule, in place: the samples of every cluster with fewer than
    ``min_cluster`` members go to their nearest centroid among the other clusters, then
    each emptied cluster takes one half of the current largest cluster, split by 2-means,
    and both centroids are recomputed. Returns how many clusters were handled.

    A split half may itself be small; it is handled at the next call, as in ODC where
    the rule runs after every iteration. ``gpu``: the faiss GPU of the 2-means splits
    (:func:`faiss_gpu`; None: the CPU).
    """
    k = centroids.shape[0]
    sizes = torch.bincount(labels, minlength=k)
    small = torch.nonzero(sizes < min_cluster).flatten()
    if len(small) == 0:
        return 0
    keep = torch.ones(k, dtype=torch.bool, device=labels.device)
    keep[small] = False
    allowed = torch.nonzero(keep).flatten()
    if len(allowed) == 0:  # every cluster is small: nowhere to move samples (checked upfront)
        return 0
    moving = torch.nonzero(~keep[labels]).flatten()
    if len(moving):
        labels[moving] = allowed[assign(features[moving], centroids[allowed])]
    for i, e in enumerate(small.tolist()):
        biggest = int(torch.bincount(labels, minlength=k).argmax())
        members = torch.nonzero(labels == biggest).flatten()
        second = split_in_two(features[members].float().cpu().numpy(), seed + i, gpu)
        labels[members[torch.as_tensor(second, device=labels.device)]] = e
        for c in (biggest, e):
            centroids[c] = features[labels == c].mean(dim=0)
    return len(small)


@dataclass
class ClusterMemory:
    """Samples Memory, labels and Centroids Memory of ODC / ODCT (all on one device)."""

    features: torch.Tensor  # (N, D) float32, rows L2-normalised
    labels: torch.Tensor  # (N,) int64
    centroids: torch.Tensor  # (K, D) float32
    k: int
    tracks: TrackMemory | None = None

    @classmethod
    def create(
        cls, features: torch.Tensor, labels: torch.Tensor, k: int, tracks: TrackMemory | None
    ) -> ClusterMemory:
        features = l2n(features.float())
        return cls(features, labels.long(), centroids_of(features, labels.long(), k), k, tracks)

    def update(self, idx: torch.Tensor, f: torch.Tensor, m: float, use_tracks: bool) -> None:
        """Step (iv): new memory features of the batch samples ``idx`` (B,) from their head
        outputs ``f`` (B, D) (eq. 1 with tracks, ODC's rule without), then eq. 2."""
        f = f.float()
        if use_tracks:
            assert self.tracks is not None
            mates, valid = self.tracks.members(idx)
            new = odct_update(f, self.features[mates], valid, m)
        else:
            new = odc_update(f, self.features[idx], m)
        self.features[idx] = new
        self.labels[idx] = assign(new, self.centroids)

    def recompute_centroids(self) -> None:
        """Step (v): every centroid becomes the mean of its members."""
        self.centroids = centroids_of(self.features, self.labels, self.k)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"features": self.features, "labels": self.labels, "centroids": self.centroids}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        dev = self.features.device
        self.features = state["features"].to(dev)
        self.labels = state["labels"].to(dev)
        self.centroids = state["centroids"].to(dev)
