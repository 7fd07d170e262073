"""The ``vcl`` console script and ``python -m vcl``: the one place a run starts.

Ctrl-C can land while Python is still importing typer, torch or OpenCV, before any
command has installed its handler; it must still end as every vcl interrupt does
(one ``error: interrupted`` line, exit 130), not in a traceback of the imports. So
this module imports nothing heavy before its ``try``.
"""

from __future__ import annotations

import sys

INTERRUPTED = 130  # vcl.errors.ExitCode.INTERRUPTED, not imported: nothing before the try


def main() -> None:
    try:
        from vcl.cli.app import main as run_app

        run_app()
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        raise SystemExit(INTERRUPTED) from None
