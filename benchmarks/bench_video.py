"""Video decoding: vcl's VideoReader (PyAV) against OpenCV's VideoCapture.

Uses ../shared/data/vtest.avi (768×576, 795 frames) when present, otherwise a
synthetic video made on the spot. Measures frames per second, full size and resized
to a 320 px longer side (the size most stages work at).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "vtest.avi"


def sample_video() -> Path:
    if SHARED.exists():
        return SHARED
    from vcl.synth import SynthConfig, generate_video

    out = Path(tempfile.mkdtemp(prefix="vcl-bench-"))
    config = SynthConfig(videos=1, width=640, height=480, frames=200)
    video, _ = generate_video(config, 0, out)
    return out / video.path


def fps_of(frames_iter) -> float:
    start, n = time.perf_counter(), 0
    for _ in frames_iter:
        n += 1
    return n / (time.perf_counter() - start)


def opencv_frames(path: Path, max_side: int | None):
    import cv2

    cap = cv2.VideoCapture(str(path))
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if max_side:
            h, w = rgb.shape[:2]
            f = max_side / max(h, w)
            rgb = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        yield rgb
    cap.release()


def run() -> list[dict]:
    from vcl.io.video import VideoReader

    path = sample_video()
    rows = []
    for max_side in (None, 320):
        ours = max(fps_of(VideoReader(path, max_side=max_side)) for _ in range(2))
        ref = max(fps_of(opencv_frames(path, max_side)) for _ in range(2))
        label = "full size" if max_side is None else f"resized to {max_side} px"
        rows.append(
            {
                "stage": "io.video",
                "compared": f"decode {path.name}, {label}, vs cv2.VideoCapture",
                "ours": ours,
                "reference": ref,
                "unit": "frames/s",
            }
        )
    return rows
