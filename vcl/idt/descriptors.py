"""HOG, HOF and MBH along trajectories, from integral histograms (IJCV 2013, 2.3).

Per frame and scale, every pixel votes into orientation bins (magnitude split
linearly between the two nearest of ``n`` bins over 360°, as the release does);
one integral image over all 33 channels (HOG 8 | HOF 9 | MBHx 8 | MBHy 8) then gives
any cell's histogram with four lookups. A trajectory's N×N patch around its point is
cut into n_σ × n_σ cells; each cell's bins get +ε; each descriptor's per-frame vector
(n_σ² × bins) is L1-normalised then square-rooted (RootSIFT-style, the release's
choice, not L2); the n_τ time cells average the per-frame vectors of their frames.
All trajectories of a frame are handled at once: no loop over points or pixels.
"""

from __future__ import annotations

import numpy as np

from vcl.idt.config import IdtConfig

KINDS = ("hog", "hof", "mbhx", "mbhy")


def channel_layout(config: IdtConfig) -> dict[str, tuple[int, int]]:
    """``kind -> (first channel, bins)`` in the stacked per-pixel histogram."""
    layout, start = {}, 0
    for kind, bins in zip(
        KINDS, (config.hog_bins, config.hof_bins, config.mbh_bins, config.mbh_bins), strict=True
    ):
        layout[kind] = (start, bins)
        start += bins
    return layout


def orientation_votes(
    dx: np.ndarray,
    dy: np.ndarray,
    bins: int,
    out: np.ndarray,
    offset: int = 0,
    zero_bin: bool = False,
    min_flow: float = 0.4,
) -> None:
    """Write each pixel's votes into the planes ``out[offset:offset + bins]`` (C×H×W).

    The angle (degrees, OpenCV's fastAtan2 precision) falls between two of the
    ``bins`` orientation bins (``bins - 1`` with ``zero_bin``); the magnitude is split
    between them linearly. With ``zero_bin`` (HOF), a vector of length <= ``min_flow``
    instead puts a vote of 1 into the last bin.
    """
    stacked_votes(dx[None], dy[None], [bins], [offset], [zero_bin], min_flow, out)


def stacked_votes(
    dx: np.ndarray,
    dy: np.ndarray,
    bins: list[int],
    offsets: list[int],
    zero_bin: list[bool],
    min_flow: float,
    out: np.ndarray,
) -> None:
    """``orientation_votes`` for K fields at once (dx, dy: K×H×W) into ``out`` (C×H×W).

    One pass over all fields keeps the per-call overhead off the small scales. Planes
    rather than an H×W×C array: the scatter stays cache-friendly and each plane's
    integral is one SIMD pass.
    """
    import cv2

    k, h, w = dx.shape
    plane = h * w
    mag, ang = cv2.cartToPolar(
        np.ascontiguousarray(dx, np.float32).reshape(k * h, w),
        np.ascontiguousarray(dy, np.float32).reshape(k * h, w),
        angleInDegrees=True,
    )
    mag, ang = mag.reshape(k, plane), ang.reshape(k, plane)
    n = np.array([b - 1 if z else b for b, z in zip(bins, zero_bin, strict=True)], np.float32)
    fbin = ang * (n[:, None] / np.float32(360.0))
    fbin[fbin >= n[:, None]] = 0  # an angle that rounded to 360°
    lower = np.floor(fbin)
    w1 = (fbin - lower) * mag
    w0 = mag - w1
    b0 = lower.astype(np.int32)  # (int32 indices: C × H × W stays far below 2**31)
    b1 = b0 + 1
    b1[b1 == n.astype(np.int32)[:, None]] = 0
    for i in np.flatnonzero(zero_bin):  # HOF's zero-motion bin
        still = mag[i] <= min_flow
        b0[i][still] = int(n[i])
        w0[i][still] = 1.0
        w1[i][still] = 0.0
    base = np.arange(plane, dtype=np.int32) + np.asarray(offsets, np.int32)[:, None] * plane
    b0 *= plane
    b0 += base
    b1 *= plane
    b1 += base
    flat = out.reshape(-1)
    flat[b0] = w0  # b0 != b1: the two writes never collide
    flat[b1] = w1


def gradients(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centred differences [-1, 0, 1] (Sobel with ksize 1), float32, as the release."""
    import cv2

    return cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=1), cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=1)


def integral_histograms(grey: np.ndarray, flow: np.ndarray, config: IdtConfig) -> np.ndarray:
    """(C×(H+1)×(W+1) float32) integrals of the stacked HOG|HOF|MBHx|MBHy votes.

    ``grey`` (H×W uint8) gives HOG; ``flow`` (H×W×2, camera-compensated) gives HOF,
    and its component gradients give MBHx (of u) and MBHy (of v).
    """
    import cv2

    layout = channel_layout(config)
    h, w = grey.shape
    channels = sum(bins for _, bins in layout.values())
    votes = np.zeros((channels, h, w), np.float32)
    u, v = np.ascontiguousarray(flow[..., 0]), np.ascontiguousarray(flow[..., 1])
    gx, gy = gradients(grey)
    ux, uy = gradients(u)
    vx, vy = gradients(v)
    kinds = ("hog", "hof", "mbhx", "mbhy")
    stacked_votes(
        np.stack([gx, u, ux, vx]),
        np.stack([gy, v, uy, vy]),
        [layout[k][1] for k in kinds],
        [layout[k][0] for k in kinds],
        [False, True, False, False],
        config.min_flow,
        votes,
    )
    integral = np.empty((channels, h + 1, w + 1), np.float32)
    for c in range(channels):  # a loop over the 33 histogram channels, not pixels
        integral[c] = cv2.integral(votes[c], sdepth=cv2.CV_32F)
    return integral


def patch_corners(points: np.ndarray, width: int, height: int, patch: int) -> np.ndarray:
    """Top-left corners (N×2 int) of the N×N patches around rounded points, kept
    inside the frame (the release's GetRect)."""
    xy = np.rint(points).astype(np.int64) - patch // 2
    xy[:, 0] = np.clip(xy[:, 0], 0, width - patch)
    xy[:, 1] = np.clip(xy[:, 1], 0, height - patch)
    return xy


def block_dims(config: IdtConfig) -> dict[str, int]:
    """Per-frame width of each descriptor (n_σ² × bins: 32/36/32/32 by default)."""
    cells = config.xy_cells * config.xy_cells
    return {kind: cells * bins for kind, (_, bins) in channel_layout(config).items()}


def frame_descriptor_matrix(
    integral: np.ndarray, points: np.ndarray, config: IdtConfig
) -> np.ndarray:
    """Per-frame descriptors of the patches around ``points`` (N×2 at this scale).

    Returns (N, D) float32: HOG | HOF | MBHx | MBHy side by side, each with cells
    ordered x-major (x cell, then y cell, then bin, as the release prints them), +ε
    per bin, L1-normalised, square-rooted.
    """
    height, width = integral.shape[1] - 1, integral.shape[2] - 1
    corners = patch_corners(points, width, height, config.patch_size)
    cell = config.patch_size // config.xy_cells
    offsets = np.arange(config.xy_cells) * cell
    x0 = corners[:, 0, None, None] + offsets[None, :, None]  # (N, nx, 1)
    y0 = corners[:, 1, None, None] + offsets[None, None, :]  # (N, 1, ny)
    x0, y0 = np.broadcast_arrays(x0, y0)
    x1, y1 = x0 + cell, y0 + cell
    sums = integral[:, y1, x1] + integral[:, y0, x0] - integral[:, y1, x0] - integral[:, y0, x1]
    sums = np.maximum(sums, 0).transpose(1, 2, 3, 0) + np.float32(config.epsilon)  # N,nx,ny,C
    n = len(points)
    layout = channel_layout(config)
    vec = np.concatenate(
        [sums[..., start : start + bins].reshape(n, -1) for start, bins in layout.values()],
        axis=1,
    )
    sizes = list(block_dims(config).values())
    totals = np.add.reduceat(vec, np.cumsum([0, *sizes[:-1]]), axis=1)  # (N, 4) L1 norms
    vec /= np.repeat(totals, sizes, axis=1)
    return np.sqrt(vec, out=vec)


def frame_descriptors(
    integral: np.ndarray, points: np.ndarray, config: IdtConfig
) -> dict[str, np.ndarray]:
    """``frame_descriptor_matrix`` split into ``kind -> (N, n_σ² × bins)``."""
    matrix = frame_descriptor_matrix(integral, points, config)
    out, start = {}, 0
    for kind, dim in block_dims(config).items():
        out[kind] = matrix[:, start : start + dim]
        start += dim
    return out
