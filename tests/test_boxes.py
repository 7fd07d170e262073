"""vcl.boxes against hand-computed cases and torchvision.ops as a reference."""

from __future__ import annotations

import numpy as np
import pytest

from vcl import boxes as B


def random_boxes(rng: np.random.Generator, n: int, size: float = 50.0) -> np.ndarray:
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, size / 2, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def test_area_and_iou_by_hand() -> None:
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 25]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    assert B.area(a).tolist() == [100, 200]
    expected = np.array([[50 / 150, 0, 1], [50 / 250, 0, 25 / 275]])
    assert np.allclose(B.iou(a, b), expected)
    assert B.iou(a, np.zeros((0, 4))).shape == (2, 0)
    assert B.area(np.array([[5, 5, 3, 9]])).tolist() == [0]  # degenerate box
    assert B.iou(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]])).tolist() == [[0]]


def test_overlap_of_smaller_by_hand() -> None:
    big = np.array([[0.0, 0, 10, 10]])
    inside = np.array([[2.0, 2, 6, 6]])  # 16 px², all of it in big: IoU 0.16, overlap 1
    half = np.array([[5.0, 0, 15, 10]])  # 50 of its 100 px² in big
    apart = np.array([[20.0, 20, 30, 30]])
    flat = np.array([[3.0, 3, 3, 8]])  # no area
    got = B.overlap_of_smaller(np.concatenate([inside, half, apart, flat]), big)
    np.testing.assert_allclose(got[:, 0], [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(B.overlap_of_smaller(big, inside), [[1.0]])  # symmetric
    assert B.iou(inside, big)[0, 0] == pytest.approx(0.16)


def test_iou_matches_torchvision() -> None:
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(3)
    a, b = random_boxes(rng, 37), random_boxes(rng, 23)
    ref = ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert np.allclose(B.iou(a, b), ref, atol=1e-12)
    assert np.allclose(B.iou_fast(a, b), ref, atol=1e-5)
    assert B.iou_fast(np.zeros((0, 4)), b).shape == (0, 23)


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_nms_matches_torchvision(threshold: float) -> None:
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(int(threshold * 10))
    boxes, scores = random_boxes(rng, 211, 80), rng.permutation(211).astype(float)  # no ties
    ref = ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold).numpy()
    assert B.nms(boxes, scores, threshold).tolist() == ref.tolist()


def test_nms_by_hand() -> None:
    boxes = np.array(
        [
            [0, 0, 10, 10],  # 0: score .9
            [1, 0, 11, 10],  # 1: IoU 9/11 = .82 with 0 -> dropped at .5
            [20, 20, 30, 30],  # 2: apart
            [0, 0, 10, 20],  # 3: IoU .5 with 0 -> kept at .5 (only > threshold drops)
        ],
        float,
    )
    scores = np.array([0.9, 0.8, 0.3, 0.5])
    assert B.nms(boxes, scores, 0.5).tolist() == [0, 3, 2]
    assert B.nms(boxes, scores, 0.49).tolist() == [0, 2]
    assert B.nms(boxes, scores, 1.0).tolist() == [0, 1, 3, 2]  # off: score order
    assert B.nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_clip_scale_and_area_filter() -> None:
    boxes = np.array([[-5, 3, 20, 40], [10, 10, 12, 11], [50, 50, 60, 60]], float)
    clipped = B.clip(boxes, 17, 11)
    assert clipped.tolist() == [[0, 3, 17, 11], [10, 10, 12, 11], [17, 11, 17, 11]]
    kept, scores = B.filter_min_area(clipped, np.array([1.0, 2.0, 3.0]), 2.0)
    assert kept.tolist() == [[0, 3, 17, 11], [10, 10, 12, 11]] and scores.tolist() == [1, 2]
    assert B.min_area_mask(clipped, 2.01).tolist() == [True, False, False]
    # a 171×97 frame resized to 50×28: sx = 50/171, sy = 28/97; to_source undoes it
    box = np.array([[17.1, 9.7, 171.0, 97.0]])
    small = B.scale(box, 50 / 171, 28 / 97)
    assert np.allclose(small, [[5, 2.8, 50, 28]])
    assert np.allclose(B.to_source(small, (50 / 171, 28 / 97)), box)
    assert B.from_xywh(np.array([[3, 4, 5, 6]])).tolist() == [[3, 4, 8, 10]]
    with pytest.raises(ValueError):
        B.area(np.zeros((3, 5)))


def test_row_and_fast_forms_agree_with_the_matrices() -> None:
    rng = np.random.default_rng(4)
    a = rng.uniform(0, 50, (40, 4))
    a[:, 2:] += a[:, :2]
    b = rng.uniform(0, 50, (40, 4))
    b[:, 2:] += b[:, :2]
    a[3] = [5, 5, 5, 9]  # no area
    np.testing.assert_allclose(B.intersection_rows(a, b), np.diag(B.intersection(a, b)))
    np.testing.assert_allclose(B.iou_rows(a, b), np.diag(B.iou(a, b)))
    # float32: differences of coordinates up to 100 lose ~1e-5 px
    np.testing.assert_allclose(B.intersection_fast(a, b), B.intersection(a, b), atol=2e-3)
    np.testing.assert_allclose(B.area_fast(a), B.area(a), rtol=1e-6)
    assert B.iou_rows(a[3:4], a[3:4])[0] == 0.0  # empty union
