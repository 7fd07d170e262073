"""vcl plot: each figure rendered from small generated inputs, checked as an image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vcl.errors import ExitCode


def _image(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable image"
    return image


def _not_blank(image: np.ndarray) -> None:
    assert image.shape[0] > 50 and image.shape[1] > 50
    assert image.std() > 10  # ink on the page, not a flat colour
    assert (image < 128).mean() > 0.005


def _run_dir(folder: Path, method: str, change: list[float], entropy: list[float | None]) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"method": method}))
    lines = [
        {"epoch": e, "change_ratio": c, "intra_track_entropy": h, "loss": 2.0 / (e + 1)}
        for e, (c, h) in enumerate(zip(change, entropy, strict=True))
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    return [
        _run_dir(tmp_path / "odct", "odct", [0.0, 0.6, 0.3, 0.1, 0.05], [0.0, 0.7, 0.4, 0.2, 0.1]),
        _run_dir(tmp_path / "odc", "odc", [0.0, 0.7, 0.5, 0.4, 0.3], [0.0, 0.9, None, 0.8, 0.8]),
    ]


def test_curves_png_has_one_panel_per_metric(invoke, runs, tmp_path: Path) -> None:
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    result = invoke("plot", "curves", *runs, "-o", one, "--metric", "change_ratio")
    assert result.exit_code == 0, result.output
    result = invoke("plot", "curves", *runs, "-o", two)  # default: the two ODCT metrics
    assert result.exit_code == 0, result.output
    a, b = _image(one), _image(two)
    _not_blank(a)
    _not_blank(b)
    assert 1.7 < b.shape[1] / a.shape[1] < 2.3  # two panels side by side, same height
    assert abs(a.shape[0] - b.shape[0]) < 0.1 * a.shape[0]
    # the two runs are drawn in two different colours (matplotlib's C0 blue, C1 orange)
    hsv = __import__("cv2").cvtColor(b, __import__("cv2").COLOR_BGR2HSV)
    saturated = hsv[..., 1] > 120
    hues = hsv[..., 0][saturated]
    assert ((hues > 95) & (hues < 115)).sum() > 50 and ((hues > 5) & (hues < 20)).sum() > 50


def test_curves_break_where_an_epoch_has_no_value(runs, tmp_path: Path, monkeypatch) -> None:
    """The odc run has no entropy at epoch 2: its points used to be joined across it."""
    from matplotlib.axes import Axes

    from vcl.plot import plot_curves

    drawn: dict[str, tuple] = {}
    plot = Axes.plot

    def spy(self, x, y, *args, **kwargs):  # type: ignore[no-untyped-def]
        drawn[kwargs["label"]] = (list(x), list(y))
        return plot(self, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", spy)
    plot_curves(runs, ["intra_track_entropy"], tmp_path / "gap.png")
    x, y = drawn["odc"]
    assert x == [0, 1, 2, 3, 4] and np.isnan(y[2]) and y[3] == 0.8


def test_curves_svg_by_extension(invoke, runs, tmp_path: Path) -> None:
    out = tmp_path / "curves.svg"
    result = invoke("plot", "curves", *runs, "-o", out, "--label", "ODCT", "--label", "ODC")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "ODCT" in text and "intra track entropy" in text


def test_curves_bad_inputs(invoke, runs, tmp_path: Path) -> None:
    result = invoke("plot", "curves", *runs, "-o", tmp_path / "x.png", "--metric", "nope")
    assert result.exit_code == ExitCode.USAGE and "loss" in result.output  # lists known ones
    result = invoke("plot", "curves", tmp_path / "missing", "-o", tmp_path / "x.png")
    assert result.exit_code == ExitCode.NO_INPUT and "missing" in result.output
    result = invoke("plot", "curves", *runs, "-o", tmp_path / "x.gif")
    assert result.exit_code == ExitCode.USAGE and ".gif" in result.output
    (tmp_path / "afile").write_text("")  # a file where the folder should be made
    result = invoke("plot", "curves", *runs, "-o", tmp_path / "afile" / "x.png")
    assert result.exit_code == ExitCode.CANNOT_CREATE and "afile/x.png" in result.stderr
    assert not list(tmp_path.glob("*.png"))
    result = invoke("plot", "curves", *runs, "-o", tmp_path / "new" / "x.png")
    assert result.exit_code == 0 and (tmp_path / "new" / "x.png").is_file()  # as -o elsewhere


def _crops(tmp_path: Path, n_tracks: int = 7, per_track: int = 3, side: int = 13) -> Path:
    """Crops whose colour encodes their track: track t is a flat colour of hue 20·t."""
    import cv2

    from vcl.io.store import StoreWriter

    hsv = np.zeros((n_tracks, 1, 3), np.uint8)
    hsv[:, 0] = np.stack(
        [np.arange(n_tracks) * 20, np.full(n_tracks, 200), np.full(n_tracks, 220)], 1
    )
    colours = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[:, 0]
    tracks = np.repeat([f"t{t}" for t in range(n_tracks)], per_track)
    frames = np.tile(np.arange(per_track) * 4, n_tracks).astype(np.int32)
    images = np.broadcast_to(
        colours[np.repeat(np.arange(n_tracks), per_track)][:, None, None],
        (len(tracks), side, side, 3),
    ).copy()
    path = tmp_path / "crops.zarr"
    with StoreWriter(path, "vcl.crops/1", {}, 0) as writer:
        writer.define_columns(
            {"image": ("uint8", (side, side, 3)), "track_id": (str, ()), "frame": ("int32", ())}
        )
        writer.append_group("v", image=images, track_id=tracks, frame=frames)
    return path


def test_cluster_grid_picks_members_largest_cluster_first() -> None:
    from vcl.plot import cluster_grid

    crop_ids = np.array(["a", "b", "c", "d", "e", "f"])
    ids = np.array(["f", "e", "d", "c", "b", "a", "zz"])  # zz: not a crop
    clusters = np.array([1, 1, 2, 2, 2, 0, 2])
    names, sizes, grid = cluster_grid(ids, clusters, crop_ids, 4, 10, seed=0)
    assert names == [2, 1, 0] and sizes == [3, 2, 1]
    assert sorted(grid[0][grid[0] >= 0]) == [1, 2, 3]  # b, c, d
    assert sorted(grid[1][grid[1] >= 0]) == [4, 5] and list(grid[2]) == [0, -1, -1, -1]
    _, _, two = cluster_grid(ids, clusters, crop_ids, 2, 1, seed=3)
    assert two.shape == (1, 2) and set(two[0]) <= {1, 2, 3}


def test_cluster_montage_rows_show_their_clusters_crops(invoke, tmp_path: Path) -> None:
    crops = _crops(tmp_path)
    # clusters by track parity: cluster 0 = even tracks (4 tracks, 12 crops), 1 = odd (9)
    lines = [{"id": f"t{t}@{4 * f}", "cluster": t % 2} for t in range(7) for f in range(3)]
    clusters = tmp_path / "clusters.jsonl"
    clusters.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "montage.png"
    result = invoke("plot", "clusters", clusters, "--crops", crops, "-o", out, "--per-cluster", "5")
    assert result.exit_code == 0, result.output
    image = _image(out)
    _not_blank(image)
    import cv2

    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    solid = hsv[..., 1] > 150
    rows = np.flatnonzero(solid.any(axis=1))
    top, bottom = rows[rows < rows.mean()], rows[rows > rows.mean()]
    # the top row is the larger cluster (even tracks: hues 0, 40, 80, 120 in RGB → /2 in cv2)
    top_hues = set(np.unique(hsv[top][solid[top]][:, 0] // 10 * 10))
    bottom_hues = set(np.unique(hsv[bottom][solid[bottom]][:, 0] // 10 * 10))
    assert top_hues <= {0, 40, 80, 120, 170} and bottom_hues <= {20, 60, 100}
    svg = tmp_path / "montage.svg"
    assert invoke("plot", "clusters", clusters, "--crops", crops, "-o", svg).exit_code == 0
    assert "<svg" in svg.read_text()


def test_cluster_montage_bad_inputs(invoke, tmp_path: Path) -> None:
    crops = _crops(tmp_path)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "nothing", "cluster": 0}) + "\n")
    result = invoke("plot", "clusters", other, "--crops", crops, "-o", tmp_path / "m.png")
    assert result.exit_code == ExitCode.DATA and "no clustered id" in result.output
    result = invoke(
        "plot", "clusters", other, "--crops", tmp_path / "no.zarr", "-o", tmp_path / "m.png"
    )
    assert result.exit_code == ExitCode.NO_INPUT
    assert not (tmp_path / "m.png").exists()


def _report(method: str, values: dict[str, float]) -> dict:
    key = {"linear": "top1", "knn": "top1", "svm": "mAP"}[method]
    return {
        "method": method,
        "parameters": {},
        "inputs": {},
        "layers": [{"layer": k, "metrics": {key: v}} for k, v in values.items()],
    }


def test_probe_table_matches_probe_compare(invoke, tmp_path: Path) -> None:
    a, b = tmp_path / "linear-odct.json", tmp_path / "knn-odc.jsonl"
    a.write_text(json.dumps(_report("linear", {"stage4": 0.412, "stage5": 0.5731})))
    knn = _report("knn", {"stage4": 0.3, "stage5": 0.61})
    b.write_text("".join(json.dumps({"method": "knn", **x}) + "\n" for x in knn["layers"]))
    compare = invoke("probe", "compare", a, b)
    assert compare.exit_code == 0, compare.output
    expected = json.loads(compare.stdout)
    from vcl.probe import probe_table

    columns, rows = probe_table([a, b])
    assert columns == expected["columns"] == ["stage4", "stage5"]
    assert rows == expected["rows"]
    saved = tmp_path / "compare.json"
    saved.write_text(compare.stdout)
    assert probe_table([saved]) == (columns, rows)  # compare's own JSON reads the same
    out = tmp_path / "table.png"
    result = invoke("plot", "probe", a, b, "-o", out, "--title", "probes")
    assert result.exit_code == 0, result.output
    image = _image(out)
    _not_blank(image)
    assert image.shape[1] > image.shape[0]  # a wide table of two rows
    result = invoke("plot", "probe", tmp_path / "nope.json", "-o", out)
    assert result.exit_code == ExitCode.NO_INPUT
    bad = tmp_path / "bad.json"
    bad.write_text('{"layers": []}\n')
    assert invoke("plot", "probe", bad, "-o", out).exit_code == ExitCode.DATA


def test_cluster_montage_errors_name_the_file(invoke, tmp_path: Path) -> None:
    from tests.test_cli import one_error_line
    from vcl.io.store import StoreWriter

    crops, out = _crops(tmp_path), tmp_path / "m.png"
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "nothing", "cluster": 0}) + "\n")
    result = invoke("plot", "clusters", other, "--crops", crops, "-o", out)
    line = one_error_line(result.stderr)
    assert result.exit_code == ExitCode.DATA and line.startswith(f"error: {other}: ")
    assert "crops.zarr" in line and "'nothing'" in line and "'t0@0'" in line
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "t0@0", "cluster": "a"}) + "\n")
    result = invoke("plot", "clusters", bad, "--crops", crops, "-o", out)
    assert result.exit_code == ExitCode.DATA
    assert one_error_line(result.stderr).startswith(f"error: {bad}: id 't0@0': 'cluster' must")
    unassigned = tmp_path / "unassigned.jsonl"
    unassigned.write_text(json.dumps({"id": "t0@0", "cluster": -1}) + "\n")
    result = invoke("plot", "clusters", unassigned, "--crops", crops, "-o", out)
    assert result.exit_code == ExitCode.DATA
    assert one_error_line(result.stderr).startswith(f"error: {unassigned}: ")
    store = tmp_path / "clusters.zarr"
    with StoreWriter(store, "vcl.clusters/1", {}, 0) as writer:
        writer.define_columns({"id": (str, ()), "assignment": ("int64", (1,))})
        writer.append_group("v", id=np.array(["t0@0"]), assignment=np.zeros((1, 1), np.int64))
    result = invoke("plot", "clusters", store, "--crops", crops, "-o", out, "--run", "3")
    assert result.exit_code == ExitCode.USAGE
    assert one_error_line(result.stderr).startswith(f"error: {store}: --run 3: the store has 1")
    assert not out.exists()
    assert invoke("plot", "clusters", store, "--crops", crops, "-o", out).exit_code == 0


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf", ".PDF"])
def test_plot_formats_help_and_check_agree(invoke, runs, tmp_path: Path, suffix: str) -> None:
    """Every format the help names is written; others are refused naming all of them."""
    out = tmp_path / f"curves{suffix}"
    assert invoke("plot", "curves", *runs, "-o", out).exit_code == 0
    assert out.read_bytes()[:5] in (b"\x89PNG\r", b"<?xml", b"%PDF-")
    help_text = invoke("plot", "curves", "--help").output
    assert ".png, .svg or .pdf" in " ".join(help_text.split())


def test_plot_unknown_format_hint_lists_every_format(invoke, runs, tmp_path: Path) -> None:
    from tests.test_cli import one_error_line

    result = invoke("plot", "curves", *runs, "-o", tmp_path / "x.jpg")
    assert result.exit_code == ExitCode.USAGE
    assert one_error_line(result.stderr).endswith("end it in .png, .svg or .pdf")
