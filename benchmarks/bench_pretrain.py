"""vcl pretrain (image family): the cost of ODCT's memory bookkeeping, and the fidelity
experiment of Alfani et al. (Table II, Fig. 2–3) in miniature.

Speed: one ODCT iteration (augment, forward, weighted cross-entropy, backward, SGD step,
eq. 1 memory update with the Track Memory, eq. 2 reassignment, small-cluster rule; the
centroid recomputation every 10 iterations is amortised) against a plain supervised
step of the same network and batch (augment, forward, cross-entropy on fixed labels,
backward, SGD step). Both on the CPU here; the goal is ≤ 10 % extra on a GPU.

Fidelity: ODCT, ODC and ODC-TrackInit trained with the same seed and budget on crops of
``vcl synth`` ground-truth tracks; the mean intra-track entropy (nats) of the memory
labels after every epoch. The paper: ODCT 0.06 vs ODC 0.87 at the end; ODC-TrackInit
starts at 0 and drifts up. The curves are printed to stderr (and written to
``bench_pretrain_curves.json`` in the working folder when ``VCL_BENCH_KEEP`` is set).

    python benchmarks/run.py pretrain
    VCL_BENCH_FIDELITY_EPOCHS=12 python benchmarks/run.py pretrain

Measured on the 2-core CPU machine (shared with other jobs): ODCT iteration 201.9 ms vs
supervised step 200.4 ms (×1.007), bookkeeping alone 4.8 ms (2.4 %). Fidelity (300
crops of 30 tracks, 12 videos, resnet18 at 32 px, K 10, min-cluster 5, batch 32, paper's
lr / momentum, 12 epochs = 108 iterations, entropy in nats, epoch 0..12):
ODCT 0.00 0.79 1.18 1.04 1.07 1.11 1.16 1.10 1.16 1.25 1.04 1.17 0.96;
ODC 0.22 0.63 1.24 1.52 1.51 1.42 1.47 1.38 1.31 1.20 1.23 1.18 1.22;
ODC-TrackInit 0.00 0.82 1.30 1.45 1.58 1.60 1.58 1.55 1.47 1.48 1.48 1.48 1.40.
The ordering is the paper's (ODCT lowest, TrackInit from 0 drifting up), the levels are
far from its 0.06 / 0.87: this budget barely trains the network (loss 2.30 → 2.15).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ARCH, SIZE, BATCH, N, K, TRACK_LEN = "resnet18", 64, 32, 2000, 30, 10


def _speed() -> list[dict]:
    import torch

    from vcl.backbones import build_backbone
    from vcl.pretrain.data import AugmentParams, CropsInfo, augment
    from vcl.pretrain.loop import TrainConfig
    from vcl.pretrain.memories import ClusterMemory, TrackMemory, l2n
    from vcl.pretrain.odc import ODCT, ODCOptions

    torch.manual_seed(0)
    device = torch.device("cpu")
    ids = np.arange(N) // TRACK_LEN
    info = CropsInfo(Path("-"), N, SIZE, ids.astype(str), np.zeros(N, dtype=str))
    config = TrainConfig(input="-", method="odct", output="-", arch=ARCH, batch_size=BATCH,
                         size=SIZE, k=K, device="cpu", workers=0,
                         options=ODCOptions(min_cluster=20))  # fmt: skip
    method = ODCT(config, info, device)
    feats = l2n(torch.randn(N, 256))
    method.memory = ClusterMemory.create(
        feats, torch.randint(0, K, (N,)), K, TrackMemory.from_index(info.track_index)
    )
    method.weights = torch.full((K,), 1.0 / K)
    model = method.build_model(build_backbone(ARCH))
    opt = torch.optim.SGD(model.parameters(), lr=0.015, momentum=0.5)
    images = torch.randint(0, 256, (BATCH, SIZE, SIZE, 3), dtype=torch.uint8)
    targets = torch.randint(0, K, (BATCH,))
    g = torch.Generator().manual_seed(0)
    aug = AugmentParams(size=SIZE)
    null = lambda: __import__("contextlib").nullcontext()  # noqa: E731

    def odct_step(i: int) -> None:
        idx = torch.randperm(N)[:BATCH]
        loss, aux = method.train_step(model, (images, idx), i, null)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_step(aux, i)

    def plain_step(i: int) -> None:
        _, logits = model(augment(images, aug, g))
        loss = torch.nn.functional.cross_entropy(logits, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def timed(step, reps: int = 10) -> float:
        step(1)  # warm-up
        times = []
        for i in range(reps):
            t = time.perf_counter()
            step(i + 2)
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    # interleave to share the (noisy) machine state fairly
    odct, plain = [], []
    for _ in range(3):
        odct.append(timed(odct_step))
        plain.append(timed(plain_step))
    t_odct, t_plain = min(odct), min(plain)
    # the bookkeeping alone (memory update + reassignment + small clusters + reweight)
    z = torch.randn(BATCH, 256)
    t0 = time.perf_counter()
    for i in range(50):
        method.after_step((torch.randperm(N)[:BATCH], z), i + 1)
    t_book = (time.perf_counter() - t0) / 50
    what = f"{ARCH} {SIZE}px batch {BATCH}, N {N}, K {K}, CPU"
    return [
        {
            "stage": "pretrain",
            "compared": f"ODCT iteration vs supervised step, ms ({what})",
            "ours": t_odct * 1000,
            "reference": t_plain * 1000,
            "unit": "ms",
            "higher_is_better": False,
        },
        {
            "stage": "pretrain",
            "compared": "ODCT memory bookkeeping alone vs supervised step, ms",
            "ours": t_book * 1000,
            "reference": t_plain * 1000,
            "unit": "ms",
            "higher_is_better": False,
        },
    ]


def _synth_crops(root: Path) -> Path:
    from typer.testing import CliRunner

    from vcl.cli.app import app

    run = lambda *a: CliRunner().invoke(app, [str(x) for x in a])  # noqa: E731
    r = run("synth", root / "synth", "--videos", 12, "--frames", 40, "--width", 128,
            "--height", 96, "--classes", 4, "--min-objects", 2, "--max-objects", 3,
            "--independent", "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run("crops", root / "synth" / "gt_tracks.jsonl", "--videos",
            root / "synth" / "videos.jsonl", "-o", root / "crops.zarr", "--per-track", 10,
            "--size", 40, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    return root / "crops.zarr"


def _fidelity() -> list[dict]:
    from vcl.console import configure
    from vcl.pretrain.loop import TrainConfig, read_metrics, train
    from vcl.pretrain.odc import ODCOptions

    configure(quiet=True)
    epochs = int(os.environ.get("VCL_BENCH_FIDELITY_EPOCHS", "6"))
    curves: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        crops = _synth_crops(Path(tmp))
        for method in ("odct", "odc", "odc-trackinit"):
            config = TrainConfig(input=str(crops), method=method, output=f"{tmp}/{method}",
                                 arch="resnet18", epochs=epochs, batch_size=32, size=32, k=10,
                                 device="cpu", workers=0, seed=0,
                                 options=ODCOptions(min_cluster=5))  # fmt: skip
            train(config)
            curves[method] = [m["intra_track_entropy"] for m in read_metrics(Path(config.output))]
    for method, curve in curves.items():
        print(f"intra-track entropy {method:>14}: " + " ".join(f"{h:.3f}" for h in curve),
              file=sys.stderr)  # fmt: skip
    if os.environ.get("VCL_BENCH_KEEP"):
        Path("bench_pretrain_curves.json").write_text(json.dumps(curves, indent=1))
    what = f"final mean intra-track entropy after {epochs} epochs, nats"
    return [
        {
            "stage": "pretrain",
            "compared": f"ODCT vs ODC: {what}",
            "ours": curves["odct"][-1],
            "reference": curves["odc"][-1],
            "unit": "nats",
            "higher_is_better": False,
        },
        {
            "stage": "pretrain",
            "compared": f"ODC-TrackInit at init vs end: {what}",
            "ours": curves["odc-trackinit"][0],
            "reference": curves["odc-trackinit"][-1],
            "unit": "nats",
            "higher_is_better": False,
        },
    ]


def run() -> list[dict]:
    return _speed() + _fidelity()


if __name__ == "__main__":
    for row in run():
        print(row)
