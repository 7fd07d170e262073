"""Merge the outputs of sharded runs (``--shard I/N``) into one store or JSONL file.

Stores must share their ``vcl_schema``, parameters (shard-related keys ignored), seed,
columns (names, dtypes, row shapes) and plain arrays (a model, centroids: they must be
identical, since rows are only meaningful against them). The merged store holds the
groups of the first input, in that input's order, then those of the second, and so
on; rows are copied one group at a time, so memory stays at one group. Extra attributes
are combined: mappings (per-video info) are united, lists (failed or empty videos) are
concatenated without repeats, and anything else must be equal.

JSONL files must hold records of one schema (``vcl.video/1``, ``vcl.track/1``, ... or
untyped lines such as ``{"id", "cluster"}``); lines keep their input order, and paths
inside typed records are rewritten relative to the merged file's folder.

Overlapping ids (group ids of stores, ``id`` of JSONL records) are refused unless
``allow_overlap``, in which case the first input's copy is kept and later ones skipped.
The output is written atomically (``NAME.partial``, then rename); a killed store merge
resumes, skipping the groups already copied.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vcl.console import log
from vcl.errors import DataError, MissingInputError, OutputError, UsageError
from vcl.io.store import GROUP_IDS, GROUP_ROWS, Store, StoreWriter

# attrs every store carries (provenance) or that the writer manages: not merged
_PROVENANCE = {
    "vcl_schema",
    "vcl_version",
    "command",
    "params",
    "seed",
    "created",
    "resumed",
    "vcl_complete",
    "vcl_columns",
    "merged_from",
}


def strip_shard(params: Any) -> Any:
    """Params without shard-related keys (``shard``, ``shards``...), at any depth."""
    if isinstance(params, dict):
        return {k: strip_shard(v) for k, v in params.items() if "shard" not in str(k).lower()}
    return params


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
    for path in paths:
        if not path.exists() and not Path(f"{path}.partial").exists():
            raise MissingInputError("no such file or store", path)
    kinds = {is_store(p) for p in paths}
    if len(kinds) > 1:
        raise UsageError("cannot merge stores with JSONL files", None, "merge one kind at a time")
    output = Path(output)
    if output.resolve() in {p.resolve() for p in paths}:
        raise UsageError("the output is one of the inputs", output)
    if kinds.pop():
        return merge_stores(paths, output, allow_overlap, overwrite)
    return merge_jsonl(paths, output, allow_overlap, overwrite)


# ---------------------------------------------------------------------------- stores


def _column_spec(store: Store) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """Column -> (dtype, row shape); any string dtype is ``str``."""
    spec = {}
    for c in store.columns:
        dtype = store[c].dtype
        spec[c] = (str if dtype.kind in "TUO" else str(dtype), tuple(store[c].shape[1:]))
    return spec


def _plain_arrays(store: Store) -> list[str]:
    return [a for a in store.arrays if a not in store.columns and a not in (GROUP_IDS, GROUP_ROWS)]


def _check_compatible(first: Store, other: Store) -> None:
    """Raise naming ``other`` when it cannot be merged with ``first``."""
    schema, theirs = first.attrs["vcl_schema"], other.attrs["vcl_schema"]
    if theirs != schema:
        raise DataError(
            f"is a {theirs} store, the first input a {schema} one",
            other.path,
            "merge outputs of one stage",
        )
    if strip_shard(other.attrs.get("params")) != strip_shard(first.attrs.get("params")):
        a, b = strip_shard(first.attrs.get("params")), strip_shard(other.attrs.get("params"))
        keys = sorted(
            k for k in set(a or {}) | set(b or {}) if (a or {}).get(k) != (b or {}).get(k)
        )
        raise DataError(
            f"was made with other parameters than {first.path} (differ: {', '.join(keys)})",
            other.path,
            "merge outputs of one command line run with different --shard only",
        )
    if other.attrs.get("seed") != first.attrs.get("seed"):
        raise DataError(
            f"was made with --seed {other.attrs.get('seed')}, {first.path} with "
            f"{first.attrs.get('seed')}",
            other.path,
        )
    if _column_spec(other) != _column_spec(first):
        raise DataError(f"has other columns than {first.path}", other.path)
    if _plain_arrays(other) != _plain_arrays(first):
        raise DataError(f"has other arrays than {first.path}", other.path)
    for name in _plain_arrays(first):
        a, b = first[name][...], other[name][...]
        if a.shape != b.shape or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            raise DataError(
                f"array {name!r} differs from {first.path}'s: its rows do not belong together",
                other.path,
            )


def _merge_attrs(stores: list[Store], allow_overlap: bool) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for store in stores:
        for key, value in store.attrs.items():
            if key in _PROVENANCE:
                continue
            if key not in merged:
                merged[key] = value
            elif isinstance(value, dict) and isinstance(merged[key], dict):
                merged[key] = {**value, **merged[key]}  # the first input's entry wins
            elif isinstance(value, list) and isinstance(merged[key], list):
                merged[key] = merged[key] + [v for v in value if v not in merged[key]]
            elif value != merged[key]:
                raise DataError(
                    f"attribute {key!r} is {value!r}, in {stores[0].path} {merged[key]!r}",
                    store.path,
                )
    return merged


def merge_stores(
    paths: list[Path], output: Path, allow_overlap: bool, overwrite: bool
) -> dict[str, Any]:
    stores = [Store(p) for p in paths]
    first = stores[0]
    for store in stores[1:]:
        _check_compatible(first, store)
    owner: dict[str, Path] = {}
    plan: list[tuple[Store, list[str]]] = []
    skipped = 0
    for store in stores:
        keep = []
        for gid in store.group_ids:
            if gid in owner:
                if not allow_overlap:
                    raise DataError(
                        f"group {gid!r} is also in {owner[gid]}",
                        store.path,
                        "merge disjoint shards, or pass --allow-overlap to keep the first copy",
                    )
                skipped += 1
                continue
            owner[gid] = store.path
            keep.append(gid)
        plan.append((store, keep))
    attrs = _merge_attrs(stores, allow_overlap)
    params = strip_shard(first.attrs.get("params", {}))
    spec = _column_spec(first)
    with StoreWriter(
        output, first.attrs["vcl_schema"], params, first.attrs.get("seed"), overwrite
    ) as writer:
        writer.define_columns(spec, chunk_rows={c: first[c].chunks[0] for c in first.columns})
        if writer.resumed:
            log.info("resuming: %d groups already merged", len(writer.done_groups))
        for store, keep in plan:
            for gid in keep:
                if gid not in writer.done_groups:
                    writer.append_group(gid, **store.read_group(gid))
        for name in _plain_arrays(first):
            writer.write_array(name, first[name][...])
        writer.set_attrs(**attrs, merged_from=[str(p) for p in paths])
        groups = len(writer.done_groups)
    rows = sum(s.rows(g).stop - s.rows(g).start for s, keep in plan for g in keep)
    return {
        "output": str(output),
        "schema": first.attrs["vcl_schema"],
        "inputs": len(paths),
        "groups": groups,
        "rows": rows,
        "skipped_overlapping": skipped,
    }


# ---------------------------------------------------------------------------- JSONL


def _line_schema(obj: dict[str, Any]) -> str | None:
    schema = obj.get("schema")
    return schema if isinstance(schema, str) else None


def _read_lines(path: Path) -> list[dict[str, Any]]:
    from vcl.io.manifest import iter_json_lines

    return [obj for _, obj in iter_json_lines(path)]


def merge_jsonl(
    paths: list[Path], output: Path, allow_overlap: bool, overwrite: bool
) -> dict[str, Any]:
    from vcl.io.manifest import RECORD_TYPES, RecordWriter, parse_schema, read_records

    if str(output) == "-":
        raise UsageError("merge writes a file", "-o", "name the merged file")
    if output.exists() and not overwrite:
        raise OutputError("exists already", output, "pass --overwrite to replace it")
    schemas: dict[str | None, Path] = {}
    for path in paths:
        for obj in _read_lines(path):
            schemas.setdefault(_line_schema(obj), path)
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
        with RecordWriter(output, overwrite=overwrite) as writer:
            for path in paths:
                for record in read_records(path, cls):
                    if keep(record.id, path):
                        writer.write(record)
            count = writer.count
    else:
        partial = output.with_name(output.name + ".partial")
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            with partial.open("w", encoding="utf-8") as stream:
                for path in paths:
                    for obj in _read_lines(path):
                        if keep(obj.get("id"), path):
                            stream.write(json.dumps(obj, ensure_ascii=False) + "\n")
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
        "inputs": len(paths),
        "records": count,
        "skipped_overlapping": skipped,
    }
