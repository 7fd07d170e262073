"""A generated corpus of broken inputs for the bad-input tests (tests/test_bad_inputs.py).

``make_video_corpus(root)`` writes broken videos and manifests, ``make_store_corpus``
broken stores; each returns ``{name: path}``. Every item is small and made from seeded
arrays, so the whole corpus takes well under a second to build.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

GOOD_SIZE = (40, 32)  # width, height of the good videos around the broken ones


def frames(n: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """A smooth seeded pattern with a bright square moving right (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 6.28, 3)
    base = np.stack([80 + 60 * np.sin(xx / 3 + yy / 5 + p) for p in phase], -1).astype(np.uint8)
    out = []
    for t in range(n):
        f = base.copy()
        x = (2 * t) % max(1, width - 6)
        f[height // 4 : height // 4 + 6, x : x + 6] = (230, 40, 40)
        out.append(f)
    return out


def good_video(path: Path, n: int = 8, seed: int = 0) -> Path:
    from vcl.io.video import write_video

    write_video(path, frames(n, *GOOD_SIZE, seed=seed), 25.0)
    return path


def _huge_declared_avi(path: Path) -> Path:
    """An MJPEG AVI whose header declares a million frames, cut right after the header."""
    from vcl.io.video import write_video

    write_video(path, frames(6, *GOOD_SIZE), 25.0, codec="mjpg")
    data = bytearray(path.read_bytes())
    avih = data.find(b"avih")
    struct.pack_into("<I", data, avih + 8 + 16, 1_000_000)  # dwTotalFrames
    strh = data.find(b"strh")
    if strh >= 0:
        struct.pack_into("<I", data, strh + 8 + 32, 1_000_000)  # dwLength of the stream
    movi = data.find(b"movi")
    path.write_bytes(bytes(data[: movi + 4]))
    return path


def make_video_corpus(root: Path) -> dict[str, Path]:
    """Broken videos (as paths), each also wrapped in a manifest with two good videos."""
    from vcl.io.video import write_frame_folder, write_video

    root.mkdir(parents=True, exist_ok=True)
    items: dict[str, Path] = {}
    items["missing_file"] = root / "missing.mp4"
    (root / "zero_byte.mp4").write_bytes(b"")
    items["zero_byte"] = root / "zero_byte.mp4"
    whole = good_video(root / "whole.mp4", n=10).read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 3])
    items["truncated_mp4"] = root / "truncated.mp4"
    (root / "text.mp4").write_text("this is not a video\n")
    items["text_named_mp4"] = root / "text.mp4"
    folder = root / "bad_frames"
    write_frame_folder(folder, frames(6, *GOOD_SIZE, seed=4))
    (folder / "000003.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    items["frame_folder_bad_image"] = folder
    write_video(root / "one_frame.mp4", frames(1, *GOOD_SIZE), 25.0)
    items["one_frame"] = root / "one_frame.mp4"
    write_video(root / "tiny.mp4", frames(4, 2, 2), 25.0)  # mpeg4 needs even sides: 2×2
    items["tiny_2x2"] = root / "tiny.mp4"
    items["huge_declared_count"] = _huge_declared_avi(root / "huge.avi")
    good_video(root / "good_a.mp4", seed=1)
    good_video(root / "good_b.mp4", seed=2)
    (root / "good_c.mp4").write_bytes(whole)
    return items


def write_manifest(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def video_line(vid: str, path: str, **extra) -> str:
    return json.dumps({"schema": "vcl.video/1", "id": vid, "path": path, **extra})


def make_manifest_corpus(root: Path) -> dict[str, Path]:
    """Manifests with one bad line after a good one (the good videos exist in ``root``)."""
    good = video_line("a", "good_a.mp4")
    cases = {
        "bad_json": [good, '{"id": "b", "path": "good_b.mp4"'],
        "missing_field": [good, json.dumps({"schema": "vcl.video/1", "id": "b"})],
        "wrong_type": [good, json.dumps({"id": "b", "path": 17})],
        "wrong_type_fps": [good, video_line("b", "good_b.mp4", fps="fast")],
        "duplicate_ids": [good, video_line("a", "good_b.mp4")],
        "unknown_schema_major": [good, video_line("b", "good_b.mp4").replace("/1", "/9")],
        "not_an_object": [good, "[1, 2, 3]"],
        "missing_video": [good, video_line("b", "gone.mp4")],
    }
    track = {
        "schema": "vcl.track/1",
        "id": "t0",
        "video_id": "a",
        "frames": [0, 2],
        "boxes": [[1, 1, 20, 20], [2, 2, 21, 21]],
    }
    tracks = {
        "tracks_bad_json": [json.dumps(track), '{"id": "t1", "video_id": '],
        "tracks_box_inverted": [
            json.dumps({**track, "id": "t1", "boxes": [[20, 1, 1, 20], [2, 2, 21, 21]]})
        ],
        "tracks_frames_not_increasing": [json.dumps({**track, "frames": [2, 0]})],
        "tracks_missing_field": [json.dumps({k: v for k, v in track.items() if k != "boxes"})],
        "tracks_duplicate_ids": [json.dumps(track), json.dumps(track)],
        "tracks_unknown_schema_major": [json.dumps({**track, "schema": "vcl.track/2"})],
        "tracks_unknown_video": [json.dumps({**track, "video_id": "nowhere"})],
    }
    cases.update(tracks)
    return {name: write_manifest(root / f"{name}.jsonl", lines) for name, lines in cases.items()}


def _store(
    path: Path,
    schema: str,
    columns: dict[str, np.ndarray] | None,
    groups: int = 2,
    params: dict | None = None,
) -> Path:
    from vcl.io.store import StoreWriter

    with StoreWriter(path, schema, params or {}, 0) as writer:
        if columns is not None:
            writer.define_columns(
                {
                    k: (str if v.dtype.kind == "U" else v.dtype, v.shape[1:])
                    for k, v in columns.items()
                }
            )
            n = len(next(iter(columns.values())))
            bounds = np.linspace(0, n, groups + 1).astype(int)
            for g in range(groups):
                part = {k: v[bounds[g] : bounds[g + 1]] for k, v in columns.items()}
                writer.append_group(f"v{g}", **part)
    return path


def make_store_corpus(root: Path) -> dict[str, Path]:
    """Stores a stage must refuse (or handle): foreign schema, NaN/inf rows, empty."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items: dict[str, Path] = {}
    box = rng.uniform(0, 20, (10, 4)).astype(np.float32)
    box[:, 2:] += box[:, :2]
    items["other_schema"] = _store(
        root / "other.zarr",
        "vcl.proposals/1",
        {"frame": np.arange(10, dtype=np.int32), "box": box, "score": np.ones(10, np.float32)},
    )
    items["newer_schema"] = _store(
        root / "newer.zarr", "vcl.features/7", {"features": np.ones((4, 3), np.float32)}
    )
    desc = rng.normal(size=(200, 6)).astype(np.float32)
    desc[::7, 2] = np.nan
    desc[3::11, 4] = np.inf
    items["descriptors_nan_inf"] = _store(
        root / "desc_nan.zarr", "vcl.idt/1", {"hog": desc, "hof": desc[:, :4].copy()}
    )
    desc_all_nan = np.full((40, 6), np.nan, np.float32)
    items["descriptors_all_nan"] = _store(
        root / "desc_all_nan.zarr", "vcl.idt/1", {"hog": desc_all_nan}
    )
    feats = rng.normal(size=(12, 5)).astype(np.float32)
    feats[2] = np.nan
    feats[5, 1] = -np.inf
    ids = np.array([f"s{i}" for i in range(12)])
    items["features_nan_inf"] = _store(
        root / "feat_nan.zarr", "vcl.features/1", {"features": feats, "id": ids}, groups=3
    )
    items["features_all_nan"] = _store(
        root / "feat_all_nan.zarr",
        "vcl.features/1",
        {"features": np.full((6, 5), np.nan, np.float32), "id": ids[:6]},
    )
    items["empty_store"] = _store(
        root / "empty.zarr",
        "vcl.features/1",
        {"features": np.zeros((0, 5), np.float32), "id": np.array([], dtype=str)},
        groups=0,
    )
    items["empty_descriptors"] = _store(
        root / "empty_desc.zarr", "vcl.idt/1", {"hog": np.zeros((0, 6), np.float32)}, groups=0
    )
    items["not_a_store"] = root / "junk.zarr"
    items["not_a_store"].mkdir()
    (items["not_a_store"] / "zarr.json").write_text("{ not json")
    items["missing_store"] = root / "missing.zarr"
    return items
