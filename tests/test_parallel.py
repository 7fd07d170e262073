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
