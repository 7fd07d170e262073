"""ODC / ODCT update rules on hand-built tensors, each against a plain reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcl.pretrain.memories import (
    ClusterMemory,
    TrackMemory,
    assign,
    centroids_of,
    class_weights,
    fix_small_clusters,
    l2n,
    odc_update,
    odct_update,
    odct_weights,
)


def unit(*v: float) -> list[float]:
    a = np.array(v, np.float64)
    return (a / np.linalg.norm(a)).tolist()


def test_odct_weights_hand_computed() -> None:
    f = torch.tensor([[1.0, 0.0]])
    # members at distances 1, 2, 4 from f, then a padding slot
    mates = torch.tensor([[[1.0, 1.0], [1.0, -2.0], [-3.0, 0.0], [9.0, 9.0]]])
    valid = torch.tensor([[True, True, True, False]])
    w = odct_weights(f, mates, valid)
    np.testing.assert_allclose(w.numpy(), [[1.0, 0.5, 0.25, 0.0]], rtol=1e-6)


def test_odct_weights_guard_zero_distance() -> None:
    f = torch.tensor([[0.6, 0.8]])
    mates = torch.tensor([[[0.6, 0.8], [0.0, 1.0]]])  # the first coincides with f
    w = odct_weights(f, mates, torch.ones(1, 2, dtype=torch.bool))
    assert torch.isfinite(w).all()
    np.testing.assert_allclose(w.numpy(), [[1.0, 0.0]])


def reference_eq1(f: np.ndarray, mates: list[np.ndarray], m: float) -> np.ndarray:
    """ODCT eq. 1 written sample by sample, member by member."""
    out = []
    for fi, members in zip(f, mates, strict=True):
        fi = fi / np.linalg.norm(fi)
        d = [np.linalg.norm(fi - x) for x in members]
        dmin = min(d)
        w = [1.0 if dj == 0 else dmin / dj for dj in d]
        mean = sum(wj * x for wj, x in zip(w, members, strict=True)) / sum(w)
        new = m * fi + (1 - m) * mean
        out.append(new / np.linalg.norm(new))
    return np.array(out)


def test_eq1_matches_reference_with_track_memory() -> None:
    rng = np.random.default_rng(3)
    n, d = 13, 5
    feats = rng.normal(size=(n, d))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    tracks = np.array([2, 0, 1, 2, 2, 0, 3, 1, 2, 0, 3, 2, 4])  # track 4: one member
    tm = TrackMemory.from_index(tracks)
    idx = torch.tensor([0, 6, 12, 9])
    f = rng.normal(size=(4, d))
    mates, valid = tm.members(idx)
    for row, i in enumerate(idx.tolist()):  # O(1) lookup gives exactly the track's members
        assert (
            sorted(mates[row][valid[row]].tolist()) == np.flatnonzero(tracks == tracks[i]).tolist()
        )
    got = odct_update(torch.tensor(f), torch.tensor(feats)[mates], valid, 0.3).numpy()
    want = reference_eq1(f, [feats[tracks == tracks[i]] for i in idx.tolist()], 0.3)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_odc_update_and_memory_update() -> None:
    old = torch.tensor([unit(1, 0, 0), unit(0, 1, 0)], dtype=torch.float64)
    f = torch.tensor([[0.0, 0.0, 2.0], [0.0, 3.0, 0.0]], dtype=torch.float64)
    new = odc_update(f, old, 0.5)
    np.testing.assert_allclose(new[0].numpy(), unit(0.5, 0, 0.5), rtol=1e-7)
    np.testing.assert_allclose(new[1].numpy(), [0, 1, 0], atol=1e-9)
    # ClusterMemory.update writes the rows and reassigns them (eq. 2)
    feats = torch.tensor([unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1), unit(1, 1, 0)])
    mem = ClusterMemory.create(feats, torch.tensor([0, 1, 1, 0]), 2, None)
    mem.centroids = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    mem.update(torch.tensor([1]), torch.tensor([[0.0, 0.0, 5.0]]), 0.9, use_tracks=False)
    np.testing.assert_allclose(mem.features[1].numpy(), unit(0, 0.1, 0.9), rtol=1e-6)
    assert mem.labels.tolist() == [0, 1, 1, 0]


def test_eq2_nearest_centroid_by_inner_product() -> None:
    centroids = torch.tensor([[1.0, 0.0], [0.0, 0.5], [-1.0, -1.0]])
    x = torch.tensor([[0.9, 0.1], [0.2, 0.9], [-0.7, -0.7], [0.6, 0.8]])
    # scores row 3: 0.6, 0.4, -1.4 -> cluster 0 (ODC's argmax of centroids @ f)
    assert assign(x, centroids).tolist() == [0, 1, 2, 0]


def test_centroids_are_member_means() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(17, 3)).astype(np.float32)
    labels = rng.integers(0, 4, 17)
    labels[labels == 2] = 1  # cluster 2 empty
    got = centroids_of(torch.tensor(x), torch.tensor(labels), 5).numpy()
    for c in range(5):
        want = x[labels == c].mean(axis=0) if (labels == c).any() else np.zeros(3)
        np.testing.assert_allclose(got[c], want, rtol=1e-5, atol=1e-6)


def test_class_weights_inverse_sqrt() -> None:
    w = class_weights(torch.tensor([0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2]), 3).numpy()
    raw = np.array([4, 1, 9], float) ** -0.5
    np.testing.assert_allclose(w, raw / raw.sum(), rtol=1e-6)


def test_small_cluster_is_emptied_then_refilled_by_splitting_the_largest() -> None:
    rng = np.random.default_rng(1)
    blob = lambda c, n: c + 0.05 * rng.normal(size=(n, 3))  # noqa: E731
    # cluster 0: two far-apart blobs (9 + 8 samples); cluster 1: 6 samples; cluster 2: 2
    x = np.concatenate(
        [blob([5, 0, 0], 9), blob([-5, 0, 0], 8), blob([0, 5, 0], 6), blob([0, 4, 1], 2)]
    )
    labels = torch.tensor([0] * 17 + [1] * 6 + [2] * 2)
    feats = torch.tensor(x, dtype=torch.float32)
    cents = centroids_of(feats, labels, 3)
    handled = fix_small_clusters(feats, labels, cents, min_cluster=3, seed=0)
    assert handled == 1
    lab = labels.numpy()
    assert (lab[17:25] == 1).all()  # the small cluster's samples went to the nearest other
    halves = {tuple(sorted(set(lab[:9].tolist()))), tuple(sorted(set(lab[9:17].tolist())))}
    assert halves == {(0,), (2,)}  # the largest cluster split along its two blobs
    np.testing.assert_allclose(cents[2].numpy(), feats[labels == 2].mean(0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(cents[0].numpy(), feats[labels == 0].mean(0).numpy(), rtol=1e-5)
    assert fix_small_clusters(feats, labels, cents, min_cluster=3, seed=0) == 0


def test_empty_cluster_is_refilled() -> None:
    feats = l2n(torch.tensor(np.random.default_rng(2).normal(size=(30, 4)), dtype=torch.float32))
    labels = torch.zeros(30, dtype=torch.int64)
    labels[:10] = 1
    cents = centroids_of(feats, labels, 3)
    fix_small_clusters(feats, labels, cents, min_cluster=1, seed=5)
    sizes = torch.bincount(labels, minlength=3)
    assert (sizes > 0).all() and sizes.sum() == 30 and sizes[1] == 10


@pytest.mark.parametrize("seed", [0, 1])
def test_augment_is_per_sample_and_seeded(seed: int) -> None:
    from vcl.pretrain.data import AugmentParams, augment, plain

    rng = np.random.default_rng(seed)
    img = torch.tensor(rng.integers(0, 256, (1, 19, 19, 3)), dtype=torch.uint8).repeat(5, 1, 1, 1)
    p = AugmentParams(size=11)
    g = torch.Generator().manual_seed(seed)
    a = augment(img, p, g)
    b = augment(img, p, torch.Generator().manual_seed(seed))
    assert a.shape == (5, 3, 11, 11) and torch.isfinite(a).all()
    assert torch.equal(a, b)  # same generator seed, same batch
    assert not torch.allclose(a[0], a[1])  # the copies got different parameters
    assert plain(img, 11).shape == (5, 3, 11, 11)


# ---------------------------------------------------------------------------- clustering device


def test_faiss_gpu_is_the_training_gpu_when_faiss_can_use_it(monkeypatch, caplog) -> None:
    """A CUDA run clusters on its own GPU as faiss numbers it; a CPU / MPS run, or a CUDA
    run whose faiss sees no such GPU (faiss-cpu), on the CPU, the latter warned once."""
    import vcl.device
    import vcl.pretrain.memories as memories

    counts = []

    def count(n: int):
        def faiss_gpu_count() -> int:
            counts.append(n)
            return n

        return faiss_gpu_count

    monkeypatch.setattr(memories, "_WARNED_CPU", set())
    monkeypatch.setattr(vcl.device, "faiss_gpu_count", count(2))
    assert memories.faiss_gpu(torch.device("cpu")) is None and counts == []  # faiss unasked
    assert memories.faiss_gpu(torch.device("mps")) is None and counts == []
    assert memories.faiss_gpu(torch.device("cuda:1")) == 1
    assert memories.faiss_gpu(torch.device("cuda")) == 0
    assert memories.faiss_gpu("cuda:0") == 0
    assert memories.faiss_gpu(torch.device("cuda:2")) is None  # faiss sees GPUs 0 and 1
    monkeypatch.setattr(vcl.device, "faiss_gpu_count", count(0))
    with caplog.at_level("WARNING", logger="vcl"):
        assert memories.faiss_gpu(torch.device("cuda:0")) is None
        assert memories.faiss_gpu(torch.device("cuda:0")) is None
    warned = [r.getMessage() for r in caplog.records if "cuda:0" in r.getMessage()]
    assert len(warned) == 1 and "faiss sees no GPU" in warned[0] and "CPU" in warned[0]


def test_small_cluster_split_runs_on_the_given_faiss_gpu(monkeypatch) -> None:
    import vcl.pretrain.memories as memories

    gpus = []
    real = memories.kmeans

    def kmeans(*args, gpu=None, **kwargs):
        gpus.append(gpu)
        return real(*args, gpu=None, **kwargs)

    monkeypatch.setattr(memories, "kmeans", kmeans)
    feats = l2n(torch.tensor(np.random.default_rng(2).normal(size=(30, 4)), dtype=torch.float32))
    labels = torch.zeros(30, dtype=torch.int64)
    labels[:10] = 1
    cents = centroids_of(feats, labels, 3)
    before = labels.clone()
    fix_small_clusters(feats, labels, cents, min_cluster=1, seed=5, gpu=3)
    assert gpus == [3]
    same = before.clone()
    fix_small_clusters(feats, same, centroids_of(feats, same, 3), min_cluster=1, seed=5)
    assert gpus == [3, None] and torch.equal(same, labels)  # the CPU path as before


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory):
    """Crops of the ground-truth tracks of 3 tiny synthetic videos."""
    from tests.conftest import cli

    root = tmp_path_factory.mktemp("memories")
    r = cli("synth", root / "synth", "--videos", 3, "--frames", 12, "--width", 71,
            "--height", 53, "--min-objects", 2, "--max-objects", 3, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = cli("crops", root / "synth" / "gt_tracks.jsonl", "--videos",
            root / "synth" / "videos.jsonl", "-o", root / "crops.zarr", "--per-track", 4,
            "--size", 33, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    return root / "crops.zarr"


@pytest.mark.parametrize("method", ["odc", "odct"])
def test_odc_clusters_on_the_faiss_gpu_of_the_training_device(
    crops, method: str, monkeypatch, tmp_path
) -> None:
    """The initial k-means (odc) / track k-means (odct) and the small-cluster rule's
    splits get the faiss GPU decided from the run's device (faked here: the run is on
    the CPU, and so is the clustering)."""
    import vcl.pretrain.odc as odc
    from tests.conftest import cli, fake_faiss_gpu

    devices, gpus = fake_faiss_gpu(monkeypatch, odc, "kmeans")
    splits: list = []
    real_fix = odc.fix_small_clusters

    def fix(*args, **kwargs):
        splits.append(args[5] if len(args) > 5 else kwargs.get("gpu"))
        return real_fix(*args[:5], **{k: v for k, v in kwargs.items() if k != "gpu"})

    monkeypatch.setattr(odc, "fix_small_clusters", fix)
    r = cli("pretrain", crops, "--method", method, "--epochs", 1, "-o", tmp_path / "run",
            "--arch", "resnet18", "--size", 32, "--batch-size", 16, "--k", 3, "--min-cluster",
            2, "--device", "cpu", "--workers", 0, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert gpus == [5] and set(devices) == {torch.device("cpu")}
    assert splits and set(splits) == {5}
