"""vcl pretrain: train a backbone with a clustering objective (ODCT, ODC, ODC-TrackInit)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from vcl.cli.common import Device, Overwrite, Seed, parse_number_list, vcl_command
from vcl.pretrain import METHODS


@vcl_command
def run(
    ctx: typer.Context,
    input: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT...",
            help="Training data (several inputs of one schema, e.g. the shards of a "
            "--shard I/N run, are read as their merge): "
            "a crops store (vcl crops) for odct, odc, odc-trackinit; "
            "videos (a manifest, -, a video file or a folder) for video-ir, video-la, "
            "video-la-idt and slic; a pairs store (vcl crops --pairs) for triplet; crops of "
            "moving objects for moving-clusters (with --videos).",
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
    lr_steps: Annotated[
        str,
        typer.Option(
            "--lr-steps",
            metavar="EPOCH,...",
            help="Multiply the learning rate by --lr-gamma after each of these epochs "
            "(the papers' step schedule, e.g. 160,190 of 200; default: constant).",
        ),
    ] = "",
    lr_gamma: Annotated[
        float, typer.Option("--lr-gamma", min=0.0, help="Factor of each --lr-steps step.")
    ] = 0.1,
    momentum: Annotated[float, typer.Option("--momentum", min=0.0, help="SGD momentum.")] = 0.5,
    weight_decay: Annotated[
        float,
        typer.Option(
            "--weight-decay",
            min=0.0,
            help="SGD weight decay (ODC's 1e-5; by default 1e-4 for video-ir/video-la/"
            "video-la-idt, 0 for slic, 5e-4 for triplet, as their reference code).",
        ),
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
    frames: Annotated[
        int, typer.Option("--frames", min=1, help="Video methods: frames per clip (8/16/32/64).")
    ] = 16,
    frame_stride: Annotated[
        int,
        typer.Option(
            "--frame-stride",
            min=1,
            help="Video methods: take every s-th frame, so a clip spans (frames − 1)·s + 1 "
            "frames (1: consecutive frames, as the papers).",
        ),
    ] = 1,
    prior: Annotated[
        str | None,
        typer.Option(
            "--prior",
            metavar="FEATURES",
            help="video-la-idt: features store (vcl fisher) of the videos, joined by id.",
        ),
    ] = None,
    cluster_every: Annotated[
        int,
        typer.Option(
            "--cluster-every", min=1, help="Video methods: epochs between re-clusterings."
        ),
    ] = 1,
    runs: Annotated[
        int, typer.Option("--runs", min=1, help="video-la: k-means clusterings per update (m).")
    ] = 3,
    background: Annotated[
        int,
        typer.Option(
            "--background", min=1, help="video-la: background neighbours |B_i| per video."
        ),
    ] = 4096,
    joint_epochs: Annotated[
        int,
        typer.Option(
            "--joint-epochs",
            min=0,
            help="video-la-idt: last epochs re-clustered on [embedding ‖ prior].",
        ),
    ] = 0,
    keep_going: Annotated[
        bool,
        typer.Option("--keep-going", help="Video methods: skip undecodable videos with a warning."),
    ] = False,
    colour: Annotated[
        bool,
        typer.Option(
            "--colour/--no-colour",
            help="video-ir, video-la, video-la-idt, slic: the reference code's per-clip colour "
            "augmentation (grayscale p 0.2 and colour jitter 0.4; slic: jitter 0.5 at p 0.8, "
            "grayscale p 0.2, blur p 0.2; slic's flow views too).",
        ),
    ] = True,
    frames_store: Annotated[
        str | None,
        typer.Option(
            "--frames-store",
            metavar="FRAMES.zarr",
            help="Video methods: read clips from this pre-decoded frames store (written "
            "first when absent) instead of decoding the videos every epoch.",
        ),
    ] = None,
    p_same: Annotated[
        float,
        typer.Option(
            "--p-same",
            min=0.0,
            max=1.0,
            help="slic: probability p_α that the positive is a clip of the anchor's own video "
            "(else another video of its cluster).",
        ),
    ] = 0.2,
    triplet_margin: Annotated[
        float,
        typer.Option("--triplet-margin", min=0.0, help="slic: margin m1 of the triplet loss."),
    ] = 0.2,
    temporal_margin: Annotated[
        float,
        typer.Option("--temporal-margin", min=0.0, help="slic: margin m2 of the temporal loss."),
    ] = 0.04,
    temporal_weight: Annotated[
        float,
        typer.Option("--temporal-weight", min=0.0, help="slic: weight of the temporal loss."),
    ] = 1.0,
    warmup_epochs: Annotated[
        int,
        typer.Option(
            "--warmup-epochs",
            min=0,
            help="slic: epochs before the first clustering (each video is its own cluster).",
        ),
    ] = 0,
    finch_level: Annotated[
        int,
        typer.Option(
            "--finch-level", min=0, help="slic: FINCH partition used as pseudo-labels (0 finest)."
        ),
    ] = 0,
    flow_prob: Annotated[
        float,
        typer.Option(
            "--flow-prob",
            min=0.0,
            max=1.0,
            help="slic: probability that the positive (and aug(x)) is shown as optical flow.",
        ),
    ] = 0.25,
    flow: Annotated[
        str,
        typer.Option(
            "--flow", help="slic: optical flow of the flow view: dis (fast) or tvl1 (slow)."
        ),
    ] = "dis",
    clustering: Annotated[
        bool,
        typer.Option(
            "--clustering/--no-clustering",
            help="slic: re-cluster with FINCH (off: every video stays its own cluster).",
        ),
    ] = True,
    temporal: Annotated[
        bool,
        typer.Option(
            "--temporal/--no-temporal", help="slic: add the temporal discrimination loss."
        ),
    ] = True,
    margin: Annotated[
        float,
        typer.Option("--margin", min=0.0, help="triplet: margin M of the ranking loss."),
    ] = 0.5,
    random_neg_epochs: Annotated[
        int,
        typer.Option(
            "--random-neg-epochs",
            min=0,
            help="triplet: epochs with random negatives before hard-negative mining.",
        ),
    ] = 10,
    hard_k: Annotated[
        int,
        typer.Option("--hard-k", min=1, help="triplet: negatives per pair (the K hardest)."),
    ] = 4,
    videos: Annotated[
        list[str] | None,
        typer.Option(
            "--videos",
            help="moving-clusters: videos manifest (or video paths) the crops were cut from; "
            "background crops are sampled there (repeatable).",
        ),
    ] = None,
    l2_weight: Annotated[
        float,
        typer.Option("--l2-weight", min=0.0, help="moving-clusters: α, weight of L_2."),
    ] = 0.01,
    balance_weight: Annotated[
        float,
        typer.Option(
            "--balance-weight", min=0.0, help="moving-clusters: β, weight of the balance loss L_c."
        ),
    ] = 1.0,
    disc_weight: Annotated[
        float,
        typer.Option(
            "--disc-weight",
            min=0.0,
            help="moving-clusters: γ, weight of the object-vs-background loss.",
        ),
    ] = 1.0,
    assign_temperature: Annotated[
        float,
        typer.Option(
            "--assign-temperature",
            min=0.0,
            help="moving-clusters: τ of the soft assignment to the memory units, in units of "
            "the spread σ_i of each crop's distances to them.",
        ),
    ] = 0.5,
    refine_iters: Annotated[
        int,
        typer.Option(
            "--refine-iters",
            min=0,
            help="moving-clusters: spherical Lloyd iterations refining the memory units on all "
            "object crops' embeddings after each epoch (0: the units move by gradient only).",
        ),
    ] = 20,
    refine_restarts: Annotated[
        int,
        typer.Option(
            "--refine-restarts",
            min=0,
            help="moving-clusters: seeded k-means++ restarts besides the learned units when "
            "refining them after each epoch; the fit of lowest inertia is kept, matched to "
            "the old units (0: Lloyd from the learned units only).",
        ),
    ] = 4,
    kappa_target: Annotated[
        str,
        typer.Option(
            "--kappa-target",
            help="moving-clusters: the unit L_κ pulls each object crop to: 'assigned', the "
            "unit its clean crop was assigned after the last epoch (every augmented view of "
            "a crop to the same unit), or 'soft', the batch's soft assignment of the view.",
        ),
    ] = "assigned",
    cluster_dim: Annotated[
        int,
        typer.Option(
            "--cluster-dim", min=1, help="moving-clusters: size of the embedding and the units."
        ),
    ] = 128,
    background_ratio: Annotated[
        float,
        typer.Option(
            "--background-ratio",
            min=0.0,
            help="moving-clusters: background crops sampled, and per batch, per object crop.",
        ),
    ] = 1.0,
    bg_margin: Annotated[
        float,
        typer.Option(
            "--bg-margin",
            min=0.0,
            help="moving-clusters: background crops keep this fraction of an object's side "
            "away from it.",
        ),
    ] = 0.1,
    device: Device = "auto",
    seed: Seed = 0,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=0,
            show_default=False,
            help="DataLoader worker processes that read and augment batches beside the "
            "training process; 0 loads them in the training process itself (unlike the "
            "other commands' --workers, where 0 means one process per core). Default: 4, "
            "but at most one per available CPU core.",
        ),
    ] = None,
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
    video-ir, video-la, video-la-idt (on videos; Tokmakov et al.): a 3D CNN with a
    128-d embedding and a memory bank of every video, trained by instance recognition
    (NCE), local aggregation on k-means clusters of the bank, or local aggregation on
    k-means clusters of an IDT Fisher-vector prior (--prior).
    slic (on videos): SLIC (Hosseini Khorasgani et al. 2022), cosine triplets whose
    positives come from FINCH clusters of the videos, a temporal discrimination loss
    and an optical-flow view.
    triplet (on pairs): Wang & Gupta 2015, a Siamese-triplet network (FC 4096 → 1024
    head), ranking loss max(0, D(X, X⁺) − D(X, X⁻) + M) with D = 1 − cos, negatives
    from other videos, random then the --hard-k hardest of the batch (weight decay 5e-4,
    batch 100 pairs by default). moving-clusters (on crops of moving objects, with
    --videos for background crops): after Hickson et al. (US patent 10,635,979), an
    object-vs-background discriminator and k memory units trained with L_κ + α·L_2 +
    β·L_c (--k 10 and --crop-scale 0.5 by default); writes RUN_DIR/clusters.zarr (vcl
    cluster eval).
    Writes RUN_DIR/config.json, checkpoint.pt (every
    epoch; its "backbone" entry is what vcl embed reads), metrics.jsonl (loss, change
    ratio, intra-track entropy, cluster sizes, samples/s) and labels_epoch_N.npy.
    Several GPUs: torchrun --nproc_per_node G -m vcl pretrain ... (--batch-size is the
    global batch).
    """
    from vcl.backbones import load_run_config
    from vcl.errors import UsageError
    from vcl.io.union import input_label
    from vcl.parallel import available_cpus
    from vcl.pretrain import method_class
    from vcl.pretrain.loop import TrainConfig, default_workers, train

    if resume is not None and output is not None and Path(output) != Path(resume):
        raise UsageError("--resume continues a run in place; leave out -o or give the same dir")
    out = resume if resume is not None else output
    if out is None:
        raise UsageError("missing the run directory", None, "give -o RUN_DIR")
    from vcl.io.store import refuse_stdout

    refuse_stdout(out, "the output is a run directory")
    opts = {name: value for name, value in locals().items() if name in ctx.params}
    for name, value in getattr(method_class(opts["method"]), "defaults", {}).items():
        source = ctx.get_parameter_source(name)  # the method's own defaults (video: r3d_18)
        if name in opts and source is not None and source.name == "DEFAULT":
            opts[name] = value
    if resume is not None and (resume / "config.json").exists():
        # Options left at their defaults take the run's values; given ones must match it.
        previous = load_run_config(resume)  # damaged or of another schema: one line
        for name in opts:
            source = ctx.get_parameter_source(name)
            if source is not None and source.name == "DEFAULT" and name in previous:
                opts[name] = previous[name]
        source = ctx.get_parameter_source("workers")
        if source is not None and source.name == "DEFAULT" and opts["workers"]:
            opts["workers"] = min(opts["workers"], available_cpus())  # resumed on fewer cores
    if opts["workers"] is None:
        opts["workers"] = default_workers()
    if isinstance(opts["lr_steps"], str):  # a run's config.json holds the parsed list
        steps = opts["lr_steps"]
        opts["lr_steps"] = (
            sorted(set(parse_number_list(steps, "--lr-steps", int, 1, example="160,190")))
            if steps.strip()
            else []
        )
    cls = method_class(opts["method"])
    options = cls.options_type(
        **{name: opts[name] for name in cls.options_type.__dataclass_fields__ if name in opts}
    )
    common = {name: opts[name] for name in TrainConfig.__dataclass_fields__ if name in opts}
    common.update(input=input_label(input), output=str(out), options=options)
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
    (
        "Video IR on videos (r3d_18, 16×112² clips, NCE with 4,096 negatives):",
        "vcl pretrain videos.jsonl --method video-ir --epochs 40 -o runs/ir",
    ),
    (
        "Video LA from that IR run, then LA on clusters of an IDT Fisher-vector prior:",
        "vcl pretrain videos.jsonl --method video-la --init runs/ir -o runs/la && "
        "vcl pretrain videos.jsonl --method video-la-idt --prior fisher.zarr "
        "--joint-epochs 10 --init runs/ir -o runs/la-idt",
    ),
    (
        "SLIC with the authors' UCF101 settings (r3d_18, 16×128² clips, FINCH every 5 "
        "epochs, lr 0.1, no weight decay):",
        "vcl pretrain videos.jsonl --method slic --batch-size 32 --epochs 600 -o runs/slic",
    ),
    (
        "Wang & Gupta's tracking triplets (AlexNet, KCF pairs, hard negatives after 10 epochs):",
        "vcl track videos.jsonl --method kcf -o pairs.jsonl && vcl crops pairs.jsonl "
        "--videos videos.jsonl --pairs -o pairs.zarr && vcl pretrain pairs.zarr "
        "--method triplet --arch alexnet -o runs/triplet",
    ),
    (
        "Moving-object clustering into 20 clusters; then score them against labels:",
        "vcl pretrain crops.zarr --method moving-clusters --videos videos.jsonl --k 20 "
        "-o runs/moving && vcl cluster eval runs/moving/clusters.zarr --labels labels.jsonl",
    ),
]
