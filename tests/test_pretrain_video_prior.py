"""video-la-idt's prior: rows joined to the videos by id, whatever the store's order, and
its fixed targets are the prior's k-means clusters (checks behind benchmarks/fidelity_video.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vcl.errors import DataError
from vcl.io.features import FeatureSet, write_feature_set
from vcl.pretrain.clips import VideoSet
from vcl.pretrain.instance import VideoLAIDT, VideoOptions, close_neighbours


def method_for(prior: Path, ids: list[str], k: int = 2) -> VideoLAIDT:
    videos = VideoSet(
        source="test",
        ids=np.array(ids),
        paths=[f"{i}.mp4" for i in ids],
        frames=np.full(len(ids), 10),
        labels=None,
    )
    config = SimpleNamespace(
        options=VideoOptions(frames=8, prior=str(prior), runs=2),
        size=16,
        k=k,
        epochs=2,
        seed=0,
        workers=0,
    )
    return VideoLAIDT(config, videos, torch.device("cpu"))


def test_prior_rows_follow_the_videos_not_the_store_order(tmp_path: Path) -> None:
    ids = ["v3", "v0", "v7", "v1", "v5"]  # the videos' order
    stored = ["v7", "v5", "v0", "v1", "v3"]  # the prior store's order, not sorted either
    feats = np.arange(5 * 3, dtype=np.float32).reshape(5, 3) + 1
    write_feature_set(tmp_path / "prior.zarr", FeatureSet(np.array(stored), feats), {})
    method = method_for(tmp_path / "prior.zarr", ids)
    method._load_prior()
    assert method.prior is not None
    want = np.stack([feats[stored.index(i)] for i in ids])
    np.testing.assert_array_equal(method.prior, want)


def test_missing_prior_ids_are_counted(tmp_path: Path) -> None:
    feats = np.ones((2, 3), np.float32)
    write_feature_set(tmp_path / "prior.zarr", FeatureSet(np.array(["a", "c"]), feats), {})
    method = method_for(tmp_path / "prior.zarr", ["a", "b", "c", "d"])
    with pytest.raises(DataError, match=r"lacks 2 of the 4 videos \(first: b, d\)"):
        method._load_prior()


def test_targets_are_the_prior_clusters(tmp_path: Path) -> None:
    """Two well-separated groups in the prior, interleaved in the video order: every
    k-means run (K = 2) puts each video with exactly its group, so C_i = its group."""
    rng = np.random.default_rng(0)
    group = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    centres = rng.normal(size=(2, 6)) * 10
    feats = (centres[group] + 0.1 * rng.normal(size=(8, 6))).astype(np.float32)
    ids = [f"v{i}" for i in range(8)]
    write_feature_set(tmp_path / "prior.zarr", FeatureSet(np.array(ids[::-1]), feats[::-1]), {})
    method = method_for(tmp_path / "prior.zarr", ids)
    method._load_prior()
    assert method.prior is not None
    labels = method._kmeans(method.prior, seed=0)  # (R, N), what init_state fixes
    assert labels.shape == (2, 8)
    idx = torch.arange(8)
    close = close_neighbours(labels, idx, idx[None].expand(8, 8))
    np.testing.assert_array_equal(close.numpy(), group[:, None] == group[None, :])
