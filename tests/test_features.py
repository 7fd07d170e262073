from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vcl.errors import DataError, MissingInputError
from vcl.io.features import FeatureSet, read_feature_set, write_feature_set


def test_store_round_trip_keeps_ids_labels_and_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    fs = FeatureSet(
        ids=np.array(["b1", "b2", "a1", "c1"]),
        features=rng.random((4, 5), dtype=np.float32),
        labels=np.array(["run", "", "jump", "run"]),
        video_ids=np.array(["vb", "vb", "va", "vc"]),
    )
    write_feature_set(tmp_path / "f.zarr", fs, params={"k": 1}, seed=2)
    back = read_feature_set(tmp_path / "f.zarr")
    np.testing.assert_array_equal(back.ids, fs.ids)
    np.testing.assert_array_equal(back.features, fs.features)
    np.testing.assert_array_equal(back.labels, fs.labels)
    np.testing.assert_array_equal(back.video_ids, fs.video_ids)
    assert back.track_ids is None and back.attrs["vcl_schema"] == "vcl.features/1"


def test_non_contiguous_videos_are_refused(tmp_path: Path) -> None:
    fs = FeatureSet(
        ids=np.array(["1", "2", "3"]),
        features=np.zeros((3, 2), np.float32),
        video_ids=np.array(["a", "b", "a"]),
    )
    with pytest.raises(ValueError, match="contiguous"):
        write_feature_set(tmp_path / "f.zarr", fs, params={})


def test_npy_with_and_without_ids(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / "x.npy", x)
    plain = read_feature_set(tmp_path / "x.npy")
    assert list(plain.ids) == ["0", "1", "2", "3"] and plain.features.dtype == np.float32
    (tmp_path / "ids.txt").write_text("d\nc\nb\na\n")
    named = read_feature_set(tmp_path / "x.npy", tmp_path / "ids.txt")
    assert list(named.ids) == ["d", "c", "b", "a"]
    (tmp_path / "short.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="2 ids for 4 rows"):
        read_feature_set(tmp_path / "x.npy", tmp_path / "short.txt")
    (tmp_path / "dup.txt").write_text("a\nb\na\nc\n")
    with pytest.raises(DataError, match="duplicate id 'a'"):
        read_feature_set(tmp_path / "x.npy", tmp_path / "dup.txt")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(DataError, match="N×D"):
        read_feature_set(tmp_path / "cube.npy")
    with pytest.raises(MissingInputError):
        read_feature_set(tmp_path / "none.npy")


def test_item_ids_name_crops_as_embed_does(tmp_path):
    """A store's rows are named by its id column, else ``<track_id>@<frame>`` (the ids
    vcl embed gives crops, so clusters join their crops), else by row number."""
    from vcl.io.features import crop_ids, item_ids

    class FakeStore:
        def __init__(self, columns):
            self.data = columns
            self.columns = list(columns)
            self.n_rows = len(next(iter(columns.values())))

        def __getitem__(self, name):
            return self.data[name]

    tracks, frames = np.array(["v1/t0", "v1/t0", "v2/t3"]), np.array([4, 12, 0])
    assert list(crop_ids(tracks, frames)) == ["v1/t0@4", "v1/t0@12", "v2/t3@0"]
    assert list(item_ids(FakeStore({"track_id": tracks, "frame": frames}))) == list(
        crop_ids(tracks, frames)
    )
    named = {"id": np.array(["a", "b", "c"]), "track_id": tracks, "frame": frames}
    assert list(item_ids(FakeStore(named))) == ["a", "b", "c"]
    assert list(item_ids(FakeStore({"image": np.zeros((3, 2))}))) == ["0", "1", "2"]
