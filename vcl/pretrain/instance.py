"""Video IR, Video LA and LA with an IDT prior (Tokmakov, Hebert & Schmid; seed 001 §3).

Every video i has an entry v_i of a memory bank D (N × 128, unit rows); a 3D CNN with a
128-d L2-normalised embedding head maps a clip of video i to d_i. With eq. 2,

    P(i | d) = exp(v_iᵀ d / τ) / Σ_j exp(v_jᵀ d / τ),    τ = 0.07,

- ``video-ir`` (instance recognition, Wu et al. 2018, §3.1): maximise P(i | d_i), the
  denominator approximated by NCE with m = 4,096 negatives drawn uniformly from the bank
  (clamped to N − 1): with P_n = 1/N, h(j, d) = P(j|d) / (P(j|d) + m·P_n) and
  Z ≈ N · mean(exp(vᵀd/τ)) estimated on the first batch and then kept fixed (the
  reference code's choice),
      L_IR = −log h(i, d_i) − Σ_{j ∈ negatives} log(1 − h(j, d_i));
- ``video-la`` (local aggregation, Zhuang et al. 2019, §3.2): every ``cluster_every``
  epochs, ``runs`` k-means clusterings of the bank into K clusters; close neighbours
  C_i = the videos in the same cluster as i in any clustering, background neighbours
  B_i = the ``background`` entries of the bank closest to d_i; eq. 3
      L_LA = −log( P(C_i ∩ B_i | d_i) / P(B_i | d_i) )
  (with the reference code's +1e-7 inside the log, for an empty C_i ∩ B_i);
- ``video-la-idt`` (§3.3): as LA, but C_i comes from k-means on an IDT Fisher-vector
  prior (``--prior``, joined to the videos by id) and stays fixed; the last
  ``joint_epochs`` epochs re-cluster the joint space [v_i ‖ p(ψ_i)], p = PCA of the
  prior to the bank's 128 dimensions, both halves unit length.

Clips (:mod:`vcl.pretrain.clips`): the reference code's 5-scale random square crop and
flip, then, drawn once per clip, RandomGrayscale (p = 0.2) and ColorJitter (brightness,
contrast, saturation and hue 0.4, in a random order) as video_cluster's
``_load_image_transforms`` (:data:`VIDEO_COLOUR`; ``--no-colour`` leaves it out).

After each step the bank rows of the batch move towards the new embeddings:
v_i ← normalise((1 − m)·v_i + m·d_i), m = ``memory_momentum`` (0.5, as Wu et al.).
The bank starts as random unit vectors for IR (Wu et al.); LA starts from the bank and
head of its ``--init`` run when that run trained on the same videos (the paper: 40
epochs of IR), else from the network's embeddings of each video's middle clip.
Every k-means (LA's, the prior's, IR's evaluation one) runs on the training GPU when
faiss can use it (:func:`vcl.pretrain.memories.faiss_gpu`), else on the CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vcl.console import log
from vcl.errors import DataError, UsageError
from vcl.pretrain import dist
from vcl.pretrain.clips import (
    ClipParams,
    ColourParams,
    VideoSet,
    centre_plan,
    clip_loader,
    epoch_plans,
    iterations,
    open_videos,
    require_decodable,
    to_input,
)
from vcl.pretrain.memories import faiss_gpu

EMBED_DIM = 128
# video_cluster's RandomGrayscale(p=0.2) then ColorJitter(0.4, 0.4, 0.4, 0.4), always on
VIDEO_COLOUR = ColourParams(
    jitter_p=1.0,
    brightness=0.4,
    contrast=0.4,
    saturation=0.4,
    hue=0.4,
    grayscale=0.2,
    grayscale_first=True,
)


@dataclass(frozen=True)
class VideoOptions:
    """Method options (``vcl pretrain`` flags) with the papers' defaults."""

    frames: int = 16  # clip length T (Tokmakov et al.: 16)
    frame_stride: int = 1  # every s-th frame (1: consecutive frames, as the papers)
    temperature: float = 0.07  # τ of eq. 2
    negatives: int = 4096  # NCE noise samples m (IR)
    memory_momentum: float = 0.5  # weight of the new embedding in the bank update
    runs: int = 3  # k-means clusterings per LA update (the paper: 3 of K = 6000)
    cluster_every: int = 1  # epochs between LA re-clusterings
    background: int = 4096  # |B_i|, nearest bank entries
    prior: str | None = None  # features store (vcl fisher) for video-la-idt
    joint_epochs: int = 0  # last epochs of video-la-idt clustered on [v ‖ p(ψ)]
    keep_going: bool = False  # skip undecodable videos instead of stopping
    frames_store: str | None = None  # pre-decoded frames (vcl.frames/1), written if absent
    kmeans_iters: int = 20  # Lloyd iterations of each k-means
    colour: bool = True  # the reference's per-clip grayscale and colour jitter


class VideoNet(nn.Module):
    """3D backbone + linear embedding head to 128-d, L2-normalised. ``classifier`` is
    empty (the training loop checkpoints one for every method)."""

    def __init__(self, backbone: nn.Module, in_dim: int, dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(in_dim, dim)
        self.classifier = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, S, S) → (B, 128) unit rows."""
        return F.normalize(self.head(self.backbone(x)).float(), dim=1)


# ---------------------------------------------------------------------------- losses


def nce_loss(
    d: torch.Tensor,
    bank: torch.Tensor,
    idx: torch.Tensor,
    noise: torch.Tensor,
    tau: float,
    log_z: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IR's NCE loss (Wu et al. eq. 6–7). d (B, D) unit embeddings, bank (N, D), idx (B,)
    the videos, noise (B, m) bank rows drawn as negatives, log_z the fixed log Z.
    Returns (loss, positive term, negative term), each averaged over the batch."""
    n, m = bank.shape[0], noise.shape[1]
    rows = torch.cat([idx[:, None], noise], dim=1)  # (B, 1 + m)
    logit = torch.einsum("bd,bkd->bk", d, bank[rows]) / tau  # (B, 1 + m)
    log_p = logit - log_z  # log P(j | d)
    log_mpn = torch.full_like(log_p, float(np.log(m / n)))  # log(m · P_n)
    log_denominator = torch.logaddexp(log_p, log_mpn)
    positive = -(log_p[:, 0] - log_denominator[:, 0])  # −log h(i, d)
    negative = -(log_mpn[:, 1:] - log_denominator[:, 1:]).sum(dim=1)  # −Σ log(1 − h)
    return (positive + negative).mean(), positive.mean(), negative.mean()


def estimate_log_z(
    d: torch.Tensor, bank: torch.Tensor, idx: torch.Tensor, noise: torch.Tensor, tau: float
) -> torch.Tensor:
    """log of Z ≈ N · mean over the batch's scores of exp(vᵀd/τ) (Wu et al.'s estimate)."""
    rows = torch.cat([idx[:, None], noise], dim=1)
    logit = torch.einsum("bd,bkd->bk", d.detach(), bank[rows]) / tau
    return torch.logsumexp(logit.flatten(), 0) - np.log(logit.numel()) + np.log(bank.shape[0])


def background_neighbours(d: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """B_i: indices (B, k) of the k bank rows with the highest dot product with d_i."""
    return (d.detach() @ bank.T).topk(min(k, bank.shape[0]), dim=1).indices


def close_neighbours(
    labels: torch.Tensor, idx: torch.Tensor, candidates: torch.Tensor
) -> torch.Tensor:
    """(B, k) bool: candidate j shares a cluster with video idx[b] in ANY of the R
    clusterings ``labels`` (R, N) — C_i restricted to the candidates."""
    return (labels[:, candidates] == labels[:, idx][:, :, None]).any(dim=0)


def la_loss(
    d: torch.Tensor,
    bank: torch.Tensor,
    idx: torch.Tensor,
    labels: torch.Tensor,
    background: int,
    tau: float,
) -> torch.Tensor:
    """Eq. 3, −log(P(C∩B | d) / P(B | d) + 1e-7), averaged over the batch. d (B, D),
    bank (N, D), idx (B,), labels (R, N) cluster ids of R clusterings."""
    scores = d @ bank.T  # (B, N) vᵀd
    bg = scores.detach().topk(min(background, bank.shape[0]), dim=1).indices  # B_i (B, k)
    close = close_neighbours(labels, idx, bg)  # (B, k)
    logit = scores.gather(1, bg) / tau
    p = torch.softmax(logit, dim=1)  # P(j | d) / P(B | d): Z cancels
    ratio = (p * close).sum(dim=1)
    return -torch.log(ratio + 1e-7).mean()


def update_bank(bank: torch.Tensor, idx: torch.Tensor, d: torch.Tensor, m: float) -> None:
    """v_i ← normalise((1 − m)·v_i + m·d_i), in place; repeated indices use the last."""
    bank[idx] = F.normalize((1 - m) * bank[idx] + m * d.to(bank.dtype), dim=1)


# ---------------------------------------------------------------------------- methods


class VideoIR:
    """``video-ir``; the LA variants subclass it (same data, model, bank)."""

    name: ClassVar[str] = "video-ir"
    family: ClassVar[str] = "video"
    options_type: ClassVar[type] = VideoOptions
    clusters: ClassVar[str] = "none"  # "bank" (LA), "prior" (LA + IDT)
    # Shared options whose defaults differ from the image family (applied by the CLI to
    # flags left at their default): the papers' 3D ResNet-18 on 112-px clips, and LA's
    # SGD settings (lr 0.03, momentum 0.9, weight decay 1e-4), K = 6000.
    defaults: ClassVar[dict[str, Any]] = {
        "arch": "r3d_18",
        "size": 112,
        "lr": 0.03,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "k": 6000,
    }

    def __init__(self, config: Any, data: VideoSet, device: torch.device) -> None:
        self.config = config
        self.opts: VideoOptions = config.options
        self.data = data
        self.device = device
        self.params = ClipParams(
            frames=self.opts.frames,
            size=config.size,
            stride=self.opts.frame_stride,
            colour=VIDEO_COLOUR if self.opts.colour else None,
        )
        self.bank: torch.Tensor | None = None  # (N, 128)
        self.log_z: torch.Tensor | None = None  # IR's fixed log Z
        self.cluster_labels: torch.Tensor | None = None  # (R, N) int64
        self.cluster_epoch = 0  # epoch whose clustering cluster_labels is
        self.k = config.k
        self.generator = torch.Generator(device=device)
        self.prior: np.ndarray | None = None  # (N, Dp) prior rows aligned with the videos
        self.prior_labels: torch.Tensor | None = None
        self._terms: dict[str, list[torch.Tensor]] = {}
        self._clips = 0
        self._began = time.perf_counter()

    # ------------------------------------------------------------------ checks

    @classmethod
    def open_data(cls, path: Any) -> VideoSet:
        return open_videos(path if isinstance(path, list) else str(path))

    def check(self) -> None:
        from vcl.backbones import spec_of

        spec, o = spec_of(self.config.arch), self.opts
        if o.frames < spec.min_frames or self.config.size < spec.min_side:
            raise UsageError(
                f"--arch {spec.name} needs clips of at least {spec.min_frames} frames at "
                f"{spec.min_side} px (got --frames {o.frames}, --size {self.config.size})",
                "--arch",
            )
        if min(o.frames, o.frame_stride, o.runs, o.cluster_every, o.background) < 1:
            raise UsageError(
                "need --frames, --frame-stride, --runs, --cluster-every, --background >= 1"
            )
        require_decodable(self.data, o.keep_going, self.params.span)
        n = self.data.n
        if self.clusters != "none" and self.k > n // 2:
            k = max(1, n // 2)
            log.warning("--k %d is too large for %d videos: using K = %d", self.k, n, k)
            self.k = k
        if self.clusters == "prior":
            self._load_prior()
        if self.clusters != "prior" and (o.prior is not None or o.joint_epochs):
            raise UsageError(
                f"--prior and --joint-epochs belong to video-la-idt, not --method {self.name}"
            )
        if o.frames_store is not None:  # last: the other checks are cheap
            self._attach_frames(o.frames_store)

    def _attach_frames(self, path: str) -> None:
        """Read clips from a pre-decoded frames store, writing it first (rank 0) if absent."""
        from vcl.pretrain.clips import attach_frames, write_frames

        if not Path(path).exists() and dist.rank() == 0:
            log.info("decoding %d videos into %s", self.data.n, path)
            write_frames(self.data, path, self.params, max(self.config.workers, 1))
        dist.barrier()
        self.data = attach_frames(self.data, path, self.params)

    def _load_prior(self) -> None:
        from vcl.io.features import read_feature_set

        o = self.opts
        if o.prior is None:
            raise UsageError(
                f"--method {self.name} needs --prior FEATURES (e.g. vcl fisher output)",
                "--prior",
            )
        if not 0 <= o.joint_epochs < self.config.epochs:
            raise UsageError(
                f"--joint-epochs {o.joint_epochs} must be below --epochs {self.config.epochs}"
            )
        fs = read_feature_set(o.prior)
        order = np.argsort(fs.ids)
        pos = np.searchsorted(fs.ids, self.data.ids, sorter=order).clip(0, len(fs.ids) - 1)
        found = fs.ids[order[pos]] == self.data.ids
        if not found.all():
            missing = self.data.ids[~found]
            first = ", ".join(missing[:5].tolist())
            raise DataError(
                f"the prior lacks {len(missing)} of the {self.data.n} videos "
                f"(first: {first}{', ...' if len(missing) > 5 else ''})",
                o.prior,
                "compute the prior (vcl idt, vcl fisher) on the same videos",
            )
        prior = fs.features[order[pos]].astype(np.float32)
        if not np.isfinite(prior).all():
            raise DataError("the prior has NaN or infinite values", o.prior)
        self.prior = prior

    # ------------------------------------------------------------------ model

    def build_model(self, backbone: nn.Module) -> nn.Module:
        return VideoNet(backbone, backbone.spec.dim)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    # ------------------------------------------------------------------ data

    def batches(self, epoch: int) -> Any:
        if self.clusters != "none":
            self._recluster(epoch)
        plans = epoch_plans(
            self.data,
            self.config.batch_size,
            self.params,
            self.config.seed,
            epoch,
            1,
            dist.rank(),
            dist.world(),
        )
        self._terms, self._clips, self._began = {}, 0, time.perf_counter()
        return clip_loader(
            self.data, plans, self.params, self.config.workers, self.device.type == "cuda"
        )

    @property
    def iterations_per_epoch(self) -> int:
        return iterations(self.data.n, self.config.batch_size, dist.world())

    def _input(self, clips: torch.Tensor, colour: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 clips (B, V, T, S, S, 3) and their colour draws (B, V, C) → the
        colour-augmented, normalised network input (B·V, 3, T, S, S) on the device."""
        x = to_input(clips, self.device, colour, self.params.colour).flatten(0, 1)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x

    # ------------------------------------------------------------------ init

    @torch.no_grad()
    def init_state(self, model: nn.Module, autocast: Any) -> None:
        n = self.data.n
        if self.clusters == "none":  # Wu et al.: uniform in ±1/√(D/3), then unit rows
            g = torch.Generator().manual_seed(self.config.seed)
            std = 1.0 / np.sqrt(EMBED_DIM / 3)
            bank = torch.rand(n, EMBED_DIM, generator=g) * (2 * std) - std
            self.bank = F.normalize(bank, dim=1).to(self.device)
        else:
            self.bank = self._bank_from_init(model)
            if self.bank is None:
                self.bank = self._embed_all(model, autocast)
        if self.clusters == "prior":
            assert self.prior is not None
            self.prior_labels = self._kmeans(self.prior, self.config.seed)
        if self.clusters != "none":
            self._recluster(1)
        if dist.rank() == 0:
            log.info("memory bank initialised: %d videos", n)

    def _bank_from_init(self, model: nn.Module) -> torch.Tensor | None:
        """The bank (and head) of the --init run when it trained on these videos."""
        if not self.config.init:
            return None
        path = Path(self.config.init) / "checkpoint.pt"
        state = torch.load(path, map_location=self.device, weights_only=True)
        bank = state.get("method_state", {}).get("bank")
        ids = state.get("method_state", {}).get("video_ids")
        mine = torch.from_numpy(_id_codes(self.data.ids))
        if bank is None or ids is None or not torch.equal(ids.cpu(), mine):
            log.info("--init run holds no memory bank of these videos: embedding them")
            return None
        model.head.load_state_dict(state["head"])
        log.info("memory bank and head taken from the --init run")
        return bank.float().to(self.device)

    def _embed_all(self, model: nn.Module, autocast: Any) -> torch.Tensor:
        """d of every video's middle clip (centre crop), network in eval mode."""
        n, bs = self.data.n, self.config.batch_size
        chunks = [np.arange(s, min(s + bs, n)) for s in range(0, n, bs)]
        mine = chunks[dist.rank() :: dist.world()]
        plans = [centre_plan(self.data.frames, c, self.params) for c in mine]
        model.eval()
        idx_parts, feat_parts = [], []
        for clips, idx, _ in clip_loader(self.data, plans, self.params, self.config.workers):
            with autocast():
                d = model(self._input(clips))
            idx_parts.append(idx.to(self.device))
            feat_parts.append(d.float())
        model.train()
        bank = torch.empty(n, EMBED_DIM, device=self.device)
        bank[dist.gather_cat(torch.cat(idx_parts))] = dist.gather_cat(torch.cat(feat_parts))
        return F.normalize(bank, dim=1)

    # ------------------------------------------------------------------ clustering

    def _kmeans(self, x: np.ndarray, seed: int) -> torch.Tensor:
        """(R, N) int64 labels of ``runs`` k-means clusterings (rank 0, broadcast)."""
        from vcl.cluster import kmeans

        labels = torch.zeros(self.opts.runs, len(x), dtype=torch.int64, device=self.device)
        if dist.rank() == 0:
            o, gpu = self.opts, faiss_gpu(self.device)
            res = kmeans(x, self.k, runs=o.runs, iters=o.kmeans_iters, seed=seed, gpu=gpu)
            labels = torch.as_tensor(res.labels, dtype=torch.int64, device=self.device)
        return dist.broadcast(labels)

    def _joint(self, epoch: int) -> bool:
        return self.clusters == "prior" and epoch > self.config.epochs - self.opts.joint_epochs

    def _recluster(self, epoch: int) -> None:
        """Clusters for ``epoch``: LA every ``cluster_every`` epochs from the bank; the
        IDT prior's fixed ones, or in the joint phase [v ‖ p(ψ)] every cluster_every."""
        assert self.bank is not None
        due = (epoch - 1) % self.opts.cluster_every == 0
        if self.cluster_epoch == epoch:
            return
        if self.clusters == "prior" and not self._joint(epoch):
            self.cluster_labels, self.cluster_epoch = self.prior_labels, epoch
            return
        if not due and self.cluster_labels is not None and not self._entering_joint(epoch):
            return
        x = self.bank.float().cpu().numpy()
        if self.clusters == "prior":
            x = np.concatenate([x, self._projected_prior()], axis=1)
        self.cluster_labels = self._kmeans(x, self.config.seed + 1009 * epoch)
        self.cluster_epoch = epoch

    def _entering_joint(self, epoch: int) -> bool:
        return self._joint(epoch) and not self._joint(epoch - 1)

    def _projected_prior(self) -> np.ndarray:
        """p(ψ): the prior L2-normalised, PCA to min(128, N − 1, D) dims, unit rows."""
        from vcl.cluster import PCA, l2_normalise

        assert self.prior is not None
        x = l2_normalise(self.prior)
        dim = min(EMBED_DIM, len(x) - 1, x.shape[1])
        return l2_normalise(PCA.fit(x, dim, whiten=False).transform(x))

    # ------------------------------------------------------------------ training

    def train_step(
        self, model: nn.Module, batch: Any, iteration: int, autocast: Any
    ) -> tuple[torch.Tensor, Any]:
        assert self.bank is not None
        clips, idx, colour = batch
        idx = idx.to(self.device, non_blocking=True)
        x = self._input(clips, colour)  # colour-augmented outside autocast: float32
        with autocast():
            d = model(x).float()  # (B, 128)
        loss = self.loss(d, idx, iteration)
        self._clips += len(idx) * dist.world()
        return loss, (idx, d.detach())

    def loss(self, d: torch.Tensor, idx: torch.Tensor, iteration: int) -> torch.Tensor:
        assert self.bank is not None
        n = self.bank.shape[0]
        m = min(self.opts.negatives, n - 1)
        self.generator.manual_seed(self.config.seed * 1_000_003 + iteration)
        # m uniform draws among the N − 1 other videos (shift past the positive)
        noise = torch.randint(0, n - 1, (len(idx), m), generator=self.generator, device=self.device)
        noise = noise + (noise >= idx[:, None]).long()
        if self.log_z is None:
            self.log_z = dist.broadcast(
                estimate_log_z(d, self.bank, idx, noise, self.opts.temperature).reshape(1)
            ).reshape(())
        loss, pos, neg = nce_loss(d, self.bank, idx, noise, self.opts.temperature, self.log_z)
        self._add_terms(nce_positive=pos, nce_negative=neg)
        return loss

    def _add_terms(self, **terms: torch.Tensor) -> None:
        for key, value in terms.items():
            self._terms.setdefault(key, []).append(value.detach())

    @torch.no_grad()
    def after_step(self, aux: Any, iteration: int) -> None:
        assert self.bank is not None
        idx, d = aux
        idx, d = dist.gather_cat(idx), dist.gather_cat(d)
        update_bank(self.bank, idx, d, self.opts.memory_momentum)

    # ------------------------------------------------------------------ reporting

    def labels(self) -> np.ndarray:
        """Cluster of every video in the first clustering (−1 for IR, which has none)."""
        if self.cluster_labels is None:
            return np.full(self.data.n, -1, np.int32)
        return self.cluster_labels[0].cpu().numpy().astype(np.int32)

    def epoch_metrics(self) -> dict[str, Any]:
        """Loss terms, clips/s, cluster count and sizes, NMI/AMI against the manifest's
        labels (evaluation only; for IR of a k-means of the bank with K = #classes)."""
        from vcl.cluster_metrics import ami, nmi, size_stats

        out: dict[str, Any] = {
            key: float(torch.stack(v).mean()) for key, v in sorted(self._terms.items())
        }
        if self._clips:
            out["clips_per_s"] = self._clips / max(time.perf_counter() - self._began, 1e-9)
        clusters = None if self.cluster_labels is None else self.labels()
        if clusters is not None:
            sizes = size_stats(clusters, self.k)
            out |= {
                "clusters": len(np.unique(clusters)),
                "cluster_min": sizes["min"],
                "cluster_max": sizes["max"],
                "clusters_empty": sizes["empty"],
            }
            if self.clusters == "prior":  # clusters of [v ‖ p(ψ)] rather than the prior's
                out["joint"] = self._joint(self.cluster_epoch)
        labels = self.data.labels
        if labels is not None and (labels != "").sum() >= 2 and self.bank is not None:
            known = labels != ""
            if clusters is None:
                from vcl.cluster import kmeans

                k = len(np.unique(labels[known]))
                x = self.bank.float().cpu().numpy()[known]
                clusters = np.zeros(len(labels), np.int32)
                if 1 < k <= known.sum():
                    gpu = faiss_gpu(self.device)
                    clusters[known] = kmeans(x, k, seed=self.config.seed, gpu=gpu).labels[0]
            out["nmi"] = nmi(labels[known], clusters[known])
            out["ami"] = ami(labels[known], clusters[known])
        return out

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        assert self.bank is not None
        state: dict[str, Any] = {
            "bank": self.bank,
            "video_ids": torch.from_numpy(_id_codes(self.data.ids)),
            "cluster_epoch": self.cluster_epoch,
            "k": self.k,
        }
        if self.log_z is not None:
            state["log_z"] = self.log_z
        if self.cluster_labels is not None:
            state["cluster_labels"] = self.cluster_labels
        if self.prior_labels is not None:
            state["prior_labels"] = self.prior_labels
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not torch.equal(state["video_ids"].cpu(), torch.from_numpy(_id_codes(self.data.ids))):
            raise DataError(
                f"the checkpoint was trained on other videos than the {self.data.n} given",
                self.data.source,
                "resume with the videos the run was started on",
            )
        self.bank = state["bank"].to(self.device)
        self.log_z = state["log_z"].to(self.device) if "log_z" in state else None
        self.cluster_epoch = int(state["cluster_epoch"])
        self.k = int(state["k"])
        if "cluster_labels" in state:
            self.cluster_labels = state["cluster_labels"].to(self.device)
        if "prior_labels" in state:
            self.prior_labels = state["prior_labels"].to(self.device)


class VideoLA(VideoIR):
    name = "video-la"
    clusters = "bank"

    def loss(self, d: torch.Tensor, idx: torch.Tensor, iteration: int) -> torch.Tensor:
        assert self.bank is not None and self.cluster_labels is not None
        loss = la_loss(
            d, self.bank, idx, self.cluster_labels, self.opts.background, self.opts.temperature
        )
        self._add_terms(la=loss)
        return loss


class VideoLAIDT(VideoLA):
    name = "video-la-idt"
    clusters = "prior"


def _id_codes(ids: np.ndarray) -> np.ndarray:
    """A fingerprint (N,) int64 of the video ids, in order (checkpoints hold tensors only)."""
    import zlib

    return np.array([zlib.crc32(str(i).encode()) for i in ids], dtype=np.int64)
