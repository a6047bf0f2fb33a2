import random

import pytest

from rag_assets.lib.batching import plan_batches

KEYS = list("abcdefgh")


@pytest.mark.parametrize(
    "wanted, max_batch, expected",
    [
        (KEYS, 3, [("a", "c"), ("d", "f"), ("g", "h")]),
        (KEYS, 100, [("a", "h")]),
        ({"b", "c", "e", "f", "g"}, 10, [("b", "c"), ("e", "g")]),
        ({"c", "d", "e", "f"}, 2, [("c", "d"), ("e", "f")]),
        (["a", "h"], 1, [("a", "a"), ("h", "h")]),
        ({"a", "c", "e"}, 5, [("a", "a"), ("c", "c"), ("e", "e")]),
        (set(), 5, []),
    ],
)
def test_plan_batches(wanted, max_batch, expected):
    assert plan_batches(KEYS, wanted, max_batch) == expected


@pytest.mark.parametrize("seed", range(20))
def test_plan_batches_covers_exactly_the_wanted_keys(seed):
    rng = random.Random(seed)
    keys = [f"k{i:03d}" for i in range(rng.randint(1, 60))]
    wanted = {k for k in keys if rng.random() < 0.6}
    max_batch = rng.randint(1, 8)
    covered = []
    for first, last in plan_batches(keys, wanted, max_batch):
        stretch = keys[keys.index(first) : keys.index(last) + 1]
        assert set(stretch) <= wanted  # a range never includes an unwanted key
        assert 1 <= len(stretch) <= max_batch
        covered += stretch
    assert sorted(covered) == sorted(wanted)  # each wanted key exactly once


def test_plan_batches_unknown_key():
    with pytest.raises(ValueError, match="not among the partitions"):
        plan_batches(KEYS, {"a", "zz"}, 3)


@pytest.mark.parametrize("max_batch", [0, -1])
def test_plan_batches_max_batch(max_batch):
    with pytest.raises(ValueError, match="max_batch"):
        plan_batches(KEYS, {"a"}, max_batch)
