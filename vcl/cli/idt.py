"""vcl idt: Improved Dense Trajectories (Wang & Schmid 2013) for every video."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vcl.cli.common import Overwrite, Seed, Shard, Videos, Workers, command_group, vcl_command
from vcl.errors import ExitCode

if TYPE_CHECKING:
    from vcl.idt.pipeline import VideoJob, VideoResult

app = command_group(
    "Extract Improved Dense Trajectories from videos.\n\n"
    "`vcl idt VIDEOS -o idt.zarr` runs the extraction (the `run` subcommand, which may be "
    "left out: see `vcl idt run --help`): HOG/HOF/MBH along camera-compensated trajectories; "
    "`vcl idt convert` moves trajectories between the store and the C++ release's text "
    "format. Both take --quiet, --verbose and --config FILE.toml."
)


@app.command("run")
@vcl_command
def run(
    videos: Videos,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The idt store to write (zarr), or a folder of VIDEO_ID.txt files "
            "(--format text).",
            show_default=False,
        ),
    ],
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="zarr (the vcl.idt/1 store) or text (the C++ release's lines, and a "
            "params.json of the parameters beside them).",
        ),
    ] = "zarr",
    flow: Annotated[
        str,
        typer.Option(
            "--flow",
            help="Optical flow: farneback (the release's method and parameters) or dis "
            "(OpenCV's DIS, several times faster).",
        ),
    ] = "farneback",
    dis_preset: Annotated[
        str, typer.Option("--dis-preset", help="DIS preset: ultrafast, fast or medium.")
    ] = "fast",
    max_side: Annotated[
        int,
        typer.Option(
            "--max-side", min=0, help="Resize so the longer side is at most this (0: keep size)."
        ),
    ] = 320,
    step: Annotated[
        int, typer.Option("--step", min=1, help="W: dense-sampling grid step in pixels.")
    ] = 5,
    scales: Annotated[
        int,
        typer.Option(
            "--scales", min=1, help="Most spatial scales (fewer when a scale gets below a patch)."
        ),
    ] = 8,
    scale_stride: Annotated[
        float,
        typer.Option("--scale-stride", min=1.01, help="Each scale is 1/this of the previous."),
    ] = 1.4142135623730951,
    quality: Annotated[
        float,
        typer.Option(
            "--quality",
            min=0.0,
            max=1.0,
            help="Skip grid points whose smaller structure-tensor eigenvalue is below "
            "this × the frame's largest (homogeneous areas).",
        ),
    ] = 0.001,
    init_gap: Annotated[
        int,
        typer.Option(
            "--init-gap",
            min=1,
            help="Re-sample empty grid cells every N frames (the release, which resets its "
            "counter every frame, never re-samples with N > 1).",
        ),
    ] = 1,
    track_length: Annotated[
        int, typer.Option("--track-length", min=2, help="L: trajectory length in frames.")
    ] = 15,
    median_size: Annotated[
        int,
        typer.Option(
            "--median-size",
            help="k×k median filter on both flows (the one moving points, the compensated one "
            "of HOF/MBH/shape) at every scale: 5 the release's, 3 the IJCV paper's, 1 none.",
        ),
    ] = 5,
    min_var: Annotated[
        float,
        typer.Option(
            "--min-var", min=0.0, help="Static: both position std devs below this (px) drop it."
        ),
    ] = 1.7320508075688772,
    max_var: Annotated[
        float,
        typer.Option("--max-var", min=0.0, help="Erratic: a position std dev above this (px)."),
    ] = 50.0,
    max_dis: Annotated[
        float,
        typer.Option(
            "--max-dis",
            min=0.0,
            help="Erratic: a single step longer than this (px) and --max-step-fraction of "
            "the trajectory's length.",
        ),
    ] = 20.0,
    max_step_fraction: Annotated[
        float,
        typer.Option(
            "--max-step-fraction", min=0.0, max=1.0, help="See --max-dis (the release: 0.7)."
        ),
    ] = 0.7,
    min_camera_disp: Annotated[
        float,
        typer.Option(
            "--min-camera-disp",
            min=0.0,
            help="Camera motion: drop trajectories whose compensated steps never exceed this "
            "(px; with --compensate only).",
        ),
    ] = 1.0,
    patch_size: Annotated[
        int, typer.Option("--patch-size", min=2, help="N: descriptor patch side (px).")
    ] = 32,
    xy_cells: Annotated[
        int, typer.Option("--xy-cells", min=1, help="n_sigma: spatial cells per patch side.")
    ] = 2,
    t_cells: Annotated[
        int, typer.Option("--t-cells", min=1, help="n_tau: time cells along a trajectory.")
    ] = 3,
    epsilon: Annotated[
        float,
        typer.Option("--epsilon", min=0.0, help="Added to every histogram bin of a cell."),
    ] = 0.05,
    min_flow: Annotated[
        float,
        typer.Option(
            "--min-flow", min=0.0, help="HOF: flow of at most this length votes in the zero bin."
        ),
    ] = 0.4,
    compensate: Annotated[
        bool,
        typer.Option(
            "--compensate/--no-compensation",
            help="Camera-motion compensation (homography, warped flow for HOF/MBH/traj, "
            "camera-only trajectories removed).",
        ),
    ] = True,
    keypoints: Annotated[
        str,
        typer.Option(
            "--keypoints",
            help="Keypoints for the homography: orb or sift (the release's SURF is not in "
            "pip OpenCV).",
        ),
    ] = "orb",
    ransac_threshold: Annotated[
        float,
        typer.Option(
            "--ransac-threshold", min=0.0, help="RANSAC reprojection threshold (px) of the fit."
        ),
    ] = 1.0,
    no_humans: Annotated[
        bool,
        typer.Option(
            "--no-humans", help="Do not detect people (their matches stay in the camera fit)."
        ),
    ] = False,
    human_boxes: Annotated[
        Path | None,
        typer.Option(
            "--human-boxes",
            metavar="BOXES.jsonl",
            help='Human boxes instead of the HOG detector: lines {"video_id", "frame", '
            '"boxes": [[x0,y0,x1,y1],...]} (source pixels) or vcl track lines.',
        ),
    ] = None,
    max_per_video: Annotated[
        int,
        typer.Option(
            "--max-per-video",
            min=0,
            help="Keep a seeded uniform sample of at most K trajectories a video (0: all).",
        ),
    ] = 0,
    dtype: Annotated[
        str,
        typer.Option("--dtype", help="Descriptor blocks as float32 or float16 (zarr only)."),
    ] = "float32",
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going",
            help="Skip videos that cannot be read, list them (attrs 'failed'), exit 3 at the end.",
        ),
    ] = False,
    workers: Workers = 1,
    shard: Shard = None,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Extract Improved Dense Trajectories from videos.

    Dense points (grid step W on up to 8 scales) are tracked for L frames with
    median-filtered optical flow; static, erratic and (with compensation) camera-only
    trajectories are dropped; each survivor gets its shape (30), HOG (96), HOF (108),
    MBHx (96) and MBHy (96) from a 32×32×L volume (2×2×3 cells; per-frame histograms
    +0.05 per bin, L1-normalised then square-rooted, averaged over 5 frames per time
    cell). The camera's homography (ORB/SIFT + flow matches, RANSAC, human boxes left
    out) compensates the flow used by HOF, MBH and the shape. Writes one group per
    video (id = video id) of the vcl.idt/1 store, resumable per video; videos shorter
    than L + 1 frames give no trajectories and a warning. Header positions are in
    pixels of the resized frames, as the release reports them for the video it is
    given.

    --format text writes the release's lines unchanged (no header) and records the
    parameters in the folder's params.json: a rerun keeps existing files only when it
    matches, and refuses other parameters (or files with no params.json) unless
    --overwrite; vcl idt convert reads the block widths from it.

    Deviations from the C++ release (DenseTrackStab): ORB (or SIFT) keypoints with a
    ratio test instead of SURF (not in pip OpenCV); OpenCV's Farneback computed once
    at full size and resized to each scale instead of the release's own per-level
    Farneback; OpenCV's HOG people detector instead of precomputed boxes (boxes
    remove matches from the camera fit only, as in the release); t_pos uses the
    decoded frame count, not the container's declared one; --init-gap N > 1
    re-samples every N frames (the release never re-samples then).
    """
    import json
    import sys

    from vcl.cli.common import parse_shard_option
    from vcl.console import log, track
    from vcl.errors import UsageError
    from vcl.idt import HEADER, SCHEMA
    from vcl.idt.config import IdtConfig
    from vcl.idt.humans import read_human_boxes
    from vcl.idt.pipeline import VideoJob, try_process_video
    from vcl.io.sources import resolve_videos
    from vcl.parallel import parallel_map, select_shard

    if output_format not in ("zarr", "text"):
        raise UsageError(f"--format must be zarr or text, got {output_format!r}")
    if dtype not in ("float32", "float16"):
        raise UsageError(f"--dtype must be float32 or float16, got {dtype!r}")
    if no_humans and human_boxes is not None:
        raise UsageError("--no-humans and --human-boxes exclude each other")
    config = IdtConfig(
        step=step,
        scales=scales,
        scale_stride=scale_stride,
        quality=quality,
        init_gap=init_gap,
        track_length=track_length,
        median_size=median_size,
        min_var=min_var,
        max_var=max_var,
        max_dis=max_dis,
        max_step_fraction=max_step_fraction,
        min_camera_disp=min_camera_disp,
        patch_size=patch_size,
        xy_cells=xy_cells,
        t_cells=t_cells,
        epsilon=epsilon,
        min_flow=min_flow,
        flow=flow,
        dis_preset=dis_preset,
        compensate=compensate,
        detector=keypoints,
        ransac_threshold=ransac_threshold,
    )
    try:
        config.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    records = select_shard(resolve_videos(videos), parse_shard_option(shard), lambda r: r.id)
    boxes = read_human_boxes(human_boxes) if human_boxes is not None else {}
    if human_boxes is not None:
        _check_human_boxes(human_boxes, boxes, [r.id for r in records])
    humans = "none" if no_humans else "boxes" if human_boxes is not None else "detect"
    params = {
        **config.to_json(),
        "max_side": max_side,
        "humans": humans,
        "human_boxes": str(human_boxes) if human_boxes else None,
        "max_per_video": max_per_video,
        "dtype": dtype,
    }
    jobs = [
        VideoJob(
            r.id, r.path, config, max_side or None, humans, boxes.get(r.id), max_per_video, seed
        )
        for r in records
    ]
    if output_format == "text":
        if keep_going:
            raise UsageError("--keep-going is for --format zarr")
        text_params = {k: v for k, v in params.items() if k != "dtype"}  # zarr only
        _run_text(jobs, output, overwrite, workers, text_params, seed, config.dims)
        return

    import numpy as np

    from vcl.idt.pipeline import empty_columns
    from vcl.io.space import check_free_space, predict_videos
    from vcl.io.store import StoreWriter

    # Trajectories per frame scale with pixels and the grid step: 38.7 a frame at 320×240,
    # step 5 (the C++ release on vtest.avi, FACTS.md).
    frames, pixels = predict_videos([r.path for r in records], max_side or None)
    rows = frames * pixels * 38.7 / (320 * 240) * (5 / step) ** 2
    if max_per_video:
        rows = min(rows, max_per_video * len(records))
    columns = empty_columns(config)
    row_bytes = sum(  # descriptor blocks are stored as --dtype
        (np.dtype(dtype) if v.ndim == 2 else v.dtype).itemsize * int(np.prod(v.shape[1:]))
        for v in columns.values()
    )
    check_free_space(output, rows * row_bytes, "the trajectories")

    ids = [j.video_id for j in jobs]
    with StoreWriter(output, SCHEMA, params, seed, overwrite, groups=ids) as writer:
        spec = {}
        for name, values in empty_columns(config).items():
            block = values.ndim == 2
            spec[name] = (dtype if block else str(values.dtype), values.shape[1:])
        writer.define_columns(spec)
        info = dict(writer.group.attrs.get("videos", {}))
        todo = [j for j in jobs if j.video_id not in writer.done_groups]
        if writer.resumed:
            log.info("resuming: %d of %d videos done", len(jobs) - len(todo), len(jobs))
        results = parallel_map(try_process_video, todo, workers)
        total = 0
        failures: list[dict[str, str]] = []
        for job, result, error in track(results, "idt", total=len(todo), unit="videos"):
            if result is None:
                if not keep_going:
                    from vcl.errors import worker_error

                    raise worker_error(error, "or pass --keep-going to skip it")
                log.warning("skipped %s: %s", job.video_id, error)
                failures.append({"video_id": job.video_id, "error": error or ""})
                continue
            writer.append_group(job.video_id, **result.columns)
            info[job.video_id] = _video_info(result)
            writer.set_attrs(videos=info)
            total += result.rows
            log.debug(
                "%s: %d trajectories from %d frames", job.video_id, result.rows, result.frames
            )
        writer.set_attrs(
            header=list(HEADER),
            blocks=config.dims,
            normalisation="per-frame L1 then square root; time cells averaged",
            units="header positions and lengths in pixels of the resized frames",
            failed=[f["video_id"] for f in failures],
        )
    log.info("wrote %d trajectories from %d videos to %s", total, len(todo) - len(failures), output)
    if failures:
        for failure in failures:
            sys.stderr.write(json.dumps(failure) + "\n")
        log.error("%d of %d videos failed (listed above)", len(failures), len(jobs))
        raise typer.Exit(ExitCode.SKIPPED)


def _video_info(result: VideoResult) -> dict:
    return {
        "frames": result.frames,
        "width": result.size[0],
        "height": result.size[1],
        "resize": [float(result.resize[0]), float(result.resize[1])],
        "trajectories": result.rows,
        "candidates": result.candidates,
    }


def _run_text(
    jobs: list[VideoJob],
    output: Path,
    overwrite: bool,
    workers: int,
    params: dict,
    seed: int,
    blocks: dict[str, int],
) -> None:
    """One VIDEO_ID.txt per video, each written beside and renamed (resumable); the
    folder's params.json says what they were made with, so that a rerun with other
    parameters does not keep them as done."""
    import os

    from vcl.console import log, track
    from vcl.errors import OutputError
    from vcl.idt.pipeline import process_video
    from vcl.idt.textformat import claim_folder, write_text
    from vcl.io.store import refuse_stdout
    from vcl.parallel import parallel_map

    refuse_stdout(output, "--format text writes a folder of VIDEO_ID.txt files")
    if output.exists() and not output.is_dir():
        raise OutputError("exists and is not a folder", output, "--format text writes a folder")
    targets = {j.video_id: output / f"{j.video_id}.txt" for j in jobs}
    claim_folder(output, params, seed, blocks, targets.values(), overwrite)
    todo = [j for j in jobs if overwrite or not targets[j.video_id].exists()]
    if len(todo) < len(jobs):
        log.info("skipping %d videos whose text file exists", len(jobs) - len(todo))
    for job, result in track(
        parallel_map(process_video, todo, workers), "idt", total=len(todo), unit="videos"
    ):
        target = targets[job.video_id]
        partial = target.with_name(target.name + ".partial")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with partial.open("w", encoding="utf-8") as stream:
                write_text(stream, result.columns)
            os.replace(partial, target)
        except OSError as exc:
            raise OutputError(f"cannot write ({exc.strerror})", target) from None
    log.info("wrote %d text files to %s", len(todo), output)


@app.command("convert")
@vcl_command
def convert(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUTS...",
            help="Release text files (.txt, .txt.gz; folders of them) to make a store, "
            "or idt stores (one, or the shards of one run) to write as text.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The idt store (from text), or the folder of VIDEO_ID.txt files (from a store).",
            show_default=False,
        ),
    ],
    dtype: Annotated[
        str,
        typer.Option("--dtype", help="Descriptor blocks as float32 or float16 (text -> store)."),
    ] = "float32",
    track_length: Annotated[
        int | None,
        typer.Option(
            "--track-length",
            min=2,
            help="L the text files were made with (the release's -L) [default: from the "
            "folder's params.json, else 15].",
            show_default=False,
        ),
    ] = None,
    xy_cells: Annotated[
        int | None,
        typer.Option(
            "--xy-cells",
            min=1,
            help="Spatial cells per patch side (-s) [default: params.json, else 2].",
            show_default=False,
        ),
    ] = None,
    t_cells: Annotated[
        int | None,
        typer.Option(
            "--t-cells",
            min=1,
            help="Time cells (-t) [default: params.json, else 3].",
            show_default=False,
        ),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Convert between the idt store and the C++ release's text format.

    Text files (one trajectory a line: 10 header fields + 2L trajectory values + HOG,
    HOF, MBHx, MBHy, as DenseTrackStab prints them: 436 fields with its defaults)
    become one group each, named by the file name without .txt (or its path below the
    inputs' common folder), so descriptors computed with the original binary can enter
    vcl fisher. The block widths come from the params.json that `vcl idt --format
    text` and this command write beside their files; files without one (the
    release's) take the release's defaults (L 15, 2×2×3 cells) unless --track-length,
    --xy-cells or --t-cells say otherwise. A store becomes VIDEO_ID.txt files and a
    params.json.
    """
    import os

    from vcl.console import log
    from vcl.errors import DataError, OutputError, UsageError
    from vcl.idt import BLOCKS, HEADER, SCHEMA
    from vcl.idt.config import IdtConfig
    from vcl.idt.pipeline import empty_columns
    from vcl.idt.textformat import claim_folder, read_text, write_text
    from vcl.io.store import StoreWriter, refuse_stdout
    from vcl.io.union import open_stores

    refuse_stdout(output, "idt convert writes a folder of text files or an idt store")
    if dtype not in ("float32", "float16"):
        raise UsageError(f"--dtype must be float32 or float16, got {dtype!r}")
    stores = [p for p in inputs if p.is_dir() and (p / "zarr.json").exists()]
    if stores:
        if len(stores) != len(inputs):
            raise UsageError("give idt stores to write as text, or only text files")
        store = open_stores(inputs, kind="idt", version=1)  # shards: read as their merge
        if output.exists() and not output.is_dir():
            raise OutputError("exists and is not a folder", output)
        if track_length or xy_cells or t_cells:
            raise UsageError("--track-length, --xy-cells and --t-cells are for text inputs")
        targets = [output / f"{gid}.txt" for gid in store.group_ids]
        for target in targets:
            if target.exists() and not overwrite:
                raise OutputError("exists already", target, "pass --overwrite to replace it")
        blocks = {name: int(store[name].shape[1]) for name in BLOCKS}
        params = store.attrs.get("params") or {}
        claim_folder(output, params, store.attrs.get("seed"), blocks, targets, overwrite)
        for gid in store.group_ids:
            target = output / f"{gid}.txt"
            partial = target.with_name(target.name + ".partial")
            target.parent.mkdir(parents=True, exist_ok=True)
            with partial.open("w", encoding="utf-8") as stream:
                write_text(stream, store.read_group(gid))
            os.replace(partial, target)
        log.info("wrote %d text files to %s", len(store.group_ids), output)
        return

    roots = _text_files(inputs)
    files = [f for f, _ in roots]
    ids = _ids(files)
    given = {"track_length": track_length, "xy_cells": xy_cells, "t_cells": t_cells}
    layouts = [_text_layout(f, root, given) for f, root in roots]
    blocks, made_with = layouts[0] if layouts else (IdtConfig().dims, None)
    for (other, _), path in zip(layouts, files, strict=True):
        if other != blocks:
            raise DataError(
                f"block widths {other} differ from those of {files[0]} ({blocks})",
                path,
                "convert files made with different parameters into different stores",
            )
    if any(m != made_with for _, m in layouts):
        made_with = None  # folders of several runs (of the same widths)
    params = {"source": "text", "dtype": dtype, "blocks": blocks, "made_with": made_with}
    for path in files:  # the first line of each: a wrong layout fails before any output
        read_text(path, blocks, max_lines=1)
    config = IdtConfig(**{k: v for k, v in given.items() if v is not None})
    with StoreWriter(output, SCHEMA, params, None, overwrite, groups=ids) as w:
        spec = {}
        for name, values in empty_columns(config).items():
            width = (blocks[name],) if values.ndim == 2 else ()
            spec[name] = (dtype if values.ndim == 2 else str(values.dtype), width)
        w.define_columns(spec)
        total = 0
        for gid, path in zip(ids, files, strict=True):
            if gid not in w.done_groups:
                columns = read_text(path, blocks)
                w.append_group(gid, **columns)
                total += len(columns["frame"])
        w.set_attrs(source_files=[str(p) for p in files], header=list(HEADER), blocks=blocks)
    log.info("wrote %d trajectories from %d files to %s", total, len(files), output)


def _text_layout(
    path: Path, root: Path, given: dict[str, int | None]
) -> tuple[dict[str, int], dict | None]:
    """Block widths of a text file, and the parameters its params.json records (None
    for the release's files): the record wins, an option contradicting it is refused."""
    from vcl.errors import UsageError
    from vcl.idt.config import IdtConfig
    from vcl.idt.textformat import SIDECAR, sidecar_of

    record = sidecar_of(path, root)
    options = {k: v for k, v in given.items() if v is not None}
    if record is None:
        config = IdtConfig(**options)
        try:
            config.validate()
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return config.dims, None
    made_with = record.get("params") or {}
    blocks = record["blocks"]
    for key, value in options.items():
        known = made_with.get(key)
        if known is not None and known != value:
            raise UsageError(
                f"--{key.replace('_', '-')} {value} contradicts its {SIDECAR} ({known})",
                path,
                "leave the option out",
            )
    if "track_length" in options and blocks["traj"] != 2 * options["track_length"]:
        raise UsageError(
            f"--track-length {options['track_length']} contradicts its {SIDECAR} "
            f"(trajectories of {blocks['traj'] // 2} points)",
            path,
            "leave the option out",
        )
    return blocks, made_with


def _text_files(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """Each text file with the folder it was found in (where its params.json is looked
    for, up from the file's own folder)."""
    from vcl.errors import DataError, MissingInputError
    from vcl.idt.textformat import text_files_in

    files: list[tuple[Path, Path]] = []
    for path in inputs:
        if not path.exists():
            raise MissingInputError("no such file or folder", path)
        if path.is_dir():
            found = text_files_in(path)
            if not found:
                raise DataError("holds no .txt or .txt.gz trajectory files", path)
            files.extend((f, path) for f in found)
        elif not path.name.endswith((".txt", ".txt.gz")):
            raise DataError(
                "not a .txt or .txt.gz trajectory file",
                path,
                "give the release's text output (VIDEO_ID.txt), or an idt store; "
                "videos go to `vcl idt VIDEOS`",
            )
        else:
            files.append((path, path.parent))
    return files


def _ids(files: list[Path]) -> list[str]:
    import os

    from vcl.errors import DataError

    def strip(name: str) -> str:
        for suffix in (".txt.gz", ".txt", ".gz"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name

    resolved = [p.resolve() for p in files]
    if len(resolved) == 1:
        ids = [strip(resolved[0].name)]
    else:
        common = Path(os.path.commonpath([p.parent for p in resolved]))
        ids = [strip(p.relative_to(common).as_posix()) for p in resolved]
    if len(set(ids)) != len(ids):
        raise DataError("two text files give the same video id", files[0].parent)
    return ids


def _check_human_boxes(path: Path, boxes: dict, video_ids: list[str]) -> None:
    """A boxes file that names none of the videos is the wrong file (an error); videos it
    lacks get no people removed, which a user should hear about (one warning)."""
    from vcl.console import log
    from vcl.errors import UsageError

    missing = [v for v in video_ids if v not in boxes]
    if video_ids and len(missing) == len(video_ids):
        known = ", ".join(sorted(boxes)[:3]) or "none"
        raise UsageError(
            f"no boxes for any of the {len(video_ids)} videos (its video ids: {known})",
            path,
            "give the boxes of these videos, or --no-humans",
        )
    if missing:
        log.warning(
            "%d of %d videos have no boxes in %s: people are not removed from them (%s%s)",
            len(missing), len(video_ids), path, ", ".join(missing[:3]),
            ", ..." if len(missing) > 3 else "",
        )  # fmt: skip


EXAMPLES = [
    (
        "Trajectories of a folder of videos at 320 px, on all cores:",
        "vcl idt videos/ -o idt.zarr --workers 0",
    ),
    (
        "The fast variant: DIS flow, at most 10,000 trajectories a video:",
        "vcl idt videos.jsonl -o idt.zarr --flow dis --max-per-video 10000 --seed 1",
    ),
    (
        "Human boxes from another detector, and the release's text format:",
        "vcl idt clip.mp4 --human-boxes people.jsonl --format text -o idt_txt/",
    ),
    (
        "Descriptors computed by the C++ DenseTrackStab binary, into a store:",
        "vcl idt convert dt_out/ -o idt.zarr",
    ),
    ("A store back to the release's text format:", "vcl idt convert idt.zarr -o idt_txt/"),
]
