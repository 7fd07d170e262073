"""vcl embed: documented layer dimensions, ids/labels carried by id, weights, videos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import jsonl, moving_square_frames
from vcl.crops import columns_spec
from vcl.embedding import (
    GOYAL_POOL,
    embed_images,
    embed_paths,
    goyal_pool,
    layer_dims,
    load_model,
    resize_center_crop,
)
from vcl.errors import DataError, ExitCode, UsageError
from vcl.io.features import read_feature_set
from vcl.io.store import StoreWriter

RESNET18_DIMS = {"stage1": 9216, "stage2": 2304, "stage3": 2048, "stage4": 2304, "stage5": 2048}


def make_crops(path: Path, size: int = 32) -> dict[str, np.ndarray]:
    """Two videos' crops (3 and 2) as a vcl.crops/1 store; returns all images."""
    g = np.random.default_rng(0)
    images = g.integers(0, 255, (5, size, size, 3), dtype=np.uint8)
    with StoreWriter(path, "vcl.crops/1", {"size": size}) as w:
        w.define_columns(columns_spec(size))
        for vid, rows, track in (("va", slice(0, 3), "t1"), ("vb", slice(3, 5), "t2")):
            n = rows.stop - rows.start
            w.append_group(
                vid,
                image=images[rows],
                track_id=np.array([track] * n),
                video_id=np.array([vid] * n),
                frame=np.arange(n, dtype=np.int32) * 4,
                box=np.zeros((n, 4), np.float32),
            )
    return {"images": images}


def test_embed_crops_store_has_documented_dims(tmp_path: Path, invoke) -> None:
    crops = make_crops(tmp_path / "crops.zarr")
    out = tmp_path / "f.zarr"
    layers = "stage1,stage2,stage3,stage4,stage5,pool"
    r = invoke("embed", "random:resnet18", tmp_path / "crops.zarr", "-o", out, "--layers", layers)
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["layers"] == {**RESNET18_DIMS, "pool": 512}
    fs = read_feature_set(out)  # default layer: pool
    assert fs.features.shape == (5, 512) and fs.attrs["layer"] == "pool"
    assert fs.ids.tolist() == ["t1@0", "t1@4", "t1@8", "t2@0", "t2@4"]
    assert fs.video_ids.tolist() == ["va"] * 3 + ["vb"] * 2
    for name, dim in RESNET18_DIMS.items():
        assert read_feature_set(out, layer=name).features.shape == (5, dim)
    # the store holds what the library computes (same model: random:ARCH is seeded)
    model = load_model("random:resnet18", "cpu")
    ref = embed_images(model, crops["images"], ["stage3", "pool"], batch_size=2)
    np.testing.assert_allclose(
        read_feature_set(out, layer="stage3").features, ref["layer2"], rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(fs.features, ref["pool"], rtol=1e-4, atol=1e-5)
    # rerun: refuses to overwrite; --overwrite replaces
    r = invoke("embed", "random:resnet18", tmp_path / "crops.zarr", "-o", out)
    assert r.exit_code == ExitCode.CANNOT_CREATE
    r = invoke("embed", "random:resnet18", tmp_path / "crops.zarr", "-o", out, "--overwrite")
    assert r.exit_code == 0 and read_feature_set(out).features.shape == (5, 512)


def test_goyal_pooling_dims_and_kernel() -> None:
    model = load_model("random:resnet50", "cpu")
    dims = layer_dims(model, ["stage1", "stage2", "stage3", "stage4", "stage5", "pool"], 224)
    assert list(dims.values()) == [9216, 9216, 8192, 9216, 8192, 2048]
    # at 224 px the fixed AvgPool2d kernels apply exactly; elsewhere adaptive to the grid
    x = torch.randn(2, 3, 56, 56)
    grid, kernel, stride, pad = GOYAL_POOL["layer1"]
    ref = torch.nn.functional.avg_pool2d(x, kernel, stride, pad).flatten(1)
    torch.testing.assert_close(goyal_pool("layer1", x), ref)
    small = goyal_pool("layer1", torch.randn(2, 3, 9, 7))
    assert small.shape == (2, 3 * grid * grid)


def test_weights_state_dict_matches_torchvision(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(3)
    tv = torchvision.models.resnet18(weights=None, num_classes=7).eval()
    torch.save(tv.state_dict(), tmp_path / "w.pth")
    model = load_model(f"weights:resnet18:{tmp_path / 'w.pth'}", "cpu")
    images = np.random.default_rng(1).integers(0, 255, (3, 33, 33, 3), dtype=np.uint8)
    got = embed_images(model, images, ["head", "pool"])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = tv((x - mean) / std).numpy()
    np.testing.assert_allclose(got["head"], logits, rtol=1e-4, atol=1e-4)
    assert got["pool"].shape == (3, 512)
    with pytest.raises(DataError, match="do not fit resnet50"):
        load_model(f"weights:resnet50:{tmp_path / 'w.pth'}", "cpu")
    with pytest.raises(UsageError, match="no classifier head"):
        embed_images(load_model("random:resnet18", "cpu"), images, ["head"])


def test_images_manifest_labels_by_id_and_skipped(tmp_path: Path, invoke) -> None:
    import cv2

    g = np.random.default_rng(2)
    (tmp_path / "im").mkdir()
    records = []
    for i in range(6):
        cv2.imwrite(
            str(tmp_path / "im" / f"p{i}.png"), g.integers(0, 255, (23 + i, 41, 3), dtype=np.uint8)
        )
        records.append(
            {"schema": "vcl.image/1", "id": f"p{i}", "path": f"im/p{i}.png", "label": f"c{i % 3}"}
        )
    (tmp_path / "im" / "broken.jpg").write_bytes(b"not a jpeg")
    order = g.permutation(6)
    manifest = tmp_path / "images.jsonl"
    manifest.write_text("".join(json.dumps(records[i]) + "\n" for i in order))
    out = tmp_path / "f.zarr"
    r = invoke(
        "embed", "random:resnet18", manifest, "-o", out, "--size", "32", "--layers", "stage2"
    )
    assert r.exit_code == 0, r.stderr
    fs = read_feature_set(out)
    assert fs.ids.tolist() == [f"p{i}" for i in order]
    assert all(lab == f"c{int(i[1:]) % 3}" for i, lab in zip(fs.ids, fs.labels, strict=True))
    # the folder: ids are file names; the broken image is skipped and listed
    fs2 = embed_paths([tmp_path / "im"], load_model("random:resnet18", "cpu"), "stage2", size=32)
    assert sorted(fs2.ids.tolist()) == [f"p{i}" for i in range(6)]
    assert fs2.attrs["skipped"] == [str(tmp_path / "im" / "broken.jpg")]
    by_id = dict(zip(fs2.ids, fs2.features, strict=True))
    np.testing.assert_allclose(
        np.stack([by_id[i] for i in fs.ids]), fs.features, rtol=1e-4, atol=1e-5
    )


def test_videos_image_and_video_models(tmp_path: Path, invoke) -> None:
    from vcl.io.video import write_video

    frames = moving_square_frames(n=11, width=37, height=23)
    write_video(tmp_path / "a.mp4", frames, fps=10, codec="mjpg")
    write_video(tmp_path / "b.mp4", frames[::-1], fps=10, codec="mjpg")
    manifest = tmp_path / "videos.jsonl"
    manifest.write_text(
        json.dumps({"id": "a", "path": "a.mp4", "label": "x"})
        + "\n"
        + json.dumps({"id": "b", "path": "b.mp4", "label": "y"})
        + "\n"
    )
    out = tmp_path / "img.zarr"
    r = invoke(
        "embed", "random:resnet18", manifest, "-o", out, "--frames-per-video", "3", "--size", "32"
    )
    assert r.exit_code == 0, r.stderr
    fs = read_feature_set(out)
    assert fs.ids.tolist() == ["a", "b"] and fs.labels.tolist() == ["x", "y"]
    # the mean over 3 uniformly spaced frames (1, 5, 9 of 11), decoded from the file
    from vcl.io.video import VideoReader

    decoded = [rgb for _, rgb in VideoReader(tmp_path / "a.mp4")]
    picked = np.stack([resize_center_crop(decoded[i], 32) for i in (1, 5, 9)])
    ref = embed_images(load_model("random:resnet18", "cpu"), picked, ["pool"])["pool"].mean(0)
    np.testing.assert_allclose(fs.features[0], ref, rtol=1e-4, atol=1e-5)
    out = tmp_path / "vid.zarr"
    r = invoke(
        "embed",
        "random:r3d_18",
        manifest,
        "-o",
        out,
        "--clips",
        "2",
        "--frames",
        "4",
        "--size",
        "32",
        "--layers",
        "stage2,pool",
    )
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["layers"] == {"stage2": 64, "pool": 512}
    assert read_feature_set(out).features.shape == (2, 512)


def test_run_directory_and_bad_models(tmp_path: Path, invoke) -> None:
    from vcl.backbones import build_backbone

    make_crops(tmp_path / "crops.zarr")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"arch": "resnet18"}))
    torch.save({"backbone": build_backbone("resnet18").state_dict()}, run / "checkpoint.pt")
    r = invoke("embed", run / "checkpoint.pt", tmp_path / "crops.zarr", "-o", tmp_path / "f.zarr")
    assert r.exit_code == 0, r.stderr
    (run / "config.json").write_text(json.dumps({"arch": "vgg11"}))
    r = invoke("embed", run, tmp_path / "crops.zarr", "-o", tmp_path / "g.zarr")
    assert r.exit_code == ExitCode.USAGE and "unknown architecture 'vgg11'" in r.stderr
    assert [line.startswith("error:") for line in r.stderr.splitlines()].count(True) == 1
    assert "Traceback" not in r.stderr
    r = invoke("embed", "random:nope", tmp_path / "crops.zarr", "-o", tmp_path / "g.zarr")
    assert r.exit_code == ExitCode.USAGE
    r = invoke("embed", "random:r3d_18", tmp_path / "crops.zarr", "-o", tmp_path / "g.zarr")
    assert r.exit_code == ExitCode.USAGE and "video network" in r.stderr
    r = invoke("embed", "random:resnet18", tmp_path / "nothing", "-o", tmp_path / "g.zarr")
    assert r.exit_code == ExitCode.NO_INPUT
    r = invoke(
        "embed",
        "random:resnet18",
        tmp_path / "crops.zarr",
        "-o",
        tmp_path / "g.zarr",
        "--layers",
        "stage9",
    )
    assert r.exit_code == ExitCode.USAGE and "stage9" in r.stderr
    assert not (tmp_path / "g.zarr").exists()
    assert jsonl("") == []


def test_interrupted_run_resumes(tmp_path: Path, invoke) -> None:
    from vcl.io.video import write_video

    frames = moving_square_frames(n=7, width=29, height=19)
    write_video(tmp_path / "a.mp4", frames, fps=10, codec="mjpg")
    (tmp_path / "b.mp4").write_bytes(b"garbage, not a video")
    manifest = tmp_path / "videos.jsonl"
    manifest.write_text(
        json.dumps({"id": "a", "path": "a.mp4"})
        + "\n"
        + json.dumps({"id": "b", "path": "b.mp4"})
        + "\n"
    )
    out = tmp_path / "f.zarr"
    args = (
        "embed",
        "random:resnet18",
        manifest,
        "-o",
        out,
        "--frames-per-video",
        "2",
        "--size",
        "32",
    )
    r = invoke(*args)
    assert r.exit_code == ExitCode.DATA and "b.mp4" in r.stderr
    assert not out.exists() and (tmp_path / "f.zarr.partial").exists()
    write_video(tmp_path / "b.mp4", frames[::-1], fps=10, codec="mjpg")
    r = invoke(*args)
    assert r.exit_code == 0, r.stderr
    assert "resuming: 1 of 2" in r.stderr and json.loads(r.stdout)["rows_written"] == 1
    assert read_feature_set(out).ids.tolist() == ["a", "b"]


def test_resume_with_other_weights_under_the_same_path_is_refused(tmp_path: Path, invoke) -> None:
    """A weights file replaced (or a run retrained in place) kept its path and epoch, so
    an interrupted embedding resumed with the other model's features mixed in."""
    import torchvision

    from vcl.io.video import write_video

    frames = moving_square_frames(n=5, width=29, height=19)
    write_video(tmp_path / "a.mp4", frames, fps=10, codec="mjpg")
    (tmp_path / "b.mp4").write_bytes(b"garbage, not a video")
    manifest = tmp_path / "videos.jsonl"
    manifest.write_text("".join(json.dumps({"id": v, "path": f"{v}.mp4"}) + "\n" for v in "ab"))
    weights = tmp_path / "w.pth"
    for seed in (1, 2):
        torch.manual_seed(seed)
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
        r = invoke("embed", f"weights:resnet18:{weights}", manifest, "-o", tmp_path / "f.zarr",
                   "--frames-per-video", "1", "--size", "32")  # fmt: skip
        if seed == 1:
            assert r.exit_code == ExitCode.DATA and (tmp_path / "f.zarr.partial").exists()
    assert r.exit_code == ExitCode.CANNOT_CREATE and "different parameters" in r.stderr


def test_video_net_clips_with_a_frame_stride(tmp_path: Path) -> None:
    """--frame-stride: uniformly spaced clips of every s-th frame, inside the video."""
    from vcl.embedding import video_inputs
    from vcl.io.video import write_frame_folder

    frames = [np.full((20, 20, 3), 10 * t, np.uint8) for t in range(15)]
    write_frame_folder(tmp_path / "v", frames)
    clips = video_inputs(tmp_path / "v", "video", 16, clips=2, frames=4, stride=3)
    numbers = np.round(clips.mean(axis=(2, 3, 4)) / 10).astype(int)
    assert numbers.tolist() == [[0, 3, 6, 9], [5, 8, 11, 14]]  # spans of 10 of 15 frames


def test_a_killed_run_is_embedded_with_a_warning_and_its_epoch(tmp_path: Path, invoke) -> None:
    """A run killed during epoch 2 of --epochs 3 holds config.json's epochs 3 and the
    epoch-1 checkpoint: embed warns once and records both numbers in the store."""
    from vcl.backbones import build_backbone

    make_crops(tmp_path / "crops.zarr")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"arch": "resnet18", "epochs": 3}))
    state = {"backbone": build_backbone("resnet18").state_dict(), "epoch": 1}
    torch.save(state, run / "checkpoint.pt")
    r = invoke("embed", run, tmp_path / "crops.zarr", "-o", tmp_path / "f.zarr")
    assert r.exit_code == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(run) in warnings[0] and "epoch 1 of 3" in warnings[0]
    attrs = read_feature_set(tmp_path / "f.zarr").attrs
    assert attrs["checkpoint_epoch"] == 1 and attrs["run_epochs"] == 3
    assert attrs["params"]["checkpoint_epoch"] == 1 and attrs["params"]["run_epochs"] == 3
    state["epoch"] = 3  # the finished run: no warning
    torch.save(state, run / "checkpoint.pt")
    r = invoke("embed", run / "checkpoint.pt", tmp_path / "crops.zarr", "-o", tmp_path / "g.zarr")
    assert r.exit_code == 0, r.stderr
    assert "warning:" not in r.stderr
    assert read_feature_set(tmp_path / "g.zarr").attrs["checkpoint_epoch"] == 3


def test_damaged_weights_are_named_in_one_clear_line(tmp_path: Path, invoke) -> None:
    from vcl.backbones import build_backbone

    make_crops(tmp_path / "crops.zarr")
    crops, out = tmp_path / "crops.zarr", tmp_path / "f.zarr"
    good = {k.removeprefix("net."): v for k, v in build_backbone("resnet18").state_dict().items()}
    torch.save(good, tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 3])
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint\n" * 10)
    del good["layer4.1.bn2.weight"]
    torch.save(good, tmp_path / "missing.pt")

    def error(*args: object) -> tuple[int, str]:
        r = invoke("embed", *args, crops, "-o", out, "--device", "cpu")
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
        return r.exit_code, lines[0]

    for name in ("truncated.pt", "garbage.pt"):
        code, line = error(f"weights:resnet18:{tmp_path / name}")
        assert code == ExitCode.DATA and f"{tmp_path / name}: cannot be loaded" in line
        assert "truncated" in line
    code, line = error(f"weights:resnet18:{tmp_path / 'missing.pt'}")
    assert code == ExitCode.DATA and "1 key missing ('layer4.1.bn2.weight')" in line
    code, line = error(tmp_path / "garbage.pt")  # a file given as a run directory
    assert code == ExitCode.USAGE and f"weights:ARCH:{tmp_path / 'garbage.pt'}" in line
    assert not out.exists()


def test_images_shard_by_image_and_their_union_is_the_whole_run(tmp_path: Path, invoke) -> None:
    """7 images (one store group) in 3 shards: none empty, sizes within one, and their
    union is the unsharded run, row for row."""
    import cv2

    g = np.random.default_rng(5)
    (tmp_path / "im").mkdir()
    records = []
    for i in range(7):
        cv2.imwrite(str(tmp_path / "im" / f"q{i}.png"), g.integers(0, 255, (19, 27, 3), np.uint8))
        records.append({"schema": "vcl.image/1", "id": f"q{i}", "path": f"im/q{i}.png"})
    manifest = tmp_path / "images.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    args = ("embed", "random:resnet18", manifest, "--size", "32", "--batch-size", "3")
    r = invoke(*args, "-o", tmp_path / "all.zarr")
    assert r.exit_code == 0, r.stderr
    shards = [tmp_path / f"s{i}.zarr" for i in range(3)]
    for i, path in enumerate(shards):
        r = invoke(*args, "-o", path, "--shard", f"{i}/3")
        assert r.exit_code == 0, r.stderr
    sizes = [len(read_feature_set(p)) for p in shards]
    assert min(sizes) >= 2 and sum(sizes) == 7
    whole, union = read_feature_set(tmp_path / "all.zarr"), read_feature_set(shards)
    assert union.ids.tolist() == whole.ids.tolist() == [f"q{i}" for i in range(7)]
    np.testing.assert_allclose(union.features, whole.features, rtol=1e-4, atol=1e-5)


def _hand_average(net: torch.nn.Module, x: torch.Tensor, modules: dict[str, str]) -> dict:
    """Global averages of the named submodules' outputs over one plain forward pass of
    the torchvision net (hooks, not vcl's stage code): the reference for --pool avg."""
    maps: dict[str, torch.Tensor] = {}
    hooks = [
        getattr(net, module).register_forward_hook(
            lambda _m, _i, out, name=name: maps.__setitem__(name, out)
        )
        for name, module in modules.items()
    ]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return {k: v.mean(dim=tuple(range(2, v.ndim))).numpy() for k, v in maps.items()}


def test_pool_avg_is_the_global_average_of_image_stages(tmp_path: Path, invoke) -> None:
    """--pool avg on crops (33 px, odd) and images: C dims, each the mean of the map."""
    import cv2

    from vcl.embedding import IMAGENET_MEAN, IMAGENET_STD

    images = make_crops(tmp_path / "crops.zarr", size=33)["images"]
    out = tmp_path / "f.zarr"
    layers = "stage1,stage2,stage5,pool"
    r = invoke(
        "embed", "random:resnet18", tmp_path / "crops.zarr", "-o", out, "--pool", "avg",
        "--layers", layers,
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["layers"] == {"stage1": 64, "stage2": 64, "stage5": 512, "pool": 512}
    net = load_model("random:resnet18", "cpu").backbone.net
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - mean) / std
    ref = _hand_average(net, x, {"stage1": "relu", "stage2": "layer1", "stage5": "layer4"})
    for name, want in ref.items():
        fs = read_feature_set(out, layer=name)
        np.testing.assert_allclose(fs.features, want, rtol=1e-4, atol=1e-5)
    assert read_feature_set(out).attrs["pool"] == "avg"
    # an image folder, resized and centre-cropped to --size
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), images[0][..., ::-1])
    r = invoke(
        "embed", "random:resnet18", tmp_path / "imgs", "-o", tmp_path / "g.zarr",
        "--pool", "avg", "--layers", "stage3", "--size", "27",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    crop = resize_center_crop(images[0], 27)[None]
    x = (torch.from_numpy(crop).permute(0, 3, 1, 2).float() - mean) / std
    want = _hand_average(net, x, {"stage3": "layer2"})["stage3"]
    got = read_feature_set(tmp_path / "g.zarr").features
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_video_net_stages_are_global_averages_and_say_so(tmp_path: Path, invoke) -> None:
    """A video net averages every stage, --pool avg or not, and its attrs say avg."""
    from vcl.embedding import KINETICS_MEAN, KINETICS_STD, video_inputs
    from vcl.io.video import write_video

    write_video(tmp_path / "a.mp4", moving_square_frames(n=9, width=37, height=23), 10, "mjpg")
    clip = video_inputs(tmp_path / "a.mp4", "video", 32, clips=1, frames=4)  # (1, 4, 32, 32, 3)
    net = load_model("random:r3d_18", "cpu").backbone.net
    mean = torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1) * 255
    std = torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1) * 255
    x = (torch.from_numpy(clip).permute(0, 4, 1, 2, 3).float() - mean) / std
    ref = _hand_average(net, x, {"stage2": "layer1", "stage4": "layer3"})
    for pool in ("avg", "goyal"):
        out = tmp_path / f"{pool}.zarr"
        r = invoke(
            "embed", "random:r3d_18", tmp_path / "a.mp4", "-o", out, "--pool", pool,
            "--clips", "1", "--frames", "4", "--size", "32", "--layers", "stage2,stage4",
        )  # fmt: skip
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["layers"] == {"stage2": 64, "stage4": 256}
        for name, want in ref.items():
            fs = read_feature_set(out, layer=name)
            np.testing.assert_allclose(fs.features, want, rtol=1e-4, atol=1e-5)
            assert fs.attrs["pool"] == "avg" and fs.attrs["params"]["pool"] == "avg"


def test_a_video_without_frames_is_named_and_nothing_complete_is_written(
    tmp_path: Path, invoke
) -> None:
    import cv2

    from vcl.embedding import video_inputs
    from vcl.io.video import write_video

    write_video(tmp_path / "ok.mp4", moving_square_frames(n=5), 10, "mjpg")
    writer = cv2.VideoWriter(
        str(tmp_path / "zero.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48)
    )
    writer.release()  # a container with no frame in it
    with pytest.raises(DataError, match="no frame could be decoded"):
        video_inputs(tmp_path / "zero.avi", "image", 32)
    out = tmp_path / "f.zarr"
    for workers in ("1", "2"):
        r = invoke(
            "embed", "random:resnet18", tmp_path / "ok.mp4", tmp_path / "zero.avi", "-o", out,
            "--size", "32", "--frames-per-video", "2", "--workers", workers,
        )  # fmt: skip
        assert r.exit_code == ExitCode.DATA, r.stderr
        errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
        assert len(errors) == 1 and "zero.avi" in errors[0] and "Traceback" not in r.stderr
        assert "no frame could be decoded" in errors[0]
        assert not out.exists()  # only a .partial store, which no later stage reads
        with pytest.raises(DataError, match="incomplete"):
            read_feature_set(out.with_name("f.zarr.partial"))


def make_crop_groups(path: Path, sizes: tuple[int, ...], size: int = 20) -> None:
    """A crops store of one group (video) per size, an empty one included when asked."""
    g = np.random.default_rng(1)
    with StoreWriter(path, "vcl.crops/1", {"size": size}) as w:
        w.define_columns(columns_spec(size))
        for v, n in enumerate(sizes):
            w.append_group(
                f"v{v}",
                image=g.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
                track_id=np.array([f"t{v}"] * n),
                video_id=np.array([f"v{v}"] * n),
                frame=np.arange(n, dtype=np.int32),
                box=np.zeros((n, 4), np.float32),
            )


def store_files(path: Path) -> dict[str, object]:
    """Every file of a store, bytes; the root's attrs without its creation time."""
    files: dict[str, object] = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        name = str(f.relative_to(path))
        files[name] = f.read_bytes()
        if name == "zarr.json":
            meta = json.loads(f.read_bytes())
            meta["attributes"].pop("created")
            files[name] = meta
    return files


class _InOrder:
    """The sequential writer: `WriteBehind`'s calls made at once, in the caller."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer

    def __enter__(self) -> _InOrder:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        fn(*args, **kwargs)

    def append_group(self, group_id: str, **columns: np.ndarray) -> None:
        self.writer.append_group(group_id, **columns)


EMBED_LAYERS = ("--layers", "stage2,pool", "--batch-size", "3", "--device", "cpu")
CROP_GROUPS = (4, 7, 0, 5, 1, 6)


def test_crops_are_read_ahead_and_written_behind_into_the_sequential_store(
    tmp_path: Path, invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads of the next group and writes of the last run on threads while the model
    runs; the store is byte for byte the one the sequential loop writes (groups in
    order, each with its own rows), flushed every group or in batches."""
    import threading

    import vcl.cli.embed
    import vcl.io.store
    from vcl.io.store import Store

    crops = tmp_path / "crops.zarr"
    make_crop_groups(crops, CROP_GROUPS)
    threads: dict[str, set[str]] = {"read": set(), "write": set()}
    read, append = Store.read_group, StoreWriter.append_group

    def reading(self: Store, gid: str) -> dict[str, np.ndarray]:
        threads["read"].add(threading.current_thread().name)
        return read(self, gid)

    def appending(self: StoreWriter, gid: str, **columns: np.ndarray) -> None:
        threads["write"].add(threading.current_thread().name)
        append(self, gid, **columns)

    monkeypatch.setattr(Store, "read_group", reading)
    monkeypatch.setattr(StoreWriter, "append_group", appending)
    for chunk_bytes in (1 << 12, vcl.io.store._CHUNK_BYTES):  # a flush each group; one
        with monkeypatch.context() as m:
            m.setattr(vcl.io.store, "_CHUNK_BYTES", chunk_bytes)
            r = invoke("embed", "random:resnet18", crops, "-o", tmp_path / "behind.zarr",
                       *EMBED_LAYERS, "--overwrite")  # fmt: skip
            assert r.exit_code == 0, r.stderr
            m.setattr(vcl.io.store, "WriteBehind", _InOrder)
            m.setattr(vcl.cli.embed, "read_ahead", lambda read, keys: (read(k) for k in keys))
            r = invoke("embed", "random:resnet18", crops, "-o", tmp_path / "in_order.zarr",
                       *EMBED_LAYERS, "--overwrite")  # fmt: skip
            assert r.exit_code == 0, r.stderr
        assert threads["read"] >= {"MainThread"} and len(threads["read"]) > 1
        assert "vcl-write-behind" in threads["write"]
        assert store_files(tmp_path / "behind.zarr") == store_files(tmp_path / "in_order.zarr")
    fs = read_feature_set(tmp_path / "behind.zarr")
    assert fs.video_ids.tolist() == [f"v{v}" for v, n in enumerate(CROP_GROUPS) for _ in range(n)]
    model = load_model("random:resnet18", "cpu")
    images = Store(crops)["image"][:]
    np.testing.assert_allclose(fs.features, embed_images(model, images, ["pool"])["pool"],
                               rtol=1e-4, atol=1e-5)  # fmt: skip


def _flush_each_group(
    monkeypatch: pytest.MonkeyPatch, fail_at: str | None = None, hold: object = None
) -> list[str]:
    """StoreWriter commits every group at once (as the kill tests do), each write after
    the event ``hold`` (so later groups wait in the queue) and slowly, and raises a full
    disk at group ``fail_at``; returns the groups committed."""
    import time

    from vcl.errors import OutputError

    append, committed = StoreWriter.append_group, []

    def append_and_flush(self: StoreWriter, gid: str, **columns: np.ndarray) -> None:
        if hold is not None:
            hold.wait(10)  # type: ignore[attr-defined]
        time.sleep(0.1)
        if gid == fail_at:
            raise OutputError("no space left on the device", self.partial)
        append(self, gid, **columns)
        self.flush()
        committed.append(gid)

    monkeypatch.setattr(StoreWriter, "append_group", append_and_flush)
    return committed


def test_a_write_error_behind_is_one_line_and_the_run_resumes(
    tmp_path: Path, invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    crops, out = tmp_path / "crops.zarr", tmp_path / "f.zarr"
    make_crop_groups(crops, CROP_GROUPS)
    r = invoke("embed", "random:resnet18", crops, "-o", tmp_path / "ref.zarr", *EMBED_LAYERS)
    assert r.exit_code == 0, r.stderr
    with monkeypatch.context() as m:
        committed = _flush_each_group(m, fail_at="v3")
        r = invoke("embed", "random:resnet18", crops, "-o", out, *EMBED_LAYERS)
    assert r.exit_code == ExitCode.CANNOT_CREATE
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "no space left on the device" in lines[-1]
    assert "Traceback" not in r.stderr
    assert committed == ["v0", "v1", "v2"] and not out.exists()
    r = invoke("embed", "random:resnet18", crops, "-o", out, *EMBED_LAYERS)
    assert r.exit_code == 0, r.stderr
    assert "resuming: 3 of 6" in r.stderr
    got, want = store_files(out), store_files(tmp_path / "ref.zarr")
    del got["zarr.json"], want["zarr.json"]  # a resumed store says so in its attrs
    assert got == want


def assert_same_features(a: Path, b: Path) -> None:
    from vcl.io.store import Store

    sa, sb = Store(a), Store(b)
    assert sa.group_ids == sb.group_ids and sa.columns == sb.columns
    for column in sa.columns:
        assert np.array_equal(sa[column][:], sb[column][:]), column


def test_an_interrupt_while_writing_behind_leaves_a_resumable_partial(
    tmp_path: Path, invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or SIGTERM) while a group is being written and another waits: both are
    written, then the store is flushed (by one thread at a time) and left resumable;
    the rerun ends in the store an uninterrupted run writes."""
    import threading

    import vcl.embedding

    crops, out = tmp_path / "crops.zarr", tmp_path / "f.zarr"
    make_crop_groups(crops, CROP_GROUPS)
    r = invoke("embed", "random:resnet18", crops, "-o", tmp_path / "ref.zarr", *EMBED_LAYERS)
    assert r.exit_code == 0, r.stderr
    embed, calls, hold = vcl.embedding.embed_images, [], threading.Event()

    def interrupted(*args: object, **kwargs: object) -> dict[str, np.ndarray]:
        calls.append(1)
        if len(calls) == 3:  # v0 held in its write, v1 queued
            hold.set()
            raise KeyboardInterrupt
        return embed(*args, **kwargs)

    with monkeypatch.context() as m:
        committed = _flush_each_group(m, hold=hold)
        m.setattr(vcl.embedding, "embed_images", interrupted)
        r = invoke("embed", "random:resnet18", crops, "-o", out, *EMBED_LAYERS)
        assert r.exit_code == ExitCode.INTERRUPTED
        assert r.stderr.strip().splitlines()[-1] == "error: interrupted"
        assert committed == ["v0", "v1"] and not out.exists()
    r = invoke("embed", "random:resnet18", crops, "-o", out, *EMBED_LAYERS)
    assert r.exit_code == 0, r.stderr
    assert "resuming: 2 of 6" in r.stderr
    assert_same_features(out, tmp_path / "ref.zarr")


def _run_dir(run: Path) -> Path:
    from vcl.backbones import build_backbone

    run.mkdir()
    (run / "config.json").write_text(json.dumps({"arch": "resnet18"}))
    torch.manual_seed(0)
    torch.save({"backbone": build_backbone("resnet18").state_dict()}, run / "checkpoint.pt")
    return run


def test_paths_typed_otherwise_or_from_elsewhere_resume_and_merge(
    tmp_path: Path, invoke, monkeypatch
) -> None:
    """Was: the model and input paths were compared as typed: `vcl embed runs/odct c.zarr
    -o e1.zarr` killed, then rerun as `./runs/odct` or from another folder, exited 73
    ('an interrupted run with different parameters left this store'), and shards given
    the model once relative, once absolute, failed vcl merge (exit 65, 'differ: model')."""
    import vcl.embedding

    make_crops(tmp_path / "crops.zarr")
    _run_dir(tmp_path / "run")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    whole = invoke("embed", "run", "crops.zarr", "-o", "whole.zarr", "--size", "32")
    assert whole.exit_code == 0, whole.stderr
    embed_images = vcl.embedding.embed_images

    def dies_on_the_second_video(*a, **kw):
        if dies_on_the_second_video.calls:
            raise KeyboardInterrupt
        dies_on_the_second_video.calls += 1
        return embed_images(*a, **kw)

    dies_on_the_second_video.calls = 0
    monkeypatch.setattr(vcl.embedding, "embed_images", dies_on_the_second_video)
    r = invoke("embed", "run", "crops.zarr", "-o", "f.zarr", "--size", "32")
    assert r.exit_code == ExitCode.INTERRUPTED and Path("f.zarr.partial").exists()
    monkeypatch.setattr(vcl.embedding, "embed_images", embed_images)
    monkeypatch.chdir(tmp_path / "sub")
    r = invoke("embed", "./../run/", "../crops.zarr", "-o", "../f.zarr", "--size", "32")
    assert r.exit_code == 0, r.stderr
    assert "resuming: 1 of 2" in r.stderr and json.loads(r.stdout)["rows_written"] == 2
    np.testing.assert_array_equal(
        read_feature_set(tmp_path / "f.zarr").features,
        read_feature_set(tmp_path / "whole.zarr").features,
    )
    params = read_feature_set(tmp_path / "f.zarr").attrs["params"]
    assert params["model"] == str(tmp_path / "run")
    assert params["input"] == str(tmp_path / "crops.zarr")
    # shards given the model once absolute (from here), once relative (from the project)
    shard = ("-o", "../s0.zarr", "--size", "32", "--shard", "0/2")
    assert invoke("embed", tmp_path / "run", "../crops.zarr", *shard).exit_code == 0
    monkeypatch.chdir(tmp_path)
    shard = ("-o", "s1.zarr", "--size", "32", "--shard", "1/2")
    assert invoke("embed", "run", "crops.zarr", *shard).exit_code == 0
    r = invoke("merge", "s0.zarr", "s1.zarr", "-o", "merged.zarr")
    assert r.exit_code == 0, r.stderr
    assert sorted(read_feature_set("merged.zarr").ids) == sorted(read_feature_set("f.zarr").ids)


def test_a_partial_of_other_parameters_is_discarded_when_nothing_or_overwrite(
    tmp_path: Path, invoke
) -> None:
    """Was: a first run that failed before committing anything (its first video
    unreadable) left a .partial that refused the corrected rerun with other parameters,
    and --overwrite did not clear one either ('...delete it to start over', exit 73)."""
    from vcl.io.video import write_video

    frames = moving_square_frames(n=5, width=29, height=19)
    (tmp_path / "a.mp4").write_bytes(b"garbage, not a video")
    write_video(tmp_path / "b.mp4", frames, fps=10, codec="mjpg")
    manifest = tmp_path / "videos.jsonl"
    manifest.write_text("".join(json.dumps({"id": v, "path": f"{v}.mp4"}) + "\n" for v in "ab"))
    out = tmp_path / "f.zarr"
    args = ("embed", "random:resnet18", manifest, "-o", out, "--size", "32")
    r = invoke(*args, "--frames-per-video", "3")
    assert r.exit_code == ExitCode.DATA and Path(f"{out}.partial").exists()
    write_video(tmp_path / "a.mp4", frames[::-1], fps=10, codec="mjpg")
    r = invoke(*args, "--frames-per-video", "2")  # nothing was done: starts over
    assert r.exit_code == 0, r.stderr
    assert "resuming" not in r.stderr and json.loads(r.stdout)["rows_written"] == 2
    assert read_feature_set(out).attrs["params"]["frames_per_video"] == 2
    # a run that did commit a video: refused, unless --overwrite
    (tmp_path / "b.mp4").write_bytes(b"garbage again")
    out.rename(tmp_path / "done.zarr")
    assert invoke(*args, "--frames-per-video", "3").exit_code == ExitCode.DATA
    r = invoke(*args, "--frames-per-video", "2")
    assert r.exit_code == ExitCode.CANNOT_CREATE and "differ: frames_per_video" in r.stderr
    assert "--overwrite" in r.stderr
    write_video(tmp_path / "b.mp4", frames, fps=10, codec="mjpg")
    r = invoke(*args, "--frames-per-video", "2", "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert "discarded (--overwrite)" in r.stderr and json.loads(r.stdout)["rows_written"] == 2
    np.testing.assert_array_equal(
        read_feature_set(out).features, read_feature_set(tmp_path / "done.zarr").features
    )


def test_an_output_that_cannot_be_made_is_refused_before_the_model_loads(
    tmp_path: Path, invoke, monkeypatch
) -> None:
    """Was: `vcl embed MODEL INPUT -o -` loaded the model before refusing `-o -`."""
    import vcl.embedding

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(vcl.embedding, "load_model", loaded)
    make_crops(tmp_path / "crops.zarr")
    args = ("embed", "random:resnet18", tmp_path / "crops.zarr", "-o")
    r = invoke(*args, "-")
    assert r.exit_code == ExitCode.USAGE and "cannot go to stdout" in r.stderr
    (tmp_path / "t.jsonl").write_text("{}\n")
    r = invoke(*args, tmp_path / "t.jsonl" / "f.zarr")
    assert r.exit_code == ExitCode.CANNOT_CREATE
    assert f"f.zarr: cannot create its folder ({tmp_path}/t.jsonl is a file)" in r.stderr
