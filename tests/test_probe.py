"""Probes against plain references: sklearn SVM protocol, APs, kNN, few-shot."""

from __future__ import annotations

import numpy as np
import pytest

from vcl.errors import DataError
from vcl.probe import (
    LinearParams,
    column_stats,
    exact_ap,
    fewshot_draw,
    fewshot_probe,
    interpolated_ap,
    join_labels,
    knn_probe,
    knn_scores,
    linear_probe,
    standardise,
    svm_probe,
    voc07_ap,
)
from vcl.seed import rng


def blobs(n_per: int, n_classes: int, dim: int, spread: float, seed: int):
    g = np.random.default_rng(seed)
    centres = g.normal(0, 1, (n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per)
    x = centres[y] + spread * g.normal(0, 1, (len(y), dim))
    order = g.permutation(len(y))
    return x[order].astype(np.float32), y[order]


def test_voc07_11point_ap_hand_computed() -> None:
    # ranked: P N P N N  (2 positives) -> recall/precision after each: (.5,1) (.5,.5)
    # (1,.667) (1,.5) (1,.4); max precision at recall >= t: t<=.5 -> 1, t>.5 -> 2/3
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    pos = np.array([True, False, True, False, False])
    assert voc07_ap(scores, pos) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # exact AP = mean precision at each positive = (1 + 2/3) / 2
    assert exact_ap(scores, pos) == pytest.approx((1 + 2 / 3) / 2)
    # all positives first: both APs are 1
    assert voc07_ap(scores, np.array([True, True, False, False, False])) == 1.0


def test_all_point_interpolated_ap_hand_computed() -> None:
    """Goyal et al.'s AP; the 11-point headline differed from it by up to ±0.05."""
    # ranked - + - - + + - - - - - +: positives at ranks 2, 5, 6, 12 with precision
    # 1/2, 2/5, 1/2, 1/3; best precision at that rank or later: 1/2, 1/2, 1/2, 1/3
    hits = np.array([0, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1], bool)
    scores = -np.arange(12.0)
    assert interpolated_ap(scores, hits) == pytest.approx((3 * 0.5 + 1 / 3) / 4)
    assert voc07_ap(scores, hits) != pytest.approx(interpolated_ap(scores, hits))
    assert np.isnan(interpolated_ap(scores, np.zeros(12, bool)))
    rng = np.random.default_rng(0)
    for _ in range(50):
        s, t = rng.normal(size=40), rng.random(40) < 0.3
        if t.any():
            assert interpolated_ap(s, t) == pytest.approx(_area_under_envelope(s, t))
            assert interpolated_ap(s, t) >= exact_ap(s, t) - 1e-12


def _area_under_envelope(scores: np.ndarray, positives: np.ndarray) -> float:
    """Plain loops: the precision envelope from the right, summed over recall steps."""
    ranked = [bool(positives[i]) for i in sorted(range(len(scores)), key=lambda i: -scores[i])]
    n_pos, tp, recall, precision = sum(ranked), 0, [0.0], [0.0]
    for rank, hit in enumerate(ranked, 1):
        tp += hit
        recall.append(tp / n_pos)
        precision.append(tp / rank)
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    return sum((recall[i] - recall[i - 1]) * precision[i] for i in range(1, len(recall)))


def test_svm_equals_sklearn_protocol() -> None:
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import LinearSVC

    x, y = blobs(14, 3, 9, 1.6, seed=1)
    xt, yt = blobs(7, 3, 9, 1.6, seed=2)
    # a second label on some samples: multi-label targets
    labels = np.array([str(v) for v in y], dtype=object)
    labels[:5] = [f"{v}|extra" for v in y[:5]]
    labels_t = np.array([str(v) for v in yt], dtype=object)
    labels_t[:4] = [f"{v}|extra" for v in yt[:4]]
    costs = (0.01, 0.1, 1.0, 10.0)
    report = svm_probe(x, labels.astype(str), xt, labels_t.astype(str), costs=costs)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    xtn = xt / np.linalg.norm(xt, axis=1, keepdims=True)
    exact = []
    for c in ["0", "1", "2", "extra"]:
        t = np.array([c in v.split("|") for v in labels]).astype(int)
        tt = np.array([c in v.split("|") for v in labels_t])

        def make(cost: float) -> LinearSVC:
            return LinearSVC(C=cost, class_weight={1: 2, 0: 1}, loss="squared_hinge",
                             max_iter=2000, random_state=0)  # fmt: skip

        cv = [
            cross_val_score(make(cost), xn, t, cv=3, scoring="average_precision").mean()
            for cost in costs
        ]
        best = int(np.argmax(cv))
        scores = make(costs[best]).fit(xn, t).decision_function(xtn)
        got = report["per_class"][c]
        assert got["cost"] == costs[best]
        np.testing.assert_allclose(got["cv_ap"], cv, rtol=1e-5)
        assert got["ap_exact"] == pytest.approx(average_precision_score(tt, scores), rel=1e-5)
        assert got["ap"] == pytest.approx(interpolated_ap(scores, tt), rel=1e-5)
        assert got["ap_11point"] == pytest.approx(voc07_ap(scores, tt), rel=1e-5)
        exact.append(average_precision_score(tt, scores))
    assert report["mAP_exact"] == pytest.approx(np.mean(exact), rel=1e-5)
    assert report["ap_headline"] == "interpolated_all_points"


def test_svm_says_which_costs_were_not_cross_validated(caplog) -> None:
    """A class with one training positive cannot be validated (its cost is the smallest)
    and one with two is validated on 2 folds, not 3: both were silent."""
    import logging

    x, y = blobs(14, 3, 9, 1.6, seed=1)
    xt, yt = blobs(7, 3, 9, 1.6, seed=2)
    labels = np.array([str(v) for v in y], dtype=object)
    labels[0] = f"{labels[0]}|rare"
    labels[1:3] = [f"{v}|pair" for v in labels[1:3]]
    labels_t = np.array([f"{v}|rare|pair" if i < 3 else str(v) for i, v in enumerate(yt)])
    with caplog.at_level(logging.WARNING, logger="vcl"):
        report = svm_probe(x, labels.astype(str), xt, labels_t, costs=(0.01, 0.1, 1.0))
    per_class = report["per_class"]
    assert per_class["rare"]["cv_folds"] == 0 and per_class["rare"]["cost"] == 0.01
    assert per_class["pair"]["cv_folds"] == 2 and per_class["0"]["cv_folds"] == 3
    assert "not cross-validated: 'rare'" in caplog.text
    assert "fewer folds: 'pair'" in caplog.text


def test_svm_repeats_whatever_numpy_global_state() -> None:
    """liblinear's order used to come from numpy's global RNG: unconverged fits (here
    5 iterations at C = 100) gave another mAP on every run of the same command."""
    x, y = blobs(20, 3, 9, 2.5, seed=3)
    xt, yt = blobs(10, 3, 9, 2.5, seed=4)
    runs = []
    for state in (0, 1, 2):
        np.random.seed(state)
        report = svm_probe(x, y.astype(str), xt, yt.astype(str), costs=(100.0,), max_iter=5)
        runs.append([c["ap_exact"] for c in report["per_class"].values()])
    assert runs[0] == runs[1] == runs[2]


def test_linear_separable_and_shuffled() -> None:
    x, y = blobs(60, 4, 12, 0.3, seed=3)
    xt, yt = blobs(40, 4, 12, 0.3, seed=3)  # same centres (same seed), new draws... same data
    g = np.random.default_rng(9)
    xt = xt + 0.05 * g.normal(size=xt.shape).astype(np.float32)
    params = LinearParams(epochs=20, step_epochs=8)
    good = linear_probe(x, y, xt, yt, 4, params, seed=0)
    assert good["top1"] >= 0.99
    assert good["top5"] is None  # 4 classes
    shuffled = g.permutation(y)
    x2, y2 = blobs(60, 4, 12, 0.3, seed=4)
    bad = linear_probe(x, shuffled, x2, y2, 4, params, seed=0)
    assert bad["top1"] < 0.45  # chance is 0.25


def _old_standardising(x_train):
    """The linear probe's standardising before: whole-matrix float32 numpy."""
    return x_train.mean(0), x_train.std(0) + 1e-6


def test_column_stats_and_standardise_against_float64(monkeypatch) -> None:
    import vcl.probe

    g = np.random.default_rng(2)
    x = (5 + 3 * g.normal(size=(1001, 37))).astype(np.float32)
    x[:, 3] = 7.25  # a constant column: std inf, standardised to 0
    ref_mean, ref_std = x.astype(np.float64).mean(0), x.astype(np.float64).std(0)
    ref_std[3] = np.inf
    for block in (vcl.probe.STATS_BLOCK, 37 * 100):  # one block; eleven, the last short
        monkeypatch.setattr(vcl.probe, "STATS_BLOCK", block)
        mean, std = column_stats(x)
        assert mean.dtype == std.dtype == np.float32
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-6)
        np.testing.assert_allclose(std, ref_std, rtol=1e-6)
        xs = standardise(x, mean, std)
        assert xs.dtype == np.float32 and xs.shape == x.shape
        np.testing.assert_allclose(xs, (x - ref_mean) / ref_std, rtol=1e-5, atol=1e-5)
        old_mean, old_std = _old_standardising(x)
        np.testing.assert_allclose(xs, (x - old_mean) / old_std, rtol=1e-4, atol=1e-4)


def test_linear_probe_ignores_a_column_constant_in_training() -> None:
    """A ReLU channel that never fires on the training set but fires at test time was
    divided by a 1e-6 std, and its untrained random weight turned it into random logits
    (top-1 0.975 -> 0.16 in the audit's case)."""
    x, y = blobs(90, 4, 12, 0.3, seed=4)
    x, y, xt, yt = x[:240], y[:240], x[240:], y[240:]
    x = np.concatenate([x, np.zeros((len(x), 1), np.float32)], 1)  # dead in training
    quiet = np.concatenate([xt, np.zeros((len(xt), 1), np.float32)], 1)
    firing = quiet.copy()
    firing[:, -1] = 0.01
    params = LinearParams(epochs=6, step_epochs=3)
    a = linear_probe(x, y, quiet, yt, 4, params, seed=0)
    b = linear_probe(x, y, firing, yt, 4, params, seed=0)
    assert a["top1"] >= 0.9 and b["top1"] == a["top1"]


def test_linear_probe_as_with_the_whole_matrix_standardised(monkeypatch) -> None:
    import vcl.probe

    x, y = blobs(110, 5, 24, 1.5, seed=7)
    x, y, xt, yt = x[:400] * 4 + 2, y[:400], x[400:] * 4 + 2, y[400:]
    params = LinearParams(epochs=6, step_epochs=3)
    new = linear_probe(x, y, xt, yt, 5, params, seed=1)
    monkeypatch.setattr(vcl.probe, "column_stats", _old_standardising)
    monkeypatch.setattr(vcl.probe, "standardise", lambda a, m, s: ((a - m) / s).astype(np.float32))
    old = linear_probe(x, y, xt, yt, 5, params, seed=1)
    assert new["top1"] == old["top1"] and new["top5"] == old["top5"]
    assert 0.5 < new["top1"] < 1.0  # learnt, not trivially
    assert new["final_train_loss"] == pytest.approx(old["final_train_loss"], rel=1e-4)


def test_linear_probe_copies_the_training_matrix_once() -> None:
    """std(0) and the standardised copy used to hold ~2.4 copies of the matrix at once;
    now its statistics are read a block at a time and one float32 copy is made."""
    import tracemalloc

    g = np.random.default_rng(3)
    x = g.normal(size=(20_000, 256)).astype(np.float32)
    y = g.integers(0, 4, 20_000)
    xt, yt = x[:100].copy(), y[:100]
    params = LinearParams(epochs=1)
    linear_probe(x[:64], y[:64], xt, yt, 4, params, seed=0)  # imports torch first
    tracemalloc.start()
    try:
        linear_probe(x, y, xt, yt, 4, params, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 1.3 * x.nbytes, peak / x.nbytes


def test_knn_equals_numpy_brute_force() -> None:
    g = np.random.default_rng(5)
    x = g.normal(size=(53, 7)).astype(np.float32)
    y = g.integers(0, 6, 53)
    q = g.normal(size=(17, 7)).astype(np.float32)
    k, tau = 11, 0.07
    weighted, majority = knn_scores(x, y, q, 6, k, tau)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    sims = qn @ xn.T
    ref_w = np.zeros((17, 6))
    ref_m = np.zeros((17, 6))
    for i in range(17):
        nn = np.argsort(-sims[i])[:k]
        for j in nn:
            ref_w[i, y[j]] += np.exp(sims[i, j] / tau)
            ref_m[i, y[j]] += 1
    np.testing.assert_allclose(weighted, ref_w, rtol=1e-4)
    np.testing.assert_array_equal(majority, ref_m)
    yq = g.integers(0, 6, 17)
    report = knn_probe(x, y, q, yq, 6, k, tau)
    assert report["top1"] == pytest.approx((ref_w.argmax(1) == yq).mean())
    assert report["majority_top1"] == pytest.approx((ref_m.argmax(1) == yq).mean())


def test_fewshot_draws_reproducible_and_balanced() -> None:
    y = np.repeat(np.arange(5), [7, 9, 30, 12, 20])
    a = fewshot_draw(y, 5, 5, rng(0, 5, 1))
    b = fewshot_draw(y, 5, 5, rng(0, 5, 1))
    c = fewshot_draw(y, 5, 5, rng(0, 5, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.bincount(y[a], minlength=5).tolist() == [5] * 5
    assert len(np.unique(a)) == 25
    x, yy = blobs(12, 3, 6, 0.2, seed=6)
    xt, yt = blobs(5, 3, 6, 0.2, seed=6)
    r1 = fewshot_probe(x, yy, xt, yt, ["a", "b", "c"], shots=(1, 5), repeats=3, seed=4)
    r2 = fewshot_probe(x, yy, xt, yt, ["a", "b", "c"], shots=(1, 5), repeats=3, seed=4)
    assert r1 == r2 and r1["shots"]["5"]["mean"] > 0.9
    with pytest.raises(DataError, match="fewer than 20 shots"):
        fewshot_probe(x, yy, xt, yt, ["a", "b", "c"], shots=(20,), repeats=1)


def test_join_labels_by_id_and_missing() -> None:
    ids = np.array(["b", "a", "c"])
    assert join_labels(ids, {"a": "x", "b": "y", "c": "z"}, "train", "f").tolist() == [
        "y",
        "x",
        "z",
    ]
    with pytest.raises(DataError, match="2 of 3 train ids have no label \\(first: 'b', 'c'\\)"):
        join_labels(ids, {"a": "x"}, "train", "f")


def test_class_matrix_agrees_with_a_row_by_row_reading() -> None:
    # every row read on its own: names split on "|", unknown names and "" hold nothing
    from vcl.probe import class_matrix

    gen = np.random.default_rng(0)
    classes = ["cat", "dog", "person", "tv"]
    pool = [*classes, "unknown", ""]
    values = np.array(
        ["|".join(gen.choice(pool, gen.integers(0, 4))) for _ in range(500)], dtype=object
    )
    expected = np.array([[c in set(v.split("|")) for c in classes] for v in values], bool)
    got = class_matrix(values, classes)
    assert got.dtype == bool and got.shape == (500, 4)
    np.testing.assert_array_equal(got, expected)
    assert class_matrix(np.array([], dtype=object), classes).shape == (0, 4)
    np.testing.assert_array_equal(class_matrix(np.array(["tv|cat"]), classes), [[1, 0, 0, 1]])
