"""Trajectories as arrays: move every point of a scale at once, prune finished ones.

Points move with the (median-filtered) flow sampled at their rounded position, and
stop when they leave the frame. A trajectory that reaches L steps is kept only if it
is neither static (both position std devs below ``min_var``), nor erratic (a std dev
above ``max_var``, or one step longer than ``max_dis`` and ``max_step_fraction`` of
the whole length), nor — with camera compensation only — following the camera alone
(no step of the compensated flow longer than ``min_camera_disp`` px): the release's
``IsValid``, and DenseTrackStab's ``IsCameraMotion`` (Wang & Schmid ICCV 2013, sec.
2.2), which DenseTrack, the release without stabilisation, does not have: without
compensation that rule would drop slow but real motion (steps of at most 1 px).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vcl.idt.config import IdtConfig
from vcl.idt.descriptors import block_dims, frame_descriptor_matrix


@dataclass
class Tracks:
    """The live trajectories of one scale (n of them), in that scale's pixels."""

    points: np.ndarray  # (n, L+1, 2) positions; valid up to index ``age``
    disp: np.ndarray  # (n, L, 2) camera-compensated flow at each step
    age: np.ndarray  # (n,) steps done so far (0..L)
    desc: np.ndarray  # (n, n_tau, D) sums of per-frame HOG|HOF|MBHx|MBHy descriptors

    @classmethod
    def empty(cls, config: IdtConfig) -> Tracks:
        L, nt = config.track_length, config.t_cells
        return cls(
            points=np.zeros((0, L + 1, 2), np.float32),
            disp=np.zeros((0, L, 2), np.float32),
            age=np.zeros(0, np.int64),
            desc=np.zeros((0, nt, sum(block_dims(config).values())), np.float32),
        )

    def __len__(self) -> int:
        return len(self.age)

    def current(self) -> np.ndarray:
        """(n, 2) the last point of each trajectory."""
        return self.points[np.arange(len(self)), self.age]

    def select(self, mask: np.ndarray) -> Tracks:
        return Tracks(self.points[mask], self.disp[mask], self.age[mask], self.desc[mask])

    def add(self, new_points: np.ndarray) -> Tracks:
        """Start a trajectory at each of ``new_points`` (M×2)."""
        m = len(new_points)
        if m == 0:
            return self
        points = np.zeros((m, *self.points.shape[1:]), np.float32)
        points[:, 0] = new_points
        return Tracks(
            np.concatenate([self.points, points]),
            np.concatenate([self.disp, np.zeros((m, *self.disp.shape[1:]), np.float32)]),
            np.concatenate([self.age, np.zeros(m, np.int64)]),
            np.concatenate([self.desc, np.zeros((m, *self.desc.shape[1:]), np.float32)]),
        )

    def compact(self, keep: np.ndarray, new_points: np.ndarray) -> Tracks:
        """The trajectories where ``keep`` (n,) holds, in order, then new ones starting at
        ``new_points`` (M×2): ``select`` then ``add`` with one copy of each array."""
        m, k = int(np.count_nonzero(keep)), len(new_points)
        if k == 0 and m == len(self):
            return self

        def grown(values: np.ndarray) -> np.ndarray:
            out = np.empty((m + k, *values.shape[1:]), values.dtype)
            out[:m] = values[keep]  # (faster than np.compress into ``out``)
            out[m:] = 0
            return out

        points = grown(self.points)
        points[m:, 0] = new_points
        return Tracks(points, grown(self.disp), grown(self.age), grown(self.desc))


def step(
    tracks: Tracks,
    track_flow: np.ndarray,
    compensated_flow: np.ndarray,
    integral: np.ndarray,
    config: IdtConfig,
) -> np.ndarray:
    """Advance every trajectory one frame, in place; return which are still inside (n,).

    ``track_flow`` (H×W×2) moves the points; ``compensated_flow`` (both
    median-filtered) records the step the camera does not explain; ``integral`` is the
    previous frame's integral histogram, sampled around the points *before* they move.
    Trajectories leaving the frame are left untouched and marked False: the caller
    drops them with the finished ones in a single ``compact``.
    """
    n = len(tracks)
    if n == 0:
        return np.ones(0, bool)
    h, w = track_flow.shape[:2]
    p = tracks.current()
    xi = np.clip(np.rint(p[:, 0]).astype(np.int64), 0, w - 1)
    yi = np.clip(np.rint(p[:, 1]).astype(np.int64), 0, h - 1)
    moved = p + track_flow[yi, xi]
    inside = (moved[:, 0] > 0) & (moved[:, 0] < w) & (moved[:, 1] > 0) & (moved[:, 1] < h)
    if inside.all():
        rows = np.arange(n)
    else:
        rows = np.flatnonzero(inside)
        p, xi, yi, moved = p[inside], xi[inside], yi[inside], moved[inside]
    age = tracks.age[rows]
    tracks.disp[rows, age] = compensated_flow[yi, xi]
    stride = config.track_length // config.t_cells
    cell = age // stride
    used = cell < config.t_cells  # the release ignores frames past n_tau × stride
    per_frame = frame_descriptor_matrix(integral, p, config)  # (n, D)
    if used.all():
        tracks.desc[rows, cell] += per_frame
    else:
        tracks.desc[rows[used], cell[used]] += per_frame[used]
    tracks.points[rows, age + 1] = moved
    tracks.age[rows] = age + 1
    return inside


def camera_only(disp_len: np.ndarray, config: IdtConfig) -> np.ndarray:
    """(n,) trajectories no compensated step (``disp_len``: n×L, px) takes beyond
    ``min_camera_disp``: the camera explains their motion. Only with compensation: with
    the raw flow a small step is slow motion, not the camera's."""
    if not config.compensate:
        return np.zeros(len(disp_len), bool)
    return disp_len.max(axis=1, initial=0.0) <= config.min_camera_disp


def finish(
    tracks: Tracks, scale: float, config: IdtConfig
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Rows for the trajectories of ``tracks`` (all of length L), and their keep mask.

    Positions are mapped to the frame's pixels (× ``scale``). Header: mean x/y, std
    x/y (the release's "var" columns), length (sum of step lengths); ``traj`` is the
    compensated step sequence divided by the sum of its step lengths; descriptor
    blocks are time-cell averages.
    """
    n, L = len(tracks), config.track_length
    traj = tracks.points.astype(np.float64) * scale  # (n, L+1, 2)
    mean = traj.mean(axis=1)
    std = np.sqrt(((traj - mean[:, None]) ** 2).mean(axis=1))
    steps = np.linalg.norm(np.diff(traj, axis=1), axis=2)  # (n, L)
    length = steps.sum(axis=1)
    longest = steps.max(axis=1) if L else np.zeros(n)
    static = (std[:, 0] < config.min_var) & (std[:, 1] < config.min_var)
    erratic = (std > config.max_var).any(axis=1) | (
        (longest > config.max_dis) & (longest > config.max_step_fraction * length)
    )
    disp = tracks.disp.astype(np.float64) * scale
    disp_len = np.linalg.norm(disp, axis=2)
    keep = ~static & ~erratic & ~camera_only(disp_len, config)
    total = disp_len.sum(axis=1, keepdims=True)
    shape = disp / np.where(total > 0, total, 1)[:, :, None]
    stride = L // config.t_cells
    rows = {
        "mean_x": mean[:, 0],
        "mean_y": mean[:, 1],
        "var_x": std[:, 0],
        "var_y": std[:, 1],
        "length": length,
        "scale": np.full(n, scale),
        "traj": shape.reshape(n, 2 * L),
    }
    start = 0
    for kind, dim in block_dims(config).items():
        rows[kind] = (tracks.desc[:, :, start : start + dim] / stride).reshape(n, -1)
        start += dim
    rows = {k: np.asarray(v, np.float32) for k, v in rows.items()}
    return rows, keep
