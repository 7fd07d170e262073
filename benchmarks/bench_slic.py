"""vcl pretrain --method slic: is the clip loader (decoding, crops, the on-the-fly flow
view) ahead of the training step, and what does the flow view cost?

- loader alone: :func:`vcl.pretrain.slic.read_triplet_batch` in this process (one worker)
  on ``vcl synth`` videos (160×120, 64 frames) with the default flow probability 0.25,
  in clips per second (3 clips per anchor: x, x⁺, aug(x));
- training step alone: colour augmentation, forward of the 3B clips through r3d_18 +
  head, triplet + temporal loss, backward and SGD step, on clips already in memory;
- the loader without any flow view (p = 0), and the DIS flow against TV-L1 (the
  authors' flow) per frame at 112 px.

On a GPU the step gets much faster while the loader does not: divide the loader rate
by ``--workers`` processes' worth of cores to see how many workers a GPU needs.

    python benchmarks/run.py slic

Measured on the 2-core CPU machine under load from other jobs (2 runs): loader 24.1 /
27.5 clips/s in one process vs training step 0.30 / 0.29 clips/s (×78 / ×95: on the CPU
the step is the bottleneck by far); flow view p = 0.25 costs 0-13 % of the loader's rate
at 64 px; DIS (medium) 1.4 ms vs TV-L1 1,620 ms a 112-px frame pair (~1,100× faster).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FRAMES, SIZE, ANCHORS, REPEAT, LOADER_REPEAT = 8, 64, 4, 3, 8


def _videos(root: Path) -> Path:
    args = [sys.executable, "-m", "vcl", "synth", str(root / "s"), "--videos", "8",
            "--frames", "64", "--width", "160", "--height", "120", "-q"]  # fmt: skip
    subprocess.run(args, check=True)
    return root / "s" / "videos.jsonl"


def _loader_rate(data: Any, params: Any, opts: Any, rng: np.random.Generator) -> float:
    from vcl.pretrain.slic import plan_triplet_batch, read_triplet_batch

    clusters = np.arange(data.n) % 2
    plans = [
        plan_triplet_batch(
            data.frames, rng.permutation(data.n)[:ANCHORS], clusters, params, opts, rng
        )
        for _ in range(LOADER_REPEAT)
    ]
    began = time.perf_counter()
    for plan in plans:
        read_triplet_batch(data, plan, params, opts.flow)
    return 3 * ANCHORS * LOADER_REPEAT / (time.perf_counter() - began)


def run() -> list[dict]:
    import cv2
    import torch

    from vcl.backbones import build_backbone
    from vcl.pretrain.clips import ClipParams, open_videos
    from vcl.pretrain.loop import TrainConfig
    from vcl.pretrain.slic import (
        SLICMethod,
        SLICOptions,
        _flow_pair,
        plan_triplet_batch,
        read_triplet_batch,
    )

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = open_videos(str(_videos(Path(tmp))))
        params = ClipParams(frames=FRAMES, size=SIZE)
        rng = np.random.default_rng(0)
        with_flow = _loader_rate(data, params, SLICOptions(frames=FRAMES), rng)
        no_flow = _loader_rate(data, params, SLICOptions(frames=FRAMES, flow_prob=0.0), rng)

        opts = SLICOptions(frames=FRAMES)
        config = TrainConfig(input="-", method="slic", output="-", arch="r3d_18", size=SIZE,
                             batch_size=ANCHORS, device="cpu", workers=0, options=opts)  # fmt: skip
        device = torch.device("cpu")
        method = SLICMethod(config, data, device)
        torch.manual_seed(0)
        model = method.build_model(build_backbone("r3d_18"))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
        plan = plan_triplet_batch(data.frames, np.arange(ANCHORS), np.arange(data.n) % 2,
                                  params, opts, rng)  # fmt: skip
        clips = torch.from_numpy(read_triplet_batch(data, plan, params, "dis"))
        batch = (clips, torch.from_numpy(plan.anchors), torch.from_numpy(plan.flow))
        method.clusters = np.arange(data.n) % 2
        times = []
        for it in range(REPEAT + 1):
            began = time.perf_counter()
            loss, _ = method.train_step(model, batch, it + 1, _Null)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - began)
        step = 3 * ANCHORS / float(np.median(times[1:]))

        frame = read_triplet_batch(data, plan, ClipParams(frames=2, size=112), "dis")[0, 0]
        grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frame]
        cost = {}
        for name in ("dis", "tvl1"):
            began = time.perf_counter()
            for _ in range(3):
                _flow_pair(grey[0], grey[1], name)
            cost[name] = (time.perf_counter() - began) / 3 * 1000
    shape = f"{FRAMES}×{SIZE}² clips, {ANCHORS} anchors"
    rows.append({"stage": "pretrain slic", "compared": f"loader vs train step (CPU, {shape})",
                 "ours": with_flow, "reference": step, "unit": "clips/s"})  # fmt: skip
    rows.append({"stage": "pretrain slic", "compared": "loader with flow p=0.25 vs no flow",
                 "ours": with_flow, "reference": no_flow, "unit": "clips/s"})  # fmt: skip
    rows.append({"stage": "pretrain slic", "compared": "DIS (medium) vs TV-L1 flow, 112 px",
                 "ours": cost["dis"], "reference": cost["tvl1"], "unit": "ms/frame",
                 "higher_is_better": False})  # fmt: skip
    return rows


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    for row in run():
        print(row)
