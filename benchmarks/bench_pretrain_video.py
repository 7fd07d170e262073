"""vcl pretrain (video family): is the clip loader fast enough to feed the training step?

Loader: the DataLoader of :mod:`vcl.pretrain.clips` decoding 16-frame clips, multi-scale
cropped to 112 px and flipped (Tokmakov et al.'s defaults), from the real videos in
``../shared/data`` (vtest.avi 768×576, tree.avi 320×240) and 8 ``vcl synth`` videos
(160×120), once in the training process (workers 0: one core) and with 2 worker
processes. Step: one ``video-ir`` iteration on the same clip shape (uint8 → normalised
input, r3d_18 forward, NCE loss against a 4,096-negative memory bank, backward, SGD
step, bank update), batch 4, on this machine's CPU. The ratio loader / step says how
many times faster clips arrive than the step consumes them (> 1: the loader is not the
bottleneck). Both run in this process, so the machine's load affects both alike. The
pre-decoded alternative (``vcl pretrain --frames-store``: every frame decoded once into
a zarr store at 128 px) is measured against decoding, and the time to write it printed.

    python benchmarks/run.py pretrain_video

Measured on the 2-core CPU machine while shared with other jobs (load average 8–20):
loader 2.7 clips/s decoding in-process, 4.9 with 2 workers, 58 from the frames store
(21.9× decoding; writing the store for the 10 videos, 1,247 frames, took 24 s); the
r3d_18 step 0.044 clips/s, so on this CPU the loader is 60–1,300× faster than the step.
Decoding cost grows with the clip's start (frames before it are decoded too: vtest's
795 frames at 768×576 dominate).

On a GPU (2026-11-23, one H100 machine, 16 cores, torch 2.11; ``VCL_BENCH_DEVICE=cuda
VCL_BENCH_BATCH=32 VCL_BENCH_LOADERS=8`` or 14; the real videos carried in with
``VCL_BENCH_DATA``): the r3d_18 video-ir step (fp32, batch 32) runs at 465–472 clips/s;
decoding feeds 14–19 clips/s in-process, 76 with 8 workers and 126 with 14 (0.16–0.27 of
the step: the loader IS the bottleneck), the frames store 167–210 in-process, 683 with 8
workers and 813 with 14 (1.5–1.7× the step: not the bottleneck). So on a GPU, train from
a frames store (``vcl pretrain --frames-store``) with several loader workers.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("VCL_BENCH_DATA", HERE.parent.parent / "shared" / "data"))
FRAMES, SIZE, N_BANK = 16, 112, 5000
# On a GPU machine: VCL_BENCH_DEVICE=cuda VCL_BENCH_BATCH=32 VCL_BENCH_LOADERS=8
DEVICE = os.environ.get("VCL_BENCH_DEVICE", "cpu")
BATCH = int(os.environ.get("VCL_BENCH_BATCH", "4"))
LOADERS = int(os.environ.get("VCL_BENCH_LOADERS", "2"))


def _videos(tmp: Path) -> list[str]:
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "vcl", "synth", str(tmp / "synth"), "--videos", "8", "-q"],
        check=True,
    )
    paths = sorted(str(p) for p in (tmp / "synth" / "videos").iterdir())
    paths += [str(SHARED / n) for n in ("vtest.avi", "tree.avi") if (SHARED / n).exists()]
    return paths


def _loader_rate(videos, workers: int, clips: int) -> float:
    from vcl.pretrain.clips import ClipParams, clip_loader, epoch_plans

    params = ClipParams(frames=FRAMES, size=SIZE)
    plans, epoch = [], 1
    while sum(len(p) for p in plans) < clips:
        plans += epoch_plans(videos, BATCH, params, 0, epoch)
        epoch += 1
    began, seen = time.perf_counter(), 0
    for batch, *_ in clip_loader(videos, plans, params, workers):
        seen += batch.shape[0] * batch.shape[1]
    return seen / (time.perf_counter() - began)


def _step_rate(steps: int = 2) -> float:
    import torch

    from vcl.backbones import build_backbone
    from vcl.pretrain.clips import VideoSet, draw_colour
    from vcl.pretrain.instance import VIDEO_COLOUR, VideoIR, VideoOptions
    from vcl.pretrain.loop import TrainConfig

    torch.manual_seed(0)
    ids = np.array([f"v{i}" for i in range(N_BANK)])
    data = VideoSet("-", ids, ["-"] * N_BANK, np.full(N_BANK, 100), None)
    config = TrainConfig(input="-", method="video-ir", output="-", arch="r3d_18", size=SIZE,
                         batch_size=BATCH, device=DEVICE, workers=0,
                         options=VideoOptions(frames=FRAMES))  # fmt: skip
    device = torch.device(DEVICE)
    method = VideoIR(config, data, device)
    model = method.build_model(build_backbone("r3d_18")).to(device)
    method.init_state(model, contextlib.nullcontext)
    opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    clips = torch.randint(0, 256, (BATCH, 1, FRAMES, SIZE, SIZE, 3), dtype=torch.uint8)
    colour = torch.from_numpy(draw_colour(VIDEO_COLOUR, np.random.default_rng(0), (BATCH, 1)))

    def step(i: int) -> None:
        idx = torch.randperm(N_BANK)[:BATCH]
        loss, aux = method.train_step(model, (clips, idx, colour), i, contextlib.nullcontext)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_step(aux, i)

    step(1)  # warm-up (allocations, log Z)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    sync()
    began = time.perf_counter()
    for i in range(steps):
        step(i + 2)
    sync()
    return steps * BATCH / (time.perf_counter() - began)


def run() -> list[dict]:
    from vcl.pretrain.clips import ClipParams, attach_frames, open_videos, write_frames

    with tempfile.TemporaryDirectory() as tmp:
        videos = open_videos(_videos(Path(tmp)), workers=2)
        step = _step_rate(2 if DEVICE == "cpu" else 20)
        one = _loader_rate(videos, 0, 24)
        two = _loader_rate(videos, LOADERS, 24 * LOADERS)
        params = ClipParams(frames=FRAMES, size=SIZE)
        began = time.perf_counter()
        write_frames(videos, Path(tmp) / "frames.zarr", params, workers=LOADERS)
        written = time.perf_counter() - began
        stored = attach_frames(videos, Path(tmp) / "frames.zarr", params)
        store_one = _loader_rate(stored, 0, 48)
        store_many = _loader_rate(stored, LOADERS, 48 * LOADERS)
    what = f"{FRAMES}×{SIZE}² clips/s: loader vs r3d_18 video-ir step (batch {BATCH}, {DEVICE})"
    print(
        f"frames store written in {written:.1f} s ({int(videos.frames.sum())} frames, "
        f"{LOADERS} workers); loader rates: decode {one:.2f} / {LOADERS} workers {two:.2f} / store "
        f"{store_one:.2f} / store in {LOADERS} workers {store_many:.2f} clips/s; step {step:.3f} "
        "clips/s",
        file=sys.stderr,
    )
    return [
        {"stage": "pretrain_video", "compared": f"{what}, decoding in-process",
         "ours": one, "reference": step, "unit": "clips/s", "higher_is_better": True},
        {"stage": "pretrain_video", "compared": f"{what}, decoding in {LOADERS} workers",
         "ours": two, "reference": step, "unit": "clips/s", "higher_is_better": True},
        {"stage": "pretrain_video", "compared": f"{what}, frames store in-process",
         "ours": store_one, "reference": step, "unit": "clips/s", "higher_is_better": True},
        {"stage": "pretrain_video", "compared": f"{what}, frames store in {LOADERS} workers",
         "ours": store_many, "reference": step, "unit": "clips/s", "higher_is_better": True},
        {"stage": "pretrain_video",
         "compared": "clip loader in-process: frames store vs decoding the videos",
         "ours": store_one, "reference": one, "unit": "clips/s", "higher_is_better": True},
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run():
        print(row)
