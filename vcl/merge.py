"""Merge the outputs of sharded runs (``--shard I/N``) into one store or JSONL file.

Stores must share their ``vcl_schema`` (of the major version this vcl reads, for a kind
of store it knows), parameters (shard-related keys ignored), seed, columns (names,
dtypes, row shapes) and plain arrays (a model, centroids: they must be identical, since
rows are only meaningful against them); the checks are
``vcl.io.union``'s, the ones every reading command applies to several inputs. The
merged store holds the groups of the first input, in that input's order, then those of
the second, and so on; rows are copied one group at a time, so memory stays at one
group. Extra attributes are combined: mappings (per-video info) are united, lists
(failed or empty videos) are concatenated without repeats, and anything else must be
equal.

JSONL files must hold records of one schema (``vcl.video/1``, ``vcl.track/1``, ... or
untyped lines such as ``{"id", "cluster"}``); lines keep their input order, and paths
(of typed records, and the ``path`` of untyped lines) are rewritten for the merged
file's folder. One JSONL input may be ``-`` (stdin; a pipe such as bash's ``<(cmd)``
works too), its relative paths taken from the working directory; a JSONL merge may go
to stdout (``-``), with absolute paths, once every input has been read and checked.
Stores need paths, in and out.

Overlapping ids (group ids of stores, row ids of stores with an ``id`` column, ``id``
of JSONL records) are refused unless ``allow_overlap``, in which case the first input's
copy is kept and later ones skipped: a later group loses the rows whose ids came before,
and is left out when none remain.
The output is written atomically (``NAME.partial``, then rename); a killed store merge
resumes, skipping the groups already copied.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vcl.console import log
from vcl.errors import DataError, MissingInputError, OutputError, UsageError, VclError
from vcl.io.store import KNOWN, Store, StoreWriter
from vcl.io.union import (
    check_compatible,
    column_spec,
    combine_attrs,
    owners,
    plain_arrays,
    strip_shard,
    unique_rows,
)


def is_store(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".zarr" or path.name.endswith(".zarr.partial")


def merge(
    inputs: Sequence[str | Path],
    output: str | Path,
    allow_overlap: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Merge ``inputs`` (all stores or all JSONL files) into ``output``; returns a summary."""
    paths = [Path(p) for p in inputs]
    if len(paths) < 1:
        raise UsageError("give at least one input to merge")
    if sum(str(p) == "-" for p in paths) > 1:
        raise UsageError("stdin ('-') can be read once only")
    for path in paths:
        if str(path) == "-":
            continue
        if not path.exists() and not Path(f"{path}.partial").exists():
            raise MissingInputError("no such file or store", path)
    kinds = {is_store(p) for p in paths}
    if len(kinds) > 1:
        raise UsageError("cannot merge stores with JSONL files", None, "merge one kind at a time")
    output = Path(output)
    files = [p for p in paths if str(p) != "-"]
    if str(output) != "-" and output.resolve() in {p.resolve() for p in files}:
        raise UsageError("the output is one of the inputs", output)
    if kinds.pop():
        from vcl.io.store import refuse_stdout

        refuse_stdout(output, "the merged output is a zarr store")
        return merge_stores(paths, output, allow_overlap, overwrite)
    return merge_jsonl(paths, output, allow_overlap, overwrite)


# ---------------------------------------------------------------------------- stores


def merge_stores(
    paths: list[Path], output: Path, allow_overlap: bool, overwrite: bool
) -> dict[str, Any]:
    # each input of a kind vcl knows must have the version this vcl reads for it (a
    # kind it does not know, another tool's columns, is merged as plain columns), and
    # all must have the first one's schema (`check_compatible`)
    stores = [Store(p, version=KNOWN) for p in paths]
    first = stores[0]
    for store in stores[1:]:
        check_compatible(first, store)
    groups = owners(stores, allow_overlap)
    masks = unique_rows(stores, groups, allow_overlap)
    # per store, (group, rows to keep or None for all); a group all of whose rows are
    # copies of earlier ones is left out like an overlapping group
    plan: list[tuple[Store, list[tuple[str, np.ndarray | None]]]] = []
    skipped_rows = 0
    for store, keep, mask in zip(stores, groups, masks, strict=True):
        entries: list[tuple[str, np.ndarray | None]] = []
        for gid in keep:
            rows = None if mask is None else mask[store.rows(gid)]
            if rows is not None and not rows.all():
                skipped_rows += int((~rows).sum())
                if not rows.any():
                    continue
            entries.append((gid, None if rows is None or rows.all() else rows))
        plan.append((store, entries))
    skipped = sum(len(s.group_ids) - len(entries) for s, entries in plan)
    attrs = combine_attrs(stores)
    params = strip_shard(first.attrs.get("params", {}))
    spec = column_spec(first)
    ids = [gid for _, entries in plan for gid, _ in entries]
    seed = first.attrs.get("seed")
    schema = first.attrs["vcl_schema"]
    with StoreWriter(output, schema, params, seed, overwrite, groups=ids) as writer:
        writer.define_columns(spec, chunk_rows={c: first[c].chunks[0] for c in first.columns})
        if writer.resumed:
            log.info("resuming: %d groups already merged", len(writer.done_groups))
        for store, entries in plan:
            for gid, rows in entries:
                if gid not in writer.done_groups:
                    data = store.read_group(gid)
                    if rows is not None:
                        data = {name: values[rows] for name, values in data.items()}
                    writer.append_group(gid, **data)
        for name in plain_arrays(first):
            writer.write_array(name, first[name][...])
        writer.set_attrs(**attrs, merged_from=[str(p) for p in paths])
        groups = len(writer.done_groups)
    rows = sum(
        s.rows(g).stop - s.rows(g).start if keep is None else int(keep.sum())
        for s, entries in plan
        for g, keep in entries
    )
    return {
        "output": str(output),
        "schema": first.attrs["vcl_schema"],
        "inputs": len(paths),
        "groups": groups,
        "rows": rows,
        "skipped_overlapping": skipped,
        "skipped_rows": skipped_rows,
    }


# ---------------------------------------------------------------------------- JSONL


def _line_schema(obj: dict[str, Any]) -> str | None:
    schema = obj.get("schema")
    return schema if isinstance(schema, str) else None


@dataclass(frozen=True)
class _Source:
    """One JSONL input: its name as given, the file read, and the folder its relative
    paths are relative to."""

    name: Path
    file: Path
    base: Path


@contextmanager
def _sources(paths: list[Path]) -> Iterator[list[_Source]]:
    """The JSONL inputs, each readable twice (a merge reads the schemas first, then the
    records): stdin (``-``) and pipes (bash's ``<(cmd)``) can be read once only, so
    they are copied to a temporary file first. Their relative paths are taken from the
    working directory, as every reader of stdin takes them."""
    from vcl.io.manifest import is_stream, open_text_input

    with tempfile.TemporaryDirectory(prefix="vcl-merge-") as tmp:
        sources = []
        for i, path in enumerate(paths):
            if not is_stream(path):
                sources.append(_Source(path, path, path.resolve().parent))
                continue
            copy = Path(tmp) / f"input{i}.jsonl"
            stream = open_text_input(path)  # refuses an interactive terminal
            try:
                with copy.open("w", encoding="utf-8") as f:
                    shutil.copyfileobj(stream, f)
            except UnicodeDecodeError as exc:
                raise DataError(f"not UTF-8 text ({exc.reason})", path) from None
            finally:
                if stream is not sys.stdin:
                    stream.close()
            if copy.stat().st_size == 0:  # an upstream step that failed, not an empty shard
                raise DataError("is empty", path, "check the step that wrote it (set -o pipefail)")
            sources.append(_Source(path, copy, Path.cwd()))
        yield sources


@contextmanager
def _naming(source: _Source) -> Iterator[None]:
    """An error about a stream's temporary copy names the stream as given (``-``)."""
    try:
        yield
    except VclError as exc:
        if source.file == source.name or exc.path != str(source.file):
            raise
        raise type(exc)(exc.problem, source.name, exc.hint) from None


def _read_lines(source: _Source) -> list[dict[str, Any]]:
    from vcl.io.manifest import iter_json_lines

    with _naming(source):
        return [obj for _, obj in iter_json_lines(source.file)]


def _read_records(source: _Source, cls: Any) -> list[Any]:
    from vcl.io.manifest import read_records

    with _naming(source):
        return read_records(source.file, cls, base=source.base)


def _rebase_path(obj: dict[str, Any], base: Path, output: Path | None) -> None:
    """Make an untyped line's relative ``path`` (a hand-written videos manifest) name the
    same file from the merged file's folder, as typed records' paths are; absolute when
    the merged lines go to stdout (as RecordWriter writes typed records there)."""
    from vcl.io.manifest import relative_path

    value = obj.get("path")
    if isinstance(value, str) and value and not os.path.isabs(value):
        full = os.path.abspath(base / value)
        obj["path"] = full if output is None else relative_path(full, output.resolve().parent)


def merge_jsonl(
    paths: list[Path], output: Path, allow_overlap: bool, overwrite: bool
) -> dict[str, Any]:
    """Merge JSONL files, ``-`` (stdin) among them, into ``output`` or, for ``-``,
    stdout: then every check (schemas, records, overlaps) passes before the first line
    is written."""
    to_stdout = str(output) == "-"
    if not to_stdout and output.exists() and not overwrite:
        raise OutputError("exists already", output, "pass --overwrite to replace it")
    with _sources(paths) as sources:
        return _merge_sources(sources, output, to_stdout, allow_overlap, overwrite)


def _merge_sources(
    sources: list[_Source], output: Path, to_stdout: bool, allow_overlap: bool, overwrite: bool
) -> dict[str, Any]:
    from vcl.io.manifest import RECORD_TYPES, RecordWriter, parse_schema

    schemas: dict[str | None, Path] = {}
    for source in sources:
        for obj in _read_lines(source):
            schemas.setdefault(_line_schema(obj), source.name)
    if len(schemas) > 1:
        (a, pa), (b, pb) = list(schemas.items())[:2]
        raise DataError(
            f"holds {b or 'untyped'} lines, {pa} {a or 'untyped'} ones",
            pb,
            "merge files of one schema",
        )
    schema = next(iter(schemas), None)
    cls = None
    if schema is not None:
        try:
            kind, _ = parse_schema(schema)
        except ValueError as exc:
            raise DataError(str(exc), schemas[schema]) from None
        cls = RECORD_TYPES.get(kind)
    owner: dict[str, Path] = {}
    count = skipped = 0

    def keep(record_id: Any, path: Path) -> bool:
        nonlocal skipped
        if record_id is None:
            return True
        key = str(record_id)
        if key in owner:
            if not allow_overlap:
                raise DataError(
                    f"id {key!r} is also in {owner[key]}",
                    path,
                    "merge disjoint shards, or pass --allow-overlap",
                )
            skipped += 1
            return False
        owner[key] = path
        return True

    if cls is not None:  # typed: validated, paths rewritten for the merged file's folder

        def records() -> Iterator[Any]:
            for source in sources:
                for record in _read_records(source, cls):
                    if keep(record.id, source.name):
                        yield record

        # stdout cannot be taken back: every record is read and checked first
        todo = list(records()) if to_stdout else records()
        with RecordWriter(output, overwrite=overwrite) as writer:
            count = writer.write_all(todo)
    else:

        def lines() -> Iterator[str]:
            for source in sources:
                for obj in _read_lines(source):
                    if keep(obj["id"] if "id" in obj else obj.get("video_id"), source.name):
                        _rebase_path(obj, source.base, None if to_stdout else output)
                        yield json.dumps(obj, ensure_ascii=False) + "\n"

        if to_stdout:
            text = list(lines())
            sys.stdout.write("".join(text))
            sys.stdout.flush()
            count = len(text)
        else:
            partial = output.with_name(output.name + ".partial")
            try:
                output.parent.mkdir(parents=True, exist_ok=True)
                with partial.open("w", encoding="utf-8") as stream:
                    for line in lines():
                        stream.write(line)
                        count += 1
                os.replace(partial, output)
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise OutputError(f"cannot write ({exc.strerror})", output) from None
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
    return {
        "output": str(output),
        "schema": schema,
        "inputs": len(sources),
        "records": count,
        "skipped_overlapping": skipped,
    }
