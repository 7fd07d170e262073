"""Fidelity of ``--method triplet`` (Wang & Gupta) and ``--method moving-clusters``
(Hickson et al.) on ``vcl synth`` videos, whose moving objects carry appearance classes
(shape + texture + hue). Not a test: nothing is asserted; the numbers are printed.

- moving-clusters: NMI between the clusters it writes (``RUN/clusters.zarr``, k = number
  of classes) and the appearance classes of the object crops, against k-means (same k)
  on the pooled features of the same network at random initialisation (the run's own
  starting weights); also k-means on the trained backbone's features.
- triplet: kNN accuracy (cosine, k = 5, neighbours from *other tracks* only, so a
  track's own crops do not count) on the appearance classes of the object crops, with
  the backbone's pooled features (what ``vcl embed`` gives) after training and at
  random initialisation.

Data: ground-truth tracks of the synthetic videos (the moving objects; ``vcl proposals
--method motion`` + ``vcl track`` give the same objects on these clean videos, with
noisier boxes). Pairs: each track cut into segments of ``SEG`` frames, (first, last)
box of each segment (``vcl crops --pairs``), as KCF tracking for ``SEG`` frames would.

    python benchmarks/fidelity_triplet_moving.py            # ~20 min on 2 loaded CPU cores
    VCL_TM_EPOCHS=8 VCL_TM_SEEDS=0,1 python benchmarks/fidelity_triplet_moving.py
    VCL_TM_METHODS=moving-clusters VCL_TM_TAU=0.25 VCL_TM_LR=0.005 python benchmarks/...
    VCL_TM_METHODS=moving-clusters VCL_TM_OPTIONS='{"disc_weight": 0}' python benchmarks/...
    VCL_TM_VIDEOS=48 python benchmarks/fidelity_triplet_moving.py     # 4× the crops

Measured (ResNet-18 at 48 px, 240 crops of 30 tracks, 4 classes, 90 pairs, lr 0.015,
batch 16 object + 16 background crops; a loaded 2-core CPU). Besides the NMI of its
clusters after every epoch, each moving-clusters row has fresh k-means (same seed) on
what the network computes after every epoch, the head's embedding z (``emb``) and the
backbone's pooled features (``bb``): labels never reach training, they only say whether
a bad epoch is the units' fault or the representation's.

- 2026-11-24, ``--kappa-target assigned`` (now the default: L_κ pulls every augmented
  view of a crop to the unit its clean crop was assigned after the last epoch), one torch
  thread, 4 epochs, seeds 0..5, everything else as below: NMI of the clusters 0.984 /
  0.955 / 0.985 / 1.000 / 0.892 / 0.958 (mean 0.962) against the criterion's 0.823 /
  0.863 / 0.775 / 0.985 / 0.803 / 0.958 (mean 0.868): better on 5 of 6, equal on seed 5
  (0.9577 against 0.9580). Per epoch 0..4 (bb: k-means on the trained backbone):

  seed 0: [0.568, 0.984, 0.864, 0.937, 0.984]  bb [0.708, 0.948, 1.000, 0.984, 1.000]
  seed 1: [0.342, 0.913, 0.903, 0.955, 0.955]  bb [0.744, 0.783, 0.744, 0.964, 0.964]
  seed 2: [0.396, 0.826, 0.933, 0.902, 0.985]  bb [0.502, 0.857, 0.644, 0.974, 0.947]
  seed 3: [0.442, 0.836, 0.885, 0.984, 1.000]  bb [0.721, 0.865, 0.860, 0.860, 0.860]
  seed 4: [0.241, 0.798, 0.857, 0.895, 0.892]  bb [0.339, 0.750, 0.746, 0.736, 0.895]
  seed 5: [0.351, 0.958, 0.974, 0.985, 0.958]  bb [0.851, 0.804, 0.755, 0.731, 0.728]

  The clusters climb and stay within a few hundredths from epoch 2 on (smallest
  cluster 45-56 crops of 240 after epoch 1), where the soft L_κ below swung by 0.3. A
  first run of the same change (as a patch, equal but for float rounding) gave 0.974 /
  0.984 / 0.905 / 0.835 / 0.868 on seeds 0..4 (better on 4 of 5; seed 3 peaked at 1.0
  after epoch 3). 6 epochs (the script's default): 0.843 / 0.948 / 0.985 / 0.985 /
  0.906 / 0.985 (mean 0.942; better on 5 of 6, seed 3 equal: 0.9845 against 0.9847);
  seed 0 reached 1.0 after epoch 5 and fell to 0.843 after epoch 6 (smallest cluster
  56 -> 46 crops), the others stay within 0.02 from epoch 4 on.
- 2026-11-23, one torch thread (``VCL_TM_THREADS``, default 1), 4 epochs, seeds 0..5,
  ``--kappa-target soft`` (the formulation of the time).
  NMI of the clusters; k-means on random-init features (the criterion) is 0.823 / 0.863 /
  0.775 / 0.985 / 0.803 / 0.958:

  units refined by Lloyd from the learned units only (``{"refine_restarts": 0}``, the
  previous method): 0.880 / 0.631 / 0.440 / 0.825 / 0.462 / 0.815 (better on 1 of 6);
  after epoch 1: 0.717 / 0.514 / 0.511 / 0.717 / 0.690 / 0.790, while k-means on the
  same embedding gave 0.905 / 0.687 / 0.655 / 0.661 / 0.662 / 0.808: on seeds 0..2 the
  batch M-step stopped in a local optimum next to the learned units, 0.14–0.19 below.

  best of Lloyd from the units and 4 k-means++ restarts, matched to the units (the
  method now): after epoch 1: 0.891 / 0.739 / 0.704 / 0.700 / 0.866 / 0.790 (at or above
  k-means on the same embedding on 4 of 6, within 0.02 on 2); after epoch 4: 0.252 /
  0.611 / 0.598 / 0.933 / 0.553 / 0.777 (better than the criterion on 0 of 6). Per epoch
  0..4:

  seed 0: [0.568, 0.891, 0.859, 0.928, 0.252]  emb [.., 0.905, 0.888, 0.928, 0.474]
          bb [0.708, 1.000, 0.799, 0.829, 0.707]   (smallest cluster 7 crops after ep 4)
  seed 1: [0.342, 0.739, 0.590, 0.562, 0.611]  bb [0.744, 0.735, 0.969, 0.887, 0.955]
  seed 2: [0.396, 0.704, 0.592, 0.628, 0.598]  bb [0.502, 0.842, 0.694, 0.824, 0.697]
  seed 3: [0.442, 0.700, 0.896, 0.764, 0.933]  bb [0.721, 0.948, 0.938, 0.958, 0.742]
  seed 4: [0.241, 0.866, 0.761, 0.721, 0.553]  bb [0.339, 0.895, 0.858, 0.571, 0.663]
  seed 5: [0.351, 0.790, 0.857, 0.705, 0.777]  bb [0.851, 0.893, 0.827, 0.887, 1.000]

  6 epochs (the script's default), seeds 0..2: 0.390 / 0.501 / 0.540 now, 0.695 / 0.414
  / 0.430 without the restarts (and 0.741 / 0.524 / 0.513 with a first version of the
  restarts that differed only in float rounding: the runs are chaotic). Better than the
  criterion on none.

- What is left is the representation, not the units: the clusters rise and fall with
  k-means on the same embedding (``emb``), and the backbone's own k-means NMI jumps by
  up to 0.3 in either direction within one epoch of 15 SGD steps (seed 0: 1.0 after
  epoch 1, 0.71 after epoch 4, when one cluster shrank to 7 crops). Variations, seeds
  0..5, 4 epochs (restarts on; * = the first version of the restarts, equal but for
  float rounding): ``VCL_TM_LR=0.005``*: 0.864 / 0.728 / 0.728 / 0.743 / 0.747 / 0.929
  (1 of 6; the trained backbone's k-means 0.938 / 0.923 / 0.922 / 0.748 /
  0.840 / 0.964, better than the criterion on 4 of 6); ``VCL_TM_LR=0.00375`` (0.015 scaled
  linearly from batch 128 to the 32 crops of a step): 0.958 / 0.596 / 0.836 / 0.848 /
  0.586 / 0.752 (2 of 6); lr 0.005 with ``{"disc_weight": 0}``*: 0.602 / 0.792 / 0.673 /
  0.732 / 0.663 / 0.937 (1 of 6; the discriminator is not what holds it back). Seeds
  0..2 only, lr 0.015*: ``{"disc_weight": 0}`` 0.763 / 0.538 / 0.865; ``{"balance_weight":
  0}`` 0.797 / 0.444 / 0.588 (uneven clusters: the balance term helps); lr 0.0019*: 0.784 /
  0.557 / 0.658. The criterion is met on no setting reliably: k-means on random-init
  features is strong here (0.78–0.99: the classes differ in hue), and the network starts
  far below it (epoch 0: 0.24–0.57 on z, 0.34–0.85 on the BatchNorm-calibrated backbone).
- 2026-11-23 (later), 4 epochs, seeds 0..5, restarts on: with 48 videos instead of 12
  (``VCL_TM_VIDEOS=48``: 960 crops, 60 steps an epoch) the clusters reach 0.345 / 0.522 /
  0.429 / 0.764 / 0.627 / 0.674 against 0.737 / 0.885 / 0.970 / 0.721 / 0.869 / 0.715 for
  k-means on random-init features (1 of 6): more data and steps do not help, the
  clusters fall as low as 0.16 within a run. An lr decayed by a cosine over the run
  (tried in the training loop, not kept) gave 0.711 / 0.569 / 0.823 / 0.922 / 0.539 /
  0.969 on the 12 videos (2 of 6); a linear head (FC 512 → D, no BN or ReLU; tried,
  not kept) 0.785 / 0.525 / 0.985 / 0.657 / 0.466 / 0.584 (1 of 6). Its epoch-0
  clusters are already below the criterion (0.25–0.73): the BatchNorm statistics the
  method calibrates on its own crops standardise every channel, which the criterion's
  network (default statistics) does not, and hue dominates the raw features. With the
  linear head and the backbone's BatchNorm frozen at its default statistics (no
  calibration; tried, not kept) epoch 0 starts at 0.76–0.94, but training still pulls
  it down: 0.909 / 0.802 / 0.879 / 0.755 / 0.955 / 0.360 at lr 0.015 (3 of 6), 0.929 /
  0.808 / 0.857 / 0.921 / 0.820 / 0.847 at lr 0.003 (3 of 6, mean 0.864 against the
  criterion's 0.868): a tie, not a win; 12 epochs at lr 0.003: 0.949 / 0.839 / 0.730 /
  0.873 / 0.720 / 0.937 (1 of 6), the clusters wander by ±0.1 from epoch to epoch.
- Earlier (2 torch threads, before the restarts), 4 epochs: 0.958 / 0.753 / 0.974 vs
  0.823 / 0.863 / 0.775 (2 of 3); 6 epochs 0.521 / 0.751 / 0.817 (1 of 3).
- before the refinement (issue #10 diagnosis, seed 0): the units' clusters lost to
  k-means: 0.354 after 6 epochs (first formulation), 0.553 with sizes [130, 1, 107, 2]
  after one epoch of the BatchNorm-calibrated, soft-L_κ version, while k-means on the
  *same* eval-mode embedding gave 0.833 and 20 Lloyd iterations from the learned units
  reached 0.833 too. The units had hardly moved: a unit's gradient is a pull of weight
  s_j ≈ 1/k, so at the network's learning rate the units stay at their init while the
  embedding moves. Raising only the units' learning rate (×20, τ fixed at 0.1 on d) made
  q uniform (confidence 0.28 at k = 4) and the units and embedding collapse together (NMI
  0.05); adding a final BatchNorm on z (so it cannot collapse) kept q confident (0.82)
  but lost the classes (0.354 after 2 epochs). The 1/(τσ_i) ≈ 200 of the first
  diagnosis was the uncalibrated embedding's narrow cone; with the calibration σ_i ≈ 0.2
  and 1/(τσ_i) ≈ 10.
- triplet, lr 0.015, hard negatives after epoch 3: kNN accuracy 0.975 trained vs 0.963
  random init (loss 0.495 ≈ M, 100 % violating triplets: 36 SGD steps are far too few).
  Again 2026-11-24 (6 epochs, hard negatives after epoch 3, seeds 0 / 1): 0.988 / 0.996
  trained vs 0.963 / 0.979 random init (loss 0.494 / 0.489, still 100 % violating).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VIDEOS = int(os.environ.get("VCL_TM_VIDEOS", "12"))
FRAMES, WIDTH, HEIGHT, CLASSES = 40, 96, 72, 4
SEG, PER_TRACK, SIZE, BATCH = 10, 8, 48, 16
ARCH = "resnet18"
LR = float(os.environ.get("VCL_TM_LR", "0.015"))  # the common --lr default


def vcl(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "vcl", *map(str, args), "-q"], check=True)


def make_data(root: Path) -> tuple[Path, Path, Path, dict[str, str]]:
    """(crops, pairs, videos manifest, {track_id: class})."""
    vcl("synth", root / "synth", "--videos", VIDEOS, "--frames", FRAMES, "--width", WIDTH,
        "--height", HEIGHT, "--classes", CLASSES, "--min-objects", 2,
        "--max-objects", 3)  # fmt: skip
    videos, gt = root / "synth" / "videos.jsonl", root / "synth" / "gt_tracks.jsonl"
    tracks = [json.loads(line) for line in gt.read_text().splitlines()]
    label = {t["id"]: t["label"] for t in tracks}
    segments = []
    for t in tracks:
        for s in range(0, len(t["frames"]) - SEG, SEG):
            seg = {**t, "id": f"{t['id']}_s{s // SEG}", "frames": t["frames"][s : s + SEG + 1],
                   "boxes": t["boxes"][s : s + SEG + 1]}  # fmt: skip
            seg.pop("visible", None)
            segments.append(seg)
    (root / "segments.jsonl").write_text("".join(json.dumps(s) + "\n" for s in segments))
    vcl("crops", gt, "--videos", videos, "-o", root / "crops.zarr", "--per-track", PER_TRACK,
        "--size", SIZE)  # fmt: skip
    vcl("crops", root / "segments.jsonl", "--videos", videos, "-o", root / "pairs.zarr",
        "--pairs", "--size", SIZE)  # fmt: skip
    return root / "crops.zarr", root / "pairs.zarr", videos, label


def pooled_features(model, images: np.ndarray) -> np.ndarray:
    """(N, D) backbone pooled features of uint8 crops (N, S, S, 3), eval mode."""
    import torch

    from vcl.pretrain.data import plain

    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(images), 64):
            x = plain(torch.from_numpy(images[s : s + 64]), SIZE)
            out.append(model(x).numpy())
    return np.concatenate(out)


def random_init(seed: int):
    """The network a run with this seed starts from (the loop seeds, then builds)."""
    from vcl.backbones import build_backbone
    from vcl.seed import seed_everything

    seed_everything(seed)
    return build_backbone(ARCH)


def knn_accuracy(x: np.ndarray, labels: np.ndarray, tracks: np.ndarray, k: int = 5) -> float:
    """Leave-one-track-out cosine kNN accuracy (majority vote of the k nearest crops of
    other tracks)."""
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    sim[tracks[:, None] == tracks[None, :]] = -np.inf
    nn = np.argsort(-sim, axis=1)[:, :k]
    codes, y = np.unique(labels, return_inverse=True)
    votes = np.stack([np.bincount(row, minlength=len(codes)) for row in y[nn]])
    return float((votes.argmax(1) == y).mean())


def kmeans_nmi(x: np.ndarray, labels: np.ndarray, seed: int) -> float:
    from vcl.cluster import kmeans
    from vcl.cluster_metrics import nmi

    res = kmeans(x.astype(np.float32), CLASSES, seed=seed, spherical=True)
    return nmi(labels, res.labels[0])


def train(method: str, data: Path, out: Path, seed: int, epochs: int, **options) -> float:
    from vcl.pretrain import method_class
    from vcl.pretrain.loop import TrainConfig, train

    cls = method_class(method)
    defaults = {**getattr(cls, "defaults", {})}
    opts = cls.options_type(**{k: v for k, v in {**defaults, **options}.items()
                               if k in cls.options_type.__dataclass_fields__})  # fmt: skip
    config = TrainConfig(input=str(data), method=method, output=str(out), arch=ARCH,
                         epochs=epochs, batch_size=BATCH, size=SIZE, k=CLASSES, lr=LR,
                         weight_decay=defaults.get("weight_decay", 1e-5), device="cpu",
                         seed=seed, workers=0, options=opts)  # fmt: skip
    began = time.perf_counter()
    train(config, command="fidelity_triplet_moving")
    return time.perf_counter() - began


@contextlib.contextmanager
def trace_epochs(images: np.ndarray):
    """Record, every time moving-clusters embeds its object crops (after the init and after
    every epoch), the (N, D) embeddings z and the backbone's (N, F) pooled features."""
    from vcl.pretrain.moving import MovingClusters

    original = MovingClusters.embed_objects
    out: list[tuple[np.ndarray, np.ndarray]] = []

    def embed_objects(self, model, autocast):
        z = original(self, model, autocast)
        was_training = model.training
        feats = pooled_features(model.backbone, images)
        model.train(was_training)
        out.append((z.cpu().numpy(), feats))
        return z

    MovingClusters.embed_objects = embed_objects
    try:
        yield out
    finally:
        MovingClusters.embed_objects = original


def moving_row(
    root: Path, crops: Path, videos: Path, seed: int, epochs: int, tau: dict, base, labels
) -> dict:
    from vcl.backbones import load_backbone
    from vcl.cluster_metrics import nmi
    from vcl.io.labels import read_assignment
    from vcl.io.store import Store

    run = root / f"moving-{seed}"
    store = Store(crops, kind="crops")
    with trace_epochs(store["image"][:]) as trace:
        secs = train("moving-clusters", crops, run, seed, epochs, videos=[str(videos)], **tau)
    tracks = store["track_id"][:].astype(object).astype(str)
    by_id = {f"{t}@{f}": c for t, f, c in zip(tracks, store["frame"][:], labels, strict=True)}
    ids, assignment, _ = read_assignment(run / "clusters.zarr")
    truth = np.array([by_id[i] for i in ids])
    trained = pooled_features(load_backbone(run)[0], store["image"][:])
    row = {"seed": seed, "method": "moving-clusters", "lr": LR, "seconds": round(secs, 1), **tau}
    row["nmi_clusters"] = nmi(truth, assignment)
    row["nmi_by_epoch"] = [
        round(nmi(labels, np.load(run / f"labels_epoch_{e}.npy")), 3) for e in range(epochs + 1)
    ]
    # k-means (fresh, same seed) on what the network computes after each epoch: the head's
    # embedding z and the backbone's pooled features. Diagnostic only (labels never reach
    # training): tells whether a bad epoch is the units' fault or the representation's.
    row["nmi_kmeans_embedding_by_epoch"] = [round(kmeans_nmi(z, labels, seed), 3) for z, _ in trace]
    row["nmi_kmeans_backbone_by_epoch"] = [round(kmeans_nmi(f, labels, seed), 3) for _, f in trace]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for key in ("l_kappa", "l_c", "l_disc", "disc_accuracy", "confidence", "cluster_min"):
        row[f"{key}_by_epoch"] = [None if m.get(key) is None else round(m[key], 3) for m in lines]
    row["nmi_kmeans_random_init"] = kmeans_nmi(base, labels, seed)
    row["nmi_kmeans_trained_backbone"] = kmeans_nmi(trained, labels, seed)
    return row


def triplet_row(root: Path, pairs: Path, seed: int, epochs: int, base, labels, track_ids) -> dict:
    from vcl.backbones import load_backbone
    from vcl.io.store import Store

    run = root / f"triplet-{seed}"
    secs = train("triplet", pairs, run, seed, epochs, random_neg_epochs=max(1, epochs // 2))
    images = Store(root / "crops.zarr", kind="crops")["image"][:]
    trained = pooled_features(load_backbone(run)[0], images)
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    row = {"seed": seed, "method": "triplet", "lr": LR, "seconds": round(secs, 1)}
    row["knn_trained"] = knn_accuracy(trained, labels, track_ids)
    row["knn_random_init"] = knn_accuracy(base, labels, track_ids)
    keys = ("loss", "negatives", "violating", "d_pos", "d_neg")
    row["last_epoch"] = {k: last[k] for k in keys}
    return row


def main() -> None:
    import torch

    from vcl.io.store import Store

    epochs = int(os.environ.get("VCL_TM_EPOCHS", "6"))
    seeds = [int(s) for s in os.environ.get("VCL_TM_SEEDS", "0").split(",")]
    methods = os.environ.get("VCL_TM_METHODS", "moving-clusters,triplet").split(",")
    tau = (
        {"assign_temperature": float(os.environ["VCL_TM_TAU"])}
        if "VCL_TM_TAU" in os.environ
        else {}
    )
    tau |= json.loads(os.environ.get("VCL_TM_OPTIONS", "{}"))  # any method option
    # one thread by default: the machine is shared (VCL_TM_THREADS to change it)
    torch.set_num_threads(int(os.environ.get("VCL_TM_THREADS", "1")))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        crops, pairs, videos, label = make_data(root)
        store = Store(crops, kind="crops")
        images = store["image"][:]
        track_ids = store["track_id"][:].astype(object).astype(str)
        labels = np.array([label[t] for t in track_ids])
        n_pairs = Store(pairs, kind="crops").n_rows // 2
        print(f"{len(images)} object crops of {len(label)} tracks, {CLASSES} classes; "
              f"{n_pairs} pairs; {epochs} epochs", file=sys.stderr)  # fmt: skip
        for seed in seeds:
            base = pooled_features(random_init(seed), images)
            if "moving-clusters" in methods:
                rows.append(moving_row(root, crops, videos, seed, epochs, tau, base, labels))
                print(json.dumps(rows[-1]), file=sys.stderr)
            if "triplet" in methods:
                rows.append(triplet_row(root, pairs, seed, epochs, base, labels, track_ids))
                print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
