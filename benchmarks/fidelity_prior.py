"""Does the IDT Fisher-vector prior carry ``vcl synth``'s motion labels? (issue #9)

The video-la-idt fidelity run (``fidelity_video.py``) only means something when the
prior itself separates the motion patterns (linear, circular, zigzag, bouncing). This
checks that without any training, every step a ``vcl`` command:

    vcl synth DATA --independent ...          # labels = motion, appearance random
    vcl idt DATA/videos.jsonl -o idt.zarr --flow farneback --no-humans
    vcl fisher fit idt.zarr --parts per-type|joint [--columns PART] --k K
    vcl fisher encode ... ; vcl probe knn / linear ; vcl cluster --k 4 ; vcl cluster eval

for the joint and per-type encodings of all parts and for each part alone (traj, HOF,
MBH: motion; HOG: appearance, which ``--independent`` makes useless for the label).
Chance is 1/motions top-1, NMI ~0 and purity ~1/motions (k-means k = motions).

    python benchmarks/fidelity_prior.py [WORK_DIR]
    VCL_PRIOR_VIDEOS=120 VCL_PRIOR_K=16,32 VCL_PRIOR_ENCODINGS=per-type,hog \\
        VCL_PRIOR_FLOW=dis python benchmarks/fidelity_prior.py

Prints one JSON object (also WORK_DIR/prior.json) with a row per encoding.

Measured (2026-11-23, 120 videos 160×120×32, 36 test, K 16, seed 0, ``--flow dis``, with
19 of 120 videos left without trajectories, i.e. zero vectors): kNN / linear top-1 /
k-means(4) NMI: per-type 0.75 / 0.78 / 0.03, joint 0.64 / 0.42 / 0.05, traj 0.64 / 0.47
/ 0.02, HOF 0.69 / 0.50 / 0.05, MBH 0.72 / 0.64 / 0.09, HOG 0.50 / 0.42 / 0.01 (chance
0.25). The motion parts carry the label, HOG much less; but k-means does not find the
motion classes (other factors, e.g. direction, dominate), and DIS "fast" (flow at 1/4
resolution) misses small objects: flow end-point error at synth's objects, median 3.5 px
for DIS fast vs 0.25 px for Farneback at 4.3 px/frame. Hence Farneback by default. On
the 40-video 96×72 set of ``fidelity_video.py`` (25 of 40 empty with DIS, none with
Farneback) the Farneback prior gives kNN 0.67 and k-means(8) NMI 0.39, purity 0.60; on
its current 120-video 96×72 set (seed 0) kNN 0.86 test / 0.83 leave-one-out. Finer
k-means is purer, which is what video-la-idt's targets need: the fraction of a video's
close neighbours (same cluster in any of 3 k-means, LA's C_i) sharing its motion is
0.38 at K 8, 0.47 at K 16, 0.61 at K 30, 0.66 at K 48 (chance 0.24).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VIDEOS = int(os.environ.get("VCL_PRIOR_VIDEOS", "120"))
FRAMES = int(os.environ.get("VCL_PRIOR_FRAMES", "32"))
WIDTH = int(os.environ.get("VCL_PRIOR_WIDTH", "160"))
HEIGHT = int(os.environ.get("VCL_PRIOR_HEIGHT", "120"))
KS = [int(k) for k in os.environ.get("VCL_PRIOR_K", "16").split(",")]
SEED = int(os.environ.get("VCL_PRIOR_SEED", "0"))
WORKERS = os.environ.get("VCL_PRIOR_WORKERS", "2")
# name -> (fisher fit --parts, --columns or None for every part)
ENCODINGS = {
    "per-type": ("per-type", None),
    "joint": ("joint", None),
    "traj": ("per-type", "traj"),
    "hof": ("per-type", "hof"),
    "mbh": ("per-type", "mbhx,mbhy"),
    "hog": ("per-type", "hog"),
}
ONLY = os.environ.get("VCL_PRIOR_ENCODINGS", ",".join(ENCODINGS)).split(",")
FLOW = os.environ.get("VCL_PRIOR_FLOW", "farneback")  # DIS "fast" loses small objects


def vcl(*args: object) -> str:
    """Run one vcl command; its stdout (data) is returned, stderr passed through."""
    cmd = [sys.executable, "-m", "vcl", *map(str, args)]
    print("$ vcl " + " ".join(map(str, args)), file=sys.stderr, flush=True)
    began = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    print(f"  ({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
    return out


def probe(kind: str, features: Path, labels: Path, *extra: object) -> float:
    args = ["--train", features, "--labels", labels, "--split-field", "split", "-q", *extra]
    report = json.loads(vcl("probe", kind, *args))
    return float(report["layers"][0]["metrics"]["top1"])


def evaluate(work: Path, features: Path, manifest: Path, motions: int) -> dict:
    """kNN (k 5) and linear top-1 on the test split; k-means NMI / purity on all videos.

    k-means with k = motions asks whether motion is the dominant structure; k = 4 x
    motions (LA's over-clustering) whether the clusters are at least motion-pure.
    """
    row = {
        "knn_top1": probe("knn", features, manifest, "--k", 5),
        "linear_top1": probe("linear", features, manifest, "--device", "cpu", "--seed", SEED),
    }
    for k in (motions, 4 * motions):
        clusters = features.with_name(f"{features.stem}-kmeans{k}.zarr")
        if not clusters.exists():
            vcl("cluster", "run", features, "-o", clusters, "--k", k, "--runs", 3,
                "--device", "cpu", "--seed", SEED, "-q")  # fmt: skip
        report = json.loads(vcl("cluster", "eval", clusters, "--labels", manifest, "-q"))
        row[f"kmeans{k}_nmi"] = float(report["nmi"])
        row[f"kmeans{k}_purity"] = float(report["purity"])
    return row


def main(work: Path) -> dict:
    data = work / "synth"
    manifest = data / "videos.jsonl"
    motions = 4
    if not manifest.exists():
        vcl("synth", data, "--videos", VIDEOS, "--frames", FRAMES, "--width", WIDTH,
            "--height", HEIGHT, "--independent", "--motions", motions, "--classes", 4,
            "--min-objects", 1, "--max-objects", 2, "--test-fraction", 0.3,
            "--seed", SEED, "--workers", WORKERS, "-q")  # fmt: skip
    idt = work / "idt.zarr"
    if not idt.exists():
        vcl("idt", "run", manifest, "-o", idt, "--flow", FLOW, "--no-humans",
            "--workers", WORKERS, "--seed", SEED, "-q")  # fmt: skip
    results: dict = {"videos": VIDEOS, "frames": FRAMES, "size": [WIDTH, HEIGHT], "flow": FLOW,
                     "seed": SEED, "chance_top1": 1 / motions, "rows": []}  # fmt: skip
    for k in KS:
        for name in ONLY:
            parts, columns = ENCODINGS[name]
            model, feats = work / f"model-{name}-k{k}.zarr", work / f"fv-{name}-k{k}.zarr"
            if not feats.exists():
                cols = ["--columns", columns] if columns else []
                vcl("fisher", "fit", idt, "-o", model, "--parts", parts, *cols, "--k", k,
                    "--sample-videos", VIDEOS, "--per-video", 500, "--device", "cpu",
                    "--seed", SEED, "--overwrite", "-q")  # fmt: skip
                vcl("fisher", "encode", idt, "--model", model, "-o", feats,
                    "--videos", manifest, "--device", "cpu", "-q")  # fmt: skip
            row = {"encoding": name, "k": k, **evaluate(work, feats, manifest, motions)}
            print(json.dumps(row), file=sys.stderr, flush=True)
            results["rows"].append(row)
    (work / "prior.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1:
        folder = Path(sys.argv[1])
        folder.mkdir(parents=True, exist_ok=True)
        print(json.dumps(main(folder), indent=2))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(main(Path(tmp)), indent=2))
