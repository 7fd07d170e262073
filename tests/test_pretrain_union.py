"""vcl pretrain on several inputs of one schema: shards train as their merge would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import cli as invoke
from tests.conftest import metrics as run_metrics
from tests.conftest import without_timing
from vcl.errors import ExitCode

TINY = ["--arch", "resnet18", "--size", "32", "--batch-size", "8", "--k", "3",
        "--min-cluster", "2", "--device", "cpu", "--workers", "0", "--epochs", "1",
        "-q"]  # fmt: skip


def metrics(run: Path) -> list[dict]:
    return [without_timing(m) for m in run_metrics(run)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """Two crops shards (not pairs) of 4 tiny synthetic videos, and their vcl merge."""
    root = tmp_path_factory.mktemp("pretrain-union")
    r = invoke("synth", root / "synth", "--videos", 4, "--frames", 10, "--width", 67,
               "--height", 49, "--min-objects", 2, "--max-objects", 3, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    parts = []
    for i in range(2):
        out = root / f"crops{i}.zarr"
        r = invoke("crops", root / "synth" / "gt_tracks.jsonl", "--videos",
                   root / "synth" / "videos.jsonl", "-o", out, "--per-track", 2,
                   "--size", 33, "--shard", f"{i}/2", "-q")  # fmt: skip
        assert r.exit_code == 0, r.output
        parts.append(out)
    r = invoke("merge", *parts, "-o", root / "merged.zarr", "-q")
    assert r.exit_code == 0, r.output
    return parts, root / "merged.zarr"


def test_two_shards_train_like_their_merge(shards) -> None:
    parts, merged, method = *shards, "odct"
    a, b = merged.parent / f"{method}-shards", merged.parent / f"{method}-merged"
    r = invoke("pretrain", *parts, "--method", method, "-o", a, *TINY)
    assert r.exit_code == 0, r.output
    r = invoke("pretrain", merged, "--method", method, "-o", b, *TINY)
    assert r.exit_code == 0, r.output
    assert metrics(a) == metrics(b) and len(metrics(a)) == 2
    config = json.loads((a / "config.json").read_text())
    assert config["input"] == [str(p) for p in parts]
    assert json.loads((b / "config.json").read_text())["input"] == str(merged)


def test_the_same_shard_twice_is_refused(shards, tmp_path: Path) -> None:
    parts, _ = shards
    r = invoke("pretrain", parts[0], parts[0], "--method", "odc", "-o", tmp_path / "r", *TINY)
    assert r.exit_code == ExitCode.DATA, r.output
    assert "error:" in r.output and str(parts[0]) in r.output and "Traceback" not in r.output
    r = invoke("pretrain", parts[0], parts[1], "--method", "triplet", "-o", tmp_path / "t", *TINY)
    assert r.exit_code == ExitCode.DATA, r.output
    assert "error:" in r.output and str(parts[0]) in r.output and "Traceback" not in r.output
