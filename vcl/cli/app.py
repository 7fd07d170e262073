"""The ``vcl`` command: one typer app; each subcommand lives in its own module.

A command module exposes either ``run`` (a ``@vcl_command`` function: a plain
command) or ``app`` (a ``command_group`` with a default ``run`` subcommand and
others such as ``eval``). The first line of the docstring or group help is what
``vcl --help`` lists.
"""

from __future__ import annotations

import functools
import importlib
import signal
from types import ModuleType
from typing import IO, Annotated, Any

import typer
from typer.core import TyperGroup

from vcl import __version__

# The click that typer runs on: its own copy in recent typer, the click package before.
_click = getattr(typer.core, "_click", None) or typer.core.click  # type: ignore[attr-defined]
ClickUsageError = _click.exceptions.UsageError


def _show_on_one_line(error: ClickUsageError, file: IO[Any] | None = None) -> None:
    """Show a usage error as vcl shows every error: one ``error:`` line.

    Click prints the usage synopsis, a hint and ``Error: ...`` on three lines; a
    pipeline's log wants one line naming the command, the problem and where help is.
    """
    ctx = error.ctx
    where = f"{ctx.command_path}: " if ctx is not None else ""
    see = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
    message = " ".join(error.format_message().split())
    typer.echo(f"error: {where}{message}{see}", file=file, err=True)


def _one_line(error: ClickUsageError) -> ClickUsageError:
    if type(error).__name__ != "NoArgsIsHelpError":  # that one shows the help: keep it
        error.show = functools.partial(_show_on_one_line, error)  # type: ignore[method-assign]
    return error


class _PipelineOrder(TyperGroup):
    """List commands in pipeline order (COMMAND_MODULES), not commands before groups;
    show usage errors (unknown option, bad value, missing argument) on one line."""

    def list_commands(self, ctx: object) -> list[str]:
        return [name for name, _ in COMMAND_MODULES if name in self.commands]

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except ClickUsageError as error:
            raise _one_line(error) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ClickUsageError as error:
            raise _one_line(error) from None


app = typer.Typer(
    cls=_PipelineOrder,
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

# The commands, in the order `vcl --help` lists them: (command name, module in vcl.cli).
COMMAND_MODULES: list[tuple[str, str]] = [
    ("synth", "synth"),
    ("videos", "videos"),
    ("images", "images"),
    ("info", "info"),
    ("demo", "demo"),
    ("proposals", "proposals"),
    ("track", "track"),
    ("crops", "crops"),
    ("idt", "idt"),
    ("fisher", "fisher"),
    ("pretrain", "pretrain"),
    ("embed", "embed"),
    ("cluster", "cluster"),
    ("probe", "probe"),
    ("retrieve", "retrieve"),
    ("plot", "plot"),
    ("merge", "merge"),
]
COMMANDS: list[tuple[str, ModuleType]] = [
    (name, importlib.import_module(f"vcl.cli.{module}")) for name, module in COMMAND_MODULES
]
for _name, _module in COMMANDS:
    if hasattr(_module, "app"):
        app.add_typer(_module.app, name=_name)
    else:
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
    # `kill` (and a cluster scheduler's time limit) ends a run as Ctrl-C does: outputs
    # left resumable, --workers processes stopped (they were orphaned), exit 130
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    app()
