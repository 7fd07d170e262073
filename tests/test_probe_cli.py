"""vcl probe through the CLI: reports, labels joined by id, split field, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.conftest import jsonl
from vcl.errors import ExitCode
from vcl.io.store import StoreWriter

CLASSES = ["cat", "dog", "owl"]


def write_store(path: Path, ids: list[str], layers: dict[str, np.ndarray], labels=None) -> None:
    from vcl.io.features import SCHEMA, feature_columns

    with StoreWriter(path, SCHEMA, {}) as w:
        w.define_columns(
            feature_columns(
                0, labels is not None, layers={k: v.shape[1] for k, v in layers.items()}
            )
        )
        cols = {"id": np.array(ids)} | {f"features_{k}": v for k, v in layers.items()}
        if labels is not None:
            cols["label"] = np.array(labels)
        w.append_group("all", **cols)
        w.set_attrs(layers=list(layers), default_layer=list(layers)[-1])


def dataset(tmp_path: Path) -> dict[str, object]:
    """Separable 'good' layer, noise 'bad' layer; train 36 / test 18 samples."""
    g = np.random.default_rng(0)
    centres = g.normal(0, 1, (3, 10)) * 3
    y = np.repeat(np.arange(3), 18)
    good = (centres[y] + 0.3 * g.normal(size=(54, 10))).astype(np.float32)
    bad = g.normal(size=(54, 6)).astype(np.float32)
    ids = [f"s{i:02d}" for i in range(54)]
    split = np.where(np.arange(54) % 3 == 0, "test", "train")
    tr, te = split == "train", split == "test"
    pick = lambda m: [i for i, k in zip(ids, m, strict=True) if k]  # noqa: E731
    labels = [CLASSES[v] for v in y]
    write_store(tmp_path / "train.zarr", pick(tr), {"good": good[tr], "bad": bad[tr]})
    write_store(tmp_path / "test.zarr", pick(te), {"good": good[te], "bad": bad[te]})
    write_store(
        tmp_path / "all.zarr",
        ids,
        {"good": good, "bad": bad},
        labels=[labels[i] for i in range(54)],
    )
    order = g.permutation(54)  # the manifest in another order: labels go by id
    (tmp_path / "labels.jsonl").write_text(
        "".join(
            json.dumps({"id": ids[i], "label": labels[i], "split": str(split[i])}) + "\n"
            for i in order
        )
    )
    return {"ids": ids, "labels": labels}


def test_linear_knn_svm_fewshot_reports(tmp_path: Path, invoke) -> None:
    dataset(tmp_path)
    common = ["--train", tmp_path / "train.zarr", "--test", tmp_path / "test.zarr"]
    common += ["--labels", tmp_path / "labels.jsonl"]
    r = invoke("probe", "linear", *common, "--epochs", "15", "--jsonl")
    assert r.exit_code == 0, r.stderr
    lines = jsonl(r.stdout)
    assert [x["layer"] for x in lines] == ["good", "bad"]
    assert lines[0]["metrics"]["top1"] == 1.0 and lines[0]["dim"] == 10
    assert lines[1]["metrics"]["top1"] < 0.7
    r = invoke("probe", "knn", *common, "--k", "5")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["method"] == "knn" and report["layers"][0]["metrics"]["top1"] == 1.0
    (tmp_path / "knn.json").write_text(r.stdout)
    r = invoke("probe", "svm", *common, "--layer", "good", "--costs", "0.1,1")
    assert r.exit_code == 0, r.stderr
    svm = json.loads(r.stdout)["layers"][0]["metrics"]
    assert svm["mAP"] == 1.0 and set(svm["per_class"]) == set(CLASSES)
    assert svm["per_class"]["cat"]["cost"] in (0.1, 1.0)
    (tmp_path / "svm.json").write_text(r.stdout)
    r = invoke("probe", "fewshot", *common, "--shots", "1,5", "--repeats", "3", "--layer", "good")
    assert r.exit_code == 0, r.stderr
    shots = json.loads(r.stdout)["layers"][0]["metrics"]["shots"]
    assert set(shots) == {"1", "5"} and len(shots["5"]["runs"]) == 3
    r = invoke("probe", "compare", tmp_path / "knn.json", tmp_path / "svm.json")
    assert r.exit_code == 0, r.stderr
    table = json.loads(r.stdout)
    assert table["columns"] == ["good", "bad"]
    assert [row["probe"].split(" (")[0] for row in table["rows"]] == ["knn top1", "svm mAP"]


def test_split_field_and_store_labels(tmp_path: Path, invoke) -> None:
    dataset(tmp_path)
    r = invoke(
        "probe", "knn", "--train", tmp_path / "all.zarr", "--split-field", "split",
        "--labels", tmp_path / "labels.jsonl", "--k", "5", "--layer", "good",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    layer = json.loads(r.stdout)["layers"][0]
    assert (layer["train_samples"], layer["test_samples"]) == (36, 18)
    assert layer["metrics"]["top1"] == 1.0


def test_labels_and_split_from_stdin(tmp_path: Path, invoke) -> None:
    """``--labels -`` was "no such labels file", though every other reader takes stdin;
    with --split-field it is read once for both fields."""
    dataset(tmp_path)
    manifest = (tmp_path / "labels.jsonl").read_text()
    r = invoke(
        "probe", "knn", "--train", tmp_path / "all.zarr", "--split-field", "split",
        "--labels", "-", "--k", "5", "--layer", "good", input=manifest,
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    layer = json.loads(r.stdout)["layers"][0]
    assert (layer["train_samples"], layer["test_samples"]) == (36, 18)
    assert layer["metrics"]["top1"] == 1.0


def test_bad_inputs(tmp_path: Path, invoke) -> None:
    dataset(tmp_path)
    g = np.random.default_rng(1)
    ids = [f"s{i:02d}" for i in range(54)]
    write_store(
        tmp_path / "wide.zarr", ids[:10], {"good": g.normal(size=(10, 11)).astype(np.float32)}
    )
    lab = ["--labels", tmp_path / "labels.jsonl"]
    r = invoke(
        "probe",
        "linear",
        "--train",
        tmp_path / "train.zarr",
        "--test",
        tmp_path / "wide.zarr",
        "--layer",
        "good",
        *lab,
    )
    assert r.exit_code == ExitCode.DATA and "11 dimensions" in r.stderr
    r = invoke(
        "probe",
        "linear",
        "--train",
        tmp_path / "train.zarr",
        "--test",
        tmp_path / "wide.zarr",
        "--layer",
        "bad",
        *lab,
    )
    assert r.exit_code == ExitCode.DATA and "no layer 'bad'" in r.stderr
    (tmp_path / "few.jsonl").write_text(json.dumps({"id": "s01", "label": "cat"}) + "\n")
    r = invoke(
        "probe",
        "knn",
        "--train",
        tmp_path / "train.zarr",
        "--test",
        tmp_path / "test.zarr",
        "--labels",
        tmp_path / "few.jsonl",
    )
    assert r.exit_code == ExitCode.DATA
    assert "35 of 36 train ids have no label (first: 's02', 's04', 's05')" in r.stderr
    r = invoke(
        "probe",
        "fewshot",
        "--train",
        tmp_path / "train.zarr",
        "--test",
        tmp_path / "test.zarr",
        *lab,
        "--shots",
        "13",
    )
    assert r.exit_code == ExitCode.DATA and "fewer than 13 shots" in r.stderr
    r = invoke(
        "probe",
        "svm",
        "--train",
        tmp_path / "train.zarr",
        "--test",
        tmp_path / "test.zarr",
        *lab,
        "--costs",
        "x",
    )
    assert r.exit_code == ExitCode.USAGE
    r = invoke("probe", "knn", "--train", tmp_path / "nope.zarr", "--test", tmp_path / "test.zarr")
    assert r.exit_code == ExitCode.NO_INPUT
    for res in (r,):
        assert "Traceback" not in res.stderr


def test_npy_pairs_need_ids_and_join_by_them(tmp_path: Path, invoke) -> None:
    """Two .npy arrays are both numbered 0, 1, …: joining labels by those ids would give
    row i of train and test one label. Refused; --train-ids/--test-ids join correctly."""
    g = np.random.default_rng(2)
    centres = g.normal(0, 1, (2, 8)) * 4
    y_tr, y_te = np.repeat([0, 1], 10), np.array([1, 1, 1, 0, 0, 0])
    np.save(tmp_path / "tr.npy", (centres[y_tr] + 0.1 * g.normal(size=(20, 8))).astype("f4"))
    np.save(tmp_path / "te.npy", (centres[y_te] + 0.1 * g.normal(size=(6, 8))).astype("f4"))
    (tmp_path / "tr.txt").write_text("".join(f"a{i}\n" for i in range(20)))
    (tmp_path / "te.txt").write_text("".join(f"b{i}\n" for i in range(6)))
    rows = [{"id": f"a{i}", "label": CLASSES[v]} for i, v in enumerate(y_tr)]
    rows += [{"id": f"b{i}", "label": CLASSES[v]} for i, v in enumerate(y_te)]
    (tmp_path / "lab.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    npy = ["--train", tmp_path / "tr.npy", "--test", tmp_path / "te.npy"]
    r = invoke("probe", "knn", *npy, "--labels", tmp_path / "lab.jsonl", "--k", "3")
    assert r.exit_code == ExitCode.USAGE and "--train-ids" in r.stderr
    ids = ["--train-ids", tmp_path / "tr.txt", "--test-ids", tmp_path / "te.txt"]
    r = invoke("probe", "knn", *npy, *ids, "--labels", tmp_path / "lab.jsonl", "--k", "3")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["layers"][0]["metrics"]["top1"] == 1.0


def test_nonfinite_single_class_and_empty_are_refused(tmp_path: Path, invoke) -> None:
    dataset(tmp_path)
    g = np.random.default_rng(3)
    x = g.normal(size=(10, 4)).astype(np.float32)
    x[7, 2] = np.nan
    ids = [f"s{i:02d}" for i in range(10)]
    write_store(tmp_path / "nan.zarr", ids, {"good": x}, labels=["cat", "dog"] * 5)
    one = ["cat"] * 10
    write_store(tmp_path / "one.zarr", ids, {"good": np.nan_to_num(x)}, labels=one)
    write_store(tmp_path / "empty.zarr", [], {"good": np.zeros((0, 4), np.float32)})
    test = ["--test", tmp_path / "nan.zarr"]
    for method in ("linear", "svm", "fewshot", "knn"):
        extra = (
            ["--epochs", "1"] if method == "linear" else ["--shots", "1"] * (method == "fewshot")
        )
        r = invoke("probe", method, "--train", tmp_path / "nan.zarr", *test, *extra)
        assert r.exit_code == ExitCode.DATA and "NaN or inf" in r.stderr and "'s07'" in r.stderr
        r = invoke(
            "probe",
            method,
            "--train",
            tmp_path / "one.zarr",
            "--test",
            tmp_path / "one.zarr",
            *extra,
        )
        assert r.exit_code == ExitCode.DATA, (method, r.stderr)
        assert "one.zarr" in r.stderr and "'cat'" in r.stderr
        r = invoke("probe", method, "--train", tmp_path / "empty.zarr", *test, *extra)
        assert r.exit_code == ExitCode.DATA and "no train samples" in r.stderr
    pair = ["--train", tmp_path / "train.zarr", "--test", tmp_path / "test.zarr"]
    r = invoke("probe", "fewshot", *pair, "--labels", tmp_path / "labels.jsonl", "--shots", "50")
    assert r.exit_code == ExitCode.DATA and "labels.jsonl" in r.stderr
