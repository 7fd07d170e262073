"""ODC (Zhan et al., CVPR 2020), ODC-TrackInit and ODCT (Alfani et al.) on track crops.

The three differ in two switches:

=============== ======================================= ==================================
method          memory initialisation                   Samples Memory update
=============== ======================================= ==================================
odc             k-means on every sample                 ODC: F ← m·f/‖f‖ + (1−m)·F
odc-trackinit   k-means on one random sample per track, ODC
                labels spread to the whole track
odct            as odc-trackinit                        ODCT eq. 1 (track-weighted mean)
=============== ======================================= ==================================

Each iteration (the paper's five steps): (i) forward; (ii) cross-entropy on the memory's
pseudo-labels, re-weighted by 1/√(cluster size) as ODC does, backward and SGD step (in
the training loop); (iii)–(iv) memory update and eq. 2 reassignment of the batch
samples (all ranks' samples, gathered); (v) centroids recomputed every
``centroid_interval`` iterations; ODC's small-cluster rule after every iteration.
The k-means (initial, and the rule's 2-means splits) run on the training GPU when faiss
can use it (:func:`vcl.pretrain.memories.faiss_gpu`), else on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from vcl.console import log
from vcl.errors import DataError
from vcl.pretrain import check_resumed_size, dist
from vcl.pretrain.data import AugmentParams, CropsInfo, augment, epoch_batches, loader, plain
from vcl.pretrain.heads import Network
from vcl.pretrain.memories import (
    ClusterMemory,
    TrackMemory,
    class_weights,
    faiss_gpu,
    fix_small_clusters,
)


@dataclass(frozen=True)
class ODCOptions:
    """Method options (``vcl pretrain`` flags) with the papers' defaults."""

    memory_momentum: float = 0.5  # m of the memory update (ODC's 0.5)
    centroid_interval: int = 10  # iterations between centroid recomputations
    min_cluster: int = 20  # ODC's small-cluster threshold
    crop_scale: float = 0.08  # smallest random-crop area fraction
    kmeans_iters: int = 20  # Lloyd iterations of the initial k-means


class ODCMethod:
    """One class for the three methods; the class attributes are the switches."""

    name: ClassVar[str] = "odc"
    family: ClassVar[str] = "image"
    track_init: ClassVar[bool] = False
    track_update: ClassVar[bool] = False
    options_type: ClassVar[type] = ODCOptions

    @property
    def needs_tracks(self) -> bool:
        return self.track_init or self.track_update

    def __init__(self, config: Any, data: CropsInfo, device: torch.device) -> None:
        self.config = config
        self.opts: ODCOptions = config.options
        self.data = data
        self.device = device
        self.aug = AugmentParams(size=config.size, crop_scale=self.opts.crop_scale)
        self.track_index = data.track_index if data.track_ids is not None else None
        self.memory: ClusterMemory | None = None
        self.weights: torch.Tensor | None = None
        self.previous_labels: np.ndarray | None = None
        self.generator = torch.Generator(device=device)

    # ------------------------------------------------------------------ checks

    @classmethod
    def open_data(cls, path: Any) -> CropsInfo:
        from vcl.pretrain.data import open_crops

        return open_crops(path)

    def check(self) -> None:
        """Refuse inputs the method cannot train on, naming the store."""
        n, k, path = self.data.n, self.config.k, self.data.path
        if self.needs_tracks and self.data.track_ids is None:
            raise DataError(
                f"the crops have no track ids, which --method {self.name} needs",
                path,
                "make the crops from tracks (vcl crops), or use --method odc, "
                "which does not need them",
            )
        if k > n:
            raise DataError(f"--k {k} is larger than the number of crops ({n})", path)
        if self.track_init and k > self.data.n_tracks:
            raise DataError(
                f"--k {k} is larger than the number of tracks ({self.data.n_tracks}); "
                f"{self.name} clusters one sample per track",
                path,
                f"use --k {self.data.n_tracks} or less",
            )
        if k * self.opts.min_cluster > n:
            raise DataError(
                f"--k {k} clusters of at least --min-cluster {self.opts.min_cluster} need "
                f"{k * self.opts.min_cluster} crops, the store has {n}",
                path,
                "lower --k or --min-cluster",
            )

    # ------------------------------------------------------------------ model

    def build_model(self, backbone: torch.nn.Module) -> torch.nn.Module:
        return Network(backbone, backbone.spec.dim, self.config.k)

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        """ODC trains the classifier without SGD momentum (its labels keep changing)."""
        cls = [p for n, p in model.named_parameters() if n.startswith("classifier.")]
        rest = [p for n, p in model.named_parameters() if not n.startswith("classifier.")]
        return [{"params": rest}, {"params": cls, "momentum": 0.0}]

    # ------------------------------------------------------------------ data

    def batches(self, epoch: int) -> Any:
        b = epoch_batches(
            self.data.n, self.config.batch_size, self.config.seed, epoch, dist.rank(), dist.world()
        )
        return loader(self.data, b, self.config.workers, self.device.type == "cuda")

    @property
    def iterations_per_epoch(self) -> int:
        return len(epoch_batches(self.data.n, self.config.batch_size, 0, 0, 0, dist.world()))

    # ------------------------------------------------------------------ init

    @torch.no_grad()
    def init_state(self, model: torch.nn.Module, autocast: Any) -> None:
        """Memory init: 256-d features of every sample from the (random or --init)
        network in eval mode, then k-means (odc) or track k-means (the others)."""
        from vcl.cluster import kmeans, track_kmeans

        n, bs = self.data.n, self.config.batch_size
        chunks = [np.arange(s, min(s + bs, n)) for s in range(0, n, bs)]
        mine = chunks[dist.rank() :: dist.world()]
        model.eval()
        idx_parts, feat_parts = [], []
        for images, idx in loader(self.data, mine, self.config.workers, False):
            x = plain(images.to(self.device, non_blocking=True), self.config.size)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                z, _ = model(x)
            idx_parts.append(idx.to(self.device))
            feat_parts.append(z.float())
        model.train()
        idx = dist.gather_cat(torch.cat(idx_parts))
        feats = torch.empty(n, 256, device=self.device)
        feats[idx] = dist.gather_cat(torch.cat(feat_parts))
        feats = feats / (feats.norm(dim=1, keepdim=True) + 1e-10)
        labels = torch.zeros(n, dtype=torch.int64, device=self.device)
        if dist.rank() == 0:
            x = feats.cpu().numpy()
            it, k, seed = self.opts.kmeans_iters, self.config.k, self.config.seed
            gpu = faiss_gpu(self.device)
            if self.track_init:
                assert self.track_index is not None
                res, _ = track_kmeans(x, self.track_index, k, seed=seed, iters=it, gpu=gpu)
            else:
                res = kmeans(x, k, seed=seed, iters=it, gpu=gpu)
            labels = torch.as_tensor(res.labels[0], dtype=torch.int64, device=self.device)
        dist.broadcast(labels)
        tracks = None
        if self.track_index is not None:
            tracks = TrackMemory.from_index(self.track_index, self.device)
        self.memory = ClusterMemory.create(feats, labels, self.config.k, tracks)
        self.weights = class_weights(self.memory.labels, self.config.k)
        self.previous_labels = self.labels()
        if dist.rank() == 0:
            log.info("memory initialised: %d samples, %d clusters", n, self.config.k)

    # ------------------------------------------------------------------ training

    def train_step(
        self, model: torch.nn.Module, batch: Any, iteration: int, autocast: Any
    ) -> tuple[torch.Tensor, Any]:
        """Steps (i)–(ii): the loss of one batch; returns (loss, what ``after_step`` needs)."""
        assert self.memory is not None and self.weights is not None
        images, idx = batch
        images = images.to(self.device, non_blocking=True)
        idx = idx.to(self.device, non_blocking=True)
        self.generator.manual_seed(self.config.seed * 1_000_003 + iteration)
        x = augment(images, self.aug, self.generator)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            z, logits = model(x)
        target = self.memory.labels[idx]
        loss = torch.nn.functional.cross_entropy(logits.float(), target, weight=self.weights)
        return loss, (idx, z.detach().float())

    @torch.no_grad()
    def after_step(self, aux: Any, iteration: int) -> None:
        """Steps (iii)–(v) and the small-cluster rule, on every rank alike."""
        assert self.memory is not None
        idx, z = aux
        idx, z = dist.gather_cat(idx), dist.gather_cat(z)
        self.memory.update(idx, z, self.opts.memory_momentum, self.track_update)
        if iteration % self.opts.centroid_interval == 0:
            self.memory.recompute_centroids()
        seed = self.config.seed * 1_000_003 + iteration
        handled = fix_small_clusters(
            self.memory.features,
            self.memory.labels,
            self.memory.centroids,
            self.opts.min_cluster,
            seed,
            faiss_gpu(self.device),
        )
        if handled and dist.world() > 1:  # keep ranks identical whatever k-means did
            dist.broadcast(self.memory.labels)
            dist.broadcast(self.memory.centroids)
        self.weights = class_weights(self.memory.labels, self.config.k)

    # ------------------------------------------------------------------ reporting

    def labels(self) -> np.ndarray:
        assert self.memory is not None
        return self.memory.labels.cpu().numpy().astype(np.int32)

    def epoch_metrics(self) -> dict[str, Any]:
        """Change ratio since the last epoch, mean intra-track entropy (nats) of the memory
        labels, cluster sizes."""
        from vcl.cluster_metrics import change_ratio, mean_group_entropy, size_stats

        labels = self.labels()
        sizes = size_stats(labels, self.config.k)
        out = {
            "change_ratio": change_ratio(self.previous_labels, labels),
            "intra_track_entropy": None
            if self.track_index is None
            else mean_group_entropy(self.track_index, labels),
            "cluster_min": sizes["min"],
            "cluster_max": sizes["max"],
            "clusters_empty": sizes["empty"],
        }
        self.previous_labels = labels
        return out

    def initial_metrics(self) -> dict[str, Any]:
        from vcl.cluster_metrics import mean_group_entropy

        labels = self.labels()
        return {
            "intra_track_entropy": None
            if self.track_index is None
            else mean_group_entropy(self.track_index, labels)
        }

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        assert self.memory is not None
        state: dict[str, Any] = {"memory": self.memory.state_dict()}
        state["previous_labels"] = torch.from_numpy(self.previous_labels)
        if self.track_index is not None:
            state["track_index"] = torch.from_numpy(self.track_index)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mem = state["memory"]
        n, path = self.data.n, self.data.path
        check_resumed_size(len(mem["labels"]), n, path, "samples", "crops store")
        tracks = None
        if self.track_index is not None:
            tracks = TrackMemory.from_index(self.track_index, self.device)
        self.memory = ClusterMemory(
            mem["features"].to(self.device),
            mem["labels"].to(self.device),
            mem["centroids"].to(self.device),
            self.config.k,
            tracks,
        )
        self.weights = class_weights(self.memory.labels, self.config.k)
        self.previous_labels = state["previous_labels"].numpy().astype(np.int32)


class ODCTrackInit(ODCMethod):
    name = "odc-trackinit"
    track_init = True


class ODCT(ODCMethod):
    name = "odct"
    track_init = True
    track_update = True
