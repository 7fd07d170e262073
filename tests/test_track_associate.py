"""IoU association (numba kernels): exactly the sequential greedy on the dense IoU matrix."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vcl.boxes import iou_fast
from vcl.track import match_kernel
from vcl.track.associate import associate, greedy_pairs
from vcl.track.iou import greedy_match, greedy_match_reference


def matched(a: np.ndarray, b: np.ndarray, theta: float) -> list[tuple[int, int]]:
    rows, cols = associate(a, b, theta)
    assert rows.dtype == cols.dtype == np.int64
    got = sorted(zip(rows.tolist(), cols.tolist(), strict=True))
    assert len({i for i, _ in got}) == len(got) == len({j for _, j in got})  # one-to-one
    return got


def random_boxes(rng: np.random.Generator, n: int, extent: int, integer: bool) -> np.ndarray:
    """n boxes (xyxy) of widely varying size; integer corners make many exact IoU ties."""
    xy = rng.uniform(-5, extent, (n, 2))
    wh = np.exp(rng.uniform(np.log(0.5), np.log(extent / 2), (n, 2)))
    boxes = np.concatenate([xy, xy + wh], 1)
    return np.round(boxes) if integer else boxes


def problem(rng: np.random.Generator, n_a: int, n_p: int, integer: bool, extent: int = 40):
    """Tracks and proposals like the tracker's: half the proposals near a track, exact
    duplicates shuffled in (equal IoUs on one row and on one column), degenerate boxes."""
    a = random_boxes(rng, n_a, extent, integer)
    near = min(n_a, n_p // 2)
    b = np.concatenate(
        [a[:near] + rng.integers(-2, 3, (near, 4)), random_boxes(rng, n_p - near, extent, True)]
    )
    if len(b) > 2:
        b[0] = [3, 3, 3, 9]  # zero width
        b[1] = [5, 7, 2, 7]  # inverted and zero height
    if len(a) > 1:
        a[-1] = [-10, -10, extent + 10, extent + 10]  # frame-sized
    b = rng.permutation(np.concatenate([b, b[: len(b) // 3]]))
    a = rng.permutation(np.concatenate([a, a[: len(a) // 4]]))
    return a, b


THETAS = [0.35, 0.0, 0.5, 0.9, 0.999, float(np.nextafter(np.float32(1), 0))]


@pytest.mark.parametrize("theta", THETAS)
def test_associate_equals_plain_greedy(theta: float) -> None:
    rng = np.random.default_rng(7)
    for trial in range(30):
        n_a, n_p = rng.integers(0, 60, 2) if trial % 10 else (151, 67)
        a, b = problem(rng, n_a, n_p, integer=trial % 2 == 0)
        assert matched(a, b, theta) == sorted(greedy_match_reference(iou_fast(a, b), theta)), trial


def test_associate_on_the_benchmark_scale_and_identical_boxes() -> None:
    """300 proposals × ~360 tracks over a 768×576 frame; then all boxes identical (all ties)."""
    rng = np.random.default_rng(3)
    a = random_boxes(rng, 361, 700, integer=False)
    b = np.concatenate([a[:270] + rng.normal(0, 3, (270, 4)), random_boxes(rng, 30, 700, True)])
    assert matched(a, b, 0.35) == sorted(greedy_match_reference(iou_fast(a, b), 0.35))
    same = np.tile([[10.0, 20.0, 30.0, 50.0]], (9, 1))
    assert matched(same, same[:5], 0.5) == [(i, i) for i in range(5)]  # ties by (row, col)


def test_empty_and_non_finite_inputs() -> None:
    box = np.array([[0, 0, 10, 10]], np.float32)
    for a, b in [(np.zeros((0, 4)), box), (box, np.zeros((0, 4))), ([], [])]:
        rows, cols = associate(a, b, 0.35)
        assert rows.shape == cols.shape == (0,)
    weird = np.array(
        [[0, 0, 10, 10], [np.nan, 0, 10, 10], [0, 0, np.inf, 10], [-np.inf, 0, 10, 10],
         [1, 1, 11, 11], [2e38, 2e38, 3e38, 3e38], [1e-30, 1e-30, 2e-30, 2e-30]],
        np.float32,
    )  # fmt: skip
    with np.errstate(invalid="ignore", over="ignore"):
        for theta in (0.0, 0.35):
            assert matched(weird, weird[::-1], theta) == sorted(
                greedy_match_reference(iou_fast(weird, weird[::-1]), theta)
            )


def test_negative_threshold_takes_every_pair() -> None:
    """θ < 0: pairs with IoU 0 pass too, the dense path (no candidate can be pruned)."""
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 9, 100, True), random_boxes(rng, 7, 100, True)
    assert matched(a, b, -0.5) == sorted(greedy_match_reference(iou_fast(a, b), -0.5))
    assert len(matched(a, b, -0.5)) == 7


boxes_strategy = arrays(
    np.float32, st.tuples(st.integers(0, 12), st.just(4)), elements=st.integers(0, 12)
)


@settings(max_examples=150, deadline=None)
@given(a=boxes_strategy, b=boxes_strategy, theta=st.sampled_from([0.0, 0.1, 0.35, 0.6, 0.99]))
def test_associate_equals_plain_greedy_hypothesis(a, b, theta) -> None:
    """Small integer grids: zero-area and inverted boxes, duplicates, exact IoU ties."""
    assert matched(a, b, theta) == sorted(greedy_match_reference(iou_fast(a, b), theta))


def test_candidates_are_exactly_the_pairs_above_threshold() -> None:
    rng = np.random.default_rng(11)
    for trial in range(30):
        a, b = problem(rng, 97, 63, integer=trial % 2 == 0, extent=300)
        a, b = np.float32(a), np.float32(b)
        theta = np.float32(rng.choice([0.0, 0.1, 0.35, 0.7]))
        overlap = iou_fast(a, b)
        rows, cols, values = match_kernel.candidates_above(a, b, theta)
        assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == len(rows)  # once
        found = np.zeros(overlap.shape, bool)
        found[rows, cols] = True
        np.testing.assert_array_equal(found, overlap > theta)
        # bit-identical to the dense matrix: threshold calls and ties agree
        np.testing.assert_array_equal(values.view(np.uint32), overlap[rows, cols].view(np.uint32))


def test_greedy_pairs_order_and_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n_a, n_p = rng.integers(0, 9, 2)
        overlap = rng.random((n_a, n_p)).round(1)  # many ties
        rows, cols = greedy_match(overlap, 0.3)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        got = sorted(zip(rows.tolist(), cols.tolist(), strict=True))
        assert got == sorted(greedy_match_reference(overlap, 0.3))
    # any sign, ±0: every given pair competes, in decreasing value then (row, column)
    values = np.float32([0.0, -0.0, -1.5, 2.0, -0.0, 2.0, 0.5])
    rows = np.array([0, 1, 2, 3, 2, 4, 1])
    cols = np.array([0, 1, 2, 3, 4, 3, 0])
    taken_r, taken_c = greedy_pairs(rows, cols, values, 5, 5)
    got = list(zip(taken_r.tolist(), taken_c.tolist(), strict=True))
    assert got == sequential(rows, cols, values)
    # −0 ties with +0: the lower row wins
    taken_r, _ = greedy_pairs([0, 1], [0, 0], np.float32([-0.0, 0.0]), 2, 1)
    assert taken_r.tolist() == [0]


def sequential(rows, cols, values) -> list[tuple[int, int]]:
    order = sorted(range(len(rows)), key=lambda t: (-float(values[t]), rows[t], cols[t]))
    out, used_r, used_c = [], set(), set()
    for t in order:
        if rows[t] not in used_r and cols[t] not in used_c:
            used_r.add(rows[t])
            used_c.add(cols[t])
            out.append((int(rows[t]), int(cols[t])))
    return out


@pytest.mark.parametrize("spread", [False, True])
def test_greedy_with_more_than_2_32_pairs(spread: bool) -> None:
    """Pair indices above 32 bits; with values spread over the whole float32 range the
    keys would need > 64 bits, so values are ranked first. Same greedy either way."""
    rng = np.random.default_rng(4)
    n = 80_000  # 6.4e9 possible pairs: 33-bit indices
    rows = rng.integers(0, n, 500)
    cols = np.concatenate([rng.integers(0, n, 450), rng.integers(0, 5, 50)])
    values = rng.integers(0, 20, 500).astype(np.float32) / 20  # ties
    if spread:
        values[::7] = np.float32(-3e38)
        values[1::7] = np.float32(3e38)
    taken_r, taken_c = greedy_pairs(rows, cols, values, n, n)
    got = list(zip(taken_r.tolist(), taken_c.tolist(), strict=True))
    assert got == sequential(rows, cols, values)


def test_radix_sort_agrees_with_numpy() -> None:
    rng = np.random.default_rng(5)
    for n in (0, 1, 2, 17, 1000):
        for keys in (
            rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) * np.uint64(2),
            rng.integers(0, 7, n).astype(np.uint64) << np.uint64(40),  # constant digits
        ):
            np.testing.assert_array_equal(match_kernel.radix_sort(keys, 64), np.sort(keys))
            np.testing.assert_array_equal(
                match_kernel.radix_sort(keys >> np.uint64(20), 44), np.sort(keys >> np.uint64(20))
            )


def test_kernels_cache_from_a_read_only_install(tmp_path: Path) -> None:
    """cache=True where nothing can be written beside the module (a read-only install):
    numba falls back to the user's cache directory, and a second process loads from it.

    Read-only is made two ways: no write permission, and (for root, who ignores that)
    a plain file where numba wants the ``__pycache__`` folder.
    """
    pkg = tmp_path / "ro" / "ro_kernel"
    pkg.mkdir(parents=True)
    shutil.copy(Path(match_kernel.__file__), pkg / "__init__.py")
    (pkg / "__pycache__").write_text("not a folder")
    for p in (pkg / "__init__.py", pkg / "__pycache__", pkg, pkg.parent):
        p.chmod(stat.S_IREAD | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONDONTWRITEBYTECODE="1")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import numpy as np, ro_kernel;"
        "k = ro_kernel._bit_length(np.uint64(5));"
        "print(k, sum(ro_kernel._bit_length.stats.cache_hits.values()))"
    )
    try:
        hits = []
        for _ in range(2):  # compile and write the cache, then load it
            out = subprocess.run(
                [sys.executable, "-c", code, str(tmp_path / "ro")],
                env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            result, hit = out.stdout.rsplit(maxsplit=1)
            assert result == "3"
            hits.append(int(hit))
        assert list((tmp_path / "cache").rglob("*_bit_length*.nbi"))
        assert hits == [0, 1]  # compiled, then loaded by the second process
    finally:
        for p in (pkg.parent, pkg, pkg / "__pycache__", pkg / "__init__.py"):
            p.chmod(stat.S_IRWXU)
