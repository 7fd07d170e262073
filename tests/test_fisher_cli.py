"""vcl fisher fit / encode through the CLI, on small stores of the vcl.idt/1 layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vcl.errors import ExitCode
from vcl.io.features import read_feature_set
from vcl.io.store import Store, StoreWriter

HEADER = ("frame", "mean_x", "mean_y", "var_x", "var_y", "length", "scale", "x_pos", "y_pos")
DIMS = {"traj": 30, "hog": 96, "hof": 108, "mbhx": 96, "mbhy": 96}
FAST = ("--k", "3", "--iters", "8", "--inits", "1", "--device", "cpu")


def write_idt(path: Path, lengths: list[int], seed: int = 0, dims=DIMS, nan=None) -> list[str]:
    """A vcl.idt/1 store: header columns plus descriptor parts (HOF in float16)."""
    rng = np.random.default_rng(seed)
    ids = [f"clip{i:02d}" for i in range(len(lengths))]
    with StoreWriter(path, "vcl.idt/1", {"test": True}) as writer:
        spec = {h: ("float32", ()) for h in (*HEADER, "t_pos")}
        spec |= {c: ("float16" if c == "hof" else "float32", (d,)) for c, d in dims.items()}
        writer.define_columns(spec)
        for i, (vid, n) in enumerate(zip(ids, lengths, strict=True)):
            cols = {h: rng.random(n) for h in (*HEADER, "t_pos")}
            for c, d in dims.items():
                cols[c] = np.abs(rng.standard_normal((n, d)) + (i % 3)) / np.sqrt(d)
            for video, rows in (nan or {}).items():
                if video == vid:
                    cols["hog"][rows, 2] = np.nan
                    cols["traj"][rows, 0] = np.inf
            writer.append_group(vid, **cols)
    return ids


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """One small store and a per-type model fit on it, shared by the tests below."""
    from typer.testing import CliRunner

    from vcl.cli.app import app

    tmp = tmp_path_factory.mktemp("fisher")
    ids = write_idt(tmp / "idt.zarr", [57, 0, 41, 73, 29, 66, 38, 51])
    model = tmp / "model.zarr"
    args = ["fisher", "fit", str(tmp / "idt.zarr"), "-o", str(model), *FAST, "--seed", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    return tmp / "idt.zarr", model, ids


def last_error(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert lines[-1].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[-1]


def test_fit_writes_a_model_store(fitted) -> None:
    _, model, _ = fitted
    store = Store(model, kind="fisher_model", version=1)
    assert store.attrs["parts"] == list(DIMS)
    assert store.attrs["seed"] == 4 and store.attrs["params"]["k"] == 3
    for part in DIMS:
        ll = store.attrs["log_likelihood"][part]
        assert len(ll) >= 2 and ll[-1] >= ll[0]
        assert store[f"{part}.gmm_means"].shape[0] == 3
        assert store[f"{part}.pca_components"].shape[1] == DIMS[part]
        assert store.attrs["explained_variance_ratio"][part] >= 0.9
        k, d = store[f"{part}.gmm_means"].shape
        assert store[f"{part}.sketch_hash"].shape == (2 * k * d + k,)


def test_encode_labels_flags_and_sketch(invoke, fitted, tmp_path: Path) -> None:
    idt, model, ids = fitted
    manifest = tmp_path / "videos.jsonl"
    manifest.write_text(
        "\n".join(
            json.dumps({"id": v, "path": f"{v}.mp4", "label": f"c{i % 3}"})
            for i, v in enumerate(ids)
            if v != "clip05"
        )
        + "\n"
    )
    out = tmp_path / "fisher.zarr"
    result = invoke(
        "fisher", "encode", idt, "--model", model, "-o", out, "--videos", manifest,
        "--sketch-dim", "50", "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "clip01" in result.stderr and "no descriptors" in result.stderr
    fs = read_feature_set(out)
    assert list(fs.ids) == ids and fs.features.shape == (8, 50)
    assert list(fs.labels) == [("" if v == "clip05" else f"c{i % 3}") for i, v in enumerate(ids)]
    store = Store(out)
    counts = store["n_descriptors"][:]
    assert list(counts) == [57, 0, 41, 73, 29, 66, 38, 51]
    assert store.attrs["empty_videos"] == ["clip01"]
    assert not fs.features[1].any()
    norms = np.linalg.norm(fs.features[counts > 0], axis=1)
    assert np.all(norms > 0.3) and np.all(norms < 3)
    again = invoke("fisher", "encode", idt, "--model", model, "-o", out)
    assert again.exit_code == ExitCode.CANNOT_CREATE


def test_encode_full_vectors_in_every_variant(invoke, fitted, tmp_path: Path) -> None:
    from vcl.fisher import FisherModel

    idt, model, _ = fitted
    fm = FisherModel.load(model)
    for variant in ("improved", "vc", "skimage"):
        out = tmp_path / f"{variant}.zarr"
        result = invoke(
            "fisher", "encode", idt, "--model", model, "-o", out, "--variant", variant,
            "--sketch-dim", "0", "-q",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        fs = read_feature_set(out)
        assert fs.features.shape == (8, fm.output_dim(variant, 0))
        nonzero = fs.features[[0, 2, 3, 4, 5, 6, 7]]
        np.testing.assert_allclose(np.linalg.norm(nonzero, axis=1), 1.0, rtol=1e-4)


def test_nonfinite_rows_are_dropped_with_a_count(invoke, fitted, tmp_path: Path) -> None:
    _, model, _ = fitted
    idt = tmp_path / "nan.zarr"
    write_idt(idt, [20, 31, 17], seed=1, nan={"clip01": [0, 5, 9]})
    out = tmp_path / "f.zarr"
    result = invoke("fisher", "encode", idt, "--model", model, "-o", out, "--sketch-dim", "8")
    assert result.exit_code == 0, result.stderr
    assert "dropped 3 descriptors with NaN or infinite values in 1 videos" in result.stderr
    assert list(Store(out)["n_descriptors"][:]) == [20, 28, 17]
    assert np.isfinite(read_feature_set(out).features).all()


def test_all_nan_video_is_an_error_naming_it(invoke, fitted, tmp_path: Path) -> None:
    _, model, _ = fitted
    idt = tmp_path / "nan.zarr"
    write_idt(idt, [20, 6, 17], seed=2, nan={"clip01": list(range(6))})
    result = invoke("fisher", "encode", idt, "--model", model, "-o", tmp_path / "f.zarr")
    assert result.exit_code == ExitCode.DATA
    line = last_error(result.stderr)
    assert "clip01" in line and "nan.zarr" in line
    assert not (tmp_path / "f.zarr").exists()
    fit = invoke("fisher", "fit", idt, "-o", tmp_path / "m.zarr", *FAST)
    assert fit.exit_code == ExitCode.DATA and "clip01" in last_error(fit.stderr)


def test_dimension_mismatch_exits_65_naming_both(invoke, fitted, tmp_path: Path) -> None:
    _, model, _ = fitted
    idt = tmp_path / "other.zarr"
    write_idt(idt, [12, 15], dims={**DIMS, "hog": 72})
    result = invoke("fisher", "encode", idt, "--model", model, "-o", tmp_path / "f.zarr")
    assert result.exit_code == ExitCode.DATA
    line = last_error(result.stderr)
    assert "model.zarr" in line and "other.zarr" in line and "'hog'" in line


def test_any_ragged_store_with_chosen_columns_joint_parts(invoke, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    path = tmp_path / "sift.zarr"
    with StoreWriter(path, "vcl.sift/1", {}) as writer:
        writer.define_columns({"xy": ("float32", (2,)), "desc": ("float32", (13,)),
                               "colour": ("float16", (5,)), "frame": ("int32", ())})  # fmt: skip
        for i in range(6):
            n = int(rng.integers(25, 60))
            writer.append_group(
                f"img{i}",
                xy=rng.random((n, 2)),
                desc=rng.standard_normal((n, 13)) + i % 2,
                colour=rng.random((n, 5)),
                frame=np.arange(n),
            )
    model, out = tmp_path / "m.zarr", tmp_path / "f.zarr"
    fit = invoke(
        "fisher", "fit", path, "-o", model, "--columns", "desc,colour", "--parts", "joint",
        "--pca-dim", "7", "--whiten", *FAST,
    )  # fmt: skip
    assert fit.exit_code == 0, fit.stderr
    assert Store(model).attrs["part_columns"] == {"joint": ["desc", "colour"]}
    enc = invoke("fisher", "encode", path, "--model", model, "-o", out, "--sketch-dim", "0")
    assert enc.exit_code == 0, enc.stderr
    assert read_feature_set(out).features.shape == (6, 2 * 3 * 7)
    bad = invoke("fisher", "fit", path, "-o", tmp_path / "x.zarr", "--columns", "nope")
    assert bad.exit_code == ExitCode.DATA and "nope" in last_error(bad.stderr)
    usage = invoke("fisher", "fit", path, "-o", tmp_path / "x.zarr", "--parts", "both")
    assert usage.exit_code == ExitCode.USAGE


def test_interrupted_encode_resumes_to_the_same_store(invoke, fitted, tmp_path, monkeypatch):
    from vcl.fisher.model import FisherModel

    idt, model, ids = fitted
    args = ("fisher", "encode", idt, "--model", model, "--sketch-dim", "20", "--batch-rows", "60")
    whole = tmp_path / "whole.zarr"
    assert invoke(*args, "-o", whole).exit_code == 0
    calls = {"n": 0}
    transform = FisherModel.transform

    def dies_on_the_fourth_batch(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return transform(self, *a, **kw)

    monkeypatch.setattr(FisherModel, "transform", dies_on_the_fourth_batch)
    out = tmp_path / "resumed.zarr"
    assert invoke(*args, "-o", out).exit_code == ExitCode.INTERRUPTED
    assert not out.exists() and Path(str(out) + ".partial").exists()
    monkeypatch.setattr(FisherModel, "transform", transform)
    again = invoke(*args, "-o", out)
    assert again.exit_code == 0 and "resuming" in again.stderr
    a, b = read_feature_set(whole), read_feature_set(out)
    assert list(b.ids) == ids
    np.testing.assert_array_equal(a.features, b.features)
    assert Store(out).attrs["empty_videos"] == ["clip01"]


def _tree(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in path.rglob("*") if f.is_file()}


def test_encode_refuses_to_resume_with_a_refit_model(invoke, fitted, tmp_path, monkeypatch):
    """A model refit in place (same K and dims, same seed, other --iters: its seed and
    maybe its creation second unchanged) must not add its vectors to a partial output
    begun with the old one."""
    from vcl.fisher.model import FisherModel

    idt, _, _ = fitted
    model = tmp_path / "model.zarr"
    fit = ("fisher", "fit", idt, "-o", model, *FAST, "--seed", "4", "-q")
    assert invoke(*fit).exit_code == 0
    args = ("fisher", "encode", idt, "--model", model, "--sketch-dim", "20", "--batch-rows", "60")
    transform = FisherModel.transform

    def dies_on_the_second_batch(self, *a, **kw):
        if dies_on_the_second_batch.calls == 1:
            raise KeyboardInterrupt
        dies_on_the_second_batch.calls += 1
        return transform(self, *a, **kw)

    dies_on_the_second_batch.calls = 0
    monkeypatch.setattr(FisherModel, "transform", dies_on_the_second_batch)
    out = tmp_path / "fv.zarr"
    assert invoke(*args, "-o", out).exit_code == ExitCode.INTERRUPTED
    monkeypatch.setattr(FisherModel, "transform", transform)
    partial = Path(f"{out}.partial")
    before = _tree(partial)
    old_means = Store(model)["traj.gmm_means"][...]
    assert invoke(*fit[:-3], "--iters", "3", "--seed", "4", "--overwrite", "-q").exit_code == 0
    assert not np.array_equal(Store(model)["traj.gmm_means"][...], old_means)
    again = invoke(*args, "-o", out)
    assert again.exit_code == ExitCode.CANNOT_CREATE, again.stderr
    assert "different parameters" in last_error(again.stderr) and str(partial) in again.stderr
    assert not out.exists() and _tree(partial) == before
    # started over (as the message says), the output names the model it was made with
    shutil.rmtree(partial)
    assert invoke(*args, "-o", out).exit_code == 0
    attrs = Store(out).attrs
    assert attrs["seed"] == 4 and attrs["model_created"] == Store(model).attrs["created"]
    assert attrs["params"]["model_sha256"] == FisherModel.load(model).fingerprint_


def test_encode_in_float64_equals_the_float64_model(invoke, fitted, tmp_path: Path) -> None:
    """--precision float64 computes as FisherModel(dtype="float64") does, and is recorded."""
    from vcl.fisher.data import DescriptorStore
    from vcl.fisher.model import FisherModel

    idt, model, ids = fitted
    out = tmp_path / "fisher64.zarr"
    args = ["--model", model, "--sketch-dim", "0", "--device", "cpu"]
    result = invoke("fisher", "encode", idt, *args, "-o", out, "--precision", "float64")
    assert result.exit_code == 0, result.stderr
    assert Store(out).attrs["params"]["precision"] == "float64"
    exact = FisherModel.load(model, dtype="float64")
    source = DescriptorStore([idt], list(DIMS))
    videos = [v for batch in source.batches(ids, max_rows=1 << 20) for _, v, _ in batch]
    want = exact.transform(videos, "improved", 0).astype(np.float32)
    np.testing.assert_allclose(read_feature_set(out).features, want, rtol=0, atol=1e-7)
    bad = invoke("fisher", "encode", idt, *args, "-o", tmp_path / "x.zarr", "--precision", "f16")
    assert bad.exit_code == ExitCode.USAGE and "--precision" in last_error(bad.stderr)
    assert not (tmp_path / "x.zarr").exists()


def test_encode_videos_manifest_matching_no_id_is_refused(invoke, fitted, tmp_path: Path) -> None:
    idt, model, ids = fitted
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"id": f"v{i}", "path": "x.mp4", "label": "a"}) + "\n"
                             for i in range(4)))  # fmt: skip
    out = tmp_path / "none.zarr"
    result = invoke("fisher", "encode", idt, "--model", model, "-o", out, "--videos", other,
                    "--device", "cpu")  # fmt: skip
    assert result.exit_code == ExitCode.DATA, result.stderr
    error = last_error(result.stderr)
    assert str(other) in error and str(idt) in error and "'clip00'" in error and "'v0'" in error
    assert not out.exists() and not Path(f"{out}.partial").exists()
    some = tmp_path / "some.jsonl"
    some.write_text(json.dumps({"id": ids[2], "path": "x.mp4", "label": "a"}) + "\n")
    result = invoke("fisher", "encode", idt, "--model", model, "-o", tmp_path / "some.zarr",
                    "--videos", some, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    warning = [x for x in result.stderr.splitlines() if "label left empty" in x]
    assert (
        len(warning) == 1
        and warning[0].startswith("warning: 7 videos")
        and "'clip00'" in warning[0]
    )


def test_fit_refuses_a_store_of_something_other_than_descriptors(invoke, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "p.zarr"
    with StoreWriter(path, "vcl.proposals/1", {}) as writer:
        writer.define_columns({"frame": ("int32", ()), "box": ("float32", (4,)),
                               "score": ("float32", ())})  # fmt: skip
        for i in range(5):
            n = 37
            box = np.sort(rng.uniform(0, 90, (n, 4)), axis=1)
            writer.append_group(f"v{i}", frame=np.arange(n), box=box, score=rng.random(n))
    out = tmp_path / "m.zarr"
    result = invoke("fisher", "fit", path, "-o", out, *FAST)
    assert result.exit_code == ExitCode.DATA, result.stderr
    error = last_error(result.stderr)
    assert error.startswith(f"error: {path}:") and "vcl.proposals/1" in error
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_shards_encoded_from_different_folders_merge(invoke, fitted, tmp_path, monkeypatch):
    """Was: the store, model and videos paths were recorded as typed, so the shards of one
    encode job run from different folders failed vcl merge: 'differ: model, store,
    videos' (exit 65); a killed encode rerun from elsewhere exited 73."""
    idt, model, ids = fitted
    for name in ("idt.zarr", "model.zarr"):
        shutil.copytree(idt if name == "idt.zarr" else model, tmp_path / name)
    manifest = tmp_path / "videos.jsonl"
    manifest.write_text("".join(json.dumps({"id": v, "path": f"{v}.mp4"}) + "\n" for v in ids))
    (tmp_path / "sub").mkdir()
    common = ("--sketch-dim", "20", "--videos")
    monkeypatch.chdir(tmp_path)
    args = ("fisher", "encode", "idt.zarr", "--model", "model.zarr", *common, "videos.jsonl")
    assert invoke(*args, "-o", "whole.zarr").exit_code == 0
    assert invoke(*args, "-o", "f.0.zarr", "--shard", "0/2").exit_code == 0
    monkeypatch.chdir(tmp_path / "sub")
    other = ("../idt.zarr", "--model", tmp_path / "model.zarr", *common, "./../videos.jsonl")
    assert invoke("fisher", "encode", *other, "-o", "f.1.zarr", "--shard", "1/2").exit_code == 0
    r = invoke("merge", "../f.0.zarr", "f.1.zarr", "-o", "../merged.zarr")
    assert r.exit_code == 0, r.stderr
    monkeypatch.chdir(tmp_path)
    merged, whole = read_feature_set("merged.zarr"), read_feature_set("whole.zarr")
    order = np.argsort(merged.ids)
    assert merged.ids[order].tolist() == sorted(ids)
    np.testing.assert_array_equal(merged.features[order], whole.features[np.argsort(whole.ids)])
    params = Store("whole.zarr").attrs["params"]
    assert params["store"] == str(tmp_path / "idt.zarr")
    assert params["model"] == str(tmp_path / "model.zarr")
    assert params["videos"] == str(tmp_path / "videos.jsonl")


@pytest.mark.parametrize("command", ["fit", "encode"])
def test_an_output_that_cannot_be_made_is_refused_before_the_work(
    invoke, fitted, tmp_path, monkeypatch, command
) -> None:
    """Was: `vcl fisher fit ... -o t.jsonl/m.zarr` (a file in the way) ran the whole GMM
    fit, then exited 73; encode loaded the model first."""
    from vcl.fisher.model import FisherModel

    def worked(*args, **kwargs):
        raise AssertionError("worked before the output was checked")

    monkeypatch.setattr(FisherModel, "fit", worked)
    monkeypatch.setattr(FisherModel, "load", worked)
    idt, model, _ = fitted
    (tmp_path / "t.jsonl").write_text("{}\n")
    args = ["fisher", command, idt, *(FAST if command == "fit" else ("--model", model))]
    result = invoke(*args, "-o", tmp_path / "t.jsonl" / "m.zarr")
    assert result.exit_code == ExitCode.CANNOT_CREATE
    assert f"t.jsonl/m.zarr: cannot create its folder ({tmp_path}/t.jsonl is a file)" in (
        last_error(result.stderr)
    )
    result = invoke(*args, "-o", "-")
    assert result.exit_code == ExitCode.USAGE and "cannot go to stdout" in result.stderr


def test_em_iterations_are_logged_only_with_verbose(invoke, tmp_path: Path) -> None:
    """A 256-component fit runs hundreds of EM iterations over five parts: one summary
    line per part by default, every iteration with -v (the model keeps the history)."""
    write_idt(tmp_path / "idt.zarr", [40, 40, 40])
    for flag, want_iterations in (([], False), (["-v"], True)):
        out = tmp_path / f"model{len(flag)}.zarr"
        run = invoke("fisher", "fit", tmp_path / "idt.zarr", "-o", out, *FAST, *flag)
        assert run.exit_code == 0, run.stderr
        assert ("iter 0: mean log-likelihood" in run.stderr) is want_iterations, run.stderr
        for part in DIMS:
            assert f"{part}: " in run.stderr and "after" in run.stderr
