"""The figures people look at: training curves, cluster montages, probe tables.

Drawn with matplotlib's object API (``matplotlib.figure.Figure``, no pyplot state, no
display: the Agg renderer for PNG, the SVG/PDF ones by extension) and written
atomically. Retrieval montages are drawn by ``vcl retrieve query --montage``.

- ``plot_curves``: one panel per metric, one line per run, from each run's
  ``metrics.jsonl`` (ODCT Fig. 2–3: change ratio and intra-track entropy per epoch).
- ``plot_clusters``: one row per cluster (largest first), sample crops of it — ODCT
  Fig. 4. Crops join clusters by id (``vcl embed`` names a crop ``<track_id>@<frame>``).
- ``plot_probe``: the ``vcl probe compare`` layout (rows probes, columns layers, %)
  rendered as a table figure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vcl.errors import DataError, MissingInputError, UsageError, first_ids

FORMATS = (".png", ".svg", ".pdf")  # what matplotlib writes without extra backends
# Headline number of each probe, as `vcl probe compare` shows them.


def check_output(path: Path) -> None:
    """Refuse an unknown image format before any work is done."""
    if path.suffix.lower() not in FORMATS:
        raise UsageError(
            f"unknown image format {path.suffix!r}",
            path,
            f"end it in {', '.join(FORMATS[:-1])} or {FORMATS[-1]}",
        )


def _save(fig: Any, path: Path, dpi: int = 120) -> Path:
    check_output(path)
    from vcl.io.store import make_parent

    make_parent(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi, format=path.suffix[1:].lower(), bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


# ---------------------------------------------------------------- training curves
def read_run_metrics(run: Path) -> tuple[str, list[dict[str, Any]]]:
    """``(label, records)`` of a pretrain run directory (or a metrics.jsonl file)."""
    from vcl.io.manifest import iter_json_lines

    path = run / "metrics.jsonl" if run.is_dir() else run
    if not path.exists():
        raise MissingInputError("no metrics.jsonl: not a vcl pretrain run", run)
    records = [obj for _, obj in iter_json_lines(path)]
    if not records or any("epoch" not in r for r in records):
        raise DataError("no per-epoch records (each line needs an 'epoch')", path)
    label = path.parent.name if path.name == "metrics.jsonl" else path.stem
    config = path.parent / "config.json"
    if config.exists():
        try:
            method = json.loads(config.read_text(encoding="utf-8")).get("method")
        except json.JSONDecodeError:
            method = None
        if method and method != label:
            label = f"{label} ({method})"
    return label, records


def _number(value: Any) -> float:
    """A metric's value as a float; NaN for null, missing or non-numeric values."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float("nan")


def plot_curves(
    runs: Sequence[Path],
    metrics: Sequence[str],
    out: Path,
    labels: Sequence[str] | None = None,
) -> Path:
    """One panel per metric (x: epoch), one line per run; None values are gaps."""
    from matplotlib.ticker import MaxNLocator

    check_output(out)
    data = [read_run_metrics(Path(r)) for r in runs]
    if labels:
        if len(labels) != len(data):
            raise UsageError(f"{len(labels)} labels for {len(data)} runs", "--label")
        data = [(name, recs) for name, (_, recs) in zip(labels, data, strict=True)]
    for metric in metrics:
        if not any(metric in r for _, recs in data for r in recs):
            known = sorted({k for _, recs in data for r in recs for k in r} - {"epoch"})
            raise UsageError(
                f"no run has the metric {metric!r}", "--metric", f"one of {', '.join(known)}"
            )
    fig = _figure(4.2 * len(metrics), 3.4)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for name, records in data:
            points = sorted(
                (r["epoch"], _number(r.get(metric))) for r in records if "epoch" in r
            )  # NaN where an epoch has no value: matplotlib breaks the line there
            if points and any(np.isfinite(y) for _, y in points):
                x, y = zip(*points, strict=True)
                ax.plot(x, y, marker="o", markersize=3, label=name)
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return _save(fig, out)


# ---------------------------------------------------------------- cluster montage
def cluster_grid(
    ids: np.ndarray,
    clusters: np.ndarray,
    crop_ids: np.ndarray,
    per_cluster: int,
    max_clusters: int,
    seed: int,
    names: tuple[str | Path, str | Path] | None = None,
) -> tuple[list[int], list[int], np.ndarray]:
    """Which crops to draw: ``(cluster ids, their sizes, rows (C, per_cluster))``.

    Clusters largest first (ties by id); in each, ``per_cluster`` members drawn
    without replacement with ``seed`` (row -1 where a cluster is smaller). Only
    members found among ``crop_ids`` count. ``names`` (clusters file, crops store)
    are named in the error when no id meets.
    """
    order = np.argsort(crop_ids)
    pos = np.minimum(np.searchsorted(crop_ids, ids, sorter=order), max(len(crop_ids) - 1, 0))
    found = (crop_ids[order[pos]] == ids) if len(crop_ids) else np.zeros(len(ids), bool)
    if not found.any():
        where, crops = names or (None, "the crops")
        raise DataError(
            f"no clustered id names a crop of {crops} (ids here: {first_ids(ids)}; crops: "
            f"{first_ids(crop_ids)})",
            where,
            "cluster the features of these crops",
        )
    rows_of, cl = order[pos][found], clusters[found]
    keep = cl >= 0  # -1: unassigned
    if not keep.any():
        raise DataError(
            "every clustered id that names a crop is unassigned (cluster -1)",
            (names or (None,))[0],
        )
    rows_of, cl = rows_of[keep], cl[keep]
    values, sizes = np.unique(cl, return_counts=True)
    ranked = np.lexsort((values, -sizes))[:max_clusters]
    rng = np.random.default_rng(seed)
    grid = np.full((len(ranked), per_cluster), -1, np.int64)
    for i, j in enumerate(ranked):
        members = rows_of[cl == values[j]]
        pick = rng.choice(len(members), size=min(per_cluster, len(members)), replace=False)
        grid[i, : len(pick)] = members[np.sort(pick)]
    return [int(values[j]) for j in ranked], [int(sizes[j]) for j in ranked], grid


def plot_clusters(
    clusters_path: Path,
    crops_path: Path,
    out: Path,
    per_cluster: int = 10,
    max_clusters: int = 20,
    run: int = 0,
    seed: int = 0,
) -> Path:
    """A grid of sample crops per cluster: one row per cluster, largest first."""
    from vcl.io.features import item_ids
    from vcl.io.store import Store

    check_output(out)
    from vcl.io.labels import read_assignment

    ids, clusters, _ = read_assignment(clusters_path, run)
    store = Store(crops_path, kind="crops", version=1)
    if "image" not in store.columns:
        raise DataError("has no 'image' column: not a crops store", crops_path)
    names, sizes, grid = cluster_grid(
        ids, clusters, item_ids(store), per_cluster, max_clusters, seed, (clusters_path, crops_path)
    )
    wanted = np.unique(grid[grid >= 0])
    images = store["image"].get_orthogonal_selection((wanted,))  # (n, S, S, 3) uint8
    lookup = {int(r): i for i, r in enumerate(wanted)}
    side, pad = images.shape[1], 2
    cell = side + pad
    canvas = np.full((len(names) * cell + pad, per_cluster * cell + pad, 3), 255, np.uint8)
    for i, j in np.argwhere(grid >= 0):
        y, x = pad + i * cell, pad + j * cell
        canvas[y : y + side, x : x + images.shape[2]] = images[lookup[int(grid[i, j])]][:, :, :3]
    scale = max(0.5, min(1.2, 64 / side))  # inches per cell: small crops drawn larger
    fig = _figure(per_cluster * cell * scale / 64 + 1.6, len(names) * cell * scale / 64 + 0.6)
    ax = fig.add_subplot()
    ax.imshow(canvas, interpolation="nearest")
    ax.set_yticks([pad + i * cell + side / 2 for i in range(len(names))])
    ax.set_yticklabels([f"cluster {c} ({n})" for c, n in zip(names, sizes, strict=True)])
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"{Path(clusters_path).name}: {per_cluster} sample crops per cluster")
    return _save(fig, out, dpi=100)


# ---------------------------------------------------------------- probe table
def plot_probe(reports: Sequence[Path], out: Path, title: str | None = None) -> Path:
    """The probe table as a figure: percentages, the best value of each column in bold."""
    check_output(out)
    from vcl.probe import probe_table

    columns, rows = probe_table(reports)
    cells, best = [], {}
    for c in columns:
        values = [r["values"].get(c) for r in rows]
        numbers = [v for v in values if isinstance(v, (int, float))]
        best[c] = max(numbers) if numbers else None
    for r in rows:
        cells.append(
            [r["probe"]]
            + [
                "–" if r["values"].get(c) is None else f"{100 * r['values'][c]:.2f}"
                for c in columns
            ]
        )
    # inches: ~0.075 per character at 9 pt, plus padding
    widths = [
        0.3 + 0.075 * max(len(x) for x in [h] + [row[i] for row in cells])
        for i, h in enumerate(["probe", *columns])
    ]
    widths = [widths[0]] + [max(w, 0.8) for w in widths[1:]]
    height = 0.28 * (len(rows) + 1)
    fig = _figure(sum(widths) + 0.2, height + 0.5)
    ax = fig.add_subplot()
    ax.axis("off")
    table = ax.table(
        cellText=cells,
        colLabels=["probe", *columns],
        colWidths=[w / sum(widths) for w in widths],
        cellLoc="right",
        bbox=[0, 0, 1, 1],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    for (i, j), cell in table.get_celld().items():
        if j == 0:
            cell.set_text_props(ha="left")
        if i == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#eeeeee")
        elif j > 0 and rows[i - 1]["values"].get(columns[j - 1]) == best[columns[j - 1]]:
            cell.set_text_props(weight="bold")
    ax.set_title(title or "linear probes and kNN (%)", fontsize=10)
    return _save(fig, out)
