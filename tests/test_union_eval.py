"""Several inputs of one schema for retrieve eval, cluster eval and idt convert."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.test_idt_cli import _random_columns
from vcl.errors import ExitCode
from vcl.idt.textformat import read_text
from vcl.io.features import FeatureSet, write_feature_set
from vcl.io.store import StoreWriter


def features(path: Path, x: np.ndarray, ids: list[str], shard: str) -> Path:
    fs = FeatureSet(ids=np.asarray(ids, dtype=str), features=x.astype(np.float32))
    return write_feature_set(path, fs, params={"model": "m", "shard": shard}, seed=3)


def jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def labels_file(path: Path, ids, labels) -> Path:
    jsonl(path, [{"id": i, "label": lab} for i, lab in zip(ids, labels, strict=True)])
    return path


def test_retrieve_eval_on_shards_equals_the_whole(invoke, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    g = rng.normal(size=(37, 7))
    q = g[:11] + 0.3 * rng.normal(size=(11, 7))  # queries near gallery items of their class
    g_ids, q_ids = [f"g{i}" for i in range(37)], [f"q{i}" for i in range(11)]
    lab = [f"c{i % 4}" for i in range(37)]
    whole = features(tmp_path / "g.zarr", g, g_ids, "all")
    parts = [
        features(tmp_path / "g0.zarr", g[:20], g_ids[:20], "0/2"),
        features(tmp_path / "g1.zarr", g[20:], g_ids[20:], "1/2"),
    ]
    queries = features(tmp_path / "q.zarr", q, q_ids, "all")
    all_labels = labels_file(tmp_path / "l.jsonl", g_ids + q_ids, lab + lab[:11])
    l0 = labels_file(tmp_path / "l0.jsonl", g_ids, lab)
    l1 = labels_file(tmp_path / "l1.jsonl", q_ids, lab[:11])

    one = invoke("retrieve", "eval", "--query", queries, "--gallery", whole,
                 "--labels", all_labels, "-k", "1,3", "-q")  # fmt: skip
    assert one.exit_code == 0, one.output
    many = invoke("retrieve", "eval", "--query", queries, "--gallery", parts[0],
                  "--gallery", parts[1], "--labels", l0, "--labels", l1, "-k", "1,3",
                  "-q")  # fmt: skip
    assert many.exit_code == 0, many.output
    a, b = json.loads(one.stdout), json.loads(many.stdout)
    assert b["gallery"] == [str(p) for p in parts] and b["labels"] == [str(l0), str(l1)]
    for key in ("gallery", "labels"):
        a.pop(key), b.pop(key)
    assert a == b and a["recall"]["R@3"] > 0.5

    # an id in two label files is refused, naming the second
    bad = invoke("retrieve", "eval", "--query", queries, "--gallery", whole,
                 "--labels", l0, "--labels", all_labels, "-q")  # fmt: skip
    assert bad.exit_code == ExitCode.DATA, bad.output
    assert f"error: {all_labels}" in bad.output and "Traceback" not in bad.output


def test_cluster_eval_with_several_label_files(invoke, tmp_path: Path) -> None:
    ids = [f"s{i}" for i in range(29)]
    clusters = tmp_path / "c.jsonl"
    jsonl(clusters, [{"id": i, "cluster": n % 3} for n, i in enumerate(ids)])
    lab = [f"k{(n * 7) % 4}" for n in range(29)]
    whole = labels_file(tmp_path / "l.jsonl", ids, lab)
    l0 = labels_file(tmp_path / "l0.jsonl", ids[:13], lab[:13])
    l1 = labels_file(tmp_path / "l1.jsonl", ids[13:], lab[13:])
    one = invoke("cluster", "eval", clusters, "--labels", whole, "-q")
    many = invoke("cluster", "eval", clusters, "--labels", l0, "--labels", l1, "-q")
    assert one.exit_code == 0 and many.exit_code == 0, many.output
    a, b = json.loads(one.stdout), json.loads(many.stdout)
    assert b.pop("labels") == [str(l0), str(l1)] and a.pop("labels") == str(whole)
    assert a == b and 0 < a["nmi"] < 1
    bad = invoke("cluster", "eval", clusters, "--labels", whole, "--labels", l1, "-q")
    assert bad.exit_code == ExitCode.DATA and f"error: {l1}" in bad.output


def test_idt_convert_several_stores_and_text_files(invoke, tmp_path: Path) -> None:
    stores, cols = [], {}
    for s, vids in enumerate((("a", "b"), ("c",))):
        path = tmp_path / f"idt{s}.zarr"
        with StoreWriter(path, "vcl.idt/1", {"x": 1, "shard": f"{s}/2"}, 0) as w:
            for n, vid in enumerate(vids):
                cols[vid] = _random_columns(3 + n, seed=len(cols))
                if n == 0:
                    w.define_columns({k: (v.dtype, v.shape[1:]) for k, v in cols[vid].items()})
                w.append_group(vid, **cols[vid])
        stores.append(path)
    r = invoke("idt", "convert", *stores, "-o", tmp_path / "txt", "-q")
    assert r.exit_code == 0, r.output
    written = sorted(p.name for p in (tmp_path / "txt").iterdir())
    assert written == ["a.txt", "b.txt", "c.txt", "params.json"]  # params.json: the layout
    for vid, c in cols.items():
        back = read_text(tmp_path / "txt" / f"{vid}.txt")
        np.testing.assert_allclose(back["hog"], c["hog"], atol=1e-6)
    # several text files (and a folder) back into one store
    files = [tmp_path / "txt" / "a.txt", tmp_path / "txt" / "c.txt"]
    r = invoke("idt", "convert", *files, "-o", tmp_path / "back.zarr", "-q")
    assert r.exit_code == 0, r.output
    from vcl.io.store import Store

    back = Store(tmp_path / "back.zarr", kind="idt")
    assert back.group_ids == ["a", "c"]
    np.testing.assert_allclose(back.read_group("c")["mbhx"], cols["c"]["mbhx"], atol=1e-6)
    # a store and a text file together are refused
    r = invoke("idt", "convert", stores[0], files[0], "-o", tmp_path / "mixed", "-q")
    assert r.exit_code == ExitCode.USAGE and "error:" in r.output
