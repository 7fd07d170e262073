"""``-o -`` is stdout, for JSONL and JSON outputs only.

A zarr store, a faiss index or a folder of text files given ``-o -`` used to be
written as a file or folder literally named ``-``; now it is one usage error line
(exit 2) and nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import Result

from tests.corpus import good_video
from vcl.errors import ExitCode, UsageError
from vcl.io.store import StoreWriter


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path, where a stray ``-`` would appear."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _refused(result: Result, what: str, here: Path) -> None:
    assert result.exit_code == ExitCode.USAGE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: -o -: ") and "cannot go to stdout" in lines[0]
    assert what in lines[0] and lines[0].endswith("; give a path")
    assert not (here / "-").exists() and not (here / "-.partial").exists()
    assert result.stdout == ""


def test_store_writer_refuses_stdout(here: Path) -> None:
    with pytest.raises(UsageError, match=r"zarr store \(vcl.test/1\), which cannot go to"):
        StoreWriter("-", "vcl.test/1", {})
    assert not (here / "-.partial").exists()


def _stores(here: Path) -> tuple[Path, Path]:
    """Two small stores of one run, disjoint groups (shards to merge)."""
    paths = (here / "a.zarr", here / "b.zarr")
    for path, gid in zip(paths, "ab", strict=True):
        with StoreWriter(path, "vcl.test/1", {}) as writer:
            writer.define_columns({"x": ("int32", ())})
            writer.append_group(gid, x=np.arange(3))
    return paths


@pytest.mark.parametrize(
    "stage",
    [
        "proposals",
        "idt",
        "idt-text",
        "idt-convert",
        "crops",
        "merge",
        "fisher-fit",
        "retrieve",
        "pretrain",
    ],
)
def test_a_store_or_file_output_refuses_dash(stage: str, here: Path, invoke) -> None:
    video = good_video(here / "clip.avi")
    vectors = here / "x.npy"
    np.save(vectors, np.random.default_rng(0).normal(size=(17, 5)).astype("f4"))
    track = {"id": "t0", "video_id": "clip", "frames": [0, 1, 2], "boxes": [[2, 2, 19, 19]] * 3}
    tracks = here / "tracks.jsonl"
    tracks.write_text(json.dumps(track) + "\n")
    commands: dict[str, tuple[list[object], str]] = {
        "proposals": (["proposals", video, "--max-side", "0"], "zarr store (vcl.proposals/1)"),
        "idt": (["idt", video, "--track-length", "5", "--no-humans"], "zarr store (vcl.idt/1)"),
        "idt-text": (["idt", video, "--format", "text", "--no-humans"], "folder"),
        "idt-convert": (["idt", "convert", tracks], "idt convert writes a folder"),
        "crops": (["crops", tracks, "--videos", video, "--size", "9"], "(vcl.crops/1)"),
        "merge": (["merge", *_stores(here)], "the merged output is a zarr store"),
        "fisher-fit": (["fisher", "fit", here / "idt.zarr"], "the model is a zarr store"),
        "retrieve": (["retrieve", "index", vectors], "faiss file"),
        "pretrain": (["pretrain", here / "crops.zarr", "--method", "odc"], "run directory"),
    }
    args, what = commands[stage]
    _refused(invoke(*args, "-o", "-"), what, here)


def test_cluster_takes_dash_for_jsonl_only(here: Path, invoke) -> None:
    vectors = here / "x.npy"
    np.save(vectors, np.random.default_rng(0).normal(size=(17, 5)).astype("f4"))
    _refused(invoke("cluster", vectors, "--k", "2", "-o", "-"), "--jsonl", here)
    streamed = invoke("cluster", vectors, "--k", "2", "--jsonl", "-o", "-", "-q")
    assert streamed.exit_code == 0, streamed.stderr
    records = [json.loads(line) for line in streamed.stdout.splitlines()[:17]]
    assert [r["id"] for r in records] == [str(i) for i in range(17)]


def test_retrieve_montage_refuses_dash(here: Path, invoke) -> None:
    """``--montage -`` wrote a PNG file named ``-``."""
    vectors = here / "x.npy"
    np.save(vectors, np.random.default_rng(0).normal(size=(17, 5)).astype("f4"))
    assert invoke("retrieve", "index", vectors, "-o", here / "x.index").exit_code == 0
    result = invoke(
        "retrieve", "query", here / "x.index", vectors, "--montage", "-", "--crops", here / "c.zarr"
    )
    assert result.exit_code == ExitCode.USAGE, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: --montage -: the montage is an image file, which cannot go")
    assert not (here / "-").exists()
