"""vcl plot: training curves, cluster montages and probe tables as PNG, SVG or PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vcl.cli.common import Seed, command_group, vcl_command

app = command_group(
    "Plot training curves, cluster montages and probe tables.\n\n"
    "`vcl plot curves RUN_DIR... -o curves.png` draws metrics.jsonl per epoch (ODCT Fig. "
    "2–3), `vcl plot clusters CLUSTERS --crops CROPS -o montage.png` sample crops per "
    "cluster (Fig. 4), `vcl plot probe REPORT... -o table.png` the probe table. The "
    "format follows the extension (.png, .svg, .pdf). Retrieval montages: vcl retrieve "
    "query --montage. All take --quiet, --verbose and --config FILE.toml.",
    default=None,
)

Output = Annotated[
    Path,
    typer.Option("--output", "-o", help="Image to write: .png, .svg or .pdf.", show_default=False),
]


@app.command("curves")
@vcl_command
def curves(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN_DIR...",
            help="vcl pretrain run directories (or their metrics.jsonl files).",
            show_default=False,
        ),
    ],
    output: Output,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="A metrics.jsonl field, one panel each (repeatable; default: change_ratio "
            "and intra_track_entropy).",
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="Legend name of each run, in order (default: its folder)."),
    ] = None,
) -> None:
    """Training curves: one panel per metric, one line per run, epochs on x.

    The papers' Fig. 2 and 3 are `--metric change_ratio --metric intra_track_entropy`
    over the odct, odc and odc-trackinit runs; any numeric field works (loss,
    cluster_max, samples_per_s, ...).
    """
    from vcl.console import log
    from vcl.plot import plot_curves

    metrics = list(metric or ["change_ratio", "intra_track_entropy"])
    plot_curves(runs, metrics, output, label)
    log.info("wrote %s (%d runs, %s)", output, len(runs), ", ".join(metrics))


@app.command("clusters")
@vcl_command
def clusters(
    clusters_path: Annotated[
        Path,
        typer.Argument(
            metavar="CLUSTERS",
            help="A vcl.clusters store (vcl cluster) or JSONL lines {id, cluster}.",
            show_default=False,
        ),
    ],
    crops: Annotated[
        Path,
        typer.Option(
            "--crops",
            help="The vcl.crops store whose crops were clustered (joined by id).",
            show_default=False,
        ),
    ],
    output: Output,
    per_cluster: Annotated[
        int, typer.Option("--per-cluster", min=1, help="Crops drawn per cluster (a row).")
    ] = 10,
    max_clusters: Annotated[
        int, typer.Option("--max-clusters", min=1, help="Largest clusters drawn (rows).")
    ] = 20,
    run: Annotated[
        int, typer.Option("--run", min=0, help="Which run (assignment column) of the store.")
    ] = 0,
    seed: Seed = 0,
) -> None:
    """Cluster montage: sample crops of each cluster, one row per cluster (ODCT Fig. 4).

    Clusters are drawn largest first with their sizes; the crops of a row are drawn
    at random (--seed) among the cluster's members. Crop ids are the store's id
    column or <track_id>@<frame>, the ids vcl embed gives crops.
    """
    from vcl.console import log
    from vcl.plot import plot_clusters

    plot_clusters(clusters_path, crops, output, per_cluster, max_clusters, run, seed)
    log.info("wrote %s", output)


@app.command("probe")
@vcl_command
def probe(
    reports: Annotated[
        list[Path],
        typer.Argument(
            metavar="REPORT...",
            help="Reports of vcl probe (JSON or JSONL), or the JSON of vcl probe compare.",
            show_default=False,
        ),
    ],
    output: Output,
    title: Annotated[str | None, typer.Option("--title", help="Title above the table.")] = None,
) -> None:
    """Probe table: rows are probes, columns layers, values in percent (best in bold).

    The layout of vcl probe compare (linear and knn top-1, svm mAP, few-shot mean
    accuracy per shot count), as an image for slides and papers.
    """
    from vcl.console import log
    from vcl.plot import plot_probe

    plot_probe(reports, output, title)
    log.info("wrote %s", output)


EXAMPLES = [
    (
        "Change ratio and intra-track entropy of three runs (ODCT Fig. 2–3):",
        "vcl plot curves runs/odct runs/odc runs/odc-trackinit -o curves.png "
        "--metric change_ratio --metric intra_track_entropy",
    ),
    (
        "Ten crops from each of the 20 largest clusters (ODCT Fig. 4), as SVG:",
        "vcl plot clusters clusters.zarr --crops crops.zarr -o montage.svg",
    ),
    (
        "The linear-probe table of two runs as an image:",
        "vcl plot probe linear-odct.json linear-odc.json -o table.png",
    ),
]
