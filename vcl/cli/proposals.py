"""vcl proposals: class-agnostic object proposals for every frame, and their evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vcl.cli.common import (
    Overwrite,
    Seed,
    Shard,
    Videos,
    Workers,
    command_group,
    parse_number_list,
    report_json,
    vcl_command,
)
from vcl.errors import ExitCode

HELP = """Class-agnostic object proposals for every (sampled) frame.

Methods: edgeboxes (default; ODCT), selective-search, motion (moving regions,
after Wang & Gupta), bing (with --bing-model). `vcl proposals VIDEOS -o p.zarr`
runs `run`; `vcl proposals eval p.zarr --gt gt_tracks.jsonl` measures recall."""

app = command_group(HELP)

_EB = "EdgeBoxes: "
_MO = "motion: "
# Parameters that only one --method reads: setting one for another method is an error.
_METHOD_OPTIONS = {
    "edgeboxes": (
        "edge_model", "edge_sigma", "edge_gain", "alpha", "beta", "eta", "min_score",
        "edge_min_mag", "edge_merge_thr", "cluster_min_mag", "max_aspect_ratio", "gamma",
        "kappa",
    ),
    "selective-search": ("mode",),
    "motion": (
        "motion_threshold", "min_moving", "max_moving", "diff_threshold", "flow_preset",
        "keypoints",
    ),
    "bing": ("bing_model",),
}  # fmt: skip


def _refuse_other_methods_options(ctx: typer.Context, method: str) -> None:
    """Exit 2 naming the options given on the command line that ``method`` would ignore."""
    from vcl.errors import UsageError

    given = [
        (name, owner)
        for owner, names in _METHOD_OPTIONS.items()
        if owner != method
        for name in names
        if (source := ctx.get_parameter_source(name)) is not None
        and source.name in ("COMMANDLINE", "ENVIRONMENT")
    ]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name, _ in given)
        owners = ", ".join(dict.fromkeys(owner for _, owner in given))
        one = len(given) == 1
        raise UsageError(
            f"{'an option' if one else 'options'} of --method {owners}, not of {method}",
            flags,
            f"leave {'it' if one else 'them'} out or pick that method",
        )


@app.command("run")
@vcl_command
def run(
    ctx: typer.Context,
    videos: Videos,
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="The proposals store to write (.zarr).", show_default=False
        ),
    ],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="edgeboxes (EdgeBoxes on thinned gradient edges, or SED edges with "
            "--edge-model), selective-search, motion (boxes of regions moving against the "
            "camera) or bing (needs --bing-model).",
        ),
    ] = "edgeboxes",
    max_side: Annotated[
        int,
        typer.Option(
            "--max-side", min=0, help="Resize frames so the longer side is at most this (0: keep)."
        ),
    ] = 600,
    max_boxes: Annotated[
        int, typer.Option("--max-boxes", min=1, help="Most proposals per frame before NMS.")
    ] = 300,
    nms_iou: Annotated[
        float,
        typer.Option("--nms-iou", min=0.0, max=1.0, help="Greedy NMS IoU threshold (1: no NMS)."),
    ] = 0.7,
    min_area: Annotated[
        float,
        typer.Option(
            "--min-area",
            min=0.0,
            help="Drop boxes smaller than this many px² at the --max-side scale (a frame "
            "smaller than --max-side gets a proportionally smaller threshold).",
        ),
    ] = 10000.0,
    stride: Annotated[
        int, typer.Option("--stride", min=1, help="Propose on every n-th frame (0, n, 2n, ...).")
    ] = 1,
    edge_model: Annotated[
        Path | None,
        typer.Option(
            "--edge-model",
            metavar="MODEL.yml.gz",
            help=_EB + "OpenCV structured-forest edge model to use instead of gradient edges.",
        ),
    ] = None,
    edge_sigma: Annotated[
        float,
        typer.Option("--edge-sigma", min=0.0, help=_EB + "Gaussian blur (px) before gradients."),
    ] = 1.0,
    edge_gain: Annotated[
        float,
        typer.Option(
            "--edge-gain", min=0.0, help=_EB + "edge strength = min(1, gain × gradient magnitude)."
        ),
    ] = 5.0,
    alpha: Annotated[
        float, typer.Option("--alpha", help=_EB + "step size of the sliding-window search.")
    ] = 0.65,
    beta: Annotated[float, typer.Option("--beta", help=_EB + "its own NMS IoU threshold.")] = 0.75,
    eta: Annotated[float, typer.Option("--eta", help=_EB + "adaptation rate of beta.")] = 1.0,
    min_score: Annotated[
        float, typer.Option("--min-score", help=_EB + "drop boxes scoring below this.")
    ] = 0.01,
    edge_min_mag: Annotated[
        float, typer.Option("--edge-min-mag", help=_EB + "ignore edges weaker than this.")
    ] = 0.1,
    edge_merge_thr: Annotated[
        float, typer.Option("--edge-merge-thr", help=_EB + "edge-group orientation merge limit.")
    ] = 0.5,
    cluster_min_mag: Annotated[
        float, typer.Option("--cluster-min-mag", help=_EB + "least magnitude of an edge group.")
    ] = 0.5,
    max_aspect_ratio: Annotated[
        float, typer.Option("--max-aspect-ratio", help=_EB + "largest box aspect ratio.")
    ] = 3.0,
    gamma: Annotated[float, typer.Option("--gamma", help=_EB + "affinity sensitivity.")] = 2.0,
    kappa: Annotated[float, typer.Option("--kappa", help=_EB + "scale sensitivity.")] = 1.5,
    mode: Annotated[
        str, typer.Option("--mode", help="selective-search: fast or quality strategies.")
    ] = "fast",
    motion_threshold: Annotated[
        float,
        typer.Option(
            "--motion-threshold", min=0.0, help=_MO + "px of residual flow for a pixel to move."
        ),
    ] = 0.5,
    min_moving: Annotated[
        float,
        typer.Option(
            "--min-moving",
            min=0.0,
            max=1.0,
            help=_MO + "skip a frame where fewer of the tracked points move (noise).",
        ),
    ] = 0.25,
    max_moving: Annotated[
        float,
        typer.Option(
            "--max-moving",
            min=0.0,
            max=1.0,
            help=_MO + "skip a frame where more of the tracked points move (camera motion).",
        ),
    ] = 0.75,
    diff_threshold: Annotated[
        float,
        typer.Option(
            "--diff-threshold",
            min=0.0,
            help=_MO + "a pixel changed when it differs from both camera-aligned neighbour "
            "frames by more than this (0-255, any colour channel); its regions are boxed "
            "too (0: flow regions only).",
        ),
    ] = 16.0,
    flow_preset: Annotated[
        str, typer.Option("--flow-preset", help=_MO + "DIS flow preset: ultrafast, fast, medium.")
    ] = "medium",
    keypoints: Annotated[
        str, typer.Option("--keypoints", help=_MO + "orb or sift matches for the homography.")
    ] = "orb",
    bing_model: Annotated[
        Path | None,
        typer.Option(
            "--bing-model",
            metavar="DIR",
            help="bing: folder with the trained ObjNessB2W8MAXBGR.*.yml.gz files (and the "
            "HSV and I ones, if any: OpenCV fuses every colour space it finds).",
        ),
    ] = None,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going",
            help="Skip videos that fail, list them as JSONL on stderr, finish the store, exit 3.",
        ),
    ] = False,
    seed: Seed = 0,
    workers: Workers = 1,
    shard: Shard = None,
    overwrite: Overwrite = False,
) -> None:
    """Class-agnostic object proposals for every (sampled) frame.

    Writes boxes (xyxy, source-frame pixels) with a score and a frame index, one group
    per video, to a vcl.proposals/1 store. Frames are resized to --max-side; boxes
    below --min-area are dropped, the --max-boxes best go to NMS at --nms-iou (ODCT's
    defaults: 600 px, 10,000 px², 300 boxes). Methods: edgeboxes scores windows by the
    edge groups they enclose (Zitnick & Dollár 2014) on a thinned colour-gradient edge
    map (or a structured-forest one with --edge-model); selective-search ranks the
    regions of a merge hierarchy (Uijlings et al. 2013); motion boxes regions whose
    flow, after removing the camera's homography, exceeds --motion-threshold towards
    both neighbouring frames, skipping frames where fewer than --min-moving or more than
    --max-moving of the tracked points move (Wang & Gupta 2015), and regions that
    changed by more than --diff-threshold against both camera-aligned neighbours
    (three-frame differencing), scored by motion energy times the fraction of the box
    that moves; bing is BING objectness (Cheng et al. 2014). Resumable per video.
    """
    import functools
    import sys

    from vcl.cli.common import parse_shard_option
    from vcl.console import log, track
    from vcl.io.sources import resolve_videos
    from vcl.io.store import StoreWriter
    from vcl.parallel import parallel_map, select_shard
    from vcl.proposals import (
        COLUMNS,
        SCHEMA,
        ProposalConfig,
        VideoTask,
        try_process_video,
    )
    from vcl.proposals.edgeboxes import EdgeBoxesParams, EdgeParams
    from vcl.proposals.moving import MotionParams

    config = ProposalConfig(
        method=method,
        max_side=max_side,
        max_boxes=max_boxes,
        nms_iou=nms_iou,
        min_area=min_area,
        stride=stride,
        seed=seed,
        edge_model=None if edge_model is None else str(edge_model),
        edges=EdgeParams(sigma=edge_sigma, gain=edge_gain),
        edgeboxes=EdgeBoxesParams(
            alpha=alpha,
            beta=beta,
            eta=eta,
            min_score=min_score,
            max_boxes=max_boxes,
            edge_min_mag=edge_min_mag,
            edge_merge_thr=edge_merge_thr,
            cluster_min_mag=cluster_min_mag,
            max_aspect_ratio=max_aspect_ratio,
            gamma=gamma,
            kappa=kappa,
        ),
        ss_mode=mode,
        motion=MotionParams(
            threshold=motion_threshold,
            min_moving=min_moving,
            max_moving=max_moving,
            diff_threshold=diff_threshold,
            flow_preset=flow_preset,
            detector=keypoints,
        ),
        bing_model=None if bing_model is None else str(bing_model),
    )
    if keypoints not in ("orb", "sift"):
        from vcl.errors import UsageError

        raise UsageError("must be orb or sift", "--keypoints")
    from vcl.proposals import METHODS

    if method in METHODS:
        _refuse_other_methods_options(ctx, method)
    config.validate()
    if method == "bing":
        from vcl.proposals.bing import COLOUR_SPACES, check_model

        spaces = check_model(str(bing_model))
        absent = [s for s in COLOUR_SPACES if s not in spaces]
        log.info(
            "BING colour spaces: %s%s",
            ", ".join(spaces),
            f" ({', '.join(absent)} absent)" * bool(absent),
        )
    records = select_shard(resolve_videos(videos), parse_shard_option(shard), lambda r: r.id)
    from vcl.io.space import check_free_space, predict_videos

    frames, _ = predict_videos([r.path for r in records])
    row_bytes = 24  # frame int32, box 4 float32, score float32 (COLUMNS)
    check_free_space(output, frames / stride * max_boxes * row_bytes, "the proposals")
    failures: list[dict[str, str]] = []
    empty: list[str] = []  # videos of this run with no box on any frame
    ids = [r.id for r in records]
    with StoreWriter(output, SCHEMA, config.params(), seed, overwrite, groups=ids) as writer:
        writer.define_columns(COLUMNS)
        todo = [VideoTask(r.id, r.path) for r in records if r.id not in writer.done_groups]
        if writer.resumed:
            log.info(
                "resuming: %d of %d videos already done", len(records) - len(todo), len(records)
            )
        known = dict(writer.group.attrs.get("videos", {}))
        work = functools.partial(try_process_video, config=config)
        results = parallel_map(work, todo, workers)
        for video_id, result, error in track(
            results, f"proposals ({method})", total=len(todo), unit="videos"
        ):
            if result is None:
                if not keep_going:
                    from vcl.errors import worker_error

                    raise worker_error(error, "or pass --keep-going to skip it")
                log.warning("skipped %s: %s", video_id, error)
                failures.append({"video_id": video_id, "error": error or ""})
                continue
            known[video_id] = result.info
            if len(result.frame) == 0 and not _explained(result.info):
                empty.append(video_id)
            writer.set_attrs(videos=known)  # before the rows: a rerun redoes it if lost
            writer.append_group(video_id, frame=result.frame, box=result.box, score=result.score)
        writer.set_attrs(failed=[f["video_id"] for f in failures])
    _warn_rejected(known, config)
    _warn_empty(empty, len(todo) - len(failures), config)
    done = len(records) - len(failures)
    log.info("wrote %s (%d video%s)", output, done, "" if done == 1 else "s")
    if failures:
        for failure in failures:
            sys.stderr.write(json.dumps(failure) + "\n")
        log.error("%d of %d videos failed (listed above)", len(failures), len(records))
        raise typer.Exit(ExitCode.SKIPPED)


@app.command("eval")
@vcl_command
def evaluate(
    store: Annotated[
        list[Path],
        typer.Argument(
            metavar="PROPOSALS.zarr...",
            help="A proposals store (several: the shards of one run, read as their merge).",
            show_default=False,
        ),
    ],
    gt: Annotated[
        Path,
        typer.Option(
            "--gt",
            metavar="TRACKS.jsonl",
            help="Ground-truth tracks (vcl.track/1 JSONL, e.g. vcl synth's gt_tracks.jsonl).",
            show_default=False,
        ),
    ],
    top: Annotated[
        str, typer.Option("--top", help="Comma-separated k: recall of the k best proposals.")
    ] = "10,100,300",
    iou: Annotated[
        str, typer.Option("--iou", help="Comma-separated IoU thresholds for recall.")
    ] = "0.5,0.7",
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="Which tracks count: any, object or distractor (their 'kind' field; "
            "tracks without one are objects).",
        ),
    ] = "any",
    min_visible: Annotated[
        float,
        typer.Option(
            "--min-visible",
            min=0.0,
            max=1.0,
            help="Ignore boxes whose per-frame 'visible' fraction is below this.",
        ),
    ] = 0.0,
    skip_empty: Annotated[
        bool,
        typer.Option(
            "--skip-empty",
            help="Leave out frames that got no proposal (e.g. rejected motion frames) "
            "instead of counting their boxes as missed.",
        ),
    ] = False,
) -> None:
    """Recall and average best overlap of proposals against ground-truth boxes.

    Prints JSON on stdout: recall at each --iou threshold for the --top k best
    proposals of each frame, and the average best overlap (ABO), over the
    ground-truth boxes of the frames the proposals were made for.
    """
    from vcl.errors import MissingInputError, UsageError
    from vcl.proposals.evaluate import KINDS
    from vcl.proposals.evaluate import evaluate as run_eval

    tops = parse_number_list(top, "--top", int, 1, example="10,100,300")
    thresholds = parse_number_list(iou, "--iou", float, 1e-9, 1.0, example="0.5,0.7")
    if kind not in KINDS:
        raise UsageError(f"must be one of {', '.join(KINDS)}", "--kind")
    if str(gt) != "-" and not gt.exists():  # "-": stdin
        raise MissingInputError("no such ground-truth file", gt)
    from vcl.proposals.evaluate import load_ground_truth

    truth = load_ground_truth(gt, kind, min_visible)  # once: stdin reads once
    store_input = store[0] if len(store) == 1 else store
    report = run_eval(store_input, truth, tops, thresholds, kind, min_visible, skip_empty)
    report["gt"] = str(gt)
    if report["videos"] == 0:  # recall of nothing: all null, which read as a result
        _no_shared_video(store, gt, sorted(truth), kind, min_visible)
    if report["videos_missing"]:
        from vcl.console import log

        log.warning(
            "%d of %d ground-truth videos in %s are not in the proposals; scored the others",
            report["videos_missing"], report["videos"] + report["videos_missing"], gt,
        )  # fmt: skip
    typer.echo(report_json(report, indent=2))


def _no_shared_video(
    store: list[Path], gt: Path, truth: list[str], kind: str, min_visible: float
) -> None:
    """Raise the error for proposals and ground truth (``truth``: its video ids)
    without a video in common."""
    from vcl.errors import DataError, first_ids
    from vcl.io.union import open_stores

    if not truth:
        raise DataError(
            f"holds no ground-truth box to score (--kind {kind}, --min-visible {min_visible:g})",
            gt,
        )
    ids = sorted(open_stores(store, kind="proposals", version=1).group_ids)
    raise DataError(
        f"shares no video id with {gt} (video ids here: {first_ids(ids)}; "
        f"there: {first_ids(truth)})",
        ", ".join(map(str, store)),
        "score proposals of the videos the ground truth annotates",
    )


def _warn_rejected(videos: dict[str, dict], config: Any) -> None:
    """One line when the motion method's moving-points test emptied frames: without it
    a user sees only a store with few or no boxes."""
    from vcl.console import log

    sampled = sum(int(v.get("sampled", 0)) for v in videos.values())
    rejected = sum(int(v.get("rejected", 0)) for v in videos.values())
    if rejected:
        motion = config.motion
        log.warning(
            "%d of %d sampled frames have no proposals: fewer than --min-moving %g or more "
            "than --max-moving %g of their points moved (Wang & Gupta's frame test; "
            "--min-moving 0 --max-moving 1 turns it off)",
            rejected, sampled, motion.min_moving, motion.max_moving,
        )  # fmt: skip


def _explained(info: dict) -> bool:
    """Whether another warning already tells why a video got no box: its frames are too
    small for flow (named as they come), or the motion frame test rejected every one
    (`_warn_rejected`)."""
    rejected = info.get("rejected", 0)
    return bool(info.get("too_small_for_flow")) or (rejected > 0 and rejected == info["sampled"])


def _warn_empty(empty: list[str], processed: int, config: Any) -> None:
    """One line counting the videos of this run that got no box on any frame: their
    group is written (empty), and nothing else says so before `vcl track` finds no track."""
    if not empty:
        return
    from vcl.console import log
    from vcl.errors import first_ids

    why = "nothing moved against the camera" if config.method == "motion" else "no box found"
    log.warning(
        "%d of %d videos got no proposal on any frame: %s (%s, or every box was under "
        "--min-area %g)",
        len(empty), processed, first_ids(empty), why, config.min_area,
    )  # fmt: skip


EXAMPLES = [
    (
        "EdgeBoxes proposals (ODCT's settings) for a set of synthetic videos, on all cores:",
        "vcl proposals data/videos.jsonl -o proposals.zarr --workers 0",
    ),
    (
        "Moving regions on every second frame of a video:",
        "vcl proposals clip.mp4 -o moving.zarr --method motion --stride 2",
    ),
    (
        "Selective search in quality mode, shard 0 of 4 of a manifest:",
        "vcl proposals videos.jsonl -o ss-0.zarr --method selective-search --mode quality "
        "--shard 0/4",
    ),
    (
        "Recall of the proposals of moving synthetic objects, as JSON:",
        "vcl proposals eval proposals.zarr --gt data/gt_tracks.jsonl --kind object",
    ),
]
