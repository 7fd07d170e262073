"""Moving-object deep clustering, after Hickson, Angelova, Essa & Sukthankar, "Object
category learning and retrieval with weak supervision" (2018). The method is claimed by
US patent 10,635,979 (Google LLC); check its status before any commercial use.

Data: CROPS of moving objects (``vcl proposals --method motion`` → ``vcl track`` →
``vcl crops``) and, sampled once from ``--videos`` with the run's seed, BACKGROUND crops:
squares of the objects' crop sizes, at frames that hold object crops, that do not meet
any object box of that frame (each track's boxes linearly interpolated between its crops,
grown by ``--bg-margin`` of their side). They are written to ``RUN/background.zarr`` (a
``vcl.crops/1`` store with ``image, video_id, frame, box``), reused on resume.

Network: backbone → embedding head FC 512 → BatchNorm → ReLU → FC D (``--cluster-dim``
128) → z; k memory units μ_1..μ_k ∈ R^D (learnable, in the head, initialised by
spherical k-means of the initial object embeddings, as DEC initialises its centres); an
object-vs-background discriminator, one linear unit on z. Before that init every
BatchNorm's running statistics are calibrated on one pass of training-like batches
(:func:`calibrate_batchnorm`): with a fresh network's (0, 1) statistics the eval-mode
embedding the units are initialised on is a different function from the
batch-normalised one training pulls towards them.

Loss of a batch of n object crops (embeddings z_i) and m background crops, with ẑ, μ̂
the L2-normalised vectors (so distances are in [0, 4] whatever the embedding's scale)::

    d_ij = ‖ẑ_i − μ̂_j‖² = 2 − 2·cos(z_i, μ_j)             distance to memory unit j
    σ_i  = std_j d_ij (a constant in the gradient)         spread of sample i's distances
    q_ij = exp(−d_ij/(τσ_i)) / Σ_l exp(−d_il/(τσ_i))     soft assignment
    L_κ  = (1/n) Σ_i d_{i c_i}                            pull to the crop's assigned unit
    L_2  = (1/n) Σ_i ‖z_i‖²                                L2 regulariser: bounds the raw
                                                           scale the discriminator inflates
    s_j  = (1/n) Σ_i q_ij                                  soft cluster sizes
    L_c  = Σ_j s_j log(k · s_j) = KL(s ‖ uniform)          balance: 0 iff sizes are even
    L_d  = BCE(w·z + b, 1 for objects, 0 for background)   discriminator (on all n + m)
    L    = L_κ + α·L_2 + β·L_c + γ·L_d

c_i is the unit crop i was assigned after the last epoch: the nearest refined unit of its
clean (eval-mode, unaugmented) embedding (see Units below; before the first epoch, of the
initial units). Every augmented view of a crop is thus pulled to the same unit, the one
its object belongs to, not to whichever unit the random crop, flip and colour change
happen to put the view nearest: the pull teaches the embedding what the augmentations do
not change. ``--kappa-target soft`` pulls each view by its own soft assignment instead,
L_κ = (1/n) Σ_i Σ_j q_ij d_ij (q_ij held constant, soft k-means' E-step; not the hard
mean_i min_j d_ij, with which a unit that is no sample's nearest gets no gradient): the
earlier formulation, which pulls a view wherever it lands, so nothing makes the views of
one crop agree. Measured (``benchmarks/fidelity_triplet_moving.py``, 6 seeds, 4 epochs):
NMI of the clusters 0.984 / 0.955 / 0.985 / 1.000 / 0.892 / 0.958 with ``assigned``
(mean 0.962), 0.252 / 0.611 / 0.598 / 0.933 / 0.553 / 0.777 with ``soft``, against
0.823 / 0.863 / 0.775 / 0.985 / 0.803 / 0.958 (mean 0.868) for k-means on the
random-init network's features.
L_c is bounded: 0 ≤ L_c ≤ log k. τ is in units of σ_i so that q cannot turn uniform when
the units drift together (with a fixed τ on d, q → uniform makes L_c = 0 while every
embedding and unit collapse to one point, the trivial minimum of L_κ + L_c; measured
with τ = 0.1 on d and the units' learning rate ×20: assignment confidence 0.28 at k = 4,
NMI 0.05 after 2 epochs). With the BatchNorm calibration σ_i ≈ 0.2, so 1/(τσ_i) ≈ 10;
the ≈ 200 of the first version came from the uncalibrated embedding's narrow cone
(pairwise cos 0.93–0.96).

Units: the gradient steps above move them (the online M-step), and after every epoch
they are refined on the whole set, the batch M-step (:func:`refine_units`)::

    ẑ_i  eval-mode embeddings of every object crop (no augmentation)
    c_i  = argmin_j ‖ẑ_i − μ̂_j‖²,   μ_j ← normalise(Σ_{c_i = j} ẑ_i)   ``refine_iters`` = 20 times

once from the learned units and once from each of ``refine_restarts`` = 4 k-means++
seedings; the run of lowest spherical inertia Σ_i ‖ẑ_i − μ̂_{c_i}‖² wins (a restart only
when strictly lower), its units reordered by the Hungarian matching of largest total
cosine to the learned units (:func:`match_units`), so unit j keeps its identity. Why the
batch step: a unit's gradient is a pull of weight s_j ≈ 1/k, so at the network's
learning rate the units stayed where the k-means init put them while the embedding moved
(measured, seed 0, epoch 1: the learned units' clusters NMI 0.55, sizes [130, 1, 107, 2];
k-means on the same embedding 0.83); raising the units' learning rate instead gave
uneven clusters (×10: sizes [177, 0, 63, 0]) or, with a fixed τ, the collapse above. Why
the restarts: Lloyd from the learned units alone stays in the local optimum next to
them; with them, the clusters after epoch 1 went from NMI 0.72 / 0.51 / 0.51 to 0.89 /
0.74 / 0.70 (seeds 0 / 1 / 2, ``benchmarks/fidelity_triplet_moving.py``). The refined
units replace the learned ones, the next epoch pulls the embedding towards them, and the
last epoch's refined units give ``clusters.zarr``. What the restarts did not fix, the
soft L_κ did not either: with it the representation swung (k-means on the backbone's
features moved by up to 0.3 NMI in one epoch) and the clusters followed; with the
assigned targets the clusters rise over the epochs and stay (the benchmark's docstring
has the numbers).

α = ``--l2-weight`` 0.01, β = ``--balance-weight`` 1, γ = ``--disc-weight`` 1,
τ = ``--assign-temperature`` 0.5; one background crop per object crop
(``--background-ratio``), both in the pool and in each batch.

Each crop is augmented (random resized crop with area ≥ ``--crop-scale``, 0.5 here, flip, ±2°,
brightness / contrast / saturation 0.4; no hue change or greyscale, since colour is
part of an object's category). After every epoch every object crop is assigned to its
nearest refined unit with the network in eval mode (``labels_epoch_N.npy``); after the last
epoch the assignment is written as ``RUN/clusters.zarr`` (``vcl.clusters/1``, ids
``<track_id>@<frame>`` as ``vcl embed`` names crops), for ``vcl cluster eval``.
The k-means (init and refinement) run on the training GPU when faiss can use it
(:func:`vcl.pretrain.memories.faiss_gpu`), else on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from vcl.console import log
from vcl.errors import DataError, UsageError
from vcl.pretrain import check_resumed_size, dist
from vcl.pretrain.data import AugmentParams, CropsBatches, CropsInfo, augment, plain
from vcl.pretrain.memories import faiss_gpu

BACKGROUND = "background.zarr"
CLUSTERS = "clusters.zarr"
SEEDING_POINTS = 64  # rows per unit that a k-means++ restart of the refinement seeds on


@dataclass(frozen=True)
class MovingOptions:
    """Method options (``vcl pretrain`` flags)."""

    videos: list[str] | None = None  # where the crops were cut from
    l2_weight: float = 0.01  # α, weight of L_2
    balance_weight: float = 1.0  # β, weight of L_c (cluster balance)
    disc_weight: float = 1.0  # γ, weight of the object-vs-background loss
    assign_temperature: float = 0.5  # τ of the soft assignment, in units of σ_i
    cluster_dim: int = 128  # D of the embedding and the units
    background_ratio: float = 1.0  # background crops sampled (and per batch) per object crop
    bg_margin: float = 0.1  # object boxes grown by this fraction of their side
    crop_scale: float = 0.5  # smallest random-crop area fraction
    refine_iters: int = 20  # Lloyd iterations refining the units after each epoch (0: none)
    refine_restarts: int = 4  # k-means++ starts tried beside the learned units when refining
    kappa_target: str = "assigned"  # L_κ pulls to: each crop's assigned unit | soft q


# ---------------------------------------------------------------------------- losses


def squared_distances(z: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """d_ij = ‖ẑ_i − μ̂_j‖² = 2 − 2·cos(z_i, μ_j) between the L2-normalised rows of z (n, D)
    and of the units (k, D) → (n, k), in [0, 4]."""
    zn = nn.functional.normalize(z, dim=1, eps=1e-8)
    un = nn.functional.normalize(units, dim=1, eps=1e-8)
    return (2.0 - 2.0 * zn @ un.T).clamp_min(0.0)


def soft_assignment(d: torch.Tensor, temperature: float) -> torch.Tensor:
    """q_ij = softmax_j(−d_ij / (τ·σ_i)) → (n, k), rows sum to 1; σ_i is the standard
    deviation of d_i· over the units (held constant in the gradient), so the sharpness of
    the assignment does not depend on how far apart the units happen to be (units that
    drift together would otherwise make q uniform and L_c blind to a collapse)."""
    sigma = d.detach().std(dim=1, unbiased=False, keepdim=True).clamp_min(1e-6)
    return torch.softmax(-d / (temperature * sigma), dim=1)


def kappa_loss(d: torch.Tensor, q: torch.Tensor | None = None) -> torch.Tensor:
    """L_κ = mean_i Σ_j q_ij d_ij: each embedding pulled to the units in proportion to its
    soft assignment q (n, k), held constant in the gradient (the E-step responsibilities of
    soft k-means), so every unit that some sample half-belongs to moves. Without ``q``,
    the hard form mean_i min_j d_ij (one unit per sample gets a gradient: units that win
    no sample never move)."""
    if q is None:
        return d.min(dim=1).values.mean()
    return (q.detach() * d).sum(dim=1).mean()


def l2_loss(z: torch.Tensor) -> torch.Tensor:
    """L_2 = mean_i ‖z_i‖² of the raw (unnormalised) embeddings."""
    return z.pow(2).sum(1).mean()


def balance_loss(q: torch.Tensor) -> torch.Tensor:
    """L_c = Σ_j s_j log(k s_j), s = mean_i q_i: the KL divergence of the soft cluster
    sizes from the uniform distribution (0 exactly when every size is n/k)."""
    k = q.shape[1]
    s = q.mean(0)
    return (s * torch.log((s * k).clamp_min(1e-12))).sum()


def assigned_kappa_loss(d: torch.Tensor, assigned: torch.Tensor) -> torch.Tensor:
    """L_κ = mean_i d_{i c_i}: each embedding pulled to the unit ``assigned`` (n,) to its
    crop, whatever unit its augmented view is nearest to."""
    return d.gather(1, assigned.long()[:, None]).mean()


def clustering_losses(
    z: torch.Tensor,
    units: torch.Tensor,
    temperature: float,
    assigned: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """L_κ, L_2, L_c of object embeddings z (n, D) and units (k, D), and q (n, k); L_κ
    towards the crops' ``assigned`` units (n,) when given, else soft (q-weighted)."""
    d = squared_distances(z, units)
    q = soft_assignment(d, temperature)
    kappa = kappa_loss(d, q) if assigned is None else assigned_kappa_loss(d, assigned)
    return {"kappa": kappa, "l2": l2_loss(z), "balance": balance_loss(q), "q": q}


def match_units(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Permutation p (k,) such that ``new[p]`` is ``new`` reordered so that row j is the
    unit matched to ``old[j]``: the one-to-one matching of largest total cosine (Hungarian
    algorithm) between the rows of old (k, D) and new (k, D)."""
    from scipy.optimize import linear_sum_assignment

    def unit(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float64)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    rows, cols = linear_sum_assignment(-(unit(old) @ unit(new).T))
    return cols[np.argsort(rows)]


def refine_units(
    z: torch.Tensor,
    units: torch.Tensor,
    iters: int,
    seed: int,
    restarts: int = 0,
    gpu: int | None = None,
) -> torch.Tensor:
    """The batch M-step: spherical k-means of the L2-normalised embeddings z (N, D) →
    refined unit-norm units (k, D), the best (lowest spherical inertia Σ_i ‖ẑ_i − μ̂_{c_i}‖²)
    of 1 + ``restarts`` runs of ``iters`` Lloyd iterations (each unit becomes the normalised
    mean of the embeddings nearest to it; faiss re-seeds a unit that wins nothing by
    splitting a large cluster):

    - started from the learned units (k, D): unit j stays unit j;
    - started from k-means++ seeds (seeds ``seed + 1 ..``), reordered by :func:`match_units`
      so that unit j is still the one nearest in cosine to the learned unit j (the next
      epoch pulls each embedding towards the unit it was assigned to).

    Why the restarts: Lloyd from the learned units only finds the local optimum next to
    them, e.g. one unit holding two classes and another a couple of crops (sizes [130, 1,
    107, 2] measured where a fresh k-means on the same embedding found the classes); a
    start of lower inertia replaces it only when strictly better.

    ``gpu``: the faiss GPU of the Lloyd iterations (None: the CPU; the k-means++ seedings
    run on the CPU either way)."""
    from vcl.cluster import kmeans, kmeans_plusplus, l2_normalise

    start = nn.functional.normalize(units.float(), dim=1, eps=1e-8).cpu().numpy()
    x = l2_normalise(z.float().cpu().numpy())
    k = len(units)
    res = kmeans(x, k, iters=iters, seed=seed, spherical=True, init=start, gpu=gpu)
    best, inertia = res.centroids[0], float(res.inertia[0])
    rng = np.random.default_rng(seed)
    for r in range(restarts):
        # k-means++ is O(k·N·D) per seeding: on at most SEEDING_POINTS·k rows, so that
        # the restarts cost about what their Lloyd iterations do
        sub = x
        if len(x) > SEEDING_POINTS * k:
            sub = x[np.sort(rng.choice(len(x), SEEDING_POINTS * k, replace=False))]
        init = kmeans_plusplus(sub, k, seed + 1 + r)
        run = kmeans(x, k, iters=iters, seed=seed + 1 + r, spherical=True, init=init, gpu=gpu)
        log.debug("refine: k-means++ start %d: inertia %.6g (best so far %.6g)",
                  r, run.inertia[0], inertia)  # fmt: skip
        if run.inertia[0] < inertia:
            best, inertia = run.centroids[0], float(run.inertia[0])
            best = best[match_units(start, best)]
    return torch.as_tensor(best, dtype=units.dtype, device=units.device)


# ---------------------------------------------------------------------------- model


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, inputs: Any, autocast: Any = None) -> list[nn.Module]:
    """Reset every BatchNorm of ``model`` and set its running mean / variance to the
    cumulative average of the batch statistics over ``inputs`` (an iterable of input
    batches), forwarded in train mode; momenta and the train/eval mode are restored.
    Returns the BatchNorm modules."""
    import contextlib

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return norms
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    for x in inputs:
        with autocast() if autocast is not None else contextlib.nullcontext():
            model(x)
    model.train(was_training)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return norms


class ClusterHead(nn.Module):
    """Embedding FC 512 → BN → ReLU → FC D, and the k memory units (k, D)."""

    def __init__(self, in_dim: int, dim: int, k: int) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            nn.Linear(in_dim, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, dim)
        )
        self.units = nn.Parameter(torch.randn(k, dim) * 0.01)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.embed(features)


class MovingNet(nn.Module):
    """Backbone + cluster head + object-vs-background discriminator (``classifier``)."""

    def __init__(self, backbone: nn.Module, in_dim: int, dim: int, k: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ClusterHead(in_dim, dim, k)
        self.classifier = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) → embeddings z (B, D) and discriminator logits (B,)."""
        z = self.head(self.backbone(x))
        return z, self.classifier(z.float()).squeeze(1)


# ---------------------------------------------------------------------------- backgrounds


def boxes_at(
    frame: int, track_frames: list[np.ndarray], track_boxes: list[np.ndarray]
) -> np.ndarray:
    """(m, 4) boxes of the tracks alive at ``frame``, linearly interpolated between the
    crops of each track (a track is alive from its first to its last crop)."""
    out = []
    for f, b in zip(track_frames, track_boxes, strict=True):
        if f[0] <= frame <= f[-1]:
            out.append([np.interp(frame, f, b[:, c]) for c in range(4)])
    return np.asarray(out, np.float64).reshape(-1, 4)


def overlaps(squares: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(c,) whether each square (c, 4) xyxy meets any of ``boxes`` (m, 4)."""
    if not len(boxes):
        return np.zeros(len(squares), bool)
    s, b = squares[:, None, :], boxes[None, :, :]
    meet = (s[..., 0] < b[..., 2]) & (b[..., 0] < s[..., 2])
    meet &= (s[..., 1] < b[..., 3]) & (b[..., 1] < s[..., 3])
    return meet.any(axis=1)


def plan_backgrounds(
    frames: np.ndarray,
    boxes: np.ndarray,
    tracks: np.ndarray,
    width: int,
    height: int,
    count: int,
    context: float,
    margin: float,
    rng: np.random.Generator,
    tries: int = 8,
    candidates: int = 32,
) -> list[tuple[int, np.ndarray]]:
    """``count`` background squares ``(frame, xyxy int box)`` of one video, away from its
    objects. ``frames`` (N,), ``boxes`` (N, 4) and ``tracks`` (N,) describe its object
    crops. A square's side is that of a random object's crop region (max(w, h)·(1 + 2·
    context), at most the frame's shorter side); ``candidates`` random positions are
    tried on each of up to ``tries`` random frames; a square that finds no free place is
    skipped."""
    frames = np.asarray(frames, np.int64)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    track_frames, track_boxes = [], []
    for t in np.unique(tracks):
        rows = np.flatnonzero(tracks == t)
        rows = rows[np.argsort(frames[rows], kind="stable")]
        track_frames.append(frames[rows])
        track_boxes.append(boxes[rows])
    wh = boxes[:, 2:] - boxes[:, :2]
    sides = np.clip(wh.max(axis=1) * (1 + 2 * context), 4, min(width, height))
    grow = margin * wh.max(axis=1).mean() if len(wh) else 0.0
    cand_frames = np.unique(frames)
    excluded: dict[int, np.ndarray] = {}
    out = []
    for _ in range(count):
        side = round(float(rng.choice(sides)))
        for f in rng.choice(cand_frames, size=tries):
            f = int(f)
            if f not in excluded:
                ex = boxes_at(f, track_frames, track_boxes)
                excluded[f] = ex + np.array([-grow, -grow, grow, grow])
            x0 = rng.integers(0, width - side + 1, size=candidates)
            y0 = rng.integers(0, height - side + 1, size=candidates)
            sq = np.stack([x0, y0, x0 + side, y0 + side], axis=1)
            free = np.flatnonzero(~overlaps(sq, excluded[f]))
            if len(free):
                out.append((f, sq[free[0]]))
                break
    return out


def cut_backgrounds(path: str, plan: list[tuple[int, np.ndarray]], size: int) -> np.ndarray:
    """(len(plan), size, size, 3) uint8 crops of one video, decoded once from frame 0."""
    import cv2

    from vcl.io.video import VideoReader

    images = np.zeros((len(plan), size, size, 3), np.uint8)
    if not plan:
        return images
    by_frame: dict[int, list[int]] = {}
    for r, (f, _) in enumerate(plan):
        by_frame.setdefault(f, []).append(r)
    for index, rgb in VideoReader(path, end=max(by_frame) + 1):
        for r in by_frame.pop(index, ()):
            x0, y0, x1, y1 = (int(v) for v in plan[r][1])
            patch = np.ascontiguousarray(rgb[y0:y1, x0:x1])
            shrink = patch.shape[0] * patch.shape[1] >= size * size
            images[r] = cv2.resize(
                patch, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
    if by_frame:
        raise DataError(f"has no frame {min(by_frame)}, which the crops name", path)
    return images


def rows_by_video(video_ids: np.ndarray) -> dict[str, np.ndarray]:
    """The rows (ascending, int64) of every video id in ``video_ids`` (N,): what
    ``np.flatnonzero(video_ids == v)`` gives for each ``v``, in one O(N log N) grouping
    rather than a pass over all N rows per video."""
    ids, inverse = np.unique(np.asarray(video_ids), return_inverse=True)
    order = np.argsort(inverse.reshape(-1), kind="stable").astype(np.int64)
    bounds = np.cumsum(np.bincount(inverse.reshape(-1), minlength=len(ids)))[:-1]
    return dict(zip(ids.tolist(), np.split(order, bounds), strict=True))


def write_backgrounds(
    out: Path, crops: CropsInfo, videos: list[str] | None, opts: MovingOptions, seed: int
) -> int:
    """Sample the background crops of every video of ``crops`` into the store ``out``
    (reused when it exists with the same parameters); returns its row count."""
    from vcl.io.sources import resolve_videos
    from vcl.io.store import Store, StoreWriter
    from vcl.io.video import VideoReader

    params = {
        "crops": [str(p) for p in crops.sources] if len(crops.sources) > 1 else str(crops.path),
        "crops_rows": crops.n,
        "videos": list(videos or []),
        "ratio": opts.background_ratio,
        "margin": opts.bg_margin,
        "size": crops.side,
    }
    if out.exists():
        try:
            store = Store(out, kind="crops")
            if store.attrs.get("params") == params and store.attrs.get("seed") == seed:
                return store.n_rows
        except DataError:
            pass
    if not videos:
        raise UsageError(
            "--method moving-clusters needs --videos (to sample background crops)",
            "--videos",
            "pass the videos manifest the crops were made from",
        )
    manifest = {v.id: v for v in resolve_videos(videos)}
    meta = crops.open_store()
    context = float((meta.attrs.get("params") or {}).get("context", 0.0))
    frames = meta["frame"][:].astype(np.int64)
    boxes = meta["box"][:].astype(np.float64)
    tracks = crops.track_index if crops.track_ids is not None else np.arange(crops.n)
    missing = sorted(set(crops.video_ids.tolist()) - set(manifest))
    if missing:
        raise DataError(
            f"the crops are of video {missing[0]!r}, which is not in --videos",
            crops.path,
            "pass the videos manifest the crops were made from",
        )
    vids = list(dict.fromkeys(crops.video_ids.tolist()))
    with StoreWriter(out, "vcl.crops/1", params, seed, overwrite=True, groups=vids) as writer:
        writer.define_columns(
            {
                "image": ("uint8", (crops.side, crops.side, 3)),
                "video_id": (str, ()),
                "frame": ("int32", ()),
                "box": ("float32", (4,)),
            },
            chunk_rows={"image": 4},
        )
        rows_of = rows_by_video(crops.video_ids)
        for number, vid in enumerate(vids):
            if vid in writer.done_groups:
                continue
            rows = rows_of[vid]
            info = VideoReader(manifest[vid].path).info
            rng = np.random.default_rng([seed, number, 17])
            count = round(opts.background_ratio * len(rows))
            plan = plan_backgrounds(
                frames[rows],
                boxes[rows],
                tracks[rows],
                info.width,
                info.height,
                count,
                context,
                opts.bg_margin,
                rng,
            )
            if len(plan) < count:
                log.warning(
                    "%s: found free room for %d of %d background crops", vid, len(plan), count
                )
            images = cut_backgrounds(manifest[vid].path, plan, crops.side)
            writer.append_group(
                vid,
                image=images,
                video_id=np.array([vid] * len(plan), dtype=str).reshape(-1),
                frame=np.array([f for f, _ in plan], np.int32).reshape(-1),
                box=np.array([b for _, b in plan], np.float32).reshape(-1, 4),
            )
        writer.set_attrs(size=crops.side)
    n = Store(out, kind="crops").n_rows
    if n == 0:
        raise DataError(
            "no room for background crops away from the moving objects in any video",
            crops.path,
            "lower --bg-margin, or use crops with a smaller --context",
        )
    log.info("sampled %d background crops into %s", n, out)
    return n


class TwoStoreBatches(torch.utils.data.Dataset):
    """Batch ``i``: (uint8 images (B, S, S, 3), indices (B,)); index < N is an object
    crop (row of the crops store), N + r is row r of the background store."""

    def __init__(
        self, crops: Path | list[Path], background: Path, n: int, batches: list[np.ndarray]
    ):
        self.parts = (CropsBatches(crops, []), CropsBatches(background, []))
        self.n = n
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.batches[i]
        obj, bg = idx[idx < self.n], idx[idx >= self.n] - self.n
        out = []
        for part, rows in zip(self.parts, (obj, bg), strict=True):
            part.batches = [rows]
            if len(rows):
                out.append(part[0][0])
        return torch.cat(out), torch.from_numpy(np.concatenate([obj, bg + self.n]))


# ---------------------------------------------------------------------------- method


class MovingClusters:
    """``vcl pretrain --method moving-clusters``; the interface of
    :class:`vcl.pretrain.odc.ODCMethod`."""

    name: ClassVar[str] = "moving-clusters"
    family: ClassVar[str] = "image"
    options_type: ClassVar[type] = MovingOptions
    defaults: ClassVar[dict[str, Any]] = {"k": 10, "crop_scale": 0.5}

    def __init__(self, config: Any, data: CropsInfo, device: torch.device) -> None:
        self.config = config
        self.opts: MovingOptions = config.options
        self.data = data
        self.device = device
        self.aug = AugmentParams(
            size=config.size,
            crop_scale=self.opts.crop_scale,
            saturation=0.4,
            hue=0.0,
            grayscale=0.0,
        )
        self.run_dir = Path(config.output)
        self.n_bg = 0
        self.model: nn.Module | None = None
        self.epoch = 0
        self.assigned: np.ndarray | None = None
        self.previous: np.ndarray | None = None
        self.generator = torch.Generator(device=device)
        self._stats = torch.zeros(7, dtype=torch.float64, device=device)

    @classmethod
    def open_data(cls, path: Any) -> CropsInfo:
        from vcl.pretrain.data import open_crops, open_crops_store

        store = open_crops_store(path)
        if store.n_rows == 0:
            raise DataError(
                "no moving objects: the crops store holds no crops",
                store.path,
                "check that vcl proposals --method motion found moving regions "
                "(lower --motion-threshold / --min-area) and vcl track kept tracks",
            )
        return open_crops(path)

    @property
    def n_objects(self) -> int:
        return self.data.n_tracks if self.data.track_ids is not None else self.data.n

    def check(self) -> None:
        o = self.opts
        if min(o.l2_weight, o.balance_weight, o.disc_weight, o.bg_margin) < 0:
            raise UsageError("need --l2-weight, --balance-weight, --disc-weight, --bg-margin >= 0")
        if o.assign_temperature <= 0:
            raise UsageError("need --assign-temperature > 0")
        if o.kappa_target not in ("assigned", "soft"):
            raise UsageError(f"--kappa-target is assigned or soft, not {o.kappa_target!r}")
        if o.cluster_dim < 1 or o.background_ratio <= 0:
            raise UsageError("need --cluster-dim >= 1 and --background-ratio > 0")
        if o.refine_iters < 0 or o.refine_restarts < 0:
            raise UsageError(
                f"need refine_iters >= 0 and refine_restarts >= 0, got {o.refine_iters} "
                f"and {o.refine_restarts}"
            )
        what = "moving objects (tracks)" if self.data.track_ids is not None else "object crops"
        if self.config.k > self.n_objects:
            raise DataError(
                f"--k {self.config.k} is larger than the number of {what} ({self.n_objects})",
                self.data.path,
                f"use --k {self.n_objects} or less",
            )
        if not o.videos:
            raise UsageError(
                "--method moving-clusters needs --videos (to sample background crops)",
                "--videos",
                "pass the videos manifest the crops were made from",
            )

    def build_model(self, backbone: nn.Module) -> nn.Module:
        self.model = MovingNet(backbone, backbone.spec.dim, self.opts.cluster_dim, self.config.k)
        return self.model

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return [{"params": list(model.parameters())}]

    # ------------------------------------------------------------------ data

    def _ensure_backgrounds(self) -> None:
        """Sample the background crops (rank 0), once per run directory."""
        path = self.run_dir / BACKGROUND
        if dist.rank() == 0:
            self.n_bg = write_backgrounds(
                path, self.data, self.opts.videos, self.opts, self.config.seed
            )
        dist.barrier()
        if dist.rank() != 0:
            from vcl.io.store import Store

            self.n_bg = Store(path, kind="crops").n_rows

    def _batches(self, epoch: int, rank: int, world: int) -> list[np.ndarray]:
        n, bs, seed = self.data.n, self.config.batch_size, self.config.seed
        perm = np.random.default_rng([seed, epoch, 5]).permutation(n)
        rng = np.random.default_rng([seed, epoch, 6])
        out = []
        for s in range(0, n, bs):
            obj = perm[s : s + bs]
            if len(obj) < 2 * world:
                continue
            m = max(1, round(self.opts.background_ratio * len(obj)))
            bg = n + rng.choice(self.n_bg, size=m, replace=m > self.n_bg)
            out.append(np.concatenate([obj[rank::world], bg[rank::world]]))
        return out

    def batches(self, epoch: int) -> Any:
        self.epoch = epoch
        self._stats.zero_()
        data = TwoStoreBatches(
            list(self.data.sources or (self.data.path,)),
            self.run_dir / BACKGROUND,
            self.data.n,
            self._batches(epoch, dist.rank(), dist.world()),
        )
        return self._loader(data)

    def _loader(self, data: TwoStoreBatches) -> torch.utils.data.DataLoader:
        """The batches of ``data`` in order, read by ``workers`` processes into pinned
        memory on a CUDA run (training and the BatchNorm calibration alike)."""
        return torch.utils.data.DataLoader(
            data,
            batch_size=None,
            shuffle=False,
            num_workers=self.config.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.config.workers else None,
        )

    @property
    def iterations_per_epoch(self) -> int:
        n, bs = self.data.n, self.config.batch_size
        return sum(1 for s in range(0, n, bs) if min(bs, n - s) >= 2 * dist.world())

    # ------------------------------------------------------------------ init

    @torch.no_grad()
    def embed_objects(self, model: nn.Module, autocast: Any) -> torch.Tensor:
        """(N, D) embeddings of every object crop (eval mode, no augmentation), the same
        on every rank (each embeds its share; all-gathered)."""
        from vcl.pretrain.data import loader

        n, bs = self.data.n, self.config.batch_size
        chunks = [np.arange(s, min(s + bs, n)) for s in range(0, n, bs)]
        mine = chunks[dist.rank() :: dist.world()]
        was_training = model.training
        model.eval()
        idx_parts, z_parts = [], []
        for images, idx in loader(self.data, mine, self.config.workers, False):
            x = plain(images.to(self.device, non_blocking=True), self.config.size)
            with autocast():
                z, _ = model(x)
            idx_parts.append(idx.to(self.device))
            z_parts.append(z.float())
        model.train(was_training)
        empty = torch.zeros(0, dtype=torch.int64, device=self.device)
        idx = dist.gather_cat(torch.cat(idx_parts) if idx_parts else empty)
        zs = torch.zeros((0, self.opts.cluster_dim), device=self.device)
        out = torch.empty(n, self.opts.cluster_dim, device=self.device)
        out[idx] = dist.gather_cat(torch.cat(z_parts) if z_parts else zs)
        return out

    @torch.no_grad()
    def _assign(self, model: nn.Module, autocast: Any) -> np.ndarray:
        """Every object crop's nearest unit (eval mode), after the units are refined on
        these embeddings (:func:`refine_units`: the best of spherical k-means from the
        learned units and from ``refine_restarts`` k-means++ seedings, matched to the
        learned units); the refined units replace the learned ones."""
        z = self.embed_objects(model, autocast)
        units = model.head.units.detach().float()
        if self.opts.refine_iters > 0:
            refined = torch.zeros_like(units)
            if dist.rank() == 0:
                seed = self.config.seed + 1000 * self.epoch  # new k-means++ seeds every epoch
                o = self.opts
                gpu = faiss_gpu(self.device)
                refined.copy_(refine_units(z, units, o.refine_iters, seed, o.refine_restarts, gpu))
            dist.broadcast(refined)
            model.head.units.copy_(refined)
            units = refined
        return squared_distances(z, units).argmin(dim=1).cpu().numpy().astype(np.int32)

    @torch.no_grad()
    def calibrate_norm(self, model: nn.Module, autocast: Any) -> None:
        """Set every BatchNorm's running mean / variance to the cumulative average over one
        pass of training-like batches (objects + backgrounds, augmented as in training).

        Why: a fresh network's running statistics are (0, 1), so its eval-mode embedding
        (the one the units are initialised on and crops are assigned with) is another
        function than the batch-normalised one training pulls towards the units; the
        k-means init would then be meaningless for training."""
        data = TwoStoreBatches(
            list(self.data.sources or (self.data.path,)),
            self.run_dir / BACKGROUND,
            self.data.n,
            self._batches(0, dist.rank(), dist.world()),
        )
        self.generator.manual_seed(self.config.seed * 1_000_003 - 1)

        def inputs() -> Any:
            for images, _ in self._loader(data):
                yield augment(images.to(self.device, non_blocking=True), self.aug, self.generator)

        norms = calibrate_batchnorm(model, inputs(), autocast)
        for m in norms:
            if m.running_mean is not None and m.running_var is not None:
                dist.broadcast(m.running_mean)
                dist.broadcast(m.running_var)

    @torch.no_grad()
    def init_state(self, model: nn.Module, autocast: Any) -> None:
        """Backgrounds sampled; BatchNorm statistics calibrated (:meth:`calibrate_norm`);
        units = k-means centroids of the initial (eval-mode) object embeddings."""
        from vcl.cluster import kmeans

        self._ensure_backgrounds()
        self.calibrate_norm(model, autocast)
        z = self.embed_objects(model, autocast)
        units = torch.zeros_like(model.head.units)
        if dist.rank() == 0:
            x = z.cpu().numpy()
            gpu = faiss_gpu(self.device)
            res = kmeans(x, self.config.k, seed=self.config.seed, spherical=True, gpu=gpu)
            units.copy_(torch.as_tensor(res.centroids[0]))
        dist.broadcast(units)
        model.head.units.copy_(units)
        self.assigned = squared_distances(z, units).argmin(1).cpu().numpy().astype(np.int32)
        self.previous = self.assigned

    # ------------------------------------------------------------------ training

    def train_step(
        self, model: nn.Module, batch: Any, iteration: int, autocast: Any
    ) -> tuple[torch.Tensor, Any]:
        """L = L_κ + α·L_2 + β·L_c + γ·L_d on one batch of object and background crops."""
        images, idx = batch
        images = images.to(self.device, non_blocking=True)
        is_obj = idx.to(self.device) < self.data.n
        self.generator.manual_seed(self.config.seed * 1_000_003 + iteration)
        x = augment(images, self.aug, self.generator)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            z, logit = model(x)
        z, logit = z.float(), logit.float()
        assert self.model is not None
        units = self.model.head.units.float()
        assigned = None
        if self.opts.kappa_target == "assigned":
            assert self.assigned is not None
            rows = idx[idx < self.data.n].numpy()  # the object crops, in batch order
            assigned = torch.from_numpy(self.assigned[rows]).to(self.device)
        parts = clustering_losses(z[is_obj], units, self.opts.assign_temperature, assigned)
        disc = nn.functional.binary_cross_entropy_with_logits(logit, is_obj.float())
        o = self.opts
        loss = (
            parts["kappa"]
            + o.l2_weight * parts["l2"]
            + o.balance_weight * parts["balance"]
            + o.disc_weight * disc
        )
        with torch.no_grad():
            correct = ((logit > 0) == is_obj).float().mean()
            stats = torch.stack(
                [
                    torch.ones((), device=self.device),
                    parts["kappa"],
                    parts["l2"],
                    parts["balance"],
                    disc,
                    correct,
                    parts["q"].max(dim=1).values.mean(),
                ]
            ).double()
        return loss, stats

    @torch.no_grad()
    def after_step(self, aux: Any, iteration: int) -> None:
        self._stats += aux

    # ------------------------------------------------------------------ reporting

    def labels(self) -> np.ndarray:
        assert self.assigned is not None
        return self.assigned

    def epoch_metrics(self) -> dict[str, Any]:
        """Mean L_κ, L_2, L_c, L_d, discriminator accuracy and assignment confidence over
        the epoch; then every object crop assigned to its nearest unit (eval mode): change
        ratio, cluster sizes, intra-track entropy. After the last epoch, RUN/clusters.zarr."""
        from vcl.cluster_metrics import change_ratio, mean_group_entropy, size_stats

        out: dict[str, Any] = {}
        if self.epoch > 0:
            stats = dist.gather_cat(self._stats[None]).sum(0) if dist.world() > 1 else self._stats
            steps, *sums = stats.tolist()
            names = ("l_kappa", "l_2", "l_c", "l_disc", "disc_accuracy", "confidence")
            out = {k: v / steps if steps else None for k, v in zip(names, sums, strict=True)}
            assert self.model is not None
            self.previous, self.assigned = self.assigned, self._assign(self.model, _no_autocast)
        assert self.assigned is not None
        sizes = size_stats(self.assigned, self.config.k)
        out |= {
            "change_ratio": change_ratio(self.previous, self.assigned) if self.epoch else None,
            "intra_track_entropy": None
            if self.data.track_ids is None
            else mean_group_entropy(self.data.track_index, self.assigned),
            "cluster_min": sizes["min"],
            "cluster_max": sizes["max"],
            "clusters_empty": sizes["empty"],
        }
        if self.epoch == self.config.epochs and dist.rank() == 0:
            self.write_clusters(self.run_dir / CLUSTERS)
        return out

    def crop_ids(self) -> np.ndarray:
        """``<track_id>@<frame>`` of every object crop (``vcl embed``'s ids)."""
        from vcl.io.features import crop_ids

        frames = self.data.open_store()["frame"][:].astype(np.int64)
        if self.data.track_ids is not None:
            return crop_ids(self.data.track_ids, frames)
        else:
            pairs = enumerate(zip(self.data.video_ids, frames, strict=True))
            ids = [f"{v}@{f}#{i}" for i, (v, f) in pairs]
        return np.array(ids, dtype=str)

    def write_clusters(self, path: Path) -> None:
        from vcl.cluster import Clustering, write_clusters

        assert self.model is not None and self.assigned is not None
        k = self.config.k
        units = self.model.head.units.detach().float().cpu().numpy()
        clustering = Clustering(
            ids=self.crop_ids(),
            assignment=self.assigned[:, None].astype(np.int32),
            centroids=units[None].astype(np.float32),
            sizes=np.bincount(self.assigned, minlength=k)[None].astype(np.int64),
            attrs={
                "method": "moving-clusters",
                "k": k,
                "runs": 1,
                "n_rows": int(self.data.n),
                "dropped_rows": 0,
                "centroid_space": "embedding",
                "epoch": self.epoch,
                "run": str(self.run_dir),
            },
        )
        params = {"run": str(self.run_dir), "epoch": self.epoch, "k": k}
        write_clusters(path, clustering, params, self.config.seed, overwrite=True)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        assert self.assigned is not None and self.previous is not None
        return {
            "assigned": torch.from_numpy(self.assigned.astype(np.int64)),
            "previous": torch.from_numpy(self.previous.astype(np.int64)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assigned = state["assigned"].cpu().numpy().astype(np.int32)
        n, path = self.data.n, self.data.path
        check_resumed_size(len(assigned), n, path, "object crops", "crops store")
        self.assigned = assigned
        self.previous = state["previous"].cpu().numpy().astype(np.int32)
        self._ensure_backgrounds()


def _no_autocast() -> Any:
    import contextlib

    return contextlib.nullcontext()
