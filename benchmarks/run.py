"""Run benchmark scripts and print one table of our figures against a reference's.

    python benchmarks/run.py            # every benchmarks/bench_*.py
    python benchmarks/run.py video      # only bench_video.py

Each ``bench_<name>.py`` has ``run() -> list[dict]`` with keys ``stage``, ``compared``,
``ours``, ``reference``, ``unit`` and ``higher_is_better``. Both sides run in this
process on this machine, so the ratio is what to read; nothing here asserts a timing.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    import cv2
    import numpy as np

    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, OpenCV {cv2.__version__}"
    )


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def main(names: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names]
    table = Table(title=f"vcl benchmarks — {machine()}", title_justify="left")
    for column in ("stage", "compared", "ours", "reference", "unit", "ratio"):
        table.add_column(
            column, justify="right" if column in ("ours", "reference", "ratio") else "left"
        )
    for script in scripts:
        for row in load(script).run():
            ratio = row["ours"] / row["reference"] if row["reference"] else float("nan")
            better = "×" if row.get("higher_is_better", True) else "× (lower is better)"
            table.add_row(
                row["stage"],
                row["compared"],
                f"{row['ours']:.1f}",
                f"{row['reference']:.1f}",
                row["unit"],
                f"{ratio:.2f}{better}",
            )
    Console().print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
