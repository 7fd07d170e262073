"""vcl crops --keep-going on the broken-video corpus (tests/corpus.py): the tracks of a
bad video are skipped and listed as JSONL on stderr, the good ones written, exit 3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.corpus import make_video_corpus, video_line, write_manifest
from vcl.errors import ExitCode
from vcl.io.store import Store

BROKEN = [
    "missing_file",
    "zero_byte",
    "truncated_mp4",
    "text_named_mp4",
    "frame_folder_bad_image",
    "huge_declared_count",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return make_video_corpus(tmp_path_factory.mktemp("crops-corpus"))


def track(tid: str, video_id: str, n: int = 6) -> str:
    box = [2.0, 3.0, 20.0, 25.0]
    return json.dumps(
        {
            "schema": "vcl.track/1",
            "id": tid,
            "video_id": video_id,
            "frames": list(range(n)),
            "boxes": [box] * n,
        }
    )


@pytest.mark.parametrize("item", BROKEN)
def test_keep_going_skips_and_lists_the_tracks_of_a_bad_video(item, corpus, invoke, tmp_path):
    good = corpus["missing_file"].parent / "good_a.mp4"
    manifest = write_manifest(
        tmp_path / "m.jsonl", [video_line("a", str(good)), video_line("bad", str(corpus[item]))]
    )
    tracks = write_manifest(
        tmp_path / "t.jsonl",
        [track("ta", "a"), track("tb1", "bad"), track("tb2", "bad"), track("tn", "nowhere")],
    )
    out = tmp_path / "c.zarr"
    args = ["crops", tracks, "--videos", manifest, "-o", out, "--size", "8", "--per-track", "3"]

    result = invoke(*args)  # without --keep-going: one error line, nothing accepted
    assert result.exit_code in (ExitCode.DATA, ExitCode.NO_INPUT), result.stderr
    assert "Traceback" not in result.stderr and "error:" in result.stderr
    with pytest.raises(Exception):  # noqa: B017 - any refusal (partial or absent)
        Store(out, kind="crops")

    result = invoke(*args, "--keep-going")
    assert result.exit_code == 3, result.stderr
    assert "Traceback" not in result.stderr
    listed = [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]
    assert {f["video_id"]: f["tracks"] for f in listed} == {
        "nowhere": ["tn"],
        "bad": ["tb1", "tb2"],
    }
    assert all(f["error"] for f in listed)
    store = Store(out, kind="crops")
    assert store.group_ids == ["a"] and sorted(store.attrs["failed"]) == ["bad", "nowhere"]
    assert store.n_rows == 3 and set(np.asarray(store["track_id"][:]).tolist()) == {"ta"}
