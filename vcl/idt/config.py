"""The published IDT parameters (DenseTrackStab's defaults) in one place."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class IdtConfig:
    """Every knob of the algorithm; the defaults are the C++ release's (DenseTrackStab).

    Where the release and the IJCV 2013 paper differ, the default follows the release,
    since published IDT features were computed with it: its Farneback median-filters
    every pyramid level of both flows, the one moving the points and the compensated
    one HOF, MBH and the shape read, with a 5×5 kernel (``MedianBlurFlow(flow, 5)``);
    ``median_size=3`` is the paper's 3×3 kernel M (1: no filter).

    Deliberate deviation: with ``init_gap`` > 1 empty cells are re-sampled every
    ``init_gap`` frames, as the option says. The release resets its frame counter
    after every frame, so it never re-samples when the gap is above 1 (with the
    default 1 both re-sample every frame).
    """

    # dense sampling (Wang et al. IJCV 2013, sec. 2.1)
    step: int = 5  # W: grid step in px at every scale
    scales: int = 8  # at most this many spatial scales...
    scale_stride: float = math.sqrt(2)  # ...each 1/stride of the previous
    quality: float = 0.001  # keep points whose min eigenvalue > quality × frame maximum
    init_gap: int = 1  # resample every init_gap frames (see above: not the release's)
    # tracking (sec. 2.2)
    track_length: int = 15  # L
    median_size: int = 5  # k×k median on both flows at every scale (the release's)
    min_var: float = math.sqrt(3)  # static: both position std devs below this (px)
    max_var: float = 50.0  # erratic: a position std dev above this (px)
    max_dis: float = 20.0  # erratic: largest step above this px...
    max_step_fraction: float = 0.7  # ...and above this fraction of the whole length
    min_camera_disp: float = 1.0  # camera-only (with compensate): steps never exceed this (px)
    # descriptors (sec. 2.3)
    patch_size: int = 32  # N
    xy_cells: int = 2  # n_sigma
    t_cells: int = 3  # n_tau
    epsilon: float = 0.05  # added to every bin of a cell's histogram
    min_flow: float = 0.4  # HOF: flow at most this long goes to the zero bin
    hog_bins: int = 8
    hof_bins: int = 9  # 8 orientations + the zero-motion bin
    mbh_bins: int = 8
    # flow and camera motion (Wang & Schmid ICCV 2013, sec. 2)
    flow: str = "farneback"  # farneback (the release's) | dis
    dis_preset: str = "fast"
    compensate: bool = True  # camera-motion compensation
    detector: str = "orb"  # keypoints for the homography (SURF is not in pip OpenCV)
    max_features: int = 1000
    ransac_threshold: float = 1.0
    min_matches: int = 50  # fit only with more matches than this...
    min_inliers: int = 25  # ...and keep the fit only with more inliers than this

    def validate(self) -> None:
        """Raise ValueError naming the first bad parameter."""
        checks = [
            (self.step >= 1, "step must be >= 1"),
            (self.scales >= 1, "scales must be >= 1"),
            (self.scale_stride > 1, "scale stride must be > 1"),
            (0 < self.quality < 1, "quality must be in (0, 1)"),
            (self.init_gap >= 1, "init gap must be >= 1"),
            (self.track_length >= 2, "track length must be >= 2"),
            (self.median_size in (1, 3, 5), "median size must be 1, 3 or 5"),
            (
                self.t_cells >= 1 and self.track_length >= self.t_cells,
                "need 1 <= t-cells <= track length",
            ),
            (
                self.xy_cells >= 1 and self.patch_size % self.xy_cells == 0,
                "patch size must be a multiple of xy-cells",
            ),
            (self.patch_size >= 2, "patch size must be >= 2"),
            (self.epsilon >= 0, "epsilon must be >= 0"),
            (
                min(self.hog_bins, self.mbh_bins) >= 2 and self.hof_bins >= 3,
                "need >= 2 orientation bins (HOF: >= 3 with its zero bin)",
            ),
            (self.flow in ("farneback", "dis"), "flow must be farneback or dis"),
            (
                self.dis_preset in ("ultrafast", "fast", "medium"),
                "dis preset must be ultrafast, fast or medium",
            ),
            (self.detector in ("orb", "sift"), "detector must be orb or sift"),
            (0 < self.max_step_fraction <= 1, "max step fraction must be in (0, 1]"),
        ]
        for ok, problem in checks:
            if not ok:
                raise ValueError(problem)

    @property
    def dims(self) -> dict[str, int]:
        """Widths of the descriptor blocks (30/96/108/96/96 by default)."""
        cells = self.xy_cells * self.xy_cells * self.t_cells
        return {
            "traj": 2 * self.track_length,
            "hog": self.hog_bins * cells,
            "hof": self.hof_bins * cells,
            "mbhx": self.mbh_bins * cells,
            "mbhy": self.mbh_bins * cells,
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
