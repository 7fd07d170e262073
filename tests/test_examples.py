"""examples/: each paper's Makefile runs its toy target end to end and is re-entrant."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
VCL = f"{sys.executable} -m vcl"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-C", str(folder), f"VCL={VCL}", *args], capture_output=True, text=True
    )


def test_every_example_folder_has_a_makefile_with_a_toy_target() -> None:
    folders = [p for p in EXAMPLES.iterdir() if p.is_dir()]
    assert folders
    for folder in folders:
        text = (folder / "Makefile").read_text()
        assert ".DELETE_ON_ERROR:" in text and "\ntoy:" in text
        assert folder.name in (EXAMPLES / "README.md").read_text()


def test_odct_makefile_needs_data_and_prints_the_paper_pipeline(tmp_path: Path) -> None:
    folder = EXAMPLES / "odct-imagenet-vid"
    missing = _make(folder, f"OUT={tmp_path}")
    assert missing.returncode != 0 and "DATA=" in missing.stderr
    probe, voc, out = tmp_path / "probe.jsonl", tmp_path / "voc.jsonl", tmp_path / "out"
    probe.write_text("")
    voc.write_text("")
    dry = _make(folder, "-n", "DATA=/data/ILSVRC2015", f"OUT={out}", f"PROBE={probe}",
                f"VOC={voc}", "GPUS=4", "SHARDS=3")  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    text = dry.stdout
    for expected in (
        "/data/ILSVRC2015/Data/VID/train",
        "--method gt",
        "/data/ILSVRC2015/Annotations/VID/train",
        "--shard 2/3",
        "merge",
        "torchrun --nproc_per_node 4 -m vcl pretrain",
        "--k 30 ",
        "--k 1000 ",
        "--method odc-trackinit",
        "probe svm",
        "--ignore-field difficult",
        "--costs goyal",
        "--layers stage1,stage2,stage3,stage4,stage5",
    ):
        assert expected in text, expected
    assert not out.exists()  # -n wrote nothing


@pytest.mark.slow  # minutes of CPU: VCL_SLOW_TESTS=1 runs it
def test_odct_toy_runs_end_to_end_and_is_re_entrant(tmp_path: Path) -> None:
    folder, out = EXAMPLES / "odct-imagenet-vid", tmp_path / "toy"
    proc = _make(folder, "toy", f"TOY_OUT={out}", "-j2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = json.loads((out / "table1-linear.json").read_text())
    assert table["columns"] == ["stage4", "stage5"]
    probes = {row["probe"] for row in table["rows"]}
    assert any("random-linear.json" in p for p in probes) and len(probes) == 5
    svm = json.loads((out / "table1-svm.json").read_text())
    assert all(0 <= v <= 1 for row in svm["rows"] for v in row["values"].values())
    assert (out / "fig2-3.png").stat().st_size > 1000 and (out / "fig4.png").exists()
    entropy = json.loads((out / "clusters" / "odct_eb_k4.json").read_text())
    assert entropy["intra_track_entropy"] >= 0
    # a second make has nothing to do
    again = ["all", "TOY=1", f"OUT={out}"]
    assert _make(folder, "-q", *again).returncode == 0
    # deleting one report reruns only that probe and the table built from it
    (out / "reports" / "random-linear.json").unlink()
    dry = _make(folder, "-n", *again)
    commands = [line for line in dry.stdout.splitlines() if " -m vcl " in line]
    assert len(commands) == 2, commands
    assert "probe linear" in commands[0] and "probe compare" in commands[1]
    assert _make(folder, *again).returncode == 0
    assert _make(folder, "-q", *again).returncode == 0
