"""The official split lists of UCF101, HMDB51 and Kinetics, read into fields per video.

Papers evaluate on these data sets' fixed splits; reading the lists here (rather than in
every user's glue script) keeps labels tied to videos by name, never by row order. Each
reader turns its files into ``{key: {field: value}}``, the key being the video's name
without its extension (its folder and extension differ between copies: users transcode
.avi to .mp4, or extract frame folders named like the video); `match_videos` then finds
each listed video's entry with one dict lookup. A malformed line is a DataError naming
the file and the line, so a wrong list never yields a silently wrong split.

UCF101 and HMDB51 give ``label`` and one field per official split (``split1``...:
``train``/``test``, and HMDB51's ``unused`` for videos a split leaves out); Kinetics
gives ``label`` and ``split`` (``train``/``val``/``test``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vcl.errors import DataError, MissingInputError, UsageError
from vcl.io.manifest import VideoRecord
from vcl.io.sources import VIDEO_EXTENSIONS

Entries = dict[str, dict[str, str]]  # video key -> {field: value}

# HMDB51's third value: in no set of that split (the lists keep 70 train / 30 test per class)
HMDB_VALUES = {"0": "unused", "1": "train", "2": "test"}
# the official downloader's names: <youtube id>_<time_start:06d>_<time_end:06d>
_KINETICS_NAME = re.compile(r"^(?P<id>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")
_KINETICS_SPLITS = {"train": "train", "val": "val", "validate": "val", "test": "test"}


def video_key(name: str) -> str:
    """A video's name without its video extension: the key the lists are matched on.

    Only a video extension is taken off, so a frame folder ``v_x_g01_c01`` and an HMDB
    name with dots in it (``Dr._Smith_..._0``) keep theirs."""
    name = name.rstrip("/").rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    return stem if dot and stem and f".{ext.lower()}" in VIDEO_EXTENSIONS else name


def kinetics_key(youtube_id: str, time_start: int) -> str:
    """The key of one Kinetics clip: a YouTube video holds several clips, told apart by
    their start time (end times are rounded differently by some downloaders)."""
    return f"{youtube_id}_{time_start:06d}"


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines, stripped: the real lists have CRLF
    endings and trailing blanks. Undecodable bytes are kept as the file system keeps them
    in file names (surrogate escapes), so such names still match the videos on disk."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="surrogateescape")
    except OSError as exc:
        raise MissingInputError(f"cannot read ({exc.strerror})", path) from None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line.strip()


def _folder(path: str | Path, what: str) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise MissingInputError(f"no such folder (expected {what})", folder)
    if not folder.is_dir():
        raise UsageError(f"is a file; give the {what} folder", folder)
    return folder


Origins = dict[tuple[str, str], str]  # (key, field) -> "FILE: line N" that set it


def _put(entries: Entries, origin: Origins, key: str, values: dict[str, str], where: str) -> None:
    """Set ``values`` on ``key``; a field already set to another value is a DataError
    naming both places (a video in train and test of one split, or under two classes)."""
    fields = entries.setdefault(key, {})
    for name, value in values.items():
        old = fields.get(name)
        if old is not None and old != value:
            raise DataError(
                f"{key} has {name} {value!r} here but {old!r} at {origin[key, name]}",
                where,
            )
        if old is None:
            fields[name] = value
            origin[key, name] = where


def read_ucf101(path: str | Path) -> Entries:
    """``label`` and ``splitK`` of every video in UCF101's ``ucfTrainTestlist`` folder.

    ``classInd.txt`` numbers the classes; ``trainlist0K.txt`` lines name a video and its
    class number, ``testlist0K.txt`` lines the video only, whose class is its folder
    matched to classInd case-insensitively (the lists write ``HandstandPushups/`` for
    files named ``v_HandStandPushups_...``).
    """
    folder = _folder(path, "UCF101's ucfTrainTestlist")
    index_file = folder / "classInd.txt"
    if not index_file.is_file():
        raise DataError("holds no classInd.txt; is it UCF101's ucfTrainTestlist?", folder)
    classes: dict[int, str] = {}
    for number, line in _lines(index_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(
                f"line {number}: expected '<class number> <class name>', got {line!r}", index_file
            )
        if int(parts[0]) in classes:
            raise DataError(f"line {number}: class number {parts[0]} is given twice", index_file)
        classes[int(parts[0])] = parts[1]
    if not classes:
        raise DataError("lists no classes", index_file)
    by_name = {name.lower(): name for name in classes.values()}

    lists = {
        (m.group(1).lower(), int(m.group(2))): p
        for p in folder.iterdir()
        if (m := re.fullmatch(r"(train|test)list(\d+)\.txt", p.name, re.IGNORECASE))
    }
    splits = sorted({k for _, k in lists})
    if not splits:
        raise DataError("holds no trainlist0K.txt / testlist0K.txt pair", folder)
    for k in splits:
        for kind in ("train", "test"):
            if (kind, k) not in lists:
                other = lists[("test" if kind == "train" else "train", k)].name
                raise DataError(f"has {other} but no {kind}list{k:02d}.txt", folder)

    entries: Entries = {}
    origin: Origins = {}
    for k in splits:
        for kind in ("train", "test"):
            list_file = lists[(kind, k)]
            for number, line in _lines(list_file):
                parts = line.split()
                where = f"{list_file}: line {number}"
                number_ok = len(parts) == 2 and parts[1].isdigit() and int(parts[1]) in classes
                if kind == "train" and not number_ok:
                    raise DataError(
                        f"line {number}: expected '<class>/<video>.avi <class number from "
                        f"classInd.txt>', got {line!r}",
                        list_file,
                    )
                if kind == "test" and len(parts) != 1:
                    raise DataError(
                        f"line {number}: expected '<class>/<video>.avi', got {line!r}", list_file
                    )
                if kind == "train":
                    label = classes[int(parts[1])]
                else:
                    folder_name = parts[0].rpartition("/")[0].rsplit("/", 1)[-1]
                    if folder_name.lower() not in by_name:
                        raise DataError(
                            f"line {number}: expected '<class>/<video>.avi' with a class of "
                            f"classInd.txt, got {line!r}",
                            list_file,
                        )
                    label = by_name[folder_name.lower()]
                _put(
                    entries, origin, video_key(parts[0]), {"label": label, f"split{k}": kind}, where
                )
    return entries


def read_hmdb51(path: str | Path) -> Entries:
    """``label`` and ``splitK`` of every video in HMDB51's ``testTrainMulti_7030_splits``.

    One file per class and split, ``<class>_test_split<K>.txt`` (class names hold
    underscores: ``brush_hair``), with lines ``<video>.avi <0|1|2>``: 1 train, 2 test,
    0 unused in that split.
    """
    folder = _folder(path, "HMDB51's testTrainMulti_7030_splits")
    files: dict[str, dict[int, Path]] = {}
    for p in sorted(folder.iterdir()):
        if m := re.fullmatch(r"(.+)_test_split(\d+)\.txt", p.name):
            files.setdefault(m.group(1), {})[int(m.group(2))] = p
    if not files:
        raise DataError(
            "holds no <class>_test_split<K>.txt files; is it HMDB51's testTrainMulti_7030_splits?",
            folder,
        )
    all_splits = sorted({k for per_class in files.values() for k in per_class})
    for name, per_class in files.items():
        if missing := [k for k in all_splits if k not in per_class]:
            raise DataError(
                f"class {name!r} has no {name}_test_split{missing[0]}.txt (other classes have)",
                folder,
            )

    entries: Entries = {}
    origin: Origins = {}
    for name, per_class in files.items():
        for k, list_file in sorted(per_class.items()):
            for number, line in _lines(list_file):
                parts = line.split()
                if len(parts) != 2 or parts[1] not in HMDB_VALUES:
                    raise DataError(
                        f"line {number}: expected '<video>.avi <0|1|2>' (0 unused, 1 train, "
                        f"2 test), got {line!r}",
                        list_file,
                    )
                values = {"label": name, f"split{k}": HMDB_VALUES[parts[1]]}
                where = f"{list_file}: line {number}"
                _put(entries, origin, video_key(parts[0]), values, where)
    return entries


def _kinetics_split_of_file(path: Path) -> str | None:
    """``train.csv`` -> train, ``validate.csv`` / ``val.csv`` -> val, ``test.csv`` ->
    test (also as the last word: ``kinetics_400_validate.csv``)."""
    last = re.split(r"[_\-. ]", path.stem.lower())[-1]
    return _KINETICS_SPLITS.get(last)


def read_kinetics(paths: Sequence[str | Path]) -> Entries:
    """``label`` and ``split`` of every clip in Kinetics annotation CSVs, keyed by
    `kinetics_key`.

    The CSVs have a header naming ``youtube_id``, ``time_start``, ``time_end`` and
    usually ``label`` (test CSVs may lack it) and ``split``; without a split column the
    split is the file's name. Other columns (``is_cc``) are ignored.
    """
    entries: Entries = {}
    origin: Origins = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MissingInputError("no such Kinetics annotation CSV", path)
        if path.is_dir():
            raise UsageError("is a folder; give the annotation CSV (train.csv...)", path)
        rows = _lines(path)
        header_line = next(rows, None)
        if header_line is None:
            raise DataError("is empty; expected a Kinetics annotation CSV with a header", path)
        header = [h.strip().lower() for h in next(csv.reader([header_line[1]]))]
        needed = [c for c in ("youtube_id", "time_start", "time_end") if c not in header]
        if needed:
            raise DataError(
                f"line {header_line[0]}: expected a header with youtube_id, time_start, "
                f"time_end (and label, split); {needed[0]!r} is missing",
                path,
            )
        column = {name: i for i, name in enumerate(header)}
        file_split = None
        if "split" not in column:
            file_split = _kinetics_split_of_file(path)
            if file_split is None:
                raise DataError(
                    "has no split column and its name is not train, val, validate or test",
                    path,
                    "rename it (train.csv, validate.csv, test.csv) or add a split column",
                )
        for number, line in rows:
            cells = next(csv.reader([line]))
            if len(cells) != len(header):
                raise DataError(
                    f"line {number}: expected {len(header)} comma-separated fields "
                    f"({','.join(header)}), got {len(cells)}",
                    path,
                )
            row = {name: cells[i].strip() for name, i in column.items()}
            start = _whole_seconds(row["time_start"])
            if not row["youtube_id"] or start is None or _whole_seconds(row["time_end"]) is None:
                raise DataError(
                    f"line {number}: expected a youtube_id and whole seconds in time_start and "
                    f"time_end, got {line!r}",
                    path,
                )
            split = file_split or _KINETICS_SPLITS.get(row["split"].lower(), row["split"])
            if not split:
                raise DataError(f"line {number}: expected a value in the split column", path)
            values = {"split": split}
            if row.get("label"):
                values["label"] = row["label"]
            where = f"{path}: line {number}"
            _put(entries, origin, kinetics_key(row["youtube_id"], start), values, where)
    return entries


def _whole_seconds(text: str) -> int | None:
    """``"14"`` or ``"14.0"`` -> 14; None for anything else."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and value >= 0 else None


@dataclass
class Match:
    """Which entry each video matched, aligned with the videos given."""

    fields: list[dict[str, str] | None]  # the entry's fields, None for a video in no list
    unlisted: list[str] = field(default_factory=list)  # paths of the videos in no list
    missing: list[str] = field(default_factory=list)  # keys of the entries with no video


def match_videos(paths: Sequence[str], entries: Entries, kinetics: bool = False) -> Match:
    """Each video's entry, by its name without extension (`video_key`).

    With ``kinetics``, a name ``<id>_<start>_<end>`` matches on (id, start) and a bare
    ``<id>`` on the id alone, which must then name one clip. Two videos matching one
    entry (x.avi beside x.mp4) are a DataError naming both.
    """
    by_id: dict[str, list[str]] = {}
    if kinetics:
        for key in entries:
            by_id.setdefault(key.rsplit("_", 1)[0], []).append(key)
    found: list[dict[str, str] | None] = []
    unlisted: list[str] = []
    taken: dict[str, str] = {}
    for path in paths:
        name = video_key(path)
        key = name
        if kinetics:
            parts = _KINETICS_NAME.match(name)
            if parts:
                key = kinetics_key(parts["id"], int(parts["start"]))
            elif name in by_id:
                if len(by_id[name]) > 1:
                    starts = ", ".join(str(int(k.rsplit("_", 1)[1])) for k in by_id[name][:3])
                    raise DataError(
                        f"the lists hold {len(by_id[name])} clips of YouTube video {name} "
                        f"(time_start {starts}); name the file <id>_<start>_<end> as the "
                        "official downloader does",
                        path,
                    )
                key = by_id[name][0]
        entry = entries.get(key)
        if entry is None:
            unlisted.append(path)
        elif key in taken:
            raise DataError(
                f"two videos are {key} of the lists: {taken[key]} and {path}",
                None,
                "keep one of them (or list them apart in a manifest)",
            )
        else:
            taken[key] = path
        found.append(entry)
    missing = [key for key in entries if key not in taken]
    return Match(found, unlisted, missing)


def is_list_field(name: str) -> bool:
    """Whether a manifest field is one the lists set: ``label``, ``split`` or ``splitK``."""
    return name in ("label", "split") or re.fullmatch(r"split\d+", name) is not None


def with_fields(record: VideoRecord, fields: dict[str, str] | None) -> VideoRecord:
    """``record`` with the imported ``fields`` (None: the video is in no list); its own
    label and split fields (`is_list_field`) are dropped first, so a video's label and
    splits all come from the lists given, none from an older manifest."""
    from dataclasses import replace

    fields = fields or {}
    extra = {k: v for k, v in record.extra.items() if not is_list_field(k)}
    extra.update({k: v for k, v in fields.items() if k not in ("label", "split")})
    return replace(record, label=fields.get("label"), split=fields.get("split"), extra=extra)
