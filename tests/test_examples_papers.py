"""examples/: the four paper Makefiles (IDT prior, SLIC, tracking triplets, moving clusters).

Each toy target runs the real rules end to end on tiny `vcl synth` data; a second
`make -q` then reports everything up to date, and deleting one intermediate file reruns
only what depends on it. The dry runs check that the real-data commands carry the papers'
hyper-parameters and the sharding.
"""

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


def _make(folder: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-C", str(EXAMPLES / folder), f"VCL={VCL}", f"PYTHON={sys.executable}", *args],
        capture_output=True,
        text=True,
    )


def _toy(folder: str, out: Path) -> None:
    """Run the toy target, then check that a second make has nothing to do."""
    proc = _make(folder, "toy", f"TOY_OUT={out}", "-j2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _make(folder, "-q", "all", "TOY=1", f"OUT={out}").returncode == 0


def _reruns(folder: str, out: Path, deleted: Path) -> list[str]:
    """The vcl commands a make would run after `deleted` is removed."""
    shutil.rmtree(deleted) if deleted.is_dir() else deleted.unlink()
    dry = _make(folder, "-n", "all", "TOY=1", f"OUT={out}")
    assert dry.returncode == 0, dry.stderr
    return [line for line in dry.stdout.splitlines() if " -m vcl " in line]


def _dry(folder: str, *args: str) -> str:
    proc = _make(folder, "-n", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _assert_dry_run_carries(folder: str, out: Path, expected: tuple[str, ...], *args: str) -> None:
    """``make -n OUT=out ARGS`` prints every expected piece of a command and makes nothing."""
    text = _dry(folder, f"OUT={out}", *args)
    for piece in expected:
        assert piece in text, piece
    assert not out.exists()


@pytest.mark.parametrize(
    "folder", ["idt-prior-kinetics", "slic-ucf101", "tracking-triplets", "moving-clusters"]
)
def test_makefile_refuses_to_run_without_data(folder: str, tmp_path: Path) -> None:
    proc = _make(folder, f"OUT={tmp_path}")
    assert proc.returncode != 0 and "give " in proc.stderr and "make toy" in proc.stderr
    text = (EXAMPLES / folder / "Makefile").read_text()
    assert ".DELETE_ON_ERROR:" in text and "\ntoy:" in text


def test_idt_prior_real_commands_carry_the_papers_settings(tmp_path: Path) -> None:
    ucf, hmdb = tmp_path / "ucf.jsonl", tmp_path / "hmdb.jsonl"
    ucf.write_text("")
    hmdb.write_text("")
    expected = ("vcl idt", "--shard 2/3", "--parts joint --k 256", "--sketch-dim 2000",
                "torchrun --nproc_per_node 4 -m vcl pretrain", "--method video-ir",
                "--epochs 40", "--method video-la-idt", "--k 6000 --runs 3",
                "--joint-epochs 10", "--split-field split3", "probe knn", "hmdb51")  # fmt: skip
    _assert_dry_run_carries("idt-prior-kinetics", tmp_path / "o", expected, "DATA=/data/kinetics",
                            f"UCF={ucf}", f"HMDB={hmdb}", "GPUS=4", "SHARDS=3")  # fmt: skip


@pytest.mark.slow  # minutes of CPU: VCL_SLOW_TESTS=1 runs it
def test_idt_prior_toy(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    _toy("idt-prior-kinetics", out)
    for probe in ("linear", "knn"):
        table = json.loads((out / f"table-ucf101-{probe}.json").read_text())
        sources = [row["source"] for row in table["rows"]]
        assert len(sources) == 5  # ir, la, la-idt, joint, random
        assert all(0 <= v <= 1 for row in table["rows"] for v in row["values"].values())
    prior = json.loads((out / "prior.json").read_text())
    assert prior["samples"] == 8 and 0 <= prior["nmi"] <= 1
    # the joint finetune starts on the prior's clusters, then re-clusters [embedding || prior]
    lines = (out / "runs/joint/metrics.jsonl").read_text().splitlines()
    joint = [json.loads(line)["joint"] for line in lines]
    assert joint == [False, False, True]  # epochs 0 (initial clustering), 1, 2
    # deleting the joint run's marker retrains only it and what reads it
    commands = _reruns("idt-prior-kinetics", out, out / "runs/joint/labels_epoch_2.npy")
    assert sum("pretrain" in c for c in commands) == 1
    assert not any("vcl idt" in c or "fisher" in c for c in commands)


def test_slic_real_commands_carry_the_papers_settings(tmp_path: Path) -> None:
    ucf = tmp_path / "ucf.jsonl"
    ucf.write_text("")
    expected = ("--method slic", "--lr 0.1", "--cluster-every 5", "--p-same 0.2",
                "--triplet-margin 0.2", "--temporal-margin 0.04", "--flow-prob",
                "--no-temporal", "--no-clustering", "--shard 2/3", "merge",
                "-k 1,5,10,20,50", "--split-field split1")  # fmt: skip
    _assert_dry_run_carries("slic-ucf101", tmp_path / "o", expected, f"UCF={ucf}", "EMBED_SHARDS=3")


@pytest.mark.slow  # minutes of CPU: VCL_SLOW_TESTS=1 runs it
def test_slic_toy(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    _toy("slic-ucf101", out)
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert train and all(r["split"] == "train" and Path(r["path"]).is_file() for r in train)
    for model in ("slic", "random"):
        report = json.loads((out / "retrieval" / f"{model}.json").read_text())
        recall = report["recall"]
        assert list(recall) == ["R@1", "R@2", "R@4"]
        assert recall["R@1"] <= recall["R@2"] <= recall["R@4"] <= 1
        assert report["queries"] == 2 and report["gallery_size"] == 6  # synth: 2 test, 6 train
    commands = _reruns("slic-ucf101", out, out / "features" / "slic.zarr")
    assert len(commands) == 2 and "merge" in commands[0] and "retrieve eval" in commands[1]


def test_tracking_triplets_real_commands_carry_the_papers_settings(tmp_path: Path) -> None:
    probe = tmp_path / "probe.jsonl"
    probe.write_text("")
    expected = ("--method kcf", "--length 30 --box-size 227", "--shard 2/3", "merge",
                "--pairs --size 227", "torchrun --nproc_per_node 4 -m vcl pretrain",
                "--method triplet", "--margin 0.5 --hard-k 4", "--random-neg-epochs 10",
                "--weight-decay 5e-4", "probe svm", "--ignore-field difficult", "--costs goyal",
                "random:alexnet")  # fmt: skip
    _assert_dry_run_carries("tracking-triplets", tmp_path / "o", expected, "DATA=/data/youtube",
                            f"PROBE={probe}", f"VOC={probe}", "GPUS=4", "SHARDS=3")  # fmt: skip


def test_moving_clusters_real_commands_carry_the_settings(tmp_path: Path) -> None:
    gt = tmp_path / "gt.jsonl"
    gt.write_text("")
    expected = ("--method motion", "--shard 2/3", "--ttl 3 --min-len 10",
                "--per-track 10 --size 224", "--method moving-clusters", "--k 10",
                "--l2-weight 0.01 --balance-weight 1 --disc-weight 1",
                "cluster eval")  # fmt: skip
    _assert_dry_run_carries(
        "moving-clusters", tmp_path / "o", expected, "DATA=/data/videos", f"GT={gt}", "SHARDS=3"
    )


@pytest.mark.slow  # a minute of CPU: VCL_SLOW_TESTS=1 runs it
def test_tracking_triplets_toy(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    _toy("tracking-triplets", out)
    for probe in ("linear", "svm"):
        table = json.loads((out / f"table-{probe}.json").read_text())
        assert len(table["rows"]) == 2  # triplet, random
        assert all(0 <= v <= 1 for row in table["rows"] for v in row["values"].values())
    tracks = [json.loads(x) for x in (out / "tracks.jsonl").read_text().splitlines()]
    assert tracks and all(t["method"] == "kcf" for t in tracks)
    assert len({t["video_id"] for t in tracks}) >= 2  # negatives come from other videos
    commands = _reruns("tracking-triplets", out, out / "reports" / "triplet-svm.json")
    assert len(commands) == 2 and "probe svm" in commands[0] and "compare" in commands[1]


@pytest.mark.slow  # minutes of CPU: VCL_SLOW_TESTS=1 runs it
def test_moving_clusters_toy(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    _toy("moving-clusters", out)
    for name in ("clusters", "clusters-random"):
        report = json.loads((out / f"{name}.json").read_text())
        assert report["labelled"] > 0 and 0 <= report["nmi"] <= 1
        assert report["sizes"]["clusters"] == 3
    labels = [json.loads(x) for x in (out / "crop-labels.jsonl").read_text().splitlines()]
    classes = {r["label"] for r in labels if "label" in r}
    assert classes and all("@" in r["id"] for r in labels)
    commands = _reruns("moving-clusters", out, out / "crop-labels.jsonl")
    assert len(commands) == 2 and all("cluster eval" in c for c in commands)
