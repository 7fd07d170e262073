"""vcl videos: build a videos manifest from files, frame folders and manifests."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vcl.cli.common import Overwrite, Shard, Videos, Workers, parse_shard_option, vcl_command

if TYPE_CHECKING:
    from vcl.io.datasets import Entries
    from vcl.io.manifest import VideoRecord


def _probe_or_error(record, count):
    from vcl.errors import DataError, VclError
    from vcl.io.sources import probe_record

    try:
        probed = probe_record(record, count)
    except VclError as exc:
        return exc
    if count and probed.extra.get("frames") == 0:  # e.g. a header that declares frames
        return DataError("no frame could be decoded; the file is empty or corrupt", record.path)
    return probed


def _read_lists(
    ucf101: Path | None, hmdb51: Path | None, kinetics: list[Path]
) -> tuple[Entries, str, bool] | None:
    """The entries of the one data set named, with where they came from, or None."""
    from vcl.errors import UsageError
    from vcl.io.datasets import read_hmdb51, read_kinetics, read_ucf101

    named = [
        o for o, v in (("--ucf101", ucf101), ("--hmdb51", hmdb51), ("--kinetics", kinetics)) if v
    ]
    if len(named) > 1:
        raise UsageError(
            f"{named[0]} and {named[1]} label the same videos twice; give one data set"
        )
    if ucf101 is not None:
        return read_ucf101(ucf101), str(ucf101), False
    if hmdb51 is not None:
        return read_hmdb51(hmdb51), str(hmdb51), False
    if kinetics:
        return read_kinetics(kinetics), ", ".join(map(str, kinetics)), True
    return None


def _label(
    records: list[VideoRecord], entries: Entries, source: str, kinetics: bool
) -> list[VideoRecord]:
    """The records with their list entries' fields, and warnings for what did not meet."""
    from vcl.console import log
    from vcl.errors import DataError, first_ids
    from vcl.io.datasets import match_videos, video_key, with_fields

    match = match_videos([r.path for r in records], entries, kinetics)
    if records and len(match.unlisted) == len(records):
        raise DataError(
            f"no video of the {len(records)} given is in its lists (videos: "
            f"{first_ids([video_key(p) for p in match.unlisted])}; lists: "
            f"{first_ids(list(entries))})",
            source,
            "give the lists of these videos' data set",
        )
    if match.unlisted:
        log.warning(
            "%d of %d videos are in no list of %s (%s); they get no %s",
            len(match.unlisted),
            len(records),
            source,
            first_ids([video_key(p) for p in match.unlisted]),
            "/".join(sorted({name for fields in entries.values() for name in fields})),
        )
    if match.missing:
        log.warning(
            "%d of %d list entries of %s have no video (%s)",
            len(match.missing),
            len(entries),
            source,
            first_ids(match.missing),
        )
    log.info("%d videos labelled from %s", len(records) - len(match.unlisted), source)
    return [with_fields(r, fields) for r, fields in zip(records, match.fields, strict=True)]


@vcl_command
def run(
    inputs: Videos,
    output: Annotated[
        str, typer.Option("-o", "--output", help="Manifest to write (- for stdout).")
    ] = "-",
    count: Annotated[
        bool,
        typer.Option(
            "--count", help="Decode every video to count its frames (declared counts can be wrong)."
        ),
    ] = False,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad", help="Leave out unreadable videos with a warning instead of failing."
        ),
    ] = False,
    ucf101: Annotated[
        Path | None,
        typer.Option(
            "--ucf101",
            metavar="DIR",
            help="UCF101's ucfTrainTestlist folder: give each video label and split1-3 "
            "(train/test).",
        ),
    ] = None,
    hmdb51: Annotated[
        Path | None,
        typer.Option(
            "--hmdb51",
            metavar="DIR",
            help="HMDB51's testTrainMulti_7030_splits folder: give each video label and "
            "split1-3 (train/test, or unused where the list says 0).",
        ),
    ] = None,
    kinetics: Annotated[
        list[Path] | None,
        typer.Option(
            "--kinetics",
            metavar="CSV",
            help="A Kinetics annotation CSV (repeatable: train.csv, validate.csv, test.csv): "
            "give each video label and split (train/val/test).",
        ),
    ] = None,
    shard: Shard = None,
    workers: Workers = 1,
    overwrite: Overwrite = False,
) -> None:
    """List and probe videos into a manifest.

    Each line gets the video's id, path, fps, size and frame count, so later stages
    and Makefiles can work from one manifest. Ids of plain paths are their path
    below the common folder, without extension (kept where two files differ only by
    it: x.mp4 and x.avi).

    --ucf101, --hmdb51 or --kinetics label the videos from a data set's official split
    lists, matching each list entry to the video of the same file or folder name
    without extension (Kinetics: <youtube_id>_<start>_<end> or <youtube_id>). The
    imported label and split fields replace those of a manifest given as input (the
    videos in no list lose them; other fields are kept). Videos in no list, and list
    entries with no video, are counted in a warning.
    """
    from vcl.console import log, track
    from vcl.errors import VclError
    from vcl.io.manifest import RecordWriter
    from vcl.io.sources import resolve_videos
    from vcl.parallel import parallel_map, select_shard

    lists = _read_lists(ucf101, hmdb51, kinetics or [])  # before any video: a bad list fails fast
    records = resolve_videos(inputs)
    if lists is not None:
        records = _label(records, *lists)
    records = select_shard(records, parse_shard_option(shard), lambda r: r.id)
    probe = functools.partial(_probe_or_error, count=count)
    bad = 0
    good = []
    with RecordWriter(output, overwrite=overwrite) as writer:
        results = parallel_map(probe, records, workers)
        for result in track(results, "probing videos", total=len(records), unit="videos"):
            if isinstance(result, VclError):
                if not skip_bad:
                    raise result
                bad += 1
                log.warning("skipped: %s", result.message)
                continue
            good.append(result)
        # written only once every video is probed: a failure leaves no partial
        # manifest on stdout for the next stage of a pipe to take as complete
        writer.write_all(good)
    log.info("%d videos listed%s", writer.count, f", {bad} unreadable skipped" if bad else "")


EXAMPLES = [
    (
        "A manifest of every video below a folder, with decoded frame counts:",
        "vcl videos ~/datasets/ucf101/ --count --workers 0 -o ucf101.jsonl",
    ),
    ("The second of four shards of a manifest, on stdout:", "vcl videos videos.jsonl --shard 1/4"),
    (
        "UCF101 with its classes and three official splits (split1, split2, split3):",
        "vcl videos UCF-101/ --ucf101 ucfTrainTestlist/ --workers 0 -o ucf101.jsonl",
    ),
    (
        "HMDB51 the same way (split fields train, test or unused):",
        "vcl videos hmdb51/ --hmdb51 testTrainMulti_7030_splits/ --workers 0 -o hmdb51.jsonl",
    ),
    (
        "Kinetics-400 training and validation videos with label and split (train/val):",
        "vcl videos kinetics400/ --kinetics train.csv --kinetics validate.csv -o k400.jsonl",
    ),
]
