"""vcl retrieve: faiss nearest-neighbour indexes, terminal queries and R@k evaluation."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vcl.cli.common import (
    Device,
    Features,
    Layer,
    Overwrite,
    Seed,
    command_group,
    parse_number_list,
    vcl_command,
)
from vcl.errors import ExitCode

app = command_group(
    "Nearest-neighbour retrieval with faiss, and R@k.\n\n"
    "`vcl retrieve index FEATURES -o gallery.index` builds an index (and gallery.index.json "
    "beside it); `vcl retrieve query gallery.index QUERY...` prints the nearest gallery ids "
    "as JSONL; `vcl retrieve eval --query TEST --gallery TRAIN --labels FILE` reports SLIC's "
    "R@k as JSON. All take --quiet, --verbose and --config FILE.toml.",
    default=None,
)

IndexType = Annotated[
    str,
    typer.Option(
        "--index",
        help="flat (exact), ivf (IVF-Flat), ivfpq (IVF + product quantiser) or hnsw.",
    ),
]
Metric = Annotated[
    str,
    typer.Option(
        "--metric",
        help="cosine (L2-normalise, then inner product), ip (inner product) or l2 "
        "(squared Euclidean).",
    ),
]
Nlist = Annotated[
    int | None,
    typer.Option("--nlist", min=1, help="IVF lists (default ≈ 4·√N, at most N/39)."),
]
Nprobe = Annotated[
    int | None,
    typer.Option("--nprobe", min=1, help="IVF lists visited per query (default 16)."),
]
PqM = Annotated[
    int | None,
    typer.Option("--pq-m", min=1, help="ivfpq: sub-vectors per code; divides D (default ≈ D/4)."),
]
PqBits = Annotated[int, typer.Option("--pq-bits", min=1, max=16, help="ivfpq: bits per sub-code.")]
HnswM = Annotated[int, typer.Option("--hnsw-m", min=2, help="hnsw: links per node.")]
EfSearch = Annotated[
    int | None, typer.Option("--ef-search", min=1, help="hnsw: search breadth (default 64).")
]
TrainSize = Annotated[
    int | None,
    typer.Option(
        "--train-size", min=1, help="IVF/PQ: rows in the seeded training sample (256 per list)."
    ),
]
Ids = Annotated[
    Path | None,
    typer.Option("--ids", metavar="FILE", help="For .npy features: one id per line, row order."),
]


def _read_features(path: Path | list[Path], ids: Path | None, layer: str | None) -> Any:
    from vcl.io.features import read_feature_set

    return read_feature_set(path, ids_file=ids, layer=layer)


def _made_with(attrs: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """``(model, layer)`` that features were embedded with, from a features store's attrs
    (``params.model`` and the layer read) or from embedded queries' attrs; None where
    not recorded (an .npy array, Fisher vectors)."""
    attrs = attrs or {}
    params = attrs.get("params") if isinstance(attrs.get("params"), dict) else {}
    model = params.get("model", attrs.get("model"))
    layer = attrs.get("layer")
    return (
        model if isinstance(model, str) else None,
        layer if isinstance(layer, str) and layer else None,
    )


def _gallery_made_with(meta: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(model, layer)`` of an index's gallery, from the source record of INDEX.json."""
    source = meta.get("source") or {}
    params = (source.get("provenance") or {}).get("params") or {}
    model, layer, layers = params.get("model"), source.get("layer"), params.get("layers")
    if layer is None and isinstance(layers, list) and len(layers) == 1:
        layer = layers[0]  # an index written before the layer read was recorded
    return (
        model if isinstance(model, str) else None,
        layer if isinstance(layer, str) and layer else None,
    )


def _model_key(spec: str | None) -> str | None:
    """A model spec compared by what it names: a run directory or weights file that
    exists, by its real path (``run``, ``./run`` and ``/abs/run`` are one model)."""
    from vcl.retrieve import model_spec_path

    named = None if spec is None else model_spec_path(spec)
    if named is None or not Path(named[1]).exists():
        return spec
    return named[0] + str(Path(named[1]).resolve())


def _warn_other_model(
    query: tuple[str | None, str | None],
    gallery: tuple[str | None, str | None],
    query_name: Any,
    gallery_name: Any,
    gallery_model: str | None = None,
) -> None:
    """Warn when both sides record their model (and layer) and these differ: distances
    between two embeddings of the same dimension still mean nothing. ``gallery_model``
    is the gallery's model as found from here (see ``Gallery.model``), which the model
    as recorded may name from another directory."""
    from vcl.console import log

    if query[0] is None or gallery[0] is None:
        return
    same_layer = query[1] is None or gallery[1] is None or query[1] == gallery[1]
    gallery_keys = {_model_key(gallery[0]), _model_key(gallery_model)}
    if (query[0] == gallery[0] or _model_key(query[0]) in gallery_keys) and same_layer:
        return

    def name(made: tuple[str | None, str | None]) -> str:
        return made[0] if made[1] is None or same_layer else f"{made[0]} (layer {made[1]})"

    log.warning(
        "the queries (%s) were embedded with %s but the gallery (%s) with %s: neighbours "
        "across models mean little; embed both with one model and layer",
        query_name, name(query), gallery_name, name(gallery),
    )  # fmt: skip


def _several(paths: list[Path] | None) -> Path | list[Path] | None:
    """A repeatable input option as one path, a list of several, or None."""
    if not paths:
        return None
    return paths[0] if len(paths) == 1 else list(paths)


def _first(paths: Any) -> Any:
    """The input an error message names: the first of several."""
    return paths[0] if isinstance(paths, list) else paths


def _label(paths: Path | list[Path] | None) -> str | list[str] | None:
    """How a report names an input: one path as before, several as a list."""
    if paths is None:
        return None
    return [str(p) for p in paths] if isinstance(paths, list) else str(paths)


def _foreign_file(path: Path) -> bool:
    """An existing file that is not a faiss index (every faiss index header starts 'I')."""
    if not path.is_file():
        return path.exists()
    with path.open("rb") as f:
        return f.read(1) != b"I"


def _index_params(**kwargs: Any) -> Any:
    from vcl.retrieve import IndexParams

    params = IndexParams(**{k: v for k, v in kwargs.items() if v is not None})
    params.validate()
    return params


@app.command("index")
@vcl_command
def index(
    features: Features,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The faiss index file to write; its metadata goes to OUTPUT.json beside it.",
            show_default=False,
        ),
    ],
    index_type: IndexType = "flat",
    metric: Metric = "cosine",
    nlist: Nlist = None,
    nprobe: Nprobe = None,
    pq_m: PqM = None,
    pq_bits: PqBits = 8,
    hnsw_m: HnswM = 32,
    ef_search: EfSearch = None,
    train_size: TrainSize = None,
    ids: Ids = None,
    layer: Layer = None,
    device: Device = "auto",
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Build a faiss index over a features store, with its metadata beside it.

    Writes OUTPUT (a faiss index, on the GPU while building when faiss sees one) and
    OUTPUT.json (schema vcl.index/1: ids in row order, dimension, metric, index type
    and parameters, source store, the model it was embedded with and the store's
    provenance, size and SHA-256 of OUTPUT), both atomically. Paths in OUTPUT.json are
    relative to its folder unless absolute, so queries work from any directory.
    Prints a JSON summary on stdout.
    """
    import time

    from vcl.console import log
    from vcl.device import faiss_device
    from vcl.errors import OutputError
    from vcl.io.store import make_parent, refuse_stdout
    from vcl.io.union import input_label
    from vcl.retrieve import (
        build_index,
        check_finite,
        meta_path,
        prepare,
        record_model,
        record_path,
    )
    from vcl.retrieve import write_index as write

    refuse_stdout(output, "the index is a faiss file with OUTPUT.json beside it")
    params = _index_params(
        index_type=index_type,
        metric=metric,
        nlist=nlist,
        nprobe=nprobe,
        pq_m=pq_m,
        pq_bits=pq_bits,
        hnsw_m=hnsw_m,
        ef_search=ef_search,
        train_size=train_size,
        seed=seed,
    )
    if not overwrite and (meta_path(output).exists() or _foreign_file(output)):
        raise OutputError("exists already", output, "pass --overwrite to replace it")
    if output.exists() and not meta_path(output).exists():  # the metadata is the commit
        log.warning("%s has no metadata beside it (a killed run left it): rebuilding", output)
    make_parent(output)

    gpu = faiss_device(device)
    fs = _read_features(features, ids, layer)
    where_from = features[0] if len(features) == 1 else ", ".join(map(str, features))
    if len(fs) == 0:
        from vcl.errors import DataError

        raise DataError("holds no features to index", where_from)
    check_finite(fs.features, where_from)
    config = params.resolved(*fs.features.shape)
    from vcl.io.space import check_free_space

    n, dim = fs.features.shape
    if index_type == "ivfpq":  # codes plus an id per row, and the coarse centroids
        need = n * (config["pq_m"] * config["pq_bits"] / 8 + 8) + config["nlist"] * dim * 4
    else:  # flat vectors (+ HNSW links / IVF ids and centroids)
        need = n * dim * 4 + n * (8 * hnsw_m if index_type == "hnsw" else 8)
    check_free_space(output, need + 40 * n, "the index and its ids")
    start = time.perf_counter()
    x = prepare(fs.features, metric)
    built = build_index(x, config, gpu)
    seconds = time.perf_counter() - start
    attrs = dict(fs.attrs or {})
    folder = meta_path(output).parent  # paths are recorded relative to it (or absolute)
    model, _ = _made_with(attrs)
    source = {
        "path": input_label([record_path(f, folder) for f in features]),
        "ids_file": None if ids is None else record_path(ids, folder),
        "model": None if model is None else record_model(model, folder),
        "layer": layer or attrs.get("layer") or None,  # the layer read, default or not
        "schema": attrs.get("vcl_schema"),
        "provenance": {
            k: attrs.get(k)
            for k in ("vcl_version", "command", "params", "seed", "created")
            if k in attrs
        },
    }
    where = "cpu" if gpu is None else f"cuda:{gpu}"
    meta = write(output, built, fs.ids, config, source, where)
    log.info("indexed %d × %d (%s, %s) in %.2f s", len(fs), x.shape[1], index_type, metric, seconds)
    summary = {k: v for k, v in meta.items() if k != "ids"}
    summary |= {"output": str(output), "metadata": str(meta_path(output)), "seconds": seconds}
    typer.echo(json.dumps(summary))


def _is_features(path: Path) -> bool:
    from vcl.io.labels import is_store

    return path.suffix == ".npy" or (is_store(path) and (path / "zarr.json").exists())


def _media_thumbnails(inputs: list[Path]) -> dict[str, Path]:
    """id → file of each image / video query, ids as vcl.embedding names them (stems)."""
    from vcl.io.video import IMAGE_EXTENSIONS

    out: dict[str, Path] = {}
    for p in inputs:
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            out.update((f.stem, f) for f in files)
        else:
            out[p.stem] = p
    return out


def _folder_media(folder: Path) -> dict[str, Path]:
    """id → image or video file, anywhere under ``folder`` (hidden files and folders left
    out: macOS ``._*`` twins would shadow the real files).

    Each file is keyed by its path below ``folder`` without the extension (posix
    separators: the ``<subfolder>/<name>`` ids of ``vcl videos`` and ``vcl images
    --class-folders``) and by its stem (plain ids), the stem only where no other file in
    another folder shares it: an ambiguous stem names no file rather than a wrong one."""
    from vcl.errors import MissingInputError
    from vcl.io.sources import VIDEO_EXTENSIONS
    from vcl.io.video import IMAGE_EXTENSIONS, is_hidden

    if not folder.is_dir():
        raise MissingInputError("no such folder", folder)
    kinds = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    files = sorted(
        f
        for f in folder.rglob("*")
        if f.suffix.lower() in kinds
        and not any(is_hidden(part) for part in f.relative_to(folder).parts)
        and f.is_file()
    )
    by_path: dict[str, Path] = {}
    for f in reversed(files):  # the first in sorted order wins (x.jpg over x.png)
        by_path[f.relative_to(folder).with_suffix("").as_posix()] = f
    folders: dict[str, set[Path]] = {}
    for f in by_path.values():
        folders.setdefault(f.stem, set()).add(f.parent)
    by_stem = {f.stem: f for f in by_path.values() if len(folders[f.stem]) == 1}
    return {**by_stem, **by_path}


def _refuse_store_model(model: str) -> None:
    """A gallery of Fisher vectors records its Fisher model (a zarr store) as its model:
    queries must go through ``vcl idt`` and ``vcl fisher encode``, not a network."""
    from pathlib import Path

    from vcl.errors import UsageError

    if (Path(model) / "zarr.json").is_file():
        raise UsageError(
            "is a zarr store, not a network: image/video queries cannot be embedded with it",
            model,
            "for a Fisher-vector gallery, run vcl idt and vcl fisher encode with this model"
            " on the query videos and query with that features store",
        )


def _embed_queries(
    inputs: list[Path],
    model: str | None,
    layer: str | None,
    device: str,
    batch_size: int,
    size: int | None,
    frames: int | None,
    gallery: Any,
) -> Any:
    """Embed image / video queries; model and layer default to the gallery's own (its
    run directory or weights found from the index's folder, see ``Gallery.model``)."""
    from vcl.console import log
    from vcl.errors import MissingInputError, UsageError

    for p in inputs:
        if not p.exists():
            named = str(p) in set(gallery.ids.tolist())
            hint = f"use --id {p} to query a gallery item" if named else None
            raise MissingInputError("no such query file, folder or features store", p, hint)
    source = gallery.meta.get("source") or {}
    made_with = (source.get("provenance") or {}).get("params") or {}
    if model is None and gallery.model is not None:
        model = gallery.model
        log.info("embedding queries with the gallery's model %s", model)
    if layer is None:
        layers = made_with.get("layers")
        layer = source.get("layer") or made_with.get("layer")
        if layer is None and isinstance(layers, list) and len(layers) == 1:
            layer = layers[0]
        layer = layer if isinstance(layer, str) else None
    if model is None:
        raise UsageError(
            f"{inputs[0]} is not a features store: image/video queries need --model",
            "--model",
            "give --model RUN_DIR, random:ARCH or weights:ARCH:PATH (the gallery's model)",
        )
    _refuse_store_model(model)
    try:
        from vcl.embedding import embed_paths, load_model
    except ImportError:
        raise UsageError(
            "this vcl cannot embed images or videos (vcl.embedding is missing)",
            "--model",
            "embed them with vcl embed first and query with the features store",
        ) from None
    net = load_model(model, device=device)
    if size is None and isinstance(made_with.get("size"), int):
        size = made_with["size"]
    if frames is None and isinstance(made_with.get("frames_per_video"), int):
        frames = made_with["frames_per_video"]
    kwargs: dict[str, Any] = {"batch_size": batch_size, "size": size}
    if frames is not None:
        kwargs["frames_per_video"] = frames
    if layer is not None:
        kwargs["layer"] = layer
    return embed_paths([str(p) for p in inputs], net, **kwargs)


def _concat(sets: list[Any]) -> tuple[Any, Any]:
    import numpy as np

    ids = np.concatenate([s.ids for s in sets]) if sets else np.array([], dtype=str)
    dims = {s.features.shape[1] for s in sets}
    if len(dims) > 1:
        from vcl.errors import DataError

        raise DataError(f"query inputs have different dimensions {sorted(dims)}", None)
    feats = np.concatenate([s.features for s in sets]) if sets else np.zeros((0, 0), np.float32)
    return ids, feats


@app.command("query")
@vcl_command
def query(
    index_path: Annotated[
        Path,
        typer.Argument(
            metavar="INDEX",
            help="An index from vcl retrieve index (INDEX.json must lie beside it).",
            show_default=False,
        ),
    ],
    queries: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="QUERY",
            help="Features stores or .npy files, or image / video files and folders "
            "(embedded with --model); none with --id.",
            show_default=False,
        ),
    ] = None,
    item_ids: Annotated[
        list[str] | None,
        typer.Option(
            "--id",
            metavar="ID",
            help="Query with the gallery's own item ID (repeatable; instead of QUERY): its "
            "vector is read back from the index, exact for flat, hnsw and ivf, an "
            "approximation (its decoded PQ code) for ivfpq; no features store or model "
            "needed.",
            show_default=False,
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Neighbours per query.")] = 10,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="RUN_DIR|random:ARCH|weights:ARCH:PATH",
            help="Embed image/video queries with this model (use the gallery's).",
        ),
    ] = None,
    layer: Layer = None,
    ids: Ids = None,
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="Refuse to run unless the index uses this metric."),
    ] = None,
    nprobe: Nprobe = None,
    ef_search: EfSearch = None,
    exclude_self: Annotated[
        bool,
        typer.Option("--exclude-self", help="Drop a neighbour whose id equals the query's id."),
    ] = False,
    montage: Annotated[
        Path | None,
        typer.Option(
            "--montage",
            metavar="OUT.png",
            help="Draw each query beside its neighbours (one row per query) into an image.",
        ),
    ] = None,
    crops: Annotated[
        Path | None,
        typer.Option(
            "--crops",
            metavar="CROPS.zarr",
            help="Montage thumbnails from this crops store (by its id column, else row number).",
        ),
    ] = None,
    media: Annotated[
        list[Path] | None,
        typer.Option(
            "--media",
            metavar="DIR",
            help="Montage thumbnails: folder of the gallery's images / videos, matched by id "
            "(file name without extension; repeatable).",
        ),
    ] = None,
    max_rows: Annotated[
        int, typer.Option("--montage-rows", min=1, help="At most this many queries drawn.")
    ] = 20,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Images per batch when embedding.")
    ] = 64,
    size: Annotated[
        int | None,
        typer.Option(
            "--size",
            min=1,
            help="Image side when embedding (default: the gallery's, else the model's).",
        ),
    ] = None,
    frames_per_video: Annotated[
        int | None,
        typer.Option(
            "--frames-per-video",
            min=1,
            help="Video queries: frames averaged per video (default: the gallery's, else 8).",
        ),
    ] = None,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going",
            help="Exit 0 although unreadable query images were skipped (default: exit 3).",
        ),
    ] = False,
    device: Device = "auto",
) -> None:
    """Nearest gallery items of each query, as JSONL on stdout.

    One line per (query, rank): {"schema": "vcl.match/1", "query", "neighbour", "rank"
    (1 = nearest), "score", "metric"}; score is the cosine similarity or inner
    product (higher is nearer) or the squared L2 distance (lower is nearer). Equal
    scores are ordered by gallery row. Lines are written a block of queries at a time,
    as they are searched. A table goes to stderr when stdout is a terminal. Unreadable
    images are skipped with a warning and counted; the exit status is then 3 unless
    --keep-going.

    With --id ID (repeatable) the queries are gallery items themselves, found by id in
    INDEX.json and their vectors read back from the index: "what is nearest to item
    X?" needs no features store or model, and --exclude-self leaves X itself out. The
    vectors are the indexed ones for flat, hnsw and ivf indexes, so the answer is the
    one the item's row in the features store gives; an ivfpq index holds only PQ codes,
    so its items are queried with their decoded approximations (a note says so).
    """
    import numpy as np

    from vcl.console import log
    from vcl.device import faiss_device
    from vcl.errors import UsageError
    from vcl.retrieve import (
        check_queries,
        exclude_rows,
        gallery_rows,
        item_vectors,
        prepare,
        read_index,
        search,
        set_search_params,
    )

    if item_ids and queries:
        raise UsageError(
            "--id and QUERY both given", None, "query by gallery id or by file, not both"
        )
    if not item_ids and not queries:
        raise UsageError("no queries", None, "give QUERY... or --id ID")
    gpu = faiss_device(device)
    gallery = read_index(index_path, gpu)
    if metric is not None:
        check_queries(gallery, gallery.dimension, metric, index_path)
    item_rows = gallery_rows(gallery, item_ids) if item_ids else None
    thumbnails = None
    if montage is not None:  # check the montage's inputs before the work
        from vcl.io.store import make_parent, refuse_stdout
        from vcl.retrieve import Thumbnails

        refuse_stdout(montage, "the montage is an image file", "--montage")
        make_parent(montage)
        found: dict[str, Path] = {}
        for folder in media or []:
            found = {**_folder_media(folder), **found}
        thumbnails = Thumbnails(crops, found)
    sets: list[Any] = []
    skipped: list[str] = []
    queries = queries or []
    feature_inputs = [q for q in queries if _is_features(q)]
    media_inputs = [q for q in queries if not _is_features(q)]
    gallery_made = _gallery_made_with(gallery.meta)
    for q in feature_inputs:
        sets.append(_read_features(q, ids, layer))
        check_queries(gallery, sets[-1].features.shape[1], None, q)
        _warn_other_model(_made_with(sets[-1].attrs), gallery_made, q, index_path, gallery.model)
    thumbs: dict[str, Path] = {}
    n_media = 0
    if media_inputs:
        embedded = _embed_queries(
            media_inputs, model, layer, device, batch_size, size, frames_per_video, gallery
        )
        skipped = list((embedded.attrs or {}).get("skipped", []))
        n_media = len(embedded) + len(skipped)
        thumbs = _media_thumbnails(media_inputs)
        sets.append(embedded)
        check_queries(gallery, embedded.features.shape[1], None, media_inputs[0])
        more = ", …" if len(media_inputs) > 1 else ""
        _warn_other_model(
            _made_with(embedded.attrs),
            gallery_made,
            f"{media_inputs[0]}{more}",
            index_path,
            gallery.model,
        )
    if item_rows is not None:
        qids = np.array(item_ids, dtype=str)
        qx = item_vectors(gallery, item_rows)
    else:
        qids, qx = _concat(sets)
    # item vectors are in the index's space already (see item_vectors): searched as read
    ready = item_rows is not None
    set_search_params(gallery.index, gallery.meta, {"nprobe": nprobe, "ef_search": ef_search})
    extra = 1 if exclude_self else 0
    pos = {g: i for i, g in enumerate(gallery.ids)} if exclude_self else {}
    ncols = min(k, int(gallery.index.ntotal))  # neighbours per query
    out = sys.stdout
    table: list[tuple[str, str, str, float]] = []  # the first lines, for a terminal
    shown_scores, shown_rows = [], []  # the montage's queries
    shown = max_rows if montage is not None else 0
    for start, stop in _blocks(len(qids)):
        # a block at a time, its lines written before the next is searched
        block = qx[start:stop] if ready else prepare(qx[start:stop], gallery.metric)
        scores, rows = search(gallery.index, block, k + extra)
        if exclude_self:
            self_rows = np.array([pos.get(q, -1) for q in qids[start:stop]], dtype=np.int64)
            scores, rows = exclude_rows(scores, rows, self_rows, k)
        text = _match_lines(qids[start:stop], scores, rows, gallery.ids, gallery.metric)
        out.write(text)
        out.flush()
        if len(table) < 200:
            table += [
                (m["query"], str(m["rank"]), m["neighbour"], m["score"])
                for m in map(json.loads, text.splitlines()[: 200 - len(table)])
            ]
        if start < shown:
            shown_scores.append(scores[: shown - start])
            shown_rows.append(rows[: shown - start])
    if out.isatty():
        _table(table)
    log.info("%d queries, %d neighbours each (index %s)", len(qids), ncols, index_path)
    if montage is not None and thumbnails is not None:
        from vcl.retrieve import draw_montage

        thumbnails.files.update(thumbs)  # the queries' own files win
        empty = np.zeros((0, ncols))
        scores = np.concatenate(shown_scores) if shown_scores else empty
        rows = np.concatenate(shown_rows) if shown_rows else empty.astype(np.int64)
        draw_montage(montage, qids, gallery.ids, scores, rows, thumbnails, max_rows)
        log.info("wrote %s", montage)
    if skipped:
        log.warning("%d of %d query files were unreadable and skipped", len(skipped), n_media)
        if not keep_going:
            raise typer.Exit(ExitCode.SKIPPED)


QUERY_BLOCK = 8192  # queries searched and written at a time (a multiple of faiss's 4096)


def _blocks(n: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the query blocks: starting at multiples of QUERY_BLOCK, a
    last block shorter than half of it joined to the one before.

    faiss's flat search computes 4096 queries at a time (and fewer than 20 another way),
    so blocks cut this way score each query exactly as one search of all of them would.
    """
    starts = list(range(0, n, QUERY_BLOCK))
    if len(starts) > 1 and n - starts[-1] < QUERY_BLOCK // 2:
        starts.pop()
    return [(start, stop) for start, stop in zip(starts, [*starts[1:], n], strict=False)]


def _match_lines(qids: Any, scores: Any, rows: Any, gallery_ids: Any, metric: str) -> str:
    """The vcl.match/1 JSONL lines of a block of queries, one per found neighbour:
    byte for byte ``json.dumps`` of {"schema", "query", "neighbour", "rank", "score",
    "metric"}, the score rounded to 6 decimals."""
    import math

    import numpy as np

    from vcl.io.manifest import MATCH_SCHEMA

    dumps = json.dumps
    head = '{"schema": ' + dumps(MATCH_SCHEMA) + ', "query": '
    tail = ', "metric": ' + dumps(metric) + "}\n"
    names = {int(r): dumps(str(gallery_ids[r])) for r in np.unique(rows[rows >= 0])}
    out = []
    for qid, srow, rrow in zip(qids, scores.tolist(), rows.tolist(), strict=True):
        query = head + dumps(str(qid)) + ', "neighbour": '
        for rank, (s, r) in enumerate(zip(srow, rrow, strict=True), start=1):
            if r < 0:
                continue
            s = round(s, 6)
            score = repr(s) if math.isfinite(s) else dumps(s)
            out.append(f'{query}{names[r]}, "rank": {rank}, "score": {score}{tail}')
    return "".join(out)


def _table(lines: list[tuple[str, str, str, float]]) -> None:
    from rich.table import Table

    from vcl.console import err_console

    table = Table("query", "rank", "neighbour", "score")
    for query, rank, neighbour, score in lines[:200]:
        table.add_row(query, rank, neighbour, f"{score:.4f}")
    err_console.print(table)


@app.command("eval")
@vcl_command
def evaluate(
    query_paths: Annotated[
        list[Path] | None,
        typer.Option(
            "--query",
            metavar="TEST",
            help="Query features (store or .npy), e.g. the test split; repeat it for "
            "several stores of one run (shards), read as their merge.",
        ),
    ] = None,
    gallery_paths: Annotated[
        list[Path] | None,
        typer.Option(
            "--gallery",
            metavar="TRAIN",
            help="Gallery features (store or .npy), e.g. the train split (default: --query); "
            "repeatable like --query.",
        ),
    ] = None,
    label_paths: Annotated[
        list[Path] | None,
        typer.Option(
            "--labels",
            metavar="FILE",
            help="JSONL with id and label (e.g. a videos manifest) or a store with id and "
            "label columns (a crops store's ids are <track_id>@<frame>); joined by id "
            "(default: the stores' label columns); repeatable (ids must not repeat across "
            "files).",
        ),
    ] = None,
    ks: Annotated[
        str, typer.Option("-k", "--k", metavar="K,K,...", help="Cut-offs for R@k.")
    ] = "1,5,10,20,50",
    metric: Metric = "cosine",
    index_type: IndexType = "flat",
    nlist: Nlist = None,
    nprobe: Nprobe = None,
    pq_m: PqM = None,
    pq_bits: PqBits = 8,
    hnsw_m: HnswM = 32,
    ef_search: EfSearch = None,
    train_size: TrainSize = None,
    exclude_self: Annotated[
        bool,
        typer.Option(
            "--exclude-self",
            help="Leave-one-out: a query never retrieves the gallery item with its own id.",
        ),
    ] = False,
    split_field: Annotated[
        str | None,
        typer.Option(
            "--split-field",
            metavar="FIELD",
            help="Split one store by this field (from --labels or a store column) into "
            "queries and gallery.",
        ),
    ] = None,
    query_split: Annotated[
        str, typer.Option("--query-split", help="With --split-field: the queries' value.")
    ] = "test",
    gallery_split: Annotated[
        str, typer.Option("--gallery-split", help="With --split-field: the gallery's value.")
    ] = "train",
    average_by: Annotated[
        str | None,
        typer.Option(
            "--average-by",
            help="Average features per video_id or track_id first (SLIC: per video).",
        ),
    ] = None,
    exact_recall: Annotated[
        bool | None,
        typer.Option(
            "--exact-recall/--no-exact-recall",
            help="Also report recall of the exact neighbours (default: on for approximate "
            "indexes).",
        ),
    ] = None,
    query_ids: Annotated[
        Path | None,
        typer.Option(
            "--query-ids", metavar="FILE", help="For an .npy --query: one id per line, row order."
        ),
    ] = None,
    gallery_ids: Annotated[
        Path | None,
        typer.Option(
            "--gallery-ids",
            metavar="FILE",
            help="For an .npy --gallery: one id per line, row order.",
        ),
    ] = None,
    layer: Layer = None,
    device: Device = "auto",
    seed: Seed = 0,
) -> None:
    """Retrieval R@k (SLIC's protocol) of queries against a gallery, as JSON.

    A query is a hit at k when any of its k nearest gallery items shares its label;
    R@k is the fraction of hits among labelled queries (unlabelled ones are counted
    and left out). With an approximate --index, exact_recall gives the mean fraction
    of the exact k nearest neighbours that the index returned.
    """
    import numpy as np

    from vcl.console import log
    from vcl.errors import DataError, UsageError
    from vcl.io.labels import lookup, read_id_fields
    from vcl.retrieve import average_by as average
    from vcl.retrieve import (
        build_index,
        check_finite,
        exact_search,
        exclude_rows,
        neighbour_recall,
        prepare,
        recall_at_k,
        search,
        set_search_params,
    )

    query_path, gallery_path = _several(query_paths), _several(gallery_paths)
    labels = _several(label_paths)
    cutoffs = sorted(set(parse_number_list(ks, "-k", int, 1, example="1,5,10,20,50")))
    params = _index_params(
        index_type=index_type,
        metric=metric,
        nlist=nlist,
        nprobe=nprobe,
        pq_m=pq_m,
        pq_bits=pq_bits,
        hnsw_m=hnsw_m,
        ef_search=ef_search,
        train_size=train_size,
        seed=seed,
    )
    if average_by not in (None, "video_id", "track_id"):
        raise UsageError(
            f"unknown field {average_by!r}", "--average-by", "use video_id or track_id"
        )
    if query_path is None and gallery_path is None:
        raise UsageError("no features", "--query", "give --query TEST and --gallery TRAIN")
    if split_field is None and (query_path is None or gallery_path is None) and not exclude_self:
        raise UsageError(
            "one features store needs --split-field or --exclude-self",
            "--gallery",
            "or give both --query and --gallery",
        )
    if split_field is not None and query_path and gallery_path and query_path != gallery_path:
        raise UsageError("--split-field splits ONE store: give --query or --gallery, not both")
    from vcl.device import faiss_device

    gpu = faiss_device(device)

    made: list[tuple[str | None, str | None]] = []  # model and layer of each input read

    numbered_by_row: list[bool] = []

    def load(path: Path | list[Path], ids_file: Path | None) -> tuple[Any, Any, Any, Any]:
        fs = _read_features(path, ids_file, layer)
        made.append(_made_with(fs.attrs))
        numbered_by_row.append(bool((fs.attrs or {}).get("row_number_ids")))
        check_finite(fs.features, _first(path))
        row_labels = fs.labels if fs.labels is not None else np.full(len(fs), "")
        ids, x = fs.ids, fs.features
        if average_by is not None:
            groups = fs.video_ids if average_by == "video_id" else fs.track_ids
            if groups is None:
                raise DataError(f"has no {average_by} column to average by", _first(path))
            ids, x, row_labels = average(x, row_labels.astype(str), groups)
        lab = row_labels.astype(str)
        split = np.full(len(ids), "")
        if labels is not None:
            names = ["label"] + ([split_field] if split_field else [])
            lids, fields = read_id_fields(labels, names)
            found = lookup(ids, lids, fields["label"])
            lab = np.where(found != "", found, lab)
            if split_field:
                split = lookup(ids, lids, fields[split_field])
        if split_field and not (split != "").any():
            from vcl.io.labels import is_store

            if all(is_store(p) for p in (path if isinstance(path, list) else [path])):
                sids, sf = read_id_fields(path, [split_field])
                split = lookup(ids, sids, sf[split_field])
        return ids, x, lab, split

    if split_field is not None:
        one = query_path or gallery_path
        ids, x, lab, split = load(one, query_ids or gallery_ids)
        if not (split != "").any():
            raise DataError(f"no {split_field!r} values for its ids", _first(labels or one))
        qmask, gmask = split == query_split, split == gallery_split
        if not qmask.any() or not gmask.any():
            raise DataError(
                f"{split_field}: {int(qmask.sum())} rows are {query_split!r} and "
                f"{int(gmask.sum())} {gallery_split!r}",
                _first(labels or one),
                "check --query-split / --gallery-split",
            )
        q_ids, q_x, q_lab = ids[qmask], x[qmask], lab[qmask]
        g_ids, g_x, g_lab = ids[gmask], x[gmask], lab[gmask]
    else:
        q_ids, q_x, q_lab, _ = load(
            query_path or gallery_path, query_ids if query_path else gallery_ids
        )
        if gallery_path is None or gallery_path == query_path:
            g_ids, g_x, g_lab = q_ids, q_x, q_lab
        else:
            g_ids, g_x, g_lab, _ = load(gallery_path, gallery_ids)
            if all(numbered_by_row):
                raise UsageError(
                    f"{_first(query_path)} and {_first(gallery_path)} are both numbered by "
                    "row, so their ids collide: labels joined by id would be shared and "
                    "--exclude-self would drop other items",
                    None,
                    "give --query-ids FILE and --gallery-ids FILE (one id per line, row order)",
                )
    if q_x.shape[1] != g_x.shape[1]:
        raise DataError(
            f"queries have dimension {q_x.shape[1]}, the gallery {g_x.shape[1]}",
            _first(query_path),
            "use features of the same model and layer",
        )
    if len(made) == 2:  # --query and --gallery read from different stores
        _warn_other_model(made[0], made[1], _label(query_path), _label(gallery_path))
    if len(g_ids) == 0 or len(q_ids) == 0:
        raise DataError(
            "no queries or no gallery items to evaluate", _first(query_path or gallery_path)
        )
    if not (g_lab != "").any():
        raise DataError("no gallery item has a label", _first(labels or gallery_path or query_path))
    kmax = min(max(cutoffs), len(g_ids))
    extra = 1 if exclude_self else 0
    shared = len(np.intersect1d(q_ids, g_ids)) if not exclude_self else 0
    if shared:
        from vcl.console import log

        log.warning(
            "%d of %d queries are also in the gallery and will find themselves first "
            "(R@1 counts it); --exclude-self leaves a query's own id out",
            shared, len(q_ids),
        )  # fmt: skip
    config = params.resolved(*g_x.shape)
    g = prepare(g_x, metric)
    q = prepare(q_x, metric)
    built = build_index(g, config, gpu)
    set_search_params(built, config, {})
    scores, rows = search(built, q, kmax + extra)
    found_rows = rows  # before --exclude-self: a flat index's are the exact neighbours
    self_rows = np.full(len(q_ids), -1, np.int64)
    if exclude_self:
        pos = {gid: i for i, gid in enumerate(g_ids)}
        self_rows = np.array([pos.get(i, -1) for i in q_ids], np.int64)
        scores, rows = exclude_rows(scores, rows, self_rows, kmax)
    neighbour_labels = np.where(rows >= 0, g_lab[np.maximum(rows, 0)], "")
    report: dict[str, Any] = {
        "query": _label(query_path),
        "gallery": _label(gallery_path or query_path),
        "labels": _label(labels),
        "metric": metric,
        "index": config,
        "exclude_self": exclude_self,
        "split_field": split_field,
        "average_by": average_by,
        "gallery_size": len(g_ids),
        "gallery_unlabelled": int((g_lab == "").sum()),
        **recall_at_k(q_lab, neighbour_labels, cutoffs),
    }
    if exact_recall is None:
        exact_recall = index_type != "flat"
    if exact_recall:
        # a flat faiss index: exact, ties by gallery row (see exact_search)
        if config["index_type"] == "flat":
            exact_rows = found_rows
        else:
            _, exact_rows = exact_search(g, q, kmax + extra, metric, gpu)
        if exclude_self:
            _, exact_rows = exclude_rows(exact_rows, exact_rows, self_rows, kmax)
        report["exact_recall"] = neighbour_recall(rows, exact_rows, cutoffs)
    if report["unlabelled_queries"]:
        log.warning("%d queries have no label (left out)", report["unlabelled_queries"])
    if max(cutoffs) > len(g_ids):
        log.warning("the gallery has only %d items: R@k for larger k uses them all", len(g_ids))
    typer.echo(json.dumps(report))


EXAMPLES = [
    (
        "Index a gallery of features (cosine, exact):",
        "vcl retrieve index train_features.zarr -o gallery.index",
    ),
    (
        "An approximate IVF index over a large gallery, 64 lists probed per query:",
        "vcl retrieve index features.zarr -o big.index --index ivf --nprobe 64",
    ),
    (
        "The 10 nearest gallery items of each query in a features store:",
        "vcl retrieve query gallery.index test_features.zarr -k 10 > matches.jsonl",
    ),
    (
        "What is nearest to one gallery item (its vector read back from the index), itself "
        "left out:",
        "vcl retrieve query gallery.index --id ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01 -k 5 "
        "--exclude-self",
    ),
    (
        "One-off query with an image file, embedded by a trained run, with a montage:",
        "vcl retrieve query gallery.index photo.jpg --model run/ -k 8 --montage out.png "
        "--crops crops.zarr",
    ),
    (
        "SLIC's video retrieval R@k, test queries against the train gallery:",
        "vcl retrieve eval --query test.zarr --gallery train.zarr --labels videos.jsonl "
        "-k 1,5,10,20,50",
    ),
    (
        "One store split by the manifest's split field, clip features averaged per video:",
        "vcl retrieve eval --query features.zarr --labels videos.jsonl --split-field split "
        "--average-by video_id",
    ),
    (
        "Leave-one-out R@k on one labelled store:",
        "vcl retrieve eval --query features.zarr --exclude-self",
    ),
]
