"""The ``vcl`` command: one typer app; each subcommand lives in its own module."""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from vcl import __version__
from vcl.cli import info, synth, videos

app = typer.Typer(
    name="vcl",
    help="Composable tools for unsupervised representation learning from video.\n\n"
    "Stages exchange zarr stores and JSONL manifests: stdout carries data, stderr "
    "carries messages. See `man vcl` for exit codes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# (name, module): each module exposes `run`, a @vcl_command function whose docstring's
# first line is the one-line description `vcl --help` lists.
COMMANDS = [
    ("synth", synth),
    ("videos", videos),
    ("info", info),
]
for _name, _module in COMMANDS:
    app.command(_name)(_module.run)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vcl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Composable tools for unsupervised representation learning from video."""


def main() -> None:
    # Behave like a Unix tool in a pipeline: `vcl ... | head` ends quietly.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    app()
