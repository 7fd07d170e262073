"""Splitting work: ``--shard I/N`` across jobs and ``--workers N`` across processes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``: the third of eight jobs (0-based). ValueError otherwise."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {text!r} needs N >= 1 and 0 <= I < N")
    return index, count


def shard_of(item_id: str, count: int) -> int:
    """Which of ``count`` shards an id belongs to: a stable hash of the id.

    Hashing ids rather than positions keeps an item in the same shard when the
    manifest is reordered or grows, so reruns after an edit redo nothing twice.
    """
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % count


def select_shard(
    items: Sequence[T], shard: tuple[int, int] | None, key: Callable[[T], str]
) -> list[T]:
    """The items of one shard, in their original order (all items when shard is None)."""
    if shard is None:
        return list(items)
    index, count = shard
    return [item for item in items if shard_of(key(item), count) == index]


def available_cpus() -> int:
    """The CPU cores this process may run on: its affinity mask (``taskset``, a SLURM or
    container cpuset), as torch's DataLoader counts them; all cores where the system
    has no such mask."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def resolve_workers(workers: int) -> int:
    """``0`` means one worker per CPU core this process may use."""
    if workers < 0:
        raise ValueError("workers must be >= 0")
    return workers or available_cpus()


def parallel_map(fn: Callable[[T], U], items: Iterable[T], workers: int = 1) -> Iterator[U]:
    """``map`` in input order over ``workers`` processes (in-process when 1).

    At most ``2 × workers`` tasks are in flight, so results stream and memory stays
    bounded on long inputs. ``fn`` must be picklable (a module-level function).
    """
    workers = resolve_workers(workers)
    if workers == 1:
        yield from map(fn, items)
        return
    pending: list[Future[U]] = []
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()
    except BaseException:  # interrupted, a failed task, or the caller stopped reading
        _stop(pool)
        raise
    pool.shutdown()


def _stop(pool: ProcessPoolExecutor) -> None:
    """Drop the queued tasks and kill the workers now: shutdown() alone would wait for
    every task in flight (minutes of video each), and a killed parent left them running."""
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        process.kill()
    for process in workers:
        process.join(5)
