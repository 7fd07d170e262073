"""What a vcl file is: the library behind ``vcl info``.

Recognises stores (zarr folders), JSONL manifests, ``vcl pretrain`` run directories
(and their files), ``vcl retrieve`` indexes (the index file or its ``.json``
metadata), ``.npy`` arrays, ``--config`` TOML files, other vcl JSON records, video
files and frame folders (anything else is "not a vcl file"; a file with a suffix no
video has is not probed as one); validates them as their readers would (so ``vcl
info`` fails exactly where a later stage would: a video is decoded whole unless
``verify`` is off), and summarises them as a JSON-able dict. Run directories and
indexes are read from their JSON only: no torch or faiss.

A store of a kind vcl writes must have the major version this vcl reads for it; one of
another kind (another tool's descriptors, which ``vcl fisher fit`` reads as columns)
is described, its version unchecked, with a note saying so.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from vcl.errors import DataError, MissingInputError
from vcl.io.manifest import (
    MATCH_SCHEMA,
    RECORD_TYPES,
    Record,
    is_stream,
    iter_records,
    open_text_input,
    parse_schema,
)
from vcl.io.store import KNOWN, STORE_VERSIONS, partial_path
from vcl.io.video import IMAGE_EXTENSIONS

LINE_SCHEMAS = frozenset({MATCH_SCHEMA})  # JSONL vcl writes without a record class
FIRST_FAILED = 5  # ids of failed videos shown by ``vcl info``
FIRST_IDS = 5  # ids of an index shown by ``vcl info``
# what a pretrain run directory holds besides config.json (`vcl.pretrain.loop`)
RUN_FILES = ("checkpoint.pt", "metrics.jsonl")
RUN_KIND = "pretrain_run"
INDEX_KIND = "index"
# suffixes no video has: such a file is not probed as one
NOT_VIDEO = frozenset(
    {
        ".pt",
        ".pth",
        ".ckpt",
        ".npz",
        ".index",
        ".faiss",
        ".txt",
        ".csv",
        ".tsv",
        ".yaml",
        ".yml",
        ".md",
        ".py",
        ".log",
        ".html",
        ".pdf",
        ".zip",
        ".tar",
        ".gz",
    }
)
WHAT_INFO_READS = (
    "vcl info reads stores (.zarr), manifests (.jsonl), pretrain run directories, "
    "retrieve indexes, .npy arrays, --config files (.toml), videos and frame folders"
)


def _looks_like_store(path: Path) -> bool:
    return path.is_dir() and (path / "zarr.json").exists()


def _is_run_file(path: Path) -> bool:
    """A file a pretrain run writes (not config.json), beside that run's config.json."""
    name = path.name
    owned = name in RUN_FILES or (name.startswith("labels_epoch_") and name.endswith(".npy"))
    return owned and (path.parent / "config.json").is_file()


def describe(path: str | Path, verify: bool = True) -> dict[str, Any]:
    path = Path(path)
    if str(path) != "-" and not path.exists():
        if partial_path(path).exists():
            raise DataError(
                "incomplete: an interrupted write left only a .partial output",
                path,
                "rerun the command that makes it to resume",
            )
        raise MissingInputError("no such file or folder", path)
    if _looks_like_store(path) or path.suffix == ".zarr" or path.name.endswith(".zarr.partial"):
        return describe_store(path, verify)
    if is_stream(path):
        return describe_manifest(path)
    if path.is_file() and _is_run_file(path):
        return describe_run(path.parent, path.name)
    if path.suffix == ".jsonl" or path.name.endswith(".jsonl.partial"):
        return describe_manifest(path)
    if path.is_dir() and (path / "config.json").is_file():
        return describe_run(path)
    if path.is_dir() and (path / "params.json").is_file():  # vcl idt --format text
        return {**describe_json(path / "params.json", verify), **_text_folder(path)}
    if path.is_file():
        if path.suffix.lower() == ".json":
            return describe_json(path, verify)
        if _index_metadata(path) is not None:
            return describe_index(path, verify)
        if path.suffix.lower() == ".npy":
            return describe_array(path)
        if path.suffix.lower() == ".toml":
            return describe_config(path)
        if path.suffix.lower() in (".index", ".faiss"):
            raise DataError(
                f"not a vcl retrieve index: no metadata file {path.name}.json beside it",
                path,
                "rebuild it with vcl retrieve index, which writes both",
            )
        if path.suffix.lower() in NOT_VIDEO:
            raise DataError(
                f"not a vcl file (a {path.suffix} file, not a video)", path, WHAT_INFO_READS
            )
        if path.suffix.lower() in IMAGE_EXTENSIONS | {".svg"}:  # FFmpeg reads one as 1 frame
            raise DataError(
                f"not a vcl file (a {path.suffix} image, not a video; a folder of images is "
                "a frame folder)",
                path,
                WHAT_INFO_READS,
            )
    return describe_video(path, verify)


def describe_video(path: Path, verify: bool = True) -> dict[str, Any]:
    """A video file or frame folder: its header and, with ``verify``, ``frames_decoded``
    counted by decoding every frame as the stages do (reading every image of a folder),
    so a video whose header reads but whose frames do not (no decodable frame) fails
    here too, and skipped packets or a cut file are warned about."""
    from vcl.io.sources import VIDEO_EXTENSIONS
    from vcl.io.video import VideoReader

    try:
        reader = VideoReader(path)
    except DataError as exc:
        if path.is_dir() or path.suffix.lower() in VIDEO_EXTENSIONS:
            raise  # a video or frame folder that is damaged: the reader's own message
        raise DataError(f"not a vcl file ({exc.problem})", path, WHAT_INFO_READS) from None
    out: dict[str, Any] = {"type": "video", **reader.info.to_json()}
    if verify:
        folder = reader.info.kind == "frames"
        out["frames_decoded"] = sum(1 for _ in reader) if folder else reader.count_frames()
    return out


def describe_store(path: Path, verify: bool = True) -> dict[str, Any]:
    from vcl.io.store import Store

    store = Store(path, version=KNOWN)
    if verify:
        problems = store.verify()
        if problems:
            raise DataError(f"damaged: {problems[0]}", path, "rerun the command that makes it")
    out = store.describe()
    if store.kind not in STORE_VERSIONS:  # another tool's columns: read as they are
        out["note"] = (
            f"vcl.{store.kind} is not a kind of store vcl writes: its version is not checked"
        )
    failed = store.attrs.get("failed")
    if failed:  # videos left out by --keep-going
        out["failed"] = {"count": len(failed), "first": [str(v) for v in failed[:FIRST_FAILED]]}
    return out


def _record_class(path: str | Path) -> type[Record] | None:
    """The record kind named by the first line's schema (video when it names none and
    has a path, track when it has boxes); None for lines no record class reads: a
    schema vcl writes as plain lines (``vcl.match/1``), or untyped lines with an id and
    other fields (``vcl cluster --jsonl``'s ``{"id", "cluster"}``)."""
    stream = open_text_input(path)
    try:
        for line in stream:
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    return RECORD_TYPES["video"]  # the full read names the bad line
                schema = obj.get("schema") if isinstance(obj, dict) else None
                if schema is None:
                    if isinstance(obj, dict) and "boxes" in obj:
                        return RECORD_TYPES["track"]
                    if isinstance(obj, dict) and "id" in obj and "path" not in obj:
                        return None
                    return RECORD_TYPES["video"]
                try:
                    kind, _ = parse_schema(schema)
                except ValueError as exc:
                    raise DataError(f"line 1: {exc}", path) from None
                if schema in LINE_SCHEMAS:
                    return None
                if kind not in RECORD_TYPES:
                    raise DataError(
                        f"line 1: unknown record kind {schema!r}",
                        path,
                        f"known: {', '.join(sorted(RECORD_TYPES))}",
                    )
                return RECORD_TYPES[kind]
    finally:
        if stream.name != "<stdin>":
            stream.close()
    return RECORD_TYPES["video"]


def describe_manifest(path: Path) -> dict[str, Any]:
    if is_stream(path):  # stdin or a pipe reads once: the kind is peeked from a copy
        import tempfile

        with tempfile.TemporaryDirectory(prefix="vcl-info-") as tmp:
            copy = Path(tmp) / "stdin.jsonl"
            copy.write_text(open_text_input(path).read(), encoding="utf-8")
            try:
                return {**describe_manifest(copy), "path": str(path)}
            except DataError as exc:  # name the pipe, not the copy
                raise type(exc)(exc.problem, path, exc.hint) from None
    cls = _record_class(path)
    if cls is None:
        return _describe_lines(path)
    count = 0
    fields: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    videos: set[str] = set()
    lengths = []
    for record in iter_records(path, cls):
        count += 1
        obj = record.to_json()
        fields.update(k for k in obj if k != "schema")
        if getattr(record, "label", None) is not None:
            labels[record.label] += 1  # type: ignore[attr-defined]
        if getattr(record, "split", None) is not None:
            splits[record.split] += 1  # type: ignore[attr-defined]
        if hasattr(record, "video_id"):
            videos.add(record.video_id)  # type: ignore[attr-defined]
            lengths.append(len(record.frames))  # type: ignore[attr-defined]
    out: dict[str, Any] = {
        "path": str(path),
        "type": "manifest",
        # an empty file (a complete `vcl track` output with no tracks) names no kind
        "schema": cls.schema() if count else None,
        "records": count,
        "fields": dict(sorted(fields.items())),
    }
    if labels:
        out["labels"] = dict(sorted(labels.items()))
    if splits:
        out["splits"] = dict(sorted(splits.items()))
    if videos:
        out["videos"] = len(videos)
        out["track_length"] = {
            "min": min(lengths),
            "mean": round(sum(lengths) / count, 2),
            "max": max(lengths),
        }
    return out


def _describe_lines(path: Path) -> dict[str, Any]:
    """JSONL that no record class reads (match lines, ``{"id", "cluster"}`` lines):
    every line parsed, its schema (if any) the same on every line."""
    from vcl.io.manifest import iter_json_lines

    count = 0
    fields: Counter[str] = Counter()
    schemas: set[Any] = set()
    for _, obj in iter_json_lines(path):
        count += 1
        schemas.add(obj.get("schema"))
        fields.update(k for k in obj if k != "schema")
    if len(schemas) > 1:
        raise DataError(f"mixes schemas: {sorted(map(str, schemas))}", path)
    return {
        "path": str(path),
        "type": "manifest",
        "schema": next(iter(schemas), None),
        "records": count,
        "fields": dict(sorted(fields.items())),
    }


def _text_folder(path: Path) -> dict[str, Any]:
    """``vcl idt --format text``: a folder of VIDEO_ID.txt files and params.json."""
    return {"path": str(path), "type": "idt_text", "videos": len(list(path.glob("*.txt")))}


# ------------------------------------------------------------------- JSON records


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        raise DataError(f"not valid JSON ({why})", path) from None


def _schema_of(obj: Any, path: Path) -> tuple[str, str, int] | None:
    """``(schema, kind, major)`` a JSON object names (``vcl_schema`` or ``schema``)."""
    if not isinstance(obj, dict):
        return None
    schema = obj.get("vcl_schema", obj.get("schema"))
    if schema is None:
        return None
    try:
        kind, major = parse_schema(schema)
    except ValueError as exc:
        raise DataError(str(exc), path) from None
    return schema, kind, major


def describe_json(path: Path, verify: bool = True) -> dict[str, Any]:
    """A run's config.json, an index's metadata, or another vcl JSON record."""
    obj = _read_json(path)
    named = _schema_of(obj, path)
    if named is None:
        if path.name == "config.json" and isinstance(obj, dict) and "arch" in obj:
            return describe_run(path.parent, path.name)  # a run saved before the schema
        raise DataError("not a vcl file (JSON without a vcl schema)", path, WHAT_INFO_READS)
    schema, kind, _ = named
    if kind == RUN_KIND:
        return describe_run(path.parent, path.name)
    if kind == INDEX_KIND:
        return describe_index(path.with_name(path.name.removesuffix(".json")), verify)
    keys = ("vcl_version", "command", "params", "seed", "created")
    return {
        "path": str(path),
        "type": "json",
        "schema": schema,
        **{k: obj[k] for k in keys if k in obj},
    }


# ------------------------------------------------------------- pretrain runs


def describe_run(run_dir: Path, file: str | None = None) -> dict[str, Any]:
    """A ``vcl pretrain`` run directory, from its config.json and metrics.jsonl (the
    checkpoint is not loaded: it is checked to be there, as ``vcl embed`` needs it).
    ``file``: the run's file that was named, reported as such."""
    from vcl.backbones import load_run_config

    config = load_run_config(run_dir)  # the check vcl embed, probe and --resume make
    checkpoint = run_dir / "checkpoint.pt"
    if not checkpoint.is_file():
        raise MissingInputError(
            "run directory has no checkpoint.pt (the training stopped before its first)",
            run_dir,
            "rerun the training",
        )
    metrics = run_dir / "metrics.jsonl"
    done = None
    if metrics.is_file():
        from vcl.io.manifest import iter_json_lines

        epochs = [obj.get("epoch") for _, obj in iter_json_lines(metrics)]
        epochs = [int(e) for e in epochs if isinstance(e, (int, float))]
        done = max(epochs) if epochs else None
    shown = ("schema", "method", "arch", "epochs", "vcl_version", "command", "created")
    out: dict[str, Any] = {"path": str(run_dir), "type": "pretrain run"}
    if file is not None:
        out["file"] = file
    out.update(
        {
            "schema": config.get("schema"),
            "method": config.get("method"),
            "arch": config["arch"],
            "epochs_done": done,  # epoch 0: initialised, not trained
            "epochs_asked": config.get("epochs"),
            "checkpoint_bytes": checkpoint.stat().st_size,
            "labels_files": len(list(run_dir.glob("labels_epoch_*.npy"))),
            **{k: config.get(k) for k in shown[4:]},
            "params": {k: v for k, v in config.items() if k not in shown},
        }
    )
    return out


# ---------------------------------------------------------------- retrieve indexes


def _index_metadata(path: Path) -> Path | None:
    """The ``.json`` metadata beside a file, when it names a vcl retrieve index."""
    from vcl.retrieve import meta_path

    meta = meta_path(path)
    if not meta.is_file():
        return None
    try:
        named = _schema_of(_read_json(meta), meta)
    except DataError:
        return meta  # a damaged metadata file: describe_index names it
    return meta if named is not None and named[1] == INDEX_KIND else None


def describe_index(path: Path, verify: bool = True) -> dict[str, Any]:
    """A ``vcl retrieve index`` file and its metadata, checked as ``vcl retrieve`` does
    (schema, and the index's size and sha256 against the metadata); not loaded."""
    import hashlib

    from vcl.retrieve import check_index_file, read_index_meta

    meta_file, meta = read_index_meta(path)  # vcl retrieve's own checks
    if not path.is_file():
        raise MissingInputError(
            f"no such index file (its metadata {meta_file.name} is here)",
            path,
            "rebuild it with vcl retrieve index",
        )
    size, sha256 = path.stat().st_size, None
    if verify and size == meta.get("index_bytes"):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        sha256 = digest.hexdigest()
    check_index_file(path, meta, size, sha256)
    ids = meta.get("ids") or []
    source = meta.get("source") or {}
    keys = ("vcl_version", "command", "params", "seed", "created")
    return {
        "path": str(path),
        "type": "index",
        "metadata": str(meta_file),
        "schema": meta["vcl_schema"],
        "index_type": meta.get("index_type"),
        "metric": meta.get("metric"),
        "dimension": meta.get("dimension"),
        "count": meta.get("count"),
        "bytes": size,
        "built_on": meta.get("built_on"),
        "source": {
            k: source[k] for k in ("path", "schema", "layer", "model", "ids_file") if k in source
        },
        "first_ids": [str(i) for i in ids[:FIRST_IDS]],
        **{k: meta.get(k) for k in keys},
    }


# ------------------------------------------------------------------------ arrays


def describe_array(path: Path) -> dict[str, Any]:
    """A ``.npy`` array (vectors that ``vcl cluster``, ``probe`` and ``retrieve`` read)."""
    import numpy as np

    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"not a readable .npy array ({exc})", path) from None
    return {
        "path": str(path),
        "type": "array",
        "shape": list(array.shape),
        "dtype": str(array.dtype),
    }


def describe_config(path: Path) -> dict[str, Any]:
    """A ``--config`` TOML file: its top-level options and command tables (whose option
    names the command checks when it runs)."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid TOML ({exc})", path) from None

    def tables(section: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for key, value in section.items():
            if isinstance(value, dict):
                out += [f"{prefix}{key}", *tables(value, f"{prefix}{key}.")]
        return out

    return {
        "path": str(path),
        "type": "config",
        "options": {k: v for k, v in data.items() if not isinstance(v, dict)},
        "tables": tables(data),
    }
