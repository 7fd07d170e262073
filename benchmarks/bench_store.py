"""Store writes: StoreWriter appending one video at a time (atomic, resumable) against
writing the same rows with one zarr call, the cost of resumability."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def run() -> list[dict]:
    import zarr
    import zarr.codecs

    from vcl.io.store import StoreWriter

    rng = np.random.default_rng(0)
    videos = [
        rng.random((int(rng.integers(500, 3000)), 4), dtype=np.float32) * 500 for _ in range(2000)
    ]
    total = sum(v.nbytes for v in videos) / 2**20
    tmp = Path(tempfile.mkdtemp(prefix="vcl-bench-"))
    try:
        start = time.perf_counter()
        with StoreWriter(tmp / "ours.zarr", "vcl.bench/1", {}) as writer:
            writer.define_columns({"box": ("float32", (4,))})
            for i, boxes in enumerate(videos):
                writer.append_group(f"v{i}", box=boxes)
        ours = total / (time.perf_counter() - start)
        start = time.perf_counter()
        allrows = np.concatenate(videos)
        arr = zarr.create_array(
            str(tmp / "ref.zarr"),
            shape=allrows.shape,
            chunks=(65536, 4),
            dtype="float32",
            compressors=zarr.codecs.ZstdCodec(level=3),
        )
        arr[...] = allrows
        ref = total / (time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [
        {
            "stage": "io.store",
            "compared": "append 2000 videos of boxes vs one zarr write",
            "ours": ours,
            "reference": ref,
            "unit": "MiB/s",
        }
    ]
