"""One real shell pipeline, as a user types it: synth | videos | shards, then info."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


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


@pytest.mark.slow  # vcl demo (tests/test_demo.py) runs the same chain
def test_examples_makefile_runs_the_toolkit_end_to_end(tmp_path: Path) -> None:
    """The examples Makefile's toy target: every stage on files, re-entrant."""
    import shutil

    if shutil.which("make") is None:
        import pytest

        pytest.skip("make is not installed")
    examples = Path(__file__).resolve().parents[1] / "examples"
    out = tmp_path / "toy"
    args = [
        "make",
        "-C",
        str(examples),
        "toy",
        f"OUT={out}",
        f"VCL={sys.executable} -m vcl",
        "VIDEOS=6",
    ]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recall = json.loads((out / "proposals_eval.json").read_text())["recall"]["0.5"]["300"]
    assert 0 < recall <= 1
    motion = json.loads((out / "motion_eval.json").read_text())
    assert motion["samples"] == 6 and motion["labelled"] == 6
    appearance = json.loads((out / "appearance_eval.json").read_text())
    assert appearance["tracks"] > 0 and appearance["untracked"] == 0
    assert (out / "run" / "metrics.jsonl").exists()
    # re-entrant: nothing to redo; deleting one file redoes only what depends on it
    dry = subprocess.run([*args, "-n"], capture_output=True, text=True).stdout
    assert " -m vcl " not in dry.replace("\n", " ")
    shutil.rmtree(out / "fisher.zarr")
    dry = subprocess.run([*args, "-n"], capture_output=True, text=True).stdout
    redone = [line for line in dry.splitlines() if " -m vcl " in line]
    assert any("fisher encode" in line for line in redone)
    assert not any(" idt " in line or " proposals " in line for line in redone)
