"""The backbone registry shared by ``pretrain``, ``embed``, ``probe`` and ``retrieve``.

Every network is built with random weights (nothing is downloaded); trained weights
come from a ``vcl pretrain`` run directory or a file the user gives. A backbone maps
a batch to pooled features and can also return the feature maps of its named stages,
which linear probes read (ODCT probes conv1 and the four residual stages):

- image ResNets, input (N, 3, H, W): stages ``conv1, layer1, layer2, layer3, layer4``;
- AlexNet (Wang & Gupta's network), input (N, 3, H, W): ``pool1, pool2, conv3, conv4,
  pool5``; its pooled output is pool5 (256×6×6, adaptively pooled);
- video networks, input (N, 3, T, H, W): ``stem, layer1..layer4`` (r3d_18,
  r2plus1d_18, mc3_18) or ``features`` blocks (s3d, which needs T >= 14, H, W >= 224).

A run directory holds ``config.json`` (with at least ``arch``) and ``checkpoint.pt``
whose ``"backbone"`` entry is this module's ``state_dict`` (tensors only, loadable
with ``torch.load(weights_only=True)``). Both carry ``"schema": RUN_SCHEMA``; readers
(`load_run_config`, `load_checkpoint`: ``vcl embed``, ``probe``, ``retrieve`` and
``pretrain --resume`` alike) refuse another major version, and damaged files, in one
line naming the file. Runs saved before the field existed have none and are read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcl.errors import DataError, MissingInputError, UsageError

RUN_SCHEMA = "vcl.pretrain_run/1"  # config.json and checkpoint.pt of a vcl pretrain run
DAMAGED_HINT = "rerun the training (into a new -o directory, or with --overwrite)"


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    kind: str  # "image" or "video"
    dim: int  # pooled feature size
    stages: tuple[str, ...]
    min_frames: int = 1  # video networks: shortest clip
    min_side: int = 1  # smallest input side


def _image(name: str, dim: int) -> BackboneSpec:
    return BackboneSpec(name, "image", dim, ("conv1", "layer1", "layer2", "layer3", "layer4"))


def _video(name: str) -> BackboneSpec:
    return BackboneSpec(name, "video", 512, ("stem", "layer1", "layer2", "layer3", "layer4"))


REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        _image("resnet18", 512),
        _image("resnet34", 512),
        _image("resnet50", 2048),
        _image("resnet101", 2048),
        _image("resnet152", 2048),
        _image("resnext50_32x4d", 2048),
        _image("wide_resnet50_2", 2048),
        _video("r3d_18"),
        _video("r2plus1d_18"),
        _video("mc3_18"),
        BackboneSpec("s3d", "video", 1024, ("features",), min_frames=14, min_side=224),
        # AlexNet (torchvision's one-GPU variant): pooled output = pool5, 256×6×6 = 9216
        BackboneSpec("alexnet", "image", 9216, ("pool1", "pool2", "conv3", "conv4", "pool5")),
    )
}


def spec_of(arch: str) -> BackboneSpec:
    if arch not in REGISTRY:
        raise UsageError(
            f"unknown architecture {arch!r}", None, f"choose one of {', '.join(REGISTRY)}"
        )
    return REGISTRY[arch]


def _make(arch: str) -> Any:
    import torch
    import torchvision.models as models
    import torchvision.models.video as video_models

    spec = spec_of(arch)
    net = (getattr(models, arch) if spec.kind == "image" else getattr(video_models, arch))(
        weights=None
    )
    if arch in ("s3d", "alexnet"):
        net.classifier = torch.nn.Identity()
    else:
        net.fc = torch.nn.Identity()
    return net


ALEXNET_MIN_SIDE = 63  # smallest input whose pool5 map is not empty


def _at_least(x: Any, side: int) -> Any:
    """(N, 3, H, W) bilinearly enlarged so that min(H, W) >= ``side`` (AlexNet's stem
    cannot take smaller inputs); larger inputs are returned as they are."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    if min(h, w) >= side:
        return x
    s = side / min(h, w)
    size = (max(side, round(h * s)), max(side, round(w * s)))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def build_backbone(arch: str) -> Any:
    """A randomly initialised backbone (``torch.nn.Module``) with ``forward`` giving
    pooled features (N, dim) and ``stage_outputs(x, names)`` giving feature maps."""
    import torch

    spec = spec_of(arch)

    class Backbone(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.arch = arch
            self.spec = spec
            self.net = _make(arch)

        def _steps(self) -> list[tuple[str, Callable[[Any], Any]]]:
            n = self.net
            if arch == "alexnet":
                f = n.features  # stride-4 conv1 and three max-pools: inputs < 63 px upsampled
                return [
                    ("pool1", lambda x: f[0:3](_at_least(x, ALEXNET_MIN_SIDE))),
                    ("pool2", f[3:6]),
                    ("conv3", f[6:8]),
                    ("conv4", f[8:10]),
                    ("pool5", f[10:13]),
                ]
            if spec.kind == "image":
                return [
                    ("conv1", lambda x: n.maxpool(n.relu(n.bn1(n.conv1(x))))),
                    ("layer1", n.layer1),
                    ("layer2", n.layer2),
                    ("layer3", n.layer3),
                    ("layer4", n.layer4),
                ]
            if arch == "s3d":
                return [("features", n.features)]
            return [
                ("stem", n.stem),
                ("layer1", n.layer1),
                ("layer2", n.layer2),
                ("layer3", n.layer3),
                ("layer4", n.layer4),
            ]

        def stage_outputs(self, x: Any, names: Sequence[str]) -> dict[str, Any]:
            """Feature maps of the named stages, running only as far as needed."""
            unknown = set(names) - set(spec.stages)
            if unknown:
                raise UsageError(
                    f"{arch} has no stage {sorted(unknown)[0]!r}",
                    None,
                    f"stages: {', '.join(spec.stages)}",
                )
            wanted, out = set(names), {}
            for name, step in self._steps():
                x = step(x)
                if name in wanted:
                    out[name] = x
                    if len(out) == len(wanted):
                        break
            return out

        def forward(self, x: Any) -> Any:
            for _, step in self._steps():
                x = step(x)
            return torch.flatten(self.net.avgpool(x), 1)

    return Backbone()


def check_run_schema(data: dict[str, Any], path: Path) -> None:
    """Refuse a run file (config.json, checkpoint.pt) of another major version than the
    RUN_SCHEMA this vcl reads, with the message the stores and manifests give; a file
    saved before the field existed has none and is read as version 1."""
    from vcl.io.manifest import parse_schema

    schema = data.get("schema")
    if schema is None:
        return
    try:
        kind, major = parse_schema(schema)
    except ValueError as exc:
        raise DataError(str(exc), path) from None
    want_kind, want = parse_schema(RUN_SCHEMA)
    if kind != want_kind:
        raise DataError(f"is a vcl.{kind} file, not a vcl pretrain run's {RUN_SCHEMA}", path)
    if major != want:
        raise DataError(
            f"schema {schema} is not the {RUN_SCHEMA} this vcl reads",
            path,
            "upgrade vcl" if major > want else "rerun the training with this vcl",
        )


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's config.json; a damaged one or one of another schema is a
    DataError naming it (never a JSONDecodeError)."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise MissingInputError("not a vcl pretrain run directory (no config.json)", run_dir)
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        raise DataError(
            f"config.json is not valid JSON ({why})",
            run_dir,
            DAMAGED_HINT,
        ) from None
    if not isinstance(config, dict) or "arch" not in config:
        raise DataError("config.json names no 'arch'", run_dir)
    check_run_schema(config, config_path)
    return config


def load_checkpoint(run_dir: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A run directory's checkpoint.pt (tensors and plain containers only); a truncated
    or damaged file, or one of another schema, is a DataError naming it. The one reader
    of checkpoints: ``vcl embed`` (`load_run`) and ``vcl pretrain --resume``."""
    import torch

    run_dir = Path(run_dir)
    checkpoint = run_dir / "checkpoint.pt"
    if not checkpoint.exists():
        raise MissingInputError("run directory has no checkpoint.pt", run_dir)
    try:
        state = torch.load(checkpoint, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        raise DataError(
            f"checkpoint.pt cannot be loaded ({type(exc).__name__}): it is truncated or damaged",
            run_dir,
            DAMAGED_HINT,
        ) from None
    if not isinstance(state, dict):
        raise DataError("checkpoint.pt holds no dict of weights", run_dir)
    check_run_schema(state, checkpoint)
    return state


def load_backbone(run_dir: str | Path, map_location: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """The trained backbone of a run directory, and its config."""
    model, config, _ = load_run(run_dir, map_location)
    return model, config


def load_run(
    run_dir: str | Path, map_location: str = "cpu"
) -> tuple[Any, dict[str, Any], int | None]:
    """The trained backbone of a run directory, its config and the checkpoint's epoch
    (None for a checkpoint that does not record one): a killed run's checkpoint is
    older than its config's ``epochs``, which readers want to know."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    state = load_checkpoint(run_dir, map_location)
    if "backbone" not in state:
        raise DataError("checkpoint.pt has no 'backbone' weights", run_dir)
    model = build_backbone(config["arch"])
    misfit = state_dict_misfit(model, state["backbone"])
    if misfit:
        raise DataError(f"checkpoint.pt weights do not fit {config['arch']}: {misfit}", run_dir)
    model.load_state_dict(state["backbone"])
    epoch = state.get("epoch")
    return model, config, None if epoch is None else int(epoch)


def state_dict_misfit(model: Any, state: dict[str, Any], strip: str = "") -> str:
    """Why ``state`` does not load into ``model`` ("" when it does), on one line:
    torch's own message spans many lines, and its first names no key. Keys are shown
    without ``strip``, as the user's file spells them."""
    from vcl.errors import first_ids

    ref = model.state_dict()
    missing = [k.removeprefix(strip) for k in ref if k not in state]
    unexpected = [k.removeprefix(strip) for k in state if k not in ref]
    shapes = [
        f"{k.removeprefix(strip)} {tuple(state[k].shape)} for {tuple(ref[k].shape)}"
        for k in ref
        if k in state and hasattr(state[k], "shape") and state[k].shape != ref[k].shape
    ]
    parts = [
        f"{len(keys)} {what if len(keys) > 1 else what.replace('keys', 'key')} ({first_ids(keys)})"
        for what, keys in (("keys missing", missing), ("unexpected keys", unexpected))
        if keys
    ]
    if shapes:
        parts.append(f"{len(shapes)} of other shapes ({first_ids(shapes, 2)})")
    return ", ".join(parts)
