"""vcl pretrain, video family (video-ir, video-la, video-la-idt): losses against hand
computations, memory bank, neighbour sets, clip sampling, per-clip colour augmentation
against torchvision, tiny runs, exact resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import cli as invoke
from tests.conftest import metrics, without_timing
from vcl.errors import DataError, ExitCode
from vcl.pretrain.clips import (
    ClipParams,
    ColourParams,
    attach_frames,
    centre_plan,
    colour_augment,
    draw_colour,
    epoch_plans,
    iterations,
    open_videos,
    plan_clips,
    read_clips,
    read_plan,
    require_decodable,
    to_input,
    write_frames,
)
from vcl.pretrain.instance import (
    VIDEO_COLOUR,
    background_neighbours,
    close_neighbours,
    estimate_log_z,
    la_loss,
    nce_loss,
    update_bank,
)

TINY = ["--arch", "r3d_18", "--size", "16", "--frames", "8", "--batch-size", "2",
        "--k", "2", "--runs", "2", "--device", "cpu", "--workers", "0", "-q"]  # fmt: skip
VIDEO_METHODS = ("video-ir", "video-la", "video-la-idt")


# ---------------------------------------------------------------------------- losses


def unit(rng: np.random.Generator, *shape: int) -> torch.Tensor:
    x = rng.normal(size=shape)
    return torch.tensor(x / np.linalg.norm(x, axis=-1, keepdims=True), dtype=torch.float64)


def test_nce_loss_equals_the_hand_computation() -> None:
    rng = np.random.default_rng(0)
    n, tau = 7, 0.07
    bank, d = unit(rng, n, 5), unit(rng, 3, 5)
    idx = torch.tensor([4, 0, 6])
    noise = torch.tensor([[1, 2], [3, 3], [0, 5]])  # m = 2 negatives each
    log_z = torch.tensor(math.log(11.0), dtype=torch.float64)
    loss, pos, neg = nce_loss(d, bank, idx, noise, tau, log_z)
    m, pn = 2, 1 / n
    want_pos, want_neg = [], []
    for b in range(3):

        def p(j: int, b: int = b) -> float:
            return math.exp(float(bank[j] @ d[b]) / tau) / 11.0

        want_pos.append(-math.log(p(int(idx[b])) / (p(int(idx[b])) + m * pn)))
        want_neg.append(-sum(math.log(m * pn / (p(int(j)) + m * pn)) for j in noise[b]))
    assert pos.item() == pytest.approx(np.mean(want_pos), rel=1e-9)
    assert neg.item() == pytest.approx(np.mean(want_neg), rel=1e-9)
    assert loss.item() == pytest.approx(np.mean(want_pos) + np.mean(want_neg), rel=1e-9)


def test_log_z_is_n_times_the_mean_score() -> None:
    rng = np.random.default_rng(1)
    bank, d = unit(rng, 9, 4), unit(rng, 2, 4)
    idx, noise = torch.tensor([1, 2]), torch.tensor([[0, 3, 4], [5, 6, 7]])
    scores = [math.exp(float(bank[j] @ d[b]) / 0.1) for b in range(2)
              for j in [int(idx[b]), *noise[b].tolist()]]  # fmt: skip
    got = estimate_log_z(d, bank, idx, noise, 0.1).item()
    assert got == pytest.approx(math.log(9 * np.mean(scores)), rel=1e-9)


def test_neighbour_sets() -> None:
    bank = torch.eye(5, dtype=torch.float64)
    d = torch.tensor([[0.9, 0.5, 0.1, 0.0, 0.3]], dtype=torch.float64)
    assert background_neighbours(d, bank, 3).tolist() == [[0, 1, 4]]
    assert background_neighbours(d, bank, 99).shape == (1, 5)  # clamped to N
    labels = torch.tensor([[0, 0, 1, 1, 2], [5, 6, 6, 5, 7]])  # 2 clusterings of 5 videos
    candidates = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
    close = close_neighbours(labels, torch.tensor([0, 2]), candidates)
    # video 0: same cluster as 1 in run 0, as 3 in run 1; video 2: 3 in run 0, 1 in run 1
    assert close.tolist() == [[True, True, False, True, False], [False, True, True, True, False]]


def test_la_loss_equals_eq_3_with_explicit_sets() -> None:
    rng = np.random.default_rng(2)
    n, tau, k = 8, 0.07, 4
    bank, d = unit(rng, n, 6), unit(rng, 2, 6)
    idx = torch.tensor([3, 5])
    labels = torch.tensor([[0, 1, 0, 0, 1, 2, 2, 1], [3, 3, 4, 4, 4, 4, 3, 3]])
    got = la_loss(d, bank, idx, labels, k, tau).item()
    want = []
    for b in range(2):
        dots = (bank @ d[b]).numpy()
        background = set(np.argsort(-dots)[:k].tolist())  # B_i
        i = int(idx[b])
        close = {j for j in range(n) if any(labels[r, j] == labels[r, i] for r in range(2))}
        e = {j: math.exp(dots[j] / tau) for j in range(n)}
        ratio = sum(e[j] for j in close & background) / sum(e[j] for j in background)
        want.append(-math.log(ratio + 1e-7))
    assert got == pytest.approx(np.mean(want), rel=1e-9)


def test_la_loss_has_gradient_towards_close_neighbours() -> None:
    rng = np.random.default_rng(3)
    bank = unit(rng, 6, 4)
    d = unit(rng, 1, 4).requires_grad_(True)
    labels = torch.tensor([[0, 0, 0, 1, 1, 1]])
    la_loss(d, bank, torch.tensor([0]), labels, 6, 0.5).backward()
    # a small step against the gradient raises the probability mass of cluster 0
    before = torch.softmax(bank @ d.detach()[0] / 0.5, 0)[:3].sum()
    step = d.detach() - 0.01 * d.grad
    after = torch.softmax(bank @ step[0] / 0.5, 0)[:3].sum()
    assert after > before


def test_memory_bank_update() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    d = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    update_bank(bank, torch.tensor([0, 2]), d, 0.5)
    s = math.sqrt(0.5)
    expected_2 = np.array([0.8, 0.4]) / np.linalg.norm([0.8, 0.4])
    np.testing.assert_allclose(bank.numpy(), [[s, s], [0, 1], expected_2], rtol=1e-6)


def test_la_starts_from_the_bank_and_head_of_its_init_run(tmp_path: Path) -> None:
    import contextlib

    from vcl.backbones import build_backbone
    from vcl.pretrain.clips import VideoSet
    from vcl.pretrain.instance import VideoLA, VideoOptions, _id_codes
    from vcl.pretrain.loop import TrainConfig

    ids = np.array([f"v{i}" for i in range(6)])
    data = VideoSet("-", ids, ["-"] * 6, np.full(6, 20), None)
    config = TrainConfig(input="-", method="video-la", output="-", arch="r3d_18", size=16,
                         k=2, device="cpu", workers=0, init=str(tmp_path),
                         options=VideoOptions(frames=8, runs=2))  # fmt: skip
    method = VideoLA(config, data, torch.device("cpu"))
    model = method.build_model(build_backbone("r3d_18"))
    bank = torch.nn.functional.normalize(torch.randn(6, 128), dim=1)
    head = {k: torch.randn_like(v) for k, v in model.head.state_dict().items()}
    state = {
        "head": head,
        "method_state": {"bank": bank, "video_ids": torch.from_numpy(_id_codes(ids))},
    }
    torch.save(state, tmp_path / "checkpoint.pt")
    method.init_state(model, contextlib.nullcontext)
    assert torch.equal(method.bank, bank) and torch.equal(model.head.weight, head["weight"])
    assert method.cluster_labels.shape == (2, 6) and method.cluster_epoch == 1


# ---------------------------------------------------------------------------- clips


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Frame folders (lossless) whose frame t is uniformly grey level 10·t (+ video
    offset), so a clip's frame indices can be read back from its pixels."""
    from vcl.io.video import write_frame_folder

    root = tmp_path_factory.mktemp("folders")
    lines = []
    for name, n, base in (("long", 12, 0), ("short", 5, 128)):
        frames = [np.full((23, 37, 3), base + 10 * t, np.uint8) for t in range(n)]
        write_frame_folder(root / name, frames)
        lines.append(json.dumps({"id": name, "path": name, "label": name}))
    (root / "videos.jsonl").write_text("\n".join(lines) + "\n")
    return root


def frame_numbers(clip: np.ndarray, base: int) -> list[int]:
    return [round((float(f.mean()) - base) / 10) for f in clip]


def test_clips_are_consecutive_and_short_videos_loop(folders: Path) -> None:
    videos = open_videos(str(folders / "videos.jsonl"), workers=1)
    assert videos.ids.tolist() == ["long", "short"] and videos.frames.tolist() == [12, 5]
    p = ClipParams(frames=8, size=9)
    one = np.ones(1)
    clip = read_clips(folders / "long", 12, np.array([3]), one, one / 2, one / 2, one < 0, p)
    assert clip.shape == (1, 8, 9, 9, 3) and clip.dtype == np.uint8
    assert frame_numbers(clip[0], 0) == [3, 4, 5, 6, 7, 8, 9, 10]
    clip = read_clips(folders / "short", 5, np.array([0]), one, one / 2, one / 2, one < 0, p)
    assert frame_numbers(clip[0], 128) == [0, 1, 2, 3, 4, 0, 1, 2]  # LoopPadding
    # the latest start a plan may draw keeps a clip inside the video
    plan = plan_clips(videos.frames, np.array([0, 1] * 50), p, np.random.default_rng(0), 2)
    assert plan.start.shape == (100, 2)
    assert plan.start[::2].max() <= 4 and (plan.start[1::2] == 0).all()
    assert set(np.round(plan.scale.ravel(), 6)) <= set(np.round(p.scales, 6))


def test_strided_clips_take_every_s_th_frame_in_both_readers(folders: Path, tmp_path) -> None:
    videos = open_videos(str(folders / "videos.jsonl"), workers=1)
    p = ClipParams(frames=4, size=9, stride=3)
    assert p.span == 10
    one = np.ones(1)
    clip = read_clips(folders / "long", 12, np.array([1]), one, one / 2, one / 2, one < 0, p)
    assert frame_numbers(clip[0], 0) == [1, 4, 7, 10]
    clip = read_clips(folders / "short", 5, np.array([1]), one, one / 2, one / 2, one < 0, p)
    assert frame_numbers(clip[0], 128) == [1, 4, 3, 2]  # offsets 0 3 6 9 wrap mod 4 frames
    # a plan keeps the whole span inside the video: starts 0..2 of 12 frames
    plan = plan_clips(videos.frames, np.zeros(200, np.int64), p, np.random.default_rng(0))
    assert set(plan.start.ravel().tolist()) == {0, 1, 2}
    assert centre_plan(videos.frames, np.array([0]), p).start.item() == 1
    write_frames(videos, tmp_path / "frames.zarr", p)
    stored = attach_frames(videos, tmp_path / "frames.zarr", p)
    np.testing.assert_array_equal(read_plan(stored, plan, p), read_plan(videos, plan, p))


def test_crop_and_flip_geometry(tmp_path: Path) -> None:
    from vcl.io.video import write_frame_folder

    ramp = np.broadcast_to(np.arange(40, dtype=np.uint8)[None, :, None] * 6, (20, 40, 3))
    write_frame_folder(tmp_path / "ramp", [np.ascontiguousarray(ramp)] * 3)
    p = ClipParams(frames=2, size=10)  # frames keep their size: short side 20 > 11 → 11
    args = (tmp_path / "ramp", 3, np.array([0, 0]), np.array([0.5, 0.5]))
    pos = np.array([0.0, 0.0])
    plain, flipped = read_clips(*args, pos, pos, np.array([False, True]), p)
    np.testing.assert_array_equal(plain[:, :, ::-1], flipped)
    assert plain[0, :, 0, 0].mean() < plain[0, :, -1, 0].mean()  # the ramp rises to the right
    right = read_clips(*args, pos + 1, pos, np.array([False, False]), p)[0]
    assert right[0, 0, -1, 0] > plain[0, 0, -1, 0]  # x = 1: crop at the right edge


def test_epoch_plans_are_deterministic(folders: Path) -> None:
    videos = open_videos(str(folders / "videos.jsonl"), workers=1)
    p = ClipParams(frames=4, size=8)
    a, b = epoch_plans(videos, 2, p, 7, 3), epoch_plans(videos, 2, p, 7, 3)
    c = epoch_plans(videos, 2, p, 7, 4)
    assert len(a) == iterations(2, 2) == 1
    for x, y in zip(a, b, strict=True):
        for f in x.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(x, f), getattr(y, f))
    assert not all(np.array_equal(x.start, z.start) and np.array_equal(x.x, z.x)
                   for x, z in zip(a, c, strict=True))  # fmt: skip
    np.testing.assert_array_equal(read_plan(videos, a[0], p), read_plan(videos, b[0], p))
    centre = centre_plan(videos.frames, np.array([0, 1]), p)
    assert centre.start[:, 0].tolist() == [4, 0] and not centre.flip.any()
    x = to_input(torch.from_numpy(read_plan(videos, centre, p)))
    assert x.shape == (2, 1, 3, 4, 8, 8) and x.dtype == torch.float32


def test_frames_store_gives_the_decoded_clips(folders: Path, tmp_path: Path) -> None:
    videos = open_videos(str(folders / "videos.jsonl"), workers=1)
    p = ClipParams(frames=8, size=9)
    write_frames(videos, tmp_path / "frames.zarr", p)
    stored = attach_frames(videos, tmp_path / "frames.zarr", p)
    assert stored.frames.tolist() == [12, 5] and stored.offsets.tolist() == [0, 12]
    plan = plan_clips(videos.frames, np.array([0, 1, 0]), p, np.random.default_rng(5), 2)
    clips = read_plan(stored, plan, p)
    np.testing.assert_array_equal(clips, read_plan(videos, plan, p))
    assert frame_numbers(clips[1, 0], 128) == [0, 1, 2, 3, 4, 0, 1, 2]
    with pytest.raises(DataError, match="10 px"):
        attach_frames(videos, tmp_path / "frames.zarr", ClipParams(frames=8, size=32))


def test_undecodable_and_short_videos(folders: Path, tmp_path: Path, caplog) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    manifest = tmp_path / "v.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"id": i, "path": str(p)}) + "\n"
            for i, p in (("long", folders / "long"), ("bad", broken), ("short", folders / "short"))
        )
    )
    videos = open_videos(str(manifest), workers=1)
    assert videos.ids.tolist() == ["long", "short"] and [f[0] for f in videos.failed] == ["bad"]
    with pytest.raises(DataError, match="bad") as info:
        require_decodable(videos, keep_going=False, frames=8)
    assert "--keep-going" in str(info.value) and str(broken) in str(info.value)
    with caplog.at_level("WARNING", logger="vcl"):
        require_decodable(videos, keep_going=True, frames=8)
    warnings = [r.getMessage() for r in caplog.records]
    assert any("skipped 1 undecodable" in w and "bad" in w for w in warnings)
    assert sum("shorter than the 8 frames a clip spans" in w for w in warnings) == 1
    assert any(w.startswith("1 of 2 videos") for w in warnings)


# ---------------------------------------------------------------------------- colour


def test_colour_draws_come_with_the_plan(folders: Path) -> None:
    """One draw per clip from the plan's seeded generator, in video_cluster's ranges;
    drawn after the geometry, which stays what it was without colour."""
    videos = open_videos(str(folders / "videos.jsonl"), workers=1)
    p = ClipParams(frames=4, size=8, colour=VIDEO_COLOUR)
    chosen = np.array([0, 1] * 300)
    plan = plan_clips(videos.frames, chosen, p, np.random.default_rng(3), 2)
    again = plan_clips(videos.frames, chosen, p, np.random.default_rng(3), 2)
    assert plan.colour.shape == (600, 2, 11)
    np.testing.assert_array_equal(plan.colour, again.colour)
    c = plan.colour.reshape(-1, 11)
    assert (c[:, 0] == 1).all()  # the jitter is always applied
    assert c[:, 1:4].min() >= 0.6 and c[:, 1:4].max() <= 1.4  # [1 − 0.4, 1 + 0.4]
    assert np.abs(c[:, 4]).max() <= 0.4 and c[:, 4].min() < -0.3 and c[:, 4].max() > 0.3
    assert (np.sort(c[:, 5:9], axis=1) == np.arange(4)).all()  # an order is a permutation
    assert len({tuple(o) for o in c[:, 5:9].tolist()}) == 24  # every order occurs
    assert abs(c[:, 9].mean() - 0.2) < 0.03 and not c[:, 10].any()  # grayscale p 0.2, no blur
    assert len(np.unique(c[:, 1])) == len(c)  # a fresh draw for every clip
    plain = plan_clips(videos.frames, chosen, ClipParams(4, 8), np.random.default_rng(3), 2)
    assert plain.colour.shape == (600, 2, 0)
    for name in ("start", "scale", "x", "y", "flip"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(plan, name))
    assert centre_plan(videos.frames, np.array([0, 1]), p).colour.shape == (2, 1, 0)


def test_colour_is_one_draw_per_clip_for_all_its_frames() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (11, 13, 3), dtype=np.uint8)
    clips = torch.from_numpy(np.ascontiguousarray(np.broadcast_to(frame, (6, 2, 5, 11, 13, 3))))
    draws = torch.from_numpy(draw_colour(VIDEO_COLOUR, np.random.default_rng(1), (6, 2)))
    x = to_input(clips, colour=draws, params=VIDEO_COLOUR)  # 12 clips of 5 equal frames
    plain = to_input(clips)
    assert x.shape == plain.shape == (6, 2, 3, 5, 11, 13)
    assert torch.allclose(x, x[:, :, :, :1].expand_as(x), atol=1e-6)  # same for every frame
    flat = x.flatten(0, 1)
    for i in range(12):  # and another for every clip
        assert not any(torch.allclose(flat[i], flat[j], atol=1e-3) for j in range(i))
    assert not torch.allclose(x, plain, atol=1e-3)
    torch.testing.assert_close(to_input(clips, colour=draws[..., :0], params=VIDEO_COLOUR), plain)


@pytest.mark.parametrize("grayscale_first", [True, False])
def test_colour_augment_equals_torchvision_step_by_step(grayscale_first: bool) -> None:
    """Each clip's draw replayed frame by frame with torchvision's own functions: its
    grayscale, the four adjustments in its drawn order, its blur."""
    import torchvision.transforms.functional as TF

    rng = np.random.default_rng(2)
    frames = torch.as_tensor(rng.random((2, 3, 7, 5)), dtype=torch.float32)  # T = 2, 7×5
    x = torch.stack([frames, frames.flip(0), frames])  # 3 clips (N, T, 3, H, W)
    draw = torch.tensor(  # jitter, brightness, contrast, saturation, hue, order, gray, blur
        [
            [1, 1.3, 0.7, 1.6, 0.2, 2, 0, 3, 1, 0, 0],
            [1, 0.8, 1.2, 0.5, -0.35, 3, 1, 0, 2, 1, 1],
            [0, 1.4, 0.6, 0.6, 0.4, 0, 1, 2, 3, 0, 0],  # no jitter: unchanged
        ],
        dtype=torch.float64,
    )
    params = ColourParams(1.0, 0.4, 0.4, 0.4, 0.4, 0.2, grayscale_first, 0.5, 1.0, 3)
    got = colour_augment(x, draw, params)
    adjust = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for n in range(3):
        for t in range(2):
            img = x[n, t]
            if draw[n, 9] and grayscale_first:
                img = TF.rgb_to_grayscale(img, num_output_channels=3)
            if draw[n, 0]:
                for code in draw[n, 5:9].long().tolist():
                    img = adjust[code](img, float(draw[n, 1 + code]))
            if draw[n, 9] and not grayscale_first:
                img = TF.rgb_to_grayscale(img, num_output_channels=3)
            if draw[n, 10]:
                img = TF.gaussian_blur(img, [3, 3], [1.0, 1.0])
            torch.testing.assert_close(got[n, t], img, atol=1e-5, rtol=0)
    assert torch.equal(got[2], x[2])


def test_grayscale_makes_the_three_channels_equal() -> None:
    rng = np.random.default_rng(4)
    x = torch.as_tensor(rng.random((3, 4, 3, 9, 7)), dtype=torch.float32)
    draw = torch.from_numpy(draw_colour(VIDEO_COLOUR, rng, (3,)))
    draw[:, 9] = torch.tensor([1.0, 1.0, 0.0])  # grayscale for clips 0 and 1
    for first in (True, False):  # before the jitter (video_cluster) or after (SLIC)
        y = colour_augment(x, draw, ColourParams(1.0, 0.4, 0.4, 0.4, 0.4, 0.2, first))
        assert torch.equal(y[:2, :, 0], y[:2, :, 1]) and torch.equal(y[:2, :, 1], y[:2, :, 2])
        assert not torch.allclose(y[2, :, 0], y[2, :, 1])


def test_video_methods_augment_colour_unless_told_not_to(folders: Path) -> None:
    """The batches of video-ir carry their clips' colour draws and the step's input is
    augmented with them; --no-colour gives the same crops, plainly normalised."""
    from vcl.pretrain.instance import VideoIR, VideoOptions
    from vcl.pretrain.loop import TrainConfig

    videos = open_videos(str(folders / "videos.jsonl"), workers=1)

    def method(colour: bool) -> VideoIR:
        options = VideoOptions(frames=4, colour=colour)
        config = TrainConfig("-", "video-ir", "-", size=8, batch_size=2, workers=0,
                             options=options)  # fmt: skip
        return VideoIR(config, videos, torch.device("cpu"))

    on, off = method(True), method(False)
    [(clips, idx, colour)] = list(on.batches(1))
    [(same, _, none)] = list(off.batches(1))
    assert colour.shape == (2, 1, 11) and none.shape == (2, 1, 0)
    assert torch.equal(clips, same) and sorted(idx.tolist()) == [0, 1]
    x, plain = on._input(clips, colour), off._input(same, none)
    assert x.shape == plain.shape == (2, 3, 4, 8, 8)
    torch.testing.assert_close(plain, to_input(clips).flatten(0, 1))
    expected = colour_augment(clips.flatten(0, 1).permute(0, 1, 4, 2, 3) / 255.0,
                              colour.flatten(0, 1), VIDEO_COLOUR)  # fmt: skip
    torch.testing.assert_close(x, to_input((expected * 255).permute(0, 1, 3, 4, 2)))
    assert not torch.allclose(x, plain, atol=1e-3)


# ---------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 tiny synthetic videos (10 frames, 41×31) + a broken one + an IDT-like prior."""
    from vcl.io.features import FeatureSet, write_feature_set

    root = tmp_path_factory.mktemp("pretrain_video")
    r = invoke("synth", root / "synth", "--videos", 5, "--frames", 10, "--width", 41,
               "--height", 31, "--min-objects", 1, "--max-objects", 1, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in (root / "synth" / "videos.jsonl").open()]
    for rec in records:
        rec["path"] = str(root / "synth" / rec["path"])
    (root / "broken.mp4").write_bytes(b"not a video at all" * 50)
    bad = {"id": "broken", "path": str(root / "broken.mp4")}
    (root / "videos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "with_broken.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*records, bad]))
    ids = np.array([r["id"] for r in records])
    rng = np.random.default_rng(0)
    centres = {m: rng.normal(size=12) for m in {r["label"] for r in records}}
    feats = np.stack([centres[r["label"]] + 0.05 * rng.normal(size=12) for r in records])
    fs = FeatureSet(ids=ids, features=feats.astype(np.float32))
    write_feature_set(root / "prior.zarr", fs, {"made_by": "test"})
    write_feature_set(root / "partial.zarr", FeatureSet(ids=ids[:2], features=fs.features[:2]), {})
    return root


def train(data: Path, method: str, run: Path, *extra: object, videos: str = "videos.jsonl"):
    prior: list[object] = []
    if method == "video-la-idt":  # its runs also read their clips from a frames store
        prior = ["--prior", data / "prior.zarr", "--joint-epochs", 1]
        prior += ["--frames-store", data / "frames.zarr"]
    return invoke("pretrain", data / videos, "--method", method, "-o", run, *prior, *TINY, *extra)


@pytest.mark.parametrize("method", VIDEO_METHODS)
def test_each_video_method_writes_a_valid_run_directory(data: Path, method: str) -> None:
    from vcl.backbones import build_backbone
    from vcl.embedding import load_model

    run = data / f"run-{method}"
    # the IR run also checks --keep-going (the broken video is skipped with a warning) and
    # strided clips (15 frames spanned by 8 of every 2nd: the 10-frame videos loop)
    r = train(data, method, run, "--epochs", 2,
              *(["--keep-going", "--frame-stride", 2] if method == "video-ir" else []),
              videos="with_broken.jsonl" if method == "video-ir" else "videos.jsonl")  # fmt: skip
    assert r.exit_code == 0, r.output
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == method and config["arch"] == "r3d_18" and config["samples"] == 5
    assert config["frames"] == 8 and config["temperature"] == 0.07 and config["lr"] == 0.03
    assert config["frame_stride"] == (2 if method == "video-ir" else 1)
    assert config["colour"] is True  # the reference's colour augmentation, by default
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["backbone"].keys() == build_backbone("r3d_18").state_dict().keys()
    bank = state["method_state"]["bank"]
    assert bank.shape == (5, 128)
    np.testing.assert_allclose(bank.norm(dim=1).numpy(), 1.0, rtol=1e-5)
    lines = metrics(run)
    assert [m["epoch"] for m in lines] == [0, 1, 2]
    for m in lines[1:]:
        assert np.isfinite(m["loss"]) and m["clips_per_s"] > 0 and -1 <= m["ami"] <= 1
        if method == "video-ir":
            assert m["loss"] == pytest.approx(m["nce_positive"] + m["nce_negative"], rel=1e-5)
        else:
            assert m["loss"] == pytest.approx(m["la"]) and m["clusters"] == 2
    labels = np.load(run / "labels_epoch_2.npy")
    assert labels.shape == (5,)
    assert (labels == -1).all() if method == "video-ir" else set(labels) == {0, 1}
    if method == "video-la-idt":
        assert [m["joint"] for m in lines] == [False, False, True]
        assert (data / "frames.zarr").is_dir()
        # epoch 1 trains on the prior's clusters (k-means of the prior), fixed
        assert np.array_equal(
            np.load(run / "labels_epoch_0.npy"), np.load(run / "labels_epoch_1.npy")
        )
    model = load_model(str(run), "cpu")  # what vcl embed reads
    assert model.kind == "video" and model.arch == "r3d_18"


def test_resume_equals_the_uninterrupted_run(data: Path) -> None:
    full = data / "run-video-la"
    if not (full / "checkpoint.pt").exists():
        r = train(data, "video-la", full, "--epochs", 2)
        assert r.exit_code == 0, r.output
    part = data / "run-la-resumed"
    r = train(data, "video-la", part, "--epochs", 1)
    assert r.exit_code == 0, r.output
    r = invoke("pretrain", data / "videos.jsonl", "--epochs", 2, "--resume", part, "-q")
    assert r.exit_code == 0, r.output
    assert [without_timing(m) for m in metrics(part)] == [without_timing(m) for m in metrics(full)]
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    for name, value in a["backbone"].items():
        assert torch.equal(value, b["backbone"][name]), name
    for key in ("bank", "cluster_labels"):
        assert torch.equal(a["method_state"][key], b["method_state"][key]), key


def test_bad_inputs(data: Path) -> None:
    run = data / "run-bad"
    r = invoke("pretrain", data / "videos.jsonl", "--method", "video-la-idt", "--prior",
               data / "partial.zarr", "-o", run, *TINY)  # fmt: skip
    assert r.exit_code == ExitCode.DATA
    assert "lacks 3 of the 5 videos" in r.stderr and "v0002" in r.stderr
    r = train(data, "video-la", run, videos="with_broken.jsonl")
    assert r.exit_code == ExitCode.DATA
    assert "'broken'" in r.stderr and "--keep-going" in r.stderr
    r = train(data, "video-la-idt", run, "--epochs", 1)  # --joint-epochs 1 needs 2 epochs
    assert r.exit_code == ExitCode.USAGE
    r = invoke("pretrain", data / "videos.jsonl", "--method", "video-la", "--prior",
               data / "prior.zarr", "-o", run, *TINY)  # fmt: skip
    assert r.exit_code == ExitCode.USAGE and "video-la-idt" in r.stderr
    r = train(data, "video-la", run, "--arch", "resnet18")
    assert r.exit_code == ExitCode.USAGE and "video" in r.stderr
    assert not (run / "checkpoint.pt").exists()


@pytest.mark.parametrize(("method", "calls"), [("video-la", 1), ("video-ir", 2)])
def test_kmeans_runs_on_the_faiss_gpu_of_the_training_device(
    data: Path, method: str, calls: int, monkeypatch, tmp_path: Path
) -> None:
    """LA's clustering of the bank and IR's evaluation k-means (epochs 0 and 1) get the
    faiss GPU decided from the run's device (faked here: the run is on the CPU, and so
    is the k-means)."""
    import vcl.pretrain.instance
    from tests.conftest import fake_faiss_gpu

    devices, gpus = fake_faiss_gpu(monkeypatch, vcl.pretrain.instance, "kmeans")
    r = train(data, method, tmp_path / "run", "--epochs", 1)
    assert r.exit_code == 0, r.output
    assert gpus == [5] * calls and set(devices) == {torch.device("cpu")}
