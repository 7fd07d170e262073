"""vcl embed: frozen features of any layer of a backbone, for probes, clustering, retrieval."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from vcl.cli.common import Device, Overwrite, Shard, Workers, vcl_command

IMAGE_GROUP = 512  # images per store group: the unit a rerun resumes by
T = TypeVar("T")


def read_ahead(read: Callable[[str], T], keys: Sequence[str]) -> Iterator[T]:
    """``read(key)`` for each key in order, the next one read on a thread while the
    caller works on this one; an error of a read is raised where its result is due.
    Closing the generator waits for a read under way."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="vcl-read") as pool:
        due = pool.submit(read, keys[0]) if keys else None
        for i in range(len(keys)):
            assert due is not None
            this, due = due, pool.submit(read, keys[i + 1]) if i + 1 < len(keys) else None
            yield this.result()


def _input_kind(path: Path) -> str:
    """crops | images | image-folder | videos (an images manifest must be a file: its kind
    is read from its first line, which a pipe would lose)."""
    from vcl.errors import MissingInputError
    from vcl.io.video import IMAGE_EXTENSIONS

    if str(path) != "-" and not path.exists():
        raise MissingInputError("no such crops store, manifest, folder or video", path)
    if path.is_dir() and (path / "zarr.json").exists():
        return "crops"
    if path.is_dir() and any(
        p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir() if p.is_file()
    ):
        return "image-folder"
    from vcl.io.manifest import is_stream

    if is_stream(path):  # read once, never peeked: a pipe is a videos manifest
        return "videos"
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    try:
                        first = json.loads(line)
                    except json.JSONDecodeError:
                        break
                    if isinstance(first, dict) and str(first.get("schema", "")).startswith(
                        "vcl.image/"
                    ):
                        return "images"
                    suffix = Path(str(first.get("path", ""))).suffix.lower()
                    if "schema" not in first and suffix in IMAGE_EXTENSIONS:
                        return "images"
                    break
    return "videos"


@vcl_command
def run(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL",
            help="A vcl pretrain run directory (or its checkpoint.pt), random:ARCH (random "
            "weights) or weights:ARCH:PATH (a torchvision state dict you have).",
            show_default=False,
        ),
    ],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT...",
            help="A vcl.crops store, an images manifest (vcl.image/1 JSONL), a folder of "
            "jpg/png files (ids = names without extension), or videos (manifest, files, "
            "folders); several of one kind (e.g. the shards of one crops run) read as one.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The vcl.features store to write.", show_default=False),
    ],
    layers: Annotated[
        str,
        typer.Option(
            "--layers",
            help="Comma-separated layers, each its own column features_<layer>: stage1..stage5 "
            "(ResNet conv1, res2..res5; aliases of conv1, layer1..layer4 or stem, "
            "layer1..layer4 for video nets), those stage names, pool (global average of "
            "the last stage) or head (classifier of a weights: state dict).",
        ),
    ] = "pool",
    pool: Annotated[
        str,
        typer.Option(
            "--pool",
            help="Stage pooling: goyal (image ResNets: Goyal et al.'s AvgPool to ~9k dims, "
            "9216/9216/8192/9216/8192 for ResNet-50) or avg (global average: C dims). "
            "Video nets' stages are always averaged (their attrs say avg).",
        ),
    ] = "goyal",
    size: Annotated[
        int | None,
        typer.Option(
            "--size",
            min=16,
            help="Input side: images and frames are resized (shorter side size·8/7) and "
            "centre-cropped to it (default 224 for image nets, 112 for video nets; crops "
            "keep their stored size unless given).",
        ),
    ] = None,
    frames_per_video: Annotated[
        int,
        typer.Option(
            "--frames-per-video",
            min=1,
            help="Image nets on videos: uniformly spaced frames whose features are averaged.",
        ),
    ] = 8,
    clips: Annotated[
        int,
        typer.Option(
            "--clips",
            min=1,
            help="Video nets on videos: uniformly spaced clips, features averaged (SLIC).",
        ),
    ] = 10,
    frames: Annotated[
        int, typer.Option("--frames", min=1, help="Video nets: frames per clip.")
    ] = 16,
    frame_stride: Annotated[
        int,
        typer.Option(
            "--frame-stride",
            min=1,
            help="Video nets: every s-th frame (as the run was trained: vcl pretrain "
            "--frame-stride).",
        ),
    ] = 1,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, help="Images (or frames of clips) per forward pass."),
    ] = 64,
    workers: Workers = 1,
    device: Device = "auto",
    shard: Shard = None,
    overwrite: Overwrite = False,
) -> None:
    """Embed crops, images or videos: features of any backbone layer.

    Writes a vcl.features/1 store: columns id (str), one features_<layer> (float32,
    N×D) per --layers entry, label (str, when the input has labels), and for crops
    track_id and video_id. Ids: crops "<track_id>@<frame>", images their manifest id
    or file name, videos their id. Attrs: layers, default_layer (pool when embedded,
    else the last), layer_dims, layer_stages (name -> backbone stage), model, arch,
    checkpoint_epoch and run_epochs (a run directory's: the checkpoint's epoch and the
    run's --epochs; a warning tells when the run did not finish), pool (the stage
    pooling done: avg for video nets), size, skipped (unreadable images). Groups: one
    per video for crops and videos, 512 images for images; a rerun resumes. --shard
    I/N on images takes the I-th of N equal runs of their rows (all N shards of one
    list hold them all once; videos and crops go by a hash of the video id). Prints a
    JSON summary on stdout.
    """
    import numpy as np

    from vcl.console import log, track
    from vcl.embedding import (
        POOLS,
        embed_images,
        embed_video_inputs,
        layer_dims,
        layer_names,
        load_images,
        load_model,
        stage_pooling,
        video_inputs_task,
    )
    from vcl.errors import UsageError
    from vcl.io.features import SCHEMA, crop_ids, feature_columns
    from vcl.io.store import StoreWriter, WriteBehind, check_output, record_path
    from vcl.parallel import parallel_map

    if pool not in POOLS:
        raise UsageError(f"unknown pooling {pool!r}", "--pool", "use goyal or avg")
    check_output(output, overwrite, f"the output is a zarr store ({SCHEMA})")  # before the model
    kinds = [_input_kind(p) for p in inputs]
    if len(set(kinds)) > 1:
        raise UsageError(
            f"inputs of different kinds ({', '.join(sorted(set(kinds)))})",
            str(next(p for p, k in zip(inputs, kinds, strict=True) if k != kinds[0])),
            "embed one kind of input at a time",
        )
    kind = kinds[0]
    input = inputs[0] if len(inputs) == 1 else ", ".join(map(str, inputs))  # for messages
    net = load_model(model, device)
    names = [x.strip() for x in layers.split(",") if x.strip()]
    if len(set(names)) != len(names):
        raise UsageError("a layer is named twice", "--layers")
    stages = {name: layer_names(net, [name])[0] for name in names}
    if len(set(stages.values())) != len(names):
        raise UsageError("two names of --layers are the same layer", "--layers")
    if kind in ("crops", "images", "image-folder") and net.kind != "image":
        raise UsageError(f"{net.arch} is a video network: it embeds videos, not images", str(input))

    from vcl.cli.common import parse_shard_option

    picked = parse_shard_option(shard)
    groups: list[tuple[str, Any]] = []  # (group id, what to load)
    labels_of: dict[str, str] = {}
    crop_size = None
    if kind == "crops":
        from vcl.io.union import open_stores

        store = open_stores(inputs, kind="crops", version=1)
        crop_size = int(store["image"].shape[1])
        groups = [(g, g) for g in store.group_ids]
        if "label" in store:  # the tracks' labels (vcl track --keep-class)
            from vcl.io.features import crop_ids

            crops = crop_ids(store["track_id"][:], store["frame"][:])
            values = np.asarray(store["label"][:]).astype(object).astype(str)
            labels_of = {i: v for i, v in zip(crops, values, strict=True) if v}
    elif kind in ("images", "image-folder"):
        if kind == "images":
            from vcl.io.manifest import ImageRecord
            from vcl.io.union import read_records_union

            records = read_records_union(inputs, ImageRecord)
            items = [(r.id, r.path) for r in records]
            labels_of = {r.id: r.label for r in records if r.label}
        else:
            from vcl.io.video import list_images

            items = [(p.stem, str(p)) for folder in inputs for p in list_images(folder)]
            if len({i for i, _ in items}) != len(items):
                from vcl.errors import DataError

                raise DataError("two images share a name without extension", input)
        # Each image is its own shard unit: shard I of N takes the I-th of N equal runs
        # of rows (a hash would leave shards of a small set empty, and hashing groups
        # put every image of a set under 512 in one shard). Group ids name the shard,
        # so shards never share one and their union reads as one store.
        if picked is not None:
            index, count = picked
            items = items[index * len(items) // count : (index + 1) * len(items) // count]
        tag = "" if picked is None else f"-shard{picked[0]}of{picked[1]}"
        groups = [
            (f"images{i // IMAGE_GROUP:06d}{tag}", items[i : i + IMAGE_GROUP])
            for i in range(0, len(items), IMAGE_GROUP)
        ]
    else:
        from vcl.io.sources import resolve_videos

        videos = resolve_videos([str(p) for p in inputs])
        labels_of = {v.id: v.label for v in videos if v.label}
        groups = [(v.id, v) for v in videos]
    if kind not in ("images", "image-folder"):  # images: sharded above, one by one
        from vcl.parallel import select_shard

        groups = select_shard(groups, picked, key=lambda g: g[0])
    eff_size = size or (crop_size if kind == "crops" else net.default_size)
    pool = stage_pooling(net, pool)  # what is done, for the attrs: video nets average
    dims = layer_dims(net, list(stages.values()), eff_size, frames, pool)
    col_dims = {name: dims[stages[name]] for name in names}
    default_layer = "pool" if "pool" in names else names[-1]
    from vcl.io.space import check_free_space, feature_bytes

    if kind == "crops":
        n_items = sum(store.rows(g).stop - store.rows(g).start for g, _ in groups)
    else:
        n_items = sum(len(what) for _, what in groups) if kind != "videos" else len(groups)
    check_free_space(output, feature_bytes(n_items, list(col_dims.values())), "the features")
    has_labels = bool(labels_of)
    params = {
        "model": model,
        "arch": net.arch,
        "checkpoint_epoch": net.epoch,  # a run's checkpoint: older than run_epochs if killed
        "run_epochs": net.planned_epochs,
        "weights_sha256": net.weights_sha256,  # resuming with other weights is refused
        "input": str(input) if len(inputs) == 1 else [str(p) for p in inputs],
        "input_kind": kind,
        "layers": names,
        "pool": pool,
        "size": eff_size,
        "frames_per_video": frames_per_video if kind == "videos" and net.kind == "image" else None,
        "clips": clips if kind == "videos" and net.kind == "video" else None,
        "frames": frames if kind == "videos" and net.kind == "video" else None,
        "frame_stride": frame_stride if kind == "videos" and net.kind == "video" else None,
        "shard": shard,
    }
    log.info(
        "embedding %d %s with %s (%s): %s",
        len(groups),
        {"videos": "videos", "crops": "videos' crops"}.get(kind, "image groups"),
        net.arch,
        net.device,
        ", ".join(f"{n} {d}" for n, d in col_dims.items()),
    )
    canon = [stages[n] for n in names]
    skipped: list[str] = []
    rows = 0
    group_ids = [g for g, _ in groups]
    paths = ("model", "input")  # recorded absolute: a rerun from elsewhere resumes, shards merge
    with StoreWriter(
        output, SCHEMA, params, None, overwrite=overwrite, groups=group_ids, paths=paths
    ) as writer:
        writer.define_columns(
            feature_columns(0, has_labels, kind == "crops", kind == "crops", layers=col_dims)
        )
        todo = [(g, what) for g, what in groups if g not in writer.done_groups]
        if writer.resumed:
            log.info("resuming: %d of %d groups already done", len(groups) - len(todo), len(groups))
        skipped = list(writer.group.attrs.get("skipped", []))

        def columns(ids: list[str], feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = {"id": np.array(ids, dtype=str).reshape(-1)}
            out |= {f"features_{n}": feats[stages[n]].reshape(len(ids), col_dims[n]) for n in names}
            if has_labels:
                out["label"] = np.array([labels_of.get(i, "") for i in ids], dtype=str).reshape(-1)
            return out

        if kind == "crops":
            # the next group is read and the last one written while the model runs
            gids = [g for g, _ in todo]
            with WriteBehind(writer) as sink, closing(read_ahead(store.read_group, gids)) as data:
                for gid, group in track(
                    zip(gids, data, strict=True), "embedding", total=len(todo), unit="videos"
                ):
                    ids = list(crop_ids(group["track_id"], group["frame"]))
                    feats = embed_images(net, group["image"], canon, batch_size, size, pool)
                    cols = columns(ids, feats)
                    cols["track_id"] = np.asarray(group["track_id"]).astype(object).astype(str)
                    cols["video_id"] = np.asarray(group["video_id"]).astype(object).astype(str)
                    sink.append_group(gid, **cols)
                    rows += len(ids)
        elif kind in ("images", "image-folder"):
            loaded = parallel_map(load_images, [(what, eff_size) for _, what in todo], workers)
            with WriteBehind(writer) as sink:
                for (gid, _), (ids, images, bad) in track(
                    zip(todo, loaded, strict=True), "embedding", total=len(todo), unit="groups"
                ):
                    feats = embed_images(net, images, canon, batch_size, None, pool)
                    sink.append_group(gid, **columns(ids, feats))
                    skipped.extend(bad)
                    sink.call(writer.set_attrs, skipped=list(skipped))
                    rows += len(ids)
        else:
            tasks = [
                (v.path, net.kind, eff_size, frames_per_video, clips, frames, frame_stride)
                for _, v in todo
            ]
            loaded = parallel_map(video_inputs_task, tasks, workers)
            for (gid, _), inputs in track(
                zip(todo, loaded, strict=True), "embedding", total=len(todo), unit="videos"
            ):
                feats = embed_video_inputs(net, inputs, canon, batch_size, pool)
                writer.append_group(gid, **columns([gid], {k: v[None] for k, v in feats.items()}))
                rows += 1
        writer.set_attrs(
            layers=names,
            default_layer=default_layer,
            layer_dims=col_dims,
            layer_stages=stages,
            model=record_path(model),  # as params records it
            arch=net.arch,
            checkpoint_epoch=net.epoch,
            run_epochs=net.planned_epochs,
            pool=pool,
            size=eff_size,
            skipped=skipped,
        )
    if skipped:
        log.warning(
            "%d unreadable images skipped (listed in the store's attrs 'skipped')", len(skipped)
        )
    typer.echo(
        json.dumps(
            {
                "output": str(output),
                "schema": SCHEMA,
                "model": model,
                "arch": net.arch,
                "checkpoint_epoch": net.epoch,
                "input_kind": kind,
                "rows_written": rows,
                "groups": len(groups),
                "layers": col_dims,
                "default_layer": default_layer,
                "skipped": len(skipped),
            }
        )
    )


EXAMPLES = [
    (
        "Every ResNet stage (Goyal pooling) and the pooled output of crops, for probes:",
        "vcl embed runs/odct crops.zarr -o f.zarr --layers stage1,stage2,stage3,stage4,stage5,pool",
    ),
    (
        "The Random baseline on an images manifest (ids and labels from the manifest):",
        "vcl embed random:resnet50 voc07.jsonl -o voc_random.zarr --layers stage5",
    ),
    (
        "An ImageNet-supervised ResNet-50 you have, on a folder of jpg files:",
        "vcl embed weights:resnet50:resnet50-imagenet.pth images/ -o sup.zarr --layers pool",
    ),
    (
        "A video network on videos: 10 clips of 16 frames averaged (SLIC's protocol):",
        "vcl embed runs/slic videos.jsonl -o videos.zarr --clips 10 --frames 16",
    ),
    (
        "An image network on videos: 8 frames per video averaged, on the GPU:",
        "vcl embed random:resnet18 videos.jsonl -o v.zarr --frames-per-video 8 --device cuda",
    ),
]
