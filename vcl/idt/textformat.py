"""The C++ release's text output: one trajectory a line, whitespace-separated.

A line holds the ten header fields (frame, mean x/y, var x/y, length, scale, x/y/t
position) then the blocks traj (2L), HOG, HOF, MBHx, MBHy: 10 + 426 = 436 numbers
with the default parameters. The release prints ``%d`` for the frame, ``%f`` for the
header and trajectory, ``%.7f`` for descriptors, each followed by a tab.

The lines carry no parameters, and adding any would break byte compatibility with the
release, so a folder of them written by vcl gets a sidecar, ``params.json``
(:data:`SIDECAR`): the parameters, seed and block widths it was made with. A rerun
checks it before keeping existing files, and ``vcl idt convert`` reads the block
widths from it (files of the release itself, without one, take its defaults or the
convert options).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from vcl.errors import DataError, OutputError
from vcl.idt import BLOCKS, HEADER

SIDECAR = "params.json"
TEXT_SCHEMA = "vcl.idt-text/1"


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


def read_text(
    path: str | Path, dims: Mapping[str, int] | None = None, max_lines: int | None = None
) -> dict[str, np.ndarray]:
    """Columns of a release text file (``dims``: block widths, default 30/96/108/96/96).

    A line with the wrong number of fields or a non-number names its line number.
    ``max_lines``: read only the first few trajectories, e.g. to check every file's
    layout before an output is created (a wrong --track-length then leaves nothing).
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
                        _layout_hint(len(fields), blocks),
                    )
                try:
                    rows.append(np.array(fields, dtype=np.float64))
                except ValueError:
                    raise DataError(f"line {lineno}: not all fields are numbers", path) from None
                if max_lines is not None and len(rows) >= max_lines:
                    break
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


def _layout_hint(fields: int, blocks: Mapping[str, int]) -> str | None:
    """The track length that would explain ``fields`` with the other blocks unchanged.

    A hint only: 10 + 2L + HOG + HOF + MBH fields also fit other cell layouts, so L
    is never inferred silently."""
    twice = fields - len(HEADER) - sum(d for name, d in blocks.items() if name != "traj")
    if twice >= 4 and twice % 2 == 0 and twice != blocks["traj"]:
        return (
            f"if it was made with track length {twice // 2} (the release's -L), "
            f"pass --track-length {twice // 2}"
        )
    return None


def text_files_in(folder: Path) -> list[Path]:
    """The trajectory files (.txt, .txt.gz) below ``folder``; .partial files are not."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.rglob("*") if p.name.endswith((".txt", ".txt.gz")) and p.is_file()
    )


def read_sidecar(folder: Path) -> dict[str, Any] | None:
    """The ``params.json`` of a text folder, or None where there is none."""
    path = folder / SIDECAR
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"not a readable JSON file ({exc})", path) from None
    blocks = record.get("blocks") if isinstance(record, dict) else None
    if (
        record.get("vcl_schema") != TEXT_SCHEMA
        or not isinstance(blocks, dict)
        or set(blocks) != set(BLOCKS)
        or not all(isinstance(v, int) and v > 0 for v in blocks.values())
    ):
        raise DataError(
            f"not a {TEXT_SCHEMA} record with the widths of {', '.join(BLOCKS)}",
            path,
            "delete it if the folder holds the release's own files",
        )
    return record


def sidecar_of(path: Path, root: Path) -> dict[str, Any] | None:
    """The nearest ``params.json`` from the file's folder up to ``root`` (inclusive):
    VIDEO_IDs with slashes put files in subfolders of the folder that has it."""
    folder = path.parent
    while True:
        record = read_sidecar(folder)
        if record is not None or folder == root or folder == folder.parent:
            return record
        if root not in folder.parents:
            return None
        folder = folder.parent


def claim_folder(
    folder: Path,
    params: Mapping[str, Any],
    seed: int | None,
    blocks: Mapping[str, int],
    targets: Iterable[Path],
    overwrite: bool,
) -> None:
    """Make ``folder`` a text folder of these parameters before any file is written.

    Text files already there made with other parameters (or with no record of them)
    are refused, as the store writer refuses a partial store of other parameters;
    with ``overwrite`` this run's own files are deleted first, so that a run killed
    midway leaves no old file under the new record, and files of other videos, which
    nothing would redo, are refused still. ``params.json`` is written atomically.
    """
    from vcl.io.store import provenance

    record = {**provenance(TEXT_SCHEMA, params, seed), "header": list(HEADER)}
    record["blocks"] = {name: int(d) for name, d in blocks.items()}
    record = json.loads(json.dumps(record))  # compare as it reads back
    old = read_sidecar(folder)
    same = old is not None and all(old.get(k) == record[k] for k in ("params", "seed", "blocks"))
    if same:
        return
    existing = text_files_in(folder)
    if existing:
        if old is None:
            why = "text files with no params.json (the release's, or an older vcl's) are here"
        else:
            why = (
                f"text files made with different parameters ({_differences(old, record)}) are here"
            )
        if not overwrite:
            raise OutputError(why, folder, "pass --overwrite to redo them, or write elsewhere")
        wanted = {Path(t).resolve() for t in targets}
        others = [p for p in existing if p.resolve() not in wanted]
        if others:
            shown = ", ".join(p.name for p in others[:3]) + (", ..." if len(others) > 3 else "")
            raise OutputError(
                f"{why}, {len(others)} of them of videos this run does not redo ({shown})",
                folder,
                "delete them, or write elsewhere",
            )
        for path in existing:
            path.unlink()
    sidecar = folder / SIDECAR
    partial = sidecar.with_name(sidecar.name + ".partial")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        os.replace(partial, sidecar)
    except OSError as exc:
        raise OutputError(f"cannot write ({exc.strerror})", sidecar) from None


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The first few differing parameters, e.g. "track_length 15, not 10"."""
    pairs = [(k, old.get("params", {}).get(k), v) for k, v in new["params"].items()]
    pairs.append(("seed", old.get("seed"), new["seed"]))
    diffs = [f"{k} {a!r}, not {b!r}" for k, a, b in pairs if a != b]
    diffs += [f"{k} {a!r}, not unset" for k, a in old.get("params", {}).items()
              if k not in new["params"]]  # fmt: skip
    if not diffs and old.get("blocks") != new["blocks"]:
        diffs.append(f"block widths {old.get('blocks')}, not {new['blocks']}")
    return "; ".join(diffs[:3]) + ("; ..." if len(diffs) > 3 else "") or "another record"
