"""SLIC (Hosseini Khorasgani, Chen & Shkurti, CVPR 2022): triplets from iterative clustering.

Every ``cluster_every`` epochs (after ``warmup_epochs`` in which every video is its own
cluster) the network embeds one centre clip of every video, the 128-d embeddings are
L2-normalised and clustered with FINCH (:func:`vcl.cluster.finch`, partition
``finch_level``; the authors' code takes partition 0; on the training GPU when faiss can
use it, :func:`vcl.pretrain.memories.faiss_gpu`). Cluster ids are pseudo-labels:

- anchor x = a clip of video i; positive x⁺ = another clip of video i with probability
  ``p_same`` (p_α; the authors' UCF101 configs use 0.2), else a clip of another video of
  i's cluster (:func:`sample_positive_videos`);
- triplet loss with cosine distance d = 1 − cos and margin m1 = 0.2 over the 2B
  embeddings of anchors and positives labelled by cluster: every pair of embeddings
  with the same label is an (anchor, positive) pair; its negative is drawn at random
  among the batch's embeddings of other clusters that violate the margin
  (d(a, n) < d(a, p) + m1, the authors' "random semi-hard" sampling), or, when none
  does, the closest one (:func:`select_triplets`);
- temporal discrimination loss (the authors' "local-local contrast"):
  max(0, d(x, aug(x)) − d(x, x⁺) + m2), m2 = 0.04, where aug(x) is the anchor's frames
  again under fresh augmentation and x⁺ is the triplet's positive (a clip of the same
  video that starts after the anchor's frames, or of another video of the cluster);
- multi-view: with probability ``flow_prob`` = 0.25 the positive's (and, as in the
  authors' code, aug(x)'s) RGB frames are replaced by an optical-flow view of the same
  frames, fed through the same encoder (:func:`flow_view`): as the authors'
  ``CHANNEL_EXTENSIONS: 'optical_u'``, only the horizontal component u, quantised to a
  grey image as TV-L1 flow images are (±b → 0 ... 255, zero motion 128) and replicated to
  3 channels. The flow is computed on the fly in the loader workers on the already
  cropped clip, with DIS (``--flow dis``, the default: 2.8 ms a 150×112 frame here) or
  TV-L1 as the authors (``--flow tvl1``: 470 ms a frame here, i.e. 7 s a 16-frame clip,
  so only for small runs); on the fly because a precomputed flow of every frame would
  cost as much disk as the videos decoded, and DIS keeps the loader ahead of the step.

Clips (the authors' temporal crops): the anchor is a video's first T frames and aug(x)
the same frames; the positive starts after them when the video is long enough
(:func:`clip_starts`). Spatial augmentation: :mod:`vcl.pretrain.clips`' multi-scale
square crop (side 1/2 to 1 of the shorter side, the side range of the authors'
RandomResizedCrop with area ≥ 0.25) and flip, then, drawn once per clip with the crop
(:func:`vcl.pretrain.clips.draw_colour`), colour jitter (0.5 each, p 0.8), ColorDrop
(grayscale, p 0.2) and 15×15 Gaussian blur σ 2 (p 0.2) on the device
(:data:`SLIC_COLOUR`, :func:`vcl.pretrain.clips.colour_augment`). Flow views go through
the same transform, as in the authors' code: on a grey image brightness, contrast and
blur act while saturation, hue and grayscale leave it unchanged. Clip size 128 and SGD
without weight decay are the authors' (every config's ``SAMPLE_SIZE: 128``;
``online_train.py``'s SGD has no weight decay).

Shapes: clips (B, 3, T, H, W); embeddings (B, 128), L2-normalised.

A training step reads nothing back from the device but what the triplet sampling needs
(its pair and candidate counts): the pseudo-labels stay on the device between
clusterings and the epoch's loss sums and active fractions are accumulated there, read
once by ``epoch_metrics``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vcl.console import log
from vcl.errors import UsageError
from vcl.pretrain import check_resumed_size, dist
from vcl.pretrain.clips import (
    ClipParams,
    ColourParams,
    centre_plan,
    clip_loader,
    iterations,
    open_videos,
    plan_clips,
    read_clips,
    require_decodable,
    to_input,
)
from vcl.pretrain.memories import faiss_gpu

FLOW_METHODS = ("dis", "tvl1")
# The authors' per-clip colour augmentation (ColorJitter p 0.8, ColorDrop, GaussianBlur)
SLIC_COLOUR = ColourParams(
    jitter_p=0.8,
    brightness=0.5,
    contrast=0.5,
    saturation=0.5,
    hue=0.5,
    grayscale=0.2,
    blur=0.2,
    blur_sigma=2.0,
    blur_kernel=15,
)
FLOW_BOUND = 20.0  # px at 240 px of short side: the TV-L1 flow images' clipping bound
FLOW_REFERENCE_SIDE = 240.0  # UCF101's frame height, where the bound of 20 px applies


@dataclass(frozen=True)
class SLICOptions:
    """Method options (``vcl pretrain --method slic`` flags) with the paper's values."""

    p_same: float = 0.2  # p_α: positive from the anchor's own video (authors' UCF config)
    triplet_margin: float = 0.2  # m1 of the cluster triplet loss
    temporal_margin: float = 0.04  # m2 of the temporal discrimination loss
    temporal_weight: float = 1.0  # λ of the temporal loss (authors' LOCAL_LOCAL_WEIGHT)
    cluster_every: int = 5  # epochs between FINCH clusterings
    warmup_epochs: int = 0  # epochs before the first clustering (each video its own cluster)
    finch_level: int = 0  # FINCH partition used as pseudo-labels (0 = finest)
    flow_prob: float = 0.25  # probability of the optical-flow view for x⁺ and aug(x)
    flow: str = "dis"  # flow algorithm of the flow view: dis (fast) or tvl1 (as the authors)
    clustering: bool = True  # False: every video stays its own cluster (ablation)
    temporal: bool = True  # False: no temporal discrimination loss (ablation)
    frames: int = 16  # T of a clip (shared --frames of the video methods)
    frame_stride: int = 1  # every s-th frame (shared --frame-stride; 1 as the authors)
    keep_going: bool = False  # skip undecodable videos with a warning instead of failing
    colour: bool = True  # the authors' per-clip colour jitter, ColorDrop and blur


# ---------------------------------------------------------------------------- losses


def cosine_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(M, D), (N, D) → (M, N) cosine distances 1 − cos(a_i, b_j)."""
    return 1.0 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def select_triplets(
    dist: torch.Tensor, labels: torch.Tensor, margin: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(anchor, positive, negative) indices into the M embeddings, the authors' sampling.

    ``dist`` (M, M) distances, ``labels`` (M,) pseudo-labels. Every pair i < j with
    ``labels[i] == labels[j]`` is one (anchor, positive) pair, provided the label has at
    least one negative (another label in the batch). Its negative n is uniform among the
    other labels' embeddings with d(a, p) + margin − d(a, n) > 0 (semi-hard or hard),
    else the closest one (hardest easy negative). Returns three (P,) int64 tensors.
    """
    m = len(labels)
    same = labels[:, None] == labels[None, :]  # (M, M)
    upper = torch.triu(torch.ones(m, m, dtype=torch.bool, device=dist.device), diagonal=1)
    a, p = torch.nonzero(same & upper, as_tuple=True)  # (P,) each, row-major order
    if len(a) == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=dist.device)
        return empty, empty, empty
    negative = ~same[a]  # (P, M): candidates of each pair's anchor
    has_negative = negative.any(dim=1)
    a, p, negative = a[has_negative], p[has_negative], negative[has_negative]
    d_an = dist[a]  # (P, M)
    violating = negative & (dist[a, p][:, None] + margin - d_an > 0)
    scores = torch.rand(d_an.shape, generator=generator, device=generator.device).to(dist.device)
    random_violator = torch.where(violating, scores, -1.0).argmax(dim=1)
    closest = torch.where(negative, d_an, torch.inf).argmin(dim=1)
    n = torch.where(violating.any(dim=1), random_violator, closest)
    return a, p, n


@dataclass
class TripletStats:
    loss: torch.Tensor  # scalar, differentiable
    triplets: int  # number of (a, p, n) triplets
    active: torch.Tensor  # scalar: fraction with a positive hinge (nan when there are none)


def triplet_loss(
    z: torch.Tensor, labels: torch.Tensor, margin: float, generator: torch.Generator
) -> TripletStats:
    """Mean max(0, d(a, p) − d(a, n) + margin) over :func:`select_triplets`' triplets of
    the embeddings ``z`` (M, D) with pseudo-labels (M,); zero (still differentiable) when
    the batch holds no triplet."""
    with torch.no_grad():
        a, p, n = select_triplets(cosine_distances(z, z), labels, margin, generator)
    if len(a) == 0:
        return TripletStats(z.sum() * 0.0, 0, torch.full((), float("nan"), device=z.device))
    d_ap = 1.0 - F.cosine_similarity(z[a], z[p], dim=1)
    d_an = 1.0 - F.cosine_similarity(z[a], z[n], dim=1)
    hinge = F.relu(d_ap - d_an + margin)
    return TripletStats(hinge.mean(), len(a), (hinge.detach() > 0).float().mean())


def temporal_loss(
    x: torch.Tensor, x_aug: torch.Tensor, x_plus: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal discrimination, mean max(0, d(x, aug(x)) − d(x, x⁺) + margin) over the
    batch (B, D) each; also the fraction of active (positive-hinge) terms (a scalar
    tensor on the device, like the loss)."""
    d_pos = 1.0 - F.cosine_similarity(x, x_aug, dim=1)
    d_neg = 1.0 - F.cosine_similarity(x, x_plus, dim=1)
    hinge = F.relu(d_pos - d_neg + margin)
    return hinge.mean(), (hinge.detach() > 0).float().mean()


# ---------------------------------------------------------------------------- sampling


def sample_positive_videos(
    anchors: np.ndarray, clusters: np.ndarray, p_same: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The video of each anchor's positive, and whether it was drawn as "same video".

    ``anchors`` (B,) video indices, ``clusters`` (V,) cluster id of every video. With
    probability ``p_same`` the positive is the anchor's own video; otherwise it is
    uniform among the other videos of the anchor's cluster (the anchor's own video when
    the cluster has no other). Returns (B,) int64 videos and (B,) bool "same" draws.
    """
    anchors = np.asarray(anchors, dtype=np.int64)
    clusters = np.asarray(clusters, dtype=np.int64)
    same = rng.random(len(anchors)) < p_same
    order = np.argsort(clusters, kind="stable")  # videos grouped by cluster
    sizes = np.bincount(clusters)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(len(clusters), np.int64)  # each video's position inside its group
    rank[order] = np.arange(len(clusters)) - starts[clusters[order]]
    c = clusters[anchors]
    others = sizes[c] - 1  # other members of the anchor's cluster
    pick = np.floor(rng.random(len(anchors)) * np.maximum(others, 1)).astype(np.int64)
    pick += pick >= rank[anchors]  # skip the anchor itself
    other = order[starts[c] + np.minimum(pick, sizes[c] - 1)]
    positive = np.where(same | (others == 0), anchors, other)
    return positive.astype(np.int64), same


def clip_starts(
    n_frames: np.ndarray, frames: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Start frames of the anchor and positive clips (the authors' temporal crops).

    The anchor clip covers a video's first ``frames`` frames (a clip's span); the
    positive clip starts at a uniform frame in [min(frames, n − frames), n − frames],
    i.e. after the anchor when the video is long enough (0 when it is shorter than a
    clip). ``n_frames`` (B,) of the positive's videos; returns (B,) anchor and (B,)
    positive starts.
    """
    n_frames = np.asarray(n_frames, dtype=np.int64)
    last = np.maximum(n_frames - frames, 0)
    first = np.minimum(frames, last)
    positive = first + np.floor(rng.random(len(n_frames)) * (last - first + 1)).astype(np.int64)
    return np.zeros(len(n_frames), np.int64), positive


# ---------------------------------------------------------------------------- flow view


def flow_bound(height: int, width: int) -> float:
    """The flow clipping bound for frames of this size: 20 px per 240 px of short side."""
    return FLOW_BOUND * min(height, width) / FLOW_REFERENCE_SIDE


def _flow_pair(prev: np.ndarray, nxt: np.ndarray, method: str) -> np.ndarray:
    import cv2

    from vcl.motion import dense_flow

    if method == "dis":
        return dense_flow(prev, nxt, "dis", dis_preset="medium")
    if method == "tvl1":
        return cv2.optflow.createOptFlow_DualTVL1().calc(prev, nxt, None)
    raise ValueError(f"flow method must be one of {FLOW_METHODS}, got {method!r}")


def flow_view(frames: np.ndarray, method: str = "dis") -> np.ndarray:
    """The optical-flow view of a clip: uint8 (T, H, W, 3) RGB → uint8 (T, H, W, 3) grey.

    The authors' ``optical_u`` channel: frame t holds the horizontal flow u from frame t
    to t + 1 (the last frame repeats the last flow), clipped to ±b and quantised to
    round((u + b)·255 / 2b) as the TV-L1 flow images they load (zero motion → 128), with
    b = :func:`flow_bound` (20 px at 240 px). Their loader reads that image as one grey
    channel and replicates it to three, so the RGB clips' colour augmentation and
    normalisation apply unchanged; so does this.
    """
    import cv2

    t, h, w, _ = frames.shape
    if t < 2:  # no pair of frames: no motion
        return np.full_like(frames, 128)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    u = np.stack([_flow_pair(grey[i], grey[i + 1], method)[..., 0] for i in range(t - 1)])
    u = np.concatenate([u, u[-1:]])  # (T, H, W)
    bound = flow_bound(h, w)
    level = np.rint((np.clip(u, -bound, bound) + bound) * (255.0 / (2 * bound)))
    return np.repeat(level.astype(np.uint8)[..., None], 3, axis=3)


# ---------------------------------------------------------------------------- model


class SLICHead(nn.Sequential):
    """The authors' projection head: (N, in_dim) → FC 2048 → BN → ReLU → FC 128."""

    def __init__(self, in_dim: int, hidden: int = 2048, out_dim: int = 128) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )


class SLICNetwork(nn.Module):
    """Backbone + head; ``classifier`` is empty (the loop checkpoints one per method)."""

    def __init__(self, backbone: nn.Module, in_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = SLICHead(in_dim)
        self.classifier = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) clips → (N, 128) L2-normalised embeddings."""
        return F.normalize(self.head(self.backbone(x)), dim=1)


def cluster_videos(
    embeddings: np.ndarray, level: int, gpu: int | None = None
) -> tuple[np.ndarray, list[int]]:
    """FINCH on L2-normalised embeddings (V, D): partition ``level`` as (V,) int64 labels
    (the coarsest one when the hierarchy has fewer levels), and the clusters per level.
    ``gpu``: the faiss GPU of the neighbour searches (None: the CPU)."""
    from vcl.cluster import canonical, finch, l2_normalise

    x = l2_normalise(np.asarray(embeddings, dtype=np.float32))
    result = finch(x, metric="cosine", gpu=gpu)
    level = min(level, len(result.n_clusters) - 1)
    return canonical(result.partition(level)).astype(np.int64), list(result.n_clusters)


# ---------------------------------------------------------------------------- data


VIEWS = ("anchor", "positive", "aug")  # the three clips of a batch item, in this order
# sums over an epoch's steps kept on the device: triplet and temporal loss, active
# triplets (fraction × count) and active temporal terms (fraction × anchors)
SUMS = ("triplet", "temporal", "active", "temporal_active")


@dataclass
class TripletPlan:
    """One batch: B anchors, each with three clips (arrays indexed [b, view])."""

    anchors: np.ndarray  # (B,) int64 video of the anchor and aug(x)
    positives: np.ndarray  # (B,) int64 video of the positive
    same: np.ndarray  # (B,) bool: positive drawn as "same video"
    start: np.ndarray  # (B, 3) int64
    scale: np.ndarray  # (B, 3) float64
    x: np.ndarray  # (B, 3)
    y: np.ndarray  # (B, 3)
    flip: np.ndarray  # (B, 3) bool
    flow: np.ndarray  # (B, 3) bool: replace the view by its optical flow
    colour: np.ndarray  # (B, 3, C) float64 colour draws (clips.draw_colour); C = 0: none

    def __len__(self) -> int:
        return len(self.anchors)

    def take(self, rows: Any) -> TripletPlan:
        return TripletPlan(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))


def plan_triplet_batch(
    frames: np.ndarray,
    anchors: np.ndarray,
    clusters: np.ndarray,
    params: Any,
    opts: SLICOptions,
    rng: np.random.Generator,
) -> TripletPlan:
    """Draw everything random about a batch's clips (positive video, temporal and
    spatial crops, colour augmentation, flow views) in the main process. ``frames`` (V,)
    frame counts, ``clusters`` (V,) pseudo-labels, ``params`` a
    :class:`vcl.pretrain.clips.ClipParams`."""
    anchors = np.asarray(anchors, dtype=np.int64)
    positives, same = sample_positive_videos(anchors, clusters, opts.p_same, rng)
    a_start, p_start = clip_starts(frames[positives], params.span, rng)
    geometry = plan_clips(frames, anchors, params, rng, clips_per_video=3)  # crops, colour
    start = np.stack([a_start, p_start, a_start], axis=1)
    flow = rng.random((len(anchors), 3)) < opts.flow_prob
    flow[:, 0] = False  # the anchor is always RGB
    return TripletPlan(
        anchors,
        positives,
        same,
        start,
        geometry.scale,
        geometry.x,
        geometry.y,
        geometry.flip,
        flow,
        geometry.colour,
    )


def read_triplet_batch(videos: Any, plan: TripletPlan, params: Any, flow: str) -> np.ndarray:
    """The clips of a plan → uint8 (B, 3, T, S, S, 3), views as :data:`VIEWS`; a view
    marked for flow holds :func:`flow_view` of its (already cropped) frames."""
    b = len(plan)
    out = np.empty((b, 3, params.frames, params.size, params.size, 3), np.uint8)
    for i in range(b):
        a, p = int(plan.anchors[i]), int(plan.positives[i])
        groups = [(a, [0, 1, 2])] if a == p else [(a, [0, 2]), (p, [1])]
        for video, views in groups:
            out[i, views] = read_clips(
                videos.paths[video],
                int(videos.frames[video]),
                plan.start[i, views],
                plan.scale[i, views],
                plan.x[i, views],
                plan.y[i, views],
                plan.flip[i, views],
                params,
            )
        for v in np.flatnonzero(plan.flow[i]):
            out[i, v] = flow_view(out[i, v], flow)
    return out


class TripletBatches:
    """Item ``i`` of the loader is batch ``i``: (uint8 clips (B, 3, T, S, S, 3), int64
    anchor videos (B,), bool flow flags (B, 3), float64 colour draws (B, 3, C)); a
    map-style Dataset by duck typing."""

    def __init__(self, videos: Any, plans: list[TripletPlan], params: Any, flow: str) -> None:
        self.videos, self.plans, self.params, self.flow = videos, plans, params, flow

    def __len__(self) -> int:
        return len(self.plans)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        plan = self.plans[i]
        clips = read_triplet_batch(self.videos, plan, self.params, self.flow)
        rest = (plan.anchors, plan.flow, plan.colour)
        return torch.from_numpy(clips), *(torch.from_numpy(a) for a in rest)


# ---------------------------------------------------------------------------- method


class SLICMethod:
    """``vcl pretrain --method slic``: the method interface of :mod:`vcl.pretrain.loop`."""

    name: ClassVar[str] = "slic"
    family: ClassVar[str] = "video"
    options_type: ClassVar[type] = SLICOptions
    # CLI options left at their defaults take these: the authors' network, clip size
    # (every config's SAMPLE_SIZE: 128) and SGD at lr 0.1 without weight decay
    # (online_train.py)
    defaults: ClassVar[dict[str, Any]] = {
        "arch": "r3d_18",
        "size": 128,
        "cluster_every": 5,
        "lr": 0.1,
        "weight_decay": 0.0,
    }

    def __init__(self, config: Any, data: Any, device: torch.device) -> None:
        self.config = config
        self.opts: SLICOptions = config.options
        self.data = data  # a vcl.pretrain.clips.VideoSet
        self.device = device
        self.params = ClipParams(
            frames=self.opts.frames,
            size=config.size,
            stride=self.opts.frame_stride,
            colour=SLIC_COLOUR if self.opts.colour else None,
        )
        self.generator = torch.Generator(device=device)
        self.model: nn.Module | None = None
        self.clusters = np.arange(data.n, dtype=np.int64)  # (V,) pseudo-labels
        # With no decodable video, check() refuses the input by name: nothing to measure.
        self.cluster_info: dict[str, Any] = self._cluster_metrics(None, 0.0) if data.n else {}
        self._reset_counters()

    @property
    def clusters(self) -> np.ndarray:
        """(V,) int64 pseudo-label of every video; also kept on the training device (set
        here, once per clustering), where every step looks its anchors' labels up."""
        return self._clusters

    @clusters.setter
    def clusters(self, value: np.ndarray) -> None:
        self._clusters = value
        self._device_clusters = torch.as_tensor(value, device=self.device)

    # ------------------------------------------------------------------ checks

    @classmethod
    def open_data(cls, path: Any) -> Any:
        return open_videos(path)

    def check(self) -> None:
        """Refuse options and inputs the method cannot train with."""
        from vcl.backbones import spec_of

        o = self.opts
        if o.flow not in FLOW_METHODS:
            raise UsageError(f"unknown --flow {o.flow!r}", "--flow", "use dis or tvl1")
        if not 0.0 <= o.p_same <= 1.0 or not 0.0 <= o.flow_prob <= 1.0:
            raise UsageError("--p-same and --flow-prob are probabilities (0 to 1)")
        if o.cluster_every < 1 or o.frame_stride < 1 or o.warmup_epochs < 0 or o.finch_level < 0:
            raise UsageError(
                "need --cluster-every, --frame-stride >= 1, --warmup-epochs, --finch-level >= 0"
            )
        spec = spec_of(self.config.arch)
        if o.frames < spec.min_frames or self.config.size < spec.min_side:
            raise UsageError(
                f"{spec.name} needs clips of at least {spec.min_frames} frames and "
                f"{spec.min_side} px (got --frames {o.frames}, --size {self.config.size})",
                "--arch",
            )
        require_decodable(self.data, o.keep_going, self.params.span)

    # ------------------------------------------------------------------ model

    def build_model(self, backbone: nn.Module) -> nn.Module:
        self.model = SLICNetwork(backbone, backbone.spec.dim)
        return self.model

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return [{"params": list(model.parameters())}]

    # ------------------------------------------------------------------ clustering

    def clusters_due(self, epoch: int) -> bool:
        """Cluster before epoch ``epoch`` (1-based)? At the first epoch after the warm-up,
        then every ``cluster_every`` epochs (the authors' epochs 0, 5, 10, ...)."""
        done = epoch - 1 - self.opts.warmup_epochs  # epochs trained since the warm-up
        return self.opts.clustering and done >= 0 and done % self.opts.cluster_every == 0

    @torch.no_grad()
    def embed_videos(self) -> np.ndarray:
        """(V, 128) embeddings of every video's centre clip (centre crop, no flip), in
        eval mode; each rank embeds a share, gathered on every rank."""
        assert self.model is not None
        n, bs = self.data.n, self.config.batch_size
        chunks = [np.arange(s, min(s + bs, n)) for s in range(0, n, bs)]
        plans = [centre_plan(self.data.frames, c, self.params) for c in chunks]
        mine = plans[dist.rank() :: dist.world()]
        loader = clip_loader(self.data, mine, self.params, self.config.workers)
        was_training = self.model.training
        self.model.eval()
        idx_parts, feat_parts = [], []
        for clips, videos, _ in loader:
            x = to_input(clips[:, 0], self.device)  # (B, 3, T, S, S)
            feat_parts.append(self.model(x).float())
            idx_parts.append(videos.to(self.device))
        self.model.train(was_training)
        d = feat_parts[0].shape[1] if feat_parts else 128
        none = torch.zeros(0, dtype=torch.int64, device=self.device)  # a rank with no share
        idx = dist.gather_cat(torch.cat(idx_parts) if idx_parts else none)
        feats = dist.gather_cat(
            torch.cat(feat_parts) if feat_parts else torch.zeros(0, d, device=self.device)
        )
        out = torch.empty(n, d, device=self.device)
        out[idx.to(self.device)] = feats.to(self.device)
        return out.cpu().numpy()

    def recluster(self) -> None:
        """FINCH on the current embeddings (rank 0), labels broadcast to every rank."""
        began = time.perf_counter()
        feats = self.embed_videos()
        labels = torch.zeros(self.data.n, dtype=torch.int64, device=self.device)
        levels: list[int] = []
        if dist.rank() == 0:
            found, levels = cluster_videos(feats, self.opts.finch_level, faiss_gpu(self.device))
            labels = torch.as_tensor(found, device=self.device)
        dist.broadcast(labels)
        self.clusters = labels.cpu().numpy().astype(np.int64)
        self.cluster_info = self._cluster_metrics(levels, time.perf_counter() - began)
        if dist.rank() == 0:
            log.info(
                "FINCH: %d clusters of %d videos (levels %s)",
                self.cluster_info["clusters"],
                self.data.n,
                levels,
            )
            if self.cluster_info["clusters"] == 1:
                log.warning(
                    "FINCH put every video in one cluster: no negatives, so the triplet loss "
                    "is zero until the next clustering (try --finch-level 0 or more videos)"
                )

    def _cluster_metrics(self, levels: list[int] | None, seconds: float) -> dict[str, Any]:
        """Cluster count and sizes; NMI / AMI against the manifest's labels (evaluation
        only: labels never reach the training) over the videos that have one."""
        from vcl.cluster_metrics import ami, nmi

        sizes = np.sort(np.bincount(self.clusters))[::-1]
        out: dict[str, Any] = {
            "clusters": len(sizes),
            "cluster_min": int(sizes.min()),
            "cluster_max": int(sizes.max()),
            "cluster_mean": float(sizes.mean()),
            "largest_clusters": [int(s) for s in sizes[:10]],
            "finch_levels": levels,
            "cluster_seconds": seconds,
            "nmi": None,
            "ami": None,
        }
        labels = self.data.labels
        if levels is not None and labels is not None:
            known = labels != ""
            if known.sum() >= 2:
                out["nmi"] = nmi(labels[known], self.clusters[known])
                out["ami"] = ami(labels[known], self.clusters[known])
        return out

    # ------------------------------------------------------------------ data

    def plans(self, epoch: int) -> list[TripletPlan]:
        """This rank's share of the epoch's batches, drawn from (seed, epoch)."""
        rng = np.random.default_rng([self.config.seed, epoch, 29])
        perm = rng.permutation(self.data.n)
        bs, world = self.config.batch_size, dist.world()
        plans = []
        for s in range(0, self.data.n, bs):
            chunk = perm[s : s + bs]
            plan = plan_triplet_batch(
                self.data.frames, chunk, self.clusters, self.params, self.opts, rng
            )
            if len(chunk) >= 2 * world:
                plans.append(plan.take(slice(dist.rank(), None, world)))
        return plans

    def batches(self, epoch: int) -> Any:
        if self.clusters_due(epoch):
            self.recluster()
        self._reset_counters()
        return torch.utils.data.DataLoader(
            TripletBatches(self.data, self.plans(epoch), self.params, self.opts.flow),  # type: ignore[arg-type]
            batch_size=None,
            shuffle=False,
            num_workers=self.config.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=2 if self.config.workers else None,
            persistent_workers=False,
        )

    @property
    def iterations_per_epoch(self) -> int:
        return iterations(self.data.n, self.config.batch_size, dist.world())

    # ------------------------------------------------------------------ training

    def init_state(self, model: nn.Module, autocast: Any) -> None:
        """Every video starts as its own cluster; FINCH runs at the first due epoch."""
        self.clusters = np.arange(self.data.n, dtype=np.int64)
        self.cluster_info = self._cluster_metrics(None, 0.0)

    def train_step(
        self, model: nn.Module, batch: Any, iteration: int, autocast: Any
    ) -> tuple[torch.Tensor, Any]:
        """Loss of one batch: triplet (m1) + λ · temporal (m2) on 2B or 3B clips."""
        clips, anchors, flow, colour = batch
        b = len(anchors)
        views = 3 if self.opts.temporal else 2
        clips = clips[:, :views].to(self.device, non_blocking=True)
        flow = flow[:, :views]
        self.generator.manual_seed(self.config.seed * 1_000_003 + iteration)
        # (views·B, 3, T, S, S), view-major: anchors, positives, aug(x); the flow views
        # are grey images and take the same colour augmentation, as in the authors' code
        x = to_input(
            clips.transpose(0, 1).flatten(0, 1),
            colour=colour[:, :views].transpose(0, 1).flatten(0, 1),
            params=self.params.colour,
        ).contiguous()
        with autocast():
            z = model(x)
        z = z.float()
        labels = self._device_clusters[anchors.to(self.device)]
        trip = triplet_loss(z[: 2 * b], labels.repeat(2), self.opts.triplet_margin, self.generator)
        loss = trip.loss
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        temporal, temporal_active = torch.zeros((), device=self.device), zero
        if self.opts.temporal:
            temporal, temporal_active = temporal_loss(
                z[:b], z[2 * b :], z[b : 2 * b], self.opts.temporal_margin
            )
            loss = loss + self.opts.temporal_weight * temporal
        with torch.no_grad():  # float64 on the device: the sums a host float would make
            self._sums += torch.stack(
                [
                    trip.loss.detach().double(),
                    temporal.detach().double(),
                    trip.active.double() * trip.triplets if trip.triplets else zero,
                    torch.nan_to_num(temporal_active.double() * b, nan=0.0),
                ]
            )
        c = self._counters
        c["steps"] += 1
        c["triplets"] += trip.triplets
        c["anchors"] += b
        c["clips"] += views * b
        c["flow"] += int(flow[:, 1:].sum())
        return loss, None

    def after_step(self, aux: Any, iteration: int) -> None:
        return None

    # ------------------------------------------------------------------ reporting

    def _reset_counters(self) -> None:
        """Zero the epoch's counts (host) and its sums of SUMS (device)."""
        self._counters: dict[str, float] = dict.fromkeys(
            ("steps", "triplets", "anchors", "clips", "flow"), 0.0
        )
        self._sums = torch.zeros(len(SUMS), dtype=torch.float64, device=self.device)
        self._began = time.perf_counter()

    def labels(self) -> np.ndarray:
        """(V,) int32 cluster of every video (its own index before the first FINCH)."""
        return self.clusters.astype(np.int32)

    def epoch_metrics(self) -> dict[str, Any]:
        """Loss per term, fraction of active triplets, cluster count / sizes, NMI / AMI,
        clips/s (this rank's, the clustering excluded)."""
        c = {**self._counters, **dict(zip(SUMS, self._sums.tolist(), strict=True))}
        steps = c["steps"]
        seconds = time.perf_counter() - self._began
        out: dict[str, Any] = {
            "triplet_loss": c["triplet"] / steps if steps else None,
            "temporal_loss": (c["temporal"] / steps if steps else None)
            if self.opts.temporal
            else None,
            "triplets_per_batch": c["triplets"] / steps if steps else None,
            "active_triplets": c["active"] / c["triplets"] if c["triplets"] else None,
            "active_temporal": c["temporal_active"] / c["anchors"]
            if c["anchors"] and self.opts.temporal
            else None,
            "flow_views": c["flow"] / c["clips"] if c["clips"] else None,
            "clips_per_s": c["clips"] * dist.world() / seconds if steps else None,
        }
        out.update(self.cluster_info)
        return out

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        info = {k: v for k, v in self.cluster_info.items()}
        return {
            "clusters": torch.from_numpy(self.clusters.copy()),
            "cluster_info": json.dumps(info),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        clusters = state["clusters"]
        check_resumed_size(len(clusters), self.data.n, self.data.path, "videos", "videos")
        self.clusters = clusters.numpy().astype(np.int64)
        self.cluster_info = json.loads(state["cluster_info"])
