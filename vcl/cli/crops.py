"""vcl crops: S×S crops of tracked objects, the samples ODCT trains on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vcl.cli.common import Overwrite, Shard, Workers, vcl_command
from vcl.errors import ExitCode


@vcl_command
def run(
    tracks: Annotated[
        list[str],
        typer.Argument(
            metavar="TRACKS...",
            help="Tracks JSONL (vcl track output; '-': stdin); several files (the shards of "
            "one run) read as one.",
            show_default=False,
        ),
    ],
    videos: Annotated[
        list[str],
        typer.Option("--videos", help="Videos manifest (or video paths) the tracks refer to."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Crops store to write (vcl.crops/1).")
    ],
    per_track: Annotated[
        int,
        typer.Option("--per-track", min=1, help="Crops per track, equally spaced in time (K)."),
    ] = 10,
    size: Annotated[int, typer.Option("--size", min=1, help="Crop side S in pixels.")] = 224,
    context: Annotated[
        float,
        typer.Option(
            "--context", min=0.0, help="Margin on each side, as a fraction of the region side."
        ),
    ] = 0.0,
    shape: Annotated[
        str,
        typer.Option(
            "--shape",
            help="square: a square around the box (keeps proportions); box: the box, stretched.",
        ),
    ] = "square",
    pairs: Annotated[
        bool,
        typer.Option(
            "--pairs", help="Only the first and last box of each track (KCF query/tracked pairs)."
        ),
    ] = False,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going",
            help="Skip the tracks of videos that are missing or cannot be decoded, list them "
            "as JSONL on stderr, finish the store, exit 3.",
        ),
    ] = False,
    workers: Workers = 1,
    shard: Shard = None,
    overwrite: Overwrite = False,
) -> None:
    """Crop tracked objects into S×S images.

    For each track, K frames equally spaced in time; each box (squared around its
    centre by default, optionally with a --context margin, clipped to the frame) is
    resized to S×S. Columns: image (S×S×3 uint8, a few per chunk for fast random
    reads), track_id, video_id, frame, box (source pixels). Each video is decoded once;
    the store is written per video and a rerun resumes it.
    """
    from vcl.cli.common import parse_shard_option
    from vcl.console import log, track
    from vcl.crops import (
        CHUNK_SAMPLES,
        CropParams,
        CropTask,
        columns_spec,
        crop_video,
        projected_bytes,
        store_bytes,
        try_crop_video,
    )
    from vcl.errors import DataError, UsageError
    from vcl.io.manifest import TrackRecord
    from vcl.io.sources import resolve_videos
    from vcl.io.space import check_free_space
    from vcl.io.store import Store, StoreWriter
    from vcl.io.union import read_records_union
    from vcl.parallel import parallel_map, select_shard

    params = CropParams(per_track, size, context, shape, pairs)
    try:
        params.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    records = read_records_union(tracks, TrackRecord)
    label = ", ".join(tracks)
    if not records:
        raise DataError("holds no tracks", label)
    manifest = {v.id: v for v in resolve_videos(videos)}
    by_video: dict[str, list[TrackRecord]] = {}
    unknown: dict[str, list[str]] = {}  # --keep-going: video id -> its tracks
    for r in records:
        if r.video_id not in manifest and keep_going:
            unknown.setdefault(r.video_id, []).append(r.id)
            continue
        if r.video_id not in manifest:
            raise DataError(
                f"track {r.id!r} is of video {r.video_id!r}, which is not in the manifest",
                label,
                "pass the manifest the tracks were made from",
            )
        by_video.setdefault(r.video_id, []).append(r)
    tasks = [
        CropTask(vid, manifest[vid].path, tuple(ts), params, label) for vid, ts in by_video.items()
    ]
    tasks = select_shard(tasks, parse_shard_option(shard), key=lambda t: t.video_id)
    failures = [
        {"video_id": vid, "tracks": ids, "error": "not in the manifest"}
        for vid, ids in select_shard(
            sorted(unknown.items()), parse_shard_option(shard), key=lambda u: u[0]
        )
    ]

    k = 2 if pairs else per_track
    expected = sum(min(k, len(r.frames)) for t in tasks for r in t.tracks)
    check_free_space(output, projected_bytes(expected, size), f"{expected} crops")
    ids = [t.video_id for t in tasks]
    schema = "vcl.crops/1"
    with StoreWriter(output, schema, params.to_json(), None, overwrite, groups=ids) as writer:
        labelled = any(r.label for r in records)
        writer.define_columns(columns_spec(size, labelled), chunk_rows={"image": CHUNK_SAMPLES})
        todo = [t for t in tasks if t.video_id not in writer.done_groups]
        if len(todo) < len(tasks):
            log.info("resuming: %d of %d videos already done", len(tasks) - len(todo), len(tasks))
        if keep_going:
            results = parallel_map(try_crop_video, todo, workers)
        else:  # the first failure stops the run with its own error
            results = ((cols, None) for cols in parallel_map(crop_video, todo, workers))
        for task, (cols, error) in track(
            zip(todo, results, strict=True), "cropping", total=len(todo), unit="videos"
        ):
            if cols is None:
                log.warning("skipped video %s: %s", task.video_id, error)
                ids = [t.id for t in task.tracks]
                failures.append({"video_id": task.video_id, "tracks": ids, "error": error or ""})
                continue
            if not labelled:
                del cols["label"]
            writer.append_group(task.video_id, **cols)
        writer.set_attrs(
            size=size, chunk_samples=CHUNK_SAMPLES, failed=[f["video_id"] for f in failures]
        )
    n_rows = Store(output, kind="crops").n_rows
    total = store_bytes(output)
    log.info(
        "wrote %d crops to %s: %.1f MiB (%.0f KiB a crop)",
        n_rows,
        output,
        total / 2**20,
        total / 1024 / max(n_rows, 1),
    )
    if failures:
        import json
        import sys

        for failure in failures:
            sys.stderr.write(json.dumps(failure) + "\n")
        n = sum(len(f["tracks"]) for f in failures)
        log.error("%d tracks of %d videos skipped (listed above)", n, len(failures))
        raise typer.Exit(ExitCode.SKIPPED)


EXAMPLES = [
    (
        "ODCT's samples: 10 crops of 224×224 per track:",
        "vcl crops tracks.jsonl --videos videos.jsonl -o crops.zarr --per-track 10 --size 224",
    ),
    (
        "Query / tracked patch pairs of KCF tracks, with 20 % context:",
        "vcl crops pairs.jsonl --videos videos.jsonl -o pairs.zarr --pairs --context 0.2",
    ),
]
