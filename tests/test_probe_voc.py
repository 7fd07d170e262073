"""vcl probe svm's ignored classes (VOC07's difficult images, Goyal et al.'s protocol)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_probe_cli import write_store
from vcl.errors import ExitCode
from vcl.probe import svm_probe


def _on_arc(degrees: list[float]) -> np.ndarray:
    """Unit 2-d points at these angles: the svm scores them by angle alone."""
    a = np.radians(np.array(degrees, np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


# Train: class a near 0°, class b near 90°; w of a points below the arc's start, so on
# 0–90° a's score falls and b's rises with the angle.
TRAIN_DEG = [0, 5, 10, 15, 20, 25, 65, 70, 75, 80, 85, 90]
TRAIN_Y = ["a"] * 6 + ["b"] * 6
# Test, ranked for a: the difficult row (2°, an image of b with only difficult a's),
# then a, b, a, b.
TEST_DEG = [2, 10, 40, 50, 80]
TEST_Y = ["b", "a", "b", "a", "b"]
TEST_IGNORE = ["a", "", "", "", ""]


def test_a_difficult_test_row_is_left_out_of_that_class_ap_only() -> None:
    x_tr, x_te = _on_arc(TRAIN_DEG), _on_arc(TEST_DEG)
    args = (x_tr, np.array(TRAIN_Y), x_te, np.array(TEST_Y), (1.0,))
    kept = svm_probe(*args, ignore_test=np.array(TEST_IGNORE))
    counted = svm_probe(*args)
    a, b = kept["per_class"]["a"], kept["per_class"]["b"]
    # a without the difficult row: + - + -  -> precision 1 and 2/3 at its positives
    assert a["ap"] == pytest.approx((1 + 2 / 3) / 2)
    assert a["ap_exact"] == pytest.approx((1 + 2 / 3) / 2)
    assert a["ap_11point"] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # counted as a negative, ranked first: - + - + -  -> precision 1/2 and 2/4
    assert counted["per_class"]["a"]["ap"] == pytest.approx(0.5)
    assert counted["per_class"]["a"]["ap_11point"] == pytest.approx(0.5)
    # b keeps the row (ranked 80 50 40 10 2: + - + - +): precision 1, 2/3, 3/5
    assert b["ap"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert b == {**counted["per_class"]["b"], "ignored_test": 0}
    assert (a["ignored_train_negatives"], a["ignored_test"], b["ignored_test"]) == (0, 1, 0)
    assert (kept["ignored_train_negatives"], kept["ignored_test"]) == (0, 1)
    assert kept["mAP"] == pytest.approx((a["ap"] + b["ap"]) / 2)
    assert kept["mAP_11point"] == pytest.approx((a["ap_11point"] + b["ap_11point"]) / 2)


def _multilabel(seed: int) -> dict[str, np.ndarray]:
    """Three classes on noisy blobs; 'a' ignored on train rows that look like a but
    are labelled b (as counted negatives they would move a's SVM) and on two test rows."""
    g = np.random.default_rng(seed)
    centres = g.normal(0, 1, (3, 8)) * 2
    names = np.array(["a", "b", "c"])

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = g.integers(0, 3, n)
        x = centres[y] + g.normal(0, 1.0, (n, 8))
        second = g.random(n) < 0.3  # some rows hold two classes
        other = (y + 1 + g.integers(0, 2, n)) % 3
        labels = np.array(
            [
                f"{names[i]}|{names[j]}" if s else names[i]
                for i, j, s in zip(y, other, second, strict=True)
            ]
        )
        return x.astype(np.float32), labels

    x_tr, y_tr = draw(45)
    x_te, y_te = draw(20)
    decoys = np.arange(45, 53)  # a's features, b's label, a ignored
    x_tr = np.concatenate([x_tr, (centres[0] + g.normal(0, 0.5, (8, 8))).astype(np.float32)])
    y_tr = np.concatenate([y_tr, np.full(8, "b")])
    ignore_tr = np.full(len(y_tr), "")
    ignore_tr[decoys] = "a"
    ignore_tr[[3, 7]] = ["a|c", "c"]  # classes the row does not hold
    keep = np.array(["a" not in y for y in y_tr])
    ignore_tr[~keep] = ""  # never ignore a class the row holds
    ignore_te = np.full(len(y_te), "")
    not_a = np.flatnonzero([("a" not in y) for y in y_te])[:2]
    ignore_te[not_a] = "a"
    return {
        "x_tr": x_tr,
        "y_tr": y_tr,
        "x_te": x_te,
        "y_te": y_te,
        "i_tr": ignore_tr,
        "i_te": ignore_te,
    }


def test_ignored_training_rows_are_negatives_and_ignored_test_rows_left_out() -> None:
    """Goyal et al.'s code: train_svm_kfold.py trains a VOC07 "ignore" row as a negative
    of its class; test_svm.py leaves it out of that class's AP."""
    d = _multilabel(3)
    out = svm_probe(
        d["x_tr"], d["y_tr"], d["x_te"], d["y_te"], ignore_train=d["i_tr"], ignore_test=d["i_te"]
    )
    plain = svm_probe(d["x_tr"], d["y_tr"], d["x_te"], d["y_te"])
    # class a: every training row (the decoys as negatives), the test rows not ignoring a
    drop_te = np.array(["a" in s.split("|") for s in d["i_te"]])
    alone = svm_probe(d["x_tr"], d["y_tr"], d["x_te"][~drop_te], d["y_te"][~drop_te])
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("ignored")}  # noqa: E731
    assert strip(out["per_class"]["a"]) == strip(alone["per_class"]["a"])
    # training is untouched by the ignore lists: the same costs by the same CV
    for c in ("a", "b", "c"):
        assert out["per_class"][c]["cv_ap"] == plain["per_class"][c]["cv_ap"]
        assert out["per_class"][c]["cost"] == plain["per_class"][c]["cost"]
    # the two ignored test rows changed a's AP
    assert out["per_class"]["a"]["ap_exact"] != plain["per_class"]["a"]["ap_exact"]
    drop_tr = np.array(["a" in s.split("|") for s in d["i_tr"]])
    assert out["per_class"]["a"]["ignored_train_negatives"] == drop_tr.sum() == 9
    assert out["per_class"]["a"]["ignored_test"] == 2
    # b is what it is without any ignoring
    assert strip(out["per_class"]["b"]) == strip(plain["per_class"]["b"])
    assert out["per_class"]["b"]["ignored_train_negatives"] == 0
    assert out["ignored_train_negatives"] == sum(
        r["ignored_train_negatives"] for r in out["per_class"].values()
    )


# ---------------------------------------------------------------- CLI


def _voc_like(tmp_path: Path, unlabelled: bool = True) -> Path:
    """A store of train + test rows (the arc data above) and a VOC-style manifest: the
    difficult test row lists a under 'difficult'; with ``unlabelled``, one more train
    image (of b's side) has only difficult c's and no label."""
    deg = TRAIN_DEG + [45] * unlabelled + TEST_DEG
    ids = [f"i{k:02d}" for k in range(len(deg))]
    name = "all" if unlabelled else "labelled"
    write_store(tmp_path / f"{name}.zarr", ids, {"arc": _on_arc(deg)})
    lines = []
    for k, i in enumerate(ids):
        line: dict[str, object] = {"schema": "vcl.image/1", "id": i, "path": f"{i}.jpg"}
        t = k - len(TRAIN_DEG) - unlabelled
        if k < len(TRAIN_DEG):
            line |= {"label": TRAIN_Y[k], "split": "train"}
        elif t < 0:
            line |= {"difficult": ["c"], "split": "train"}  # no present class
        else:
            line |= {"label": TEST_Y[t], "split": "test"}
            if TEST_IGNORE[t]:
                line["difficult"] = TEST_IGNORE[t]
        lines.append(json.dumps(line))
    (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / f"{name}.jsonl"


def _svm(invoke, labels: Path, *extra: str):
    store = labels.with_suffix(".zarr")
    if not store.exists():
        store = labels.parent / "all.zarr"
    return invoke(
        "probe", "svm", "--train", store, "--split-field", "split", "--labels", labels,
        "--costs", "1", *extra,
    )  # fmt: skip


def test_cli_ignores_the_difficult_field_by_default(tmp_path: Path, invoke) -> None:
    labels = _voc_like(tmp_path)
    r = _svm(invoke, labels)
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["parameters"]["ignore_field"] == "difficult"
    layer = report["layers"][0]
    assert (layer["train_samples"], layer["test_samples"]) == (13, 5)
    m = layer["metrics"]
    assert m["per_class"]["a"]["ap"] == pytest.approx((1 + 2 / 3) / 2)
    assert (m["ignored_train_negatives"], m["ignored_test"]) == (0, 1)  # c is no training class
    # the field off: the label-less image is unlabelled, as it was before the field
    off = _svm(invoke, labels, "--ignore-field", "")
    assert off.exit_code == ExitCode.DATA
    assert "1 of 18 train/test ids have no label (first: 'i12')" in off.stderr
    # and without it, the difficult row counts as a negative of a
    off = _svm(invoke, _voc_like(tmp_path, unlabelled=False), "--ignore-field", "")
    assert off.exit_code == 0, off.stderr
    report = json.loads(off.stdout)
    m = report["layers"][0]["metrics"]
    assert m["per_class"]["a"]["ap"] == pytest.approx(0.5) and m["ignored_test"] == 0
    assert report["parameters"]["ignore_field"] is None


def test_cli_ignore_field_mistakes(tmp_path: Path, invoke) -> None:
    labels = _voc_like(tmp_path, unlabelled=False)
    hard = tmp_path / "labelled-hard.jsonl"
    hard.write_text(labels.read_text().replace('"difficult"', '"hard"'))
    (tmp_path / "labelled-hard.zarr").symlink_to(tmp_path / "labelled.zarr")
    r = _svm(invoke, hard, "--ignore-field", "hard")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["layers"][0]["metrics"]["ignored_test"] == 1
    r = _svm(invoke, hard)  # the default field is absent: silently nothing ignored
    assert r.exit_code == 0 and "warning" not in r.stderr
    assert json.loads(r.stdout)["layers"][0]["metrics"]["ignored_test"] == 0
    r = _svm(invoke, hard, "--ignore-field", "tricky")  # named, and on no id: a typo?
    assert r.exit_code == 0, r.stderr
    assert "has a 'tricky' field: no class is ignored" in r.stderr
    store = tmp_path / "labelled.zarr"
    r = invoke("probe", "svm", "--train", store, "--test", store, "--ignore-field", "hard")
    assert r.exit_code == ExitCode.USAGE and "--ignore-field hard is read from --labels" in r.stderr
    both = tmp_path / "labelled-both.jsonl"
    both.write_text(labels.read_text().replace('"difficult": "a"', '"difficult": "b"'))
    (tmp_path / "labelled-both.zarr").symlink_to(store)
    r = _svm(invoke, both)
    assert r.exit_code == ExitCode.DATA
    assert "'b' both as a label and ignored" in r.stderr and "labelled-both.jsonl" in r.stderr


def test_cli_costs_goyal_is_their_voc07_grid_in_their_order(tmp_path: Path, invoke) -> None:
    """Goyal et al.'s scripts pass 1e-7 ... 100 and parse_cost_list appends 0.5^4 ...
    0.5^19: 26 costs, cross-validated in that order (ties go to the first)."""
    labels = _voc_like(tmp_path)
    store = tmp_path / "all.zarr"
    r = invoke(
        "probe", "svm", "--train", store, "--split-field", "split", "--labels", labels,
        "--costs", "goyal",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    expected = [1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]
    expected += [1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256, 1 / 512, 1 / 1024, 1 / 2048]
    expected += [2.0**-12, 2.0**-13, 2.0**-14, 2.0**-15, 2.0**-16, 2.0**-17, 2.0**-18, 2.0**-19]
    assert report["parameters"]["costs"] == pytest.approx(expected, rel=0, abs=0)
    for r in report["layers"][0]["metrics"]["per_class"].values():
        assert len(r["cv_ap"]) == 26
        valid = [-1.0 if v is None else v for v in r["cv_ap"]]
        assert r["cost"] == expected[valid.index(max(valid))]


def test_cli_without_labels_file_applies_and_reports_no_ignore_field(
    tmp_path: Path, invoke
) -> None:
    """Stores carry labels, never difficult classes: without --labels the report says no
    field was applied, and multi-label (VOC-like) targets get a warning."""
    train, test = tmp_path / "tr.zarr", tmp_path / "te.zarr"
    multi = [y if k % 3 else f"{y}|c" for k, y in enumerate(TRAIN_Y)]
    write_store(train, [f"t{k}" for k in range(12)], {"arc": _on_arc(TRAIN_DEG)}, multi)
    write_store(test, [f"s{k}" for k in range(5)], {"arc": _on_arc(TEST_DEG)}, TEST_Y)
    r = invoke("probe", "svm", "--train", train, "--test", test, "--costs", "1")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["parameters"]["ignore_field"] is None
    assert "multi-label targets without --labels: no 'difficult' classes are read" in r.stderr
    single = tmp_path / "single.zarr"
    write_store(single, [f"t{k}" for k in range(12)], {"arc": _on_arc(TRAIN_DEG)}, TRAIN_Y)
    r = invoke("probe", "svm", "--train", single, "--test", test, "--costs", "1")
    assert r.exit_code == 0 and "warning" not in r.stderr
    assert json.loads(r.stdout)["parameters"]["ignore_field"] is None
