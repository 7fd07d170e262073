"""Deterministic synthetic videos with planted ground truth (the project's test data).

Real datasets cannot be downloaded here, so every test, example and demo renders its
videos. A video shows a few textured polygons ("objects") moving over a textured
background seen through a camera that may pan or zoom. Each object has an appearance
class (shape + texture + hue family, `class_names`) and every object in a video shares
the video's motion pattern (`MOTIONS`), which is the video's label.

Geometry lives in WORLD coordinates; a per-frame camera maps world -> frame by
``frame = s_t * (world - c_t) + (W/2, H/2)`` (`camera_matrix`). Pixel ``(x, y)`` covers
``[x, x+1) × [y, y+1)``, so its centre is ``(x + 0.5, y + 0.5)``. An object's silhouette
is ONE polygon per frame: its pixels are those whose centre it contains (plus the
pixels holding its clipped vertices) and its box is the polygon clipped to the frame,
so boxes and masks agree to within a pixel (`_layer`).

Everything about video ``index`` comes from ``np.random.default_rng([seed, index])``
(`plan_video`), so a video does not depend on how many videos are made, nor on which
worker makes it. The motion class of a video is balanced in blocks of M videos: block
``b = index // M`` holds each motion once, in an order shuffled by ``(seed, b)``.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from vcl.io.manifest import TrackRecord, VideoRecord

MOTIONS: tuple[str, ...] = ("linear", "circular", "zigzag", "bouncing", "pulsating")
CAMERAS: tuple[str, ...] = ("static", "pan", "zoom")
_CODEC_EXT = {"mp4v": ".mp4", "mjpg": ".avi"}

# Appearance classes: (shape, texture, hue in degrees). Shapes all differ, so the first
# n classes are distinct in shape, and also in texture or hue.
_CLASSES: tuple[tuple[str, str, float], ...] = (
    ("circle", "stripes", 0.0),
    ("square", "checker", 215.0),
    ("triangle", "dots", 120.0),
    ("star", "rings", 55.0),
    ("cross", "gradient", 285.0),
    ("hexagon", "checker", 175.0),
    ("diamond", "stripes", 28.0),
    ("lshape", "rings", 330.0),
)
_TEXTURE_FREQ = {"stripes": 1.6, "checker": 1.8, "dots": 2.2, "rings": 1.6, "gradient": 1.0}


def _regular(n: int, radius: float = 1.0, turn: float = 0.0) -> np.ndarray:
    a = turn + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(a), np.sin(a)], axis=1)


def _star(points: int = 5, inner: float = 0.55) -> np.ndarray:
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return _regular(2 * points, turn=-np.pi / 2) * radii[:, None]


_SHAPES: dict[str, np.ndarray] = {  # (N, 2) vertices of a shape of radius about 1
    "circle": _regular(32),
    "square": _regular(4, math.sqrt(2) * 0.75, np.pi / 4),
    "triangle": _regular(3, 1.0, -np.pi / 2),
    "star": _star(),
    "cross": np.array(
        [
            (-0.3, -1),
            (0.3, -1),
            (0.3, -0.3),
            (1, -0.3),
            (1, 0.3),
            (0.3, 0.3),
            (0.3, 1),
            (-0.3, 1),
            (-0.3, 0.3),
            (-1, 0.3),
            (-1, -0.3),
            (-0.3, -0.3),
        ]
    ),
    "hexagon": _regular(6, 0.95),
    "diamond": np.array([(0.0, -1.0), (0.65, 0.0), (0.0, 1.0), (-0.65, 0.0)]),
    "lshape": np.array(
        [(-0.8, -0.9), (-0.15, -0.9), (-0.15, 0.25), (0.8, 0.25), (0.8, 0.9), (-0.8, 0.9)]
    ),
}


def class_names(n: int) -> list[str]:
    """Names of the first ``n`` appearance classes, ``"<shape>_<texture>"``."""
    if not 1 <= n <= len(_CLASSES):
        raise ValueError(f"classes must be in 1..{len(_CLASSES)}, got {n}")
    return [f"{shape}_{texture}" for shape, texture, _ in _CLASSES[:n]]


@dataclass(frozen=True)
class SynthConfig:
    """What to generate; `validate` says what is wrong with a bad one."""

    videos: int = 8
    width: int = 160
    height: int = 120
    frames: int = 48
    fps: float = 25.0
    classes: int = 4  # appearance classes C
    motions: int = 4  # uses MOTIONS[:motions]
    min_objects: int = 2  # moving objects per video, drawn uniformly in [min, max]
    max_objects: int = 3
    camera: str = "static"  # static | pan | zoom | mixed (each video picks one)
    independent: bool = False  # False: class c appears only with motion c % M
    distractors: int = 0  # static grey shapes per video
    test_fraction: float = 0.25
    codec: str = "mp4v"  # mp4v -> .mp4, mjpg -> .avi
    frame_folders: bool = False  # also write frames/<id>/000000.png ...
    seed: int = 0

    def validate(self) -> None:
        checks = [
            (self.videos >= 1, f"videos must be >= 1, got {self.videos}"),
            (
                self.width >= 16 and self.height >= 16,
                f"frame size must be at least 16x16, got {self.width}x{self.height}",
            ),
            (self.frames >= 2, f"frames must be >= 2, got {self.frames}"),
            (self.fps > 0 and math.isfinite(self.fps), f"fps must be > 0, got {self.fps}"),
            (
                1 <= self.classes <= len(_CLASSES),
                f"classes must be in 1..{len(_CLASSES)}, got {self.classes}",
            ),
            (
                1 <= self.motions <= len(MOTIONS),
                f"motions must be in 1..{len(MOTIONS)}, got {self.motions}",
            ),
            (
                0 <= self.min_objects <= self.max_objects <= 16,
                f"need 0 <= min_objects <= max_objects <= 16, got {self.min_objects}, "
                f"{self.max_objects}",
            ),
            (0 <= self.distractors <= 16, f"distractors must be in 0..16, got {self.distractors}"),
            (
                self.camera in (*CAMERAS, "mixed"),
                f"camera must be one of static, pan, zoom, mixed; got {self.camera!r}",
            ),
            (
                0 <= self.test_fraction < 1,
                f"test_fraction must be in [0, 1), got {self.test_fraction}",
            ),
            (
                self.codec in _CODEC_EXT,
                f"codec must be one of {sorted(_CODEC_EXT)}, got {self.codec!r}",
            ),
            (
                isinstance(self.seed, int) and self.seed >= 0,
                f"seed must be an int >= 0, got {self.seed!r}",
            ),
        ]
        for ok, problem in checks:
            if not ok:
                raise ValueError(problem)


@dataclass(frozen=True, eq=False)
class ObjectPlan:
    """One shape's appearance and its per-frame pose; arrays have one row per frame (T)."""

    kind: str  # "object" or "distractor"
    label: str | None  # appearance class name; None for distractors
    motion: str  # motion name, "static" for distractors
    shape: np.ndarray  # (N, 2) local vertices, aspect ratio applied
    radius: float  # world pixels per local unit
    pos: np.ndarray  # (T, 2) world centre
    scale: np.ndarray  # (T,) size multiplier
    angle: np.ndarray  # (T,) rotation, radians
    light: np.ndarray  # (T,) brightness multiplier
    texture: str  # key of _TEXTURES, or "plain"
    tex_freq: float  # cycles per local unit
    tex_phase: tuple[float, float]
    bright: tuple[float, float, float]  # RGB in [0, 1] where the texture is 1
    dark: tuple[float, float, float]  # ... and where it is 0


@dataclass(frozen=True, eq=False)
class VideoPlan:
    """Everything needed to render one video; pure data from (config, index)."""

    id: str
    width: int
    height: int
    frames: int
    motion: str
    camera: str
    cam_center: np.ndarray  # (T, 2) world point seen at the frame centre
    cam_scale: np.ndarray  # (T,) frame pixels per world pixel
    objects: tuple[ObjectPlan, ...]  # moving objects first, then distractors
    bg_waves: np.ndarray  # (3, 4) per sinusoid: fx, fy (cycles/px), phase, weight
    bg_palette: np.ndarray  # (3, 3) RGB in [0, 1], for background values 0, 0.5, 1
    bg_seed: tuple[int, int, int]  # seeds the blurred noise of the background

    @property
    def draw_order(self) -> list[int]:
        """Back to front: distractors, then moving objects by index (o0 at the back)."""
        n = len(self.objects)
        dist = [k for k in range(n) if self.objects[k].kind == "distractor"]
        return dist + [k for k in range(n) if self.objects[k].kind == "object"]

    @cached_property
    def background(self) -> tuple[np.ndarray, np.ndarray]:
        """World texture (h×w×3 float32) covering every frame's view, and its origin (x, y)."""
        import cv2

        half = np.array([self.width, self.height]) / 2
        lo = (self.cam_center - half / self.cam_scale[:, None]).min(0) - 4
        hi = (self.cam_center + half / self.cam_scale[:, None]).max(0) + 4
        origin = np.floor(lo)
        w, h = (np.ceil(hi) - origin).astype(int)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        xs += origin[0] + 0.5
        ys += origin[1] + 0.5
        value = np.zeros((h, w), np.float32)
        for fx, fy, phase, weight in self.bg_waves:
            value += weight * np.sin(2 * np.pi * (fx * xs + fy * ys) + phase)
        noise = np.random.default_rng(list(self.bg_seed)).standard_normal((h, w))
        noise = cv2.GaussianBlur(noise.astype(np.float32), (0, 0), 2.5)
        value += 0.35 * noise / max(float(noise.std()), 1e-6)
        value = (value - value.min()) / max(float(np.ptp(value)), 1e-6)
        canvas = np.stack(
            [np.interp(value, [0, 0.5, 1], self.bg_palette[:, c]) for c in range(3)], axis=-1
        )
        return canvas.astype(np.float32), origin


def camera_matrix(plan: VideoPlan, t: int) -> np.ndarray:
    """2×3 affine world -> frame (continuous coordinates) at frame ``t``."""
    s = float(plan.cam_scale[t])
    cx, cy = plan.cam_center[t]
    return np.array([[s, 0, plan.width / 2 - s * cx], [0, s, plan.height / 2 - s * cy]])


# ----------------------------------------------------------------------------- planning


def _video_motion(config: SynthConfig, index: int) -> int:
    """Motion index of a video: each block of M consecutive videos holds every motion once."""
    m = config.motions
    order = np.random.default_rng([config.seed, index // m, 1]).permutation(m)
    return int(order[index % m])


def video_split(config: SynthConfig, index: int) -> str:
    """``"train"`` or ``"test"``: about ``test_fraction`` of each motion class is test.

    Within a motion class, the k-th video is test when ``k * f + phase`` crosses an
    integer (an even spread, phase per class). With 2+ videos and f > 0 at least one
    video is test and one train (the last video / the first video are switched if not).
    """
    f, n = config.test_fraction, config.videos

    def raw(i: int) -> bool:
        m, k = _video_motion(config, i), i // config.motions
        phase = (0.5 + 0.618034 * m) % 1.0
        return math.floor((k + 1) * f + phase) > math.floor(k * f + phase)

    if f <= 0 or n < 2:
        return "train"
    flags = [raw(i) for i in range(n)]
    if not any(flags):
        flags[-1] = True
    if all(flags):
        flags[0] = False
    return "test" if index < n and flags[index] else "train"


def _arena(center: np.ndarray, scale: np.ndarray, w: int, h: int) -> tuple[np.ndarray, ...]:
    """World box seen in EVERY frame (intersection of the views): objects kept there stay."""
    half = np.array([w, h]) / 2 / scale[:, None]
    return (center - half).max(0), (center + half).min(0)


def _plan_camera(
    rng: np.random.Generator, kind: str, w: int, h: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre (T, 2) in world pixels and scale (T,) for a ``kind`` camera."""
    t = np.arange(n, dtype=np.float64)
    center = np.tile([w / 2, h / 2], (n, 1)).astype(np.float64)
    scale = np.ones(n)
    if kind == "pan":
        # A sweep c_t = c + d * a * sin(w (t - mid)): monotone when the video is short
        # enough, swinging back otherwise; peak speed `speed` px/frame, mostly horizontal.
        speed = rng.uniform(1.5, 3.0)
        a = float(np.clip(speed * (n - 1) / np.pi, 0.05 * w, 0.18 * w))
        tilt = rng.uniform(-0.5, 0.5) + rng.choice([0.0, np.pi])
        direction = np.array([np.cos(tilt), np.sin(tilt)])
        center += direction * a * np.sin(speed / a * (t - (n - 1) / 2))[:, None]
    elif kind == "zoom":
        lo_hi = (1.0, rng.uniform(1.2, 1.35))
        ramp = t / (n - 1)
        ramp = ramp if rng.random() < 0.5 else 1 - ramp
        scale = lo_hi[0] + (lo_hi[1] - lo_hi[0]) * (3 * ramp**2 - 2 * ramp**3)
        center += rng.uniform(-0.3, 0.3, 2) * (t - (n - 1) / 2)[:, None]
    return center, scale


def _colours(rng: np.random.Generator, hue: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    h = ((hue + rng.uniform(-10, 10)) % 360) / 360
    bright = colorsys.hsv_to_rgb(h, rng.uniform(0.7, 0.95), rng.uniform(0.85, 1.0))
    dark = colorsys.hsv_to_rgb(h, rng.uniform(0.6, 0.9), rng.uniform(0.3, 0.45))
    return bright, dark


def _trajectory(
    rng: np.random.Generator,
    motion: str,
    n: int,
    lo: np.ndarray,
    hi: np.ndarray,
    extent: float,
    side: float,
) -> tuple[np.ndarray, np.ndarray]:
    """World centres (T, 2) and scale (T,) of one object following ``motion``.

    ``lo``/``hi`` bound the arena, ``extent`` is the object's largest world radius, and
    ``side`` the frame's shorter side (the unit of speeds and amplitudes).
    """
    t = np.arange(n, dtype=np.float64)
    u = t / (n - 1)  # 0 -> 1 over the video
    inner_lo, inner_hi = lo + extent, np.maximum(hi - extent, lo + extent)

    def inside(margin: float = 0.0) -> np.ndarray:
        a = np.minimum(inner_lo + margin, (inner_lo + inner_hi) / 2)
        b = np.maximum(inner_hi - margin, (inner_lo + inner_hi) / 2)
        return rng.uniform(a, b)

    scale = 1 + rng.uniform(0, 0.1) * np.sin(
        2 * np.pi * rng.uniform(0.3, 1.0) * u + rng.uniform(0, 2 * np.pi)
    )
    if motion == "linear":
        start, end = inside(), inside()
        for _ in range(8):  # travel at least a third of the shorter side
            if np.linalg.norm(end - start) >= side / 3:
                break
            end = inside()
        way = rng.integers(3)  # 0: stays inside, 1: enters through an edge, 2: leaves
        if way:
            axis, sign = rng.integers(2), rng.choice([-1.0, 1.0])
            edge = (hi if sign > 0 else lo)[axis] + sign * extent * rng.uniform(-0.4, 0.6)
            (start if way == 1 else end)[axis] = edge
        pos = start + (end - start) * u[:, None]
    elif motion == "circular":
        radius = side * rng.uniform(0.15, 0.3)
        centre = inside(radius)
        sweep = rng.uniform(0.6, 1.5) * 2 * np.pi * rng.choice([-1.0, 1.0])
        a = rng.uniform(0, 2 * np.pi) + sweep * u
        pos = centre + radius * np.stack([np.cos(a), np.sin(a)], axis=1)
    elif motion == "zigzag":
        amp = side * rng.uniform(0.06, 0.12)
        start, end = inside(amp), inside(amp)
        along = end - start
        if np.linalg.norm(along) < 1e-6:
            along = np.array([1.0, 0.0])
        normal = np.array([-along[1], along[0]]) / np.linalg.norm(along)
        period = rng.uniform(0.25, 0.5) * (n - 1)
        wave = 2 * np.abs(2 * ((t / period + rng.uniform()) % 1.0) - 1) - 1  # triangle, [-1, 1]
        pos = start + (end - start) * u[:, None] + amp * wave[:, None] * normal
    elif motion == "bouncing":
        span = inner_hi - inner_lo
        angle = rng.uniform(0, 2 * np.pi)
        travel = side * rng.uniform(1.0, 2.5)
        raw = inside() - inner_lo + travel * u[:, None] * [np.cos(angle), np.sin(angle)]
        period = np.maximum(2 * span, 1e-9)  # reflection = triangle wave of period 2 * span
        folded = np.abs((raw + period) % period)
        pos = inner_lo + np.where(folded > span, period - folded, folded)
    elif motion == "pulsating":
        pos = inside() + side * rng.uniform(-0.05, 0.05, 2) * u[:, None]
        cycles = rng.uniform(1.5, 3.0)
        scale = 1 + rng.uniform(0.3, 0.4) * np.sin(2 * np.pi * cycles * u + rng.uniform(0, 6.3))
    else:
        raise ValueError(f"unknown motion {motion!r}")
    return pos, scale


def plan_video(config: SynthConfig, index: int) -> VideoPlan:
    """Plan video ``index``: camera, objects, trajectories; no pixels are made here."""
    config.validate()
    rng = np.random.default_rng([config.seed, index])
    w, h, n = config.width, config.height, config.frames
    side = float(min(w, h))
    motion_index = _video_motion(config, index)
    motion = MOTIONS[motion_index]
    camera = config.camera if config.camera != "mixed" else CAMERAS[rng.integers(3)]
    center, cam_scale = _plan_camera(rng, camera, w, h, n)
    lo, hi = _arena(center, cam_scale, w, h)
    t = np.arange(n, dtype=np.float64)

    objects: list[ObjectPlan] = []
    names = class_names(config.classes)
    n_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    for _ in range(n_objects):
        if config.independent:
            cls = int(rng.integers(config.classes))
        elif config.classes >= config.motions:
            cls = int(rng.choice(np.arange(motion_index, config.classes, config.motions)))
        else:
            cls = motion_index % config.classes
        shape_name, texture, hue = _CLASSES[cls]
        aspect = rng.uniform(0.8, 1.25)
        shape = _SHAPES[shape_name] * [aspect, 1 / aspect]
        radius = side * rng.uniform(0.14, 0.28) / 2
        most = 1.45 if motion == "pulsating" else 1.12  # largest scale the trajectory reaches
        extent = radius * most * float(np.linalg.norm(shape, axis=1).max())
        pos, scale = _trajectory(rng, motion, n, lo, hi, extent, side)
        spin = rng.uniform(-0.05, 0.05) if rng.random() < 0.7 else 0.0
        bright, dark = _colours(rng, hue)
        objects.append(
            ObjectPlan(
                kind="object",
                label=names[cls],
                motion=motion,
                shape=shape,
                radius=radius,
                pos=pos,
                scale=scale,
                angle=rng.uniform(0, 2 * np.pi) + spin * t,
                light=1
                + rng.uniform(0.05, 0.2)
                * np.sin(2 * np.pi * rng.uniform(0.3, 1.2) * t / (n - 1) + rng.uniform(0, 6.3)),
                texture=texture,
                tex_freq=_TEXTURE_FREQ[texture] * rng.uniform(0.8, 1.25),
                tex_phase=(rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)),
                bright=bright,
                dark=dark,
            )
        )
    for _ in range(config.distractors):
        shape = _SHAPES[rng.choice(["circle", "square"])] * [rng.uniform(0.6, 1.6), 1.0]
        radius = side * rng.uniform(0.08, 0.16) / 2
        extent = radius * float(np.linalg.norm(shape, axis=1).max())
        mid = (lo + hi) / 2
        spot = rng.uniform(np.minimum(lo + extent, mid), np.maximum(hi - extent, mid))
        grey = (rng.uniform(0.3, 0.8),) * 3
        objects.append(
            ObjectPlan(
                kind="distractor",
                label=None,
                motion="static",
                shape=shape,
                radius=radius,
                pos=np.tile(spot, (n, 1)),
                scale=np.ones(n),
                angle=np.full(n, rng.uniform(0, np.pi)),
                light=np.ones(n),
                texture="plain",
                tex_freq=0.0,
                tex_phase=(0.0, 0.0),
                bright=grey,
                dark=grey,
            )
        )

    waves = np.stack(
        [
            rng.uniform(-0.08, 0.08, 3),
            rng.uniform(-0.08, 0.08, 3),
            rng.uniform(0, 2 * np.pi, 3),
            rng.uniform(0.3, 1.0, 3),
        ],
        axis=1,
    )
    palette = np.array(
        [
            colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.5), v)
            for v in np.sort(rng.uniform(0.2, 0.85, 3))
        ]
    )
    return VideoPlan(
        id=f"v{index:04d}",
        width=w,
        height=h,
        frames=n,
        motion=motion,
        camera=camera,
        cam_center=center,
        cam_scale=cam_scale,
        objects=tuple(objects),
        bg_waves=waves,
        bg_palette=palette,
        bg_seed=(config.seed, index, 2),
    )


# ---------------------------------------------------------------------------- rendering


def _texture(
    name: str, u: np.ndarray, v: np.ndarray, freq: float, phase: tuple[float, float]
) -> np.ndarray:
    """Texture value in [0, 1] at object-local (u, v) (radius units): moves with the object."""
    if name == "stripes":
        return 0.5 + 0.5 * np.tanh(3 * np.sin(2 * np.pi * freq * u + phase[0]))
    if name == "checker":
        s = np.sin(np.pi * freq * u + phase[0]) * np.sin(np.pi * freq * v + phase[1])
        return 0.5 + 0.5 * np.tanh(6 * s)
    if name == "dots":
        du = (freq * u + phase[0] / (2 * np.pi)) % 1.0 - 0.5
        dv = (freq * v + phase[1] / (2 * np.pi)) % 1.0 - 0.5
        return np.clip((0.3 - np.hypot(du, dv)) * 10 + 0.5, 0, 1)
    if name == "rings":
        return 0.5 + 0.5 * np.tanh(3 * np.sin(2 * np.pi * freq * np.hypot(u, v) + phase[0]))
    if name == "gradient":
        return np.clip(0.5 + 0.5 * (u * np.cos(phase[0]) + v * np.sin(phase[0])), 0, 1)
    return np.ones_like(u)  # plain


def _polygon(plan: VideoPlan, k: int, t: int) -> np.ndarray:
    """(N, 2) frame-coordinate vertices of object ``k`` at frame ``t``."""
    obj = plan.objects[k]
    c, s = math.cos(obj.angle[t]), math.sin(obj.angle[t])
    world = obj.pos[t] + obj.radius * obj.scale[t] * obj.shape @ np.array([[c, s], [-s, c]])
    m = camera_matrix(plan, t)
    return world @ m[:, :2].T + m[:, 2]


def _clip(poly: np.ndarray, w: int, h: int) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon to [0, w] × [0, h] (vectorised per window edge)."""
    for axis, bound, sign in ((0, 0.0, 1), (0, w, -1), (1, 0.0, 1), (1, h, -1)):
        if len(poly) == 0:
            break
        d = sign * (poly[:, axis] - bound)  # >= 0 inside
        nxt, dn = np.roll(poly, -1, axis=0), np.roll(d, -1)
        cross = (d >= 0) != (dn >= 0)
        frac = np.where(cross, d / np.where(cross, d - dn, 1.0), 0.0)
        hit = poly + frac[:, None] * (nxt - poly)
        out = np.stack([hit, nxt], axis=1).reshape(-1, 2)
        poly = out[np.stack([cross, dn >= 0], axis=1).reshape(-1)]
    return poly


@dataclass
class _Layer:
    box: tuple[float, float, float, float]  # analytic, clipped
    mask: np.ndarray  # bool crop of the frame
    x0: int
    y0: int


def _inside(poly: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd test of points (xs[j], ys[i]) against a polygon: bool (len(ys), len(xs)).

    Vectorised over pixels and edges: per edge and row, where the edge crosses the row;
    a point is inside when an odd number of crossings lie to its right.
    """
    (x1, y1), (x2, y2) = poly.T[:, :, None], np.roll(poly, -1, axis=0).T[:, :, None]
    spans = (y1 > ys) != (y2 > ys)  # (E, rows): the edge crosses the row
    dy = np.where(spans, y2 - y1, 1.0)
    at = np.where(spans, x1 + (ys - y1) * (x2 - x1) / dy, -np.inf)  # (E, rows)
    return (at[:, :, None] > xs).sum(axis=0) % 2 == 1


def _layer(plan: VideoPlan, k: int, t: int) -> _Layer | None:
    """Silhouette of object ``k`` at frame ``t`` on its box crop; None if it is off-frame.

    A pixel belongs to the silhouette when its centre is inside the polygon, or when it
    holds a vertex of the polygon clipped to the frame. The vertices fix the box's
    extremes, so the mask's bounding box is within 1 px of the analytic box on every side
    by construction, and thin tips and edge slivers are never lost. (cv2.fillPoly snaps
    vertices to whole pixels and outlines edges with Bresenham lines, which spills up to
    ~1.7 px past the clipped box where a polygon crosses the frame edge.)
    """
    poly = _polygon(plan, k, t)
    clipped = _clip(poly, plan.width, plan.height)
    if len(clipped) == 0:
        return None
    (bx0, by0), (bx1, by1) = clipped.min(0), clipped.max(0)
    x0, y0 = max(0, math.floor(bx0)), max(0, math.floor(by0))
    x1, y1 = min(plan.width, math.floor(bx1) + 1), min(plan.height, math.floor(by1) + 1)
    crop = _inside(poly, np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    corner = np.floor(clipped).astype(int)
    cx = np.clip(corner[:, 0], x0, x1 - 1) - x0
    cy = np.clip(corner[:, 1], y0, y1 - 1) - y0
    crop[cy, cx] = True
    return _Layer((float(bx0), float(by0), float(bx1), float(by1)), crop, x0, y0)


def _paint(plan: VideoPlan, k: int, t: int, layer: _Layer) -> np.ndarray:
    """RGB (h×w×3 float) of object ``k`` over its crop, texture in object-local coordinates."""
    obj = plan.objects[k]
    h, w = layer.mask.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    m = camera_matrix(plan, t)
    # frame -> world (inverse camera), then world -> local (undo translation, rotation, size)
    wx = (xs + layer.x0 + 0.5 - m[0, 2]) / m[0, 0] - obj.pos[t, 0]
    wy = (ys + layer.y0 + 0.5 - m[1, 2]) / m[1, 1] - obj.pos[t, 1]
    c, s = math.cos(obj.angle[t]), math.sin(obj.angle[t])
    size = obj.radius * obj.scale[t]
    u, v = (c * wx + s * wy) / size, (-s * wx + c * wy) / size
    tex = _texture(obj.texture, u, v, obj.tex_freq, obj.tex_phase)[..., None]
    dark, bright = np.array(obj.dark), np.array(obj.bright)
    return (dark + tex * (bright - dark)) * obj.light[t]


def render_background(plan: VideoPlan, t: int) -> np.ndarray:
    """The background alone at frame ``t`` (H×W×3 float32 in [0, 1]), through the camera."""
    import cv2

    canvas, origin = plan.background
    m = camera_matrix(plan, t)
    # canvas pixel i has world centre origin + i + 0.5; frame pixel j has centre j + 0.5
    warp = m.copy()
    warp[:, 2] = m[:, :2] @ (origin + 0.5) + m[:, 2] - 0.5
    return cv2.warpAffine(
        canvas,
        warp,
        (plan.width, plan.height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )


def _render(plan: VideoPlan, t: int) -> tuple[np.ndarray, np.ndarray, dict[int, _Layer]]:
    rgb = render_background(plan, t)
    label = np.full((plan.height, plan.width), -1, np.int16)
    layers: dict[int, _Layer] = {}
    for k in plan.draw_order:
        layer = _layer(plan, k, t)
        if layer is None:
            continue
        layers[k] = layer
        ys = slice(layer.y0, layer.y0 + layer.mask.shape[0])
        xs = slice(layer.x0, layer.x0 + layer.mask.shape[1])
        rgb[ys, xs][layer.mask] = _paint(plan, k, t, layer)[layer.mask]
        label[ys, xs][layer.mask] = k
    frame = np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)
    return frame, label, layers


def render_frame(plan: VideoPlan, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``t``: RGB uint8 H×W×3, and int16 H×W labels (-1 background, else object index).

    Object indices follow ``plan.objects``: moving objects, then distractors.
    """
    rgb, label, _ = _render(plan, t)
    return rgb, label


def object_mask(plan: VideoPlan, obj_index: int, t: int) -> np.ndarray:
    """Bool H×W: the object's whole silhouette at frame ``t``, ignoring occlusion."""
    mask = np.zeros((plan.height, plan.width), bool)
    layer = _layer(plan, obj_index, t)
    if layer is not None:
        h, w = layer.mask.shape
        mask[layer.y0 : layer.y0 + h, layer.x0 : layer.x0 + w] = layer.mask
    return mask


def object_box(plan: VideoPlan, obj_index: int, t: int) -> tuple[float, float, float, float] | None:
    """Analytic (x0, y0, x1, y1) of the polygon clipped to the frame; None if no pixel shows.

    The box comes from the polygon, not the pixels; it is None exactly when
    `object_mask` is empty (also for sub-pixel slivers at an edge).
    """
    layer = _layer(plan, obj_index, t)
    return None if layer is None else layer.box


# ---------------------------------------------------------------------------- writing


def generate_video(
    config: SynthConfig, index: int, out_dir: Path
) -> tuple[VideoRecord, list[TrackRecord]]:
    """Render video ``index`` to ``out_dir/videos/<id>.mp4`` (.avi for mjpg); return its records.

    With ``frame_folders`` the frames also go to ``out_dir/frames/<id>/``. Paths in the
    records are relative to ``out_dir``. Objects that never show get no track.
    """
    from vcl.io.video import write_frame_folder, write_video

    plan = plan_video(config, index)
    out_dir = Path(out_dir)
    n_obj = len(plan.objects)
    frames: list[np.ndarray] = []
    seen: list[list[int]] = [[] for _ in range(n_obj)]
    boxes: list[list[list[float]]] = [[] for _ in range(n_obj)]
    visible: list[list[float]] = [[] for _ in range(n_obj)]
    for t in range(plan.frames):
        rgb, label, layers = _render(plan, t)
        frames.append(rgb)
        for k, layer in layers.items():
            h, w = layer.mask.shape
            shown = label[layer.y0 : layer.y0 + h, layer.x0 : layer.x0 + w][layer.mask] == k
            seen[k].append(t)
            boxes[k].append([round(v, 2) for v in layer.box])
            visible[k].append(round(float(shown.mean()), 3))

    video_path = Path("videos") / f"{plan.id}{_CODEC_EXT[config.codec]}"
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    write_video(out_dir / video_path, frames, config.fps, codec=config.codec)
    if config.frame_folders:
        write_frame_folder(out_dir / "frames" / plan.id, frames)

    tracks: list[TrackRecord] = []
    counters = {"object": 0, "distractor": 0}
    for k, obj in enumerate(plan.objects):
        number = counters[obj.kind]
        counters[obj.kind] += 1
        if not seen[k]:
            continue
        tracks.append(
            TrackRecord(
                id=f"{plan.id}_{'o' if obj.kind == 'object' else 'd'}{number}",
                video_id=plan.id,
                frames=seen[k],
                boxes=boxes[k],
                score=1.0,
                label=obj.label,
                extra={"visible": visible[k], "motion": obj.motion, "kind": obj.kind},
            )
        )
    present = sorted({t.label for t in tracks if t.label is not None})
    video = VideoRecord(
        id=plan.id,
        path=video_path.as_posix(),
        label=plan.motion,
        split=video_split(config, index),
        fps=config.fps,
        extra={
            "classes": present,
            "motion": plan.motion,
            "camera": plan.camera,
            "width": plan.width,
            "height": plan.height,
            "frames": plan.frames,
        },
    )
    return video, tracks


def jittered_proposals(
    tracks: list[TrackRecord],
    jitter: float = 0.04,
    distractors: int = 8,
    stride: int = 1,
    seed: int = 0,
    size: tuple[int, int] = (160, 120),
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Proposals with known answers, for testing and measuring trackers: every
    ground-truth box visible ≥ 30 % on every ``stride``-th frame, each coordinate moved by
    Gaussian noise of ``jitter`` × the box's width / height (score U(0.6, 1)), plus
    ``distractors`` random boxes of 6–30 px per sampled frame in a ``size`` frame (score
    U(0, 0.5)). Returns per video (frames, boxes xyxy, scores) sorted by frame."""
    rng = np.random.default_rng(seed)
    by: dict[str, list[TrackRecord]] = {}
    for t in tracks:
        by.setdefault(t.video_id, []).append(t)
    data = {}
    for vid, ts in by.items():
        frames, boxes, scores = [], [], []
        n = 1 + max(t.frames[-1] for t in ts)
        for t in ts:
            b = np.asarray(t.boxes)
            f = np.asarray(t.frames)
            keep = (np.asarray(t.extra.get("visible", [1.0] * len(b))) >= 0.3) & (f % stride == 0)
            wh = np.tile(b[:, 2:] - b[:, :2], 2)
            boxes.append((b + rng.normal(0, jitter, b.shape) * wh)[keep])
            frames.append(f[keep])
            scores.append(rng.uniform(0.6, 1.0, int(keep.sum())))
        fr = np.repeat(np.arange(0, n, stride), distractors)
        xy = rng.uniform(0, 1, (len(fr), 2)) * size
        wh = rng.uniform(6, 30, (len(fr), 2))
        boxes.append(np.concatenate([xy, xy + wh], 1))
        frames.append(fr)
        scores.append(rng.uniform(0.0, 0.5, len(fr)))
        f = np.concatenate(frames)
        o = np.argsort(f, kind="stable")
        data[vid] = (f[o], np.concatenate(boxes)[o], np.concatenate(scores)[o])
    return data
