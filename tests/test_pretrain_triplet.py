"""vcl pretrain --method triplet (Wang & Gupta): ranking loss, negative selection, runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import cli as invoke
from tests.conftest import metrics, without_timing
from vcl.errors import ExitCode
from vcl.pretrain.triplet import (
    cosine_distance,
    pair_batches,
    ranking_losses,
    select_negatives,
)

TINY = ["--method", "triplet", "--arch", "resnet18", "--size", "32", "--batch-size", "5",
        "--random-neg-epochs", "1", "--device", "cpu", "--workers", "0", "-q"]  # fmt: skip


# ---------------------------------------------------------------------------- losses


def test_ranking_loss_by_hand() -> None:
    """D = 1 − cos; loss = max(0, D(X, X⁺) − D(X, X⁻) + M), values worked out by hand."""
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[3.0, 0.0], [1.0, 1.0]])  # D+ = 0 and 1 − 1/√2
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
    losses, d_pos, d_neg = ranking_losses(q, p, c, margin=0.5)
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(d_pos.numpy(), [0.0, 1 - r], atol=1e-6)
    np.testing.assert_allclose(d_neg.numpy(), [[0, 1, 2, 1 - r], [1, 0, 1, 1 - r]], atol=1e-6)
    expected = [[0.5, 0.0, 0.0, 0.5 - (1 - r)], [0.5 - r, 1 - r + 0.5, 0.5 - r, 0.5]]
    np.testing.assert_allclose(losses.numpy(), np.maximum(expected, 0), atol=1e-6)


def test_ranking_loss_matches_a_plain_loop() -> None:
    g = torch.Generator().manual_seed(3)
    q, p, c = (torch.randn(n, 7, generator=g) for n in (5, 5, 9))
    losses, _, _ = ranking_losses(q, p, c, margin=0.3)
    for i in range(5):
        for j in range(9):
            dp = 1 - float(q[i] @ p[i] / (q[i].norm() * p[i].norm()))
            dn = 1 - float(q[i] @ c[j] / (q[i].norm() * c[j].norm()))
            assert losses[i, j].item() == pytest.approx(max(0.0, dp - dn + 0.3), abs=1e-5)
    assert torch.allclose(cosine_distance(q, q).diagonal(), torch.zeros(5), atol=1e-6)


def test_hard_negatives_are_the_top_k_losses_among_valid_candidates() -> None:
    rng = np.random.default_rng(0)
    losses = torch.from_numpy(rng.random((6, 11)).astype(np.float32))
    valid = torch.from_numpy(rng.random((6, 11)) < 0.6)
    valid[0] = True
    valid[1] = False
    valid[1, [2, 7]] = True  # only 2 valid candidates < K
    idx, real = select_negatives(losses, valid, k=4, hard=True)
    assert idx.shape == (6, 4)
    for i in range(6):
        ok = np.flatnonzero(valid[i].numpy())
        want = ok[np.argsort(-losses[i, ok].numpy(), kind="stable")][:4]
        got = idx[i][real[i]].numpy()
        assert sorted(got) == sorted(want), i
        assert real[i].sum() == min(4, len(ok))
        if len(got) > 1:  # highest loss first
            assert np.all(np.diff(losses[i, got].numpy()) <= 0)
    # random negatives: valid, distinct, reproducible from the generator's seed
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, ra = select_negatives(losses, valid, 4, hard=False, generator=g1)
    b, rb = select_negatives(losses, valid, 4, hard=False, generator=g2)
    assert torch.equal(a, b) and torch.equal(ra, rb)
    for i in range(6):
        chosen = a[i][ra[i]].numpy()
        assert valid[i, chosen].all() and len(set(chosen)) == len(chosen)
    draws = set()
    for s in range(20):
        first, _ = select_negatives(losses, valid, 4, False, torch.Generator().manual_seed(s))
        draws.add(tuple(sorted(first[0].tolist())))
    assert len(draws) > 1  # not always the same four


def test_pair_batches_cover_every_pair_once_per_epoch() -> None:
    b = pair_batches(23, 5, seed=1, epoch=2)
    assert [len(x) for x in b] == [5, 5, 5, 5, 3]
    assert sorted(np.concatenate(b).tolist()) == list(range(23))
    assert all(np.array_equal(x, y) for x, y in zip(b, pair_batches(23, 5, 1, 2), strict=True))
    halves = [pair_batches(24, 5, 1, 2, rank=r, world=2) for r in (0, 1)]
    merged = sorted(np.concatenate([np.concatenate(h) for h in halves]).tolist())
    assert merged == list(range(24))  # ranks split every batch
    assert len(pair_batches(23, 5, 1, 2, rank=0, world=2)) == 4  # 3 < 2 per rank: dropped


# ---------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """(query, tracked) pairs of the ground-truth tracks of 3 tiny synthetic videos."""
    root = tmp_path_factory.mktemp("triplet")
    r = invoke("synth", root / "synth", "--videos", 3, "--frames", 9, "--width", 71,
               "--height", 53, "--min-objects", 2, "--max-objects", 3, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    for name, extra in (("pairs", ["--pairs"]), ("crops", ["--per-track", 3])):
        r = invoke("crops", root / "synth" / "gt_tracks.jsonl", "--videos",
                   root / "synth" / "videos.jsonl", "-o", root / f"{name}.zarr", "--size", 33,
                   "-q", *extra)  # fmt: skip
        assert r.exit_code == 0, r.output
    return root / "pairs.zarr"


def test_two_epochs_write_a_valid_run_directory(pairs: Path) -> None:
    from vcl.backbones import build_backbone, load_backbone
    from vcl.io.store import Store

    run = pairs.parent / "run"
    r = invoke("pretrain", pairs, "--epochs", 2, "-o", run, *TINY)
    assert r.exit_code == 0, r.output
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "triplet" and config["margin"] == 0.5 and config["hard_k"] == 4
    assert config["weight_decay"] == 5e-4  # the method's default, not ODC's
    assert config["samples"] == Store(pairs, kind="crops").n_rows // 2
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["backbone"].keys() == build_backbone("resnet18").state_dict().keys()
    assert state["head"]["0.weight"].shape == (4096, 512)  # FC 4096 on the pooled features
    assert state["head"]["3.weight"].shape == (1024, 4096)  # FC 1024
    assert load_backbone(run)[1]["arch"] == "resnet18"
    lines = metrics(run)
    assert [m["epoch"] for m in lines] == [0, 1, 2]
    assert [m["negatives"] for m in lines] == ["random", "random", "hard"]
    for m in lines[1:]:
        assert np.isfinite(m["loss"]) and m["triplets"] > 0 and 0 <= m["violating"] <= 1
        assert 0 <= m["d_pos"] <= 2 and 0 <= m["d_neg"] <= 2
    assert not list(run.glob("labels_epoch_*.npy"))  # no clusters


def test_resume_is_exact(pairs: Path) -> None:
    full, part = pairs.parent / "run", pairs.parent / "part"
    if not (full / "checkpoint.pt").exists():
        assert invoke("pretrain", pairs, "--epochs", 2, "-o", full, *TINY).exit_code == 0
    r = invoke("pretrain", pairs, "--epochs", 1, "-o", part, *TINY)
    assert r.exit_code == 0, r.output
    r = invoke("pretrain", pairs, "--epochs", 2, "--resume", part, "-q")
    assert r.exit_code == 0, r.output
    assert [without_timing(m) for m in metrics(part)] == [without_timing(m) for m in metrics(full)]
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    for group in ("backbone", "head"):
        for name, value in a[group].items():
            assert torch.equal(value, b[group][name]), name


def test_a_crops_store_without_pairs_is_refused(pairs: Path, tmp_path: Path) -> None:
    crops = pairs.parent / "crops.zarr"
    r = invoke("pretrain", crops, "-o", tmp_path / "r", *TINY)
    assert r.exit_code == ExitCode.DATA
    assert "pair structure" in r.stderr and "--pairs" in r.stderr and str(crops) in r.stderr
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_pairs_of_one_video_or_broken_pairs_are_refused(tmp_path: Path) -> None:
    from vcl.io.store import StoreWriter

    def store(name: str, videos: list[str], tracks: list[str]) -> Path:
        path = tmp_path / name
        n = len(videos)
        with StoreWriter(path, "vcl.crops/1", {"pairs": True}) as w:
            w.define_columns({"image": ("uint8", (9, 9, 3)), "track_id": (str, ()),
                              "video_id": (str, ()), "frame": ("int32", ())})  # fmt: skip
            w.append_group("all", image=np.zeros((n, 9, 9, 3), np.uint8),
                           track_id=np.array(tracks), video_id=np.array(videos),
                           frame=np.arange(n, dtype=np.int32))  # fmt: skip
        return path

    one = store("one.zarr", ["v"] * 4, ["a", "a", "b", "b"])
    r = invoke("pretrain", one, "-o", tmp_path / "r", *TINY)
    assert r.exit_code == ExitCode.DATA and "one video" in r.stderr
    broken = store("broken.zarr", ["v", "v", "w", "w"], ["a", "b", "c", "c"])
    r = invoke("pretrain", broken, "-o", tmp_path / "r", *TINY)
    assert r.exit_code == ExitCode.DATA and "pairs" in r.stderr
