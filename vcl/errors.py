"""The project's exceptions and the one table of exit codes they map to.

Library code raises these; the CLI decorator (`vcl.cli.common.vcl_command`) turns
them into a one-line ``error: <file>: <problem>; <what to do>`` and the exit code.
Codes follow BSD sysexits so that shell scripts and Makefiles can tell a bad input
from a missing one or from a bug.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    USAGE = 2  # wrong flags or arguments
    SKIPPED = 3  # --keep-going: some inputs failed and were left out; the output holds the rest
    DATA = 65  # input exists but is malformed: bad line, wrong schema, corrupt video
    NO_INPUT = 66  # input file or folder does not exist
    UNAVAILABLE = 69  # asked-for device (cuda:N, mps) is absent
    INTERNAL = 70  # a bug in vcl: please report it
    CANNOT_CREATE = 73  # output cannot be written, or exists and --overwrite was not given
    INTERRUPTED = 130  # Ctrl-C / SIGINT


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.USAGE: "usage error: unknown option, bad value, conflicting flags",
    ExitCode.SKIPPED: "some inputs failed and were skipped (--keep-going, or unreadable query "
    "files of vcl retrieve query); the output holds the rest, and the failures are listed on "
    "stderr",
    ExitCode.DATA: "bad input data: malformed line, unknown schema version, corrupt video",
    ExitCode.NO_INPUT: "an input file or folder does not exist",
    ExitCode.UNAVAILABLE: "the requested device is not available",
    ExitCode.INTERNAL: "internal error (a bug in vcl; rerun with -v and report it)",
    ExitCode.CANNOT_CREATE: "the output cannot be created, or exists already",
    ExitCode.INTERRUPTED: "interrupted",
}


class ErrorMessage(str):
    """A `VclError`'s one-line message that remembers the error's exit code.

    Workers hand a failed video back to the parent as its message (so that --keep-going
    can skip it and go on); the code travelling with the text lets the parent raise the
    same kind of error again (`worker_error`), so a missing file stays NO_INPUT (66)
    instead of turning into bad data (65) on the way back.
    """

    exit_code: ExitCode

    def __new__(cls, text: str, exit_code: int = ExitCode.DATA) -> ErrorMessage:
        self = super().__new__(cls, text)
        self.exit_code = ExitCode(exit_code)
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # pickled back from worker processes
        return (ErrorMessage, (str(self), int(self.exit_code)))


class VclError(Exception):
    """A user-facing failure: one line naming the file, the problem and the fix."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, problem: str, path: str | Path | None = None, hint: str | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> ErrorMessage:
        text = self.problem if self.path is None else f"{self.path}: {self.problem}"
        return ErrorMessage(text if not self.hint else f"{text}; {self.hint}", self.exit_code)


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """A `DataError` raised inside without a file (deep in a library: k > N, one class)
    is raised again naming ``path``, the input the command was given."""
    try:
        yield
    except DataError as exc:
        if exc.path is not None:
            raise
        raise DataError(exc.problem, path, exc.hint) from None


class UsageError(VclError):
    exit_code = ExitCode.USAGE


class DataError(VclError):
    exit_code = ExitCode.DATA


class MissingInputError(VclError):
    exit_code = ExitCode.NO_INPUT


class DeviceUnavailableError(VclError):
    exit_code = ExitCode.UNAVAILABLE


class OutputError(VclError):
    exit_code = ExitCode.CANNOT_CREATE


def worker_error(message: str | None, hint: str | None = None) -> VclError:
    """The error a worker reported as ``message``, again of the class its exit code names.

    One place for every stage that runs videos in workers (proposals, idt, track), so a
    failure exits the same way whether it happened in-process or in a worker. A plain
    string (from code that dropped the `ErrorMessage`) is taken as bad data.
    """
    code = getattr(message, "exit_code", ExitCode.DATA)
    by_code: dict[ExitCode, type[VclError]] = {
        cls.exit_code: cls
        for cls in (UsageError, DataError, MissingInputError, DeviceUnavailableError, OutputError)
    }
    return by_code.get(code, VclError)(str(message or "failed"), None, hint)


def first_ids(ids: Sequence[object], n: int = 3) -> str:
    """The first few ids, quoted, for messages that show why two id sets do not meet."""
    shown = ", ".join(repr(str(i)) for i in ids[:n])
    return (shown + ", …" if len(ids) > n else shown) or "none"
