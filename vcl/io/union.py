"""Several outputs of one schema read as one input: the shards of a ``--shard I/N`` run.

Users shard a stage over machines (``--shard 0/3`` ... ``--shard 2/3``) and get one
store or JSONL file per shard. Every reading command accepts them all at once
(``vcl track p0.zarr p1.zarr p2.zarr``) and sees exactly what it would see in their
``vcl merge``: the groups of the first input in its order, then the second's, and so
on. The checks are the merge's (this module is where ``vcl merge`` gets them):

- stores: same ``vcl_schema``, same parameters (shard options aside; those naming
  files compared by the files they name, not as typed), same seed, same
  columns (names, dtypes, row shapes) and identical plain arrays (a PCA basis, a GMM:
  rows are only meaningful against them); no group id in two stores, and no row id
  (stores with an ``id`` column) twice;
- JSONL: records of one schema; no id in two files.

``open_stores`` returns a plain ``Store`` for one path, else a ``StoreUnion`` that reads
like one: ``group_ids``, ``offsets``, ``read_group``, and columns (``union["box"]``) that
slice across the stores lazily, so memory does not grow with the number of inputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vcl.errors import DataError, UsageError
from vcl.io.store import GROUP_IDS, GROUP_ROWS, Store, differing_params, path_params, same_path

# attrs every store carries (provenance) or that the writer manages: not combined
PROVENANCE = frozenset(
    {
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
)


def strip_shard(params: Any) -> Any:
    """Params without shard-related keys (``shard``, ``shards``...), at any depth."""
    if isinstance(params, dict):
        return {k: strip_shard(v) for k, v in params.items() if "shard" not in str(k).lower()}
    return params


def column_spec(store: Store) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """Column -> (dtype, row shape); any string dtype is ``str``."""
    spec = {}
    for c in store.columns:
        dtype = store[c].dtype
        spec[c] = (str if dtype.kind in "TUO" else str(dtype), tuple(store[c].shape[1:]))
    return spec


def plain_arrays(store: Store) -> list[str]:
    """Arrays that are neither columns nor the group bookkeeping (a model, centroids)."""
    return [a for a in store.arrays if a not in store.columns and a not in (GROUP_IDS, GROUP_ROWS)]


def check_compatible(first: Store, other: Store) -> None:
    """Raise DataError naming ``other`` when its rows cannot join ``first``'s."""
    schema, theirs = first.attrs["vcl_schema"], other.attrs["vcl_schema"]
    if theirs != schema:
        raise DataError(
            f"is a {theirs} store, the first input a {schema} one",
            other.path,
            "give outputs of one stage",
        )
    a, b = strip_shard(first.attrs.get("params")), strip_shard(other.attrs.get("params"))
    keys = differing_params(a, b, path_params(first.attrs, other.attrs))
    if keys:
        raise DataError(
            f"was made with other parameters than {first.path} (differ: {', '.join(keys)})",
            other.path,
            "give outputs of one command line run with different --shard only",
        )
    if other.attrs.get("seed") != first.attrs.get("seed"):
        raise DataError(
            f"was made with --seed {other.attrs.get('seed')}, {first.path} with "
            f"{first.attrs.get('seed')}",
            other.path,
        )
    if column_spec(other) != column_spec(first):
        raise DataError(f"has other columns than {first.path}", other.path)
    if plain_arrays(other) != plain_arrays(first):
        raise DataError(f"has other arrays than {first.path}", other.path)
    for name in plain_arrays(first):
        x, y = first[name][...], other[name][...]
        if x.shape != y.shape or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            raise DataError(
                f"array {name!r} differs from {first.path}'s: its rows do not belong together",
                other.path,
            )


def combine_attrs(stores: Sequence[Store]) -> dict[str, Any]:
    """Non-provenance attrs of several stores as one: mappings (per-video info) united,
    lists (failed or empty videos) concatenated without repeats, anything else equal
    (an attr named like a parameter naming files, such as ``model``: naming the same
    files, the first input's kept)."""
    combined: dict[str, Any] = {}
    paths = path_params(*(store.attrs for store in stores))
    for store in stores:
        for key, value in store.attrs.items():
            if key in PROVENANCE:
                continue
            if key not in combined:
                combined[key] = value
            elif isinstance(value, dict) and isinstance(combined[key], dict):
                combined[key] = {**value, **combined[key]}  # the first input's entry wins
            elif isinstance(value, list) and isinstance(combined[key], list):
                combined[key] = combined[key] + [v for v in value if v not in combined[key]]
            elif value != combined[key] and not (key in paths and same_path(value, combined[key])):
                raise DataError(
                    f"attribute {key!r} is {value!r}, in {stores[0].path} {combined[key]!r}",
                    store.path,
                )
    return combined


def owners(stores: Sequence[Store], allow_overlap: bool = False) -> list[list[str]]:
    """Per store, the group ids it contributes; an id already in an earlier store is an
    error naming both, or (``allow_overlap``) left out."""
    seen: dict[str, Path] = {}
    keep_all = []
    for store in stores:
        keep = []
        for gid in store.group_ids:
            if gid in seen:
                if not allow_overlap:
                    raise DataError(
                        f"group {gid!r} is also in {seen[gid]}",
                        store.path,
                        "give disjoint shards (or vcl merge them with --allow-overlap)",
                    )
                continue
            seen[gid] = store.path
            keep.append(gid)
        keep_all.append(keep)
    return keep_all


def row_ids(store: Store) -> np.ndarray | None:
    """(N,) str ids of a store's rows, or None when it has no ``id`` column (its rows are
    then named by their group, which ``owners`` checks)."""
    if "id" not in store.columns:
        return None
    return np.asarray(store["id"][:]).astype(object).astype(str)


def unique_rows(
    stores: Sequence[Store], groups: Sequence[Sequence[str]], allow_overlap: bool = False
) -> list[np.ndarray | None]:
    """Per store, a (N,) bool mask of the rows it contributes (None: all of them).

    Group ids alone miss rows held twice under different groups: images are grouped in
    batches whose ids carry the shard (``images000000-shard0of2``), so an unsharded run
    and a shard of it share no group yet share every id. Only the rows of ``groups``
    (each store's, as ``owners`` returned them) count. A row id held twice (in two
    stores or in one) is an error naming both, or (``allow_overlap``) every copy after
    the first is left out, as ``owners`` does for groups. Stores without an ``id``
    column are not checked.
    """
    masks: list[np.ndarray | None] = []
    parts, owner, where = [], [], []
    for s, (store, keep) in enumerate(zip(stores, groups, strict=True)):
        ids = row_ids(store)
        if ids is None:
            masks.append(None)
            continue
        rows = np.zeros(store.n_rows, dtype=bool)
        for gid in keep:
            rows[store.rows(gid)] = True
        index = np.flatnonzero(rows)
        parts.append(ids[index])
        owner.append(np.full(len(index), s))
        where.append(index)
        masks.append(rows)
    if not parts:
        return masks
    ids, owner_of, row_of = np.concatenate(parts), np.concatenate(owner), np.concatenate(where)
    _, first = np.unique(ids, return_index=True)  # first copy of each id, in input order
    if len(first) == len(ids):
        return masks
    later = np.ones(len(ids), dtype=bool)
    later[first] = False
    if not allow_overlap:
        i = int(np.flatnonzero(later)[0])  # the earliest row that repeats an id
        j = int(np.flatnonzero(ids == ids[i])[0])
        raise DataError(
            f"id {str(ids[i])!r} is also in {stores[owner_of[j]].path}",
            stores[owner_of[i]].path,
            "give disjoint shards (or vcl merge them with --allow-overlap)",
        )
    for s, mask in enumerate(masks):
        if mask is not None:
            mask[row_of[later & (owner_of == s)]] = False
    return masks


class UnionColumn:
    """One column of several stores, read as one array (rows in store order), lazily.

    Supports what readers use: ``shape``, ``dtype``, ``ndim``, ``col[a:b]``, ``col[:]``,
    ``col[...]`` and ``get_orthogonal_selection((rows,))``.
    """

    def __init__(self, arrays: Sequence[Any], offsets: np.ndarray):
        self.arrays = list(arrays)
        self.offsets = offsets  # (S+1,) first global row of each store
        self.dtype = arrays[0].dtype
        self.shape = (int(offsets[-1]), *arrays[0].shape[1:])
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def _empty(self) -> np.ndarray:
        return np.asarray(self.arrays[0][0:0])

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple[Any, ...] = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        if key is Ellipsis:
            key = slice(None)
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= i < self.shape[0]:
                raise IndexError(f"row {key} out of range for {self.shape[0]} rows")
            s = int(np.searchsorted(self.offsets, i, side="right")) - 1
            return np.asarray(self.arrays[s][(i - int(self.offsets[s]), *rest)])
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a union column reads contiguous row slices only")
        start, stop, _ = key.indices(self.shape[0])
        parts = []
        for s, arr in enumerate(self.arrays):
            lo, hi = max(start, int(self.offsets[s])), min(stop, int(self.offsets[s + 1]))
            if lo < hi:
                base = int(self.offsets[s])
                parts.append(np.asarray(arr[(slice(lo - base, hi - base), *rest)]))
        if not parts:
            return self._empty()[(slice(None), *rest)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def get_orthogonal_selection(self, selection: tuple[np.ndarray, ...]) -> np.ndarray:
        rows = np.asarray(selection[0], dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        which = np.searchsorted(self.offsets, rows[order], side="right") - 1
        parts = []
        for s in np.unique(which):
            local = rows[order][which == s] - int(self.offsets[s])
            parts.append(np.asarray(self.arrays[s].get_orthogonal_selection((local,))))
        if not parts:
            return self._empty()
        out = np.empty((len(rows), *self.shape[1:]), dtype=parts[0].dtype)
        out[order] = np.concatenate(parts)
        return out


class StoreUnion:
    """Several complete stores of one schema, read as their merge would be (see module)."""

    def __init__(self, stores: Sequence[Store]):
        self.stores = list(stores)
        first = self.stores[0]
        for store in self.stores[1:]:
            check_compatible(first, store)
        # overlapping group or row ids are an error
        unique_rows(self.stores, owners(self.stores))
        self.paths = [s.path for s in self.stores]
        self.path = first.path  # for messages that name one input
        self.kind, self.version = first.kind, first.version
        self.attrs: dict[str, Any] = {
            **{k: v for k, v in first.attrs.items() if k in PROVENANCE},
            "params": strip_shard(first.attrs.get("params")),
            **combine_attrs(self.stores),
            "inputs": [str(p) for p in self.paths],
        }
        self.columns = list(first.columns)
        self.group_ids = [g for s in self.stores for g in s.group_ids]
        sizes = [s.n_rows for s in self.stores]
        self.store_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.offsets = np.concatenate(
            [[0], np.cumsum(np.concatenate([np.diff(s.offsets) for s in self.stores]))]
        ).astype(np.int64)
        self.n_rows = int(self.offsets[-1])
        self._owner = {g: s for s in self.stores for g in s.group_ids}
        self._index = {g: i for i, g in enumerate(self.group_ids)}

    def __getitem__(self, name: str) -> Any:
        if name in self.columns:
            return UnionColumn([s[name] for s in self.stores], self.store_offsets)
        return self.stores[0][name]  # plain arrays are identical in every store

    def __contains__(self, name: str) -> bool:
        return name in self.stores[0]

    @property
    def arrays(self) -> list[str]:
        return self.stores[0].arrays

    def store_of(self, group_id: str) -> Store:
        """The input holding a group (its path is what a worker process reopens)."""
        return self._owner[group_id]

    def rows(self, group_id: str) -> slice:
        i = self._index[group_id]
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def read_group(self, group_id: str) -> dict[str, np.ndarray]:
        return self._owner[group_id].read_group(group_id)

    def verify(self) -> list[str]:
        return [f"{s.path}: {p}" for s in self.stores for p in s.verify()]


def open_stores(
    paths: Sequence[str | Path], kind: str | None = None, version: int | None = None
) -> Store | StoreUnion:
    """One ``Store`` for one path, a checked ``StoreUnion`` for several."""
    if not paths:
        raise UsageError("no input store given")
    stores = [Store(p, kind=kind, version=version) for p in paths]
    return stores[0] if len(stores) == 1 else StoreUnion(stores)


def input_label(paths: Sequence[str | Path]) -> str | list[str]:
    """How params record the inputs: one path as before, several as a list."""
    return str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]


def iter_records_union(paths: Sequence[str | Path], cls: Any) -> Iterator[Any]:
    """Validated records of ``cls`` from several JSONL files (or ``-``), in file order;
    an id found in two files is an error naming both."""
    from vcl.io.manifest import iter_records

    if not paths:
        raise UsageError("no input file given")
    if sum(str(p) == "-" for p in paths) > 1:
        raise UsageError("stdin ('-') can be read once only")
    seen: dict[str, str] = {}
    for path in paths:
        name = str(path)
        for record in iter_records(path, cls):
            if len(paths) > 1:
                if record.id in seen:
                    raise DataError(
                        f"id {record.id!r} is also in {seen[record.id]}",
                        name,
                        "give disjoint shards (or vcl merge them with --allow-overlap)",
                    )
                seen[record.id] = name
            yield record


def read_records_union(paths: Sequence[str | Path], cls: Any) -> list[Any]:
    return list(iter_records_union(paths, cls))
