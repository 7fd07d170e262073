"""Feature sets: the ``vcl.features/1`` store (and plain ``.npy`` files) that ``fisher``,
``embed`` write and ``cluster``, ``probe``, ``retrieve`` read.

Store layout (a columnar table, see ``vcl.io.store``): one row per item (a video for
``vcl fisher``, a crop for ``vcl embed``), grouped by video (group id = video id):

- ``id`` (str): the item's id, unique in the store;
- ``features`` (float32, N×D);
- optional ``label`` (str, "" when unknown), ``track_id`` (str), ``video_id`` (str).

A store may hold several layers of one network (``vcl embed --layers``): one column
``features_<layer>`` (float32, N×D_layer) per layer, listed in attrs ``layers``, with
attrs ``default_layer`` naming the one read when no layer is asked for (a plain
``features`` column, when present, is that default).

Researchers often have features from elsewhere, so readers also take an ``.npy``
array (N×D) whose ids are row numbers unless an ids file (one id per line) is given.
Labels always travel with ids, never by row order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vcl.errors import DataError, MissingInputError, UsageError

KIND = "features"
SCHEMA = "vcl.features/1"


@dataclass
class FeatureSet:
    """Aligned arrays: ``features[i]`` belongs to ``ids[i]``."""

    ids: np.ndarray  # (N,) str
    features: np.ndarray  # (N, D) float32
    labels: np.ndarray | None = None  # (N,) str, "" = unknown
    track_ids: np.ndarray | None = None  # (N,) str
    video_ids: np.ndarray | None = None  # (N,) str
    attrs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.features.ndim != 2 or self.features.shape[0] != n:
            raise ValueError(f"features must be N×D with N = {n} ids, got {self.features.shape}")
        for name in ("labels", "track_ids", "video_ids"):
            column = getattr(self, name)
            if column is not None and len(column) != n:
                raise ValueError(f"{name} has {len(column)} entries for {n} ids")

    def __len__(self) -> int:
        return len(self.ids)


def store_layers(columns: list[str]) -> list[str]:
    """Layer names of the ``features_<layer>`` columns (``""`` for a plain ``features``)."""
    return [
        c.removeprefix("features_") if c != "features" else ""
        for c in columns
        if c == "features" or c.startswith("features_")
    ]


def _features_column(store: Any, layer: str | None, path: Path) -> str:
    """The column to read: ``features_<layer>``, or the default layer's column."""
    columns = [c for c in store.columns if c == "features" or c.startswith("features_")]
    if layer is not None:
        if layer in ("", "features") and "features" in columns:
            return "features"
        if f"features_{layer}" in columns:
            return f"features_{layer}"
        available = ", ".join(c.removeprefix("features_") for c in columns) or "none"
        raise DataError(f"has no layer {layer!r}", path, f"its layers: {available}")
    if "features" in columns:
        return "features"
    default = store.attrs.get("default_layer")
    if default is not None and f"features_{default}" in columns:
        return f"features_{default}"
    if len(columns) == 1:
        return columns[0]
    raise DataError(
        "holds several layers and names no default",
        path,
        f"choose one of {', '.join(c.removeprefix('features_') for c in columns)}",
    )


def read_feature_set(
    path: str | Path | Sequence[str | Path],
    ids_file: str | Path | None = None,
    layer: str | None = None,
) -> FeatureSet:
    """Read a ``vcl.features`` store or an ``.npy`` array (N×D) with optional ids file.

    ``layer`` picks the column ``features_<layer>`` of a several-layer store (default:
    its ``features`` column, else the layer named by attrs ``default_layer``, else the
    only layer); the chosen layer is in ``attrs["layer"]``. A list of several stores
    (the shards of one run) reads as their ``vcl merge`` would: see ``vcl.io.union``.
    """
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return _read_union(list(path), ids_file, layer)
        path = path[0]
    path = Path(path)
    if not path.exists():
        raise MissingInputError("no such features store or .npy file", path)
    if path.suffix == ".npy":
        if layer not in (None, "", "features"):
            raise DataError(f"an .npy array has no layer {layer!r}", path)
        return _read_npy(path, ids_file)
    if ids_file is not None:
        raise UsageError(
            f"an ids file ({ids_file}) names the rows of an .npy array, and this is a "
            "features store, which holds its ids",
            path,
        )
    from vcl.io.store import Store

    store = Store(path, kind=KIND, version=1)
    if "id" not in store.columns or not store_layers(store.columns):
        raise DataError("features store lacks the 'features' or 'id' column", path)
    column = _features_column(store, layer, path)
    optional = {
        c: _strings(store[c][:]) for c in ("label", "track_id", "video_id") if c in store.columns
    }
    ids = _strings(store["id"][:])
    _check_unique(ids, path)
    return FeatureSet(
        ids=ids,
        features=np.asarray(store[column][:], dtype=np.float32),
        labels=optional.get("label"),
        track_ids=optional.get("track_id"),
        video_ids=optional.get("video_id"),
        attrs={**store.attrs, "layer": column.removeprefix("features_").removeprefix("features")},
    )


def _read_union(
    paths: list[str | Path], ids_file: str | Path | None, layer: str | None
) -> FeatureSet:
    """Several features stores as one set: rows in input order, checked as for a merge."""
    from vcl.io.store import Store
    from vcl.io.union import StoreUnion

    if not paths:
        raise UsageError("no features store given")
    if ids_file is not None:
        raise UsageError("--ids goes with one .npy array, not several inputs", "--ids")
    for p in paths:
        if Path(p).suffix == ".npy":
            raise UsageError(
                "several inputs must be vcl.features stores", p, "give one .npy array at a time"
            )
    # schema, params, seed, arrays, and no group or row id twice
    union = StoreUnion([Store(p, kind=KIND, version=1) for p in paths])
    sets = [read_feature_set(p, layer=layer) for p in paths]
    ids = np.concatenate([fs.ids for fs in sets])

    def cat(name: str) -> np.ndarray | None:
        parts = [getattr(fs, name) for fs in sets]
        return None if any(x is None for x in parts) else np.concatenate(parts)

    return FeatureSet(
        ids=ids,
        features=np.concatenate([fs.features for fs in sets]),
        labels=cat("labels"),
        track_ids=cat("track_ids"),
        video_ids=cat("video_ids"),
        attrs={**union.attrs, "layer": (sets[0].attrs or {}).get("layer", "")},
    )


def _read_npy(path: Path, ids_file: str | Path | None) -> FeatureSet:
    try:
        features = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"not a readable .npy array ({exc})", path) from None
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.number):
        raise DataError(
            f"must be a numeric N×D array, got shape {features.shape} ({features.dtype})", path
        )
    if ids_file is None:
        ids = np.array([str(i) for i in range(len(features))])
    else:
        ids_path = Path(ids_file)
        if not ids_path.exists():
            raise MissingInputError("no such ids file", ids_path)
        ids = np.array([x.strip() for x in ids_path.read_text().splitlines() if x.strip()])
        if len(ids) != len(features):
            raise DataError(
                f"has {len(ids)} ids for {len(features)} rows of {path.name}",
                ids_path,
                "give one id per line, in row order",
            )
        _check_unique(ids, ids_path)
    attrs: dict[str, Any] = {"source": str(path), "row_number_ids": ids_file is None}
    return FeatureSet(ids=ids, features=features.astype(np.float32, copy=False), attrs=attrs)


def _strings(values: np.ndarray) -> np.ndarray:
    """zarr returns variable-width StringDType; make plain fixed-width str arrays."""
    return values.astype(object).astype(str)


def crop_ids(track_ids: Sequence[Any], frames: Sequence[Any]) -> np.ndarray:
    """``<track_id>@<frame>``: the id ``vcl embed`` gives a crop, so that features,
    clusters and the crops store they came from join by id. (N,) str."""
    tracks = _strings(np.asarray(track_ids))
    return np.char.add(np.char.add(tracks, "@"), np.asarray(frames).astype(np.int64).astype(str))


def item_ids(store: Any) -> np.ndarray:
    """Every row's id in a store of items (crops, features): its ``id`` column, else
    the crop ids of its ``track_id`` and ``frame`` columns, else the row numbers."""
    if "id" in store.columns:
        return _strings(store["id"][:])
    if {"track_id", "frame"} <= set(store.columns):
        return crop_ids(store["track_id"][:], store["frame"][:])
    return np.arange(store.n_rows).astype(str)


def _check_unique(ids: np.ndarray, path: Path) -> None:
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) != len(ids):
        raise DataError(f"duplicate id {str(unique[counts > 1][0])!r}", path, "ids must be unique")


def feature_columns(
    dim: int,
    labels: bool = False,
    tracks: bool = False,
    videos: bool = False,
    layers: Mapping[str, int] | None = None,
) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """The column spec for ``StoreWriter.define_columns`` of a features store.

    With ``layers`` (name -> dimension) the store gets one ``features_<name>`` column
    per layer instead of ``features`` (``dim`` is then ignored).
    """
    columns: dict[str, tuple[Any, tuple[int, ...]]] = {"id": (str, ())}
    if layers:
        columns |= {f"features_{k}": ("float32", (int(d),)) for k, d in layers.items()}
    else:
        columns["features"] = ("float32", (dim,))
    for name, wanted in (("label", labels), ("track_id", tracks), ("video_id", videos)):
        if wanted:
            columns[name] = (str, ())
    return columns


def write_feature_set(
    path: str | Path,
    feature_set: FeatureSet,
    params: Mapping[str, Any],
    seed: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a whole feature set at once, rows in their order.

    Groups are videos when ``video_ids`` is set (each video's rows must be contiguous),
    else one group per row. Stages that stream use ``StoreWriter`` directly.
    """
    import itertools

    from vcl.io.store import StoreWriter

    fs = feature_set
    keys = fs.video_ids if fs.video_ids is not None else fs.ids
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    if len(bounds) - 1 != len(np.unique(keys)):
        raise ValueError("rows of each video must be contiguous")
    optional = {"label": fs.labels, "track_id": fs.track_ids, "video_id": fs.video_ids}
    with StoreWriter(path, SCHEMA, params, seed, overwrite=overwrite) as writer:
        writer.define_columns(
            feature_columns(
                fs.features.shape[1],
                fs.labels is not None,
                fs.track_ids is not None,
                fs.video_ids is not None,
            )
        )
        for start, stop in itertools.pairwise(bounds):
            columns = {"id": fs.ids[start:stop], "features": fs.features[start:stop]}
            columns |= {k: v[start:stop] for k, v in optional.items() if v is not None}
            writer.append_group(str(keys[start]), **columns)
    return Path(path)
