"""Supervised upper bound of ``fidelity_video.py``: can the 3D CNN learn the motion labels
of its synth videos at all, when it is *told* them?

Seed 001's claim (an IDT prior makes LA learn motion) can only show where a network
trained on the motion labels themselves beats chance: if supervised training cannot, no
self-supervised method will, and the data or the budget is what to change. This trains
r3d_18 (random init) + a linear layer with cross-entropy on the train split of the
manifest, with ``vcl pretrain``'s clips (multi-scale crop, flip, ``--frame-stride``),
and prints the loss and the accuracy of the centre clip on train and test videos.

    python benchmarks/fidelity_video_supervised.py MANIFEST [SIZE FRAMES STRIDE EPOCHS LR]
    python benchmarks/fidelity_video_supervised.py /tmp/fid/seed0/synth/videos.jsonl 32 8 4 12

Measured (2026-11-23, CPU, the 120 videos of ``fidelity_video.py`` seed 0: 84 train /
36 test, 4 motion classes, chance 0.25, batch 8): 32 px, 8 frames every 4th, lr 0.05,
12 epochs: loss 7.2 -> 1.45 (ln 4 = 1.39), train 0.28, test 0.28; 64 px, lr 0.01, 15
epochs (~50 s an epoch): loss 2.5 -> 1.44, train 0.31, test 0.31. Ten times the videos
(1,200 made the same way, 840 train; 32 px, 4 epochs = 600 steps, ~105 s an epoch):
lr 0.05 loss 2.83 -> 1.41, lr 0.01 2.14 -> 1.44, train and test 0.25-0.28. Told the
labels, the network stays at chance on its own training videos: a few hundred SGD
steps are far too few for r3d_18 from scratch, so the self-supervised comparison at this
budget cannot show the claim either way (see fidelity_video.py). Use this check first
when trying larger settings on a GPU (``VCL_SUP_DEVICE=cuda``).

Again 2026-11-24 (CPU, 120 videos made as ``fidelity_video.py`` makes them; 32 px, 8
frames every 4th), with a lower lr: 0.001, 16 epochs (176 steps): loss 1.46 -> 1.33,
train 0.23 -> 0.41, test 0.19-0.36 (chance): the network starts to memorise its training
videos but learns no motion that carries to new ones. The pipeline itself learns what
it can see: on videos whose appearance class follows the motion (``vcl synth`` without
``--independent``, so hue and shape give the label away), lr 0.001 reaches train 0.55 /
test 0.60 after 8 epochs (88 steps), while lr 0.01 jumps around chance (loss 1.5-3.2,
test 0.23-0.43 over 12 epochs): at batch 8 the lrs above are too high for this check.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def main(manifest: str, size: int, frames: int, stride: int, epochs: int, lr: float) -> None:
    from vcl.backbones import build_backbone
    from vcl.pretrain.clips import (
        ClipParams,
        centre_plan,
        epoch_plans,
        open_videos,
        read_plan,
        to_input,
    )

    device = torch.device(os.environ.get("VCL_SUP_DEVICE", "cpu"))
    torch.manual_seed(0)
    videos = open_videos(manifest, workers=1)
    lines = Path(manifest).read_text().splitlines()
    split = {r["id"]: r.get("split") for r in map(json.loads, filter(None, lines))}
    classes, y = np.unique(videos.labels, return_inverse=True)
    train = np.array([split[i] != "test" for i in videos.ids])
    params = ClipParams(frames=frames, size=size, stride=stride)
    net = build_backbone("r3d_18").to(device)
    head = nn.Linear(512, len(classes)).to(device)
    weights = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(weights, lr=lr, momentum=0.9, weight_decay=5e-4)
    labels = torch.from_numpy(y).to(device)

    def accuracy(rows: np.ndarray) -> float:
        net.eval()
        plan = centre_plan(videos.frames, rows, params)
        with torch.no_grad():
            x = to_input(torch.from_numpy(read_plan(videos, plan, params)).to(device))[:, 0]
            return float((head(net(x)).argmax(1).cpu().numpy() == y[rows]).mean())

    for epoch in range(epochs):
        net.train()
        began, losses = time.perf_counter(), []
        for plan in epoch_plans(videos, 8, params, 0, epoch):
            keep = torch.from_numpy(train[plan.videos]).to(device)
            if int(keep.sum()) < 2:
                continue
            x = to_input(torch.from_numpy(read_plan(videos, plan, params)).to(device))[:, 0]
            loss = nn.functional.cross_entropy(head(net(x[keep])), labels[plan.videos][keep])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        seen, unseen = np.flatnonzero(train), np.flatnonzero(~train)
        print(
            f"epoch {epoch} loss {np.mean(losses):.3f} train {accuracy(seen[:64]):.2f} "
            f"test {accuracy(unseen):.2f} ({time.perf_counter() - began:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    args = sys.argv[1:]
    defaults = ["32", "8", "4", "12", "0.05"]
    size, frames, stride, epochs, lr = (args[1:] + defaults[len(args) - 1 :])[:5]
    main(args[0], int(size), int(frames), int(stride), int(epochs), float(lr))
