"""Improved Dense Trajectories (Wang & Schmid, ICCV 2013) on numpy and OpenCV.

Modules, one job each: ``config`` (the published parameters), ``sampling`` (dense
grid on a scale pyramid), ``tracking`` (moving points with median-filtered flow,
pruning finished trajectories), ``descriptors`` (HOG/HOF/MBH from integral
histograms), ``humans`` (boxes masked out of the camera fit), ``textformat`` (the
C++ release's text lines), ``pipeline`` (one video, start to end).

The store ``vcl.idt/1`` holds one row per trajectory, one group per video, with the
columns of :data:`HEADER` and :data:`BLOCKS`.
"""

from __future__ import annotations

SCHEMA = "vcl.idt/1"
# the ten header fields of the release, in its order
HEADER = (
    "frame",
    "mean_x",
    "mean_y",
    "var_x",
    "var_y",
    "length",
    "scale",
    "x_pos",
    "y_pos",
    "t_pos",
)
# descriptor blocks and their widths with the default parameters
BLOCKS = {"traj": 30, "hog": 96, "hof": 108, "mbhx": 96, "mbhy": 96}
