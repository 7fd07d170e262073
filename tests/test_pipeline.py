"""One real shell pipeline, as a user types it: synth | videos | shards, then info."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_shell_pipeline(tmp_path: Path) -> None:
    vcl = f"{sys.executable} -m vcl"
    script = f"""
    set -euo pipefail
    {vcl} synth data --videos 4 --width 64 --height 48 --frames 10 -q
    {vcl} videos data/videos.jsonl --count -q | tee all.jsonl \\
        | {vcl} videos - --shard 0/2 -q > s0.jsonl
    {vcl} videos all.jsonl --shard 1/2 -q -o s1.jsonl
    {vcl} info all.jsonl --json > info.json
    """
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    every = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [r["frames"] for r in every] == [10] * 4 and all(r["frames_counted"] for r in every)
    assert {r["label"] for r in every} <= {"linear", "circular", "zigzag", "bouncing"}
    shards = [
        json.loads(x)["id"]
        for name in ("s0.jsonl", "s1.jsonl")
        for x in (tmp_path / name).read_text().splitlines()
    ]
    assert sorted(shards) == [r["id"] for r in every]
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["records"] == 4 and info["schema"] == "vcl.video/1"
