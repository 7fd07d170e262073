"""SLIC (vcl pretrain --method slic): losses against hand-computed values, the authors'
triplet sampling against a plain loop, positive sampling, the flow view and its colour
augmentation, the authors' defaults, a tiny run."""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import metrics, moving_square_frames
from vcl.errors import ExitCode
from vcl.pretrain.clips import ClipParams, colour_augment
from vcl.pretrain.slic import (
    SLIC_COLOUR,
    SLICOptions,
    clip_starts,
    cosine_distances,
    flow_view,
    plan_triplet_batch,
    sample_positive_videos,
    select_triplets,
    temporal_loss,
    triplet_loss,
)


def unit(*degrees: float) -> torch.Tensor:
    """2-D unit vectors at these angles: cosine distances are 1 − cos(Δangle)."""
    a = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], dim=1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------- losses


def test_triplet_loss_by_hand() -> None:
    # labels 0 0 1 1 at 0°, 60°, 90°, 150° with m1 = 0.2.
    # pair (0, 1): d_ap = 0.5; negatives 2 (d = 1.0) and 3 (d = 1 − cos 150° ≈ 1.866) are
    #   both beyond d_ap + m = 0.7 → the closest, 2; hinge max(0, 0.5 − 1 + 0.2) = 0.
    # pair (2, 3): d_ap = 0.5; negative 1 (d = 1 − cos 30°) violates, 0 (d = 1) does not →
    #   1; hinge 0.5 − (1 − cos 30°) + 0.2.
    z = unit(0, 60, 90, 150)
    labels = torch.tensor([0, 0, 1, 1])
    a, p, n = select_triplets(cosine_distances(z, z), labels, 0.2, gen())
    assert a.tolist() == [0, 2] and p.tolist() == [1, 3] and n.tolist() == [2, 1]
    stats = triplet_loss(z, labels, 0.2, gen())
    expected = (0.0 + (0.5 - (1 - math.cos(math.pi / 6)) + 0.2)) / 2
    assert stats.loss.item() == pytest.approx(expected, abs=1e-9)
    assert stats.triplets == 2 and stats.active == 0.5


def test_triplet_loss_gradient_and_empty_batch() -> None:
    z = unit(0, 60, 90, 150).requires_grad_()
    triplet_loss(z, torch.tensor([0, 0, 1, 1]), 0.2, gen()).loss.backward()
    assert z.grad is not None and z.grad[3].abs().sum() > 0 and z.grad[0].abs().sum() == 0
    # one cluster only: no negatives, no triplet, a zero loss that still back-propagates
    w = unit(0, 10, 20).requires_grad_()
    stats = triplet_loss(w, torch.zeros(3, dtype=torch.int64), 0.2, gen())
    assert stats.triplets == 0 and stats.loss.item() == 0 and math.isnan(stats.active)
    stats.loss.backward()
    assert w.grad is not None


def reference_choices(dist: np.ndarray, labels: np.ndarray, margin: float) -> dict:
    """The authors' loops: label by label, every pair of members, the set of allowed
    negatives (violators, else the single closest one)."""
    out = {}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        negatives = np.flatnonzero(labels != label)
        if len(members) < 2 or len(negatives) == 0:
            continue
        for a, p in combinations(members, 2):
            loss = dist[a, p] + margin - dist[a, negatives]
            if (loss > 0).any():
                out[(a, p)] = set(negatives[loss > 0].tolist())
            else:
                out[(a, p)] = {int(negatives[np.argmin(dist[a, negatives])])}
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semi_hard_selection_matches_a_plain_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    z = torch.as_tensor(rng.normal(size=(13, 5)))
    labels = torch.as_tensor(rng.integers(0, 4, 13))
    dist = cosine_distances(z, z)
    ref = reference_choices(dist.numpy(), labels.numpy(), 0.3)
    seen: dict = {}
    for draw in range(30):
        a, p, n = select_triplets(dist, labels, 0.3, gen(draw))
        pairs = list(zip(a.tolist(), p.tolist(), strict=True))
        assert sorted(pairs) == sorted(ref)
        for pair, neg in zip(pairs, n.tolist(), strict=True):
            assert neg in ref[pair]
            seen.setdefault(pair, set()).add(neg)
    # the random choice reaches several violators where there are several
    many = [pair for pair, allowed in ref.items() if len(allowed) >= 3]
    assert many and any(len(seen[pair]) >= 2 for pair in many)


def test_temporal_loss_by_hand() -> None:
    x = unit(0, 0)
    aug = unit(30, 30)  # d = 1 − cos 30° ≈ 0.134
    plus = unit(90, 20)  # d = 1, then 1 − cos 20° ≈ 0.0603
    loss, active = temporal_loss(x, aug, plus, 0.04)
    second = (1 - math.cos(math.pi / 6)) - (1 - math.cos(math.pi / 9)) + 0.04
    assert loss.item() == pytest.approx((0.0 + second) / 2, abs=1e-9)
    assert active == 0.5


# ---------------------------------------------------------------------------- sampling


def test_positives_same_video_or_same_cluster() -> None:
    clusters = np.array([0, 0, 1, 1, 1, 2, 0])
    anchors = np.repeat(np.arange(7), 400)
    rng = np.random.default_rng(0)
    pos, same = sample_positive_videos(anchors, clusters, 0.0, rng)
    assert not same.any()
    assert (clusters[pos] == clusters[anchors]).all()
    singleton = anchors == 5  # alone in its cluster: its own video
    assert (pos[singleton] == 5).all() and (pos[~singleton] != anchors[~singleton]).all()
    counts = np.bincount(pos[anchors == 2], minlength=7)  # uniform over videos 3 and 4
    assert counts[[3, 4]].sum() == 400 and abs(counts[3] - counts[4]) < 80
    counts = np.bincount(pos[anchors == 0], minlength=7)  # over 1 and 6
    assert counts[[1, 6]].sum() == 400 and min(counts[1], counts[6]) > 150
    pos, same = sample_positive_videos(anchors, clusters, 1.0, rng)
    assert same.all() and (pos == anchors).all()
    pos, same = sample_positive_videos(anchors, clusters, 0.3, rng)
    assert abs(same.mean() - 0.3) < 0.03 and (pos[same] == anchors[same]).all()
    # without clustering every video is its own cluster: always its own video
    pos, _ = sample_positive_videos(anchors, np.arange(7), 0.0, rng)
    assert (pos == anchors).all()


def test_clip_starts_follow_the_authors_temporal_crops() -> None:
    n = np.array([40, 20, 10, 5] * 50)
    a, p = clip_starts(n, 8, np.random.default_rng(1))
    assert (a == 0).all()
    assert p[n == 40].min() >= 8 and p[n == 40].max() <= 32 and len(set(p[n == 40])) > 10
    assert set(p[n == 20]) <= set(range(8, 13))
    assert (p[n == 10] == 2).all() and (p[n == 5] == 0).all()


def test_batch_plan_is_seeded_and_keeps_the_anchor_rgb() -> None:
    frames = np.array([30, 12, 25, 40, 9])
    opts = SLICOptions(flow_prob=0.5)
    one = plan_triplet_batch(frames, np.arange(5), np.zeros(5, int), ClipParams(8, 32), opts,
                             np.random.default_rng(3))  # fmt: skip
    two = plan_triplet_batch(frames, np.arange(5), np.zeros(5, int), ClipParams(8, 32), opts,
                             np.random.default_rng(3))  # fmt: skip
    for name in one.__dataclass_fields__:
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert not one.flow[:, 0].any()
    assert (one.start[:, 0] == 0).all() and (one.start[:, 2] == 0).all()  # x and aug(x)


# ---------------------------------------------------------------------------- views


def test_flow_view_is_the_horizontal_flow_as_a_grey_image() -> None:
    """The authors' optical_u view: u quantised with zero motion at 128, in all three
    channels; a square moving right shows, one moving down does not."""
    right = np.stack(moving_square_frames(n=6, width=37, height=23))  # x = t .. t + 5
    view = flow_view(right, "dis")
    assert view.shape == right.shape and view.dtype == np.uint8
    assert np.array_equal(view[..., 0], view[..., 1]) and np.array_equal(view[..., 1], view[..., 2])
    assert np.array_equal(view[-1], view[-2])  # the last frame repeats the last flow
    square = view[:-1, 6:10, 7:10, 0]  # inside the square on frames 1..4
    assert np.median(square) > 140  # u > 0: brighter than zero motion
    assert abs(np.median(view[:-1, 16:, :, 0]) - 128) <= 1  # still background
    down = np.ascontiguousarray(right.transpose(0, 2, 1, 3))  # the same square moving down
    view = flow_view(down, "dis")
    assert np.array_equal(view[..., 0], view[..., 2])
    assert abs(np.median(view[:-1, 7:10, 6:10, 0]) - 128) <= 1  # v only: no u, grey 128
    still = flow_view(np.repeat(right[:1], 3, axis=0), "dis")
    assert np.abs(still.astype(int) - 128).max() <= 1
    assert (flow_view(right[:1], "dis") == 128).all()  # one frame: no motion


def test_colour_draws_of_a_batch_plan_are_the_authors() -> None:
    """Every view of every item has its own colour draw (SLIC's ranges), from the plan."""
    frames = np.full(400, 40)
    opts = SLICOptions()
    params = ClipParams(8, 32, colour=SLIC_COLOUR)
    plan = plan_triplet_batch(frames, np.arange(400), np.zeros(400, int), params, opts,
                              np.random.default_rng(5))  # fmt: skip
    assert plan.colour.shape == (400, 3, 11)
    c = plan.colour.reshape(-1, 11)
    assert abs(c[:, 0].mean() - 0.8) < 0.04  # jitter p 0.8
    assert c[:, 1:4].min() >= 0.5 and c[:, 1:4].max() <= 1.5 and np.abs(c[:, 4]).max() <= 0.5
    assert abs(c[:, 9].mean() - 0.2) < 0.04 and abs(c[:, 10].mean() - 0.2) < 0.04
    assert len(np.unique(c[:, 1])) == len(c)
    plain = ClipParams(8, 32)
    none = plan_triplet_batch(frames, np.arange(400), np.zeros(400, int), plain, opts,
                              np.random.default_rng(5))  # fmt: skip
    assert none.colour.shape == (400, 3, 0)


def test_flow_views_take_the_colour_augmentation_and_stay_grey() -> None:
    """As in the authors' code the flow view goes through the RGB clips' transform: on its
    grey image brightness and contrast act, saturation, hue and grayscale do not."""
    view = flow_view(np.stack(moving_square_frames(n=5, width=37, height=23)), "dis")
    x = torch.from_numpy(view).permute(0, 3, 1, 2).float().div(255)[None]  # (1, T, 3, H, W)
    x = x.expand(4, -1, -1, -1, -1)
    draw = torch.tensor(  # jitter, brightness, contrast, saturation, hue, order, gray, blur
        [
            [1, 1.4, 0.6, 0.5, 0.3, 0, 1, 2, 3, 0, 0],
            [1, 1.0, 1.0, 1.5, -0.4, 3, 2, 1, 0, 1, 0],  # saturation, hue, grayscale only
            [0, 1.0, 1.0, 1.0, 0.0, 0, 1, 2, 3, 0, 1],  # blur only
            [0, 1.0, 1.0, 1.0, 0.0, 0, 1, 2, 3, 0, 0],
        ],
        dtype=torch.float64,
    )
    y = colour_augment(x, draw, SLIC_COLOUR)
    assert torch.equal(y[:, :, 0], y[:, :, 1]) and torch.equal(y[:, :, 1], y[:, :, 2])
    assert (y[0] - x[0]).abs().max() > 0.1  # brightness and contrast changed it
    torch.testing.assert_close(y[1], x[1], atol=1e-4, rtol=0)  # no effect on grey
    assert (y[2] - x[2]).abs().max() > 0.05 and torch.equal(y[3], x[3])  # blurred, untouched


# ---------------------------------------------------------------------------- runs


TINY = ["--method", "slic", "--frames", "8", "--size", "32", "--batch-size", "3",
        "--cluster-every", "1", "--flow-prob", "0.5", "--device", "cpu", "--workers", "0",
        "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from vcl.cli.app import app

    root = tmp_path_factory.mktemp("slic")
    args = ["synth", root / "synth", "--videos", 6, "--frames", 14, "--width", 45,
            "--height", 37, "--min-objects", 1, "--max-objects", 1, "-q"]  # fmt: skip
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return root / "synth" / "videos.jsonl"


@pytest.fixture
def one_thread():
    """r3d_18 on a loaded 2-core machine runs faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def timeless(m: dict) -> dict:
    drop = ("samples_per_s", "seconds", "clips_per_s", "cluster_seconds")
    return {k: v for k, v in m.items() if k not in drop}


def test_two_epochs_write_a_run_and_resume_exactly(videos: Path, invoke, one_thread) -> None:
    from vcl.backbones import build_backbone, load_backbone

    full = videos.parent.parent / "full"
    r = invoke("pretrain", videos, "--epochs", 2, "-o", full, *TINY)
    assert r.exit_code == 0, r.output
    config = json.loads((full / "config.json").read_text())
    assert config["method"] == "slic" and config["arch"] == "r3d_18" and config["size"] == 32
    assert config["p_same"] == 0.2 and config["triplet_margin"] == 0.2
    assert config["temporal_margin"] == 0.04 and config["cluster_every"] == 1
    assert config["weight_decay"] == 0.0 and config["colour"] is True  # the authors'
    assert config["samples"] == 6
    state = torch.load(full / "checkpoint.pt", weights_only=True)
    assert state["backbone"].keys() == build_backbone("r3d_18").state_dict().keys()
    assert state["head"]["3.weight"].shape == (128, 2048)
    model, _ = load_backbone(full)
    assert torch.equal(
        model.state_dict()["net.stem.0.weight"], state["backbone"]["net.stem.0.weight"]
    )
    lines = metrics(full)
    assert [m["epoch"] for m in lines] == [0, 1, 2]
    assert lines[0]["clusters"] == 6  # every video its own cluster before FINCH
    for m in lines[1:]:
        assert np.isfinite(m["loss"]) and m["loss"] >= 0
        assert m["loss"] == pytest.approx(m["triplet_loss"] + m["temporal_loss"], rel=1e-5)
        assert 1 <= m["clusters"] < 6 and sum(m["largest_clusters"]) == 6
        assert 0 <= m["nmi"] <= 1 and m["ami"] <= 1  # synth labels = motion patterns
        assert m["active_triplets"] is None or 0 <= m["active_triplets"] <= 1
        assert 0 <= m["flow_views"] <= 1 and m["clips_per_s"] > 0
    labels = np.load(full / "labels_epoch_2.npy")
    assert labels.shape == (6,) and labels.max() + 1 == lines[2]["clusters"]

    part = videos.parent.parent / "part"
    r = invoke("pretrain", videos, "--epochs", 1, "-o", part, *TINY)
    assert r.exit_code == 0, r.output
    r = invoke("pretrain", videos, "--epochs", 2, "--resume", part, "-q")
    assert r.exit_code == 0, r.output
    assert [timeless(m) for m in metrics(part)] == [timeless(m) for m in metrics(full)]
    a = torch.load(part / "checkpoint.pt", weights_only=True)
    for name, value in state["backbone"].items():
        assert torch.equal(value, a["backbone"][name]), name
    assert torch.equal(state["method_state"]["clusters"], a["method_state"]["clusters"])


def test_ablation_switches_and_bad_options(videos: Path, invoke, one_thread, tmp_path) -> None:
    run = tmp_path / "ablation"
    r = invoke("pretrain", videos, "--epochs", 1, "-o", run, *TINY, "--no-clustering",
               "--no-temporal", "--flow-prob", "0")  # fmt: skip
    assert r.exit_code == 0, r.output
    m = metrics(run)[1]
    assert m["clusters"] == 6 and m["temporal_loss"] is None and m["flow_views"] == 0
    assert m["nmi"] is None and m["loss"] == pytest.approx(m["triplet_loss"], rel=1e-5)
    r = invoke("pretrain", videos, "--flow", "farneback", "-o", tmp_path / "bad", *TINY)
    assert r.exit_code == ExitCode.USAGE and "--flow" in r.stderr
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    manifest = tmp_path / "with_broken.jsonl"
    lines = videos.read_text().splitlines()
    base = videos.parent
    fixed = [
        json.dumps({**json.loads(x), "path": str(base / json.loads(x)["path"])}) for x in lines
    ]
    fixed.append(json.dumps({"id": "broken", "path": str(broken)}))
    manifest.write_text("\n".join(fixed) + "\n")
    r = invoke("pretrain", manifest, "--epochs", 1, "-o", tmp_path / "b", *TINY)
    assert r.exit_code != 0 and "broken" in r.stderr and "--keep-going" in r.stderr
    assert "Traceback" not in r.output


def test_defaults_are_the_authors_and_given_flags_win(videos: Path, invoke, monkeypatch,
                                                     tmp_path: Path) -> None:  # fmt: skip
    """128-px clips and SGD without weight decay (every official config, online_train.py)
    are recorded in config.json; --size, --weight-decay, --no-colour given win."""
    from vcl.pretrain.slic import SLICMethod

    monkeypatch.setattr(SLICMethod, "batches", lambda self, epoch: [])  # config only
    common = ["--method", "slic", "--epochs", 1, "--frames", 8, "--device", "cpu",
              "--workers", 0, "-q"]  # fmt: skip
    r = invoke("pretrain", videos, "-o", tmp_path / "default", *common)
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "default" / "config.json").read_text())
    assert config["size"] == 128 and config["weight_decay"] == 0.0 and config["lr"] == 0.1
    assert config["arch"] == "r3d_18" and config["colour"] is True
    r = invoke("pretrain", videos, "-o", tmp_path / "given", *common, "--size", 48,
               "--weight-decay", 0.001, "--no-colour")  # fmt: skip
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "given" / "config.json").read_text())
    assert config["size"] == 48 and config["weight_decay"] == 0.001 and config["colour"] is False


def test_undecodable_video_is_named_and_leaves_no_run(invoke, tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    r = invoke("pretrain", bad, "--method", "slic", "-o", tmp_path / "run", "--device", "cpu")
    assert r.exit_code == ExitCode.DATA
    assert r.stderr.startswith("error:") and "bad.mp4" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# ---------------------------------------------------------------------------- device work


def test_a_step_reads_nothing_back_and_sums_what_host_floats_did(
    videos: Path, one_thread, monkeypatch, tmp_path: Path
) -> None:
    """A training step calls no float() / .item() on a tensor (each a GPU → CPU wait)
    and copies no cluster labels to the device (they go there once per clustering);
    the epoch's metrics are bit for bit the host-float sums of each step's terms."""
    import contextlib

    from vcl.pretrain.loop import TrainConfig
    from vcl.pretrain.slic import SLICMethod

    opts = SLICOptions(frames=8, flow_prob=0.5, cluster_every=5)
    config = TrainConfig(input=str(videos), method="slic", output=str(tmp_path),
                         arch="r3d_18", size=32, batch_size=3, workers=0, options=opts)  # fmt: skip
    method = SLICMethod(config, SLICMethod.open_data(str(videos)), torch.device("cpu"))
    clusters = np.array([0, 0, 1, 1, 2, 2], np.int64)
    method.clusters = clusters  # as a clustering sets them (not every video alone)
    batches = list(method.batches(2))  # epoch 2: no clustering due
    assert len(batches) == 2
    torch.manual_seed(0)
    linear = torch.nn.Linear(3 * 8 * 32 * 32, 128)
    outputs: list[torch.Tensor] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        z = torch.nn.functional.normalize(linear(x.flatten(1)), dim=1)
        outputs.append(z.detach().clone())
        return z

    reads, copies = [], []
    real_float, real_item = torch.Tensor.__float__, torch.Tensor.item
    real_as_tensor = torch.as_tensor
    monkeypatch.setattr(torch.Tensor, "__float__", lambda t: reads.append(t) or real_float(t))
    monkeypatch.setattr(torch.Tensor, "item", lambda t: reads.append(t) or real_item(t))
    copy = lambda a, *args, **kw: copies.append(a) or real_as_tensor(a, *args, **kw)  # noqa: E731
    monkeypatch.setattr(torch, "as_tensor", copy)
    for iteration, batch in enumerate(batches, 1):
        method.train_step(model, batch, iteration, contextlib.nullcontext)
    monkeypatch.undo()
    assert reads == [] and copies == []

    ref = dict.fromkeys(("triplet", "temporal", "active", "temporal_active", "triplets"), 0.0)
    for iteration, ((_, anchors, _, _), z) in enumerate(zip(batches, outputs, strict=True), 1):
        b = len(anchors)
        g = gen(config.seed * 1_000_003 + iteration)
        trip = triplet_loss(z[: 2 * b], torch.as_tensor(clusters)[anchors].repeat(2), 0.2, g)
        temporal, active = temporal_loss(z[:b], z[2 * b :], z[b : 2 * b], 0.04)
        ref["triplet"] += float(trip.loss)
        ref["temporal"] += float(temporal)
        ref["triplets"] += trip.triplets
        ref["active"] += float(trip.active) * trip.triplets if trip.triplets else 0.0
        ref["temporal_active"] += float(active) * b
    assert ref["triplets"] > 0  # the labels set above reached the step
    m = method.epoch_metrics()
    assert m["triplet_loss"] == ref["triplet"] / 2 and m["temporal_loss"] == ref["temporal"] / 2
    assert m["triplets_per_batch"] == ref["triplets"] / 2
    assert m["active_triplets"] == ref["active"] / ref["triplets"]
    assert m["active_temporal"] == ref["temporal_active"] / 6


def test_finch_runs_on_the_faiss_gpu_of_the_training_device(
    videos: Path, invoke, one_thread, monkeypatch, tmp_path: Path
) -> None:
    """The clustering gets the faiss GPU decided from the run's device (faked here: the
    run is on the CPU, and FINCH then runs there)."""
    import vcl.pretrain.slic
    from tests.conftest import fake_faiss_gpu

    devices, gpus = fake_faiss_gpu(monkeypatch, vcl.pretrain.slic, "finch")
    r = invoke("pretrain", videos, "--epochs", 1, "-o", tmp_path / "run", *TINY)
    assert r.exit_code == 0, r.output
    assert gpus == [5] and devices == [torch.device("cpu")]
