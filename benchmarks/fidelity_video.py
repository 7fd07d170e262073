"""Fidelity of seed 001 §3.3 in miniature: does an IDT prior help Local Aggregation?

Tokmakov et al. report that LA whose clusters come from IDT Fisher vectors learns
motion better than plain LA. Here: ``vcl synth --independent`` videos, whose label is
the motion pattern (linear, circular, zigzag, bouncing) while the objects' appearance
class is drawn independently of it, so appearance alone cannot predict the label.
Pipeline, every step a ``vcl`` command run as a subprocess (as a user would):

    vcl synth DATA --independent ...            # labels = motion, appearance random
    vcl idt DATA/videos.jsonl -o idt.zarr --flow farneback --no-humans
    vcl fisher fit idt.zarr -o fisher_model.zarr --k 16
    vcl fisher encode idt.zarr --model fisher_model.zarr -o fisher.zarr
    vcl pretrain DATA/videos.jsonl --method video-la     -o runs/la     (same budget)
    vcl pretrain DATA/videos.jsonl --method video-la-idt --prior fisher.zarr -o runs/la-idt
    vcl embed RUN DATA/videos.jsonl -o feats.zarr; vcl probe knn (train/test split of synth)

Both runs use the same seed, clips, epochs, lr and K; the figure is kNN top-1 (k 5,
cosine, backbone ``pool`` features averaged over 4 clips) on the motion labels: on the
36-video test split (``vcl probe knn``, what a user runs) and leave-one-out over all
120 videos (more stable: one test video is 0.028 of accuracy, one LOO video 0.008).
The Fisher vectors themselves and a random r3d_18 go through the same evaluation.
Diagnostics printed with them: the fraction of each video's close neighbours C_i
(same cluster in any of the 3 k-means of the prior: video-la-idt's fixed targets)
that share its motion label (chance ≈ 0.24), and the leave-one-out kNN of each run's
memory bank (its 128-d training embeddings) on the prior's cluster ids (does
video-la-idt fit its targets?) and on the motion labels.

Settings for a small-data CPU budget, the same for both methods: 15 epochs of 15 steps,
batch 8, lr 0.03 (the LA default), 8-frame 32-px clips (r3d_18's last map is then
1×2×2: fine), one torch thread (on the shared 2-core machine a training step of 8 clips
took 2.2 s with 1 thread and 4.9 s with 2), K = 30 = N/4. K matters: the paper
clusters Kinetics into 6,000 clusters, 15 per class; with K = 8 (2 per class) the
prior's clusters are coarse and only 0.38 of C_i share the video's motion (chance
0.24), at K = 30 0.61 (measured with seed 0; K 16: 0.47, K 48: 0.66).

Measured (2026-11-23, 2-core CPU shared with 4 other engineers, load 7-11; one run of
15 epochs took 11-14 min at 2.3-3 clips/s). kNN top-1, test split / leave-one-out,
chance 0.25 (one test video is 0.028, the test-split SD at chance ≈ 0.07):

=============================================  =============  =============
figure                                         seed 0         seed 1
=============================================  =============  =============
Fisher-vector prior (no training)              0.86 / 0.83    0.92 / 0.88
random r3d_18                                  0.28 / 0.26    0.19 / 0.23
video-la                                       0.19 / 0.22    0.28 / 0.33
video-la-idt                                   0.25 / 0.27    0.25 / 0.28
C_i sharing the video's motion: prior / LA     0.61 / 0.22    0.51 / 0.23
loss epoch 1 → 15: video-la                    2.13 → 1.96    2.13 → 2.02
loss epoch 1 → 15: video-la-idt                2.60 → 2.35    2.53 → 2.45
bank kNN on prior cluster ids: la / la-idt     0.05 / 0.03    0.04 / 0.03
=============================================  =============  =============

(C_i chance 0.24; prior cluster ids chance 0.033.) Reading: the prior carries the motion
labels and video-la-idt's targets do (0.51-0.61 of C_i share the motion, LA's own
0.22-0.23), but neither method moved the network's kNN off chance: this budget cannot
show seed 001's claim either way. The old "below chance" (40 videos, K 8, 10 epochs of
5 steps: 0.17 = 2 of 12 test videos, chance 3 of 12) is noise on 12 test videos, not a
bug; uninformative features can also read below chance with leave-one-out at large k
(k 20: 0.11 for video-la-idt, seed 1: the query's own class has one video fewer). The
checks made: ``vcl probe knn`` (test split, ``pool`` features, cosine on L2-normalised
rows, labels joined by id) agrees with an independent leave-one-out kNN, and the same
code gives the prior 0.86-0.92 and a random r3d_18 0.19-0.28; clips are consecutive
frames with one crop and flip for the whole clip (``tests/test_pretrain_video.py``); the
prior is joined to the videos by id in any store order and its k-means clusters are the
fixed targets (``tests/test_pretrain_video_prior.py``); r3d_18's maps at 8×32×32 are
8×16² (stem) ... 1×2² (layer4). video-la-idt follows its targets only slowly: its loss
crosses the uniform level −log(|C_i|/N) ≈ 2.42 at epoch 5 (seed 0) and flattens, and
its memory bank does not yet separate the prior's clusters. What the network learns
first is instance discrimination: after 15 epochs (seed 0) two random clips of one
video have cosine 0.997, clips of two videos 0.78, and a clip's d scores its own bank
row 0.97, its prior cluster-mates 0.84, the other videos 0.80: C_i contains i itself
(eq. 3, as in LA's code), so matching one's own bank row lowers the loss before motion
does. Reading the claim needs many more steps than a shared CPU gives (the paper starts
LA from 40 epochs of IR on Kinetics): on a GPU, e.g. ``VCL_FID_EPOCHS=200
VCL_FID_SEEDS=0,1,2``.

On a GPU (2026-11-23, one H100 machine, 16 cores; ``VCL_FID_DEVICE=cuda
VCL_FID_LOADERS=6 VCL_FID_PARALLEL=1 VCL_FID_WORKERS=16 VCL_FID_THREADS=4``, seed 0, the
settings above otherwise; both methods trained at once, ~1 s an epoch each at ~120
clips/s, the clip loader decoding):

=============================================  =============  =============
figure (test split / leave-one-out)            60 epochs      200 epochs
=============================================  =============  =============
random r3d_18                                  0.28 / 0.26    0.28 / 0.26
video-la                                       0.25 / 0.36    0.36 / 0.30
video-la-idt                                   0.33 / 0.25    0.25 / 0.20
loss first → last: video-la                    2.06 → 1.63    2.06 → 0.99
loss first → last: video-la-idt                2.59 → 2.31    2.59 → 2.17
bank kNN on prior cluster ids: la / la-idt     0.03 / 0.03    0.03 / 0.05
=============================================  =============  =============

(Fisher-vector prior 0.86 / 0.83; 0.61 of its C_i share the motion.) 3,000 SGD steps do
not change the reading: video-la's loss keeps falling (its own clusters, instance
discrimination first), video-la-idt's plateaus just under the uniform level and its
memory bank still does not separate the prior's clusters, so neither learns the motion
labels and seed 001's claim is not reproduced at this scale. The training does fit fixed
targets it can see: with a random r3d_18's pooled features as the "prior" (clusters of
appearance; 40 videos, K 8, 8 CPU epochs) the loss falls 1.88 → 1.00 and a video's
nearest bank row shares its prior cluster 0.33–0.43 of the time (chance 0.15). So what
fails is seeing the motion at 32 px × 8 frames, where the objects are 5–8 px; the next
things to try are larger clips and starting from IR, as the paper does.

Clips of every 4th frame (``VCL_FID_STRIDE=4``: 8 frames spanning 29 of a video's 32,
so a clip sees the whole motion pattern, as the Fisher vector does; 2026-11-23, CPU,
seed 0, 15 epochs, 5 min a run): random r3d_18 0.25 / 0.26, video-la 0.25 / 0.26,
video-la-idt 0.19 / 0.16 (loss 2.59 -> 2.39, still at the uniform level; bank kNN on
the prior's cluster ids 0.025, chance 0.033). A longer span alone does not let this
budget fit the prior's targets either. Nor can supervision: r3d_18 trained on the motion
labels themselves (``fidelity_video_supervised.py``, 32 and 64 px) stays at chance on its
own 84 training videos, so this data and budget cannot show the claim for any method;
reading it needs far more videos and steps (a GPU).

    python benchmarks/fidelity_video.py [WORK_DIR]
    VCL_FID_SEEDS=0,1 VCL_FID_EPOCHS=15 python benchmarks/fidelity_video.py /tmp/fid

Results are printed as one JSON object on stdout (and written to WORK_DIR/fidelity.json):
one row per seed and the median over seeds of each figure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VIDEOS = int(os.environ.get("VCL_FID_VIDEOS", "120"))
EPOCHS = int(os.environ.get("VCL_FID_EPOCHS", "15"))
SIZE = int(os.environ.get("VCL_FID_SIZE", "32"))
FRAMES = int(os.environ.get("VCL_FID_FRAMES", "8"))
STRIDE = int(os.environ.get("VCL_FID_STRIDE", "1"))  # --frame-stride of pretrain and embed
K = int(os.environ.get("VCL_FID_K", "30"))
LR = float(os.environ.get("VCL_FID_LR", "0.03"))
BATCH = int(os.environ.get("VCL_FID_BATCH", "8"))
WORKERS = os.environ.get("VCL_FID_WORKERS", "2")  # synth / idt processes
THREADS = os.environ.get("VCL_FID_THREADS", "1")  # torch threads of pretrain / embed
SEEDS = [int(s) for s in os.environ.get("VCL_FID_SEEDS", "0").split(",")]
FLOW = os.environ.get("VCL_FID_FLOW", "farneback")  # dis loses the objects (fidelity_prior)
DEVICE = os.environ.get("VCL_FID_DEVICE", "cpu")  # of pretrain / embed: cpu, cuda, auto
LOADERS = os.environ.get("VCL_FID_LOADERS", "1")  # pretrain's data loader workers
PARALLEL = os.environ.get("VCL_FID_PARALLEL", "0") == "1"  # train both methods at once (GPU)
METHODS = ("video-la", "video-la-idt")


def vcl_started(*args: object) -> subprocess.Popen:
    """One vcl command started in the background (its stdout discarded)."""
    print("$ vcl " + " ".join(map(str, args)) + " &", file=sys.stderr, flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": THREADS}
    cmd = [sys.executable, "-m", "vcl", *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env)


def vcl(*args: object) -> str:
    """Run one vcl command; its stdout (data) is returned, stderr passed through."""
    cmd = [sys.executable, "-m", "vcl", *map(str, args)]
    print("$ vcl " + " ".join(map(str, args)), file=sys.stderr, flush=True)
    began = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": THREADS}
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True, env=env).stdout
    print(f"  ({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
    return out


def knn_top1(features: Path, labels: Path) -> float:
    """``vcl probe knn`` on the synth train/test split: what a user would run."""
    args = ["--train", features, "--labels", labels, "--split-field", "split", "--k", 5, "-q"]
    report = json.loads(vcl("probe", "knn", *args))
    return float(report["layers"][0]["metrics"]["top1"])


def loo_knn(x: np.ndarray, y: np.ndarray, k: int = 5, tau: float = 0.07) -> float:
    """Leave-one-out kNN top-1 of (N, D) features: cosine, the k nearest other rows vote
    with weight exp(s/τ), as ``vcl probe knn`` (Wu et al. eq. 8)."""
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    nbrs = np.argsort(-s, axis=1, kind="stable")[:, :k]
    weights = np.exp(np.take_along_axis(s, nbrs, 1) / tau)
    votes = np.zeros((len(x), int(y.max()) + 1))
    np.add.at(votes, (np.repeat(np.arange(len(x)), k), y[nbrs].ravel()), weights.ravel())
    return float((votes.argmax(1) == y).mean())


def features_by_id(path: Path, ids: np.ndarray) -> np.ndarray:
    from vcl.io.features import read_feature_set

    fs = read_feature_set(path)
    row = {str(i): r for r, i in enumerate(fs.ids)}
    return fs.features[[row[str(i)] for i in ids]].astype(np.float32)


def prepare(work: Path, seed: int) -> Path:
    """Synth videos, IDT and Fisher vectors of one seed (skipped when present)."""
    data = work / "synth"
    manifest = data / "videos.jsonl"
    if not manifest.exists():
        vcl("synth", data, "--videos", VIDEOS, "--frames", 32, "--width", 96, "--height", 72,
            "--independent", "--motions", 4, "--classes", 4, "--min-objects", 1,
            "--max-objects", 2, "--test-fraction", 0.3, "--seed", seed, "--workers", WORKERS,
            "-q")  # fmt: skip
    if not (work / "idt.zarr").exists():
        vcl("idt", manifest, "-o", work / "idt.zarr", "--flow", FLOW, "--no-humans",
            "--workers", WORKERS, "--seed", seed, "-q")  # fmt: skip
    if not (work / "fisher.zarr").exists():
        vcl("fisher", "fit", work / "idt.zarr", "-o", work / "fisher_model.zarr", "--k", 16,
            "--sample-videos", VIDEOS, "--per-video", 300, "--seed", seed, "-q")  # fmt: skip
        vcl("fisher", "encode", work / "idt.zarr", "--model", work / "fisher_model.zarr",
            "-o", work / "fisher.zarr", "--videos", manifest, "-q")  # fmt: skip
    return manifest


def trained(run: Path) -> bool:
    """A finished run of EPOCHS epochs (an interrupted or shorter one is redone)."""
    metrics = run / "metrics.jsonl"
    return metrics.exists() and len(metrics.read_text().splitlines()) == EPOCHS + 1


def one_seed(work: Path, seed: int) -> dict:
    import torch

    from vcl.pretrain.clips import open_videos

    manifest = prepare(work, seed)
    videos = open_videos(str(manifest), workers=1)  # the runs' video order (their banks')
    assert videos.labels is not None
    classes, y = np.unique(videos.labels, return_inverse=True)
    common = ["--epochs", EPOCHS, "--size", SIZE, "--frames", FRAMES, "--frame-stride", STRIDE,
              "--batch-size", BATCH,
              "--lr", LR, "--k", K, "--runs", 3, "--device", DEVICE, "--workers", LOADERS,
              "--seed", seed, "--overwrite", "-q"]  # fmt: skip
    row: dict = {"seed": seed, "chance": 1 / len(classes)}
    models = {"random": "random:r3d_18", **{m: work / "runs" / m for m in METHODS}}

    def train(name: str) -> list:
        prior = ["--prior", work / "fisher.zarr"] if name == "video-la-idt" else []
        shutil.rmtree(work / f"feats-{name}.zarr", ignore_errors=True)  # of an older run
        return ["pretrain", manifest, "--method", name, "-o", models[name], *prior, *common]

    if PARALLEL:
        started = [vcl_started(*train(m)) for m in METHODS if not trained(Path(models[m]))]
        if any(proc.wait() for proc in started):
            raise RuntimeError("a training run failed")
    banks = {}
    for name, model in models.items():
        feats = work / f"feats-{name}.zarr"
        if name != "random" and not trained(Path(model)):
            vcl(*train(name))
        if not feats.exists():
            vcl("embed", model, manifest, "-o", feats, "--size", SIZE, "--frames", FRAMES,
                "--frame-stride", STRIDE, "--clips", 4, "--device", DEVICE, "-q")  # fmt: skip
        row[f"{name}_knn_test"] = knn_top1(feats, manifest)
        row[f"{name}_knn_loo"] = loo_knn(features_by_id(feats, videos.ids), y)
        if name != "random":
            state = torch.load(Path(model) / "checkpoint.pt", map_location="cpu")
            banks[name] = state["method_state"]
            lines = (Path(model) / "metrics.jsonl").read_text().splitlines()
            first, last = json.loads(lines[1]), json.loads(lines[-1])
            row[f"{name}_loss_first_last"] = [first["loss"], last["loss"]]
            row[f"{name}_cluster_nmi"] = last.get("nmi")
    row["prior_knn_test"] = knn_top1(work / "fisher.zarr", manifest)
    row["prior_knn_loo"] = loo_knn(features_by_id(work / "fisher.zarr", videos.ids), y)
    prior = banks["video-la-idt"]["prior_labels"].numpy()  # (R, N) the fixed targets
    same = y[:, None] == y[None, :]
    row["chance_same_motion"] = float((same.sum() - len(y)) / (len(y) * (len(y) - 1)))
    clusterings = {"prior": prior, "video-la": banks["video-la"]["cluster_labels"].numpy()}
    for name, labels in clusterings.items():  # C_i: same cluster in any of the R runs
        close = (labels[:, :, None] == labels[:, None, :]).any(axis=0)
        np.fill_diagonal(close, False)
        row[f"{name}_close_size"] = float(close.sum(1).mean())
        row[f"{name}_close_same_motion"] = float((close & same).sum() / close.sum())
    for name, state in banks.items():
        bank = state["bank"].float().numpy()
        row[f"{name}_bank_knn_loo"] = loo_knn(bank, y)
        row[f"{name}_bank_knn_loo_prior_clusters"] = loo_knn(bank, prior[0])
    row["prior_clusters_chance"] = 1 / (prior[0].max() + 1)
    return row


def main(work: Path) -> dict:
    rows = []
    for seed in SEEDS:
        rows.append(one_seed(work / f"seed{seed}", seed))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    numeric = [k for k, v in rows[0].items() if isinstance(v, float)]
    results = {
        "videos": VIDEOS, "epochs": EPOCHS, "size": SIZE, "frames": FRAMES, "k": K, "lr": LR,
        "batch": BATCH, "flow": FLOW, "seeds": SEEDS, "rows": rows,
        "median": {k: float(np.median([r[k] for r in rows])) for k in numeric},
    }  # fmt: skip
    (work / "fidelity.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1:
        folder = Path(sys.argv[1])
        folder.mkdir(parents=True, exist_ok=True)
        print(json.dumps(main(folder), indent=2))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(main(Path(tmp)), indent=2))
