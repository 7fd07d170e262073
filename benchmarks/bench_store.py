"""Store writes: StoreWriter appending one video at a time (atomic, resumable) against
writing the same rows with one zarr call, the cost of resumability; groups of features
written behind a stand-in model (WriteBehind, as ``vcl embed`` does) against in line;
random crops read by chunk (``vcl.pretrain.data.read_rows``, the training loader's
reads) against zarr's orthogonal selection.

Measured on the shared 2-core CPU machine (busy): 8 groups of 150 rows × 46080
features (27.6 MB a group) behind a model of 0.2 s a group: 580 rows/s (0.26 s a
group) against 348 in line (0.43 s); 256 random 224-px crops of 4-crop chunks: 1318
crops/s against 651 (0.19 s against 0.39 s a batch).
"""

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
        },
        _write_behind(),
        _random_reads(),
    ]


def _write_behind(groups: int = 8, rows: int = 150, model_s: float = 0.2) -> dict:
    """Groups of embed's size (6 ResNet-50 layers) after a model of ``model_s`` a group
    (a sleep: a GPU's forward leaves the GIL free), written behind it or in line."""
    from contextlib import nullcontext

    from vcl.io.store import StoreWriter, WriteBehind

    dims = (9216, 9216, 8192, 9216, 8192, 2048)
    rng = np.random.default_rng(0)
    feats = {
        f"f{i}": np.maximum(rng.standard_normal((rows, d), np.float32), 0)
        for i, d in enumerate(dims)
    }
    spec = {name: ("float32", (v.shape[1],)) for name, v in feats.items()}
    tmp = Path(tempfile.mkdtemp(prefix="vcl-bench-"))
    seconds = {}
    try:
        for behind in (True, False):
            start = time.perf_counter()
            with StoreWriter(tmp / f"{behind}.zarr", "vcl.bench/1", {}) as writer:
                writer.define_columns(spec)
                with WriteBehind(writer) if behind else nullcontext(writer) as sink:
                    for g in range(groups):
                        time.sleep(model_s)
                        sink.append_group(f"v{g}", **{k: v.copy() for k, v in feats.items()})
            seconds[behind] = time.perf_counter() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "stage": "embed (io.store)",
        "compared": f"{groups}×{rows} rows × 6 layers behind a {model_s} s model vs in line",
        "ours": groups * rows / seconds[True],
        "reference": groups * rows / seconds[False],
        "unit": "rows/s",
    }


def _random_reads(n: int = 2048, batch: int = 256, side: int = 224) -> dict:
    """A training batch of random crops from 4-crop chunks: read by chunk vs orthogonal."""
    from vcl.crops import columns_spec
    from vcl.io.store import Store, StoreWriter
    from vcl.pretrain.data import read_rows

    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="vcl-bench-"))
    try:
        with StoreWriter(tmp / "c.zarr", "vcl.crops/1", {}) as writer:
            writer.define_columns(columns_spec(side), chunk_rows={"image": 4})
            for g in range(0, n, 256):
                small = rng.integers(0, 255, (256, side // 8, side // 8, 3), dtype=np.uint8)
                image = np.repeat(np.repeat(small, 8, 1), 8, 2)
                writer.append_group(f"v{g}", image=image, track_id=np.array(["t"] * 256),
                                    video_id=np.array([f"v{g}"] * 256),
                                    frame=np.arange(256, dtype=np.int32),
                                    box=np.zeros((256, 4), np.float32))  # fmt: skip
        column = Store(tmp / "c.zarr")["image"]
        ours, ref = [], []
        for rep in range(3):
            idx = np.random.default_rng(rep).permutation(n)[:batch]
            start = time.perf_counter()
            read_rows(column, idx)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            column.get_orthogonal_selection((np.sort(idx),))
            ref.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "stage": "pretrain loader (io.store)",
        "compared": f"{batch} random {side}-px crops by chunk vs orthogonal selection",
        "ours": batch / min(ours),
        "reference": batch / min(ref),
        "unit": "crops/s",
    }
