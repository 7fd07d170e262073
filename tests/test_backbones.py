from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vcl.backbones import REGISTRY, build_backbone, load_backbone
from vcl.errors import DataError, MissingInputError, UsageError

SMALL = ["resnet18", "r3d_18"]  # built for real; the registry test checks every entry


def sample_input(arch: str) -> torch.Tensor:
    spec = REGISTRY[arch]
    if spec.kind == "image":
        return torch.randn(2, 3, 37, 45)  # odd sizes expose H/W mix-ups
    frames, side = max(spec.min_frames, 4), max(spec.min_side, 33)
    return torch.randn(1, 3, frames, side, side + 6)


@pytest.mark.parametrize("arch", list(REGISTRY))
def test_every_registered_backbone_has_the_declared_shapes(arch: str) -> None:
    """Built on torch's meta device: shapes propagate without allocating or initialising
    weights, so every entry (resnet152 included) is checked in milliseconds."""
    spec = REGISTRY[arch]
    with torch.device("meta"):
        model = build_backbone(arch).eval()
        x = sample_input(arch)
        pooled = model(x)
        stages = model.stage_outputs(x, list(spec.stages))
    assert pooled.shape == (x.shape[0], spec.dim)
    assert list(stages) == list(spec.stages)


@pytest.mark.parametrize("arch", SMALL)
def test_forward_pools_the_last_stage(arch: str) -> None:
    torch.manual_seed(0)
    model = build_backbone(arch).eval()
    x = sample_input(arch)
    with torch.no_grad():
        pooled = model(x)
        last = model.stage_outputs(x, [REGISTRY[arch].stages[-1]])
    (feature_map,) = last.values()
    torch.testing.assert_close(torch.flatten(model.net.avgpool(feature_map), 1), pooled)


def test_stage_outputs_stop_early_and_reject_unknown_names() -> None:
    model = build_backbone("resnet18").eval()
    with torch.no_grad():
        out = model.stage_outputs(torch.randn(1, 3, 32, 32), ["layer1"])
    assert list(out) == ["layer1"] and out["layer1"].shape == (1, 64, 8, 8)
    with pytest.raises(UsageError, match="no stage 'layer9'"):
        model.stage_outputs(torch.randn(1, 3, 32, 32), ["layer9"])
    with pytest.raises(UsageError, match="unknown architecture"):
        build_backbone("vgg11")


def test_run_directory_round_trip(tmp_path: Path) -> None:
    model = build_backbone("resnet18")
    (tmp_path / "config.json").write_text(json.dumps({"arch": "resnet18"}))
    torch.save({"backbone": model.state_dict()}, tmp_path / "checkpoint.pt")
    loaded, config = load_backbone(tmp_path)
    assert config["arch"] == "resnet18"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    (tmp_path / "config.json").write_text(json.dumps({"arch": "resnet34"}))
    with pytest.raises(DataError, match="do not fit resnet34"):
        load_backbone(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"truncated")
    with pytest.raises(DataError, match="cannot be loaded"):
        load_backbone(tmp_path)
    with pytest.raises(MissingInputError):
        load_backbone(tmp_path / "nope")
