"""Free disk space: stages that write large outputs fail before starting when it is short.

``shutil.disk_usage`` is monkeypatched to report a nearly full disk; every such stage
must then exit 73 with one ``error:`` line naming the output, the estimate and the free
space, and leave nothing behind (no output, no ``.partial``).
"""

from __future__ import annotations

import json
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from tests.corpus import good_video
from vcl.errors import ExitCode, OutputError
from vcl.io.space import SKIP_ENV, check_free_space, human_bytes, predict_videos
from vcl.io.store import StoreWriter, partial_path

Usage = namedtuple("Usage", "total used free")
FIT = ["--k", "2", "--pca-dim", "2", "--iters", "2", "--inits", "1", "--device", "cpu"]


def _full_disk(monkeypatch, free: int = 64) -> list[str]:
    """Make every disk look nearly full; returns the folders asked about."""
    asked: list[str] = []

    def disk_usage(path):
        asked.append(str(path))
        return Usage(10**12, 10**12 - free, free)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    return asked


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A 2-video manifest, a track, a descriptor store and model, crops and features."""
    from typer.testing import CliRunner

    from vcl.cli.app import app
    from vcl.crops import columns_spec
    from vcl.io.features import FeatureSet, write_feature_set

    root = tmp_path_factory.mktemp("space")
    for i in range(2):
        good_video(root / f"v{i}.mp4", n=8, seed=i)
    manifest = root / "videos.jsonl"
    manifest.write_text(
        "".join(json.dumps({"id": f"v{i}", "path": f"v{i}.mp4"}) + "\n" for i in range(2))
    )
    tracks = root / "tracks.jsonl"
    track = {"id": "t0", "video_id": "v0", "frames": [0, 3, 6], "boxes": [[2, 2, 20, 20]] * 3}
    tracks.write_text(json.dumps(track) + "\n")
    rng = np.random.default_rng(0)
    descriptors = root / "d.zarr"
    with StoreWriter(descriptors, "vcl.idt/1", {"test": 1}, 0) as writer:
        writer.define_columns({"hog": ("float32", (6,))})
        for v in range(3):
            writer.append_group(f"v{v}", hog=rng.normal(size=(40, 6)).astype(np.float32))
    model = root / "m.zarr"
    result = CliRunner().invoke(
        app, ["fisher", "fit", str(descriptors), "--columns", "hog", "-o", str(model), *FIT]
    )
    assert result.exit_code == 0, result.output
    crops = root / "c.zarr"
    with StoreWriter(crops, "vcl.crops/1", {"test": 1}) as writer:
        writer.define_columns(columns_spec(16))
        writer.append_group(
            "v0",
            image=rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8),
            track_id=np.array(["t0"] * 3),
            video_id=np.array(["v0"] * 3),
            frame=np.arange(3, dtype=np.int32),
            box=np.zeros((3, 4), np.float32),
        )
    features = write_feature_set(
        root / "f.zarr",
        FeatureSet(np.array(["a", "b", "c"]), rng.normal(size=(3, 5)).astype(np.float32)),
        {"test": 1},
    )
    return {
        "videos": manifest,
        "tracks": tracks,
        "descriptors": descriptors,
        "model": model,
        "crops": crops,
        "features": features,
    }


STAGES = {  # stage -> argv ({name}: an input, {out}: the output)
    "proposals": ["proposals", "{videos}", "-o", "{out}", "--max-side", "0"],
    "idt": ["idt", "{videos}", "-o", "{out}", "--no-humans"],
    "crops": ["crops", "{tracks}", "--videos", "{videos}", "-o", "{out}", "--size", "64"],
    "embed": ["embed", "random:resnet18", "{crops}", "-o", "{out}", "--device", "cpu"],
    "fisher_encode": [
        "fisher",
        "encode",
        "{descriptors}",
        "--model",
        "{model}",
        "-o",
        "{out}",
        "--device",
        "cpu",
    ],
    "retrieve_index": ["retrieve", "index", "{features}", "-o", "{out}", "--device", "cpu"],
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_fails_early_when_the_disk_is_full(stage, inputs, invoke, tmp_path, monkeypatch):
    # retrieve index wants an existing folder; the others make theirs
    out = tmp_path / "out.index" if stage == "retrieve_index" else tmp_path / "sub" / "out.zarr"
    argv = [a.format(out=out, **{k: str(v) for k, v in inputs.items()}) for a in STAGES[stage]]
    asked = _full_disk(monkeypatch)
    result = invoke(*argv)
    assert result.exit_code == ExitCode.CANNOT_CREATE, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and str(out) in lines[-1], result.stderr
    assert "need about" in lines[-1] and "64 B is free" in lines[-1]
    assert "Traceback" not in result.stderr
    # the output's folder (made before the work by some stages) or its nearest existing parent
    assert {str(tmp_path), str(tmp_path / "sub")} & set(asked)
    assert not out.exists() and not partial_path(out).exists()
    assert not (tmp_path / "sub").exists() or not any((tmp_path / "sub").iterdir())
    monkeypatch.setenv(SKIP_ENV, "1")  # the escape hatch lets it run
    assert invoke(*argv, "-q").exit_code == 0


def test_check_counts_a_partial_output_as_written(tmp_path, monkeypatch):
    _full_disk(monkeypatch, free=5000)
    out = tmp_path / "o.zarr"
    with pytest.raises(OutputError, match=r"need about 8\.8 KiB but only 4\.9 KiB is free"):
        check_free_space(out, 9000, "the rows")
    partial_path(out).mkdir()
    (partial_path(out) / "chunk").write_bytes(b"x" * 6000)  # a killed run wrote 6000 bytes
    check_free_space(out, 9000, "the rows")  # 3000 left to write: fits
    assert human_bytes(999) == "999 B" and human_bytes(3 * 2**30) == "3.0 GiB"


def test_prediction_caps_an_implausible_declared_frame_count(tmp_path):
    """A header declaring 10^6 frames in a few hundred bytes must not ask for terabytes."""
    from tests.corpus import _huge_declared_avi

    good = good_video(tmp_path / "good.mp4", n=8)
    frames, pixels = predict_videos([str(good)])
    assert frames == 8 and pixels == 40 * 32
    frames, _ = predict_videos([str(good)], max_side=20)
    huge = _huge_declared_avi(tmp_path / "huge.avi")
    frames, _ = predict_videos([str(huge)])
    assert frames <= huge.stat().st_size / 16
    assert predict_videos([str(tmp_path / "missing.mp4")]) == (0.0, 0.0)
    assert predict_videos([str(good)] * 40)[0] == 8 * 40  # probes a sample, scales up
