"""vcl pretrain (image family): tiny end-to-end runs, exact resume, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import cli as invoke
from tests.conftest import metrics, without_timing
from vcl.errors import ExitCode
from vcl.pretrain import METHODS

TINY = ["--arch", "resnet18", "--size", "32", "--batch-size", "16", "--k", "3",
        "--min-cluster", "2", "--device", "cpu", "--workers", "0", "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """≈ 30 crops (33 px) of the ground-truth tracks of 3 tiny synthetic videos."""
    root = tmp_path_factory.mktemp("pretrain")
    r = invoke("synth", root / "synth", "--videos", 3, "--frames", 12, "--width", 71,
               "--height", 53, "--min-objects", 2, "--max-objects", 3, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = invoke("crops", root / "synth" / "gt_tracks.jsonl", "--videos",
               root / "synth" / "videos.jsonl", "-o", root / "crops.zarr", "--per-track", 4,
               "--size", 33, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    return root / "crops.zarr"


@pytest.mark.parametrize(
    "method",
    [
        m
        for m in METHODS
        if not m.startswith("video-") and m not in ("slic", "triplet", "moving-clusters")
    ],  # video, triplet (pairs), moving-clusters (+ videos): their own test files
)
def test_each_method_writes_a_valid_run_directory(crops: Path, method: str, monkeypatch) -> None:
    import shlex
    import sys

    from vcl.backbones import build_backbone, load_backbone
    from vcl.io.store import Store

    run = crops.parent / f"run-{method}"
    typed = ["vcl", "pretrain", str(crops), "--method", method]  # the command as a shell ran it
    monkeypatch.setattr(sys, "argv", typed)
    r = invoke("pretrain", crops, "--method", method, "--epochs", 2, "-o", run, *TINY)
    assert r.exit_code == 0, r.output
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == method and config["arch"] == "resnet18"
    assert config["k"] == 3 and config["seed"] == 0 and config["lr"] == 0.015
    assert config["memory_momentum"] == 0.5 and config["centroid_interval"] == 10
    assert "vcl_version" in config and config["command"] == shlex.join(typed)
    n = Store(crops, kind="crops").n_rows
    assert config["samples"] == n

    state = torch.load(run / "checkpoint.pt", weights_only=True)
    reference = build_backbone("resnet18").state_dict()
    assert state["backbone"].keys() == reference.keys()
    assert state["epoch"] == 2 and state["method"] == method
    mem = state["method_state"]["memory"]
    assert mem["features"].shape == (n, 256) and mem["centroids"].shape == (3, 256)
    np.testing.assert_allclose(mem["features"].norm(dim=1).numpy(), 1.0, rtol=1e-4)
    model, cfg = load_backbone(run)
    assert cfg["arch"] == "resnet18"
    assert torch.equal(
        model.state_dict()["net.conv1.weight"], state["backbone"]["net.conv1.weight"]
    )

    lines = metrics(run)
    assert [m["epoch"] for m in lines] == [0, 1, 2]
    for m in lines[1:]:
        assert np.isfinite(m["loss"]) and 0 <= m["change_ratio"] <= 1
        assert m["cluster_min"] >= 2 and m["clusters_empty"] == 0 and m["samples_per_s"] > 0
        assert m["intra_track_entropy"] >= 0
    labels = np.load(run / "labels_epoch_2.npy")
    assert labels.shape == (n,) and np.array_equal(labels, mem["labels"].numpy())
    if method != "odc":  # track-k-means init: every track starts in one cluster
        assert lines[0]["intra_track_entropy"] == 0.0


def test_resume_after_epoch_1_equals_the_uninterrupted_run(crops: Path) -> None:
    full = crops.parent / "run-odct"
    if not (full / "checkpoint.pt").exists():
        r = invoke("pretrain", crops, "--method", "odct", "--epochs", 2, "-o", full, *TINY)
        assert r.exit_code == 0, r.output
    part = crops.parent / "run-resumed"
    r = invoke("pretrain", crops, "--method", "odct", "--epochs", 1, "-o", part, *TINY)
    assert r.exit_code == 0, r.output
    # a finished run is not overwritten by accident
    r = invoke("pretrain", crops, "--method", "odct", "--epochs", 1, "-o", part, *TINY)
    assert r.exit_code == ExitCode.CANNOT_CREATE and "--resume" in r.stderr
    # options left out take the run's values
    r = invoke("pretrain", crops, "--epochs", 2, "--resume", part, "-q")
    assert r.exit_code == 0, r.output
    assert [without_timing(m) for m in metrics(part)] == [without_timing(m) for m in metrics(full)]
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    for name, value in a["backbone"].items():
        assert torch.equal(value, b["backbone"][name]), name
    assert torch.equal(a["method_state"]["memory"]["labels"], b["method_state"]["memory"]["labels"])
    assert len(json.loads((part / "config.json").read_text())["resumed"]) == 1


def test_step_schedule_scales_the_lr_after_each_step_and_resumes_on_it(crops: Path) -> None:
    from vcl.pretrain.loop import step_lr_scale

    assert [step_lr_scale(e, [2, 4], 0.1) for e in range(1, 6)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01]
    )
    sched = ["--lr-steps", "1", "--lr-gamma", "0.5"]
    full = crops.parent / "run-steps"
    r = invoke("pretrain", crops, "--method", "odc", "--epochs", 2, "-o", full, *TINY, *sched)
    assert r.exit_code == 0, r.output
    assert [m.get("lr") for m in metrics(full)] == [None, 0.015, 0.0075]
    state = torch.load(full / "checkpoint.pt", weights_only=True)
    assert {g["lr"] for g in state["optimizer"]["param_groups"]} == {0.0075}
    assert json.loads((full / "config.json").read_text())["lr_steps"] == [1]
    part = crops.parent / "run-steps-resumed"
    r = invoke("pretrain", crops, "--method", "odc", "--epochs", 1, "-o", part, *TINY, *sched)
    assert r.exit_code == 0, r.output
    r = invoke("pretrain", crops, "--epochs", 2, "--resume", part, "-q")
    assert r.exit_code == 0, r.output
    assert [without_timing(m) for m in metrics(part)] == [without_timing(m) for m in metrics(full)]
    # a run saved before the option existed had a constant lr: it resumes as such
    config = json.loads((part / "config.json").read_text())
    for key in ("lr_steps", "lr_gamma"):
        config.pop(key)
    (part / "config.json").write_text(json.dumps(config))
    r = invoke("pretrain", crops, "--epochs", 3, "--resume", part, "-q", *sched)
    assert r.exit_code == ExitCode.USAGE and "lr_steps ([] there, [1] now)" in r.stderr
    r = invoke("pretrain", crops, "--epochs", 3, "--resume", part, "-q")
    assert r.exit_code == 0, r.output
    assert metrics(part)[-1]["lr"] == 0.015


def test_head_batch_norm_is_odcs_and_an_older_head_is_refused_on_resume(crops: Path) -> None:
    """ODC's neck normalises without affine parameters and with momentum 0.001; a run
    saved with the earlier affine head used to fail on --resume with a torch traceback."""
    from vcl.pretrain.heads import ProjectionHead

    bn = ProjectionHead(8)[1]
    assert not bn.affine and bn.momentum == 0.001
    run = crops.parent / "run-odct"
    if not (run / "checkpoint.pt").exists():
        r = invoke("pretrain", crops, "--method", "odct", "--epochs", 2, "-o", run, *TINY)
        assert r.exit_code == 0, r.output
    old = crops.parent / "run-old-head"
    import shutil

    shutil.copytree(run, old)
    state = torch.load(old / "checkpoint.pt", weights_only=True)
    state["head"]["1.weight"] = torch.ones(512)
    torch.save(state, old / "checkpoint.pt")
    r = invoke("pretrain", crops, "--epochs", 3, "--resume", old, "-q")
    assert r.exit_code == ExitCode.DATA
    line = one_error_line(r.stderr)
    assert "run-old-head" in line and "head does not fit" in line and "1.weight" in line


def test_resume_with_other_settings_names_the_keys(crops: Path) -> None:
    run = crops.parent / "run-odct"
    if not (run / "checkpoint.pt").exists():
        pytest.skip("needs the odct run")
    tiny = [a if a != "3" else "2" for a in TINY]  # --k 2
    r = invoke("pretrain", crops, "--method", "odc", "--epochs", 3, "--resume", run, *tiny)
    assert r.exit_code == ExitCode.USAGE
    assert "method" in r.stderr and "'odct'" in r.stderr and "k (3" in r.stderr
    assert "epochs" not in r.stderr


def test_init_from_another_run(crops: Path) -> None:
    src = crops.parent / "run-odc"
    if not (src / "checkpoint.pt").exists():
        pytest.skip("needs the odc run")
    run = crops.parent / "run-init"
    r = invoke("pretrain", crops, "--method", "odc", "--epochs", 1, "--init", src, "-o", run,
               "--lr", 0, "--weight-decay", 0, *TINY)  # fmt: skip
    assert r.exit_code == 0, r.output
    a = torch.load(src / "checkpoint.pt", weights_only=True)["backbone"]
    b = torch.load(run / "checkpoint.pt", weights_only=True)["backbone"]
    assert torch.equal(a["net.conv1.weight"], b["net.conv1.weight"])  # lr 0: weights kept


def test_crops_without_track_ids(tmp_path: Path) -> None:
    from vcl.crops import columns_spec
    from vcl.io.store import StoreWriter

    path = tmp_path / "notracks.zarr"
    spec = {k: v for k, v in columns_spec(9).items() if k != "track_id"}
    rng = np.random.default_rng(0)
    with StoreWriter(path, "vcl.crops/1", {}) as w:
        w.define_columns(spec)
        w.append_group("v", image=rng.integers(0, 255, (12, 9, 9, 3), dtype=np.uint8),
                       video_id=np.array(["v"] * 12), frame=np.arange(12, dtype=np.int32),
                       box=np.zeros((12, 4), np.float32))  # fmt: skip
    for method in ("odct", "odc-trackinit"):
        r = invoke("pretrain", path, "--method", method, "-o", tmp_path / method, *TINY)
        assert r.exit_code == ExitCode.DATA
        assert "track ids" in r.stderr and "--method odc" in r.stderr and str(path) in r.stderr
        assert not (tmp_path / method / "checkpoint.pt").exists()


def test_k_larger_than_tracks(crops: Path, tmp_path: Path) -> None:
    from vcl.pretrain.data import open_crops

    tracks = open_crops(crops).n_tracks
    args = ["--k", tracks + 1, "--min-cluster", 1]
    r = invoke("pretrain", crops, "--method", "odc-trackinit", "-o", tmp_path / "r", *TINY, *args)
    assert r.exit_code == ExitCode.DATA  # as vcl cluster's k > N: the data holds too few
    assert f"--k {tracks + 1}" in r.stderr and f"({tracks})" in r.stderr


def test_bad_options(crops: Path, tmp_path: Path) -> None:
    r = invoke("pretrain", crops, "--method", "simclr", "-o", tmp_path / "r", *TINY)
    assert r.exit_code == ExitCode.USAGE and "unknown method" in r.stderr
    r = invoke("pretrain", crops, "--method", "odc", "-o", tmp_path / "r", *TINY,
               "--arch", "r3d_18")  # fmt: skip
    assert r.exit_code == ExitCode.USAGE and "video network" in r.stderr
    r = invoke("pretrain", crops, "--method", "odc", "-o", tmp_path / "r", *TINY, "--amp", "bf16")
    assert r.exit_code == ExitCode.USAGE and "CUDA" in r.stderr
    r = invoke("pretrain", tmp_path / "missing.zarr", "--method", "odc", "-o", tmp_path / "r")
    assert r.exit_code == ExitCode.NO_INPUT


def _torchrun(crops: Path, *args: object) -> None:
    """``torchrun --nproc_per_node 2 -m vcl pretrain CROPS --method odct ...`` (gloo, CPU)."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(29500 + os.getpid() % 1000), "-m", "vcl", "pretrain",
           str(crops), "--method", "odct", *TINY, *map(str, args)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_two_processes_under_torchrun(crops: Path) -> None:
    """The DDP path on the CPU (gloo): two ranks split each batch, all-gather the memory
    updates and agree; rank 0 writes a valid run directory."""
    full = crops.parent / "ddp-full"
    _torchrun(crops, "--epochs", 2, "-o", full)
    config = json.loads((full / "config.json").read_text())
    assert config["world_size"] == 2
    assert [m["epoch"] for m in metrics(full)] == [0, 1, 2]
    state = torch.load(full / "checkpoint.pt", weights_only=True)
    assert state["method_state"]["memory"]["labels"].shape == (config["samples"],)


@pytest.mark.slow  # three torchrun launches of three processes each: VCL_SLOW_TESTS=1 runs it
def test_resume_under_torchrun_is_exact(crops: Path) -> None:
    """A DDP run stopped after epoch 1 and resumed under torchrun reaches the metrics of
    the uninterrupted DDP run (sampler, memory and cluster state of both ranks)."""
    full, part = crops.parent / "ddp-full-2", crops.parent / "ddp-part"
    _torchrun(crops, "--epochs", 2, "-o", full)
    _torchrun(crops, "--epochs", 1, "-o", part)
    _torchrun(crops, "--epochs", 2, "--resume", part)
    assert [without_timing(m) for m in metrics(part)] == [without_timing(m) for m in metrics(full)]


def test_resume_on_an_input_of_another_size_is_refused(tmp_path: Path) -> None:
    """Per-sample checkpoint state made for n samples never resumes on another count."""
    from vcl.errors import DataError
    from vcl.pretrain import check_resumed_size

    check_resumed_size(12, 12, tmp_path, "pairs", "pairs store")  # same size: fine
    with pytest.raises(DataError) as err:
        check_resumed_size(12, 11, tmp_path, "pairs", "pairs store")
    assert "covers 12 pairs" in str(err.value) and "holds 11" in str(err.value)
    assert err.value.exit_code == ExitCode.DATA


def test_resume_on_shards_in_another_order_is_refused(crops: Path, tmp_path: Path) -> None:
    """Memories were restored by row: shards given in another order used to resume with
    every crop paired with another crop's memory feature and cluster label."""
    synth = crops.parent / "synth"
    shards = [tmp_path / f"s{i}.zarr" for i in range(2)]
    for i, shard in enumerate(shards):
        r = invoke("crops", synth / "gt_tracks.jsonl", "--videos", synth / "videos.jsonl",
                   "-o", shard, "--per-track", 4, "--size", 33, "--shard", f"{i}/2",
                   "-q")  # fmt: skip
        assert r.exit_code == 0, r.output
    run = tmp_path / "run"
    r = invoke("pretrain", *shards, "--method", "odct", "--epochs", 1, "-o", run, *TINY)
    assert r.exit_code == 0, r.output
    before = (run / "checkpoint.pt").read_bytes()
    r = invoke("pretrain", *shards[::-1], "--epochs", 2, "--resume", run, "-q")
    assert r.exit_code == ExitCode.DATA
    line = one_error_line(r.stderr)
    assert "same samples in another order" in line and f"{shards[0]} {shards[1]}" in line
    assert (run / "checkpoint.pt").read_bytes() == before and len(metrics(run)) == 2
    r = invoke("pretrain", *shards, "--epochs", 2, "--resume", run, "-q")
    assert r.exit_code == 0, r.output


def test_resume_on_other_samples_of_the_same_count_is_refused(tmp_path: Path) -> None:
    from vcl.errors import DataError
    from vcl.pretrain import check_resumed_inputs, inputs_fingerprint

    saved = inputs_fingerprint(np.array(["v0\t1\t0", "v0\t1\t5", "v1\t2\t0"]))
    check_resumed_inputs(saved, saved, tmp_path, "a.zarr")
    other = inputs_fingerprint(np.array(["v0\t1\t0", "v0\t1\t6", "v1\t2\t0"]))
    with pytest.raises(DataError, match=r"other samples \(3\) than the 3 given.*a\.zarr"):
        check_resumed_inputs(saved, other, tmp_path, "a.zarr")
    swapped = inputs_fingerprint(np.array(["v1\t2\t0", "v0\t1\t0", "v0\t1\t5"]))
    with pytest.raises(DataError, match="another order"):
        check_resumed_inputs(saved, swapped, tmp_path, ["a.zarr", "b.zarr"])


def test_resume_names_a_key_the_older_run_lacks(tmp_path: Path) -> None:
    """A setting added after the run was saved is named as such, not as 'None there'."""
    from vcl.errors import UsageError
    from vcl.pretrain.loop import check_resumable

    saved = {"method": "odc", "arch": "resnet18", "k": 3}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    (tmp_path / "checkpoint.pt").write_bytes(b"")

    class Config:
        def flat(self) -> dict:
            return {**saved, "refine_restarts": 4}

    with pytest.raises(UsageError, match=r"refine_restarts \(absent there: saved by an older"):
        check_resumable(tmp_path, Config())  # type: ignore[arg-type]


def one_error_line(stderr: str) -> str:
    """The single ``error:`` line of a failed command (and no traceback)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_output_and_resume_paths_fail_in_one_line(crops: Path, tmp_path: Path) -> None:
    """-o on a file is exit 73 (not an internal FileExistsError); --resume of a missing
    run is a missing input (66); the image/video mismatch reads 'an image network'."""
    afile = tmp_path / "afile"
    afile.write_text("")
    r = invoke("pretrain", crops, "--method", "odct", "-o", afile, *TINY)
    assert r.exit_code == ExitCode.CANNOT_CREATE
    assert f"{afile}: is a file" in one_error_line(r.stderr)
    nope = tmp_path / "nope"
    r = invoke("pretrain", crops, "--resume", nope, "-q")
    assert r.exit_code == ExitCode.NO_INPUT
    assert f"{nope}: no such run directory" in one_error_line(r.stderr)
    r = invoke("pretrain", crops, "--method", "video-ir", "-o", tmp_path / "v", *TINY)
    assert r.exit_code == ExitCode.USAGE
    assert "resnet18 is an image network" in one_error_line(r.stderr)


def test_a_failed_run_leaves_no_empty_folder_it_made(crops: Path, tmp_path: Path) -> None:
    """A bad --init fails after the run folder is made: the folders this run created
    go (parents too), a folder that was there before stays."""
    r = invoke("pretrain", crops, "--method", "odc", "-o", tmp_path / "new" / "run",
               "--init", tmp_path / "nope", *TINY)  # fmt: skip
    assert r.exit_code == ExitCode.NO_INPUT, r.output
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    r = invoke("pretrain", crops, "--method", "odc", "-o", tmp_path / "mine",
               "--init", tmp_path / "nope", *TINY)  # fmt: skip
    assert r.exit_code == ExitCode.NO_INPUT and (tmp_path / "mine").is_dir()


def test_resume_with_fewer_epochs_than_done_is_refused(crops: Path, tmp_path: Path) -> None:
    """--epochs counts epochs in all: fewer than the run has done is refused, and
    config.json keeps the run's record."""
    import shutil

    full = crops.parent / "run-odct"
    if not (full / "checkpoint.pt").exists():
        r = invoke("pretrain", crops, "--method", "odct", "--epochs", 2, "-o", full, *TINY)
        assert r.exit_code == 0, r.output
    run = tmp_path / "run"
    shutil.copytree(full, run)
    before = (run / "config.json").read_text()
    r = invoke("pretrain", crops, "--epochs", 1, "--resume", run, "-q")
    assert r.exit_code == ExitCode.USAGE
    assert "already done 2 epochs" in one_error_line(r.stderr)
    assert (run / "config.json").read_text() == before


def finished_run(crops: Path, tmp_path: Path) -> Path:
    """A copy of the module's 2-epoch odct run (trained once, by whichever test is first)."""
    import shutil

    full = crops.parent / "run-odct"
    if not (full / "checkpoint.pt").exists():
        r = invoke("pretrain", crops, "--method", "odct", "--epochs", 2, "-o", full, *TINY)
        assert r.exit_code == 0, r.output
    run = tmp_path / "run"
    shutil.copytree(full, run)
    return run


def test_damaged_run_files_are_bad_data_in_one_line(crops: Path, tmp_path: Path) -> None:
    """A damaged config.json, checkpoint.pt or metrics.jsonl stops --resume with exit 65
    and one line naming the file (not an internal error, 70); vcl embed, which shares the
    readers, says the same."""
    run = finished_run(crops, tmp_path)
    good = (run / "config.json").read_text()
    (run / "config.json").write_text("{bad\n")
    r = invoke("pretrain", crops, "--epochs", 2, "--resume", run, "-q")
    assert r.exit_code == ExitCode.DATA, r.output
    line = one_error_line(r.stderr)
    assert f"{run}: config.json is not valid JSON" in line and "rerun the training" in line
    e = invoke("embed", run, crops, "-o", tmp_path / "e.zarr", "--device", "cpu", "-q")
    assert e.exit_code == ExitCode.DATA and one_error_line(e.stderr) == line

    (run / "config.json").write_text(good)
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # truncated
    r = invoke("pretrain", crops, "--epochs", 2, "--resume", run, "-q")
    assert r.exit_code == ExitCode.DATA, r.output
    line = one_error_line(r.stderr)
    assert f"{run}: checkpoint.pt cannot be loaded" in line and "truncated or damaged" in line
    e = invoke("embed", run, crops, "-o", tmp_path / "e.zarr", "--device", "cpu", "-q")
    assert e.exit_code == ExitCode.DATA and one_error_line(e.stderr) == line

    (run / "checkpoint.pt").write_bytes(data)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 3, "lo\n')
    r = invoke("pretrain", crops, "--epochs", 3, "--resume", run, "-q")
    assert r.exit_code == ExitCode.DATA, r.output
    assert f"{run / 'metrics.jsonl'}: line 4: not a metrics record" in one_error_line(r.stderr)
    assert (run / "config.json").read_text() == good  # refused before anything was written


def test_run_files_of_another_schema_version_are_refused(crops: Path, tmp_path: Path) -> None:
    """config.json or checkpoint.pt of a newer major version is refused by --resume and
    embed with the stores' message (exit 65); runs saved before the field existed load."""
    run = finished_run(crops, tmp_path)
    config = json.loads((run / "config.json").read_text())
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert config["schema"] == state["schema"] == "vcl.pretrain_run/1"
    expected = "schema vcl.pretrain_run/2 is not the vcl.pretrain_run/1 this vcl reads; upgrade vcl"

    def refused(name: str) -> None:
        r = invoke("pretrain", crops, "--epochs", 2, "--resume", run, "-q")
        assert r.exit_code == ExitCode.DATA, r.output
        assert one_error_line(r.stderr) == f"error: {run / name}: {expected}"
        e = invoke("embed", run, crops, "-o", tmp_path / "e.zarr", "--device", "cpu", "-q")
        assert e.exit_code == ExitCode.DATA, e.output
        assert one_error_line(e.stderr) == f"error: {run / name}: {expected}"

    (run / "config.json").write_text(json.dumps({**config, "schema": "vcl.pretrain_run/2"}))
    refused("config.json")
    (run / "config.json").write_text(json.dumps(config))
    torch.save({**state, "schema": "vcl.pretrain_run/2"}, run / "checkpoint.pt")
    refused("checkpoint.pt")

    # written before the field existed: read as version 1
    (run / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "schema"}))
    torch.save({k: v for k, v in state.items() if k != "schema"}, run / "checkpoint.pt")
    r = invoke("pretrain", crops, "--epochs", 2, "--resume", run, "-q")
    assert r.exit_code == 0, r.output
    e = invoke("embed", run, crops, "-o", tmp_path / "e.zarr", "--device", "cpu", "-q")
    assert e.exit_code == 0, e.output


def test_default_workers_are_at_most_the_available_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """--workers left out: 4 DataLoader processes, fewer where fewer cores are ours."""
    import os

    from vcl.pretrain.loop import TrainConfig, default_workers

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity mask on this system")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert default_workers() == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert default_workers() == 2
    assert TrainConfig(input="c.zarr", method="odct", output="run").workers == 2


def test_quiet_run_writes_nothing_to_stderr(crops: Path, tmp_path: Path) -> None:
    """-q keeps only errors: a run with the default --workers on one core writes nothing
    on stderr (no torch 'This DataLoader will create 4 worker processes' warnings)."""
    import os
    import subprocess
    import sys

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity mask on this system")
    args = [a for a in TINY if a not in ("--workers", "0")]
    cmd = [sys.executable, "-m", "vcl", "pretrain", str(crops), "--method", "odct",
           "--epochs", "1", "-o", str(tmp_path / "run"), *args]  # fmt: skip
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""
    assert json.loads((tmp_path / "run" / "config.json").read_text())["workers"] == 1


def _chunked_crops(path: Path, images: np.ndarray, first: int = 0, chunk: int = 4) -> None:
    """Crops ``first``, ``first + 1``... as a crops store with ``chunk`` images a chunk."""
    from vcl.crops import columns_spec
    from vcl.io.store import StoreWriter

    n, size = len(images), images.shape[1]
    with StoreWriter(path, "vcl.crops/1", {"size": size}) as w:
        w.define_columns(columns_spec(size), chunk_rows={"image": chunk})
        for start in range(0, n, 7):  # groups of 7 rows: not chunk-aligned
            rows, vid = slice(start, min(start + 7, n)), f"v{first + start}"
            k = rows.stop - rows.start
            w.append_group(vid, image=images[rows], track_id=np.array([vid] * k),
                           video_id=np.array([vid] * k), frame=np.arange(k, dtype=np.int32),
                           box=np.zeros((k, 4), np.float32))  # fmt: skip


class _CountingColumn:
    """A zarr column that records the row slices read from it."""

    def __init__(self, array: object) -> None:
        self.array, self.reads = array, []
        self.shape, self.dtype, self.chunks = array.shape, array.dtype, array.chunks  # type: ignore[attr-defined]

    def __getitem__(self, key: slice) -> np.ndarray:
        self.reads.append((key.start, key.stop))
        return self.array[key]  # type: ignore[index]


def test_loader_batches_read_by_chunk_are_the_rows_asked_for(tmp_path: Path) -> None:
    """A batch is read one touched chunk (or run of chunks) at a time and is bit for bit
    the rows asked for, in their order: random rows, repeats, rows sharing a chunk, the
    last (short) chunk; across the inputs of several stores read as one."""
    import vcl.pretrain.data
    from vcl.io.store import Store
    from vcl.pretrain.data import CropsBatches, open_crops_store, read_rows

    g = np.random.default_rng(5)
    images = g.integers(0, 256, (38, 9, 9, 3), dtype=np.uint8)  # chunks of 4: the last has 2
    _chunked_crops(tmp_path / "a.zarr", images[:23])
    _chunked_crops(tmp_path / "b.zarr", images[23:], first=23)
    _chunked_crops(tmp_path / "all.zarr", images)
    batches = [
        g.integers(0, 38, 64),  # repeats
        np.array([37, 36, 0, 1, 2, 3, 3, 9, 8, 37, 22, 23, 24]),  # chunk-mates, ends, seam
        g.permutation(38)[:17],
        np.array([5, 5]),
    ]
    for paths in ([tmp_path / "all.zarr"], [tmp_path / "a.zarr", tmp_path / "b.zarr"]):
        data = CropsBatches(paths if len(paths) > 1 else paths[0], batches)
        column = open_crops_store(paths)["image"]
        for i, idx in enumerate(batches):
            got, got_idx = data[i]
            assert got.dtype == torch.uint8 and got_idx.tolist() == idx.tolist()
            assert np.array_equal(got.numpy(), images[idx])
            # what zarr's orthogonal selection (the reader before) gives
            assert np.array_equal(got.numpy(), column.get_orthogonal_selection((idx,)))
    column = _CountingColumn(Store(tmp_path / "all.zarr")["image"])
    idx = batches[1]
    assert np.array_equal(read_rows(column, idx), images[idx])
    touched = set(idx // 4)
    read = [c for start, stop in column.reads for c in range(start // 4, -(-stop // 4))]
    assert sorted(read) == sorted(touched)  # each touched chunk once, no other
    assert all(start % 4 == 0 for start, _ in column.reads)
    assert len(column.reads) == 4  # runs of chunks: {0}, {2}, {5, 6}, {9}
    column.reads.clear()
    with pytest.MonkeyPatch.context() as m:  # slices of at most one chunk: 5 reads
        m.setattr(vcl.pretrain.data, "_SLICE_BYTES", 4 * 9 * 9 * 3)
        assert np.array_equal(read_rows(column, idx), images[idx])
    assert column.reads == [(0, 4), (8, 12), (20, 24), (24, 28), (36, 38)]
    with pytest.raises(IndexError, match="row 38"):
        read_rows(column, np.array([1, 38]))
    assert read_rows(column, np.zeros(0, np.int64)).shape == (0, 9, 9, 3)


def test_an_output_folder_that_cannot_be_made_is_one_error_line(
    crops: Path, tmp_path: Path
) -> None:
    (tmp_path / "afile").write_text("")  # a file where the run directory's parent should be
    r = invoke("pretrain", crops, "--epochs", 1, "-o", tmp_path / "afile" / "run", *TINY)
    assert r.exit_code == ExitCode.CANNOT_CREATE, r.output
    assert "afile/run: cannot create" in one_error_line(r.stderr)
