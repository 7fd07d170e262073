from __future__ import annotations

import pytest

from vcl.parallel import parallel_map, parse_shard, select_shard


def test_parse_shard() -> None:
    assert parse_shard("2/8") == (2, 8)
    for bad in ["8/8", "-1/4", "1/0", "a/b", "3", "1/2/3"]:
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_shards_partition_ids_stably() -> None:
    ids = [f"video_{i:05d}" for i in range(1000)]
    shards = [select_shard(ids, (i, 7), str) for i in range(7)]
    assert sorted(x for s in shards for x in s) == sorted(ids)  # disjoint and complete
    assert min(map(len, shards)) > 100  # roughly balanced
    assert all(s == sorted(s) for s in shards)  # original order kept
    reordered = [*ids[::-1], "new_video"]
    assert set(select_shard(reordered, (3, 7), str)) - {"new_video"} == set(shards[3])
    assert select_shard(ids, None, str) == ids


def square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("workers", [1, 2])
def test_parallel_map_keeps_order(workers: int) -> None:
    assert list(parallel_map(square, range(50), workers)) == [x * x for x in range(50)]


WORKER_SCRIPT = """
import signal, sys, time
from vcl.parallel import parallel_map

def slow(x):
    time.sleep(120)
    return x

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as vcl.cli.app.main does
    try:
        for _ in parallel_map(slow, range(6), 2):
            pass
    except KeyboardInterrupt:
        sys.exit(130)
"""


def _children(pid: int) -> list[int]:
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/stat"), reason="needs /proc")
def test_terminated_run_stops_its_workers(tmp_path) -> None:
    """`kill` of a --workers run killed the parent only: its workers were orphaned and
    went on; and shutdown() on Ctrl-C waited for every task in flight."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "run.py"
    script.write_text(WORKER_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)])
    workers: list[int] = []
    for _ in range(300):  # the pool starts its workers at the first submit
        workers = _children(proc.pid)
        if len(workers) >= 2:
            break
        time.sleep(0.05)
    assert len(workers) >= 2
    time.sleep(0.5)  # the tasks are running
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=60) == 130  # a hang bound, not a speed test: tasks take 120 s
    finally:
        for pid in [proc.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid in workers:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert stat[0] == "Z", f"worker {pid} still running"


def test_the_cli_ends_on_sigterm_as_on_ctrl_c(monkeypatch) -> None:
    import signal

    from vcl.cli import app

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr("sys.argv", ["vcl", "--version"])
    try:
        with pytest.raises(SystemExit):
            app.main()
        assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, before)


def test_workers_0_counts_the_cores_this_process_may_use(monkeypatch) -> None:
    """Under taskset or a SLURM cpuset, '--workers 0' (one per core) started one process
    per core of the machine, not of the job."""
    import os

    from vcl.parallel import resolve_workers

    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert resolve_workers(0) == 1 and resolve_workers(5) == 5
