"""The C++ release's text output: one trajectory a line, whitespace-separated.

A line holds the ten header fields (frame, mean x/y, var x/y, length, scale, x/y/t
position) then the blocks traj (2L), HOG, HOF, MBHx, MBHy: 10 + 426 = 436 numbers
with the default parameters. The release prints ``%d`` for the frame, ``%f`` for the
header and trajectory, ``%.7f`` for descriptors, each followed by a tab.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import numpy as np

from vcl.errors import DataError
from vcl.idt import BLOCKS, HEADER


def _blocks(dims: Mapping[str, int] | None) -> dict[str, int]:
    return dict(BLOCKS if dims is None else dims)


def write_text(stream: TextIO, columns: Mapping[str, np.ndarray]) -> int:
    """Write rows in the release's format; returns the number of lines."""
    n = len(columns["frame"])
    if n == 0:
        return 0
    header = np.column_stack([np.asarray(columns[k], np.float64) for k in HEADER[1:]])
    traj = np.asarray(columns["traj"], np.float64)
    desc = np.column_stack(
        [np.asarray(columns[k], np.float64) for k in ("hog", "hof", "mbhx", "mbhy")]
    )
    fmt = "%d\t" + "%f\t" * (header.shape[1] + traj.shape[1]) + "%.7f\t" * desc.shape[1]
    table = np.column_stack([np.asarray(columns["frame"], np.float64), header, traj, desc])
    np.savetxt(stream, table, fmt=fmt.rstrip("\t") + "\t", delimiter="", newline="\n")
    return n


def read_text(path: str | Path, dims: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """Columns of a release text file (``dims``: block widths, default 30/96/108/96/96).

    A line with the wrong number of fields or a non-number names its line number.
    """
    blocks = _blocks(dims)
    width = len(HEADER) + sum(blocks.values())
    path = Path(path)
    rows: list[np.ndarray] = []
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as stream:
            for lineno, line in enumerate(stream, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != width:
                    raise DataError(
                        f"line {lineno}: {len(fields)} fields, expected {width} "
                        f"(10 header fields + {sum(blocks.values())} descriptor values)",
                        path,
                    )
                try:
                    rows.append(np.array(fields, dtype=np.float64))
                except ValueError:
                    raise DataError(f"line {lineno}: not all fields are numbers", path) from None
    except FileNotFoundError:
        from vcl.errors import MissingInputError

        raise MissingInputError("no such file", path) from None
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError):
        raise DataError("not a text file", path) from None
    table = np.stack(rows) if rows else np.zeros((0, width))
    if not np.isfinite(table).all():
        bad = int(np.flatnonzero(~np.isfinite(table).all(axis=1))[0])
        raise DataError(f"trajectory {bad + 1}: a field is not a finite number", path)
    columns: dict[str, np.ndarray] = {"frame": table[:, 0].astype(np.int32)}
    for i, name in enumerate(HEADER[1:], start=1):
        columns[name] = table[:, i].astype(np.float32)
    start = len(HEADER)
    for name, d in blocks.items():
        columns[name] = table[:, start : start + d].astype(np.float32)
        start += d
    return columns
