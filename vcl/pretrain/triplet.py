"""Tracking triplets: Wang & Gupta, "Unsupervised Learning of Visual Representations
using Videos", ICCV 2015.

Data: a pairs store (``vcl crops TRACKS --pairs``): two rows per track, the query patch
X (the track's first box) then the tracked patch X⁺ (its last box, ~30 frames later with
``vcl track --method kcf``). A batch holds B pairs, 2B patches.

Network: a Siamese-triplet network, i.e. one backbone with shared weights applied to every
patch, then the paper's embedding head, two fully connected layers FC 4096 → ReLU →
dropout 0.5 → FC 1024. On AlexNet (``--arch alexnet``, the paper's network) the head sits
on pool5 (256×6×6 = 9216); on a ResNet the same head sits on the pooled features
(512 for ResNet-18/34, 2048 for ResNet-50+).

Distance and loss (the paper's eq. 1–2), for embeddings f(·) ∈ R^1024::

    D(X1, X2) = 1 − f(X1)·f(X2) / (‖f(X1)‖ ‖f(X2)‖)
    L(X, X⁺, X⁻) = max(0, D(X, X⁺) − D(X, X⁻) + M),   M = 0.5

averaged over the batch's triplets; the weight decay (5e-4) is the optimiser's.

Negatives X⁻ come from the batch's other patches (queries and tracked patches alike)
of *other videos*. For the first ``random_neg_epochs`` epochs (10) each pair gets K
random ones; afterwards hard-negative mining: the loss of every candidate patch of the
batch is computed and the K = 4 with the highest loss are used (``select_negatives``).
Patches are only resized and normalised (no augmentation: the tracker supplies the
change of viewpoint, scale and lighting between X and X⁺).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from vcl.errors import DataError
from vcl.pretrain import check_resumed_size, dist
from vcl.pretrain.data import CropsInfo, loader, plain


@dataclass(frozen=True)
class TripletOptions:
    """Method options (``vcl pretrain`` flags) with the paper's defaults."""

    margin: float = 0.5  # M of the ranking loss
    random_neg_epochs: int = 10  # epochs with random negatives before hard-negative mining
    hard_k: int = 4  # K negatives per pair


# ---------------------------------------------------------------------------- losses


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """D = 1 − cos between every row of ``a`` (P, D) and of ``b`` (C, D) → (P, C)."""
    a = nn.functional.normalize(a.float(), dim=1, eps=1e-8)
    b = nn.functional.normalize(b.float(), dim=1, eps=1e-8)
    return 1.0 - a @ b.T


def ranking_losses(
    query: torch.Tensor, positive: torch.Tensor, candidates: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triplet losses of every (pair, candidate negative).

    ``query``, ``positive``: (P, D) embeddings of the pairs; ``candidates``: (C, D).
    Returns losses (P, C) = max(0, D(X, X⁺) − D(X, X⁻) + M), D(X, X⁺) (P,) and
    D(X, X⁻) (P, C).
    """
    d_pos = 1.0 - nn.functional.cosine_similarity(query.float(), positive.float(), eps=1e-8)
    d_neg = cosine_distance(query, candidates)
    return torch.relu(d_pos[:, None] - d_neg + margin), d_pos, d_neg


def select_negatives(
    losses: torch.Tensor,
    valid: torch.Tensor,
    k: int,
    hard: bool,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The K negatives of each pair: indices (P, K') into the candidates and a mask (P, K')
    of the real ones (False where a pair has fewer than K valid candidates); K' = min(K, C).

    ``hard``: the K valid candidates of highest loss (ties broken by index); otherwise K
    valid candidates drawn uniformly without replacement (``generator`` on their device).
    """
    k = min(k, losses.shape[1])
    if hard:
        score = losses.detach().float()
    else:
        score = torch.rand(losses.shape, generator=generator, device=losses.device)
    score = score.masked_fill(~valid, float("-inf"))
    top = torch.topk(score, k, dim=1, largest=True, sorted=True)
    return top.indices, torch.isfinite(top.values)


# ---------------------------------------------------------------------------- data


@dataclass
class PairsInfo:
    """A checked pairs store: row numbers of (query, tracked) of every pair, by video."""

    crops: CropsInfo
    rows: np.ndarray  # (P, 2) int64 store rows of query and tracked patch
    video: np.ndarray  # (P,) int64 video number of each pair

    @property
    def path(self) -> Path:
        return self.crops.path

    @property
    def n(self) -> int:
        """Training samples: pairs."""
        return len(self.rows)

    def sample_keys(self) -> np.ndarray:
        """(2P,) str: the query and tracked crop of every pair, in pair order."""
        return self.crops.sample_keys()[self.rows.ravel()]

    @property
    def n_tracks(self) -> int:
        return len(self.rows)

    @property
    def n_videos(self) -> int:
        return int(self.video.max()) + 1


def open_pairs(inputs: str | Path | list[str]) -> PairsInfo:
    """Check that a crops store (or several of one run, read as their merge) holds
    (query, tracked) pairs; read their row numbers."""
    from vcl.pretrain.data import open_crops, open_crops_store

    hint = "make it with vcl crops TRACKS --pairs (from vcl track --method kcf)"
    store = open_crops_store(inputs)
    path = store.path  # messages name the first input
    params = store.attrs.get("params") or {}
    if not params.get("pairs"):
        raise DataError(
            "is a crops store without pair structure (not made with --pairs)", path, hint
        )
    info = open_crops(inputs)
    if info.track_ids is None:
        raise DataError("has no track ids: pairs cannot be told apart", path, hint)
    keys = np.char.add(np.char.add(info.video_ids, "\t"), info.track_ids)
    if info.n % 2 or not np.array_equal(keys[0::2], keys[1::2]):
        raise DataError(
            "rows are not (query, tracked) pairs: each track needs exactly two consecutive rows",
            path,
            hint,
        )
    if len(np.unique(keys[0::2])) != info.n // 2:
        raise DataError("a track has more than one pair", path, hint)
    rows = np.arange(info.n, dtype=np.int64).reshape(-1, 2)
    video = np.unique(info.video_ids[0::2], return_inverse=True)[1].astype(np.int64)
    if video.max() < 1:
        raise DataError(
            f"all {len(rows)} pairs come from one video; negatives must come from other videos",
            path,
            "crop pairs from at least two videos",
        )
    return PairsInfo(info, rows, video)


def pair_batches(
    n_pairs: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1
) -> list[np.ndarray]:
    """This rank's pairs of every batch of an epoch: a permutation seeded by (seed, epoch)
    cut into batches of ``batch_size`` pairs; rank r takes pairs r, r + world, ...
    A last batch of fewer than 2 pairs per rank is dropped (a pair needs negatives)."""
    perm = np.random.default_rng([seed, epoch, 3]).permutation(n_pairs)
    cuts = [perm[s : s + batch_size] for s in range(0, n_pairs, batch_size)]
    return [b[rank::world] for b in cuts if len(b) >= 2 * world]


# ---------------------------------------------------------------------------- model


class EmbeddingHead(nn.Sequential):
    """(N, in_dim) → (N, 1024): Wang & Gupta's FC 4096 → ReLU → dropout → FC 1024."""

    def __init__(self, in_dim: int, hidden: int = 4096, out_dim: int = 1024) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(hidden, out_dim),
        )


class TripletNet(nn.Module):
    """Shared backbone + embedding head (``classifier`` is empty: the loop saves one)."""

    def __init__(self, backbone: nn.Module, in_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = EmbeddingHead(in_dim)
        self.classifier = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → embeddings (B, 1024)."""
        return self.head(self.backbone(x))


# ---------------------------------------------------------------------------- method


class TripletMethod:
    """``vcl pretrain --method triplet``: the interface of :class:`vcl.pretrain.odc.ODCMethod`."""

    name: ClassVar[str] = "triplet"
    family: ClassVar[str] = "image"
    options_type: ClassVar[type] = TripletOptions
    # Defaults of common options that differ for this method (the paper's).
    defaults: ClassVar[dict[str, Any]] = {"weight_decay": 5e-4, "batch_size": 100}

    def __init__(self, config: Any, data: PairsInfo, device: torch.device) -> None:
        self.config = config
        self.opts: TripletOptions = config.options
        self.data = data
        self.device = device
        self.video = torch.as_tensor(data.video, device=device)
        self.generator = torch.Generator(device=device)
        self.epoch = 0
        self._stats = torch.zeros(5, dtype=torch.float64, device=device)

    @classmethod
    def open_data(cls, path: Any) -> PairsInfo:
        return open_pairs(path)

    def check(self) -> None:
        from vcl.errors import UsageError

        if self.opts.margin <= 0 or self.opts.hard_k < 1 or self.opts.random_neg_epochs < 0:
            raise UsageError("need --margin > 0, --hard-k >= 1 and --random-neg-epochs >= 0")

    def build_model(self, backbone: nn.Module) -> nn.Module:
        return TripletNet(backbone, backbone.spec.dim)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return [{"params": list(model.parameters())}]

    # ------------------------------------------------------------------ data

    def _batches(self, epoch: int, rank: int, world: int) -> list[np.ndarray]:
        b = pair_batches(self.data.n, self.config.batch_size, self.config.seed, epoch, rank, world)
        # rows of a batch: the B' queries, then their B' tracked patches
        return [np.concatenate([self.data.rows[p, 0], self.data.rows[p, 1]]) for p in b]

    def batches(self, epoch: int) -> Any:
        self.epoch = epoch
        self._stats.zero_()
        rows = self._batches(epoch, dist.rank(), dist.world())
        return loader(self.data.crops, rows, self.config.workers, self.device.type == "cuda")

    @property
    def iterations_per_epoch(self) -> int:
        return len(pair_batches(self.data.n, self.config.batch_size, 0, 0, 0, dist.world()))

    def hard_mining(self, epoch: int) -> bool:
        return epoch > self.opts.random_neg_epochs

    def init_state(self, model: nn.Module, autocast: Any) -> None:
        return None

    # ------------------------------------------------------------------ training

    def train_step(
        self, model: nn.Module, batch: Any, iteration: int, autocast: Any
    ) -> tuple[torch.Tensor, Any]:
        """Embed the 2B' patches, pick K negatives per pair among the other videos' patches
        of the batch, and average the ranking loss over the chosen triplets."""
        images, rows = batch
        x = plain(images.to(self.device, non_blocking=True), self.config.size)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            f = model(x)
        f = f.float()
        b = len(rows) // 2
        pair_video = self._pair_video(rows[:b])
        cand_video = torch.cat([pair_video, pair_video])
        losses, d_pos, d_neg = ranking_losses(f[:b], f[b:], f, self.opts.margin)
        valid = pair_video[:, None] != cand_video[None, :]
        self.generator.manual_seed(self.config.seed * 1_000_003 + iteration)
        idx, real = select_negatives(
            losses, valid, self.opts.hard_k, self.hard_mining(self.epoch), self.generator
        )
        chosen = losses.gather(1, idx)[real]
        loss = chosen.mean() if chosen.numel() else losses.sum() * 0.0
        with torch.no_grad():
            stats = torch.stack(
                [
                    torch.tensor(float(chosen.numel()), device=self.device),
                    (chosen > 0).sum().float(),
                    d_pos.sum(),
                    torch.tensor(float(b), device=self.device),
                    d_neg.gather(1, idx)[real].sum(),
                ]
            ).double()
        return loss, stats

    def _pair_video(self, query_rows: torch.Tensor) -> torch.Tensor:
        """(B',) video number of each pair (query rows are 2·pair)."""
        return self.video[query_rows.to(self.device) // 2]

    @torch.no_grad()
    def after_step(self, aux: Any, iteration: int) -> None:
        self._stats += aux

    # ------------------------------------------------------------------ reporting

    def labels(self) -> None:
        return None  # no clusters

    def epoch_metrics(self) -> dict[str, Any]:
        """Fraction of the chosen triplets that violate the margin (loss > 0), mean D(X, X⁺)
        over pairs and mean D(X, X⁻) over the chosen negatives, of this epoch."""
        if self.epoch == 0:
            return {"negatives": "random", "violating": None, "d_pos": None, "d_neg": None}
        stats = dist.gather_cat(self._stats[None]).sum(0) if dist.world() > 1 else self._stats
        triplets, violating, d_pos, pairs, d_neg = stats.tolist()
        return {
            "negatives": "hard" if self.hard_mining(self.epoch) else "random",
            "triplets": int(triplets),
            "violating": violating / triplets if triplets else None,
            "d_pos": d_pos / pairs if pairs else None,
            "d_neg": d_neg / triplets if triplets else None,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"pairs": torch.as_tensor(self.data.n)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_resumed_size(int(state["pairs"]), self.data.n, self.data.path, "pairs", "pairs store")
