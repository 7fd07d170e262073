"""Fidelity of seed 001 §3.3 in miniature: does an IDT prior help Local Aggregation?

Tokmakov et al. report that LA whose clusters come from IDT Fisher vectors learns
motion better than plain LA. Here: ``vcl synth --independent`` videos, whose label is
the motion pattern (linear, circular, zigzag, bouncing) while the objects' appearance
class is drawn independently of it, so appearance alone cannot predict the label.
Pipeline, every step a ``vcl`` command run as a subprocess (as a user would):

    vcl synth DATA --independent ...            # labels = motion, appearance random
    vcl idt DATA/videos.jsonl -o idt.zarr --flow dis
    vcl fisher fit idt.zarr -o fisher_model.zarr --k 16
    vcl fisher encode idt.zarr --model fisher_model.zarr -o fisher.zarr
    vcl pretrain DATA/videos.jsonl --method video-la     -o runs/la     (same budget)
    vcl pretrain DATA/videos.jsonl --method video-la-idt --prior fisher.zarr -o runs/la-idt
    vcl embed RUN DATA/videos.jsonl -o feats.zarr; vcl probe knn (train/test split of synth)

Both runs start from the same random network with the same seed, clips, epochs and K;
kNN top-1 accuracy on the motion labels of the test split is the figure (the Fisher
vectors themselves and a random network are printed as references).

    python benchmarks/fidelity_video.py [WORK_DIR]
    VCL_FID_VIDEOS=48 VCL_FID_EPOCHS=12 python benchmarks/fidelity_video.py

Results are printed as one JSON object on stdout (and written to WORK_DIR/fidelity.json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VIDEOS = int(os.environ.get("VCL_FID_VIDEOS", "40"))
EPOCHS = int(os.environ.get("VCL_FID_EPOCHS", "10"))
SIZE = int(os.environ.get("VCL_FID_SIZE", "32"))
FRAMES = int(os.environ.get("VCL_FID_FRAMES", "8"))
K = int(os.environ.get("VCL_FID_K", "8"))
BATCH = int(os.environ.get("VCL_FID_BATCH", "8"))
WORKERS = os.environ.get("VCL_FID_WORKERS", "2")


def vcl(*args: object) -> str:
    """Run one vcl command; its stdout (data) is returned, stderr passed through."""
    cmd = [sys.executable, "-m", "vcl", *map(str, args)]
    print("$ vcl " + " ".join(map(str, args)), file=sys.stderr, flush=True)
    began = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    print(f"  ({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
    return out


def knn_top1(features: Path, labels: Path) -> float:
    args = ["--train", features, "--labels", labels, "--split-field", "split", "--k", 5, "-q"]
    report = json.loads(vcl("probe", "knn", *args))
    return float(report["layers"][0]["metrics"]["top1"])


def main(work: Path) -> dict:
    data = work / "synth"
    manifest = data / "videos.jsonl"
    if not manifest.exists():
        vcl("synth", data, "--videos", VIDEOS, "--frames", 32, "--width", 96, "--height", 72,
            "--independent", "--motions", 4, "--classes", 4, "--min-objects", 1,
            "--max-objects", 2, "--test-fraction", 0.3, "--workers", WORKERS, "-q")  # fmt: skip
    if not (work / "fisher.zarr").exists():
        vcl("idt", manifest, "-o", work / "idt.zarr", "--flow", "dis", "--workers", WORKERS, "-q")
        vcl("fisher", "fit", work / "idt.zarr", "-o", work / "fisher_model.zarr", "--k", 16,
            "--sample-videos", VIDEOS, "--per-video", 300, "-q")  # fmt: skip
        vcl("fisher", "encode", work / "idt.zarr", "--model", work / "fisher_model.zarr",
            "-o", work / "fisher.zarr", "--videos", manifest, "-q")  # fmt: skip
    common = ["--epochs", EPOCHS, "--size", SIZE, "--frames", FRAMES, "--batch-size", BATCH,
              "--k", K, "--runs", 3, "--device", "cpu", "--workers", WORKERS, "-q"]  # fmt: skip
    results: dict = {
        "videos": VIDEOS, "epochs": EPOCHS, "size": SIZE, "frames": FRAMES, "k": K,
        "batch": BATCH, "fisher_knn_top1": knn_top1(work / "fisher.zarr", manifest),
    }  # fmt: skip
    models = {
        "random": "random:r3d_18",
        "video-la": work / "runs" / "la",
        "video-la-idt": work / "runs" / "la-idt",
    }
    for name, model in models.items():
        if name != "random" and not (Path(model) / "checkpoint.pt").exists():
            prior = ["--prior", work / "fisher.zarr"] if name == "video-la-idt" else []
            vcl("pretrain", manifest, "--method", name, "-o", model, *prior, *common)
        feats = work / f"feats-{name}.zarr"
        if not feats.exists():
            vcl("embed", model, manifest, "-o", feats, "--size", SIZE, "--frames", FRAMES,
                "--clips", 4, "--device", "cpu", "-q")  # fmt: skip
        results[f"{name}_knn_top1"] = knn_top1(feats, manifest)
        if name != "random":
            last = (Path(model) / "metrics.jsonl").read_text().splitlines()[-1]
            m = json.loads(last)
            results[f"{name}_final"] = {k: m.get(k) for k in ("loss", "nmi", "ami", "clusters")}
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
