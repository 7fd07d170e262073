"""vcl proposals: quality on synthetic videos and speed on vtest.avi.

Quality: recall@300 at IoU 0.5 of each method on 20 default ``vcl synth`` videos
(static camera; and moving objects with a panning camera for ``motion``), generated
into a temporary folder, against the issue's targets (0.8; 0.7 for motion with pan).
Runs with ODCT's defaults and with ``--min-area 2000`` (synth objects are 17–34 px in a
160 px frame, many below ODCT's 10,000 px² at 600 px); ``motion`` also without Wang &
Gupta's 25 %/75 % frame test. Speed: frames per second of each method on the first
30 frames of ../shared/data/vtest.avi (re-encoded to a short clip) at 600 and 320 px
with one worker, and of the full edgeboxes pipeline (decode, edges, EdgeBoxes, NMS,
mapping) against the raw OpenCV EdgeBoxes call on the same, precomputed edge maps.

    python benchmarks/run.py proposals            # VCL_BENCH_QUICK=1: speed only
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "vtest.avi"
SPEED_FRAMES = 30


def _synth(folder: Path, camera: str) -> Path:
    """20 default synth videos (one camera kind) with their ground truth."""
    import functools

    from vcl.io.manifest import write_records
    from vcl.parallel import parallel_map
    from vcl.synth import SynthConfig, generate_video

    config = SynthConfig(videos=20, camera=camera)
    out = folder / camera
    make = functools.partial(generate_video, config, out_dir=out)
    videos, tracks = [], []
    for video, t in parallel_map(make, range(config.videos), workers=0):
        videos.append(video)
        tracks += t
    write_records(out / "videos.jsonl", videos)
    write_records(out / "gt_tracks.jsonl", tracks)
    return out


def _recall(data: Path, store: Path, args: list[str]) -> float:
    import json

    from typer.testing import CliRunner

    from vcl.cli.app import app

    runner = CliRunner()
    run = runner.invoke(
        app,
        [
            "proposals",
            str(data / "videos.jsonl"),
            "-o",
            str(store),
            "-q",
            "--workers",
            "0",
            "--overwrite",
            *args,
        ],
    )
    if run.exit_code:
        raise RuntimeError(run.stderr)
    report = runner.invoke(
        app,
        [
            "proposals",
            "eval",
            str(store),
            "--gt",
            str(data / "gt_tracks.jsonl"),
            "--kind",
            "object",
        ],
    )
    return json.loads(report.stdout)["recall"]["0.5"]["300"]


def quality() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="vcl-bench-proposals-") as tmp:
        folder = Path(tmp)
        static, pan = _synth(folder, "static"), _synth(folder, "pan")
        no_rule = ["--min-moving", "0", "--max-moving", "1"]
        cases = [
            ("edgeboxes", static, [], 0.8),
            ("edgeboxes", static, ["--min-area", "2000"], 0.8),
            ("selective-search", static, [], 0.8),
            ("selective-search", static, ["--min-area", "2000"], 0.8),
            ("motion", static, [], 0.8),
            ("motion", static, ["--min-area", "2000", *no_rule], 0.8),
            ("motion", pan, [], 0.7),
            ("motion", pan, ["--min-area", "2000", *no_rule], 0.7),
        ]
        for method, data, extra, target in cases:
            recall = _recall(data, folder / "p.zarr", ["--method", method, *extra])
            rows.append(
                {
                    "stage": "proposals",
                    "compared": f"recall@300 IoU .5, {method}, 20 synth ({data.name})"
                    f"{', ' + ' '.join(extra) if extra else ', defaults'}, vs target",
                    "ours": recall * 100,
                    "reference": target * 100,
                    "unit": "% of boxes",
                }
            )
    return rows


def _frames(path: Path, max_side: int | None) -> list:
    from vcl.io.video import VideoReader

    reader = VideoReader(path, max_side=max_side, end=SPEED_FRAMES)
    return [rgb for _, rgb in reader]


def speed() -> list[dict]:
    import cv2

    from vcl.proposals import ProposalConfig, area_threshold, process_video
    from vcl.proposals.edgeboxes import EdgeBoxesParams, create_edge_boxes, gradient_edges

    if not SHARED.exists():
        return []
    cv2.setNumThreads(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vcl-bench-proposals-") as tmp:
        # the first SPEED_FRAMES frames of vtest.avi, re-encoded at source size (MPEG-4):
        # the pipeline decodes this clip, the reference gets edge maps of the same frames
        from vcl.io.video import write_video

        clip = Path(tmp) / "vtest-head.mp4"
        write_video(clip, _frames(SHARED, None), fps=10)
        for max_side in (600, 320):
            frames = _frames(clip, max_side)
            size = frames[0].shape[1::-1]
            config = ProposalConfig(max_side=max_side)
            maps = [gradient_edges(f) for f in frames]
            engine = create_edge_boxes(EdgeBoxesParams(min_box_area=area_threshold(config, size)))

            def pipeline(method: str, max_side: int = max_side) -> float:
                start = time.perf_counter()
                process_video(str(clip), "vtest", ProposalConfig(method=method, max_side=max_side))
                return SPEED_FRAMES / (time.perf_counter() - start)

            def raw(maps: list = maps, engine=engine) -> float:
                start = time.perf_counter()
                for edges, orient in maps:
                    engine.getBoundingBoxes(edges, orient)
                return SPEED_FRAMES / (time.perf_counter() - start)

            # alternate the two and keep the best of each: other load on the machine
            # slows both alike instead of biasing the ratio
            ours, ref = [], []
            for _ in range(2):
                ours.append(pipeline("edgeboxes"))
                ref.append(raw())
            rows.append(
                {
                    "stage": "proposals",
                    "compared": f"edgeboxes pipeline (decode+edges+boxes+NMS) vs raw "
                    f"cv2 EdgeBoxes on the same edge maps, vtest {size[0]}x{size[1]}",
                    "ours": max(ours),
                    "reference": max(ref),
                    "unit": "frames/s",
                }
            )
            for method in ("selective-search", "motion"):
                rows.append(
                    {
                        "stage": "proposals",
                        "compared": f"{method} vs edgeboxes, vtest {size[0]}x{size[1]}",
                        "ours": pipeline(method),
                        "reference": max(ours),
                        "unit": "frames/s",
                    }
                )
    return rows


def run() -> list[dict]:
    rows = speed()
    if not os.environ.get("VCL_BENCH_QUICK"):
        rows += quality()
    return rows
