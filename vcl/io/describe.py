"""What a vcl file is: the library behind ``vcl info``.

Recognises stores (zarr folders), JSONL manifests, video files and frame folders,
validates them as their readers would (so ``vcl info`` fails exactly where a later
stage would), and summarises them as a JSON-able dict.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from vcl.errors import DataError, MissingInputError
from vcl.io.manifest import (
    RECORD_TYPES,
    Record,
    is_stream,
    iter_records,
    open_text_input,
    parse_schema,
)
from vcl.io.store import partial_path

FIRST_FAILED = 5  # ids of failed videos shown by ``vcl info``


def _looks_like_store(path: Path) -> bool:
    return path.is_dir() and (path / "zarr.json").exists()


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
    if path.suffix == ".jsonl" or path.name.endswith(".jsonl.partial") or is_stream(path):
        return describe_manifest(path)
    from vcl.io.video import probe

    return {"type": "video", **probe(path).to_json()}


def describe_store(path: Path, verify: bool = True) -> dict[str, Any]:
    from vcl.io.store import Store

    store = Store(path)
    if verify:
        problems = store.verify()
        if problems:
            raise DataError(f"damaged: {problems[0]}", path, "rerun the command that makes it")
    out = store.describe()
    failed = store.attrs.get("failed")
    if failed:  # videos left out by --keep-going
        out["failed"] = {"count": len(failed), "first": [str(v) for v in failed[:FIRST_FAILED]]}
    return out


def _record_class(path: str | Path) -> type[Record]:
    """The record kind named by the first line's schema (video when it names none)."""
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
                    kind = "track" if isinstance(obj, dict) and "boxes" in obj else "video"
                    return RECORD_TYPES[kind]
                try:
                    kind, _ = parse_schema(schema)
                except ValueError as exc:
                    raise DataError(f"line 1: {exc}", path) from None
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
