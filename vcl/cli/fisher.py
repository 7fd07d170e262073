"""vcl fisher: PCA + GMM Fisher vectors of videos from local descriptors, count-sketched."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vcl.cli.common import Device, Overwrite, Seed, Shard, command_group, vcl_command

app = command_group(
    "Fisher vectors of videos (PCA + GMM + count sketch).\n\n"
    "`vcl fisher fit` learns PCA and a diagonal GMM per descriptor part from a random "
    "sample; `vcl fisher encode` turns every video of a descriptor store into one "
    "vector (a vcl.features/1 store).",
    default=None,
)

Columns = Annotated[
    str | None,
    typer.Option(
        "--columns",
        metavar="A,B,...",
        help="Comma-separated 2-D columns that hold the descriptor parts "
        "(default for vcl.idt stores: traj,hog,hof,mbhx,mbhy; otherwise every 2-D numeric "
        "column).",
    ),
]


def _split(columns: str | None) -> list[str] | None:
    if columns is None:
        return None
    names = [c.strip() for c in columns.split(",") if c.strip()]
    return names or None


@app.command("fit")
@vcl_command
def fit(
    store: Annotated[
        list[Path],
        typer.Argument(
            metavar="STORE...",
            help="Descriptor store ragged by video (e.g. idt.zarr from vcl idt); several "
            "stores (shards of one run) read as their merge.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="Model store to write (vcl.fisher_model/1).", show_default=False
        ),
    ],
    columns: Columns = None,
    parts: Annotated[
        str,
        typer.Option(
            "--parts",
            help="per-type: a PCA + GMM per descriptor column; joint: one over the columns "
            "concatenated (as the official video_cluster code).",
        ),
    ] = "per-type",
    pca_variance: Annotated[
        float,
        typer.Option(
            "--pca-variance", min=1e-6, max=1.0, help="Fraction of the variance PCA keeps."
        ),
    ] = 0.9,
    pca_dim: Annotated[
        int | None,
        typer.Option(
            "--pca-dim", min=1, help="Keep this many PCA dimensions (overrides --pca-variance)."
        ),
    ] = None,
    whiten: Annotated[
        bool, typer.Option("--whiten", help="Scale PCA outputs to unit variance.")
    ] = False,
    k: Annotated[int, typer.Option("--k", min=1, help="GMM components K.")] = 256,
    sample_videos: Annotated[
        int, typer.Option("--sample-videos", min=1, help="Videos sampled to fit PCA and GMM.")
    ] = 3500,
    per_video: Annotated[
        int, typer.Option("--per-video", min=1, help="Descriptors sampled from each video.")
    ] = 500,
    iters: Annotated[int, typer.Option("--iters", min=0, help="Most EM iterations.")] = 100,
    inits: Annotated[
        int,
        typer.Option(
            "--inits", min=1, help="EM runs from k-means inits (seeds seed+i); best kept."
        ),
    ] = 2,
    tol: Annotated[
        float,
        typer.Option(
            "--tol", min=0.0, help="Stop EM when the mean log-likelihood gains less than this."
        ),
    ] = 1e-4,
    var_floor: Annotated[
        float,
        typer.Option(
            "--var-floor", min=0.0, help="Variance floor, as a fraction of the data's variance."
        ),
    ] = 1e-4,
    device: Device = "auto",
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Fit PCA and a diagonal GMM per descriptor part on a random sample of descriptors.

    Samples --per-video descriptors from each of --sample-videos random videos
    (Tokmakov et al.: 3,500 × 500), drops rows with NaN or infinite values, fits PCA
    keeping --pca-variance of the variance, then a K-component diagonal GMM by EM in
    torch (k-means init by faiss, --inits runs, best log-likelihood kept; the
    log-likelihood of every iteration is stored, and printed with -v). Also draws the seeded
    count-sketch hashes and signs that `vcl fisher encode` uses.
    """
    from vcl.console import log
    from vcl.errors import DataError, UsageError
    from vcl.fisher.data import DescriptorStore
    from vcl.fisher.model import PART_MODES, FisherModel
    from vcl.io.store import check_output, partial_path
    from vcl.io.union import input_label
    from vcl.seed import seed_everything

    if parts not in PART_MODES:
        raise UsageError(f"unknown --parts {parts!r}", None, "use per-type or joint")
    check_output(output, overwrite, "the model is a zarr store")  # before the fit, not after
    seed_everything(seed)
    source = DescriptorStore(store, _split(columns))
    torch_device = _fisher_device(device)
    sample, dropped = source.sample(sample_videos, per_video, seed)
    n = len(next(iter(sample.values())))
    log.info(
        "sampled %d descriptors from %d videos of %s (columns %s)",
        n,
        min(sample_videos, int((source.lengths > 0).sum())),
        source.path,
        ",".join(source.columns),
    )
    if n < max(k, 2):
        raise DataError(
            f"only {n} finite descriptors sampled, too few for K = {k} components",
            source.path,
            "lower --k or raise --sample-videos / --per-video",
        )
    model = FisherModel(
        columns=source.columns,
        parts=parts,
        pca_variance=pca_variance,
        pca_dim=pca_dim,
        whiten=whiten,
        k=k,
        n_iter=iters,
        n_init=inits,
        tol=tol,
        var_floor=var_floor,
        device=torch_device,
        seed=seed,
    )
    if pca_dim is not None:
        too_big = [c for c in model._layout() if pca_dim > _part_dim(model, source, c)]
        if too_big:
            raise UsageError(f"--pca-dim {pca_dim} exceeds the dimension of part {too_big[0]}")
    model.fit(sample)
    params = {
        "store": input_label(store),
        "columns": source.columns,
        "parts": parts,
        "pca_variance": pca_variance,
        "pca_dim": pca_dim,
        "whiten": whiten,
        "k": k,
        "sample_videos": sample_videos,
        "per_video": per_video,
        "iters": iters,
        "inits": inits,
        "tol": tol,
        "var_floor": var_floor,
        "device": str(torch_device),
        "sampled_descriptors": n,
        "dropped_nonfinite": dropped,
    }
    if partial_path(output).exists():  # a model is written in one go: nothing to resume
        import shutil

        shutil.rmtree(partial_path(output))
    model.save(output, params, seed, overwrite=overwrite)
    for part in model.part_names_:
        gmm = model.gmms_[part]
        log.info(
            "%s: %d dims, K = %d, mean log-likelihood %.4f after %d iterations%s",
            part,
            model.pcas_[part].n_components_,
            k,
            gmm.lower_bound_,
            gmm.n_iter_,
            "" if gmm.converged_ else " (not converged: raise --iters)",
        )
    log.info("wrote %s", output)


def _fisher_device(spec: str) -> Any:
    """resolve_device, refusing mps: EM and encoding accumulate in float64, which it lacks."""
    from vcl.device import resolve_device
    from vcl.errors import DeviceUnavailableError

    device = resolve_device(spec)
    if device.type == "mps":
        raise DeviceUnavailableError(
            "vcl fisher accumulates in float64, which mps does not support",
            None,
            "use --device cpu or cuda",
        )
    return device


def _part_dim(model: Any, source: Any, part: str) -> int:
    return sum(source.dims[c] for c in model._layout()[part])


@app.command("encode")
@vcl_command
def encode(
    store: Annotated[
        list[Path],
        typer.Argument(
            metavar="STORE...",
            help="Descriptor store ragged by video, with the columns the model was fit on; "
            "several stores (shards of one run) read as their merge.",
            show_default=False,
        ),
    ],
    model_path: Annotated[
        Path,
        typer.Option("--model", help="Model store from vcl fisher fit.", show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="Features store to write (vcl.features/1).", show_default=False
        ),
    ],
    variant: Annotated[
        str,
        typer.Option(
            "--variant",
            help="improved (Perronnin 2010, 2KD), vc (the official video_cluster code, 2KD, "
            "no Fisher-information normalisation) or skimage (2KD+K, as "
            "skimage.feature.fisher_vector); all power (0.5) + L2 normalised.",
        ),
    ] = "improved",
    sketch_dim: Annotated[
        int,
        typer.Option(
            "--sketch-dim", min=0, help="Count-sketch dimension (0: keep the full vector)."
        ),
    ] = 2000,
    videos: Annotated[
        Path | None,
        typer.Option(
            "--videos",
            metavar="MANIFEST",
            help="Videos manifest (.jsonl) whose labels are carried over by video id.",
        ),
    ] = None,
    batch_rows: Annotated[
        int,
        typer.Option("--batch-rows", min=1, help="Descriptors encoded together (memory vs speed)."),
    ] = 1 << 17,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="Arithmetic of the posteriors and statistics: float32 (fast), or float64 "
            "for a GMM with tiny variances (float32 then errs by up to ~1e-3 relative).",
        ),
    ] = "float32",
    device: Device = "auto",
    shard: Shard = None,
    overwrite: Overwrite = False,
) -> None:
    """Encode every video of a descriptor store as one Fisher vector.

    Per part (in the model's order): PCA, Fisher vector of the video's descriptors
    averaged over them, power and L2 normalisation; the parts are concatenated
    (scaled by 1/√parts) and count-sketched to --sketch-dim. Writes one row per
    video: id, features, video_id, n_descriptors (0 flags a video without
    descriptors, which gets a zero vector) and label with --videos. Resumable.
    """
    import numpy as np

    from vcl.console import log, track
    from vcl.errors import DataError, UsageError, first_ids
    from vcl.fisher.data import DescriptorStore
    from vcl.fisher.encode import VARIANTS
    from vcl.fisher.model import PRECISIONS, FisherModel
    from vcl.io.features import SCHEMA, feature_columns
    from vcl.io.manifest import VideoRecord, read_records
    from vcl.io.store import StoreWriter, check_output
    from vcl.io.union import input_label

    if variant not in VARIANTS:
        raise UsageError(f"unknown --variant {variant!r}", None, f"use {', '.join(VARIANTS)}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown --precision {precision!r}", None, "use float32 or float64")
    check_output(output, overwrite, f"the output is a zarr store ({SCHEMA})")  # before the work
    torch_device = _fisher_device(device)
    model = FisherModel.load(model_path, device=torch_device, dtype=precision)
    columns = [c for p in model.part_names_ for c in model.part_columns_[p]]
    try:
        source = DescriptorStore(store, columns)
    except DataError as exc:  # a column the model needs is missing: a model/store mismatch
        if "has no column" not in exc.problem:
            raise
        raise DataError(
            f"model {model_path} needs columns {','.join(columns)}, but store {exc.path} "
            f"{exc.problem.split(' (')[0]}",
            exc.path,
            "encode with a model fit on this kind of descriptors",
        ) from None
    model.check_dims(source.dims, model_path, source.path)
    labels: dict[str, str] | None = None
    if videos is not None:
        labels = {r.id: r.label or "" for r in read_records(videos, VideoRecord)}
        unknown = [str(v) for v in source.video_ids if v not in labels]
        if unknown and len(unknown) == len(source.video_ids):
            raise DataError(
                f"none of its {len(labels)} video ids ({first_ids(list(labels))}) matches the "
                f"{len(unknown)} of {source.path} ({first_ids(unknown)})",
                videos,
                "pass the manifest the descriptors were extracted from",
            )
        if unknown:
            log.warning(
                "%d videos of %s are not in %s (%s): label left empty",
                len(unknown), source.path, videos, first_ids(unknown),
            )  # fmt: skip
    params = {
        "store": input_label(store),
        "model": str(model_path),
        # the model's content: a partial made with a refit model is not resumed
        "model_sha256": model.fingerprint_,
        "variant": variant,
        "sketch_dim": sketch_dim,
        "precision": precision,
        "columns": columns,
        "videos": None if videos is None else str(videos),
        "shard": shard,
    }
    from vcl.cli.common import parse_shard_option
    from vcl.parallel import select_shard

    video_ids = select_shard(source.video_ids, parse_shard_option(shard), key=str)
    dim = model.output_dim(variant, sketch_dim)
    from vcl.io.space import check_free_space, feature_bytes

    check_free_space(output, feature_bytes(len(video_ids), dim), "the Fisher vectors")
    spec = feature_columns(dim, labels=labels is not None, videos=True)
    spec["n_descriptors"] = ("int64", ())
    dropped_rows = dropped_videos = 0
    with StoreWriter(
        output,
        SCHEMA,
        params,
        seed=model.seed,
        overwrite=overwrite,
        groups=video_ids,
        paths=("store", "model", "videos"),  # compared by the files they name
    ) as writer:
        writer.define_columns(spec)
        todo = [v for v in video_ids if v not in writer.done_groups]
        if writer.resumed:
            log.info("resuming: %d videos done, %d to go", len(writer.done_groups), len(todo))
        batches = source.batches(todo, max_rows=batch_rows)
        for batch in track(batches, "encoding batches of videos", unit="batches"):
            vectors = model.transform([v for _, v, _ in batch], variant, sketch_dim)
            for (vid, video, dropped), vector in zip(batch, vectors, strict=True):
                n = len(next(iter(video.values())))
                if dropped:
                    dropped_rows += dropped
                    dropped_videos += 1
                if n == 0:
                    log.warning("video %r has no descriptors: zero vector, flagged", vid)
                row = {
                    "id": np.array([vid]),
                    "features": vector[None],
                    "video_id": np.array([vid]),
                    "n_descriptors": np.array([n]),
                }
                if labels is not None:
                    row["label"] = np.array([labels.get(vid, "")])
                writer.append_group(vid, **row)
        if dropped_rows:
            log.warning(
                "dropped %d descriptors with NaN or infinite values in %d videos",
                dropped_rows,
                dropped_videos,
            )
        writer.flush()
        counts = writer.group["n_descriptors"][:]
        ids = [str(i) for i in writer.group["id"][:]]
        empty = [i for i, c in zip(ids, counts, strict=True) if c == 0]
        writer.set_attrs(
            empty_videos=empty,
            dim=dim,
            parts=model.part_names_,
            part_columns=model.part_columns_,
            model_created=model.created_,
        )
    log.info("wrote %d video vectors of %d dims to %s", len(ids), dim, output)


EXAMPLES = [
    (
        "Fit per-descriptor PCA + GMM (K = 256) on 3,500 videos × 500 trajectories:",
        "vcl fisher fit idt.zarr -o fisher-model.zarr",
    ),
    (
        "Encode every video, count-sketched to 2,000 dims, with labels from a manifest:",
        "vcl fisher encode idt.zarr --model fisher-model.zarr -o fisher.zarr --videos videos.jsonl",
    ),
    (
        "Fit and encode the shards of a sharded vcl idt run as one store (no merge needed):",
        "vcl fisher fit idt.0.zarr idt.1.zarr -o m.zarr && "
        "vcl fisher encode idt.0.zarr idt.1.zarr --model m.zarr -o fisher.zarr",
    ),
    (
        "Reproduce the official video_cluster vectors (one joint PCA, no normalisation):",
        "vcl fisher fit idt.zarr -o vc-model.zarr --parts joint --inits 2 --iters 200 && "
        "vcl fisher encode idt.zarr --model vc-model.zarr -o vc.zarr --variant vc",
    ),
]
