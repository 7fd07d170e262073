"""vcl pretrain --method moving-clusters: clustering losses, backgrounds, runs, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import cli as invoke
from tests.conftest import metrics, without_timing
from vcl.cluster_metrics import nmi
from vcl.errors import ExitCode
from vcl.pretrain.moving import (
    SEEDING_POINTS,
    assigned_kappa_loss,
    balance_loss,
    boxes_at,
    calibrate_batchnorm,
    clustering_losses,
    kappa_loss,
    match_units,
    overlaps,
    plan_backgrounds,
    refine_units,
    rows_by_video,
    soft_assignment,
    squared_distances,
)

TINY = ["--method", "moving-clusters", "--arch", "resnet18", "--size", "32", "--batch-size",
        "12", "--k", "3", "--device", "cpu", "--workers", "0", "-q"]  # fmt: skip


# ---------------------------------------------------------------------------- losses


def test_distances_are_those_of_the_normalised_vectors() -> None:
    g = torch.Generator().manual_seed(0)
    z, units = torch.randn(7, 5, generator=g) * 3, torch.randn(4, 5, generator=g)
    zn = z.numpy() / np.linalg.norm(z.numpy(), axis=1, keepdims=True)
    un = units.numpy() / np.linalg.norm(units.numpy(), axis=1, keepdims=True)
    ref = ((zn[:, None, :] - un[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(squared_distances(z, units).numpy(), ref, atol=1e-5)
    q = soft_assignment(squared_distances(z, units), 0.5).numpy()
    e = np.exp(-ref / (0.5 * ref.std(axis=1, keepdims=True)))  # τ in units of σ_i
    np.testing.assert_allclose(q, e / e.sum(1, keepdims=True), atol=1e-5)
    # the sharpness does not depend on how far apart the units are
    close = units * 0.0 + units[:1] + 0.01 * units  # four nearly identical units
    q_close = soft_assignment(squared_distances(z, close), 0.5)
    d_close = squared_distances(z, close).numpy()
    assert (q_close.argmax(1).numpy() == d_close.argmin(1)).all()
    assert q_close.max(1).values.mean() > 0.5  # not the uniform 1/4


def test_balance_loss_is_minimal_at_uniform_sizes() -> None:
    k = 4
    uniform = torch.eye(k).repeat(3, 1)  # 12 samples, 3 per cluster (hard)
    assert balance_loss(uniform).item() == pytest.approx(0.0, abs=1e-7)
    assert balance_loss(torch.full((5, k), 1 / k)).item() == pytest.approx(0.0, abs=1e-7)
    one = torch.zeros(6, k)
    one[:, 0] = 1  # everything in cluster 0: KL(δ ‖ uniform) = log k
    assert balance_loss(one).item() == pytest.approx(np.log(k), rel=1e-6)
    rng = np.random.default_rng(1)
    for _ in range(20):  # = KL(s ‖ uniform) > 0 for any uneven sizes
        q = torch.from_numpy(rng.dirichlet(np.full(k, 0.3), size=9).astype(np.float64))
        s = q.mean(0).numpy()
        assert balance_loss(q).item() == pytest.approx(float((s * np.log(k * s)).sum()), rel=1e-6)
        assert balance_loss(q).item() > 0
        assert balance_loss(q).item() <= np.log(k) + 1e-9  # bounded: log k at one cluster
    # its value is bounded whatever the distances' scale; q's sharpness is that of τ·σ_i
    g = torch.Generator().manual_seed(3)
    z, units = torch.randn(13, 6, generator=g), torch.randn(k, 6, generator=g)
    for scale in (1e-3, 1.0, 1e3):
        value = clustering_losses(z * scale, units, 0.5)["balance"].item()
        assert 0 <= value <= np.log(k)


def test_soft_kappa_decreases_when_an_embedding_moves_to_its_unit() -> None:
    units = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    z = torch.tensor([[0.2, 1.0, 0.3], [1.0, 0.1, 0.2]])
    q = soft_assignment(squared_distances(z, units), 0.5)
    assert q.argmax(1).tolist() == [1, 0]
    previous = kappa_loss(squared_distances(z, units), q).item()
    for t in (0.25, 0.5, 0.75, 1.0):  # the first embedding slides to its unit (q fixed)
        moved = z.clone()
        moved[0] = (1 - t) * z[0] + t * units[1]
        now = kappa_loss(squared_distances(moved, units), q).item()
        assert now < previous
        previous = now
    d = squared_distances(torch.stack([units[1], z[1]]), units)  # at the unit: only q·d
    assert kappa_loss(d, q).item() == pytest.approx(
        float((q[0] * d[0]).sum() + (q[1] * d[1]).sum()) / 2, rel=1e-6
    )


def plain_spherical_lloyd(x: np.ndarray, start: np.ndarray, iters: int) -> np.ndarray:
    """Reference: unit-norm centroids after ``iters`` spherical Lloyd iterations."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = start / np.linalg.norm(start, axis=1, keepdims=True)
    for _ in range(iters):
        nearest = (x @ c.T).argmax(1)
        for j in range(len(c)):
            if (nearest == j).any():
                m = x[nearest == j].mean(0)
                c[j] = m / np.linalg.norm(m)
    return c


def test_units_that_lag_the_embedding_are_refined_to_its_clusters() -> None:
    """What was wrong: the embedding moves through millions of weights while a unit's
    gradient is ~s_j ≈ 1/k of a pull, so at the network's lr the units stay where k-means
    put them at init and the nearest-unit clusters of the moved embedding are uneven and
    wrong (measured: 0.55 NMI where k-means on the same embedding gives 0.83). Hand-built:
    three groups (7, 11, 5 points) and units left near their old places."""
    rng = np.random.default_rng(0)
    centres = np.array([[3.0, 0, 0, 0, 1], [0, 3.0, 0, 1, 0], [0, 0, 3.0, 0, 0]])
    truth = np.repeat([0, 1, 2], [7, 11, 5])
    z = torch.from_numpy(centres[truth] + 0.3 * rng.standard_normal((23, 5))).float()
    stale = torch.tensor([[0.6, 1.0, 0, 0, 0], [0, 1.0, 0.6, 0, 0], [0.6, 0, 1.0, 0, 0]])
    before = squared_distances(z, stale).argmin(1).numpy()
    assert nmi(truth, before) < 0.7  # groups 0 and 1 split between units
    # one SGD step of the network's lr (0.015) on L_κ barely moves them
    units = stale.clone().requires_grad_(True)
    d = squared_distances(z, units)
    (grad,) = torch.autograd.grad(kappa_loss(d, soft_assignment(d, 0.5)), [units])
    assert (0.015 * grad).norm(dim=1).max() < 0.01
    refined = refine_units(z, stale, 20, seed=0)
    np.testing.assert_allclose(refined.norm(dim=1).numpy(), 1.0, atol=1e-5)
    ref = plain_spherical_lloyd(z.numpy(), stale.numpy(), 20)
    np.testing.assert_allclose(refined.numpy(), ref, atol=1e-5)
    after = squared_distances(z, refined).argmin(1).numpy()
    assert nmi(truth, after) == pytest.approx(1.0)  # the planted groups, one unit each


def spherical_inertia(z: np.ndarray, units: np.ndarray) -> float:
    """Σ_i min_j ‖ẑ_i − μ̂_j‖² (plain numpy)."""
    x = z / np.linalg.norm(z, axis=1, keepdims=True)
    u = units / np.linalg.norm(units, axis=1, keepdims=True)
    return float(((x[:, None, :] - u[None, :, :]) ** 2).sum(-1).min(1).sum())


def test_matching_keeps_each_unit_s_identity() -> None:
    """Hand-built: the new units are the old ones shuffled and nudged; unit j must get back
    the one that came from old unit j, even where a greedy nearest choice would clash."""
    rng = np.random.default_rng(4)
    old = rng.standard_normal((5, 7))
    shuffle = np.array([3, 0, 4, 1, 2])  # new[i] comes from old[shuffle[i]]
    new = old[shuffle] + 0.05 * rng.standard_normal((5, 7))
    p = match_units(old, new)
    assert sorted(p.tolist()) == list(range(5))
    np.testing.assert_array_equal(shuffle[p], np.arange(5))  # row j of new[p] is old j's
    np.testing.assert_array_equal(match_units(old, old * 3.0), np.arange(5))  # scale-free
    # both old units' nearest new unit is b[0]: the matching is one-to-one and maximises
    # the total cosine (0.8 + 0.8 kept, against 0 + 0.96 for the swap)
    a = np.array([[1.0, 0.0], [0.6, 0.8]])
    b = np.array([[0.8, 0.6], [0.0, 1.0]])
    assert (a @ b.T).argmax(1).tolist() == [0, 0]
    np.testing.assert_array_equal(match_units(a, b), [0, 1])
    np.testing.assert_array_equal(match_units(a, b[::-1]), [1, 0])


def test_restarts_escape_the_local_optimum_of_the_learned_units() -> None:
    """What was wrong after the first refinement: Lloyd from the learned units finds the
    optimum next to them (one unit holding two groups, another a sliver), where a fresh
    k-means finds the groups. Hand-built: four groups of 13, 6, 9, 11 points; two units
    start inside group 0 and one between groups 2 and 3."""
    rng = np.random.default_rng(2)
    centres = np.eye(6)[:4] * 4.0 + 1.0
    truth = np.repeat([0, 1, 2, 3], [13, 6, 9, 11])
    x = centres[truth] + 0.25 * rng.standard_normal((len(truth), 6))
    z = torch.from_numpy(x).float()
    stuck = np.stack([x[0], x[1], x[13:19].mean(0), x[19:].mean(0)])
    plain = refine_units(z, torch.from_numpy(stuck).float(), 20, seed=0)
    assert nmi(truth, squared_distances(z, plain).argmin(1).numpy()) < 0.9  # stuck
    best = refine_units(z, torch.from_numpy(stuck).float(), 20, seed=0, restarts=4)
    np.testing.assert_allclose(best.norm(dim=1).numpy(), 1.0, atol=1e-5)
    labels = squared_distances(z, best).argmin(1).numpy()
    assert nmi(truth, labels) == pytest.approx(1.0)
    assert spherical_inertia(x, best.numpy()) < spherical_inertia(x, plain.numpy())
    # identities: the units that started in group 0, at group 1 and between 2 and 3 keep
    # the nearest (Hungarian) of the new units
    p = match_units(stuck, best.numpy())
    np.testing.assert_array_equal(p, np.arange(4))  # already in the matched order


def test_refined_units_never_have_higher_inertia_than_lloyd_from_the_units() -> None:
    """Best of (Lloyd from the learned units, k-means++ restarts): never worse than the
    first alone, which is the plain spherical Lloyd reference."""
    rng = np.random.default_rng(5)
    for trial in range(7):
        n, k = int(rng.integers(17, 40)), int(rng.integers(2, 6))
        if trial == 6:  # more than SEEDING_POINTS rows per unit: seeded on a sample
            n, k = 2 * SEEDING_POINTS + 13, 2
        x = rng.standard_normal((n, 5)) + rng.standard_normal((k, 5))[rng.integers(0, k, n)] * 2
        z = torch.from_numpy(x).float()
        start = torch.from_numpy(rng.standard_normal((k, 5))).float()
        plain = plain_spherical_lloyd(x, start.numpy().astype(np.float64), 20)
        for restarts in (0, 1, 3):
            best = refine_units(z, start, 20, seed=trial, restarts=restarts)
            assert spherical_inertia(x, best.numpy()) <= spherical_inertia(x, plain) + 1e-4


def test_kappa_loss_by_hand_and_when_an_embedding_moves_to_its_unit() -> None:
    units = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # d = [0, 2] and [2 − √2, 2 − √2]
    d = squared_distances(z, units)
    assert kappa_loss(d).item() == pytest.approx((0 + 2 - np.sqrt(2)) / 2, rel=1e-6)
    previous = kappa_loss(d).item()
    for t in (0.3, 0.6, 0.9):  # second embedding moves along the arc towards unit 0
        moved = torch.tensor([[2.0, 0.0], [1.0, 1.0 - t]])
        now = kappa_loss(squared_distances(moved, units)).item()
        assert now < previous
        previous = now
    parts = clustering_losses(z, units, 0.1)
    assert parts["l2"].item() == pytest.approx((4 + 2) / 2)
    assert torch.allclose(parts["q"].sum(1), torch.ones(2))


def test_assigned_kappa_pulls_each_view_to_its_crop_s_unit_by_hand() -> None:
    """A view nearer unit 1 whose crop was assigned unit 0 is pulled to unit 0: L_κ is its
    distance to unit 0, and moving it towards unit 0 lowers L_κ (towards unit 1 raises it)."""
    units = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[2.0, 0.0], [0.2, 1.0]], requires_grad=True)  # view 2 nearer unit 1
    assigned = torch.tensor([0, 0])
    parts = clustering_losses(z, units, 0.5, assigned)
    cos = 0.2 / np.hypot(0.2, 1.0)
    assert parts["kappa"].item() == pytest.approx((0 + 2 - 2 * cos) / 2, rel=1e-6)
    assert assigned_kappa_loss(squared_distances(z, units), assigned).item() == pytest.approx(
        parts["kappa"].item()
    )
    (grad,) = torch.autograd.grad(parts["kappa"], [z])
    assert grad[1, 0] < 0 < grad[1, 1]  # descent moves view 2 towards unit 0, off unit 1
    soft = clustering_losses(z, units, 0.5)["kappa"].item()  # soft: pulled to unit 1 mostly
    assert soft < parts["kappa"].item()
    with torch.no_grad():
        towards = clustering_losses(torch.tensor([[2.0, 0.0], [0.6, 1.0]]), units, 0.5, assigned)
        away = clustering_losses(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), units, 0.5, assigned)
    assert towards["kappa"] < parts["kappa"] < away["kappa"]


def test_soft_kappa_moves_a_unit_that_the_hard_min_leaves_dead() -> None:
    """The cause of the lost clusters: with L_κ = mean_i min_j d_ij a unit that is no
    sample's nearest gets no gradient at all; the soft form Σ_j q_ij d_ij pulls it."""
    units = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.2]], requires_grad=True)
    z = torch.tensor([[1.0, 0.1], [0.9, -0.2], [0.1, 1.0], [-0.6, 0.9]])
    d = squared_distances(z, units)
    assert set(d.argmin(1).tolist()) == {0, 1}  # unit 2 wins nothing
    (hard,) = torch.autograd.grad(kappa_loss(d), [units])
    assert torch.all(hard[2] == 0) and hard[:2].abs().sum() > 0  # dead unit
    d = squared_distances(z, units)
    q = soft_assignment(d, 0.5).detach()
    soft = kappa_loss(d, q)
    assert soft.item() == pytest.approx(float((q * d).sum(1).mean().detach()), rel=1e-6)
    (grad,) = torch.autograd.grad(soft, [units])
    assert grad[2].norm() > 1e-4
    moved = (units - 0.5 * grad).detach()  # one gradient step on the units only
    before = squared_distances(z, units.detach())[:, 2]
    after = squared_distances(z, moved)[:, 2]
    assert (after < before).all()  # the dead unit moves towards the samples
    # q is a constant in the gradient: the pull on z is Σ_j q_ij ∂d_ij/∂z_i
    zz = z.clone().requires_grad_(True)
    (gz,) = torch.autograd.grad(kappa_loss(squared_distances(zz, units), q), [zz])
    ref = torch.zeros_like(z)
    for j in range(3):
        zj = z.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((q[:, j] * squared_distances(zj, units)[:, j]).mean(), [zj])
        ref += g
    assert torch.allclose(gz, ref, atol=1e-6)


def test_calibrated_batchnorm_makes_eval_mode_agree_with_training() -> None:
    """The second cause: a fresh network's BN running statistics are (0, 1), so its
    eval-mode embedding (k-means init, assignment) is not the batch-normalised one that
    training pulls to the units. After calibration the two agree."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3))
    x = torch.randn(601, 5) * 3 + 4
    net.train()
    with torch.no_grad():
        trained = net(x)  # batch statistics of all 601 rows
    net.eval()
    with torch.no_grad():
        fresh = net(x)
    assert (fresh - trained).abs().max() > 0.5  # uncalibrated: another function
    norms = calibrate_batchnorm(net, [x])
    assert len(norms) == 1 and norms[0].momentum == 0.1 and not net.training
    with torch.no_grad():
        now = net(x)
    assert torch.allclose(now, trained, atol=5e-3)  # unbiased vs biased variance only
    bn = norms[0]
    h = net[0](x).detach()
    parts = [h[:300], h[300:]]
    calibrate_batchnorm(net, [x[:300], x[300:]])  # cumulative average over batches
    np.testing.assert_allclose(
        bn.running_mean.numpy(), ((parts[0].mean(0) + parts[1].mean(0)) / 2).numpy(), atol=1e-5
    )


def test_background_squares_stay_away_from_the_objects() -> None:
    frames = np.array([0, 10, 0, 10])
    boxes = np.array([[10, 10, 30, 30], [50, 10, 70, 30], [40, 60, 60, 80], [40, 60, 60, 80]])
    tracks = np.array([0, 0, 1, 1])
    mid = boxes_at(5, [frames[:2], frames[2:]], [boxes[:2], boxes[2:]])
    np.testing.assert_allclose(mid, [[30, 10, 50, 30], [40, 60, 60, 80]])  # interpolated
    assert len(boxes_at(11, [frames[:2]], [boxes[:2]])) == 0  # track over
    plan = plan_backgrounds(frames, boxes, tracks, 97, 89, 25, 0.0, 0.1,
                            np.random.default_rng(0))  # fmt: skip
    assert len(plan) == 25
    for f, sq in plan:
        assert f in (0, 10) and sq[2] - sq[0] == sq[3] - sq[1] == 20  # objects' side
        assert sq[0] >= 0 and sq[2] <= 97 and sq[1] >= 0 and sq[3] <= 89
        grown = boxes[frames == f] + np.array([-2, -2, 2, 2])
        assert not overlaps(sq[None], grown)[0]
    again = plan_backgrounds(frames, boxes, tracks, 97, 89, 25, 0.0, 0.1,
                             np.random.default_rng(0))  # fmt: skip
    assert all(
        a[0] == b[0] and np.array_equal(a[1], b[1]) for a, b in zip(plan, again, strict=True)
    )
    full = np.array([[0, 0, 97, 89]] * 2)  # an object fills the frame: no room
    assert plan_backgrounds(np.array([0, 1]), full, np.array([0, 0]), 97, 89, 3, 0.0, 0.0,
                            np.random.default_rng(0)) == []  # fmt: skip


def test_rows_by_video_are_the_rows_of_each_video_in_order() -> None:
    g = np.random.default_rng(3)
    names = np.array(["b", "a", "v10", "v2", "ü"])
    for ids in (names[g.integers(0, 5, 200)], np.sort(names[g.integers(0, 5, 50)]), names[:1]):
        rows = rows_by_video(ids)
        assert sorted(rows) == sorted(set(ids.tolist()))
        for vid, got in rows.items():
            want = np.flatnonzero(ids == vid)
            assert got.dtype == np.int64 and np.array_equal(got, want), vid


# ---------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Crops of the moving objects (ground-truth tracks) of 3 tiny synthetic videos,
    the videos manifest, and a labels JSONL (appearance class of every crop id)."""
    root = tmp_path_factory.mktemp("moving")
    r = invoke("synth", root / "synth", "--videos", 3, "--frames", 9, "--width", 83,
               "--height", 61, "--min-objects", 2, "--max-objects", 2, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = invoke("crops", root / "synth" / "gt_tracks.jsonl", "--videos",
               root / "synth" / "videos.jsonl", "-o", root / "crops.zarr", "--per-track", 4,
               "--size", 33, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    from vcl.io.store import Store

    label = {}
    for line in (root / "synth" / "gt_tracks.jsonl").read_text().splitlines():
        t = json.loads(line)
        label[t["id"]] = t["label"]
    store = Store(root / "crops.zarr", kind="crops")
    ids = [f"{t}@{f}" for t, f in zip(store["track_id"][:], store["frame"][:], strict=True)]
    labels = root / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": i, "label": label[i.split("@")[0]]}) + "\n"
                              for i in ids))  # fmt: skip
    return root / "crops.zarr", root / "synth" / "videos.jsonl", labels


def test_two_epochs_write_a_run_directory_and_a_clusters_store(data, tmp_path: Path) -> None:
    from vcl.io.store import Store

    crops, videos, labels = data
    run = crops.parent / "run"
    r = invoke("pretrain", crops, "--videos", videos, "--epochs", 2, "-o", run, *TINY)
    assert r.exit_code == 0, r.output
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "moving-clusters" and config["k"] == 3
    assert config["videos"] == [str(videos)] and config["balance_weight"] == 1.0
    n = Store(crops, kind="crops").n_rows
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["head"]["units"].shape == (3, 128)  # the memory units
    norms = state["head"]["units"].norm(dim=1)  # refined after the last epoch: unit norm
    assert torch.allclose(norms, torch.ones(3), atol=1e-4)
    assert state["classifier"]["weight"].shape == (1, 128)  # the discriminator
    bg = Store(run / "background.zarr", kind="crops")
    assert bg.n_rows == n and bg["image"].shape[1:] == (33, 33, 3)
    lines = metrics(run)
    assert [m["epoch"] for m in lines] == [0, 1, 2]
    for m in lines[1:]:
        for key in ("loss", "l_kappa", "l_2", "l_c", "l_disc"):
            assert np.isfinite(m[key]) and m[key] >= 0, key
        assert 0 <= m["disc_accuracy"] <= 1 and 0 <= m["change_ratio"] <= 1
    labels_2 = np.load(run / "labels_epoch_2.npy")
    assert labels_2.shape == (n,) and labels_2.min() >= 0 and labels_2.max() < 3

    clusters = run / "clusters.zarr"
    store = Store(clusters, kind="clusters")
    assert np.array_equal(store["assignment"][:, 0], labels_2)
    r = invoke("cluster", "eval", clusters, "--labels", labels)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert 0 <= report["nmi"] <= 1 and report.get("unlabelled", 0) == 0


def test_resume_is_exact(data) -> None:
    crops, videos, _ = data
    full, part = crops.parent / "run", crops.parent / "part"
    if not (full / "checkpoint.pt").exists():
        r = invoke("pretrain", crops, "--videos", videos, "--epochs", 2, "-o", full, *TINY)
        assert r.exit_code == 0, r.output
    r = invoke("pretrain", crops, "--videos", videos, "--epochs", 1, "-o", part, *TINY)
    assert r.exit_code == 0, r.output
    r = invoke("pretrain", crops, "--epochs", 2, "--resume", part, "-q")
    assert r.exit_code == 0, r.output
    assert [without_timing(m) for m in metrics(part)] == [without_timing(m) for m in metrics(full)]
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    for group in ("backbone", "head", "classifier"):
        for name, value in a[group].items():
            assert torch.equal(value, b[group][name]), name
    assert np.array_equal(
        np.load(full / "labels_epoch_2.npy"), np.load(part / "labels_epoch_2.npy")
    )


def test_bad_inputs(data, tmp_path: Path) -> None:
    from vcl.io.store import StoreWriter
    from vcl.pretrain.data import open_crops

    crops, videos, _ = data
    objects = open_crops(crops).n_tracks
    r = invoke("pretrain", crops, "--videos", videos, "-o", tmp_path / "r", *TINY,
               "--k", objects + 1)  # fmt: skip
    assert r.exit_code == ExitCode.DATA
    assert f"--k {objects + 1}" in r.stderr and f"moving objects (tracks) ({objects})" in r.stderr
    r = invoke("pretrain", crops, "-o", tmp_path / "r", *TINY)
    assert r.exit_code == ExitCode.USAGE and "--videos" in r.stderr

    empty = tmp_path / "empty.zarr"
    with StoreWriter(empty, "vcl.crops/1", {}) as w:
        w.define_columns({"image": ("uint8", (9, 9, 3)), "track_id": (str, ()),
                          "video_id": (str, ()), "frame": ("int32", ()),
                          "box": ("float32", (4,))})  # fmt: skip
    r = invoke("pretrain", empty, "--videos", videos, "-o", tmp_path / "r", *TINY)
    assert r.exit_code == ExitCode.DATA and "no moving objects" in r.stderr
    assert str(empty) in r.stderr and not (tmp_path / "r" / "checkpoint.pt").exists()

    other = tmp_path / "other.jsonl"  # a manifest without the crops' videos
    first = videos.read_text().splitlines()[0]
    other.write_text(first.replace('"v0000"', '"elsewhere"') + "\n")
    r = invoke("pretrain", crops, "--videos", other, "-o", tmp_path / "r2", *TINY)
    assert r.exit_code == ExitCode.DATA and "not in --videos" in r.stderr


def test_background_plans_are_those_of_each_video_s_rows(data, monkeypatch, tmp_path) -> None:
    """Every video's background plan gets its crops' rows (grouped once, not one scan of
    every crop per video) and its own seeded generator, in the crops' video order."""
    import vcl.pretrain.moving as moving
    from vcl.pretrain.data import open_crops

    crops, videos, _ = data
    info = open_crops(crops)
    meta = info.open_store()
    frames, boxes = meta["frame"][:].astype(np.int64), meta["box"][:].astype(np.float64)
    calls = []
    real = moving.plan_backgrounds

    def plan(*args):
        calls.append((args[:3], args[-1].bit_generator.state))
        return real(*args)

    monkeypatch.setattr(moving, "plan_backgrounds", plan)
    opts = moving.MovingOptions(videos=[str(videos)])
    n = moving.write_backgrounds(tmp_path / "bg.zarr", info, [str(videos)], opts, 7)
    vids = list(dict.fromkeys(info.video_ids.tolist()))
    assert n > 0 and len(calls) == len(vids) > 1
    for number, (vid, (got, state)) in enumerate(zip(vids, calls, strict=True)):
        rows = np.flatnonzero(info.video_ids == vid)
        for a, b in zip(got, (frames[rows], boxes[rows], info.track_index[rows]), strict=True):
            assert np.array_equal(a, b), vid
        assert state == np.random.default_rng([7, number, 17]).bit_generator.state


def test_calibration_reads_batches_as_training_does(data) -> None:
    """The BatchNorm calibration pass reads its batches with the training loader's
    workers (and pinned memory on CUDA, prefetch); the run is the same as with none."""
    crops, videos, _ = data
    full = crops.parent / "run"
    if not (full / "checkpoint.pt").exists():
        r = invoke("pretrain", crops, "--videos", videos, "--epochs", 2, "-o", full, *TINY)
        assert r.exit_code == 0, r.output
    made = []
    real = torch.utils.data.DataLoader

    class Loader(real):  # type: ignore[misc, valid-type]
        def __init__(self, dataset, **kwargs) -> None:
            made.append((type(dataset).__name__, kwargs))
            super().__init__(dataset, **kwargs)

    run = crops.parent / "workers"
    args = list(TINY)
    args[args.index("--workers") + 1] = "2"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.utils.data, "DataLoader", Loader)
        r = invoke("pretrain", crops, "--videos", videos, "--epochs", 1, "-o", run, *args)
    assert r.exit_code == 0, r.output
    two_store = [kw for name, kw in made if name == "TwoStoreBatches"]
    assert len(two_store) == 2  # the calibration pass, then epoch 1
    for kw in two_store:
        assert kw.get("num_workers") == 2 and kw.get("prefetch_factor") == 4
        assert kw.get("pin_memory") is False
    assert [without_timing(m) for m in metrics(run)] == [
        without_timing(m) for m in metrics(full)[:2]
    ]


def test_kmeans_runs_on_the_faiss_gpu_of_the_training_device(data, monkeypatch, tmp_path):
    """The k-means init and each epoch's refinement (Lloyd from the units, then the
    restarts) get the faiss GPU decided from the run's device (faked here: the run is on
    the CPU, and so is the k-means)."""
    import vcl.pretrain.moving as moving
    from tests.conftest import fake_faiss_gpu

    crops, videos, _ = data
    devices, gpus = fake_faiss_gpu(monkeypatch, moving, "kmeans")
    r = invoke("pretrain", crops, "--videos", videos, "--epochs", 1, "-o", tmp_path / "run",
               *TINY)  # fmt: skip
    assert r.exit_code == 0, r.output
    restarts = moving.MovingOptions().refine_restarts
    assert gpus == [5] * (2 + restarts) and set(devices) == {torch.device("cpu")}


def test_training_pulls_views_to_the_assigned_units_unless_soft(data, monkeypatch) -> None:
    """With the default kappa target every object crop of a batch is pulled to the unit
    of its crop's current assignment (the run's labels), with ``soft`` to none."""
    import vcl.pretrain.moving as moving

    crops, videos, _ = data
    seen: list[np.ndarray] = []
    original = moving.assigned_kappa_loss

    def spy(d: torch.Tensor, assigned: torch.Tensor) -> torch.Tensor:
        seen.append(assigned.cpu().numpy())
        return original(d, assigned)

    monkeypatch.setattr(moving, "assigned_kappa_loss", spy)
    for target, calls in (("soft", 0), ("assigned", None)):
        seen.clear()
        run = crops.parent / f"run-{target}"
        r = invoke("pretrain", crops, "--videos", videos, "--epochs", 1, "-o", run,
                   "--kappa-target", target, "--overwrite", *TINY)  # fmt: skip
        assert r.exit_code == 0, r.output
        assert json.loads((run / "config.json").read_text())["kappa_target"] == target
        if calls == 0:
            assert not seen
            continue
        initial = np.load(run / "labels_epoch_0.npy")  # the assignment epoch 1 trains on
        # an epoch visits every object crop once: the targets are the crops' assignments
        pulled = np.concatenate(seen)
        assert np.array_equal(np.bincount(pulled, minlength=3), np.bincount(initial, minlength=3))
    r = invoke("pretrain", crops, "--videos", videos, "-o", crops.parent / "bad",
               "--kappa-target", "hard", *TINY)  # fmt: skip
    assert r.exit_code == ExitCode.USAGE and "--kappa-target" in r.stderr
