"""HOG, HOF and MBH along trajectories, from integral histograms (IJCV 2013, 2.3).

Per frame and scale, every pixel votes into orientation bins (magnitude split
linearly between the two nearest of ``n`` bins over 360°, as the release does);
one integral image over all 33 channels (HOG 8 | HOF 9 | MBHx 8 | MBHy 8) then gives
any cell's histogram with four lookups. A trajectory's N×N patch around its point is
cut into n_σ × n_σ cells; each cell's bins get +ε; each descriptor's per-frame vector
(n_σ² × bins) is L1-normalised then square-rooted (RootSIFT-style, the release's
choice, not L2); the n_τ time cells average the per-frame vectors of their frames.
All trajectories of a frame are handled at once: no loop over points or pixels; the
per-scale buffers (votes, integrals, temporaries) live in a ``HistogramWorkspace``
reused from frame to frame (fresh 10 MB arrays page-fault on every write), with the same
float32 operations in the same order, so the numbers do not change by a bit.
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


class VoteBuffers:
    """Scratch arrays for ``stacked_votes`` on K fields of H×W pixels, reused across calls.

    At 320×240 a call needs ~9 MB of temporaries; allocated afresh every frame and scale,
    their page faults cost as much as the arithmetic.
    """

    def __init__(self, k: int, height: int, width: int):
        plane = height * width
        self.shape = (k, height, width)
        self.mag = np.empty((k, plane), np.float32)
        self.ang = np.empty((k, plane), np.float32)
        self.fbin = np.empty((k, plane), np.float32)
        self.w0 = np.empty((k, plane), np.float32)
        self.w1 = np.empty((k, plane), np.float32)
        # intp: the scatter takes them as they are (an int32 index is converted first)
        self.b0 = np.empty((k, plane), np.intp)
        self.b1 = np.empty((k, plane), np.intp)
        self.mask = np.empty((k, plane), bool)
        self._base: dict[tuple[int, ...], np.ndarray] = {}

    def base(self, offsets: list[int]) -> np.ndarray:
        """(K, H·W) flat index of each field's first channel at each pixel."""
        key = tuple(offsets)
        if key not in self._base:
            _, h, w = self.shape
            plane = np.arange(h * w, dtype=np.intp)
            self._base[key] = plane + np.asarray(offsets, np.intp)[:, None] * (h * w)
        return self._base[key]


def stacked_votes(
    dx: np.ndarray,
    dy: np.ndarray,
    bins: list[int],
    offsets: list[int],
    zero_bin: list[bool],
    min_flow: float,
    out: np.ndarray,
    buffers: VoteBuffers | None = None,
) -> None:
    """``orientation_votes`` for K fields at once (dx, dy: K×H×W) into ``out`` (C×H×W).

    One pass over all fields keeps the per-call overhead off the small scales. Planes
    rather than an H×W×C array: the scatter stays cache-friendly and each plane's
    integral is one SIMD pass. ``out`` must hold zeros where no vote lands. Every
    temporary lives in ``buffers`` (made here when not given); the arithmetic is the
    same float32 operations in the same order either way.
    """
    import cv2

    k, h, w = dx.shape
    plane = h * w
    buf = buffers if buffers is not None and buffers.shape == (k, h, w) else VoteBuffers(k, h, w)
    mag, ang, fbin, w0, w1 = buf.mag, buf.ang, buf.fbin, buf.w0, buf.w1
    b0, b1, mask = buf.b0, buf.b1, buf.mask
    cv2.cartToPolar(
        np.ascontiguousarray(dx, np.float32).reshape(k * h, w),
        np.ascontiguousarray(dy, np.float32).reshape(k * h, w),
        mag.reshape(k * h, w),
        ang.reshape(k * h, w),
        angleInDegrees=True,
    )
    n = np.array([b - 1 if z else b for b, z in zip(bins, zero_bin, strict=True)], np.float32)
    np.multiply(ang, (n / np.float32(360.0))[:, None], out=fbin)
    np.greater_equal(fbin, n[:, None], out=mask)
    np.copyto(fbin, 0, where=mask)  # an angle that rounded to 360°
    lower = np.floor(fbin, out=w0)  # w0 holds floor(fbin) for a moment
    np.copyto(b0, lower, casting="unsafe")
    np.subtract(fbin, lower, out=w1)
    np.multiply(w1, mag, out=w1)  # w1 = (fbin - floor) × mag
    np.subtract(mag, w1, out=w0)  # w0 = mag - w1
    # flat indices into ``out``: (offset + bin) × plane + pixel; bin + 1 wraps to 0
    np.equal(b0, n.astype(np.intp)[:, None] - 1, out=mask)
    np.multiply(b0, plane, out=b0)
    np.add(b0, buf.base(offsets), out=b0)
    np.add(b0, plane, out=b1)
    np.subtract(b1, n.astype(np.intp)[:, None] * plane, out=b1, where=mask)
    for i in np.flatnonzero(zero_bin):  # HOF's zero-motion bin (bin n) for slow pixels
        still = np.less_equal(mag[i], min_flow, out=mask[i])
        np.add(buf.base(offsets)[i], int(n[i]) * plane, out=b0[i], where=still)
        np.copyto(w0[i], 1.0, where=still)
        np.copyto(w1[i], 0.0, where=still)
    flat = out.reshape(-1)
    flat[b0] = w0  # b0 != b1: the two writes never collide
    flat[b1] = w1


def gradients(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centred differences [-1, 0, 1] (Sobel with ksize 1), float32, as the release."""
    import cv2

    return cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=1), cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=1)


class HistogramWorkspace:
    """Every buffer ``integral_histograms`` needs at one frame size, kept between frames.

    One per pyramid scale in a video: at 320×240 the votes and integrals alone are
    2 × 10 MB a frame, and fresh allocations that size page-fault on every write. The
    integral returned is this workspace's own array, overwritten by the next call.
    """

    def __init__(self, height: int, width: int, config: IdtConfig):
        layout = channel_layout(config)
        self.config = config
        self.shape = (height, width)
        self.bins = [layout[k][1] for k in KINDS]
        self.offsets = [layout[k][0] for k in KINDS]
        channels = sum(self.bins)
        self.votes = np.zeros((channels, height, width), np.float32)
        self.integral = np.empty((channels, height + 1, width + 1), np.float32)
        # the K = 4 fields: image gradient (HOG), flow (HOF), gradients of u and v (MBH)
        self.dx = np.empty((len(KINDS), height, width), np.float32)
        self.dy = np.empty((len(KINDS), height, width), np.float32)
        self.buffers = VoteBuffers(len(KINDS), height, width)

    def __call__(self, grey: np.ndarray, flow: np.ndarray) -> np.ndarray:
        import cv2

        dx, dy = self.dx, self.dy
        cv2.Sobel(grey, cv2.CV_32F, 1, 0, dx[0], ksize=1)
        cv2.Sobel(grey, cv2.CV_32F, 0, 1, dy[0], ksize=1)
        np.copyto(dx[1], flow[..., 0])  # u
        np.copyto(dy[1], flow[..., 1])  # v
        cv2.Sobel(dx[1], cv2.CV_32F, 1, 0, dx[2], ksize=1)  # du/dx
        cv2.Sobel(dx[1], cv2.CV_32F, 0, 1, dy[2], ksize=1)  # du/dy
        cv2.Sobel(dy[1], cv2.CV_32F, 1, 0, dx[3], ksize=1)  # dv/dx
        cv2.Sobel(dy[1], cv2.CV_32F, 0, 1, dy[3], ksize=1)  # dv/dy
        self.votes.fill(0)
        stacked_votes(
            dx,
            dy,
            self.bins,
            self.offsets,
            [kind == "hof" for kind in KINDS],
            self.config.min_flow,
            self.votes,
            self.buffers,
        )
        for c in range(len(self.votes)):  # a loop over the 33 histogram channels, not pixels
            cv2.integral(self.votes[c], self.integral[c], sdepth=cv2.CV_32F)
        return self.integral


def integral_histograms(
    grey: np.ndarray,
    flow: np.ndarray,
    config: IdtConfig,
    workspace: HistogramWorkspace | None = None,
) -> np.ndarray:
    """(C×(H+1)×(W+1) float32) integrals of the stacked HOG|HOF|MBHx|MBHy votes.

    ``grey`` (H×W uint8) gives HOG; ``flow`` (H×W×2, camera-compensated) gives HOF,
    and its component gradients give MBHx (of u) and MBHy (of v). With a
    ``workspace`` of this size the result is its buffer (valid until its next call).
    """
    h, w = grey.shape
    if workspace is None or workspace.shape != (h, w) or workspace.config != config:
        workspace = HistogramWorkspace(h, w, config)
    return workspace(grey, flow)


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
    per bin, L1-normalised (an all-zero histogram stays zero), square-rooted.

    The n_σ × n_σ cells of a patch share corners: (n_σ + 1)² integral lookups a channel
    (9, not 16), gathered point-last so the cell sums run over long contiguous rows.
    """
    channels, height, width = integral.shape[0], integral.shape[1] - 1, integral.shape[2] - 1
    corners = patch_corners(points, width, height, config.patch_size)
    nc, n = config.xy_cells, len(points)
    grid = np.arange(nc + 1) * (config.patch_size // nc)
    xs = grid[:, None] + corners[None, :, 0]  # (nc+1, N)
    ys = grid[:, None] + corners[None, :, 1]
    flat = (ys[:, None, :] * (width + 1) + xs[None, :, :]).reshape(-1)  # (y, x, N) raveled
    g = np.take(integral.reshape(channels, -1), flat, axis=1).reshape(channels, nc + 1, nc + 1, n)
    # cell (x, y): I[y1, x1] + I[y0, x0] - I[y1, x0] - I[y0, x1]   -> (C, ny, nx, N)
    sums = g[:, 1:, 1:] + g[:, :-1, :-1] - g[:, 1:, :-1] - g[:, :-1, 1:]
    np.maximum(sums, 0, out=sums)
    sums += np.float32(config.epsilon)
    cells = sums.transpose(3, 2, 1, 0)  # (N, nx, ny, C)
    layout = channel_layout(config)
    vec = np.concatenate(
        [
            cells[..., start : start + bins].reshape(n, nc * nc * bins)
            for start, bins in layout.values()
        ],
        axis=1,
    )
    sizes = list(block_dims(config).values())
    totals = np.add.reduceat(vec, np.cumsum([0, *sizes[:-1]]), axis=1)  # (N, 4) L1 norms
    vec /= np.repeat(_nonzero(totals), sizes, axis=1)
    return np.sqrt(vec, out=vec)


def _nonzero(totals: np.ndarray) -> np.ndarray:
    """``totals`` with 0 replaced by 1: with ``epsilon`` 0 a patch with no votes (flat
    image, constant flow) has an all-zero histogram, which stays zeros (the release's
    GetDesc skips the division when the norm is 0) instead of becoming 0/0 = NaN."""
    return np.where(totals > 0, totals, np.float32(1))


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
