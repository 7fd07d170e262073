"""vcl videos: build a videos manifest from files, frame folders and manifests."""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from vcl.cli.common import Overwrite, Shard, Videos, Workers, parse_shard_option, vcl_command


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
    shard: Shard = None,
    workers: Workers = 1,
    overwrite: Overwrite = False,
) -> None:
    """List and probe videos into a manifest.

    Each line gets the video's id, path, fps, size and frame count, so later stages
    and Makefiles can work from one manifest. Ids of plain paths are their path
    below the common folder, without extension (kept where two files differ only by
    it: x.mp4 and x.avi).
    """
    from vcl.console import log, track
    from vcl.errors import VclError
    from vcl.io.manifest import RecordWriter
    from vcl.io.sources import resolve_videos
    from vcl.parallel import parallel_map, select_shard

    records = select_shard(resolve_videos(inputs), parse_shard_option(shard), lambda r: r.id)
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
]
