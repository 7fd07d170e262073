"""vcl.io.union: several stores of one schema read as one, against a plain concatenation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vcl.errors import DataError, UsageError
from vcl.io.features import FeatureSet, read_feature_set, write_feature_set
from vcl.io.manifest import VideoRecord
from vcl.io.store import Store, StoreWriter, record_path
from vcl.io.union import StoreUnion, open_stores, read_records_union


def _store(path: Path, groups: dict[str, int], seed: int, params: dict | None = None) -> Path:
    """A store of 7-wide float rows and a label column, one group per entry."""
    rng = np.random.default_rng(seed)
    with StoreWriter(path, "vcl.test/1", params or {"a": 1, "shard": str(seed)}, 0) as writer:
        writer.define_columns({"x": ("float32", (7,)), "name": (str, ())})
        for gid, n in groups.items():
            x = rng.normal(size=(n, 7)).astype(np.float32)
            writer.append_group(gid, x=x, name=np.array([f"{gid}:{i}" for i in range(n)]))
        writer.write_array("basis", np.eye(3))
    return path


@pytest.fixture
def three(tmp_path) -> list[Path]:
    return [  # odd sizes and an empty group and an empty store in between
        _store(tmp_path / "a.zarr", {"v0": 5, "v1": 0, "v2": 3}, 1),
        _store(tmp_path / "b.zarr", {}, 2),
        _store(tmp_path / "c.zarr", {"v3": 4, "v4": 9}, 3),
    ]


def test_union_reads_as_the_concatenation(three):
    union = open_stores(three, kind="test", version=1)
    assert isinstance(union, StoreUnion)
    stores = [Store(p) for p in three]
    x = np.concatenate([s["x"][...] for s in stores])
    names = np.concatenate([s["name"][...].astype(object).astype(str) for s in stores])
    col = union["x"]
    assert col.shape == x.shape == (21, 7) and col.dtype == np.float32 and len(col) == 21
    np.testing.assert_array_equal(col[:], x)
    np.testing.assert_array_equal(col[...], x)
    for a, b in [(0, 21), (3, 9), (5, 5), (4, 13), (8, 21), (-6, None), (0, 1)]:
        np.testing.assert_array_equal(col[a:b], x[a:b])
        np.testing.assert_array_equal(col[a:b, 2:4], x[a:b, 2:4])
    for i in (0, 7, 8, 20, -1):
        np.testing.assert_array_equal(col[i], x[i])
    rows = np.random.default_rng(0).permutation(21)[:11]  # unsorted, across stores
    np.testing.assert_array_equal(col.get_orthogonal_selection((rows,)), x[rows])
    assert union["name"][:].astype(object).astype(str).tolist() == names.tolist()
    assert union.group_ids == ["v0", "v1", "v2", "v3", "v4"]
    np.testing.assert_array_equal(union.offsets, [0, 5, 5, 8, 12, 21])
    assert union.n_rows == 21 and union.rows("v3") == slice(8, 12)
    np.testing.assert_array_equal(union.read_group("v4")["x"], x[12:21])
    assert union.store_of("v3").path == three[2]
    np.testing.assert_array_equal(union["basis"][...], np.eye(3))  # plain arrays: shared
    assert union.attrs["params"] == {"a": 1}  # shard options left out
    assert union.attrs["inputs"] == [str(p) for p in three]
    assert not union.verify()
    assert isinstance(open_stores(three[:1]), Store)  # one input: the plain reader
    with pytest.raises(TypeError):
        col[::2]


def test_union_refuses_what_a_merge_refuses(three, tmp_path):
    with pytest.raises(DataError, match="also in") as err:
        open_stores([three[0], three[0]])
    assert str(three[0]) in err.value.message
    other = _store(tmp_path / "o.zarr", {"w": 2}, 4, params={"a": 2})
    with pytest.raises(DataError, match=r"other parameters .*differ: a") as err:
        open_stores([three[0], other])
    assert err.value.path == str(other)
    basis = _store(tmp_path / "basis.zarr", {"w": 2}, 5)
    with StoreWriter(tmp_path / "basis2.zarr", "vcl.test/1", {"a": 1}, 0) as writer:
        writer.define_columns({"x": ("float32", (7,)), "name": (str, ())})
        writer.write_array("basis", 2 * np.eye(3))
    with pytest.raises(DataError, match="array 'basis' differs"):
        open_stores([basis, tmp_path / "basis2.zarr"])
    with pytest.raises(DataError, match=r"expected vcl\.proposals"):
        open_stores(three, kind="proposals")
    with pytest.raises(UsageError):
        open_stores([])


def test_jsonl_union_refuses_an_id_in_two_files(tmp_path):
    lines = [json.dumps({"id": f"v{i}", "path": f"v{i}.mp4"}) for i in range(4)]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("\n".join(lines[:3]) + "\n")
    b.write_text(lines[3] + "\n")
    assert [r.id for r in read_records_union([a, b], VideoRecord)] == ["v0", "v1", "v2", "v3"]
    b.write_text(lines[1] + "\n")
    with pytest.raises(DataError, match=r"id 'v1' is also in .*a\.jsonl") as err:
        read_records_union([a, b], VideoRecord)
    assert err.value.path == str(b)
    with pytest.raises(UsageError, match="stdin"):
        read_records_union(["-", "-"], VideoRecord)


def test_features_of_several_stores_concatenate_with_their_labels(tmp_path):
    rng = np.random.default_rng(0)
    parts = []
    for k, n in enumerate((3, 5)):
        ids = np.array([f"s{k}_{i}" for i in range(n)])
        fs = FeatureSet(ids, rng.normal(size=(n, 4)).astype(np.float32), labels=ids.astype("<U1"))
        parts.append(write_feature_set(tmp_path / f"f{k}.zarr", fs, {"model": "m", "shard": k}))
    both = read_feature_set(parts)
    assert both.ids.tolist() == [f"s0_{i}" for i in range(3)] + [f"s1_{i}" for i in range(5)]
    np.testing.assert_array_equal(
        both.features, np.concatenate([read_feature_set(p).features for p in parts])
    )
    assert both.labels.tolist() == ["s"] * 8
    assert read_feature_set(parts[:1]).ids.tolist() == both.ids[:3].tolist()
    with pytest.raises(UsageError, match="--ids"):
        read_feature_set(parts, ids_file=tmp_path / "ids.txt")
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(UsageError, match="several inputs must be"):
        read_feature_set([parts[0], tmp_path / "x.npy"])


def _shard(path: Path, gid: str, typed: str, paths=("model", "store")) -> Path:
    """A shard of one run whose model and input paths were typed as ``typed`` (from the
    working directory), written as `vcl embed` writes one (the model in params and
    attrs); ``paths`` () writes as vcl did before they were recorded absolute."""
    params = {"model": f"{typed}/m.zarr", "store": [f"{typed}/i.zarr"], "shard": gid}
    with StoreWriter(path, "vcl.test/1", params, 0, paths=paths) as writer:
        writer.define_columns({"x": ("float32", (7,)), "name": (str, ())})
        writer.append_group(gid, x=np.zeros((2, 7), np.float32), name=np.array(["a", "b"]))
        writer.set_attrs(model=record_path(params["model"]) if paths else params["model"])
    return path


def test_shards_run_from_different_folders_read_as_one(tmp_path, monkeypatch):
    """Was: shards of one job run from different folders (`fish.0.zarr` from the project,
    `fy.1.zarr` from a subfolder) were refused, '(differ: model, store)' (exit 65 in
    vcl merge), as was one given the model as an absolute path."""
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    a = _shard(tmp_path / "a.zarr", "v0", ".")
    monkeypatch.chdir(tmp_path / "sub")
    b = _shard(tmp_path / "b.zarr", "v1", "..")
    c = _shard(tmp_path / "c.zarr", "v2", str(tmp_path))
    union = open_stores([a, b, c])
    assert union.group_ids == ["v0", "v1", "v2"] and union.attrs["model"] == str(
        tmp_path / "m.zarr"
    )
    other = _shard(tmp_path / "d.zarr", "v3", str(tmp_path / "sub"))
    with pytest.raises(DataError, match=r"differ: model, store"):
        open_stores([a, other])
    # a store written before (paths as typed, from its writer's folder) with a new one
    monkeypatch.chdir(tmp_path)
    old = _shard(tmp_path / "old.zarr", "v4", ".", paths=())
    assert Store(old).attrs["params"]["model"] == "./m.zarr"
    assert open_stores([old, a]).group_ids == ["v4", "v0"]
    assert open_stores([b, old]).group_ids == ["v1", "v4"]
