"""vcl demo: the whole toolkit on generated data, each step an ordinary vcl command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vcl.cli.common import Seed, vcl_command


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "–" if value is None else str(value)


@vcl_command
def run(
    out_dir: Annotated[
        Path,
        typer.Argument(
            metavar="OUT_DIR",
            help="Folder for every file the demo makes (default: demo; a rerun continues).",
        ),
    ] = Path("demo"),
    videos: Annotated[
        int, typer.Option("--videos", min=4, help="Synthetic videos (a quarter are test videos).")
    ] = 16,
    frames: Annotated[
        int, typer.Option("--frames", min=24, help="Frames per synthetic video.")
    ] = 48,
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, help="Pretraining epochs of odct and odc.")
    ] = 3,
    json_out: Annotated[
        bool, typer.Option("--json", help="Also print the summary rows as JSON on stdout.")
    ] = False,
    seed: Seed = 0,
) -> None:
    """Run every stage on synthetic videos; print a summary table.

    synth → proposals → track → crops → pretrain (odct and odc, ResNet-18, 32 px) →
    embed → cluster + cluster eval → probe knn/linear and retrieve eval on video
    features; idt → fisher → cluster for the motion prior; plot curves. Every step is
    a vcl command, printed before it runs so you can copy it, whose output goes to
    OUT_DIR; steps whose output exists are skipped, so a rerun continues an
    interrupted demo. The table's metrics are read back from each step's own output
    file (also in OUT_DIR/summary.json). About 8 CPU-minutes (~5 min on two idle cores).
    """
    import time

    from vcl.console import QUIET, VERBOSE, err_console, log, verbosity
    from vcl.demo import DemoConfig, run_demo

    config = DemoConfig(videos=videos, frames=frames, epochs=epochs, seed=seed)
    began = time.perf_counter()
    rows = run_demo(out_dir, config, quiet_steps=verbosity() != VERBOSE)
    if verbosity() != QUIET:
        from rich.table import Table

        table = Table(title=f"vcl demo: {out_dir} (outputs below it)")
        for name in ("stage", "output", "key metrics (read from the output)"):
            table.add_column(name)
        table.add_column("seconds", justify="right")
        for row in rows:
            metrics = ", ".join(f"{k} {_format(v)}" for k, v in row["metrics"].items())
            seconds = "done before" if row["seconds"] is None else f"{row['seconds']:.1f}"
            output = Path(row["output"])
            shown = output.relative_to(out_dir) if output.is_relative_to(out_dir) else output
            table.add_row(row["stage"], str(shown), metrics, seconds)
        err_console.print(table)
    log.info(
        "demo finished in %.0f s; every command is in %s",
        time.perf_counter() - began,
        out_dir / "summary.json",
    )
    if json_out:
        typer.echo(json.dumps(rows))


EXAMPLES = [
    (
        "The whole toolkit on 16 synthetic videos (a few minutes on two CPU cores):",
        "vcl demo demo/",
    ),
    (
        "A smaller, faster demo whose summary goes to a JSON file too:",
        "vcl demo /tmp/demo --videos 8 --epochs 1 --json > summary.json",
    ),
]
