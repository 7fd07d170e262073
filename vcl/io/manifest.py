"""JSONL manifests: one typed record a line, each carrying ``schema`` and ``id``.

A line looks like ``{"schema": "vcl.video/1", "id": "v0001", "path": "v0001.mp4", ...}``.
Readers validate every line and name the line number of a bad one; a record whose
schema names a newer major version than this vcl knows is refused (exit 65), since
its meaning may have changed. A line without ``schema`` is read as the kind the
caller expects, so hand-written files (``{"id": ..., "label": ...}``) work; a video
line may name its id ``video_id`` or leave it out (see ``path_line_ids``). Fields a
record class does not know are kept in ``extra`` and written back unchanged.

Paths inside a manifest are relative to the manifest's folder unless absolute; they
are resolved on reading and made relative again on writing.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TextIO, TypeVar

from vcl.errors import DataError, MissingInputError, OutputError, UsageError

SCHEMA_PATTERN = re.compile(r"^vcl\.([a-z_][a-z0-9_-]*)/(\d+)$")  # vcl.idt-text/1 too
# vcl retrieve query's neighbour lines: plain JSON lines, no record class reads them
MATCH_SCHEMA = "vcl.match/1"

R = TypeVar("R", bound="Record")


@dataclass(kw_only=True)
class Record:
    """Base of every manifest record; subclasses set KIND and VERSION."""

    KIND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ()

    id: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def schema(cls) -> str:
        return f"vcl.{cls.KIND}/{cls.VERSION}"

    def validate(self) -> None:
        """Raise ValueError describing the first inconsistency."""
        _expect(isinstance(self.id, str) and self.id != "", "'id' must be a non-empty string")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": self.schema()}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "extra" and value is not None:
                out[f.name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls: type[R], obj: dict[str, Any]) -> R:
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in obj.items() if k in known}
        extra = {k: v for k, v in obj.items() if k not in known and k != "schema"}
        missing = [
            f.name
            for f in fields(cls)
            if f.name not in kwargs and f.name != "extra" and _is_required(f)
        ]
        if missing:
            raise ValueError(f"missing field {missing[0]!r}")
        record = cls(**kwargs, extra=extra)
        record.validate()
        return record


def _is_required(f: Any) -> bool:
    from dataclasses import MISSING

    return f.default is MISSING and f.default_factory is MISSING


def _expect(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(problem)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _optional_str(record: Record, *names: str) -> None:
    for name in names:
        value = getattr(record, name)
        _expect(value is None or isinstance(value, str), f"'{name}' must be a string")


@dataclass(kw_only=True)
class VideoRecord(Record):
    """A video file or a folder of frames, with optional evaluation labels."""

    KIND: ClassVar[str] = "video"
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("path",)

    path: str
    label: str | None = None
    split: str | None = None
    fps: float | None = None

    def validate(self) -> None:
        super().validate()
        _expect(isinstance(self.path, str) and self.path != "", "'path' must be a non-empty string")
        _optional_str(self, "label", "split")
        _expect(self.fps is None or (_is_number(self.fps) and self.fps > 0), "'fps' must be > 0")


@dataclass(kw_only=True)
class ImageRecord(Record):
    """An image file (jpg/png...), with optional class label(s) and split.

    ``label`` is one class name; several labels (multi-label data such as VOC) are
    written separated by ``|``.
    """

    KIND: ClassVar[str] = "image"
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("path",)

    path: str
    label: str | None = None
    split: str | None = None

    def validate(self) -> None:
        super().validate()
        _expect(isinstance(self.path, str) and self.path != "", "'path' must be a non-empty string")
        _optional_str(self, "label", "split")


@dataclass(kw_only=True)
class TrackRecord(Record):
    """One object track: a box (x0, y0, x1, y1 in source pixels) for each listed frame."""

    KIND: ClassVar[str] = "track"

    video_id: str
    frames: list[int]
    boxes: list[list[float]]
    score: float = 1.0
    label: str | None = None

    def validate(self) -> None:
        super().validate()
        _expect(isinstance(self.video_id, str) and self.video_id != "", "'video_id' must be set")
        _expect(isinstance(self.frames, list) and len(self.frames) > 0, "'frames' must be a list")
        _expect(all(isinstance(t, int) and t >= 0 for t in self.frames), "'frames' must be >= 0")
        _expect(
            all(b > a for a, b in zip(self.frames, self.frames[1:], strict=False)),
            "'frames' must be strictly increasing",
        )
        _expect(
            isinstance(self.boxes, list) and len(self.boxes) == len(self.frames),
            f"'boxes' must have one box per frame ({len(self.frames)})",
        )
        for box in self.boxes:
            _expect(
                isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box),
                "each box must be 4 finite numbers [x0, y0, x1, y1]",
            )
            _expect(box[0] <= box[2] and box[1] <= box[3], f"box {box} has x1 < x0 or y1 < y0")
        _expect(_is_number(self.score), "'score' must be a finite number")
        _optional_str(self, "label")


RECORD_TYPES: dict[str, type[Record]] = {
    cls.KIND: cls for cls in (VideoRecord, ImageRecord, TrackRecord)
}


def parse_schema(schema: Any) -> tuple[str, int]:
    """``"vcl.video/1"`` -> ``("video", 1)``; ValueError for anything else."""
    match = SCHEMA_PATTERN.match(schema) if isinstance(schema, str) else None
    if match is None:
        raise ValueError(f"'schema' must look like 'vcl.<kind>/<major>', got {schema!r}")
    return match.group(1), int(match.group(2))


def check_schema(schema: str, cls: type[Record]) -> None:
    kind, major = parse_schema(schema)
    if kind != cls.KIND:
        raise ValueError(f"schema {schema} is not a {cls.schema()} record")
    if major != cls.VERSION:
        newer = "newer than" if major > cls.VERSION else "older than"
        raise ValueError(
            f"schema {schema} is {newer} the {cls.schema()} this vcl reads; "
            + ("upgrade vcl" if major > cls.VERSION else "convert the file")
        )


def is_stream(path: str | Path) -> bool:
    """``-``, or a named pipe, socket or terminal given as a path (bash's ``<(cmd)``
    is ``/dev/fd/N``, a pipe): text that can be read once only, so it is read as a
    JSONL manifest without peeking, and its relative paths are taken from the working
    directory as for stdin (its own "folder" is ``/proc/PID/fd``)."""
    import stat

    if str(path) == "-":
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


def open_text_input(path: str | Path) -> TextIO:
    """Open a file, or stdin for ``-`` (refusing to wait on an interactive terminal)."""
    if str(path) == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError(
                "refusing to read JSONL from an interactive terminal",
                "-",
                "pipe a file into vcl or pass its path",
            )
        return sys.stdin
    p = Path(path)
    if p.name.endswith(".partial"):
        raise DataError(
            "incomplete: an interrupted write left this file", p, "rerun the command that makes it"
        )
    if not p.exists():
        raise MissingInputError("no such file", p)
    if p.is_dir():
        raise DataError("is a folder, not a JSONL file", p)
    return p.open("r", encoding="utf-8")


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of a JSONL file or ``-``.

    The one place JSONL is parsed: a line that is not a JSON object, or text that is
    not UTF-8, raises DataError naming the file and the line.
    """
    name = "-" if str(path) == "-" else str(path)
    stream = open_text_input(path)
    try:
        for lineno, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line.rstrip("\r\n"))  # column numbers of this line
            except json.JSONDecodeError as exc:
                problem = f"{exc.msg.removesuffix(' at')} at column {exc.colno}"
                raise DataError(f"line {lineno}: not valid JSON ({problem})", name) from None
            if not isinstance(obj, dict):
                raise DataError(f"line {lineno}: a line must be a JSON object", name)
            yield lineno, obj
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", name) from None
    finally:
        if stream is not sys.stdin:
            stream.close()


def video_id_for_path(path: str | Path) -> str:
    """The id ``vcl videos`` gives one video named alone: a file's name without its
    extension, a frame folder's name."""
    p = Path(path)
    return p.name if p.is_dir() else p.stem


def keep_extensions(ids: list[str], names: list[str]) -> list[str]:
    """``ids`` with ``names[i]`` (the id with its extension) where two ids would be one
    but for it (``x.mp4`` beside ``x.avi``, or beside a frame folder ``x``), and a
    warning listing them: the rule of ``vcl videos`` for plain paths and path-only
    manifest lines alike. A name given twice is one video twice, left to the caller's
    duplicate-id error."""
    shared, repeated = Counter(ids), Counter(names)
    out, kept = list(ids), []
    for i, (vid, name) in enumerate(zip(ids, names, strict=True)):
        if shared[vid] > 1 and name != vid and repeated[name] == 1:
            out[i] = name
            kept.append(name)
    if kept:
        from vcl.console import log

        log.warning(
            "ids keep the extension where two videos would share one without it: %s",
            ", ".join(kept[:6]) + (f", {len(kept) - 6} more" if len(kept) > 6 else ""),
        )
    return out


def path_line_ids(objs: list[dict[str, Any]], base: Path) -> list[str | None]:
    """The id of each line of one videos manifest that gives only a ``path`` (no ``id``,
    no ``video_id``), ``None`` for the others: the path's name without extension, or a
    frame folder's name, kept with its extension where two path-only lines would
    otherwise share it (``keep_extensions``). The one place path-only ids are given,
    so every reader of a videos manifest (records, labels joined by id) agrees; it
    needs all lines, so a videos manifest is read whole before its first record."""
    where = [
        i
        for i, obj in enumerate(objs)
        if "id" not in obj
        and "video_id" not in obj
        and isinstance(obj.get("path"), str)
        and obj["path"]
    ]
    paths = [base / objs[i]["path"] for i in where]
    ids = keep_extensions([video_id_for_path(p) for p in paths], [p.name for p in paths])
    out: list[str | None] = [None] * len(objs)
    for i, vid in zip(where, ids, strict=True):
        out[i] = vid
    return out


def video_line_id(obj: dict[str, Any], derived: str | None = None) -> Any:
    """The id of a videos-manifest line: ``id``, or ``video_id`` (the name DESIGN.md's
    contract uses), or, for a line with only a ``path``, ``derived``: its entry in
    ``path_line_ids`` (the id ``vcl videos`` gives that path). ValueError when ``id``
    and ``video_id`` disagree."""
    if "id" in obj and "video_id" in obj and obj["id"] != obj["video_id"]:
        raise ValueError(
            f"'id' {obj['id']!r} and 'video_id' {obj['video_id']!r} differ; keep one of them"
        )
    if "id" in obj:
        return obj["id"]
    if "video_id" in obj:
        return obj["video_id"]
    return derived


def iter_records(path: str | Path, cls: type[R], base: Path | None = None) -> Iterator[R]:
    """Yield validated records of ``cls`` from a JSONL file or ``-``.

    Relative paths are resolved against ``base`` (default: the file's folder, or the
    working directory for stdin). Duplicate ids are an error. A video line may name
    its id ``video_id`` or give only a ``path`` (see ``path_line_ids``); it is
    written back as ``id``. A videos manifest is read whole before its first record
    is yielded (a path-only line's id depends on the other lines); other kinds stream.
    """
    name = "-" if str(path) == "-" else str(path)
    if base is None:
        base = Path.cwd() if is_stream(path) else Path(path).resolve().parent
    seen: dict[str, int] = {}
    lines: Iterable[tuple[int, dict[str, Any]]] = iter_json_lines(path)
    by_path: list[str | None] = []
    if cls is VideoRecord:
        lines = list(lines)
        by_path = path_line_ids([obj for _, obj in lines], base)
    for i, (lineno, obj) in enumerate(lines):
        derived = False
        try:
            if "schema" in obj:
                check_schema(obj["schema"], cls)
            if cls is VideoRecord:
                derived = "id" not in obj and "video_id" not in obj
                vid = video_line_id(obj, by_path[i])
                obj = {k: v for k, v in obj.items() if k != "video_id"}
                if vid is not None:
                    obj["id"] = vid
            record = cls.from_json(obj)
        except (ValueError, TypeError) as exc:
            raise DataError(f"line {lineno}: {exc}", name) from None
        if record.id in seen:
            raise DataError(
                f"line {lineno}: duplicate id {record.id!r} (first on line {seen[record.id]})",
                name,
                "give the line an 'id'" if derived else "ids must be unique",
            )
        seen[record.id] = lineno
        for attr in cls.PATH_FIELDS:
            value = getattr(record, attr)
            if value is not None and not os.path.isabs(value):
                setattr(record, attr, str(base / value))
        yield record


def read_records(path: str | Path, cls: type[R], base: Path | None = None) -> list[R]:
    return list(iter_records(path, cls, base))


def relative_path(value: str, base: Path) -> str:
    """An absolute ``value`` below ``base`` made relative to it; anything else unchanged."""
    p = Path(value)
    if not p.is_absolute():
        return value
    try:
        return p.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(p)


def dumps(record: Record, base: Path | None = None) -> str:
    """One JSONL line (no newline); paths made relative to ``base`` where possible."""
    obj = record.to_json()
    if base is not None:
        for attr in record.PATH_FIELDS:
            if isinstance(obj.get(attr), str):
                obj[attr] = relative_path(obj[attr], base)
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


class RecordWriter:
    """Write records to a JSONL file atomically (``NAME.partial``, then rename) or stdout.

    Used as a context manager: the file appears under its name only when the block
    finishes without an exception, so a killed run never leaves a file that looks
    complete. Records are written and flushed one line at a time, so pipes stream.
    """

    def __init__(self, path: str | Path, overwrite: bool = True):
        self.to_stdout = str(path) == "-"
        self.path = None if self.to_stdout else Path(path)
        self.overwrite = overwrite
        self._stream: TextIO | None = None
        self.count = 0

    @property
    def partial(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".partial")

    def __enter__(self) -> RecordWriter:
        if self.to_stdout:
            self._stream = sys.stdout
            self.base = None
            return self
        assert self.path is not None
        if self.path.exists() and not self.overwrite:
            raise OutputError("exists already", self.path, "pass --overwrite to replace it")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = self.partial.open("w", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write ({exc.strerror})", self.path) from None
        self.base = self.path.resolve().parent
        return self

    def write(self, record: Record) -> None:
        assert self._stream is not None, "use RecordWriter as a context manager"
        self._stream.write(dumps(record, self.base) + "\n")
        self._stream.flush()
        self.count += 1

    def write_all(self, records: Iterable[Record]) -> int:
        for record in records:
            self.write(record)
        return self.count

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.to_stdout or self._stream is None:
            return
        self._stream.close()
        if exc_type is None:
            os.replace(self.partial, self.path)  # type: ignore[arg-type]
        else:
            self.partial.unlink(missing_ok=True)


def write_records(path: str | Path, records: Iterable[Record], overwrite: bool = True) -> int:
    with RecordWriter(path, overwrite=overwrite) as writer:
        return writer.write_all(records)
