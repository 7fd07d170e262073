"""vcl demo: the whole toolkit end to end on a tiny synthetic set, re-entrant, and a
summary whose every number is the one in the step's own output file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vcl.errors import ExitCode


def _last_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


# Two CPU-minutes of subprocesses: the slow tier (VCL_SLOW_TESTS=1). The README's first
# command, which CI runs, is the whole demo and fails on any failed step.
whole_demo = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """One small demo (4 videos of 24 frames, 1 epoch), run through the CLI."""
    from typer.testing import CliRunner

    from vcl.cli.app import app

    out = tmp_path_factory.mktemp("demo") / "demo"
    args = ["demo", str(out), "--videos", "4", "--frames", "24", "--epochs", "1", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout), result.stderr, args


@whole_demo
def test_demo_runs_every_stage_and_prints_the_commands(demo) -> None:
    out, rows, stderr, _ = demo
    stages = [r["stage"] for r in rows]
    for stage in ("synth", "proposals", "track", "crops", "pretrain odct", "pretrain odc",
                  "embed odct crops", "cluster eval odct", "probe knn odct", "probe linear odc",
                  "retrieve eval odct", "idt", "fisher fit", "fisher encode",
                  "cluster eval motion", "plot curves"):  # fmt: skip
        assert stage in stages
    assert all(r["seconds"] is not None for r in rows)  # a fresh folder: every step ran
    for row in rows:  # each command printed before it ran, ready to copy
        assert f"$ {row['command']}" in stderr.replace("\n", " ") or row["command"] in stderr
        assert Path(row["output"]).exists()
    assert "vcl demo" in stderr and "key metrics" in stderr  # the summary table
    assert json.loads((out / "summary.json").read_text()) == rows


@whole_demo
def test_summary_numbers_are_the_output_files_numbers(demo) -> None:
    out, rows, stderr, _ = demo
    by = {r["stage"]: r["metrics"] for r in rows}
    recall = json.loads((out / "proposals_eval.json").read_text())["recall"]["0.5"]
    assert by["proposals eval"]["recall@0.5 (300 boxes)"] == recall["300"]
    tracks = json.loads((out / "track_eval.json").read_text())
    assert by["track eval"]["coverage"] == tracks["coverage"]
    assert by["track"]["tracks"] == len((out / "tracks.jsonl").read_text().splitlines())
    for method in ("odct", "odc"):
        last = _last_metrics(out / "runs" / method)
        assert last["epoch"] == 1
        assert by[f"pretrain {method}"]["change_ratio"] == last["change_ratio"]
        assert by[f"pretrain {method}"]["intra_track_entropy"] == last["intra_track_entropy"]
        clusters = json.loads((out / f"clusters-{method}.json").read_text())
        assert (
            by[f"cluster eval {method}"]["intra_track_entropy"] == clusters["intra_track_entropy"]
        )
        for probe in ("knn", "linear"):
            report = json.loads((out / f"probe-{probe}-{method}.json").read_text())
            assert by[f"probe {probe} {method}"]["top1"] == report["layers"][-1]["metrics"]["top1"]
        retrieval = json.loads((out / f"retrieve-{method}.json").read_text())
        assert by[f"retrieve eval {method}"]["R@1"] == retrieval["recall"]["R@1"]
    motion = json.loads((out / "clusters-motion.json").read_text())
    assert by["cluster eval motion"]["nmi"] == motion["nmi"]
    assert f"nmi {motion['nmi']:.3f}" in stderr  # the table shows the same number
    assert by["synth"]["videos"] == 4


@whole_demo
def test_rerun_skips_finished_steps_and_reprints_the_same_numbers(demo) -> None:
    from typer.testing import CliRunner

    from vcl.cli.app import app

    _, rows, _, args = demo
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert all(r["seconds"] is None for r in again)
    assert [r["metrics"] for r in again] == [r["metrics"] for r in rows]
    assert "done before" in result.stderr


@whole_demo
def test_demo_refuses_a_folder_made_with_other_sizes(demo, invoke) -> None:
    out, *_ = demo
    result = invoke("demo", out, "--videos", "5", "--frames", "24", "--epochs", "1")
    assert result.exit_code == ExitCode.CANNOT_CREATE and "videos" in result.output


def test_a_failing_step_stops_the_demo_with_its_exit_code(invoke, tmp_path: Path) -> None:
    out = tmp_path / "broken"
    (out / "data").mkdir(parents=True)
    (out / "data" / "videos.jsonl").write_text("not json\n")
    (out / "data" / "gt_tracks.jsonl").write_text("")
    result = invoke("demo", out, "--videos", "4")
    assert result.exit_code == ExitCode.DATA
    assert "step 'proposals' failed" in result.output and "Traceback" not in result.output
    assert not (out / "proposals.zarr").exists()


def test_plan_commands_are_vcl_commands() -> None:
    from vcl.cli.app import COMMAND_MODULES
    from vcl.demo import DemoConfig, plan

    names = {name for name, _ in COMMAND_MODULES}
    steps = plan(Path("d"), DemoConfig())
    assert all(s.args[0] in names for s in steps)
    assert steps[0].stage == "synth" and len({s.output for s in steps}) == len(steps)
