"""zarr stores: atomic, resumable columnar tables and plain arrays, with provenance.

Layout of a store (a zarr v3 group, zstd-compressed arrays):

- attrs: ``vcl_schema`` ("vcl.<kind>/<major>"), ``vcl_version``, ``command``,
  ``params``, ``seed``, ``created``, ``vcl_every_chunk`` (every chunk has a file, so
  a missing one is damage), and ``vcl_complete`` once fully written;
- columns: arrays sharing their first axis (one row per box, per trajectory, per
  image...), listed in ``attrs["vcl_columns"]``;
- groups: rows arrive one group at a time (usually one video), recorded in the
  arrays ``group_ids`` and ``group_rows``; a group's rows are contiguous, in order;
- plain arrays: anything else (a PCA basis, GMM means...).

A writer builds the store at ``NAME.partial`` and renames it to ``NAME`` only when it
closes without error, after setting ``vcl_complete``; readers refuse anything else.
A rerun finds ``NAME.partial``, checks its parameters are the same and that it holds
no group outside the rerun's input (see `check_resumable`), truncates rows of a group
whose commit did not finish, and skips the groups already written.
Groups are queued and flushed in batches of about a chunk (or every 30 s, so a
kill of a slow stage loses little); a flush writes the rows
first and the ``group_rows`` entries last, so those are the commit: a kill at any
moment loses at most the batch in flight.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vcl.errors import DataError, MissingInputError, OutputError, UsageError

COMPLETE = "vcl_complete"
# The major version of each kind of store this vcl writes and reads. `Store(path,
# version=KNOWN)` holds a store of one of these kinds to its version; a store of another
# kind (another tool's descriptors, which `vcl fisher fit` reads as plain columns) has
# no version vcl could check and is read as it is.
STORE_VERSIONS: dict[str, int] = {
    "clusters": 1,
    "crops": 1,
    "features": 1,
    "fisher_model": 1,
    "frames": 1,
    "idt": 1,
    "proposals": 1,
}
KNOWN = "known"
# zarr 3 skips chunks equal to the fill value unless each handle asks otherwise (the
# setting is not stored): stores without this mark may lack such chunks legitimately.
EVERY_CHUNK = "vcl_every_chunk"
_WRITE_EVERY_CHUNK = {"write_empty_chunks": True}
GROUP_IDS, GROUP_ROWS = "group_ids", "group_rows"
_CHUNK_BYTES = 4 << 20  # ~4 MiB of raw data per chunk: few files, cheap partial reads
_FLUSH_SECONDS = 30.0  # slow stages (idt, fisher) commit finished videos at least this often


def check_version(schema: str, kind: str, major: int, want: int, path: str | Path) -> None:
    """Refuse a file of schema ``vcl.<kind>/<major>`` unless ``major`` is ``want``, the
    version this vcl reads: the one message every reader gives for another version."""
    if major != want:
        raise DataError(
            f"schema {schema} is not the vcl.{kind}/{want} this vcl reads",
            path,
            "upgrade vcl" if major > want else "convert it",
        )


def partial_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".partial")


def make_parent(path: str | Path) -> None:
    """Make the folder ``path`` goes in, as every stage makes its ``-o`` folder; one that
    cannot be made (a file in the way, no permission) is an `OutputError` naming ``path``."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # a file where a folder goes: "File exists" or "Not a directory" says little
        blocker = next((p for p in Path(path).parents if p.is_file()), None)
        why = exc.strerror if blocker is None else f"{blocker} is a file"
        raise OutputError(f"cannot create its folder ({why})", path) from None


def check_output(path: str | Path, overwrite: bool, store: str | None = None) -> None:
    """Refuse an output that cannot be written before the work that fills it, not after:
    one that exists without ``overwrite`` (--overwrite), one whose folder cannot be made
    (a file in the way, no permission; the folder is made here), and ``-`` when
    ``store`` says what the output is (see `refuse_stdout`); with ``store`` None, ``-``
    is stdout and passes. Each is an error naming ``path``."""
    if store is not None:
        refuse_stdout(path, store)
    elif str(path) == "-":
        return
    if Path(path).exists() and not overwrite:
        raise OutputError("exists already", path, "pass --overwrite to replace it")
    make_parent(path)


def refuse_stdout(output: str | Path, what: str, option: str = "-o") -> None:
    """Refuse ``-o -`` for an output that is not a stream: ``-`` means stdout, which
    takes JSONL or JSON only; a store (a folder of chunk files) or an index file given
    ``-`` would be written as a file or folder named ``-`` that no later stage looks
    for. ``what`` says what the output is, e.g. "the output is a zarr store"."""
    if str(output) == "-":
        raise UsageError(f"{what}, which cannot go to stdout", f"{option} -", "give a path")


# Parameters that name files (an input, a model) are compared by what they name, not
# as typed: ``runs/odct``, ``./runs/odct`` and ``/home/me/runs/odct`` typed in /home/me
# are one model, and shards run from different folders are one run. Writers record
# them absolute and normalised, symlinks kept (`record_path`), and list their names in
# the attribute PATH_PARAMS; stores written before recorded them as typed, relative
# to the writer's working directory, which is where a relative one is looked up.
PATH_PARAMS = "vcl_path_params"


def _spec_path(value: str) -> tuple[str, str | None]:
    """``(prefix, path)`` of a value naming a file: ``-`` (stdin) and ``random:ARCH``
    (a model spec of `vcl embed`) name none (path None); ``weights:ARCH:PATH`` names
    PATH after the prefix ``weights:ARCH:``; anything else is a path, prefix ``""``."""
    if value == "-" or value.startswith("random:"):
        return value, None
    if value.startswith("weights:"):
        parts = value.split(":", 2)
        if len(parts) == 3 and parts[2]:
            return f"weights:{parts[1]}:", parts[2]
        return value, None
    return "", value


def record_path(value: Any) -> Any:
    """A parameter naming files as stores record it: each path absolute and normalised
    (``./a/../b`` typed in /w: ``/w/b``), symlinks not resolved (a link's name is what
    the user gave); a list element-wise; None, ``-`` and ``random:ARCH`` as they are."""
    if isinstance(value, (list, tuple)):
        return [record_path(v) for v in value]
    if value is None:
        return None
    value = str(value)
    prefix, path = _spec_path(value)
    return value if path is None else prefix + os.path.normpath(os.path.abspath(path))


def same_path(a: Any, b: Any) -> bool:
    """Whether two recorded values of a parameter naming files name the same files: the
    same paths once absolute and normalised (a relative one, from an older store, is
    read from the working directory), or two paths of one existing file (a symlink and
    its target, a folder reached through a link); lists element-wise."""
    if isinstance(a, list) or isinstance(b, list):
        return (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(same_path(x, y) for x, y in zip(a, b, strict=True))
        )
    if not isinstance(a, str) or not isinstance(b, str):
        return bool(a == b)
    (prefix_a, path_a), (prefix_b, path_b) = _spec_path(a), _spec_path(b)
    if path_a is None or path_b is None or prefix_a != prefix_b:
        return a == b
    if record_path(path_a) == record_path(path_b):
        return True
    try:
        return os.path.samefile(path_a, path_b)
    except (OSError, ValueError):
        return False


def path_params(*attrs: Mapping[str, Any]) -> set[str]:
    """The names of the parameters naming files, as any of these stores' attrs list them
    (a store written before they were listed lists none)."""
    names: set[str] = set()
    for a in attrs:
        names.update(str(k) for k in a.get(PATH_PARAMS) or ())
    return names


def differing_params(a: Any, b: Any, paths: Iterable[str] = ()) -> list[str]:
    """The keys whose values differ between two stores' params (None: no params), those
    in ``paths`` compared by the files they name (`same_path`)."""
    a, b, paths = a or {}, b or {}, set(paths)
    return sorted(
        str(k)
        for k in set(a) | set(b)
        if not (same_path(a.get(k), b.get(k)) if k in paths else a.get(k) == b.get(k))
    )


def discard_other_run(partial: Path, differ: str, done: int, overwrite: bool, what: str) -> None:
    """The one policy for a ``.partial`` made with other parameters (``differ`` says
    which), shared by stores and JSONL writers: it is discarded (the caller deletes it)
    when it holds nothing finished (``done`` == 0: a first run that failed at once must
    not block the corrected rerun) or under --overwrite ("replace the output" covers an
    unfinished one); otherwise refused, so finished work is not thrown away unasked."""
    from vcl.console import log

    if done == 0:
        log.info("%s: discarded, made with %s and holding nothing", partial, differ)
    elif overwrite:
        log.warning("%s: discarded (--overwrite), made with %s", partial, differ)
    else:
        raise OutputError(
            f"an interrupted run with {differ} left this {what}",
            partial,
            "rerun with the same parameters to resume, or pass --overwrite (or delete it) "
            "to start over",
        )


def check_resumable(
    partial: Path, done: Iterable[str], groups: Iterable[str] | None, overwrite: bool
) -> bool:
    """Whether the groups an interrupted run committed to ``partial`` may be resumed.

    A resumed output must hold groups of this run's input only: a rerun on another
    input list (a video dropped or renamed, another shard) would otherwise finish with
    the old run's videos in it under this run's command line, an output claiming to be
    made from inputs it was not. Dropping the stale groups is not offered: rows are
    contiguous per group, so it means rewriting every column (or every JSONL line)
    behind the user's back. A partial with stale groups is refused, naming them; with
    ``overwrite`` (--overwrite) it is discarded instead and False returned, so the
    caller starts over. ``groups`` None: the writer has no per-input groups to check.
    """
    if groups is None:
        return True
    wanted = set(groups)
    stale = [g for g in done if g not in wanted]
    if not stale:
        return True
    shown = ", ".join(repr(g) for g in stale[:3]) + (", ..." if len(stale) > 3 else "")
    what = f"{len(stale)} groups ({shown})" if len(stale) > 1 else shown
    if overwrite:
        from vcl.console import log

        log.warning("%s: discarded, it holds %s, which this run's input lacks", partial, what)
        return False
    raise OutputError(
        f"an interrupted run on other inputs left {what}, which this run's input lacks",
        partial,
        "rerun with the same inputs to resume, or pass --overwrite (or delete it) to start over",
    )


def provenance(schema: str, params: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
    """The attrs every output carries: schema, version, command line, params, seed, time."""
    import shlex

    from vcl import __version__

    return {
        "vcl_schema": schema,
        "vcl_version": __version__,
        "command": shlex.join(["vcl", *sys.argv[1:]]) if sys.argv else "",
        "params": _jsonable(dict(params)),
        "seed": seed,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _jsonable(value: Any) -> Any:
    """Make params JSON-serialisable (numpy scalars and paths are not)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _chunk_rows(dtype: np.dtype, trailing: tuple[int, ...]) -> int:
    row_bytes = max(1, int(np.prod(trailing, dtype=np.int64)) * np.dtype(dtype).itemsize)
    return int(min(1 << 16, max(1, _CHUNK_BYTES // row_bytes)))


def _create_array(
    group: Any,
    name: str,
    dtype: Any,
    trailing: tuple[int, ...],
    fill_value: Any = None,
    chunk_rows: int | None = None,
) -> Any:
    import zarr.codecs

    is_str = dtype is str
    chunk = 4096 if is_str else _chunk_rows(np.dtype(dtype), trailing)
    if chunk_rows is not None:
        chunk = int(chunk_rows)
    return group.create_array(
        name,
        shape=(0, *trailing),
        chunks=(chunk, *trailing),
        dtype=dtype,
        fill_value=fill_value,
        compressors=None if is_str else zarr.codecs.ZstdCodec(level=3),
        config=_WRITE_EVERY_CHUNK,  # so a missing chunk file means damage
    )


def _committed(group: Any) -> tuple[int, int]:
    """``(groups, rows)`` committed: the groups before the first unfinished entry."""
    rows = group[GROUP_ROWS][:]
    ids = group[GROUP_IDS][:]
    n = min(len(rows), len(ids))
    bad = np.flatnonzero((rows[:n] < 0) | (ids[:n] == ""))
    n = int(bad[0]) if bad.size else n
    return n, int(rows[:n].sum())


class StoreWriter:
    """Write a store atomically and resumably; use as a context manager.

    >>> with StoreWriter("p.zarr", "vcl.proposals/1", params, seed, groups=ids) as w:
    ...     w.define_columns({"frame": ("int32", ()), "box": ("float32", (4,))})
    ...     for vid in ids:
    ...         if vid not in w.done_groups:
    ...             w.append_group(vid, frame=..., box=...)
    """

    def __init__(
        self,
        path: str | Path,
        schema: str,
        params: Mapping[str, Any],
        seed: int | None = None,
        overwrite: bool = False,
        groups: Iterable[str] | None = None,
        paths: Iterable[str] = (),
    ):
        """``groups``: the ids of every group this run is to write (its input, after
        --shard); a partial store holding others is not resumed (`check_resumable`).
        ``paths``: the keys of ``params`` that name files (inputs, a model), recorded
        absolute (`record_path`) and compared by what they name (`same_path`)."""
        import zarr

        refuse_stdout(path, f"the output is a zarr store ({schema})")
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.overwrite = overwrite
        if self.path.exists() and not overwrite:
            raise OutputError("exists already", self.path, "pass --overwrite to replace it")
        self.paths = sorted(k for k in paths if k in params)
        params = {k: record_path(v) if k in self.paths else v for k, v in params.items()}
        attrs = provenance(schema, params, seed)
        if self.paths:
            attrs[PATH_PARAMS] = self.paths
        self.resumed = False
        group = self._reopen(attrs, groups) if self.partial.exists() else None
        if group is not None:
            self.group = group
            self.resumed = True
        else:
            try:
                self.partial.parent.mkdir(parents=True, exist_ok=True)
                self.group = zarr.open_group(str(self.partial), mode="w", zarr_format=3)
            except OSError as exc:
                raise OutputError(f"cannot create ({exc.strerror})", self.partial) from None
            # a resumed store keeps its own mark: older writers could skip chunks
            self.group.attrs.update({**attrs, "vcl_columns": [], EVERY_CHUNK: True})
            _create_array(self.group, GROUP_IDS, str, ())
            _create_array(self.group, GROUP_ROWS, "int64", (), fill_value=-1)
        self._arrays: dict[str, Any] = {}
        self._trim_uncommitted()
        ids = self.group[GROUP_IDS][:]
        self.done_groups: set[str] = {str(i) for i in ids}
        self._pending: list[tuple[str, int, dict[str, np.ndarray]]] = []
        self._pending_bytes = 0
        self._last_flush = time.monotonic()

    def _reopen(self, attrs: dict[str, Any], groups: Iterable[str] | None) -> Any:
        """The partial store to resume, or None when it is discarded and the run starts
        over: a kill left it before anything was committed (while its attributes or group
        arrays were being created), or it holds groups of another input (with
        --overwrite, see `check_resumable`), or it was made with other parameters and
        holds no committed group (nothing is lost: a first run that failed at once does
        not block the corrected rerun) or --overwrite is given ("replace the output"
        covers an unfinished one). Other parameters otherwise are refused."""
        import zarr

        try:
            group = zarr.open_group(str(self.partial), mode="r+")
            old = dict(group.attrs)
        except Exception as exc:
            raise OutputError(
                f"an interrupted run left an unreadable store ({exc})",
                self.partial,
                "delete it and rerun",
            ) from None
        if "vcl_schema" not in old or GROUP_IDS not in group or GROUP_ROWS not in group:
            shutil.rmtree(self.partial)
            return None
        paths = set(self.paths) | path_params(old)
        keys = differing_params(old.get("params"), attrs["params"], paths)
        if old.get("vcl_schema") != attrs["vcl_schema"]:
            keys = ["schema", *keys]
        n, _ = _committed(group)
        if keys:
            differ = f"different parameters (differ: {', '.join(keys)})"
            discard_other_run(self.partial, differ, n, self.overwrite, "store")
            shutil.rmtree(self.partial)
            return None
        done = [str(i) for i in group[GROUP_IDS][:n]]
        if not check_resumable(self.partial, done, groups, self.overwrite):
            shutil.rmtree(self.partial)
            return None
        # params naming the same files, recorded now as this writer records them
        new = {k: attrs[k] for k in ("command", "params", PATH_PARAMS) if k in attrs}
        group.attrs.update({**new, "resumed": attrs["created"]})
        return group

    def _trim_uncommitted(self) -> None:
        """Drop rows and group entries written after the last committed group."""
        n, committed = _committed(self.group)
        for arr in (self.group[GROUP_ROWS], self.group[GROUP_IDS]):
            if arr.shape[0] != n:
                arr.resize((n,))
        for name in self.columns:
            arr = self.group[name]
            if arr.shape[0] != committed:
                arr.resize((committed, *arr.shape[1:]))

    @property
    def columns(self) -> list[str]:
        return list(self.group.attrs.get("vcl_columns", []))

    def _array(self, name: str) -> Any:
        """Open handles are cached: each lookup otherwise rereads the array's metadata.

        A reopened array forgets ``write_empty_chunks``, so it is set again here.
        """
        if name not in self._arrays:
            self._arrays[name] = self.group[name].with_config(_WRITE_EVERY_CHUNK)
        return self._arrays[name]

    @property
    def n_rows(self) -> int:
        """Rows committed to disk (queued groups not included)."""
        return int(self.group[GROUP_ROWS][:].sum())

    def define_columns(
        self,
        spec: Mapping[str, tuple[Any, tuple[int, ...]]],
        chunk_rows: Mapping[str, int] | None = None,
    ) -> None:
        """Declare columns ``name -> (dtype, trailing shape)``; a no-op when resuming.

        ``chunk_rows`` optionally sets rows per chunk for some columns (default: about
        4 MiB a chunk), e.g. one image a chunk so random single-row reads stay cheap.
        """
        existing = self.columns
        if existing:
            if sorted(existing) != sorted(spec):
                raise OutputError(
                    "store being resumed has other columns", self.partial, "delete it and rerun"
                )
            return
        for name, (dtype, trailing) in spec.items():
            if name in self.group:  # a run killed while declaring columns left it (no rows)
                del self.group[name]
            rows = None if chunk_rows is None else chunk_rows.get(name)
            _create_array(self.group, name, dtype, tuple(trailing), chunk_rows=rows)
        self.group.attrs["vcl_columns"] = list(spec)

    def append_group(self, group_id: str, **columns: np.ndarray) -> None:
        """Queue one group's rows (all columns, same length); flushed in chunk-sized batches.

        Batching keeps writes chunk-aligned (one zarr write per column per batch instead
        of a read-modify-write per group); a kill loses at most the unflushed batch,
        which a rerun redoes.
        """
        if group_id in self.done_groups:
            raise ValueError(f"group {group_id!r} is already in the store")
        if sorted(columns) != sorted(self.columns):
            raise ValueError(f"need exactly the columns {self.columns}, got {sorted(columns)}")
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of group {group_id!r} differ in length: {lengths}")
        n = lengths.pop() if lengths else 0
        batch = {}
        for name, values in columns.items():
            arr = self._array(name)
            values = np.asarray(values)
            if arr.dtype.kind == "T":  # rows read from a store come as StringDType
                values = (values.astype(object) if values.dtype.kind == "T" else values).astype(str)
            else:
                values = values.astype(arr.dtype, copy=False)
            if values.shape[1:] != arr.shape[1:]:
                raise ValueError(
                    f"column {name!r} rows must be {arr.shape[1:]}, got {values.shape[1:]}"
                )
            batch[name] = values
        self._pending.append((group_id, n, batch))
        self._pending_bytes += sum(v.nbytes for v in batch.values())
        self.done_groups.add(group_id)
        if (
            self._pending_bytes >= _CHUNK_BYTES
            or len(self._pending) >= 1024
            or time.monotonic() - self._last_flush >= _FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        """Write queued groups: rows first, then ids, then row counts (the commit)."""
        if not self._pending:
            return
        for name in self._pending[0][2]:
            parts = [batch[name] for _, n, batch in self._pending if n]
            if parts:
                self._array(name).append(np.concatenate(parts), axis=0)
        self._array(GROUP_IDS).append(np.array([g for g, _, _ in self._pending], dtype=str))
        rows = np.array([n for _, n, _ in self._pending], dtype=np.int64)
        self._array(GROUP_ROWS).append(rows)  # the commit
        self._pending, self._pending_bytes = [], 0
        self._last_flush = time.monotonic()

    def write_array(self, name: str, values: np.ndarray) -> None:
        """Write a plain (non-column) array whole, replacing any earlier one."""
        import zarr.codecs

        values = np.asarray(values)
        if name in self.group:
            del self.group[name]
        self._arrays.pop(name, None)
        arr = self.group.create_array(
            name,
            shape=values.shape,
            dtype=values.dtype if values.dtype.kind != "U" else str,
            chunks=values.shape if values.size else None,
            compressors=None if values.dtype.kind == "U" else zarr.codecs.ZstdCodec(level=3),
            config=_WRITE_EVERY_CHUNK,
        )
        if values.size:
            arr[...] = values

    def set_attrs(self, **attrs: Any) -> None:
        self.group.attrs.update(_jsonable(attrs))

    def finish(self) -> Path:
        """Mark complete and move into place; the only way a store becomes readable."""
        self.flush()
        self.group.attrs[COMPLETE] = True
        old = None
        if self.path.exists():
            old = self.path.with_name(f"{self.path.name}.old-{os.getpid()}")
            os.replace(self.path, old)
        os.replace(self.partial, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.path

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.finish()
        else:  # keep the finished groups for a rerun to resume; readers refuse .partial
            self.flush()


class WriteBehind:
    """A `StoreWriter`'s writes (``append_group``, or any ``call``) run in order on one
    background thread, so that the caller computes the next group while the last is
    compressed and written (zstd and file writes release the GIL). Use as a context
    manager inside the writer's own; the writer is not to be touched meanwhile.

    At most ``depth`` calls wait in the queue (a caller faster than the disk waits
    rather than piling groups up in memory). An error in the thread is raised in the
    caller by its next call or on leaving the block; the calls queued after it are
    dropped (their groups are not committed: a rerun redoes them). Leaving the block on
    the caller's error (Ctrl-C, SIGTERM, bad data) first lets the thread write what was
    queued, so the writer's exit flushes a store no thread still writes to and leaves
    the ``.partial`` a sequential run would.
    """

    def __init__(self, writer: StoreWriter, depth: int = 1):
        import queue
        import threading

        self.writer = writer
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vcl-write-behind", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args, kwargs = item
            if self._error is None:
                try:
                    fn(*args, **kwargs)
                except BaseException as exc:  # raised in the caller
                    self._error = exc

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Queue ``fn(*args, **kwargs)`` (arguments the caller no longer changes)."""
        if self._error is not None:
            raise self._error
        self._queue.put((fn, args, kwargs))

    def append_group(self, group_id: str, **columns: np.ndarray) -> None:
        self.call(self.writer.append_group, group_id, **columns)

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # The write under way must end before the writer flushes or finishes: a second
        # Ctrl-C waits for it (raised afterwards when nothing else is on its way out).
        interrupt, stopped = None, False
        while self._thread.is_alive():
            try:
                if not stopped:
                    self._queue.put(None)
                    stopped = True
                self._thread.join()
            except KeyboardInterrupt as signal:
                interrupt = signal
        if exc_type is None:
            if self._error is not None:
                raise self._error
            if interrupt is not None:
                raise interrupt


class Store:
    """A complete store opened for reading; refuses partial or foreign stores."""

    def __init__(
        self, path: str | Path, kind: str | None = None, version: int | str | None = KNOWN
    ):
        """``kind``: the store must be a ``vcl.<kind>`` one. ``version``: its major
        version must be this one; `KNOWN` (the default, so that every reader refuses a
        newer store): the one `STORE_VERSIONS` gives its kind (any when vcl does not
        know the kind); None: not checked."""
        import zarr

        from vcl.io.manifest import parse_schema

        self.path = Path(path)
        name = str(self.path)
        if name.endswith(".partial") or (
            not self.path.exists() and partial_path(self.path).exists()
        ):
            raise DataError(
                "incomplete: an interrupted write left only a .partial store",
                name,
                "rerun the command that makes it to resume",
            )
        if not self.path.exists():
            raise MissingInputError("no such store", name)
        try:
            self.group = zarr.open_group(name, mode="r")
            self.attrs: dict[str, Any] = dict(self.group.attrs)
        except Exception as exc:
            raise DataError(f"not a readable zarr store ({type(exc).__name__})", name) from None
        schema = self.attrs.get("vcl_schema")
        if schema is None:
            raise DataError("not a vcl store (no vcl_schema attribute)", name)
        try:
            self.kind, self.version = parse_schema(schema)
        except ValueError as exc:
            raise DataError(str(exc), name) from None
        if not self.attrs.get(COMPLETE):
            raise DataError(
                "incomplete: the writer did not finish (no completion mark)",
                name,
                "rerun the command that makes it",
            )
        if kind is not None and self.kind != kind:
            raise DataError(f"is a vcl.{self.kind} store, expected vcl.{kind}", name)
        if version == KNOWN:
            version = STORE_VERSIONS.get(self.kind)
        if version is not None:
            check_version(schema, self.kind, self.version, int(version), name)
        self.columns: list[str] = list(self.attrs.get("vcl_columns", []))
        self.group_ids: list[str] = [str(i) for i in self.group[GROUP_IDS][:]]
        rows = self.group[GROUP_ROWS][:]
        self.offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        self.n_rows = int(self.offsets[-1])
        for column in self.columns:
            if self.group[column].shape[0] != self.n_rows:
                raise DataError(
                    f"column {column!r} has {self.group[column].shape[0]} rows, "
                    f"expected {self.n_rows}: the store is truncated or damaged",
                    name,
                    "rerun the command that makes it",
                )
        self._index = {gid: i for i, gid in enumerate(self.group_ids)}

    def __getitem__(self, name: str) -> Any:
        return self.group[name]

    def __contains__(self, name: str) -> bool:
        return name in self.group

    @property
    def arrays(self) -> list[str]:
        return sorted(self.group.array_keys())

    def rows(self, group_id: str) -> slice:
        i = self._index[group_id]
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def read_group(self, group_id: str) -> dict[str, np.ndarray]:
        sl = self.rows(group_id)
        return {c: self.group[c][sl] for c in self.columns}

    def verify(self) -> list[str]:
        """Problems found by checking every chunk file is present and no row id is held
        twice (empty list: intact).

        Only stores marked ``vcl_every_chunk`` are checked: older ones may lack chunks
        that equal the fill value (an all-black crop, an unlabelled column), which
        read back correctly, so their absence is not damage.
        """
        problems: list[str] = []
        for name in self.arrays if self.attrs.get(EVERY_CHUNK) else ():
            arr = self.group[name]
            if arr.size and arr.nchunks_initialized != arr.nchunks:
                problems.append(
                    f"array {name!r} is missing {arr.nchunks - arr.nchunks_initialized}"
                    f" of {arr.nchunks} chunks"
                )
        if "id" in self.columns and not problems:  # a merge of overlapping shards, before
            ids = np.asarray(self["id"][:]).astype(object).astype(str)
            ids, counts = np.unique(ids, return_counts=True)
            if (counts > 1).any():  # merge refused them: readers of features refuse them
                problems.append(f"row id {str(ids[counts > 1][0])!r} is held twice")
        return problems

    def describe(self) -> dict[str, Any]:
        arrays = {}
        for name in self.arrays:
            arr = self.group[name]
            arrays[name] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
        keys = ("vcl_version", "command", "params", "seed", "created")
        return {
            "path": str(self.path),
            "type": "store",
            "schema": self.attrs["vcl_schema"],
            "rows": self.n_rows,
            "groups": len(self.group_ids),
            "columns": self.columns,
            "arrays": arrays,
            **{k: self.attrs.get(k) for k in keys},
        }
