"""Memory does not grow with the number of videos: loaders and writers stream.

- ``vcl proposals`` (a per-video stage: resolve, decode, propose, write) on 200 tiny
  videos peaks at the RSS it has on 20 (measured: +0.5 MiB), while holding the 180
  extra videos' decoded frames would add 9.5 MiB. Runs by default (about 10 s).
- ``vcl fisher encode`` on a store of 200 videos stays close to its RSS on 20 videos
  of the same size, while loading every descriptor at once would add at least the
  73 MiB of descriptors (measured: +16 MiB, allocator and zarr overhead). Opt-in
  (``VCL_SLOW_TESTS=1``: about 30 s on 2 cores, dominated by starting torch three times).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vcl.io.store import StoreWriter

slow = pytest.mark.skipif(
    os.environ.get("VCL_SLOW_TESTS") != "1", reason="slow: set VCL_SLOW_TESTS=1"
)
ROWS, DIM = 1000, 96  # per video: 1000 descriptors of 96 floats = 375 KiB

# run vcl in this process, then print its peak RSS (KiB on Linux) as the last line
_MEASURE = """
import resource, sys
from vcl.cli.app import main
sys.argv = ["vcl", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    if exc.code:
        raise
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _descriptor_store(path: Path, videos: int) -> Path:
    rng = np.random.default_rng(videos)
    with StoreWriter(path, "vcl.idt/1", {"test": videos}, 0) as writer:
        writer.define_columns({"hog": ("float32", (DIM,))})
        for v in range(videos):
            writer.append_group(f"v{v:04d}", hog=rng.normal(size=(ROWS, DIM)).astype(np.float32))
    return path


def _peak_rss_mib(*args) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *map(str, args), "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip().splitlines()[-1]) / 1024


@slow
def test_fisher_encode_memory_is_flat_in_the_number_of_videos(tmp_path):
    small = _descriptor_store(tmp_path / "small.zarr", 20)
    large = _descriptor_store(tmp_path / "large.zarr", 200)
    model = tmp_path / "model.zarr"
    fit = ["--columns", "hog", "--k", "4", "--pca-dim", "16", "--iters", "3", "--inits", "1"]
    _peak_rss_mib("fisher", "fit", small, "-o", model, *fit, "--device", "cpu")
    common = ["--model", model, "--sketch-dim", "0", "--batch-rows", "4000", "--device", "cpu"]
    rss_small = _peak_rss_mib("fisher", "encode", small, "-o", tmp_path / "fs.zarr", *common)
    rss_large = _peak_rss_mib("fisher", "encode", large, "-o", tmp_path / "fl.zarr", *common)
    data_mib = 200 * ROWS * DIM * 4 / 2**20
    print(json.dumps({"rss_20_mib": rss_small, "rss_200_mib": rss_large, "data_mib": data_mib}))
    assert rss_large - rss_small < 0.5 * data_mib  # all at once: >= data_mib more


def test_per_video_stage_memory_is_flat_in_the_number_of_videos(tmp_path):
    """200 videos (one tiny file listed under 200 ids) against 20: peak RSS stays flat."""
    from tests.corpus import frames
    from vcl.io.video import write_video

    width, height, n_frames = 64, 48, 6
    write_video(tmp_path / "v.mp4", frames(n_frames, width, height), 25.0)
    rss = {}
    for n in (20, 200):
        manifest = tmp_path / f"m{n}.jsonl"
        lines = [json.dumps({"id": f"v{i:04d}", "path": "v.mp4"}) for i in range(n)]
        manifest.write_text("\n".join(lines) + "\n")
        out = tmp_path / f"p{n}.zarr"
        rss[n] = _peak_rss_mib("proposals", manifest, "-o", out, "--max-side", "0")
        from vcl.io.store import Store

        assert len(Store(out).group_ids) == n
    frames_mib = 180 * n_frames * width * height * 3 / 2**20  # decoded frames of 180 videos
    print(json.dumps({"rss_20_mib": rss[20], "rss_200_mib": rss[200], "frames_mib": frames_mib}))
    assert rss[200] - rss[20] < 0.4 * frames_mib
