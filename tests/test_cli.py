"""CLI conventions, tested once generically through typer's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer.main

from tests.conftest import jsonl, moving_square_frames, run_vcl
from vcl.cli.app import COMMANDS
from vcl.cli.manpage import leaf_commands
from vcl.errors import ExitCode
from vcl.io.store import StoreWriter
from vcl.io.video import write_video


@pytest.fixture
def two_videos(tmp_path: Path) -> Path:
    folder = tmp_path / "clips"
    folder.mkdir()
    write_video(folder / "a.mp4", moving_square_frames(9), fps=10)
    write_video(folder / "b.avi", moving_square_frames(7, seed=1), fps=5, codec="mjpg")
    return folder


def one_error_line(stderr: str) -> str:
    """The error is one line, the last on stderr (a progress bar may precede it)."""
    lines = [x for x in stderr.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert "Traceback" not in stderr
    return errors[0]


@pytest.mark.parametrize(
    ("name", "command", "module"), leaf_commands(), ids=[name for name, _, _ in leaf_commands()]
)
def test_every_command_has_help_docs_and_examples(invoke, name: str, command, module) -> None:
    words = name.split()
    if hasattr(module, "app") and len(words) == 1:  # a group's default subcommand
        words.append(typer.main.get_command(module.app).default_command)
    result = invoke(*words, "--help")
    assert result.exit_code == 0
    assert (command.help or "").strip(), f"vcl {name} has no docstring"
    assert getattr(module, "EXAMPLES", []), f"vcl {name} has no EXAMPLES for its man page"
    for param in command.params:
        assert getattr(param, "help", None), f"vcl {name}: {param.name} has no help"
    for flag in ("--quiet", "--verbose", "--config"):
        assert flag in result.stdout, f"vcl {name} is not wrapped in @vcl_command"


def test_default_command_group() -> None:
    """`vcl X ARGS` runs X's `run`; `vcl X eval ARGS` runs `eval`; both see options."""
    from typer.testing import CliRunner

    from vcl.cli.common import command_group, vcl_command

    group = command_group("A toy stage.")
    calls = []

    @group.command("run")
    @vcl_command
    def run(inputs: list[str], k: int = 1) -> None:
        """Do the work."""
        calls.append(("run", inputs, k))

    @group.command("eval")
    @vcl_command
    def evaluate(path: str) -> None:
        """Evaluate."""
        calls.append(("eval", path))

    root = typer.Typer()
    root.add_typer(group, name="toy")

    @root.callback()
    def _root() -> None:
        """Root."""

    runner = CliRunner()
    assert runner.invoke(root, ["toy", "a.mp4", "b.mp4", "--k", "3"]).exit_code == 0
    assert runner.invoke(root, ["toy", "--k", "2", "c.mp4"]).exit_code == 0
    assert runner.invoke(root, ["toy", "eval", "x.zarr"]).exit_code == 0
    assert calls == [("run", ["a.mp4", "b.mp4"], 3), ("run", ["c.mp4"], 2), ("eval", "x.zarr")]
    listing = runner.invoke(root, ["toy", "--help"])
    assert listing.exit_code == 0 and "eval" in listing.stdout


def test_version_and_root_help(invoke) -> None:
    from vcl import __version__

    assert invoke("--version").stdout.strip() == f"vcl {__version__}"
    listing = invoke("--help").stdout
    for name, module in COMMANDS:
        text = module.app.info.help if hasattr(module, "app") else module.run.__doc__
        assert name in listing and text.strip().splitlines()[0].strip() in listing


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, vcl.cli.app; heavy = {'torch', 'cv2', 'faiss', 'zarr', 'av', 'numpy'}"
        " & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stdout_is_data_and_progress_goes_to_stderr(invoke, two_videos: Path) -> None:
    result = invoke("videos", str(two_videos))
    assert result.exit_code == 0, result.stderr
    records = jsonl(result.stdout)  # every stdout line is JSON: nothing else leaked there
    assert [r["id"] for r in records] == ["a", "b"]
    assert [r["frames"] for r in records] == [9, 7] and records[1]["fps"] == 5
    assert "probing videos" in result.stderr and "2 videos listed" in result.stderr
    quiet = invoke("videos", str(two_videos), "-q")
    assert quiet.stderr == "" and jsonl(quiet.stdout) == records


def test_real_subprocess_separates_streams(two_videos: Path) -> None:
    proc = run_vcl("videos", two_videos, "--count")
    assert proc.returncode == 0
    assert len(jsonl(proc.stdout)) == 2 and "probing" in proc.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_stdout_that_cannot_be_written_is_exit_73(two_videos: Path) -> None:
    """A full disk under stdout (/dev/full) was "internal error ... please report it",
    exit 70; a closed stdout (``>&-``) lost the output with exit 0 or crashed."""
    command = [sys.executable, "-m", "vcl", "videos", str(two_videos), "-q"]
    with open("/dev/full", "w") as full:
        proc = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == ExitCode.CANNOT_CREATE
    assert proc.stderr == "error: stdout: cannot write (No space left on device)\n"
    closed = subprocess.run(
        ["bash", "-c", '"$@" >&-', "-", *command], stderr=subprocess.PIPE, text=True
    )
    assert closed.returncode == ExitCode.CANNOT_CREATE
    assert closed.stderr == "error: stdout: cannot write (stdout is closed)\n"
    to_file = [*command, "-o", str(two_videos.parent / "videos.jsonl")]
    fine = subprocess.run(["bash", "-c", '"$@" >&-', "-", *to_file])
    assert fine.returncode == 0  # nothing written to stdout: nothing to report


def test_stdin_manifest_and_shards(invoke, two_videos: Path) -> None:
    listing = invoke("videos", str(two_videos)).stdout
    piped = invoke("videos", "-", input=listing)
    assert jsonl(piped.stdout) == jsonl(listing)
    shards = [
        jsonl(invoke("videos", "-", "--shard", f"{i}/3", input=listing).stdout) for i in range(3)
    ]
    assert sorted(r["id"] for s in shards for r in s) == ["a", "b"]
    bad = invoke("videos", "-", "--shard", "3/3", input=listing)
    assert bad.exit_code == ExitCode.USAGE
    assert "--shard" in one_error_line(bad.stderr)


def test_output_file_is_written_atomically_and_not_overwritten(
    invoke, two_videos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m.jsonl"
    assert invoke("videos", str(two_videos), "-o", str(out)).exit_code == 0
    assert json.loads(out.read_text().splitlines()[0])["path"] == "clips/a.mp4"  # relative
    again = invoke("videos", str(two_videos), "-o", str(out))
    assert again.exit_code == ExitCode.CANNOT_CREATE and "--overwrite" in again.stderr
    assert invoke("videos", str(two_videos), "-o", str(out), "--overwrite").exit_code == 0


def test_bad_video_is_one_error_line_or_skipped(invoke, two_videos: Path) -> None:
    (two_videos / "broken.mp4").write_bytes(b"\x00not a video" * 10)
    result = invoke("videos", str(two_videos))
    assert result.exit_code == ExitCode.DATA
    assert "broken.mp4" in one_error_line(result.stderr)
    skipped = invoke("videos", str(two_videos), "--skip-bad")
    assert skipped.exit_code == 0 and len(jsonl(skipped.stdout)) == 2
    assert "skipped" in skipped.stderr and "broken.mp4" in skipped.stderr


# --- vcl info on bad inputs: each one line and a non-zero exit -------------------------


def test_info_missing_path(invoke, tmp_path: Path) -> None:
    result = invoke("info", str(tmp_path / "nope.zarr"))
    assert result.exit_code == ExitCode.NO_INPUT
    assert "nope.zarr: no such file" in one_error_line(result.stderr)


def test_info_malformed_line_7(invoke, tmp_path: Path) -> None:
    lines = [
        json.dumps({"schema": "vcl.video/1", "id": f"v{i}", "path": "x.mp4"}) for i in range(9)
    ]
    lines[6] = lines[6][:-5]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = invoke("info", str(path))
    assert result.exit_code == ExitCode.DATA
    assert "m.jsonl: line 7: not valid JSON" in one_error_line(result.stderr)


def test_info_reads_stdin_and_names_a_partial_jsonl(invoke, tmp_path: Path) -> None:
    lines = [json.dumps({"id": f"v{i}", "path": "x.mp4", "label": "a"}) for i in range(3)]
    result = invoke("info", "-", "--json", input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.stderr
    description = json.loads(result.stdout)
    assert description["path"] == "-" and description["records"] == 3
    assert description["labels"] == {"a": 3}
    partial = tmp_path / "t.jsonl.partial"  # a JSONL output cut by a kill
    partial.write_text(lines[0] + "\n")
    cut = invoke("info", str(partial))
    assert cut.exit_code == ExitCode.DATA and "incomplete" in one_error_line(cut.stderr)
    bad = invoke("info", "-", input=lines[0] + "\n" + lines[1][:-3] + "\n")
    assert bad.exit_code == ExitCode.DATA
    assert one_error_line(bad.stderr).startswith("error: -: line 2: not valid JSON")


def test_info_unknown_schema_major(invoke, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        json.dumps(
            {
                "schema": "vcl.track/9",
                "id": "t",
                "video_id": "v",
                "frames": [0],
                "boxes": [[0, 0, 1, 1]],
            }
        )
        + "\n"
    )
    result = invoke("info", str(path))
    assert result.exit_code == ExitCode.DATA
    line = one_error_line(result.stderr)
    assert "vcl.track/9" in line and "vcl.track/1" in line and "upgrade vcl" in line


def test_info_truncated_and_partial_stores(invoke, tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    with pytest.raises(RuntimeError), StoreWriter(path, "vcl.test/1", {}) as writer:
        writer.define_columns({"x": ("float32", ())})
        raise RuntimeError("killed")
    for name in (path, Path(str(path) + ".partial")):
        result = invoke("info", str(name))
        assert result.exit_code == ExitCode.DATA
        assert "incomplete" in one_error_line(result.stderr)
    # a finished store whose column lost rows (truncated by hand or a failing disk)
    import numpy as np

    with StoreWriter(path, "vcl.test/1", {}) as writer:
        writer.define_columns({"x": ("float32", ())})
        writer.append_group("a", x=np.arange(5))
    import zarr

    zarr.open_array(str(path / "x"), mode="r+").resize((3,))
    result = invoke("info", str(path))
    assert result.exit_code == ExitCode.DATA
    assert "truncated" in one_error_line(result.stderr)


def test_info_describes_store_as_json(invoke, tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "p.zarr"
    with StoreWriter(path, "vcl.test/1", {"k": 3}, seed=5) as writer:
        writer.define_columns({"x": ("float32", (2,))})
        writer.append_group("a", x=np.ones((4, 2)))
    result = invoke("info", str(path), "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert (info["schema"], info["rows"], info["params"], info["seed"]) == (
        "vcl.test/1",
        4,
        {"k": 3},
        5,
    )
    assert info["arrays"]["x"] == {"shape": [4, 2], "dtype": "float32"}
    summary = invoke("info", str(path))
    assert summary.stdout == "" and "vcl.test/1" in summary.stderr


def test_info_shows_the_videos_a_keep_going_run_failed(invoke, tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    failed = [f"bad{i}" for i in range(7)]
    with StoreWriter(path, "vcl.test/1", {}) as writer:
        writer.define_columns({"x": ("float32", ())})
        writer.append_group("a", x=np.ones(3))
        writer.set_attrs(failed=failed)
    info = json.loads(invoke("info", str(path), "--json").stdout)
    assert info["failed"] == {"count": 7, "first": failed[:5]}
    summary = invoke("info", str(path))
    assert summary.exit_code == 0 and "7: bad0, bad1, bad2, bad3, bad4, …" in summary.stderr


def test_info_refuses_a_store_of_an_unknown_major_version(invoke, tmp_path: Path) -> None:
    """Regression: info opened stores without a version, so a vcl.features/2 store that
    every reader refuses was described as fine (its help says an unknown schema version
    is reported). A kind vcl does not write (another tool's, read by fisher fit) is
    described, with a note that its version is not checked."""
    newer, foreign = tmp_path / "f.zarr", tmp_path / "sift.zarr"
    for path, schema in ((newer, "vcl.features/2"), (foreign, "vcl.sift/3")):
        with StoreWriter(path, schema, {}) as writer:
            writer.define_columns({"x": ("float32", ())})
            writer.append_group("a", x=np.ones(3))
    result = invoke("info", newer)
    assert result.exit_code == ExitCode.DATA
    assert one_error_line(result.stderr) == (
        f"error: {newer}: schema vcl.features/2 is not the vcl.features/1 this vcl reads;"
        " upgrade vcl"
    )
    result = invoke("info", foreign, "--json")
    assert result.exit_code == 0, result.stderr
    assert "version is not checked" in json.loads(result.stdout)["note"]


def _run_dir(root: Path, epochs_done: int = 2, schema: str = "vcl.pretrain_run/1") -> Path:
    """A run directory as vcl pretrain leaves it; its checkpoint is not a real one
    (info does not load it)."""
    run = root / "run"
    run.mkdir()
    config = {"schema": schema, "vcl_version": "0.1.0", "command": "vcl pretrain c.zarr"}
    config |= {"method": "odct", "arch": "resnet18", "epochs": 5, "k": 4, "seed": 0}
    (run / "config.json").write_text(json.dumps(config))
    (run / "checkpoint.pt").write_bytes(b"weights, not loaded")
    lines = [{"epoch": e, "loss": 1.0} for e in range(epochs_done + 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    np.save(run / f"labels_epoch_{epochs_done}.npy", np.zeros(6, np.int32))
    return run


def test_info_describes_a_pretrain_run_and_each_of_its_files(invoke, tmp_path: Path) -> None:
    """Regression: a run directory was taken for a frame folder ("holds no jpg/png
    images"), its config.json and checkpoint.pt for videos ("not a readable video")."""
    run = _run_dir(tmp_path)
    for name in (None, "config.json", "checkpoint.pt", "metrics.jsonl", "labels_epoch_2.npy"):
        result = invoke("info", run if name is None else run / name, "--json")
        assert result.exit_code == 0, result.stderr
        info = json.loads(result.stdout)
        assert info["path"] == str(run) and info.get("file") == name
        assert (info["type"], info["schema"], info["method"], info["arch"]) == (
            "pretrain run",
            "vcl.pretrain_run/1",
            "odct",
            "resnet18",
        )
        assert (info["epochs_done"], info["epochs_asked"], info["params"]["k"]) == (2, 5, 4)
    summary = invoke("info", run)
    assert summary.exit_code == 0 and "odct" in summary.stderr and "epochs_done" in summary.stderr
    # read from its JSON only: describing a run imports no torch
    code = (
        "import sys; from vcl.io.describe import describe; "
        f"assert describe({str(run)!r})['arch'] == 'resnet18'; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    # a run killed before its first checkpoint is no run embed can read
    (run / "checkpoint.pt").unlink()
    result = invoke("info", run)
    assert result.exit_code == ExitCode.NO_INPUT
    assert one_error_line(result.stderr).startswith(
        f"error: {run}: run directory has no checkpoint"
    )


def test_info_describes_a_retrieve_index_and_its_metadata(invoke, tmp_path: Path) -> None:
    """Regression: an index and its .index.json were "not a readable video"."""
    vectors = tmp_path / "x.npy"
    np.save(vectors, np.random.default_rng(0).normal(size=(9, 4)).astype("f4"))
    index = tmp_path / "g.index"
    assert invoke("retrieve", "index", vectors, "-o", index, "-q").exit_code == 0
    meta = tmp_path / "g.index.json"
    for path in (index, meta):
        result = invoke("info", path, "--json")
        assert result.exit_code == 0, result.stderr
        info = json.loads(result.stdout)
        assert (info["path"], info["metadata"], info["type"], info["schema"]) == (
            str(index),
            str(meta),
            "index",
            "vcl.index/1",
        )
        assert (info["count"], info["dimension"], info["first_ids"]) == (9, 4, list("01234"))
    # checked as vcl retrieve checks it: the schema, and the file against its metadata
    data = index.read_bytes()
    index.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    result = invoke("info", index)
    assert result.exit_code == ExitCode.DATA and "does not match" in one_error_line(result.stderr)
    assert invoke("info", index, "--no-verify").exit_code == 0  # same size: not hashed
    record = json.loads(meta.read_text())
    meta.write_text(json.dumps({**record, "vcl_schema": "vcl.index/2"}))
    for path in (index, meta):
        result = invoke("info", path)
        assert result.exit_code == ExitCode.DATA
        assert one_error_line(result.stderr) == (
            f"error: {meta}: schema vcl.index/2 is not the vcl.index/1 this vcl reads; upgrade vcl"
        )
    meta.unlink()
    result = invoke("info", index)
    assert result.exit_code == ExitCode.DATA and "no metadata file g.index.json" in result.stderr


def test_info_says_not_a_vcl_file_rather_than_not_a_video(invoke, tmp_path: Path) -> None:
    """Regression: any file info did not recognise was probed as a video and called
    "not a readable video"; one with a suffix no video has is not a vcl file."""
    files = {
        "model.pt": b"weights",
        "notes.txt": b"text",
        "report.json": b'{"nmi": 0.5}',
        "blob.bin": b"bytes",
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = invoke("info", path)
        assert result.exit_code == ExitCode.DATA
        line = one_error_line(result.stderr)
        assert line.startswith(f"error: {path}: not a vcl file"), line
        assert "vcl info reads stores" in line
    broken = tmp_path / "clip.mp4"  # a video file: still probed, and named as a video
    broken.write_bytes(b"not a video")
    result = invoke("info", broken)
    assert result.exit_code == ExitCode.DATA
    assert one_error_line(result.stderr).startswith(f"error: {broken}: not a readable video")
    # vcl's other inputs: vectors (.npy) and --config files
    np.save(tmp_path / "x.npy", np.zeros((3, 2), np.float32))
    info = json.loads(invoke("info", tmp_path / "x.npy", "--json").stdout)
    assert (info["type"], info["shape"], info["dtype"]) == ("array", [3, 2], "float32")
    (tmp_path / "c.toml").write_text("seed = 1\n[track.eval]\nmin_len = 5\n")
    info = json.loads(invoke("info", tmp_path / "c.toml", "--json").stdout)
    assert (info["type"], info["options"], info["tables"]) == (
        "config",
        {"seed": 1},
        ["track", "track.eval"],
    )


def test_info_describes_an_empty_jsonl_output(invoke, tmp_path: Path) -> None:
    """Regression: a complete tracks file without tracks (vcl track found none) was
    refused as 'holds no records'; only its .partial is incomplete."""
    path = tmp_path / "t.jsonl"
    path.write_text("")
    result = invoke("info", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["records"] == 0
    partial = tmp_path / "u.jsonl.partial"
    partial.write_text("")
    cut = invoke("info", str(partial))
    assert cut.exit_code == ExitCode.DATA and "incomplete" in one_error_line(cut.stderr)


# --- exit codes for failures inside a command ------------------------------------------


def test_internal_errors_and_interrupts(
    invoke, monkeypatch: pytest.MonkeyPatch, two_videos: Path
) -> None:
    def boom(*args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr("vcl.io.sources.resolve_videos", boom)
    result = invoke("videos", str(two_videos))
    assert result.exit_code == ExitCode.INTERNAL
    assert "internal error: ZeroDivisionError: oops" in one_error_line(result.stderr)
    verbose = invoke("videos", str(two_videos), "-v")
    assert verbose.exit_code == ExitCode.INTERNAL and "Traceback" in verbose.stderr

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("vcl.io.sources.resolve_videos", interrupt)
    assert invoke("videos", str(two_videos)).exit_code == ExitCode.INTERRUPTED


def test_usage_errors_exit_2(invoke) -> None:
    assert invoke("videos").exit_code == ExitCode.USAGE
    assert invoke("synth", "out", "--videos", "0").exit_code == ExitCode.USAGE
    assert invoke("info", "x", "--no-such-flag").exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["track", "p.zarr", "--ttl", "-1"], "vcl track run: Invalid value for '--ttl'"),
        (["info", "x", "--no-such-flag"], "vcl info: No such option: --no-such-flag"),
        (["videos"], "vcl videos: Missing argument"),
        (["trak"], "vcl: No such command 'trak'"),
    ],
)
def test_parser_usage_errors_are_one_error_line(args: list[str], says: str) -> None:
    """Click's three-line usage/hint/Error block becomes one ``error:`` line, exit 2."""
    result = run_vcl(*args)
    assert result.returncode == ExitCode.USAGE
    line = one_error_line(result.stderr)
    assert line.startswith("error: ") and says in line and line.endswith("-h')"), line
    assert "Usage:" not in result.stderr


# --- --config ------------------------------------------------------------------------


def test_config_sets_defaults_and_flags_override(invoke, two_videos: Path, tmp_path: Path) -> None:
    listing = invoke("videos", str(two_videos)).stdout
    config = tmp_path / "vcl.toml"
    config.write_text('seed = 3\ndevice = "cpu"\n[videos]\nshard = "1/2"\n')
    by_config = jsonl(invoke("videos", "-", "--config", str(config), input=listing).stdout)
    by_flag = jsonl(invoke("videos", "-", "--shard", "1/2", input=listing).stdout)
    assert by_config == by_flag
    other = jsonl(
        invoke("videos", "-", "--config", str(config), "--shard", "0/2", input=listing).stdout
    )
    assert sorted(r["id"] for r in by_config + other) == ["a", "b"]


def test_config_errors(invoke, tmp_path: Path) -> None:
    config = tmp_path / "vcl.toml"
    config.write_text("[videos]\nno_such_option = 1\n")
    result = invoke("videos", "-", "--config", str(config))
    assert result.exit_code == ExitCode.USAGE
    assert "unknown option 'no_such_option'" in one_error_line(result.stderr)
    config.write_text("this is = not toml = ")
    assert invoke("videos", "-", "--config", str(config)).exit_code == ExitCode.USAGE
    missing = invoke("videos", "-", "--config", str(tmp_path / "none.toml"))
    assert missing.exit_code == ExitCode.NO_INPUT


def test_config_tables_of_group_commands(invoke, tmp_path: Path) -> None:
    """[cluster] sets `vcl cluster` (the group's default command), [track.eval] sets
    `vcl track eval`; an unknown key in [track] or [track.eval] is refused."""
    data = tmp_path / "s"
    assert invoke("synth", str(data), "--videos", "2", "--frames", "12", "-q").exit_code == 0
    gt = str(data / "gt_tracks.jsonl")
    config = tmp_path / "vcl.toml"
    config.write_text("[track]\nmin_len = 5\n[track.eval]\nmin_len = 7\n")
    report = json.loads(invoke("track", "eval", gt, "--gt", gt, "--config", str(config)).stdout)
    assert report["min_len"] == 7
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(30, 4)).astype("f4"))
    config.write_text("[cluster]\nk = 3\n")  # `vcl cluster` is `cluster run`
    args = ("cluster", str(tmp_path / "x.npy"), "-o", str(tmp_path / "c.zarr"), "-q")
    result = invoke(*args, "--config", str(config))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["k"] == 3
    # an option taking several values takes one from TOML too (was "Value must be an
    # iterable", naming neither the file nor the key)
    proposals = str(tmp_path / "p.zarr")
    args = ("proposals", str(data / "videos.jsonl"), "-o", proposals, "--max-side", "0", "-q")
    assert invoke(*args).exit_code == 0
    config.write_text(f'[track]\nvideos = "{data / "videos.jsonl"}"\nmin_len = 2\n')
    result = invoke("track", proposals, "-o", "-", "--config", str(config), "-q")
    assert result.exit_code == 0, result.stderr
    assert {r["video_id"] for r in jsonl(result.stdout)} == {"v0000", "v0001"}
    config.write_text("[track.eval]\nbogus = 7\n")
    result = invoke("track", "eval", gt, "--gt", gt, "--config", str(config))
    assert result.exit_code == ExitCode.USAGE
    assert "[track.eval] has unknown option 'bogus'" in one_error_line(result.stderr)
    config.write_text("[track]\nbogus = 7\n")
    result = invoke("track", gt, "--method", "gt", "-o", "-", "--config", str(config))
    assert result.exit_code == ExitCode.USAGE
    assert "[track] has unknown option 'bogus'" in one_error_line(result.stderr)


# --- vcl synth through the CLI -------------------------------------------------------


SMALL = ("--videos", "3", "--width", "64", "--height", "48", "--frames", "8")


def test_synth_writes_what_info_describes(invoke, tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = invoke("synth", str(out), *SMALL, "--distractors", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in (out / "videos").iterdir()) == [
        "v0000.mp4",
        "v0001.mp4",
        "v0002.mp4",
    ]
    videos = json.loads(invoke("info", str(out / "videos.jsonl"), "--json").stdout)
    tracks = json.loads(invoke("info", str(out / "gt_tracks.jsonl"), "--json").stdout)
    assert videos["records"] == 3 and videos["schema"] == "vcl.video/1"
    assert tracks["schema"] == "vcl.track/1" and tracks["videos"] == 3
    video = json.loads(invoke("info", str(out / "videos" / "v0001.mp4"), "--json").stdout)
    assert (video["width"], video["height"], video["frame_count"]) == (64, 48, 8)
    provenance = json.loads((out / "synth.json").read_text())
    assert provenance["seed"] == 0 and provenance["params"]["videos"] == 3
    again = invoke("synth", str(out), *SMALL)
    assert again.exit_code == ExitCode.CANNOT_CREATE and "--overwrite" in again.stderr
    # --overwrite with fewer videos left the old set's v0001 and v0002 behind
    (out / "videos" / "notes.txt").write_text("the user's")
    smaller = invoke("synth", str(out), *SMALL[2:], "--videos", "1", "--overwrite", "-q")
    assert smaller.exit_code == 0, smaller.stderr
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["notes.txt", "v0000.mp4"]
    assert json.loads(invoke("info", str(out / "videos.jsonl"), "--json").stdout)["records"] == 1


def test_synth_is_the_same_with_any_number_of_workers(invoke, tmp_path: Path) -> None:
    assert invoke("synth", str(tmp_path / "a"), *SMALL, "--seed", "4").exit_code == 0
    assert (
        invoke("synth", str(tmp_path / "b"), *SMALL, "--seed", "4", "--workers", "2").exit_code == 0
    )
    for name in ("videos.jsonl", "gt_tracks.jsonl"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    other = invoke("synth", str(tmp_path / "c"), *SMALL, "--seed", "5")
    assert other.exit_code == 0
    assert (tmp_path / "c" / "gt_tracks.jsonl").read_text() != (
        tmp_path / "a" / "gt_tracks.jsonl"
    ).read_text()


def test_synth_bad_config_is_a_usage_error(invoke, tmp_path: Path) -> None:
    result = invoke("synth", str(tmp_path), "--camera", "shaky")
    assert result.exit_code == ExitCode.USAGE
    assert "camera" in one_error_line(result.stderr)
    result = invoke("synth", str(tmp_path), "--min-objects", "4", "--max-objects", "2")
    assert result.exit_code == ExitCode.USAGE


def test_list_options_are_parsed_once_with_usage_errors() -> None:
    from vcl.cli.common import parse_number_list
    from vcl.errors import UsageError

    assert parse_number_list("1, 5,10", "-k") == [1, 5, 10]
    assert parse_number_list("0.5,0.7", "--iou", float, 1e-9, 1.0) == [0.5, 0.7]
    for args in [
        ("a,b", "-k"),
        ("", "-k"),
        ("0,5", "-k", int, 1),
        ("0.5,1.5", "--iou", float, 1e-9, 1.0),
    ]:
        with pytest.raises(UsageError, match=args[1]):
            parse_number_list(*args)


def test_a_bad_list_option_exits_2_with_one_line(invoke, tmp_path: Path) -> None:
    result = invoke("retrieve", "eval", "--query", str(tmp_path / "q.npy"), "-k", "1,x")
    assert result.exit_code == ExitCode.USAGE
    assert "-k" in one_error_line(result.stderr)


def test_ctrl_c_while_importing_is_one_line(monkeypatch, capsys) -> None:
    """Ctrl-C that lands while Python still imports the command (before any handler):
    one `error: interrupted` line and exit 130, not a traceback of the imports."""
    import sys

    from vcl.cli import entry

    class InterruptedImport:
        def find_spec(self, name: str, path: object = None, target: object = None) -> None:
            if name == "vcl.cli.app":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "vcl.cli.app", raising=False)
    monkeypatch.setattr(sys, "meta_path", [InterruptedImport(), *sys.meta_path])
    with pytest.raises(SystemExit) as exit_info:
        entry.main()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_videos_writes_no_partial_manifest_when_a_video_fails(invoke, two_videos: Path) -> None:
    """Regression: the lines probed before a bad video reached stdout, and the next stage
    of a pipe built a complete-looking output of those videos only."""
    (two_videos / "zz.mp4").write_bytes(b"\x00not a video" * 10)  # probed last
    result = invoke("videos", str(two_videos))
    assert result.exit_code == ExitCode.DATA and "zz.mp4" in one_error_line(result.stderr)
    assert result.stdout == ""
    out = two_videos.parent / "v.jsonl"
    assert invoke("videos", str(two_videos), "-o", str(out)).exit_code == ExitCode.DATA
    assert not out.exists() and not Path(f"{out}.partial").exists()
    skipped = invoke("videos", str(two_videos), "--skip-bad")
    assert skipped.exit_code == 0 and [r["id"] for r in jsonl(skipped.stdout)] == ["a", "b"]


def test_videos_count_reads_every_frame_of_a_frame_folder(invoke, tmp_path: Path) -> None:
    """Regression: --count counted a frame folder's files, so a corrupt frame or one of
    another size passed here and failed the stages after it."""
    import cv2

    clip = tmp_path / "clip"
    clip.mkdir()
    for i, rgb in enumerate(moving_square_frames(5), start=1):
        cv2.imwrite(str(clip / f"{i}.jpg"), rgb)
    good = invoke("videos", str(clip), "--count")
    assert good.exit_code == 0 and jsonl(good.stdout)[0]["frames"] == 5
    cv2.imwrite(str(clip / "6.jpg"), np.zeros((11, 17, 3), np.uint8))
    resized = invoke("videos", str(clip), "--count")
    assert resized.exit_code == ExitCode.DATA and resized.stdout == ""
    assert "(6.jpg) is 17x11" in one_error_line(resized.stderr)
    (clip / "6.jpg").unlink()
    (clip / "7.jpg").write_bytes(b"\xff\xd8 cut")
    corrupt = invoke("videos", str(clip), "--count")
    assert corrupt.exit_code == ExitCode.DATA
    assert "(7.jpg) is not a readable image" in one_error_line(corrupt.stderr)
    skipped = invoke("videos", str(clip), "--count", "--skip-bad")
    assert skipped.exit_code == 0 and skipped.stdout == "" and "7.jpg" in skipped.stderr


def test_info_describes_vcl_outputs_without_a_record_class(invoke, tmp_path: Path) -> None:
    """vcl info refused or misread vcl's own outputs: cluster --jsonl lines ("missing
    field 'path'"), vcl.match/1 lines ("unknown record kind"), an idt text folder and
    its params.json (the hyphen of vcl.idt-text/1), and a PNG plot (read as a video)."""
    clusters = tmp_path / "c.jsonl"
    clusters.write_text(
        "".join(json.dumps({"id": str(i), "cluster": i % 2}) + "\n" for i in range(5))
    )
    report = json.loads(invoke("info", clusters, "--json").stdout)
    assert (report["records"], report["fields"]) == (5, {"cluster": 5, "id": 5})
    matches = tmp_path / "m.jsonl"
    line = {"schema": "vcl.match/1", "query": "a", "neighbour": "b", "rank": 1, "score": 0.5}
    matches.write_text(json.dumps(line) + "\n")
    report = json.loads(invoke("info", matches, "--json").stdout)
    assert report["schema"] == "vcl.match/1" and report["records"] == 1
    text = tmp_path / "txt"
    text.mkdir()
    (text / "params.json").write_text(json.dumps({"vcl_schema": "vcl.idt-text/1", "params": {}}))
    (text / "v0.txt").write_text("")
    report = json.loads(invoke("info", text, "--json").stdout)
    assert report["type"] == "idt_text" and report["videos"] == 1
    assert json.loads(invoke("info", text / "params.json", "--json").stdout)["type"] == "json"
    import cv2

    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((8, 8, 3), np.uint8))
    result = invoke("info", tmp_path / "p.png")
    assert result.exit_code == ExitCode.DATA and "not a vcl file (a .png image" in result.stderr
