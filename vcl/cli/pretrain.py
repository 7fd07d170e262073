"""vcl pretrain: train a backbone with a clustering objective (ODCT, ODC, ODC-TrackInit)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from vcl.cli.common import Device, Overwrite, Seed, vcl_command
from vcl.pretrain import METHODS


@vcl_command
def run(
    ctx: typer.Context,
    input: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="Training data: a crops store (vcl crops) for odct, odc, odc-trackinit.",
            show_default=False,
        ),
    ],
    method: Annotated[
        str, typer.Option("--method", help=f"Training method: {', '.join(METHODS)}.")
    ] = "odct",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Run directory to write (may be left out with --resume)."
        ),
    ] = None,
    arch: Annotated[
        str,
        typer.Option("--arch", help="Backbone from the registry (resnet18, resnet50, ...)."),
    ] = "resnet50",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs to train in all.")] = 100,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=2, help="Samples per iteration (global, all GPUs)."),
    ] = 128,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="SGD learning rate.")] = 0.015,
    momentum: Annotated[float, typer.Option("--momentum", min=0.0, help="SGD momentum.")] = 0.5,
    weight_decay: Annotated[
        float, typer.Option("--weight-decay", min=0.0, help="SGD weight decay (ODC's).")
    ] = 1e-5,
    size: Annotated[
        int, typer.Option("--size", min=8, help="Input side in pixels after augmentation.")
    ] = 224,
    k: Annotated[int, typer.Option("--k", min=1, help="Number of clusters (pseudo-labels).")] = 300,
    memory_momentum: Annotated[
        float,
        typer.Option(
            "--memory-momentum",
            "-m",
            min=0.0,
            max=1.0,
            help="m: weight of the new feature in the Samples Memory update (ODC's 0.5).",
        ),
    ] = 0.5,
    centroid_interval: Annotated[
        int,
        typer.Option("--centroid-interval", min=1, help="Iterations between centroid updates."),
    ] = 10,
    min_cluster: Annotated[
        int,
        typer.Option(
            "--min-cluster", min=1, help="Clusters smaller than this are emptied and refilled."
        ),
    ] = 20,
    crop_scale: Annotated[
        float,
        typer.Option(
            "--crop-scale",
            min=0.01,
            max=1.0,
            help="Smallest random-crop area, as a fraction of the crop.",
        ),
    ] = 0.08,
    device: Device = "auto",
    seed: Seed = 0,
    workers: Annotated[
        int, typer.Option("--workers", min=0, help="Data loader worker processes.")
    ] = 4,
    amp: Annotated[
        str,
        typer.Option(
            "--amp", help="Mixed precision on CUDA: auto (bf16, else fp16), bf16, fp16 or off."
        ),
    ] = "auto",
    compile: Annotated[
        bool, typer.Option("--compile", help="Compile the network with torch.compile.")
    ] = False,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", metavar="RUN_DIR", help="Continue this run from its checkpoint."),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init", metavar="RUN_DIR", help="Start from the backbone weights of another run."
        ),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Pretrain a backbone with online deep clustering on track crops.

    odc: ODC (Zhan et al. 2020); odc-trackinit: ODC whose initial k-means runs on one
    random crop per track, labels spread to the track; odct: ODCT (Alfani et al.),
    which also updates each sample's memory feature with its track's members (eq. 1).
    Writes RUN_DIR/config.json, checkpoint.pt (every epoch; its "backbone" entry is
    what vcl embed reads), metrics.jsonl (loss, change ratio, intra-track entropy,
    cluster sizes, samples/s) and labels_epoch_N.npy. Several GPUs: torchrun
    --nproc_per_node G -m vcl pretrain ... (--batch-size is the global batch).
    """
    from vcl.errors import UsageError
    from vcl.pretrain import method_class
    from vcl.pretrain.loop import TrainConfig, train

    if resume is not None and output is not None and Path(output) != Path(resume):
        raise UsageError("--resume continues a run in place; leave out -o or give the same dir")
    out = resume if resume is not None else output
    if out is None:
        raise UsageError("missing the run directory", None, "give -o RUN_DIR")
    opts = {name: value for name, value in locals().items() if name in ctx.params}
    if resume is not None and (resume / "config.json").exists():
        # Options left at their defaults take the run's values; given ones must match it.
        previous = json.loads((resume / "config.json").read_text())
        for name in opts:
            source = ctx.get_parameter_source(name)
            if source is not None and source.name == "DEFAULT" and name in previous:
                opts[name] = previous[name]
    cls = method_class(opts["method"])
    options = cls.options_type(
        **{name: opts[name] for name in cls.options_type.__dataclass_fields__ if name in opts}
    )
    common = {name: opts[name] for name in TrainConfig.__dataclass_fields__ if name in opts}
    common.update(input=str(input), output=str(out), options=options)
    if common["init"] is not None:
        common["init"] = str(common["init"])
    command = shlex.join(["vcl", *sys.argv[1:]])
    train(TrainConfig(**common), command=command, resume=resume is not None, overwrite=overwrite)


EXAMPLES = [
    (
        "ODCT as in the paper (ResNet-50, 224 px, K = 300, 100 epochs):",
        "vcl pretrain crops.zarr --method odct -o runs/odct",
    ),
    (
        "A small ODC baseline on the CPU:",
        "vcl pretrain crops.zarr --method odc --arch resnet18 --size 64 --k 30 "
        "--epochs 5 --device cpu -o runs/odc",
    ),
    (
        "Train ODCT on 4 GPUs of one machine:",
        "torchrun --nproc_per_node 4 -m vcl pretrain crops.zarr --method odct -o runs/odct",
    ),
    ("Continue an interrupted run:", "vcl pretrain crops.zarr --method odct --resume runs/odct"),
]
