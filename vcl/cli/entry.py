"""The ``vcl`` console script and ``python -m vcl``: the one place a run starts.

Ctrl-C can land while Python is still importing typer, torch or OpenCV, before any
command has installed its handler; it must still end as every vcl interrupt does
(one ``error: interrupted`` line, exit 130), not in a traceback of the imports. So
this module imports nothing heavy before its ``try``.
"""

from __future__ import annotations

import sys

INTERRUPTED = 130  # vcl.errors.ExitCode.INTERRUPTED, not imported: nothing before the try


class GuardedStdout:
    """sys.stdout, remembering whether writing to it failed (a full disk, /dev/full, or
    ``>&-``, where Python's sys.stdout is None and print() would drop the output without
    a word), so the command can say that stdout, not an output file, could not be
    written (``vcl.cli.common.vcl_command``)."""

    def __init__(self, stream: object | None) -> None:
        self._stream = stream
        self.failed = False

    def write(self, text: str) -> int:
        return self._guard("write", text)

    def flush(self) -> None:
        if self._stream is not None or self.failed:
            self._guard("flush")

    def _guard(self, method: str, *args: object) -> object:
        try:
            if self._stream is None:
                raise OSError(9, "stdout is closed")  # EBADF, as a write to fd 1 would be
            return getattr(self._stream, method)(*args)
        except OSError:
            self.failed = True
            raise

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def main() -> None:
    sys.stdout = GuardedStdout(sys.stdout)  # type: ignore[assignment]
    try:
        from vcl.cli.app import main as run_app

        run_app()
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        raise SystemExit(INTERRUPTED) from None
