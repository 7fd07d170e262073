"""Per-id fields (labels, splits, tracks) read from a JSONL file or a vcl store.

Evaluation stages (``retrieve eval``, ...) join ground truth to their items by id,
never by row order. A source is either JSONL — any lines with an ``id`` (a videos
manifest, whose lines may also name it ``video_id`` or give only a ``path``; hand-written
``{"id", "label"}`` lines; ``-`` for stdin) where only ``id`` and the asked-for fields
matter — or a vcl store with an ``id`` column (or, like a
crops store, ``track_id`` and ``frame`` columns: ids ``<track_id>@<frame>``).
A missing, null or empty value reads as ``""`` (unknown).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vcl.errors import DataError


def is_store(path: str | Path) -> bool:
    """A zarr store is a folder (or names one ending in ``.zarr``); ``-`` is stdin."""
    p = Path(str(path))
    return str(path) != "-" and (p.is_dir() or p.suffix == ".zarr")


def read_id_fields(
    path: str | Path | Sequence[str | Path], names: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(ids, {name: values})`` with (N,) str arrays aligned with ``ids``.

    Several sources (shards, or JSONL and stores mixed) are read in order and joined;
    duplicate ids, within one source or across two, are an error (they would make a
    join ambiguous).
    """
    from vcl.io.manifest import is_stream, iter_json_lines, path_line_ids

    if not isinstance(path, (str, Path)):
        paths = list(path)
        if len(paths) != 1:
            return _read_several(paths, names)
        path = paths[0]
    label = str(path)
    if is_store(path):
        from vcl.io.store import KNOWN, Store

        store = Store(path, version=KNOWN)  # features, crops, clusters...
        if "id" in store.columns or {"track_id", "frame"} <= set(store.columns):
            from vcl.io.features import item_ids

            ids = item_ids(store)  # a crops store: <track_id>@<frame>, as vcl embed names crops
        else:
            raise DataError("store has no 'id' column to join by", label)
        fields = {}
        for name in names:
            if name in store.columns and store[name].ndim == 1:
                fields[name] = store[name][:].astype(object).astype(str)
            else:
                fields[name] = np.full(len(ids), "", dtype=object).astype(str)
    else:
        id_list: list[str] = []
        values: dict[str, list[str]] = {name: [] for name in names}
        base = Path.cwd() if is_stream(path) else Path(path).resolve().parent
        lines = list(iter_json_lines(path))
        by_path = path_line_ids([obj for _, obj in lines], base)  # as the videos reader
        for (lineno, obj), derived in zip(lines, by_path, strict=True):
            item = obj.get("id", obj.get("video_id", derived))  # a videos manifest's id
            if item is None:
                raise DataError(f"line {lineno}: needs an object with an 'id'", label)
            id_list.append(str(item))
            for name in names:
                value = obj.get(name)
                values[name].append("" if value is None else str(value))
        ids = np.array(id_list, dtype=str)
        fields = {name: np.array(v, dtype=str) for name, v in values.items()}
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) != len(ids):
        raise DataError(f"duplicate id {str(unique[counts > 1][0])!r}", label, "ids must be unique")
    return ids, fields


def _read_several(
    paths: Sequence[str | Path], names: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if not paths:
        raise DataError("no id source given")
    if sum(str(p) == "-" for p in paths) > 1:
        raise DataError("stdin ('-') can be read once only", "-")
    parts = [read_id_fields(p, names) for p in paths]
    ids = np.concatenate([p[0] for p in parts]).astype(str)
    owner = np.repeat(np.arange(len(paths)), [len(p[0]) for p in parts])
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = str(unique[counts > 1][0])
        where = [str(paths[i]) for i in owner[ids == dup]]
        raise DataError(f"id {dup!r} is also in {where[0]}", where[1], "ids must be unique")
    fields = {n: np.concatenate([p[1][n] for p in parts]).astype(str) for n in names}
    return ids, fields


def read_id_field(
    path: str | Path | Sequence[str | Path], name: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, values)`` of one field; see ``read_id_fields``. A store without the
    field's column is an error (all its values would read as unknown)."""
    from vcl.io.store import KNOWN, Store

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    for p in paths:
        if is_store(p) and Path(p).is_dir() and name not in Store(p, version=KNOWN).columns:
            raise DataError(
                f"store has no {name!r} column",
                p,
                f"give a JSONL or store with id and {name} of each item"
                + (" (crops carry the labels of labelled tracks)" if name == "label" else ""),
            )
    ids, fields = read_id_fields(path, [name])
    return ids, fields[name]


def lookup(ids: np.ndarray, source_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` of each of ``ids`` (``""`` where ``ids`` is absent from ``source_ids``)."""
    out = np.full(len(ids), "", dtype=object)
    if len(source_ids):
        order = np.argsort(source_ids)
        pos = np.searchsorted(source_ids, ids, sorter=order)
        pos = np.minimum(pos, len(source_ids) - 1)
        found = source_ids[order[pos]] == ids
        out[found] = values[order[pos[found]]]
    return out.astype(str)


def read_assignment(
    path: str | Path, run: int = 0, level: int | None = None
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(ids, (N,) int64 cluster, declared k or None) from a clusters store or JSONL
    ``{"id", "cluster"}`` lines (-1: not clustered); shared by cluster eval and plot.

    ``run`` picks an ``assignment`` column; ``level`` a FINCH hierarchy level instead.
    """
    from vcl.errors import UsageError

    label = str(path)
    if is_store(path):
        from vcl.io.store import Store

        store = Store(path, kind="clusters", version=1)
        ids = store["id"][:].astype(object).astype(str)
        if level is not None:
            if "levels" not in store:
                raise UsageError("--level needs a FINCH clusters store", label)
            levels = store["levels"][:]
            if not 0 <= level < levels.shape[1]:
                raise UsageError(f"--level {level}: the store has {levels.shape[1]} levels", label)
            values = levels[:, level].astype(np.int64)
            return ids, values, int(store["level_clusters"][:][level])
        assignment = store["assignment"][:]
        if not 0 <= run < assignment.shape[1]:
            raise UsageError(f"--run {run}: the store has {assignment.shape[1]} runs", label)
        sizes = store["sizes"][:] if "sizes" in store else None
        k = int(sizes.shape[1]) if sizes is not None else None
        return ids, assignment[:, run].astype(np.int64), k
    if run or level is not None:
        raise UsageError("--run and --level need a clusters store, not JSONL", label)
    ids, values = read_id_field(path, "cluster")
    if (values == "").any():  # a missing field; unassigned rows say -1
        first = str(ids[values == ""][0])
        raise DataError(
            f"a line has no 'cluster' field (id {first!r}); -1 marks an unassigned row", label
        )
    try:
        clusters = np.array([int(v) for v in values.tolist()], np.int64)
    except ValueError:
        bad = next(i for i, v in enumerate(values.tolist()) if not _is_int(v))
        raise DataError(
            f"id {str(ids[bad])!r}: 'cluster' must be an integer, not {values[bad]!r}", label
        ) from None
    return ids, clusters, None


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
