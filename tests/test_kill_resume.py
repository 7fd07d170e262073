"""Kill-and-resume: every stage that writes a store or a JSONL file survives SIGKILL.

Each stage runs as a real subprocess on tiny ``vcl synth`` data, is killed (SIGKILL) at
a few seeded random moments after its ``.partial`` output appears, and is then rerun
to completion. The final output must equal an uninterrupted run's, and while only the
partial output exists no reader (``Store``, ``read_records``, ``vcl info``) may accept
it. Subprocesses run with ``StoreWriter`` flushing after every group (see
``_SMALL_BATCHES``) so that kills land between group commits and the resume path
(trim uncommitted rows, skip finished groups) is exercised, not only a restart.

Adding a stage is one line in ``STAGES``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vcl.errors import ExitCode, VclError
from vcl.io.manifest import TrackRecord, VideoRecord, read_records
from vcl.io.store import Store, partial_path

# Run vcl with StoreWriter committing every group at once (instead of ~4 MiB batches,
# which tiny data never fills), so a kill can leave some groups committed.
_SMALL_BATCHES = """
import sys
from vcl.io.store import StoreWriter
_append = StoreWriter.append_group
def _append_and_flush(self, group_id, **columns):
    _append(self, group_id, **columns)
    self.flush()
StoreWriter.append_group = _append_and_flush
from vcl.cli.app import main
sys.argv = ["vcl", *sys.argv[1:]]
main()
"""

SYNTH = "synth {out} --videos 5 --width 64 --height 48 --frames 14 --seed 3"
FAST_IDT = "--track-length 5 --no-humans"
FIT = "--k 2 --sample-videos 6 --per-video 50 --pca-dim 4 --iters 3 --inits 1 --device cpu"


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage under test: its command line (``{out}`` and upstream names) and output."""

    name: str
    command: str  # placeholders: {out}, {data} (synth folder), and earlier stages' names
    output: str  # file name of the output; a folder for synth
    kind: str  # store | jsonl | synth | index | text (a folder of VIDEO_ID.txt files)
    kills: int = 2
    max_delay: float = 0.8  # seconds after the output appears before the kill
    exact: bool = True  # deterministic: values must match the uninterrupted run
    watch: bool = True  # False: kill a random moment after the start (tiny write window)


STAGES = [
    Stage("synth", SYNTH, "data", "synth", max_delay=0.3),
    Stage(
        "videos",
        "videos {data}/videos.jsonl --count -o {out}",
        "videos.jsonl",
        "jsonl",
        max_delay=0.02,
    ),
    Stage(
        "proposals",
        "proposals {data}/videos.jsonl -o {out} --max-side 0 --min-area 100",
        "p.zarr",
        "store",
    ),
    Stage(
        "track",
        "track {proposals} --videos {data}/videos.jsonl -o {out} --min-len 3 --no-flow",
        "t.jsonl",
        "jsonl",
        max_delay=1.5,  # its .partial appears before the (slow) imports of the trackers
    ),
    Stage(
        "crops",
        "crops {track} --videos {data}/videos.jsonl -o {out} --size 16 --per-track 3",
        "c.zarr",
        "store",
    ),
    Stage("idt", f"idt {{data}}/videos.jsonl -o {{out}} {FAST_IDT}", "i.zarr", "store"),
    Stage(
        "fisher_fit",
        f"fisher fit {{idt}} -o {{out}} {FIT} --columns traj,hog",
        "fm.zarr",
        "store",
        kills=1,
        max_delay=0.05,
    ),
    Stage(
        "fisher_encode",
        "fisher encode {idt} --model {fisher_fit} -o {out} --sketch-dim 0 --device cpu",
        "f.zarr",
        "store",
        kills=1,
        max_delay=0.2,
    ),
    Stage(
        "embed",
        "embed random:resnet18 {crops} -o {out} --device cpu --batch-size 4",
        "e.zarr",
        "store",
        max_delay=1.5,  # torch's import comes before the first group
    ),
    Stage(
        "cluster",
        "cluster run {fisher_encode} -o {out} --k 2 --device cpu",
        "cl.zarr",
        "store",
        max_delay=0.0,
    ),
    Stage(  # built in memory, then the index and its metadata (the commit) renamed in
        "retrieve_index",
        "retrieve index {fisher_encode} -o {out} --device cpu",
        "r.index",
        "index",
        max_delay=4.0,
        watch=False,
    ),
    Stage("merge", "merge {proposals} -o {out}", "m.zarr", "store", max_delay=0.3),
    Stage(  # written beside and renamed in one go: killed a random moment after the start
        "cluster_jsonl",
        "cluster run {fisher_encode} --jsonl -o {out} --k 2 --device cpu",
        "cl.jsonl",
        "jsonl",
        max_delay=3.0,
        watch=False,
    ),
    Stage(  # one VIDEO_ID.txt per video, each written beside and renamed
        "idt_text",
        f"idt {{data}}/videos.jsonl --format text -o {{out}} {FAST_IDT}",
        "itxt",
        "text",
        max_delay=0.5,
    ),
]


def argv(stage: Stage, out: Path, paths: dict[str, Path]) -> list[str]:
    names = {k: str(v) for k, v in paths.items()}
    return stage.command.format(out=str(out), **names).split()


def vcl(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", _SMALL_BATCHES, *args], cwd=cwd, env=env, **kwargs
    )


def run_to_end(args: list[str], cwd: Path) -> str:
    log = cwd / "last.log"
    with log.open("w") as err:
        proc = vcl(args, cwd, stdout=subprocess.DEVNULL, stderr=err)
        code = proc.wait(timeout=300)
    text = log.read_text()
    assert code == 0, f"vcl {' '.join(args)} failed ({code}):\n{text}"
    return text


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, Path]:
    """Every stage run once, uninterrupted: the expected outputs and the inputs of later ones."""
    from typer.testing import CliRunner

    from vcl.cli.app import app

    root = tmp_path_factory.mktemp("reference")
    paths: dict[str, Path] = {}
    for stage in STAGES:  # in-process: torch and faiss are imported once
        out = root / stage.output
        result = CliRunner().invoke(app, [*argv(stage, out, paths), "-q"])
        assert result.exit_code == 0, result.output
        paths["data" if stage.name == "synth" else stage.name] = out
        paths[stage.name] = out
    return paths


def _watched(stage: Stage, out: Path) -> Path:
    """The path whose appearance shows the stage has started writing."""
    if stage.kind == "synth":
        return out / "videos" / "v0001.mp4"
    if stage.kind == "text":
        return out  # the folder appears with the first file's .partial
    return partial_path(out)


def _done(stage: Stage, out: Path) -> Path:
    """The path whose presence shows the stage finished (its commit)."""
    if stage.kind == "synth":
        return out / "videos.jsonl"
    if stage.kind == "index":
        return out.with_name(out.name + ".json")
    if stage.kind == "text":
        return out / "v0004.txt"  # the last of the 5 synth videos (files come in order)
    return out


def assert_refused(stage: Stage, out: Path, invoke) -> None:
    """No reader accepts the output of a killed run."""
    if _done(stage, out).exists():
        return  # the run had finished: nothing partial to refuse
    if stage.kind == "synth":
        out = out / "videos.jsonl"
    if stage.kind == "text":  # every VIDEO_ID.txt present is whole; .partial files are not .txt
        from vcl.idt import BLOCKS
        from vcl.idt.textformat import read_text

        for path in out.glob("*.txt"):
            read_text(path, {**BLOCKS, "traj": 10})  # --track-length 5: 5 (x, y) steps
        return
    if stage.kind == "index":
        from vcl.retrieve import read_index

        with pytest.raises(VclError):
            read_index(out)
        return
    if stage.kind == "store":
        with pytest.raises(VclError):
            Store(out)
        if partial_path(out).exists():
            with pytest.raises(VclError):
                Store(partial_path(out))
    else:
        cls = VideoRecord if stage.name in ("synth", "videos") else TrackRecord
        with pytest.raises(VclError):
            read_records(out, cls)
    result = invoke("info", out)
    assert result.exit_code in (ExitCode.DATA, ExitCode.NO_INPUT), result.output
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr


def kill_once(stage: Stage, args: list[str], cwd: Path, rng: random.Random) -> bool:
    """Start the stage, SIGKILL it a random moment after it starts writing; True if killed."""
    watched = _watched(stage, cwd / stage.output)
    with (cwd / "killed.log").open("w") as err:
        proc = vcl(args, cwd, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 120
        while (
            stage.watch
            and proc.poll() is None
            and not watched.exists()
            and time.monotonic() < deadline
        ):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, stage.max_delay))
        if proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return True


def _same_arrays(a: np.ndarray, b: np.ndarray, exact: bool) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not exact:
        return True
    if a.dtype.kind == "f":
        return bool(np.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True))
    return bool(np.array_equal(a, b))


def compare_stores(got: Path, want: Path, exact: bool) -> None:
    a, b = Store(got), Store(want)
    assert a.attrs["vcl_schema"] == b.attrs["vcl_schema"]
    assert a.attrs["params"] == b.attrs["params"]
    assert a.group_ids == b.group_ids
    assert a.n_rows == b.n_rows
    assert a.arrays == b.arrays
    assert not a.verify()
    for name in a.arrays:
        x, y = a[name][...], b[name][...]
        assert _same_arrays(x, y, exact), f"{got}: array {name!r} differs from the reference"
    skip = {"command", "created", "resumed", "vcl_complete"}
    assert {k: v for k, v in a.attrs.items() if k not in skip} == {
        k: v for k, v in b.attrs.items() if k not in skip
    }


def _lines(path: Path) -> list[dict]:
    """JSONL objects with their paths resolved (they are relative to the file's folder)."""
    objs = [json.loads(line) for line in path.read_text().splitlines()]
    for obj in objs:
        if isinstance(obj.get("path"), str):
            obj["path"] = str((path.parent / obj["path"]).resolve())
    return objs


def compare_jsonl(got: Path, want: Path) -> None:
    assert _lines(got) == _lines(want)


def compare_index(got: Path, want: Path) -> None:
    """Same index bytes; same metadata but for when and how it was run."""
    assert got.read_bytes() == want.read_bytes()
    a, b = (json.loads(p.with_name(p.name + ".json").read_text()) for p in (got, want))
    for meta, index in ((a, got), (b, want)):  # paths are relative to the index's folder
        for key in ("path", "model"):
            meta["source"][key] = str((index.parent / meta["source"][key]).resolve())
    skip = {"command", "created", "vcl_version"}
    assert {k: v for k, v in a.items() if k not in skip} == {
        k: v for k, v in b.items() if k not in skip
    }


def compare_text(got: Path, want: Path) -> None:
    names = sorted(p.name for p in want.iterdir())
    assert sorted(p.name for p in got.iterdir()) == names  # no .partial left
    for name in names:
        if name == "params.json":  # its command line and time are the run's own
            a, b = (json.loads((d / name).read_text()) for d in (got, want))
            assert [a[k] for k in ("params", "seed", "blocks")] == [
                b[k] for k in ("params", "seed", "blocks")
            ]
            continue
        assert (got / name).read_bytes() == (want / name).read_bytes()


def compare_synth(got: Path, want: Path) -> None:
    for name in ("videos.jsonl", "gt_tracks.jsonl"):  # paths relative to the folder
        assert (got / name).read_text() == (want / name).read_text()
    videos = sorted(p.name for p in (want / "videos").iterdir())
    assert sorted(p.name for p in (got / "videos").iterdir()) == videos
    for name in videos:
        assert (got / "videos" / name).read_bytes() == (want / "videos" / name).read_bytes()


COMPARE: dict[str, Callable[[Path, Path, bool], None]] = {
    "store": compare_stores,
    "jsonl": lambda got, want, exact: compare_jsonl(got, want),
    "synth": lambda got, want, exact: compare_synth(got, want),
    "index": lambda got, want, exact: compare_index(got, want),
    "text": lambda got, want, exact: compare_text(got, want),
}


@pytest.mark.parametrize("stage", STAGES, ids=[s.name for s in STAGES])
def test_killed_run_resumes_to_the_same_output(stage: Stage, reference, tmp_path, invoke):
    # VCL_KILL_SEED / VCL_KILLS vary the moments and add kills for a longer soak by hand
    rng = random.Random(f"kill-{stage.name}{os.environ.get('VCL_KILL_SEED', '')}")
    kills = int(os.environ.get("VCL_KILLS", stage.kills))
    out = tmp_path / stage.output
    args = argv(stage, out, reference)
    killed = 0
    for _ in range(kills):
        done = _done(stage, out)
        if kill_once(stage, args, tmp_path, rng) and not done.exists():
            killed += 1
            assert_refused(stage, out, invoke)
        elif done.exists():  # it finished before the kill: start over to try again
            shutil.rmtree(out) if out.is_dir() else out.unlink()
            if done != out and done.exists():
                done.unlink()
    log = run_to_end(args, tmp_path)
    assert "Traceback" not in log
    COMPARE[stage.kind](out, reference[stage.name], stage.exact)
    assert not partial_path(out).exists()
    print(f"{stage.name}: {killed} of {kills} kills landed; resumed: {'resuming' in log}")


def test_store_resumes_after_a_kill_while_declaring_columns(tmp_path):
    """Regression: a kill between creating the column arrays and recording ``vcl_columns``
    left arrays a rerun tried to create again (zarr ContainsArrayError, exit 70); found
    by the kill harness on ``vcl idt`` (15 columns)."""
    from vcl.io.store import StoreWriter, _create_array

    path = tmp_path / "s.zarr"
    writer = StoreWriter(path, "vcl.test/1", {"a": 1})
    _create_array(writer.group, "x", "float32", (2,))  # what a kill mid-define leaves
    del writer
    with StoreWriter(path, "vcl.test/1", {"a": 1}) as writer:
        assert writer.resumed
        writer.define_columns({"x": ("float32", (2,)), "y": ("int32", ())})
        writer.append_group("g", x=np.ones((3, 2)), y=np.arange(3))
    store = Store(path)
    assert store.group_ids == ["g"] and store.n_rows == 3
    assert np.array_equal(store.read_group("g")["y"], np.arange(3))


def test_synth_reruns_after_a_kill_between_its_two_manifests(tmp_path, invoke):
    """Regression: gt_tracks.jsonl is renamed into place before videos.jsonl; a kill in
    between made every rerun fail with 'holds a synthetic data set already'."""
    out = tmp_path / "d"
    out.mkdir()
    (out / "gt_tracks.jsonl").write_text("")
    args = ["synth", out, "--videos", "1", "--width", "32", "--height", "24", "--frames", "3"]
    assert invoke(*args).exit_code == 0
    assert (out / "videos.jsonl").exists() and (out / "synth.json").exists()
    assert invoke(*args).exit_code == ExitCode.CANNOT_CREATE  # a finished set is kept


@pytest.mark.parametrize("stop", ["before_attrs", "before_group_arrays"])
def test_store_restarts_after_a_kill_while_creating_it(tmp_path, stop):
    """Regression: a kill right after the ``.partial`` folder appeared (before its attrs or
    group arrays were written) made every rerun fail with 'an interrupted run with
    different parameters left this store' (exit 73); found on ``vcl cluster run``."""
    import zarr

    from vcl.io.store import GROUP_IDS, StoreWriter, _create_array

    path = tmp_path / "s.zarr"
    group = zarr.open_group(str(partial_path(path)), mode="w", zarr_format=3)
    if stop == "before_group_arrays":
        group.attrs.update({"vcl_schema": "vcl.test/1", "params": {"a": 1}, "vcl_columns": []})
        _create_array(group, GROUP_IDS, str, ())
    with StoreWriter(path, "vcl.test/1", {"a": 1}) as writer:
        assert not writer.resumed
        writer.define_columns({"x": ("float32", ())})
        writer.append_group("g", x=np.arange(2))
    assert Store(path).group_ids == ["g"]


def test_index_left_without_its_metadata_is_rebuilt(reference, tmp_path, invoke):
    """Regression: a kill between renaming the index and its metadata into place left
    OUTPUT without OUTPUT.json, and every rerun failed with 'exists already' (exit 73)."""
    out = tmp_path / "r.index"
    args = ["retrieve", "index", reference["fisher_encode"], "-o", out, "--device", "cpu"]
    out.write_bytes(reference["retrieve_index"].read_bytes())  # the index, no metadata
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert "rebuilding" in result.stderr
    compare_index(out, reference["retrieve_index"])
    assert invoke(*args).exit_code == ExitCode.CANNOT_CREATE  # a finished one is kept
    other = tmp_path / "notes.txt"
    other.write_text("not an index")
    args[4] = other
    result = invoke(*args)  # a file that is not an index is never replaced
    assert result.exit_code == ExitCode.CANNOT_CREATE and other.read_text() == "not an index"


@pytest.mark.slow  # three cold starts of pretrain; in-process resume: tests/test_pretrain.py
def test_pretrain_killed_mid_run_resumes_to_the_same_metrics(reference, tmp_path):
    """SIGKILL `vcl pretrain` once its epoch-1 checkpoint exists; `--resume` must reach
    the uninterrupted run's metrics, labels and weights (CPU, one process)."""
    import torch

    common = (
        "pretrain {crops} --method odct --arch resnet18 --epochs 2 --batch-size 8 "
        "--size 16 --k 2 --min-cluster 1 --workers 0 --device cpu -o {out}"
    )
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_to_end(common.format(crops=reference["crops"], out=whole).split(), tmp_path)
    proc = vcl(
        common.format(crops=reference["crops"], out=killed).split(),
        tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = killed / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:  # epochs 0, 1
            break
        time.sleep(0.01)
    landed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resume = ["pretrain", str(reference["crops"]), "--resume", str(killed), "--device", "cpu"]
    log = run_to_end(resume, tmp_path)
    assert "Traceback" not in log

    def epochs(run: Path) -> list[dict]:
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("samples_per_s", "seconds")} for r in rows]

    assert epochs(killed) == epochs(whole)
    np.testing.assert_array_equal(
        np.load(killed / "labels_epoch_2.npy"), np.load(whole / "labels_epoch_2.npy")
    )
    a = torch.load(killed / "checkpoint.pt", weights_only=True)["backbone"]
    b = torch.load(whole / "checkpoint.pt", weights_only=True)["backbone"]
    for key in b:
        torch.testing.assert_close(a[key], b[key])
    print(f"pretrain: kill landed mid-run: {landed}")
