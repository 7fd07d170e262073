"""vcl cluster: k-means, FINCH and track-constrained k-means of features, and their metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vcl.cli.common import (
    Device,
    Features,
    Layer,
    Overwrite,
    Seed,
    command_group,
    report_json,
    vcl_command,
)

app = command_group(
    "Cluster features: k-means, FINCH or track k-means.\n\n"
    "`vcl cluster FEATURES -o clusters.zarr` runs the clustering (the `run` subcommand, "
    "which may be left out: see `vcl cluster run --help`); `vcl cluster eval CLUSTERS "
    "--labels FILE` reports NMI, AMI, ARI, purity, intra-track / intra-class entropy, "
    "cluster sizes and change ratios. Both take --quiet, --verbose and --config FILE.toml."
)


@app.command("run")
@vcl_command
def run(
    features: Features,
    layer: Layer = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="The vcl.clusters store to write (with --jsonl: a JSONL file; default stdout).",
        ),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="kmeans; finch (parameter-free, hierarchical); track-kmeans (one random "
            "sample per track, labels spread to the track: ODC-TrackInit).",
        ),
    ] = "kmeans",
    k: Annotated[
        int | None,
        typer.Option("--k", min=1, help="Number of clusters (kmeans, track-kmeans)."),
    ] = None,
    runs: Annotated[
        int,
        typer.Option("--runs", min=1, help="Independent k-means runs, seeds seed, seed+1, ..."),
    ] = 1,
    iters: Annotated[int, typer.Option("--iters", min=1, help="k-means (Lloyd) iterations.")] = 20,
    spherical: Annotated[
        bool,
        typer.Option(
            "--spherical", help="Cosine k-means: L2-normalise rows and centroids every iteration."
        ),
    ] = False,
    pca: Annotated[
        int | None,
        typer.Option("--pca", metavar="D", min=1, help="Project onto the top D principal axes."),
    ] = None,
    whiten: Annotated[
        bool,
        typer.Option("--whiten", help="Whiten (scale PCA axes to unit variance) before k-means."),
    ] = False,
    init: Annotated[
        str,
        typer.Option(
            "--init",
            help="k-means start: random (k distinct random points, as faiss and the papers) "
            "or kmeans++ (better for small k; costs O(k·N·D)).",
        ),
    ] = "random",
    metric: Annotated[
        str, typer.Option("--metric", help="FINCH neighbour distance: cosine or l2.")
    ] = "cosine",
    level: Annotated[
        int | None,
        typer.Option(
            "--level",
            min=0,
            help="FINCH partition to output (0 = finest; default the last, coarsest).",
        ),
    ] = None,
    n_clusters: Annotated[
        int | None,
        typer.Option(
            "--n-clusters",
            min=1,
            help="FINCH: exactly this many clusters, merged from the partition just above.",
        ),
    ] = None,
    approximate: Annotated[
        bool,
        typer.Option(
            "--approximate",
            help="FINCH: approximate first neighbours (seeded faiss IVF, ~4√N lists, nprobe "
            "raised until a sampled recall reaches 0.995) at levels of ≥ 20,000 points, as "
            "finch-clust does; ~3.5x faster than exact at 100k points, deterministic for "
            "--seed; nprobe and recall go in the summary. Default: exact (so on a GPU).",
        ),
    ] = False,
    ids: Annotated[
        Path | None,
        typer.Option("--ids", metavar="FILE", help="For .npy features: one id per line."),
    ] = None,
    tracks: Annotated[
        Path | None,
        typer.Option(
            "--tracks",
            metavar="FILE",
            help="track-kmeans: JSONL (id, track_id) or a store with a track_id column, "
            "when FEATURES has none.",
        ),
    ] = None,
    jsonl: Annotated[
        bool,
        typer.Option(
            "--jsonl",
            help='Write {"id", "cluster"} lines (to -o or stdout) instead of a store.',
        ),
    ] = False,
    device: Device = "auto",
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Cluster features: k-means, FINCH or track k-means.

    Writes a vcl.clusters/1 store: columns id (str) and assignment (int32, one column
    per run; -1 for rows dropped for NaN/inf values); arrays centroids (runs×k×D),
    sizes (runs×k), and for FINCH levels (N×L, the whole hierarchy) and
    level_clusters (L). Its params name the features' layer read (--layer, else the
    store's default; null for an .npy array). Prints a JSON summary on stdout (on
    stderr with --jsonl to stdout). k-means runs on a faiss GPU when one is visible
    and --device allows.
    """
    import os

    # faiss's OpenMP threads spin while waiting; on a shared, busy machine that made
    # k-means 8x slower here. Passive waiting costs little otherwise (override: set it).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from vcl.cluster import cluster_feature_set, write_clusters, write_clusters_jsonl
    from vcl.cluster_metrics import size_stats
    from vcl.console import log
    from vcl.device import faiss_device
    from vcl.errors import DataError, UsageError, naming
    from vcl.io.features import read_feature_set
    from vcl.io.labels import read_id_field
    from vcl.io.union import input_label

    if method not in ("kmeans", "finch", "track-kmeans"):
        raise UsageError(
            f"unknown method {method!r}", "--method", "use kmeans, finch or track-kmeans"
        )
    if init not in ("random", "kmeans++"):
        raise UsageError(f"unknown init {init!r}", "--init", "use random or kmeans++")
    if metric not in ("cosine", "l2"):
        raise UsageError(f"unknown metric {metric!r}", "--metric", "use cosine or l2")
    if output is None and not jsonl:
        raise UsageError("no output", "-o", "give -o clusters.zarr, or --jsonl for stdout")
    if method != "finch" and k is None:
        raise UsageError(f"--method {method} needs --k")
    if method == "finch" and (k is not None or pca is not None or whiten or spherical):
        raise UsageError("--k, --pca, --whiten and --spherical are for k-means, not finch")
    if method != "finch" and (level is not None or n_clusters is not None or approximate):
        raise UsageError("--level, --n-clusters and --approximate are for finch")
    if output is not None:  # before the work, not after
        from vcl.io.store import check_output

        store = None if jsonl else "without --jsonl the clusters are a zarr store"
        check_output(output, overwrite, store)
    gpu = faiss_device(device)
    fs = read_feature_set(features, ids, layer)
    read = (fs.attrs or {}).get("layer") or None  # the layer read, default or not
    track_ids = fs.track_ids
    if method == "track-kmeans" and tracks is not None:
        import numpy as np

        from vcl.cluster_metrics import join

        t_ids, t_values = read_id_field(tracks, "track_id")
        i, j = join(fs.ids, t_ids)
        track_ids = np.full(len(fs.ids), "", dtype=t_values.dtype)
        track_ids[i] = t_values[j]
        if not (track_ids != "").any():
            raise DataError("none of its ids match the features' ids", tracks)
    if track_ids is not None:
        import numpy as np

        missing = track_ids == ""
        if missing.any():
            log.warning("%d samples have no track id: each is its own track", int(missing.sum()))
            track_ids = np.where(missing, np.char.add("untracked:", fs.ids), track_ids)
    log.info(
        "clustering %d × %d features%s with %s",
        *fs.features.shape,
        f" of layer {read}" if read else "",
        method,
    )
    source = features[0] if len(features) == 1 else ", ".join(map(str, features))
    with naming(source):  # errors deep in the library (k > N, FINCH's levels)
        clustering = cluster_feature_set(
            fs.ids,
            fs.features,
            method,
            k=k,
            runs=runs,
            iters=iters,
            spherical=spherical,
            pca_dim=pca,
            whiten=whiten,
            init=init,
            metric=metric,
            level=level,
            n_clusters=n_clusters,
            neighbours="approximate" if approximate else "exact",
            track_ids=track_ids,
            seed=seed,
            gpu=gpu,
            path=source,
        )
    params = {
        "features": input_label(features),
        "layer": read,
        "method": method,
        "k": k,
        "runs": runs,
        "iters": iters,
        "spherical": spherical,
        "pca": pca,
        "whiten": whiten,
        "init": init,
        "metric": metric,
        "level": level,
        "n_clusters": n_clusters,
        "approximate": approximate,
        "device": "cpu" if gpu is None else f"cuda:{gpu}",
    }
    summary = {
        "output": str(output or "-"),
        "format": "jsonl" if jsonl else "vcl.clusters/1",
        "samples": len(fs.ids),
        "layer": read,
        "dimension": int(fs.features.shape[1]),
        **clustering.attrs,
        "sizes": [
            size_stats(clustering.assignment[:, r][clustering.assignment[:, r] >= 0], len(s))
            for r, s in enumerate(clustering.sizes)
        ],
    }
    streamed = output is None or str(output) == "-"
    if jsonl:
        write_clusters_jsonl("-" if streamed else output, clustering, overwrite)
    else:
        write_clusters(output, clustering, params, seed, overwrite)
    text = report_json(summary)
    if jsonl and streamed:  # stdout carries the records: the summary goes to stderr
        log.info("%s", text)
    else:
        typer.echo(text)


@app.command("eval")
@vcl_command
def evaluate(
    clusters: Annotated[
        Path,
        typer.Argument(
            metavar="CLUSTERS",
            help='A vcl.clusters store, or JSONL lines {"id", "cluster"}.',
            show_default=False,
        ),
    ],
    label_paths: Annotated[
        list[Path] | None,
        typer.Option(
            "--labels",
            metavar="MANIFEST_OR_STORE",
            help="Ground truth: JSONL with id and label on each line (other fields ignored; "
            "no label = unlabelled), or a store with id and label columns (a crops store's "
            "ids are <track_id>@<frame>, as vcl embed names crops). Joined by id. "
            "Repeatable (e.g. shards; an id must not repeat across them).",
        ),
    ] = None,
    track_paths: Annotated[
        list[Path] | None,
        typer.Option(
            "--tracks",
            metavar="FILE",
            help="Track of each sample, for intra-track entropy: JSONL (id, track_id) or a "
            "store with a track_id column (default: the --labels store's, if it has one). "
            "Repeatable like --labels.",
        ),
    ] = None,
    vs: Annotated[
        Path | None,
        typer.Option(
            "--vs",
            metavar="OTHER_CLUSTERS",
            help="Another clustering of the same ids: report the change ratio (fraction of "
            "samples whose cluster id differs, no relabelling).",
        ),
    ] = None,
    run_index: Annotated[
        int, typer.Option("--run", min=0, help="Which run (assignment column) to evaluate.")
    ] = 0,
    vs_run: Annotated[
        int | None,
        typer.Option("--vs-run", min=0, help="Which run of --vs to compare (default: --run)."),
    ] = None,
    level: Annotated[
        int | None,
        typer.Option("--level", min=0, help="Evaluate this FINCH hierarchy level instead."),
    ] = None,
    bits: Annotated[
        bool,
        typer.Option("--bits", help="Entropies in bits (log2) instead of nats (natural log)."),
    ] = False,
) -> None:
    """Evaluate a clustering: NMI, AMI, ARI, purity, entropies, sizes, change ratio.

    Prints one JSON object: NMI, AMI, ARI (as scikit-learn defines them) and purity
    against --labels; ODCT's intra-class and intra-track entropy (mean over classes /
    tracks of the Shannon entropy of their samples over clusters, in nats unless
    --bits; entropy_unit says which); cluster sizes (empty, min, max, mean, Gini); the
    change ratio against --vs. Labels are joined by id; ids without a label are
    counted (unlabelled) and left out of the label metrics.
    """
    import numpy as np

    from vcl.cluster_metrics import evaluate as evaluate_clusters
    from vcl.console import log
    from vcl.io.labels import is_store, read_assignment, read_id_field

    def several(paths: list[Path] | None) -> Path | list[Path] | None:
        return None if not paths else paths[0] if len(paths) == 1 else list(paths)

    def label(paths: Path | list[Path] | None) -> str | list[str] | None:
        return (
            None
            if paths is None
            else [str(p) for p in paths]
            if isinstance(paths, list)
            else str(paths)
        )

    labels, tracks = several(label_paths), several(track_paths)
    ids, assignment, k = read_assignment(clusters, run_index, level)
    label_pairs = read_id_field(labels, "label") if labels is not None else None
    track_source = tracks
    label_list = [] if labels is None else labels if isinstance(labels, list) else [labels]
    if track_source is None and label_list and all(is_store(p) for p in label_list):
        from vcl.io.store import Store

        if all("track_id" in Store(p).columns for p in label_list):
            track_source = labels
    track_pairs = read_id_field(track_source, "track_id") if track_source is not None else None
    other = None
    if vs is not None:
        other_run = run_index if vs_run is None else vs_run
        other_ids, other_assignment, _ = read_assignment(vs, other_run if is_store(vs) else 0)
        other = (other_ids, other_assignment)
    names = {
        "clusters": str(clusters),
        "labels": str(label(labels)),
        "tracks": str(label(track_source)),
        "vs": str(vs),
    }
    report = evaluate_clusters(
        ids,
        assignment,
        k,
        label_pairs,
        track_pairs,
        other,
        base=2.0 if bits else float(np.e),
        names=names,
    )
    if report.get("unlabelled"):
        log.warning("%d clustered ids have no label (left out)", report["unlabelled"])
    if report.get("label_ids_not_clustered"):
        log.warning(
            "%d ids in %s are not in %s", report["label_ids_not_clustered"], labels, clusters
        )
    report = {
        "clusters": str(clusters),
        "run": run_index,
        "level": level,
        "labels": label(labels),
        "tracks_from": label(track_source),
        "vs": None if vs is None else str(vs),
        "vs_run": None if vs is None else (run_index if vs_run is None else vs_run),
        **report,
    }
    typer.echo(report_json(report))


EXAMPLES = [
    (
        "Three k-means clusterings (k = 6000) of Fisher vectors, as Video LA does:",
        "vcl cluster fisher.zarr -o clusters.zarr --k 6000 --runs 3",
    ),
    (
        "FINCH with exactly 50 clusters, one {id, cluster} line per sample:",
        "vcl cluster features.zarr --method finch --n-clusters 50 --jsonl > clusters.jsonl",
    ),
    (
        "FINCH of a million embeddings with approximate (seeded IVF) first neighbours:",
        "vcl cluster embeddings.npy -o clusters.zarr --method finch --approximate",
    ),
    (
        "ODC-TrackInit: k-means on one sample per track, spread to the tracks:",
        "vcl cluster crops_features.zarr -o init.zarr --method track-kmeans --k 1000",
    ),
    (
        "k-means of one layer of a store embedded with several (vcl embed --layers):",
        "vcl cluster features.zarr --layer stage4 -o c4.zarr --k 100",
    ),
    (
        "Features from elsewhere (.npy plus ids), spherical k-means after PCA to 64:",
        "vcl cluster feats.npy --ids ids.txt -o c.zarr --k 100 --spherical --pca 64",
    ),
    (
        "Evaluate against a labelled manifest, with intra-track entropy:",
        "vcl cluster eval clusters.zarr --labels videos.jsonl --tracks features.zarr",
    ),
    (
        "Change ratio between two epochs' clusterings:",
        "vcl cluster eval epoch2.zarr --vs epoch1.zarr",
    ),
    (
        "Change ratio between runs 0 and 1 of one store:",
        "vcl cluster eval clusters.zarr --vs clusters.zarr --run 0 --vs-run 1",
    ),
]
