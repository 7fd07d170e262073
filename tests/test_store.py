from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vcl.errors import DataError, MissingInputError, OutputError
from vcl.io.store import KNOWN, STORE_VERSIONS, Store, StoreWriter, partial_path

COLUMNS = {"frame": ("int32", ()), "box": ("float32", (4,)), "score": ("float32", ())}
PARAMS = {"alpha": 0.65, "method": "edgeboxes"}


def group_data(i: int) -> dict[str, np.ndarray]:
    """Deterministic rows for group i; some groups are empty."""
    rng = np.random.default_rng(i)
    n = 0 if i % 5 == 3 else int(rng.integers(1, 40))
    return {
        "frame": np.sort(rng.integers(0, 50, n)).astype(np.int32),
        "box": rng.random((n, 4), dtype=np.float32) * 100,
        "score": rng.random(n, dtype=np.float32),
    }


def write_all(path: Path, ids: list[str]) -> None:
    with StoreWriter(path, "vcl.test/1", PARAMS, seed=7) as writer:
        writer.define_columns(COLUMNS)
        for gid in ids:
            if gid not in writer.done_groups:
                writer.append_group(gid, **group_data(int(gid[1:])))


def assert_same_content(a: Path, b: Path) -> None:
    sa, sb = Store(a), Store(b)
    assert sa.group_ids == sb.group_ids
    for gid in sa.group_ids:
        ga, gb = sa.read_group(gid), sb.read_group(gid)
        for column in COLUMNS:
            np.testing.assert_array_equal(ga[column], gb[column])


IDS = [f"v{i}" for i in range(12)]


def test_write_read_round_trip_with_provenance(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    write_all(path, IDS)
    store = Store(path, kind="test", version=1)
    assert store.group_ids == IDS
    assert store.n_rows == sum(len(group_data(i)["frame"]) for i in range(12))
    for i, gid in enumerate(IDS):
        np.testing.assert_array_equal(store.read_group(gid)["box"], group_data(i)["box"])
    assert store.attrs["params"] == PARAMS and store.attrs["seed"] == 7
    assert {"vcl_version", "command", "created"} <= set(store.attrs)
    assert store["box"].dtype == np.float32 and store.verify() == []
    assert not partial_path(path).exists()


def test_reader_refuses_partial_and_unfinished_stores(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    with pytest.raises(RuntimeError), StoreWriter(path, "vcl.test/1", PARAMS) as writer:
        writer.define_columns(COLUMNS)
        writer.append_group("v0", **group_data(0))
        raise RuntimeError("crash")
    assert not path.exists() and partial_path(path).exists()
    with pytest.raises(DataError, match="incomplete"):
        Store(path)
    with pytest.raises(DataError, match="incomplete"):
        Store(partial_path(path))
    # a store copied or renamed by hand without the completion mark is refused too
    partial_path(path).rename(path)
    with pytest.raises(DataError, match="no completion mark"):
        Store(path)
    with pytest.raises(MissingInputError):
        Store(tmp_path / "other.zarr")


def test_resume_skips_done_groups_and_drops_uncommitted_rows(tmp_path: Path) -> None:
    path, reference = tmp_path / "p.zarr", tmp_path / "ref.zarr"
    write_all(reference, IDS)
    with pytest.raises(RuntimeError), StoreWriter(path, "vcl.test/1", PARAMS, 7) as writer:
        writer.define_columns(COLUMNS)
        for gid in IDS[:5]:
            writer.append_group(gid, **group_data(int(gid[1:])))
        writer.flush()
        writer.group["frame"].append(np.arange(9, dtype=np.int32))  # rows of an uncommitted group
        raise RuntimeError("killed mid-group")
    writer = StoreWriter(path, "vcl.test/1", PARAMS, 7)
    assert writer.resumed and writer.done_groups == set(IDS[:5])
    assert writer.group["frame"].shape[0] == writer.n_rows  # the 9 stray rows are gone
    write_all(path, IDS)
    assert_same_content(path, reference)


def test_resume_with_other_parameters_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    with pytest.raises(RuntimeError), StoreWriter(path, "vcl.test/1", PARAMS) as writer:
        writer.define_columns(COLUMNS)
        writer.append_group("v0", **group_data(0))
        raise RuntimeError
    with pytest.raises(OutputError, match=r"different parameters \(differ: alpha\).*--overwrite"):
        StoreWriter(path, "vcl.test/1", {**PARAMS, "alpha": 0.5})
    assert StoreWriter(path, "vcl.test/1", PARAMS).done_groups == {"v0"}  # kept


def test_overwrite_or_nothing_done_discards_a_partial_of_other_parameters(
    tmp_path: Path, caplog
) -> None:
    """Was: --overwrite ('replace an existing output') left a .partial of other
    parameters in the way ('...delete it to start over', exit 73), and so did a first
    run that failed before committing anything, blocking the corrected rerun."""
    import logging

    path = tmp_path / "p.zarr"
    with pytest.raises(RuntimeError), StoreWriter(path, "vcl.test/1", PARAMS) as writer:
        writer.define_columns(COLUMNS)
        writer.append_group("v0", **group_data(0))
        raise RuntimeError
    other = {**PARAMS, "alpha": 0.5}
    with caplog.at_level(logging.INFO, logger="vcl"):
        writer = StoreWriter(path, "vcl.test/1", other, overwrite=True)
    assert not writer.resumed and writer.done_groups == set()
    assert "discarded (--overwrite), made with different parameters (differ: alpha)" in caplog.text
    writer.define_columns(COLUMNS)
    writer.append_group("v1", **group_data(1))
    writer.finish()
    assert Store(path).group_ids == ["v1"] and Store(path).attrs["params"] == other
    # a run that failed before committing a group: the rerun with other params starts over
    with pytest.raises(RuntimeError), StoreWriter(tmp_path / "q.zarr", "vcl.test/1", PARAMS) as w:
        w.define_columns(COLUMNS)
        raise RuntimeError
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vcl"):
        writer = StoreWriter(tmp_path / "q.zarr", "vcl.test/2", other)
    assert not writer.resumed and writer.group.attrs["vcl_schema"] == "vcl.test/2"
    assert "differ: schema, alpha) and holding nothing" in caplog.text


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    write_all(path, IDS[:2])
    with pytest.raises(OutputError, match="--overwrite"):
        StoreWriter(path, "vcl.test/1", PARAMS)
    with StoreWriter(path, "vcl.test/1", PARAMS, overwrite=True) as writer:
        writer.define_columns(COLUMNS)
        writer.append_group("v9", **group_data(9))
    assert Store(path).group_ids == ["v9"]


def test_schema_checks(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    with StoreWriter(path, "vcl.test/3", PARAMS) as writer:
        writer.define_columns(COLUMNS)
    with pytest.raises(DataError, match=r"expected vcl\.proposals"):
        Store(path, kind="proposals")
    with pytest.raises(DataError, match=r"vcl\.test/3 is not the vcl\.test/1.*upgrade vcl"):
        Store(path, kind="test", version=1)


def test_known_versions_are_checked_by_kind(tmp_path: Path) -> None:
    """``version=KNOWN``: the major version vcl reads for the store's kind, the check
    readers of any kind of store (merge, info, --labels) make; another tool's kind is
    read as it is. Was: only a caller naming a version had it checked."""
    schemas = {"newer": "vcl.proposals/2", "older": "vcl.crops/0", "foreign": "vcl.sift/5"}
    paths = {}
    for name, schema in schemas.items():
        paths[name] = tmp_path / f"{name}.zarr"
        with StoreWriter(paths[name], schema, PARAMS) as writer:
            writer.define_columns(COLUMNS)
    with pytest.raises(
        DataError,
        match=r"newer\.zarr: schema vcl\.proposals/2 is not the vcl\.proposals/1 this vcl "
        r"reads; upgrade vcl$",
    ):
        Store(paths["newer"], version=KNOWN)
    with pytest.raises(DataError, match=r"vcl\.crops/0 is not the vcl\.crops/1 .*; convert it$"):
        Store(paths["older"], version=KNOWN)
    assert Store(paths["foreign"], version=KNOWN).version == 5
    with pytest.raises(DataError, match=r"vcl\.proposals/2 is not"):
        Store(paths["newer"])  # the default: every reader (crops for retrieve, frames...)
    with pytest.raises(DataError, match=r"vcl\.proposals/2 is not"):
        Store(paths["newer"], kind="proposals")
    assert Store(paths["newer"], version=None).version == 2  # asked not to check


def test_store_versions_are_the_ones_vcl_writes() -> None:
    """Every ``"vcl.<kind>/<major>"`` in vcl's code, for a kind of store, is the major
    version STORE_VERSIONS holds readers to (a bumped writer must bump it too)."""
    import re

    import vcl

    written = set()
    for source in Path(vcl.__file__).parent.rglob("*.py"):
        written |= set(re.findall(r"[\"']vcl\.(\w+)/(\d+)[\"']", source.read_text()))
    stores = {(kind, int(major)) for kind, major in written if kind in STORE_VERSIONS}
    assert stores == set(STORE_VERSIONS.items())


def test_damage_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    write_all(path, IDS)
    chunk = next((path / "box" / "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    chunk.unlink()
    assert any("'box' is missing" in p for p in Store(path).verify())


def test_row_id_held_twice_is_damage(invoke, tmp_path: Path) -> None:
    """Stores merged from overlapping shards before merge refused them hold an id twice;
    readers of features refuse them, so `vcl info` must not call them fine."""
    path = tmp_path / "f.zarr"
    with StoreWriter(path, "vcl.test/1", {}) as writer:
        writer.define_columns({"id": (str, ()), "x": ("float32", (2,))})
        writer.append_group("a", id=np.array(["v1", "v2"]), x=np.zeros((2, 2)))
        writer.append_group("b", id=np.array(["v3", "v2"]), x=np.ones((2, 2)))
    assert Store(path).verify() == ["row id 'v2' is held twice"]
    result = invoke("info", str(path))
    assert result.exit_code == 65 and "f.zarr" in result.stderr and "'v2'" in result.stderr


def test_fill_value_chunks_are_not_damage(invoke, tmp_path: Path) -> None:
    """An all-black crop or an all-unlabelled column equals the fill value, which zarr 3
    skips writing unless every handle asks; `vcl info` must read such a store as fine,
    and also one written before every chunk was (no vcl_every_chunk mark)."""
    import json

    import zarr

    path = tmp_path / "p.zarr"
    with StoreWriter(path, "vcl.test/1", {}) as writer:
        writer.define_columns({"image": ("uint8", (5, 3)), "label": (str, ())})
        writer.append_group("black", image=np.zeros((4, 5, 3)), label=np.full(4, ""))
    assert Store(path).verify() == []
    assert invoke("info", str(path)).exit_code == 0
    # an older store: no mark, and the fill-value chunks were never written
    group = zarr.open_group(str(path), mode="r+")
    del group.attrs["vcl_every_chunk"]
    for name in ("image", "label"):
        for chunk in [p for p in (path / name).rglob("*") if p.is_file()]:
            if chunk.name != "zarr.json":
                chunk.unlink()
    result = invoke("info", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 4
    assert not Store(path).read_group("black")["image"].any()


def test_plain_arrays(tmp_path: Path) -> None:
    path = tmp_path / "model.zarr"
    mean = np.arange(12, dtype=np.float64).reshape(3, 4)
    with StoreWriter(path, "vcl.test/1", PARAMS) as writer:
        writer.write_array("mean", mean)
        writer.write_array("names", np.array(["a", "bc"]))
    store = Store(path)
    np.testing.assert_array_equal(store["mean"][...], mean)
    assert list(store["names"][...]) == ["a", "bc"] and store.n_rows == 0


WRITER_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from tests.test_store import COLUMNS, PARAMS, IDS, group_data
from vcl.io.store import StoreWriter
with StoreWriter(sys.argv[1], "vcl.test/1", PARAMS, seed=7) as writer:
    writer.define_columns(COLUMNS)
    for gid in IDS:
        if gid in writer.done_groups:
            continue
        writer.append_group(gid, **group_data(int(gid[1:])))
        writer.flush()
        print("committed", gid, flush=True)
        time.sleep(0.05)
"""


@pytest.mark.parametrize(("kill_after", "extra_delay"), [(1, 0.0), (4, 0.013), (9, 0.031)])
def test_killed_writer_leaves_nothing_readable_and_resumes(
    tmp_path: Path, kill_after: int, extra_delay: float
) -> None:
    """SIGKILL a real writer process at several moments; a rerun equals a clean run."""
    root = str(Path(__file__).resolve().parents[1])
    path, reference = tmp_path / "p.zarr", tmp_path / "ref.zarr"
    write_all(reference, IDS)
    script = WRITER_SCRIPT.format(root=root)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for _ in range(kill_after):
        assert proc.stdout.readline().startswith("committed")
    time.sleep(extra_delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with pytest.raises(DataError, match="incomplete"):
        Store(path)
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, stdout=subprocess.DEVNULL)
    assert_same_content(path, reference)
    assert Store(path).verify() == []


def test_write_behind_writes_in_order_on_one_thread_and_raises_its_errors(tmp_path: Path) -> None:
    import threading

    from vcl.io.store import WriteBehind

    write_all(tmp_path / "ref.zarr", IDS)
    with StoreWriter(tmp_path / "p.zarr", "vcl.test/1", PARAMS, seed=7) as writer:
        writer.define_columns(COLUMNS)
        seen: list[tuple[str, str]] = []
        with WriteBehind(writer) as sink:
            for gid in IDS:
                sink.call(lambda g=gid: seen.append((g, threading.current_thread().name)))
                sink.append_group(gid, **group_data(int(gid[1:])))
        assert seen == [(gid, "vcl-write-behind") for gid in IDS]
    assert_same_content(tmp_path / "p.zarr", tmp_path / "ref.zarr")

    def boom(n: int) -> None:
        raise OutputError(f"disk full at {n}", tmp_path)

    done: list[int] = []
    # raised on leaving the block
    with pytest.raises(OutputError, match="disk full at 1"), WriteBehind(writer) as sink:
        sink.call(done.append, 0)
        sink.call(boom, 1)
        sink.call(done.append, 2)  # dropped: queued after the error
    assert done == [0]
    # or by the next call
    with pytest.raises(OutputError, match="disk full at 0"), WriteBehind(writer) as sink:
        sink.call(boom, 0)
        for i in range(1, 100):
            time.sleep(0.01)
            sink.call(done.append, i)
    assert done == [0]
    # the caller's error: what was queued is done first
    with pytest.raises(KeyboardInterrupt), WriteBehind(writer) as sink:
        sink.call(time.sleep, 0.2)
        sink.call(done.append, 1)
        raise KeyboardInterrupt
    assert done == [0, 1]


def _killed(path: Path, params: dict, paths: tuple[str, ...] = ("input",)) -> None:
    """A run of ``params`` interrupted after committing v0 and v1."""
    with (
        pytest.raises(KeyboardInterrupt),
        StoreWriter(path, "vcl.test/1", params, paths=paths) as w,
    ):
        w.define_columns(COLUMNS)
        for gid in IDS[:2]:
            w.append_group(gid, **group_data(int(gid[1:])))
        raise KeyboardInterrupt


def test_path_parameters_resume_by_the_files_they_name(tmp_path: Path, monkeypatch) -> None:
    """Was: paths were recorded as typed and compared literally, so `vcl embed runs/odct
    ...` killed, then rerun as `./runs/odct`, or from another folder, exited 73 ('an
    interrupted run with different parameters left this store')."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.zarr").mkdir()
    (tmp_path / "elsewhere").mkdir()
    out = tmp_path / "out" / "p.zarr"
    monkeypatch.chdir(tmp_path)
    _killed(out, {**PARAMS, "input": "data/in.zarr"})
    recorded = zarr_attrs(partial_path(out))
    assert recorded["params"]["input"] == str(tmp_path / "data" / "in.zarr")
    assert recorded["vcl_path_params"] == ["input"]
    for where, typed in (
        (tmp_path, "./data/x/../in.zarr"),
        (tmp_path / "elsewhere", "../data/in.zarr"),
    ):
        monkeypatch.chdir(where)
        writer = StoreWriter(out, "vcl.test/1", {**PARAMS, "input": typed}, paths=("input",))
        assert writer.resumed and writer.done_groups == set(IDS[:2])
    # a symlink to the same folder names the same files
    (tmp_path / "link").symlink_to(tmp_path / "data")
    writer = StoreWriter(
        out, "vcl.test/1", {**PARAMS, "input": "../link/in.zarr"}, paths=("input",)
    )
    assert writer.resumed
    # another file is another run
    (tmp_path / "data" / "other.zarr").mkdir()
    with pytest.raises(OutputError, match=r"different parameters \(differ: input\)"):
        StoreWriter(out, "vcl.test/1", {**PARAMS, "input": "../data/other.zarr"}, paths=("input",))
    # a key not declared a path is still compared as it is
    with pytest.raises(OutputError, match="different parameters"):
        StoreWriter(out, "vcl.test/1", {**PARAMS, "input": "../data/in.zarr", "method": "x"})


def test_a_partial_recording_paths_as_typed_resumes_and_is_upgraded(
    tmp_path: Path, monkeypatch
) -> None:
    """A partial written before paths were recorded absolute (as typed, relative to the
    writer's folder, no vcl_path_params) resumes from that folder when the paths name
    the same files; its params then record them as this writer does."""
    (tmp_path / "in.zarr").mkdir()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "p.zarr"
    _killed(out, {**PARAMS, "input": "in.zarr"}, paths=())  # the older writer
    assert zarr_attrs(partial_path(out))["params"]["input"] == "in.zarr"
    writer = StoreWriter(out, "vcl.test/1", {**PARAMS, "input": "./in.zarr"}, paths=("input",))
    assert writer.resumed and writer.done_groups == set(IDS[:2])
    assert writer.group.attrs["params"]["input"] == str(tmp_path / "in.zarr")
    assert writer.group.attrs["vcl_path_params"] == ["input"]


def test_record_path_and_same_path(tmp_path: Path, monkeypatch) -> None:
    from vcl.io.store import record_path, same_path

    monkeypatch.chdir(tmp_path)
    assert record_path("a/./b/../c") == str(tmp_path / "a" / "c")
    assert record_path(["x", "/y//z"]) == [str(tmp_path / "x"), "/y/z"]
    assert record_path("-") == "-" and record_path(None) is None
    assert record_path("random:resnet18") == "random:resnet18"
    assert record_path("weights:resnet18:w.pth") == f"weights:resnet18:{tmp_path / 'w.pth'}"
    assert same_path("weights:resnet18:w.pth", f"weights:resnet18:{tmp_path}/w.pth")
    assert not same_path("weights:resnet18:w.pth", f"weights:resnet50:{tmp_path}/w.pth")
    assert not same_path("random:resnet18", "random:resnet50")
    assert not same_path(["a", "b"], ["b", "a"]) and same_path(["a"], ["./a"])
    assert not same_path("a", ["a"])
    assert not same_path("-", "./-")


def zarr_attrs(path: Path) -> dict:
    import zarr

    return dict(zarr.open_group(str(path), mode="r").attrs)
