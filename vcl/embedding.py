"""Frozen features of any backbone layer: the input of ``probe``, ``cluster`` and ``retrieve``.

A model comes from a ``vcl pretrain`` run directory (or its ``checkpoint.pt``),
``random:ARCH`` (the papers' "Random" baseline) or ``weights:ARCH:PATH`` (a
torchvision state dict the user has, e.g. ImageNet-supervised: the upper bound).

Layers (``layer_names``): the backbone's stages (``conv1, layer1..layer4`` for image
ResNets, ``stem, layer1..layer4`` for video nets) or their Goyal/ODCT names
``stage1..stage5`` (ResNet conv1, res2..res5); ``pool`` (global average of the last
stage: the backbone's output); ``head`` (the classifier of a ``weights:`` state dict).

Pooling of stage maps (``pool="goyal"``, image ResNets; Goyal et al. 2019, as in
VISSL's linear-evaluation map): stage1 is conv1+bn+relu *before* the max-pool
(C×112×112 at 224 px), and each stage is average-pooled (padding counted) with

=========  ===========================  ============  ==========  ==========
stage      AvgPool2d (kernel, stride,   grid at 224   ResNet-50   ResNet-18
           padding)                                   dims        dims
=========  ===========================  ============  ==========  ==========
stage1     10, 10, 4                    12×12         9216        9216
stage2     16, 8, 0                     6×6           9216        2304
stage3     13, 5, 0                     4×4           8192        2048
stage4     8, 3, 0                      3×3           9216        2304
stage5     6, 1, 0                      2×2           8192        2048
=========  ===========================  ============  ==========  ==========

At other input sizes the fixed kernel would give another grid (or none), so the map
is then pooled adaptively (``adaptive_avg_pool2d``) to the same grid: the dimensions
above hold at every input size. ``pool="avg"`` (and every stage of video nets and
AlexNet, whatever ``pool`` says: ``stage_pooling``) is a global average: C dims
(64/256/512/1024/2048 for ResNet-50 stages 1–5). ``pool`` is 512 (ResNet-18/34, video
ResNets), 2048 (ResNet-50+), 1024 (s3d).

Inputs are RGB uint8. Image files and video frames are resized so the shorter side is
``size·8/7`` and centre-cropped to ``size`` (256 → 224, the ImageNet evaluation
transform; 128 → 112 for video nets); crops (already square) are only resized when a
``size`` is asked for. Normalisation: ImageNet mean/std for image nets, Kinetics
mean/std for torchvision video nets. Inference is batched, under autocast (bfloat16)
on CUDA.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vcl.console import log
from vcl.errors import DataError, MissingInputError, UsageError
from vcl.io.features import FeatureSet
from vcl.io.video import IMAGE_EXTENSIONS, list_images

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
KINETICS_MEAN, KINETICS_STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
POOLS = ("goyal", "avg")
# Goyal et al. 2019 pooling of image-ResNet stages: stage -> (grid, kernel, stride, padding)
GOYAL_POOL: dict[str, tuple[int, int, int, int]] = {
    "conv1": (12, 10, 10, 4),
    "layer1": (6, 16, 8, 0),
    "layer2": (4, 13, 5, 0),
    "layer3": (3, 8, 3, 0),
    "layer4": (2, 6, 1, 0),
}
DEFAULT_SIZE = {"image": 224, "video": 112}


@dataclass
class EmbeddingModel:
    """A frozen backbone on its device, plus the optional classifier head."""

    backbone: Any  # vcl.backbones Backbone (torch.nn.Module), eval mode
    arch: str
    kind: str  # "image" | "video"
    stages: tuple[str, ...]
    device: Any  # torch.device
    source: str  # the MODEL spec, for provenance
    head: Any = None  # torch.nn.Linear from a weights: state dict, or None
    config: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None  # the checkpoint's epoch (a run directory's), for provenance

    @property
    def weights_sha256(self) -> str:
        """Digest of the weights used (backbone and head): a run retrained in place, or a
        replaced weights file, keeps its path and epoch; a resumed embedding must not mix
        the two models' features."""
        import torch

        from vcl.digest import arrays_sha256

        def raw(tensor: Any) -> np.ndarray:  # bytes of any dtype (numpy has no bfloat16)
            return tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()

        return arrays_sha256(
            (f"{name} {tensor.dtype} {tuple(tensor.shape)}", raw(tensor))
            for part in (self.backbone, self.head)
            if part is not None
            for name, tensor in part.state_dict().items()
        )

    @property
    def planned_epochs(self) -> int | None:
        """The run's --epochs: more than ``epoch`` when it was killed before the end."""
        value = self.config.get("epochs")
        return value if isinstance(value, int) else None

    @property
    def default_size(self) -> int:
        return DEFAULT_SIZE[self.kind]


# ---------------------------------------------------------------- loading


def load_model(spec: str, device: str = "auto") -> EmbeddingModel:
    """``RUN_DIR`` | ``RUN_DIR/checkpoint.pt`` | ``random:ARCH`` | ``weights:ARCH:PATH``."""
    import torch

    from vcl.backbones import build_backbone, load_run, spec_of
    from vcl.device import resolve_device

    torch_device = resolve_device(device)
    head, config, epoch = None, {}, None
    if spec.startswith("random:"):
        arch = spec.split(":", 1)[1]
        spec_of(arch)
        torch.manual_seed(0)  # a reproducible "Random" baseline
        backbone = build_backbone(arch)
    elif spec.startswith("weights:"):
        parts = spec.split(":", 2)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise UsageError(f"bad model {spec!r}", None, "write weights:ARCH:PATH")
        arch, path = parts[1], Path(parts[2])
        spec_of(arch)
        backbone, head = _load_weights(arch, path)
    else:
        path = Path(spec)
        if path.is_file() and path.name == "checkpoint.pt":
            path = path.parent
        if not path.exists():
            raise MissingInputError(
                "no such run directory",
                path,
                "give a run directory, random:ARCH or weights:ARCH:PATH",
            )
        if path.is_file():
            raise UsageError(
                "is a file, not a vcl pretrain run directory",
                path,
                f"for a state dict write weights:ARCH:{path}",
            )
        backbone, config, epoch = load_run(path)
        arch = config["arch"]
    backbone = backbone.to(torch_device).eval()
    if head is not None:
        head = head.to(torch_device).eval()
    model = EmbeddingModel(
        backbone=backbone,
        arch=arch,
        kind=backbone.spec.kind,
        stages=tuple(backbone.spec.stages),
        device=torch_device,
        source=spec,
        head=head,
        config=config,
        epoch=epoch,
    )
    planned = model.planned_epochs
    if epoch is not None and planned is not None and epoch < planned:
        # a killed run: its checkpoint is the model of its last finished epoch
        log.warning(
            "%s: the run did not finish: its checkpoint is of epoch %d of %d, and so are "
            "these features (vcl pretrain INPUT --resume RUN_DIR finishes it)",
            path,
            epoch,
            planned,
        )
    return model


def _load_weights(arch: str, path: Path) -> tuple[Any, Any]:
    """A torchvision-format state dict (``conv1.weight``, ..., ``fc.weight``), also
    accepted wrapped in ``state_dict``/``model``/``backbone`` or with ``module.`` keys."""
    import torch

    from vcl.backbones import build_backbone, state_dict_misfit

    if not path.exists():
        raise MissingInputError("no such weights file", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        raise DataError(
            f"cannot be loaded as a state dict ({type(exc).__name__}): it is truncated, "
            "damaged or not a torch.save file of tensors",
            path,
            "save or download the weights again",
        ) from None
    for key in ("state_dict", "model", "backbone"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise DataError("holds no state dict", path)
    state = {k.removeprefix("module.").removeprefix("net."): v for k, v in state.items()}
    head_keys = ("fc.", "classifier.") if arch == "s3d" else ("fc.",)
    head_state = {k: v for k, v in state.items() if k.startswith(head_keys)}
    body = {f"net.{k}": v for k, v in state.items() if not k.startswith(head_keys)}
    backbone = build_backbone(arch)
    misfit = state_dict_misfit(backbone, body, strip="net.")
    if misfit:
        raise DataError(f"weights do not fit {arch}: {misfit}", path, "check ARCH")
    backbone.load_state_dict(body)
    head = None
    weight, bias = head_state.get("fc.weight"), head_state.get("fc.bias")
    if weight is not None and weight.ndim == 2:
        head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            head.weight.copy_(weight)
            if bias is not None:
                head.bias.copy_(bias)
    return backbone, head


# ---------------------------------------------------------------- layers


def layer_names(model: EmbeddingModel, layers: Sequence[str]) -> list[str]:
    """Canonical names (``stage3`` -> ``layer2``; ``pool``, ``head`` kept), validated."""
    out = []
    for layer in layers:
        name = layer.strip()
        if name.startswith("stage") and name[5:].isdigit():
            i = int(name[5:]) - 1
            if not 0 <= i < len(model.stages):
                raise UsageError(
                    f"{model.arch} has no {name}", "--layers", f"stage1..stage{len(model.stages)}"
                )
            name = model.stages[i]
        elif name == "head":
            if model.head is None:
                raise UsageError(
                    f"{model.source} has no classifier head",
                    "--layers",
                    "head needs a weights:ARCH:PATH state dict with fc weights",
                )
        elif name != "pool" and name not in model.stages:
            raise UsageError(
                f"{model.arch} has no layer {name!r}",
                "--layers",
                f"use {', '.join(model.stages)}, stage1..stage{len(model.stages)}, pool or head",
            )
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError("no layer asked for", "--layers")
    return out


def _image_maps(model: EmbeddingModel, x: Any, names: set[str]) -> dict[str, Any]:
    """Stage maps of an image ResNet, stage1 taken before the max-pool (Goyal),
    running only as deep as the deepest layer asked for."""
    n = model.backbone.net
    order = ("conv1", "layer1", "layer2", "layer3", "layer4")
    deepest = 4 if names & {"pool", "head"} else max(order.index(k) for k in names if k in order)
    x = n.relu(n.bn1(n.conv1(x)))
    out: dict[str, Any] = {"conv1": x}
    x = n.maxpool(x)
    for name in order[1 : deepest + 1]:
        x = getattr(n, name)(x)
        out[name] = x
    return out


def goyal_pool(name: str, x: Any) -> Any:
    """(N, C, H, W) -> (N, C·g·g): Goyal's AvgPool2d, or adaptive pooling to its grid."""
    import torch.nn.functional as F

    grid, kernel, stride, pad = GOYAL_POOL[name]
    h, w = x.shape[-2:]
    fits = all(
        s + 2 * pad >= kernel and (s + 2 * pad - kernel) // stride + 1 == grid for s in (h, w)
    )
    y = F.avg_pool2d(x, kernel, stride, pad) if fits else F.adaptive_avg_pool2d(x, grid)
    return y.flatten(1)


def forward_layers(
    model: EmbeddingModel, x: Any, layers: Sequence[str], pool: str = "goyal"
) -> dict[str, Any]:
    """Pooled float32 features (N, D) per canonical layer for a normalised batch ``x``
    ((N, 3, H, W) for image nets, (N, 3, T, H, W) for video nets)."""
    import torch

    names = set(layers)
    want_pool = bool(names & {"pool", "head"})
    if _image_resnet(model):
        maps = _image_maps(model, x, names)
    else:
        stage_names = [
            s for s in model.stages if s in names or (want_pool and s == model.stages[-1])
        ]
        maps = model.backbone.stage_outputs(x, stage_names) if stage_names else {}
    out: dict[str, Any] = {}
    for name in layers:
        if name in ("pool", "head"):
            continue
        m = maps[name].float()
        if stage_pooling(model, pool) == "goyal" and name in GOYAL_POOL:
            out[name] = goyal_pool(name, m)
        else:
            out[name] = m.mean(dim=tuple(range(2, m.ndim)))
    if want_pool:
        last = maps[model.stages[-1]].float()
        pooled = last.mean(dim=tuple(range(2, last.ndim)))
        if "pool" in names:
            out["pool"] = pooled
        if "head" in names:
            with torch.autocast(x.device.type, enabled=False):
                out["head"] = model.head(pooled)
    return {k: out[k] for k in layers}


def _image_resnet(model: EmbeddingModel) -> bool:
    return model.kind == "image" and model.arch.startswith(("resnet", "resnext", "wide_resnet"))


def stage_pooling(model: EmbeddingModel, pool: str) -> str:
    """The pooling stages really get: Goyal's grids exist for image ResNets only, so the
    stages of video nets (and AlexNet) are always global averages, as attrs must say."""
    return pool if _image_resnet(model) else "avg"


def layer_dims(
    model: EmbeddingModel,
    layers: Sequence[str],
    size: int | None = None,
    frames: int = 16,
    pool: str = "goyal",
) -> dict[str, int]:
    """Feature size of each layer under ``pool``, from one dummy forward pass (the
    columns of a store must be sized for the pooling its rows are computed with)."""
    import torch

    layers = layer_names(model, layers)
    s = size or model.default_size
    shape = (1, 3, s, s) if model.kind == "image" else (1, 3, frames, s, s)
    with torch.no_grad():
        out = forward_layers(model, torch.zeros(shape, device=model.device), layers, pool)
    return {k: int(v.shape[1]) for k, v in out.items()}


# ---------------------------------------------------------------- arrays


def resize_center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3): shorter side to round(size·8/7), centre crop."""
    import cv2

    h, w = rgb.shape[:2]
    short = round(size * 8 / 7)
    scale = short / min(h, w)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(np.ascontiguousarray(rgb), (nw, nh), interpolation=interp)
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return resized[y0 : y0 + size, x0 : x0 + size]


def _resize_square(images: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if images.shape[1:3] == (size, size):
        return images
    return (
        np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
        if len(images)
        else np.zeros((0, size, size, 3), np.uint8)
    )


def _autocast(device: Any) -> Any:
    import contextlib

    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _run_batches(
    model: EmbeddingModel,
    batches: Iterable[np.ndarray],
    layers: Sequence[str],
    pool: str,
) -> dict[str, np.ndarray]:
    """uint8 (B, H, W, 3) or (B, T, H, W, 3) batches -> {layer: (N, D) float32}."""
    import torch

    mean, std = (
        (IMAGENET_MEAN, IMAGENET_STD) if model.kind == "image" else (KINETICS_MEAN, KINETICS_STD)
    )
    dev = model.device
    shape = (1, 3, 1, 1) if model.kind == "image" else (1, 3, 1, 1, 1)
    m = torch.tensor(mean, device=dev).view(shape) * 255
    s = torch.tensor(std, device=dev).view(shape) * 255
    parts: dict[str, list[np.ndarray]] = {k: [] for k in layers}

    def collect(out: dict[str, Any]) -> None:
        for k, v in out.items():
            parts[k].append(v.float().cpu().numpy())

    with torch.inference_mode(), _autocast(dev):
        last = None  # a batch's features are copied back once the next one is queued,
        for batch in batches:  # so the device is not idle while the host waits for them
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(dev, non_blocking=True)
            # (B,H,W,3) -> (B,3,H,W); (B,T,H,W,3) -> (B,3,T,H,W)
            x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.permute(0, 4, 1, 2, 3)
            x = (x.float() - m) / s
            out = forward_layers(model, x, layers, pool)
            if last is not None:
                collect(last)
            last = out
        if last is not None:
            collect(last)
    return {
        k: np.concatenate(v).astype(np.float32, copy=False) if v else np.zeros((0, 0), np.float32)
        for k, v in parts.items()
    }


def embed_images(
    model: EmbeddingModel,
    images: np.ndarray,
    layers: Sequence[str],
    batch_size: int = 64,
    size: int | None = None,
    pool: str = "goyal",
) -> dict[str, np.ndarray]:
    """Square uint8 images (N, S, S, 3) -> {layer: (N, D)}; resized to ``size`` if given."""
    if model.kind != "image":
        raise UsageError(f"{model.arch} is a video network", None, "embed videos with it")
    layers = layer_names(model, layers)
    n = len(images)
    batches = (
        _resize_square(np.asarray(images[i : i + batch_size]), size)
        if size
        else np.asarray(images[i : i + batch_size])
        for i in range(0, n, batch_size)
    )
    out = _run_batches(model, batches, layers, pool)
    if n == 0:
        side = size or images.shape[1] if images.ndim == 4 else None
        dims = layer_dims(model, layers, side, pool=pool)
        out = {k: np.zeros((0, d), np.float32) for k, d in dims.items()}
    return out


def embed_clips(
    model: EmbeddingModel,
    clips: np.ndarray,
    layers: Sequence[str],
    batch_size: int = 8,
    pool: str = "avg",
) -> dict[str, np.ndarray]:
    """uint8 clips (N, T, S, S, 3) -> {layer: (N, D)} with a video network."""
    if model.kind != "video":
        raise UsageError(f"{model.arch} is an image network", None, "use embed_images")
    layers = layer_names(model, layers)
    batches = (clips[i : i + batch_size] for i in range(0, len(clips), batch_size))
    return _run_batches(model, batches, layers, pool)


# ---------------------------------------------------------------- videos


def sample_frames(n_frames: int, count: int) -> np.ndarray:
    """``count`` frame indices uniformly spaced over a video (centres of equal bins)."""
    if n_frames <= 0:
        return np.zeros(0, np.int64)
    return (
        np.floor((np.arange(count) + 0.5) * n_frames / count).astype(np.int64).clip(0, n_frames - 1)
    )


def clip_starts(n_frames: int, clips: int, span: int) -> np.ndarray:
    """First frame of ``clips`` uniformly spaced clips spanning ``span`` frames (SLIC)."""
    last = max(n_frames - span, 0)
    return np.round(np.linspace(0, last, clips)).astype(np.int64)


def read_video_frames(path: str | Path, indices: np.ndarray, size: int) -> dict[int, np.ndarray]:
    """The wanted frames (resized and centre-cropped to size×size), decoding once."""
    from vcl.io.video import VideoReader

    wanted = set(int(i) for i in indices)
    out: dict[int, np.ndarray] = {}
    if not wanted:
        return out
    for index, rgb in VideoReader(path, end=max(wanted) + 1):
        if index in wanted:
            out[index] = resize_center_crop(rgb, size)
    return out


def video_inputs(
    path: str | Path,
    kind: str,
    size: int,
    frames_per_video: int = 8,
    clips: int = 10,
    frames: int = 16,
    stride: int = 1,
) -> np.ndarray:
    """Network inputs of one video: (F, S, S, 3) uniformly spaced frames for an image
    net, or (clips, frames, S, S, 3) uniformly spaced clips of every ``stride``-th frame
    for a video net (frames past the end of a short video repeat its last frame).
    Decodes twice: once to count frames (declared counts can be wrong), once up to the
    last frame needed."""
    from vcl.io.video import VideoReader

    n = VideoReader(path).count_frames()
    if n == 0:  # nothing to sample: name the video rather than fail on an empty stack
        raise DataError("no frame could be decoded", path, "the file is empty or corrupt")
    if kind == "image":
        idx = sample_frames(n, frames_per_video)
    else:
        starts = clip_starts(n, clips, (frames - 1) * stride + 1)
        idx = (starts[:, None] + stride * np.arange(frames)[None]).clip(0, n - 1)
    got = read_video_frames(path, np.unique(idx), size)
    lost = [int(i) for i in np.unique(idx) if int(i) not in got]
    if lost:  # the second decode stopped earlier than the count
        raise DataError(f"frame {lost[0]} of {n} could not be decoded a second time", path)
    stack = np.stack([got[int(i)] for i in idx.ravel()])
    return stack.reshape(*idx.shape, size, size, 3)


def video_inputs_task(args: tuple[str, str, int, int, int, int, int]) -> np.ndarray:
    """``video_inputs`` on one tuple: a picklable function for ``parallel_map``."""
    return video_inputs(*args)


def embed_video_inputs(
    model: EmbeddingModel,
    inputs: np.ndarray,
    layers: Sequence[str],
    batch_size: int = 64,
    pool: str = "goyal",
) -> dict[str, np.ndarray]:
    """{layer: (D,)}: the mean over a video's frames or clips (from ``video_inputs``)."""
    if model.kind == "image":
        feats = embed_images(model, inputs, layers, batch_size, None, pool)
    else:
        feats = embed_clips(model, inputs, layers, max(1, batch_size // inputs.shape[1]), pool)
    return {k: v.mean(0) for k, v in feats.items()}


def embed_video(
    model: EmbeddingModel,
    path: str | Path,
    layers: Sequence[str],
    size: int | None = None,
    frames_per_video: int = 8,
    clips: int = 10,
    frames: int = 16,
    batch_size: int = 64,
    pool: str = "goyal",
) -> dict[str, np.ndarray]:
    """One video -> {layer: (D,)}: the mean over ``frames_per_video`` uniformly spaced
    frames (image nets) or over ``clips`` uniformly spaced clips of ``frames`` (video nets)."""
    layers = layer_names(model, layers)
    size = size or model.default_size
    inputs = video_inputs(path, model.kind, size, frames_per_video, clips, frames)
    return embed_video_inputs(model, inputs, layers, batch_size, pool)


# ---------------------------------------------------------------- files


def read_image(path: str | Path) -> np.ndarray | None:
    """RGB uint8 (H, W, 3), or None when the file cannot be decoded."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _expand(paths: Sequence[str | Path]) -> list[tuple[str, Path, str]]:
    """(id, path, "image"|"video") for files and image folders; ids = names without extension."""
    from vcl.io.sources import VIDEO_EXTENSIONS

    items = []
    for p in map(Path, paths):
        if not p.exists():
            raise MissingInputError("no such image, video or folder", p)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise DataError("holds no jpg/png images", p)
            items.extend((f.stem, f, "image") for f in found)
        elif p.suffix.lower() in IMAGE_EXTENSIONS:
            items.append((p.stem, p, "image"))
        elif p.suffix.lower() in VIDEO_EXTENSIONS:
            items.append((p.stem, p, "video"))
        else:
            raise UsageError("is neither an image nor a video file", p)
    seen: dict[str, Path] = {}
    for item_id, p, _ in items:
        if item_id in seen:
            raise DataError(f"id {item_id!r} of {p} is also the id of {seen[item_id]}", p)
        seen[item_id] = p
    return items


def load_images(args: tuple[list[tuple[str, str]], int]) -> tuple[list[str], np.ndarray, list[str]]:
    """(ids read, (N, S, S, 3) uint8, unreadable paths) for ``[(id, path)], size``;
    picklable for ``parallel_map``. Unreadable images are skipped with a warning."""
    items, size = args
    kept, images, skipped = [], [], []
    for item_id, path in items:
        rgb = read_image(path)
        if rgb is None:
            log.warning("%s: cannot be decoded as an image; skipped", path)
            skipped.append(str(path))
            continue
        kept.append(item_id)
        images.append(resize_center_crop(rgb, size))
    array = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return kept, array, skipped


def embed_image_files(
    model: EmbeddingModel,
    items: Sequence[tuple[str, Path]],
    layers: Sequence[str],
    batch_size: int = 64,
    size: int | None = None,
    pool: str = "goyal",
) -> tuple[list[str], dict[str, np.ndarray], list[str]]:
    """(ids kept, {layer: (N, D)}, skipped paths): unreadable images skipped with a warning."""
    size = size or model.default_size
    kept: list[str] = []
    skipped: list[str] = []

    def batches() -> Iterator[np.ndarray]:
        buf: list[np.ndarray] = []
        for item_id, path in items:
            rgb = read_image(path)
            if rgb is None:
                log.warning("%s: cannot be decoded as an image; skipped", path)
                skipped.append(str(path))
                continue
            kept.append(item_id)
            buf.append(resize_center_crop(rgb, size))
            if len(buf) == batch_size:
                yield np.stack(buf)
                buf = []
        if buf:
            yield np.stack(buf)

    layers = layer_names(model, layers)
    feats = _run_batches(model, batches(), layers, pool)
    if not kept:
        feats = {
            k: np.zeros((0, d), np.float32) for k, d in layer_dims(model, layers, size).items()
        }
    return kept, feats, skipped


def embed_paths(
    paths: Sequence[str | Path],
    model: EmbeddingModel,
    layer: str = "pool",
    batch_size: int = 64,
    size: int | None = None,
    frames_per_video: int = 8,
) -> FeatureSet:
    """Images, image folders and videos -> one layer's features; ``attrs["skipped"]``
    lists the images that could not be decoded."""
    items = _expand(paths)
    name = layer_names(model, [layer])[0]
    images = [(i, p) for i, p, kind in items if kind == "image"]
    rows: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    if images:
        if model.kind != "image":
            raise UsageError(f"{model.arch} is a video network: it embeds videos, not images")
        kept, feats, skipped = embed_image_files(model, images, [name], batch_size, size)
        rows.update(zip(kept, feats[name], strict=True))
    for item_id, p, kind in items:
        if kind == "video":
            rows[item_id] = embed_video(
                model, p, [name], size, frames_per_video, batch_size=batch_size
            )[name]
    ids = [i for i, _, _ in items if i in rows]
    if ids:
        features = np.stack([rows[i] for i in ids]).astype(np.float32)
    else:
        features = np.zeros((0, layer_dims(model, [name], size)[name]), np.float32)
    return FeatureSet(
        ids=np.array(ids, dtype=str).reshape(-1),
        features=features,
        attrs={"model": model.source, "arch": model.arch, "layer": layer, "skipped": skipped},
    )
