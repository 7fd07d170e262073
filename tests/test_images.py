"""vcl images: images manifests from files and folders, and from a VOC devkit folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import jsonl
from vcl.errors import ExitCode

# ImageSets/Main of a three-class VOC: one or two spaces, as the devkit's files have
CLASS_FILES = {
    "cat_trainval.txt": "000005 -1\n000007  1\n000009  0\n",
    "dog_trainval.txt": "000005  1\n000007 -1\n000009 -1\n",
    "person_trainval.txt": "000005  1\n000007  0\n000009 -1\n",
    "cat_test.txt": "000001  1\n000004 -1\n",
    "dog_test.txt": "000001  0\n000004  0\n",
    "person_test.txt": "000001 -1\n000004 -1\n",
    # not read: the image lists, and sets other than trainval and test
    "trainval.txt": "000005\n000007\n000009\n",
    "cat_train.txt": "000005 -1\n",
}
# what the files above say, by hand
EXPECTED = [
    {"id": "000001", "label": "cat", "difficult": "dog", "split": "test"},
    {"id": "000004", "difficult": "dog", "split": "test"},
    {"id": "000005", "label": "dog|person", "split": "train"},
    {"id": "000007", "label": "cat", "difficult": "person", "split": "train"},
    {"id": "000009", "difficult": "cat", "split": "train"},
]


def write_jpeg(path: Path, seed: int) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (11, 17, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)


def fake_voc(root: Path, files: dict[str, str] = CLASS_FILES, extra: tuple[str, ...] = ()) -> Path:
    """root/VOCdevkit/VOC2007 with JPEGImages (the five images, and ``extra``) and
    ImageSets/Main holding ``files``."""
    voc = root / "VOCdevkit" / "VOC2007"
    for k, image in enumerate(["000001", "000004", "000005", "000007", "000009", *extra]):
        write_jpeg(voc / "JPEGImages" / f"{image}.jpg", k)
    main = voc / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for name, text in files.items():
        (main / name).write_text(text)
    return voc


def test_voc_manifest_holds_the_class_files_labels(tmp_path: Path, invoke) -> None:
    voc = fake_voc(tmp_path, extra=("000099",))
    out = tmp_path / "voc07.jsonl"
    r = invoke("images", "--voc", voc, "-o", out)
    assert r.exit_code == 0, r.stderr
    lines = jsonl(out.read_text())
    assert [{k: v for k, v in x.items() if k not in ("schema", "path")} for x in lines] == EXPECTED
    assert {x["schema"] for x in lines} == {"vcl.image/1"}
    # paths relative to the manifest's folder
    assert [x["path"] for x in lines] == [
        f"VOCdevkit/VOC2007/JPEGImages/{x['id']}.jpg" for x in EXPECTED
    ]
    assert "1 images are in no trainval or test class file" in r.stderr and "'000099'" in r.stderr
    assert "5 images listed (2 test, 3 train); 4 with difficult classes, 2 with no " in r.stderr
    again = invoke("images", "--voc", voc, "-o", out)  # refused before any reading
    assert again.exit_code == ExitCode.CANNOT_CREATE and "warning" not in again.stderr


def test_voc_manifest_reads_as_vcl_embed_reads_images(tmp_path: Path, invoke) -> None:
    from vcl.cli.embed import _input_kind
    from vcl.io.manifest import ImageRecord, read_records

    voc = fake_voc(tmp_path)
    r = invoke("images", "--voc", voc)  # stdout: absolute paths
    assert r.exit_code == 0, r.stderr
    (tmp_path / "stdout.jsonl").write_text(r.stdout)
    assert _input_kind(tmp_path / "stdout.jsonl") == "images"
    records = read_records(tmp_path / "stdout.jsonl", ImageRecord)
    assert [Path(x.path) for x in records] == [
        voc / "JPEGImages" / f"{e['id']}.jpg" for e in EXPECTED
    ]
    assert [x.extra.get("difficult") for x in records] == [e.get("difficult") for e in EXPECTED]


def test_voc_manifest_feeds_the_svm_probe_difficult_images(tmp_path: Path, invoke) -> None:
    """The manifest is the probe's --labels: its difficult classes are ignored."""
    from tests.test_probe_cli import write_store

    voc = fake_voc(tmp_path)
    assert invoke("images", "--voc", voc, "-o", tmp_path / "voc.jsonl").exit_code == 0
    ids = [e["id"] for e in EXPECTED]
    feats = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    write_store(tmp_path / "voc.zarr", ids, {"pool": feats})
    r = invoke(
        "probe", "svm", "--train", tmp_path / "voc.zarr", "--split-field", "split",
        "--labels", tmp_path / "voc.jsonl", "--costs", "1",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    m = json.loads(r.stdout)["layers"][0]["metrics"]
    # train 000005 dog|person, 000007 cat (person difficult), 000009 (cat difficult)
    per = {c: (v["ignored_train_negatives"], v["ignored_test"]) for c, v in m["per_class"].items()}
    assert per == {"cat": (1, 0), "dog": (0, 2), "person": (1, 0)}
    assert m["per_class"]["dog"]["ap"] is None  # test dog rows all difficult: no positive


@pytest.mark.parametrize(
    ("name", "text", "lineno"),
    [
        ("dog_trainval.txt", "000005  1\n000007 -1 x\n000009 -1\n", 2),
        ("cat_test.txt", "000001  1\n\n000004 2\n", 3),
        ("person_trainval.txt", "000005\n000007  0\n000009 -1\n", 1),
    ],
)
def test_a_malformed_line_is_named(tmp_path: Path, invoke, name, text, lineno) -> None:
    voc = fake_voc(tmp_path, {**CLASS_FILES, name: text})
    out = tmp_path / "voc07.jsonl"
    r = invoke("images", "--voc", voc, "-o", out)
    assert r.exit_code == ExitCode.DATA
    main = voc / "ImageSets" / "Main"
    bad = text.splitlines()[lineno - 1].strip()
    assert r.stderr == (
        f"error: {main / name}: line {lineno}: expected '<image id> <1|0|-1>', got {bad!r}\n"
    )
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_missing_folders_and_files(tmp_path: Path, invoke) -> None:
    voc = fake_voc(tmp_path)
    out = tmp_path / "voc07.jsonl"
    (voc / "JPEGImages" / "000004.jpg").unlink()  # a test image never extracted
    r = invoke("images", "--voc", voc, "-o", out)
    assert r.exit_code == ExitCode.DATA
    assert r.stderr.startswith(
        f"error: {voc / 'JPEGImages'}: 1 images of ImageSets/Main (test split) have no file "
        "here (first: '000004')"
    )
    write_jpeg(voc / "JPEGImages" / "000004.jpg", 0)
    (voc / "ImageSets" / "Main" / "person_test.txt").unlink()
    r = invoke("images", "--voc", voc, "-o", out)
    assert r.exit_code == ExitCode.DATA and "has no person_test.txt" in r.stderr
    (voc / "ImageSets" / "Main" / "person_test.txt").write_text("000001 -1\n")
    r = invoke("images", "--voc", voc, "-o", out)
    assert r.exit_code == ExitCode.DATA
    assert f"error: {voc / 'ImageSets' / 'Main' / 'person_test.txt'}: lists 1 images" in r.stderr
    assert "(first: '000004')" in r.stderr
    for name in CLASS_FILES:
        (voc / "ImageSets" / "Main" / name).unlink(missing_ok=True)
    r = invoke("images", "--voc", voc, "-o", out)
    assert r.exit_code == ExitCode.DATA and "holds no <class>_trainval.txt" in r.stderr
    (voc / "ImageSets" / "Main").rmdir()
    r = invoke("images", "--voc", voc, "-o", out)
    assert r.exit_code == ExitCode.NO_INPUT
    assert r.stderr.startswith(f"error: {voc}: no ImageSets/Main folder; give a VOC year folder")
    r = invoke("images", "--voc", tmp_path / "nowhere", "-o", out)
    assert r.exit_code == ExitCode.NO_INPUT and "no such VOC folder" in r.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_an_image_listed_twice_or_in_both_sets(tmp_path: Path, invoke) -> None:
    twice = {**CLASS_FILES, "cat_test.txt": "000001  1\n000004 -1\n000001 -1\n"}
    voc = fake_voc(tmp_path / "a", twice)
    r = invoke("images", "--voc", voc)
    assert r.exit_code == ExitCode.DATA and "line 3: image '000001' is listed twice" in r.stderr
    both = {k: v + "000005 -1\n" if k.endswith("_test.txt") else v for k, v in CLASS_FILES.items()}
    voc = fake_voc(tmp_path / "b", both)
    r = invoke("images", "--voc", voc)
    assert r.exit_code == ExitCode.DATA and "image '000005' is in both" in r.stderr
    assert r.stdout == ""


def test_files_and_folders(tmp_path: Path, invoke) -> None:
    for name in ("b.jpg", "a.png", ".hidden.jpg", "notes.txt"):
        (tmp_path / "im").mkdir(exist_ok=True)
        if name.endswith((".jpg", ".png")):
            write_jpeg(tmp_path / "im" / name, 1)
        else:
            (tmp_path / "im" / name).write_text("x")
    write_jpeg(tmp_path / "one" / "c.jpg", 2)
    r = invoke("images", tmp_path / "im", tmp_path / "one" / "c.jpg", "-o", tmp_path / "m.jsonl")
    assert r.exit_code == 0, r.stderr
    lines = jsonl((tmp_path / "m.jsonl").read_text())
    assert lines == [
        {"schema": "vcl.image/1", "id": "a", "path": "im/a.png"},
        {"schema": "vcl.image/1", "id": "b", "path": "im/b.jpg"},
        {"schema": "vcl.image/1", "id": "c", "path": "one/c.jpg"},
    ]
    write_jpeg(tmp_path / "two" / "a.jpg", 3)
    r = invoke("images", tmp_path / "im", tmp_path / "two")
    assert r.exit_code == ExitCode.DATA and "id 'a' is also the id of" in r.stderr
    r = invoke("images", tmp_path / "im" / "notes.txt")
    assert r.exit_code == ExitCode.USAGE
    r = invoke("images", tmp_path / "im", "--voc", tmp_path)
    assert r.exit_code == ExitCode.USAGE and "not both" in r.stderr
    assert invoke("images").exit_code == ExitCode.USAGE


def class_tree(root: Path) -> Path:
    """root/train in ImageNet's layout, with what real copies also hold: mixed-case
    extensions, a macOS ``._`` twin, a hidden folder, a text file, images outside any
    class folder, an empty class folder, and one file name ('a') in two classes."""
    train = root / "train"
    for k, name in enumerate(["n02/c.Jpg", "n02/a.jpg", "n01/b.JPEG", "n01/a.png", ".cache/d.jpg"]):
        write_jpeg(train / name, k)
    for name in ["stray.jpg", "stray2.PNG"]:
        write_jpeg(train / name, 9)
    (train / "n01" / "._b.JPEG").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (train / "n01" / "notes.txt").write_text("x")
    (train / "empty").mkdir()
    return train


def test_class_folders_give_label_id_and_split(tmp_path: Path, invoke) -> None:
    train = class_tree(tmp_path)
    out = tmp_path / "in-train.jsonl"
    r = invoke("images", train, "--class-folders", "--split", "train", "-o", out)
    assert r.exit_code == 0, r.stderr
    assert jsonl(out.read_text()) == [
        {"schema": "vcl.image/1", "id": i, "path": f"train/{p}", "label": i[:3], "split": "train"}
        for i, p in [("n01/a", "n01/a.png"), ("n01/b", "n01/b.JPEG"), ("n02/a", "n02/a.jpg"),
                     ("n02/c", "n02/c.Jpg")]
    ]  # fmt: skip
    assert r.stderr.splitlines() == [
        f"warning: {train}: 2 images are in no class subfolder, left out (first: "
        "'stray.jpg', 'stray2.PNG')",
        f"warning: {train}: 1 class subfolders hold no images (first: 'empty')",
        "4 images of 2 classes listed (split train)",
    ]
    r = invoke("images", train, "--class-folders")  # no --split: no split field
    assert [(x["id"], x["label"], "split" in x) for x in jsonl(r.stdout)] == [
        ("n01/a", "n01", False), ("n01/b", "n01", False), ("n02/a", "n02", False),
        ("n02/c", "n02", False),
    ]  # fmt: skip
    r = invoke("images", train / "n01", train / "stray.jpg", "--split", "test")  # plain images
    assert r.exit_code == 0, r.stderr
    assert [(x["id"], x["split"], "label" in x) for x in jsonl(r.stdout)] == [
        ("a", "test", False),
        ("b", "test", False),
        ("stray", "test", False),
    ]


def test_class_folders_refusals(tmp_path: Path, invoke) -> None:
    train = class_tree(tmp_path)
    out = tmp_path / "m.jsonl"
    r = invoke("images", train / "n01", "--class-folders", "-o", out)  # a plain image folder
    assert r.exit_code == ExitCode.DATA
    assert r.stderr == (
        f"error: {train / 'n01'}: no class subfolders (--class-folders expects "
        "FOLDER/<class>/<image>)\n"
    )
    r = invoke("images", train / "stray.jpg", "--class-folders", "-o", out)
    assert r.exit_code == ExitCode.USAGE and "is not a folder" in r.stderr
    r = invoke("images", tmp_path / "nowhere", "--class-folders", "-o", out)
    assert r.exit_code == ExitCode.NO_INPUT
    (tmp_path / "e" / "x").mkdir(parents=True)
    (tmp_path / "e" / "y").mkdir()
    r = invoke("images", tmp_path / "e", "--class-folders", "-o", out)  # only empty classes
    assert r.exit_code == ExitCode.DATA and "class subfolders hold no jpg/png images" in r.stderr
    voc = fake_voc(tmp_path / "v")
    for flag in (["--class-folders"], ["--split", "test"]):
        r = invoke("images", "--voc", voc, *flag, "-o", out)
        assert r.exit_code == ExitCode.USAGE
        assert (
            r.stderr
            == f"error: {flag[0]} does not go with --voc, which sets VOC's labels and splits\n"
        )
    r = invoke("images", train / "n01", "--split", " ", "-o", out)
    assert r.exit_code == ExitCode.USAGE and "--split needs a name" in r.stderr
    write_jpeg(train / "n01" / "a.jpg", 7)  # a.png's id
    r = invoke("images", train, "--class-folders", "-o", out)
    assert r.exit_code == ExitCode.DATA and "id 'n01/a' is also the id of" in r.stderr
    (train / "n01" / "a.jpg").unlink()
    write_jpeg(train / "cat|dog" / "x.jpg", 8)  # would read as two labels
    r = invoke("images", train, "--class-folders", "-o", out)
    assert r.exit_code == ExitCode.DATA and "vcl's label separator" in r.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_class_folder_manifests_feed_embed_and_the_probe_by_id(tmp_path: Path, invoke) -> None:
    """ImageNet's recipe: train and val manifests, concatenated (val first: rows are
    joined by id, not order), embedded and probed with --split-field split."""
    from vcl.io.features import read_feature_set

    train = class_tree(tmp_path)
    for k, name in enumerate(["n01/v1.jpeg", "n02/v2.bmp", "n02/a.png"]):
        write_jpeg(tmp_path / "val" / name, 20 + k)
    for folder, split in ((train, "train"), (tmp_path / "val", "test")):
        out = tmp_path / f"{split}.jsonl"
        r = invoke("images", folder, "--class-folders", "--split", split, "-o", out)
        assert r.exit_code == 0, r.stderr
    # 'n02/a' is in both: concatenated, the readers refuse the duplicate
    both = tmp_path / "both.jsonl"
    both.write_text((tmp_path / "test.jsonl").read_text() + (tmp_path / "train.jsonl").read_text())
    r = invoke("embed", "random:resnet18", both, "-o", tmp_path / "no.zarr", "--size", "32")
    assert r.exit_code == ExitCode.DATA and "duplicate id 'n02/a'" in r.stderr
    from tests.test_probe_cli import write_store

    # embedded apart (two stores, one id each): the probe's labels reader refuses it too
    ids = list(dict.fromkeys(x["id"] for x in jsonl(both.read_text())))
    feats = np.random.default_rng(0).normal(size=(len(ids), 4)).astype(np.float32)
    write_store(tmp_path / "apart.zarr", ids, {"pool": feats})
    r = invoke(
        "probe", "knn", "--train", tmp_path / "apart.zarr", "--split-field", "split",
        "--labels", both, "--k", "1",
    )  # fmt: skip
    assert r.exit_code == ExitCode.DATA
    assert (
        r.stderr
        == f"error: {both}: line 6: duplicate id 'n02/a' (first on line 2); ids must be unique\n"
    )
    (tmp_path / "val" / "n02" / "a.png").unlink()
    r = invoke("images", tmp_path / "val", "--class-folders", "--split", "test")
    assert r.exit_code == 0, r.stderr
    labels = tmp_path / "in.jsonl"
    labels.write_text(r.stdout + (tmp_path / "train.jsonl").read_text())
    ids = ["n01/v1", "n02/v2", "n01/a", "n01/b", "n02/a", "n02/c"]
    assert [x["id"] for x in jsonl(labels.read_text())] == ids
    store = tmp_path / "s.zarr"
    r = invoke(
        "embed", "random:resnet18", labels, "-o", store, "--size", "32", "--layers", "pool",
        "--device", "cpu",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    fs = read_feature_set(store)
    assert fs.ids.tolist() == ids and fs.labels.tolist() == [i[:3] for i in ids]
    r = invoke(
        "probe", "knn", "--train", store, "--split-field", "split", "--labels", labels, "--k", "1"
    )
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)["layers"][0]
    assert (report["train_samples"], report["test_samples"]) == (4, 2)
    assert report["metrics"]["classes"] == 2
