"""Everything people read goes to stderr; stdout is kept for data (JSONL / JSON).

Library modules log through :mod:`logging` (logger ``vcl``); the CLI calls
:func:`configure` once with the verbosity flags so those messages, tables and
progress bars land on stderr, and never on stdout.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

err_console = Console(stderr=True)
log = logging.getLogger("vcl")

QUIET, NORMAL, VERBOSE = 0, 1, 2
_level = NORMAL


def configure(quiet: bool = False, verbose: bool = False) -> None:
    """Set verbosity: -q shows only errors, -v adds debug messages and tracebacks."""
    global _level
    _level = QUIET if quiet else VERBOSE if verbose else NORMAL
    log.handlers.clear()
    log.addHandler(_ConsoleHandler())
    log.propagate = False
    log.setLevel({QUIET: logging.ERROR, NORMAL: logging.INFO, VERBOSE: logging.DEBUG}[_level])


class _ConsoleHandler(logging.Handler):
    """Print log lines on the stderr console, so they interleave cleanly with progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        err_console.print(
            prefix + record.getMessage(), markup=False, highlight=False, soft_wrap=True
        )


def verbosity() -> int:
    return _level


def progress() -> Progress:
    """A stderr progress bar with count, rate and ETA (never redirecting stdout)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        redirect_stdout=False,
        redirect_stderr=False,
        disable=_level == QUIET,
        transient=False,
    )


def track(
    items: Iterable[T], description: str, total: int | None = None, unit: str = "it"
) -> Iterator[T]:
    """Iterate with a progress bar on stderr showing items per second."""
    with progress() as bar:
        task = bar.add_task(description, total=total, rate="")
        for item in items:
            yield item
            bar.advance(task)
            speed = bar.tasks[0].speed
            if speed:
                bar.update(task, rate=f"{speed:.1f} {unit}/s")
