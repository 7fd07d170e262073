"""vcl synth: synthetic videos with ground-truth tracks and labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vcl.cli.common import Overwrite, Seed, Workers, vcl_command


@vcl_command
def run(
    out_dir: Annotated[
        Path,
        typer.Argument(
            metavar="OUT_DIR",
            help="Folder to write videos/, videos.jsonl and gt_tracks.jsonl into.",
            show_default=False,
        ),
    ],
    videos: Annotated[int, typer.Option("--videos", min=1, help="Number of videos.")] = 8,
    width: Annotated[int, typer.Option("--width", min=16, help="Frame width (px).")] = 160,
    height: Annotated[int, typer.Option("--height", min=16, help="Frame height (px).")] = 120,
    frames: Annotated[int, typer.Option("--frames", min=2, help="Frames per video.")] = 48,
    fps: Annotated[float, typer.Option("--fps", min=0.1, help="Frame rate.")] = 25.0,
    classes: Annotated[
        int, typer.Option("--classes", min=1, max=8, help="Appearance classes C.")
    ] = 4,
    motions: Annotated[
        int,
        typer.Option(
            "--motions",
            min=1,
            max=5,
            help="Motion patterns M (linear, circular, zigzag, bouncing, pulsating).",
        ),
    ] = 4,
    min_objects: Annotated[
        int, typer.Option("--min-objects", min=1, help="Fewest moving objects per video.")
    ] = 2,
    max_objects: Annotated[
        int, typer.Option("--max-objects", min=1, help="Most moving objects per video.")
    ] = 3,
    camera: Annotated[
        str,
        typer.Option(
            "--camera", help="Camera motion: static, pan, zoom, or mixed (each video picks one)."
        ),
    ] = "static",
    independent: Annotated[
        bool,
        typer.Option(
            "--independent",
            help="Draw appearance classes independently of the video's motion class.",
        ),
    ] = False,
    distractors: Annotated[
        int, typer.Option("--distractors", min=0, help="Static distractor shapes per video.")
    ] = 0,
    test_fraction: Annotated[
        float,
        typer.Option(
            "--test-fraction", min=0.0, max=0.99, help="Fraction of videos in the test split."
        ),
    ] = 0.25,
    codec: Annotated[str, typer.Option("--codec", help="mp4v (.mp4) or mjpg (.avi).")] = "mp4v",
    frame_folders: Annotated[
        bool,
        typer.Option("--frame-folders", help="Also write each video as a folder of PNG frames."),
    ] = False,
    seed: Seed = 0,
    workers: Workers = 1,
    overwrite: Overwrite = False,
) -> None:
    """Make synthetic videos with ground truth.

    Textured backgrounds (optionally with camera pan/zoom), moving objects of C
    appearance classes following M motion patterns, occlusions and static
    distractors. Writes OUT_DIR/videos/*, videos.jsonl (path, label = motion class,
    classes present, split) and gt_tracks.jsonl (per-frame boxes, visibility, class,
    motion), deterministic for a seed.
    """
    import functools

    from vcl.console import log, track
    from vcl.errors import OutputError, UsageError
    from vcl.io.manifest import RecordWriter
    from vcl.io.store import provenance
    from vcl.parallel import parallel_map
    from vcl.synth import SynthConfig, generate_video

    config = SynthConfig(
        videos=videos,
        width=width,
        height=height,
        frames=frames,
        fps=fps,
        classes=classes,
        motions=motions,
        min_objects=min_objects,
        max_objects=max_objects,
        camera=camera,
        independent=independent,
        distractors=distractors,
        test_fraction=test_fraction,
        codec=codec,
        frame_folders=frame_folders,
        seed=seed,
    )
    try:
        config.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    manifest, gt = out_dir / "videos.jsonl", out_dir / "gt_tracks.jsonl"
    # videos.jsonl appears last (after gt_tracks.jsonl): without it, a run was killed
    if manifest.exists() and not overwrite:
        raise OutputError(
            "holds a synthetic data set already", out_dir, "pass --overwrite to replace it"
        )
    try:
        if manifest.exists():  # --overwrite: the old set goes first, manifest first
            _remove_old_set(out_dir)
        (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create ({exc.strerror})", out_dir) from None

    params = {k: v for k, v in vars(config).items() if k != "seed"}
    (out_dir / "synth.json").write_text(  # before the manifest, which marks completion
        json.dumps(provenance("vcl.synth/1", params, seed), indent=2) + "\n"
    )
    make = functools.partial(generate_video, config, out_dir=out_dir)
    results = parallel_map(make, range(videos), workers)
    with RecordWriter(manifest) as video_writer, RecordWriter(gt) as track_writer:
        for video, tracks in track(results, "rendering videos", total=videos, unit="videos"):
            video_writer.write(video)
            track_writer.write_all(tracks)
    log.info("wrote %d videos, %d tracks to %s", video_writer.count, track_writer.count, out_dir)


def _remove_old_set(out_dir: Path) -> None:
    """Delete the videos (files or frame folders) an earlier set's manifest lists under
    ``out_dir/videos``, so a smaller set written over it leaves none of the old ones
    behind; anything else in the folder is the user's and stays."""
    import shutil

    from vcl.errors import VclError
    from vcl.io.manifest import VideoRecord, read_records

    manifest = out_dir / "videos.jsonl"
    try:
        records = read_records(manifest, VideoRecord)
    except VclError:
        records = []  # damaged: nothing known to delete
    manifest.unlink()
    (out_dir / "gt_tracks.jsonl").unlink(missing_ok=True)
    videos = (out_dir / "videos").resolve()
    for record in records:
        path = Path(record.path)
        path = (path if path.is_absolute() else out_dir / path).resolve()
        if path.parent != videos:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


EXAMPLES = [
    (
        "Eight small videos with ground truth, described by vcl info:",
        "vcl synth data/ --videos 8 && vcl info data/videos.jsonl",
    ),
    (
        "Appearance independent of motion, with a panning camera, on all cores:",
        "vcl synth data/ --videos 64 --independent --camera pan --workers 0",
    ),
]
