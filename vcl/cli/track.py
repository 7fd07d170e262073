"""vcl track: link proposals into object tracks, mine moving patches, import GT tracks."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from vcl.cli.common import (
    Overwrite,
    Shard,
    Workers,
    command_group,
    report_json,
    vcl_command,
)
from vcl.errors import ExitCode

app = command_group(
    "Link proposals into object tracks.\n\n"
    "`vcl track PROPOSALS --videos V -o tracks.jsonl` runs the `run` subcommand (which may "
    "be left out: see `vcl track run --help`): --method iou (ODCT's tracker), kcf (Wang & "
    "Gupta's patch pairs) or gt (import ground truth); `vcl track eval TRACKS --gt GT` "
    "reports coverage, purity, fragmentation and mean length. Both take --quiet, --verbose "
    "and --config FILE.toml."
)


@app.command("run")
@vcl_command
def run(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT...",
            help="iou: the proposals store (vcl.proposals/1; several stores, the shards of "
            "one run, read as their merge); kcf: videos, folders or manifests; gt: "
            "gt_tracks.jsonl or an ImageNet VID annotation folder.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Tracks JSONL to write ('-': stdout).")
    ] = "-",
    videos: Annotated[
        list[str] | None,
        typer.Option(
            "--videos",
            help="Videos manifest (or video paths) the proposals were made from (iou; repeatable).",
        ),
    ] = None,
    method: Annotated[
        str,
        typer.Option("--method", help="iou (ODCT's tracker), kcf (Wang & Gupta) or gt."),
    ] = "iou",
    iou: Annotated[
        float, typer.Option("--iou", help="iou: accept a match when IoU > this (θ).")
    ] = 0.35,
    ttl: Annotated[
        int,
        typer.Option(
            "--ttl",
            min=0,
            help="iou: frames a track survives unmatched (frames proposed on, with or "
            "without boxes).",
        ),
    ] = 3,
    interpolate: Annotated[
        bool,
        typer.Option("--interpolate", help="iou: fill frames a track missed by interpolation."),
    ] = False,
    min_len: Annotated[
        int, typer.Option("--min-len", min=1, help="iou: shortest track kept (l, boxes).")
    ] = 40,
    max_len: Annotated[
        int, typer.Option("--max-len", min=1, help="iou: longest track kept (L, boxes).")
    ] = 100,
    long: Annotated[
        str,
        typer.Option(
            "--long",
            help="iou: a track longer than L is dropped (ODCT) or split into equal pieces.",
        ),
    ] = "drop",
    top: Annotated[
        int, typer.Option("--top", min=0, help="iou: best tracks kept per video (0: all).")
    ] = 15,
    flow: Annotated[
        bool,
        typer.Option("--flow/--no-flow", help="iou: register boxes with DIS optical flow."),
    ] = True,
    flow_side: Annotated[
        int,
        typer.Option("--flow-side", min=16, help="iou: longer frame side flow is computed at."),
    ] = 320,
    dis_preset: Annotated[
        str, typer.Option("--dis-preset", help="iou: DIS preset (ultrafast, fast, medium).")
    ] = "fast",
    registration: Annotated[
        str,
        typer.Option(
            "--registration",
            help="iou: box shift from the flow: median (ODCT) or fb (Kalal's Median-Flow: "
            "forward-backward checked points; a second flow per frame).",
        ),
    ] = "median",
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="iou: the flow shift competes with the track's own motion and no move; the "
            "best box-content match (NCC) wins. --no-verify: the flow shift only (ODCT).",
        ),
    ] = True,
    confirm: Annotated[
        int,
        typer.Option(
            "--confirm",
            min=0,
            help="iou: new tracks stay tentative until this many matches (matched after the "
            "others, ended at their first miss; SORT). 0: every track is equal (ODCT).",
        ),
    ] = 3,
    birth: Annotated[
        float,
        typer.Option(
            "--birth",
            min=0.0,
            max=1.0,
            help="iou: an unmatched proposal overlapping a matched (or better unmatched) one "
            "by IoU above this starts no track: one new track per object. 0 (with "
            "--birth-nest 0 --group 0): every unmatched proposal starts one (ODCT).",
        ),
    ] = 0.5,
    birth_nest: Annotated[
        float,
        typer.Option(
            "--birth-nest",
            min=0.0,
            max=1.0,
            help="iou: nor does one whose intersection with a matched proposal exceeds this "
            "share of the smaller box's area (a part of a tracked object, or a box holding "
            "it). 0: off (ODCT).",
        ),
    ] = 0.7,
    group: Annotated[
        float,
        typer.Option(
            "--group",
            min=0.0,
            max=1.0,
            help="iou: a proposal holding the boxes of two established tracks apart from each "
            "other (each inside by more than this share) and fitting their joint box (IoU > "
            "0.5) is their group, as two objects moving alike give: neither takes it unless "
            "it fits one (IoU > 0.5), it starts no track, and they follow their registration "
            "through it while their box content still matches (NCC > 0.5; needs flow and "
            "--verify). 0: off (ODCT).",
        ),
    ] = 0.7,
    length: Annotated[
        int, typer.Option("--length", min=1, help="kcf: frames each patch is tracked.")
    ] = 30,
    box_size: Annotated[
        int,
        typer.Option(
            "--box-size", min=8, help="kcf: patch side for a 448-px shorter side (scaled)."
        ),
    ] = 227,
    moving_px: Annotated[
        float,
        typer.Option("--moving-px", help="kcf: residual flow (px) above which a point moves."),
    ] = 0.5,
    min_moving: Annotated[
        float,
        typer.Option("--min-moving", help="kcf: skip frames with fewer moving points (fraction)."),
    ] = 0.25,
    max_moving: Annotated[
        float,
        typer.Option("--max-moving", help="kcf: skip frames with more moving points (fraction)."),
    ] = 0.75,
    max_side: Annotated[
        int, typer.Option("--max-side", min=32, help="kcf: longer frame side to work at.")
    ] = 600,
    keep_class: Annotated[
        bool, typer.Option("--keep-class", help="gt: keep the object class as 'label'.")
    ] = False,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going", help="Skip bad videos with a warning; exit 3 at the end if any."
        ),
    ] = False,
    workers: Workers = 1,
    shard: Shard = None,
    overwrite: Overwrite = False,
) -> None:
    """Link proposals into object tracks.

    Writes one vcl.track/1 JSON line per track.

    iou (default, ODCT): every active track's last box is shifted by the median DIS
    flow inside it (checked against the track's own motion by box content unless
    --no-verify), then matched greedily to the next frame's proposals by IoU > θ (new
    tracks after established ones until --confirm matches; an unmatched proposal starts
    a track unless it overlaps a matched one by IoU > --birth or nests with one,
    --birth-nest);
    tracks live TTL frames unmatched (a frame proposed on without a box is one), or
    while a proposal that is their joint box with another track lasts and their box
    content still matches (--group);
    tracks with l..L boxes are kept (--long drop or
    split), the --top best per video by mean objectness. kcf (Wang & Gupta): the box
    holding most moving points (camera motion removed), tracked by KCF for --length
    frames; first and last boxes are a (query, tracked) pair. gt: import ground truth.
    Output is written per video: a rerun resumes from NAME.partial. With -o - the tracks
    reach stdout only once every video is done (as vcl videos writes): a run that fails
    writes none, so the next stage of a pipe is not handed part of them as the whole.
    """
    from vcl.cli.common import parse_shard_option
    from vcl.console import log, track
    from vcl.errors import DataError, UsageError, worker_error
    from vcl.io.sources import resolve_videos
    from vcl.parallel import parallel_map, select_shard
    from vcl.track import TrackWriter, VideoTask, process_video

    if method not in ("iou", "kcf", "gt"):
        raise UsageError(f"must be iou, kcf or gt, got {method!r}", "--method")
    if method == "gt":
        from vcl.track.gt import import_tracks

        if len(inputs) != 1:
            raise UsageError("--method gt takes one GT file or annotation folder")
        records = import_tracks(inputs[0], keep_class)
        by_video: dict[str, list] = {}
        for r in records:
            by_video.setdefault(r.video_id, []).append(r)
        ids = select_shard(list(by_video), parse_shard_option(shard), key=str)
        params = {"method": "gt", "keep_class": keep_class}
        writer = TrackWriter(output, params, overwrite, groups=ids)
        for vid in ids:
            if vid not in writer.done:
                writer.write_video(vid, by_video[vid])
        writer.finish()
        log.info("imported %d ground-truth tracks", writer.count)
        return

    if method == "iou":
        from vcl.track.iou import IouParams

        params_obj = IouParams(iou, ttl, min_len, max_len, long, top, interpolate, flow,
                               flow_side, dis_preset, registration, verify, confirm,
                               birth, birth_nest, group)  # fmt: skip
    else:
        from vcl.track.kcf import KcfParams

        params_obj = KcfParams(length, box_size, moving_px, min_moving, max_moving, max_side)
    try:
        params_obj.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    params = params_obj.to_json()

    unknown: list[str] = []  # videos of the proposals missing from the manifest
    if method == "iou":
        from vcl.io.union import open_stores

        if not videos:
            raise UsageError("--method iou needs --videos (the manifest of the proposals)")
        store = open_stores(inputs, kind="proposals", version=1)
        if not store.group_ids:
            raise DataError("the proposals store holds no videos", ", ".join(inputs))
        manifest = {v.id: v for v in resolve_videos(videos)}
        # only this shard's: another shard's missing video is that shard's failure
        in_shard = select_shard(store.group_ids, parse_shard_option(shard), key=str)
        unknown = [g for g in in_shard if g not in manifest]

        def source(vid: str) -> str:  # the input holding a video's proposals
            return str(store.store_of(vid).path) if hasattr(store, "store_of") else inputs[0]

        if unknown and not keep_going:
            raise DataError(
                f"proposals for video {unknown[0]!r}, which is not in the videos manifest",
                source(unknown[0]),
                "pass the manifest the proposals were made from (or --keep-going)",
            )
        ids = [g for g in store.group_ids if g in manifest]
        tasks = [VideoTask(v, manifest[v].path, "iou", params, source(v)) for v in ids]
    else:
        tasks = [VideoTask(v.id, v.path, "kcf", params) for v in resolve_videos(inputs)]

    tasks = select_shard(tasks, parse_shard_option(shard), key=lambda t: t.video_id)
    ids = [t.video_id for t in tasks]
    writer = TrackWriter(output, {"method": method, **params}, overwrite, groups=ids)
    todo = [t for t in tasks if t.video_id not in writer.done]
    if len(todo) < len(tasks):
        log.info("resuming: %d of %d videos already done", len(tasks) - len(todo), len(tasks))
    failures: list[dict[str, str]] = []
    if method == "iou":
        for vid in unknown:
            failures.append({"video_id": vid, "error": "not in the videos manifest"})
    try:
        results = parallel_map(process_video, todo, workers)
        for result in track(results, f"tracking ({method})", total=len(todo), unit="videos"):
            if result.error is not None:
                if not keep_going:
                    raise worker_error(result.error, "or pass --keep-going to skip it")
                failures.append({"video_id": result.video_id, "error": str(result.error)})
                continue
            writer.write_video(result.video_id, result.tracks)
    except BaseException:
        writer.close()
        raise
    writer.finish()
    tracked = len(tasks) - (len(failures) - len(unknown))  # unknown videos are no task
    log.info("wrote %d tracks of %d videos", writer.count, tracked)
    if method == "kcf" and writer.count == 0 and len(tasks) > len(failures):
        log.warning(
            "no kcf track: a patch starts only on frames where some points move, between "
            "--min-moving %g and --max-moving %g of them (Wang & Gupta's test; 0 and 1 turn "
            "it off)",
            min_moving, max_moving,
        )  # fmt: skip
    if failures:  # one JSON line each on stderr, as proposals, idt and crops list them
        for failure in failures:
            sys.stderr.write(json.dumps(failure) + "\n")
        log.error("%d of %d videos failed (listed above)", len(failures), len(tasks) + len(unknown))
        raise typer.Exit(ExitCode.SKIPPED)


@app.command("eval")
@vcl_command
def evaluate(
    tracks: Annotated[
        list[str],
        typer.Argument(
            metavar="TRACKS...",
            help="Predicted tracks JSONL ('-': stdin); several files (shards) read as one.",
            show_default=False,
        ),
    ],
    gt: Annotated[
        str,
        typer.Option(
            "--gt", help="Ground-truth tracks: a tracks JSONL or an ImageNet VID annotation folder."
        ),
    ],
    min_len: Annotated[
        int,
        typer.Option(
            "--min-len", min=1, help="Ground-truth tracks shorter than this are not counted."
        ),
    ] = 40,
    iou: Annotated[
        float,
        typer.Option(
            "--iou",
            help="Mean IoU a predicted track must reach on a GT object, in (0, 1].",
        ),
    ] = 0.5,
) -> None:
    """Score tracks against ground truth; prints one JSON object.

    coverage: fraction of GT tracks with >= --min-len boxes followed by a predicted
    track with mean IoU >= --iou over their shared frames; purity: mean fraction of a
    predicted track's boxes on its majority GT object; fragmentation: predicted tracks
    per covered GT object (those it is the majority object of; uncovered GT objects do
    not count); mean_length: mean boxes per predicted track. A GT video
    without tracks counts as missed, tracks of a video without GT as impure (a warning
    counts such videos); files sharing no video are an error.
    """

    from vcl.console import log
    from vcl.errors import DataError, UsageError
    from vcl.io.manifest import TrackRecord
    from vcl.io.union import read_records_union
    from vcl.track.evaluate import evaluate as score
    from vcl.track.gt import import_tracks

    if not 0.0 < iou <= 1.0:
        raise UsageError(f"must be in (0, 1], got {iou:g}", "--iou")
    predicted = read_records_union(tracks, TrackRecord)
    truth = import_tracks(gt)
    for records, name in ((predicted, ", ".join(map(str, tracks))), (truth, str(gt))):
        if not records:
            raise DataError("holds no tracks", name, "nothing to score")
    report = score(predicted, truth, min_len, iou, names=(", ".join(tracks), gt))
    if report["videos_only_predicted"] or report["videos_only_gt"]:
        log.warning(
            "%d videos are in both files; %d only in the tracks (their tracks count as "
            "impure), %d only in %s (their objects count as missed)",
            report["videos"], report["videos_only_predicted"], report["videos_only_gt"], gt,
        )  # fmt: skip
    typer.echo(report_json(report))


EXAMPLES = [
    (
        "ODCT tracks from EdgeBoxes proposals, 15 best per video:",
        "vcl track run proposals.zarr --videos videos.jsonl -o tracks.jsonl",
    ),
    (
        "Without flow registration, splitting tracks longer than 100 boxes:",
        "vcl track run p.zarr --videos videos.jsonl --no-flow --long split -o tracks.jsonl",
    ),
    (
        "ODCT's tracker exactly as published (no motion check, no tentative tracks):",
        "vcl track run p.zarr --videos videos.jsonl --no-verify --confirm 0 --birth 0 "
        "--birth-nest 0 --group 0 -o tracks.jsonl",
    ),
    (
        "Wang & Gupta patch pairs tracked by KCF for 30 frames:",
        "vcl track run --method kcf videos.jsonl -o pairs.jsonl",
    ),
    (
        "Ground-truth tracks of ImageNet VID annotations, classes dropped:",
        "vcl track run --method gt ILSVRC2015/Annotations/VID/train -o gt.jsonl",
    ),
    (
        "Coverage, purity and fragmentation of tracks against vcl synth ground truth:",
        "vcl track eval tracks.jsonl --gt data/gt_tracks.jsonl --min-len 40",
    ),
]
