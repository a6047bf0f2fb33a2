import random

import pytest

from rag_assets.lib.batching import in_storage_order, plan_batch_members, plan_batches

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
    members = plan_batch_members(keys, wanted, max_batch)
    assert [keys[keys.index(m[0]) : keys.index(m[-1]) + 1] for m in members] == members  # the ranges' keys


def test_plan_batches_unknown_key():
    with pytest.raises(ValueError, match="not among the partitions"):
        plan_batches(KEYS, {"a", "zz"}, 3)


@pytest.mark.parametrize("max_batch", [0, -1])
def test_plan_batches_max_batch(max_batch):
    with pytest.raises(ValueError, match="max_batch"):
        plan_batches(KEYS, {"a"}, max_batch)


# --- The wanted keys' order without the others (in_storage_order, docs/decisions.md D38) ----


def occupied_in(ids: dict[str, int]):
    """`occupied` for a definition whose keys have these storage ids; records each question."""
    taken, asked = sorted(ids.values()), []

    def occupied(low: int, high: int) -> bool:
        asked.append((low, high))
        return any(low <= i <= high for i in taken)

    return occupied, asked


@pytest.mark.parametrize(
    "wanted, expected, questions",
    [
        ({"a": 1, "b": 2, "c": 3}, ["a", "b", "c"], 0),  # consecutive ids: nothing to ask
        ({"c": 3, "a": 1}, ["a", None, "c"], 1),  # b (id 2) lies between
        ({"a": 1, "e": 9}, ["a", None, "e"], 1),
        ({"d": 7, "e": 9}, ["d", "e"], 1),  # id 8 was deleted: d and e are neighbours
        ({"e": 9}, ["e"], 0),
        ({}, [], 0),
    ],
)
def test_in_storage_order(wanted, expected, questions):
    every = {"a": 1, "b": 2, "c": 3, "d": 7, "e": 9}  # ids 4-6 and 8 deleted
    occupied, asked = occupied_in(every)
    assert in_storage_order(wanted, occupied) == expected
    assert len(asked) == questions


@pytest.mark.parametrize("seed", range(20))
def test_batches_from_the_wanted_keys_alone_are_the_batches_from_every_key(seed):
    rng = random.Random(seed)
    ids = sorted(rng.sample(range(1, 400), rng.randint(1, 120)))  # the gaps are deleted keys
    every = {f"k{i:03d}": i for i in ids}
    keys = list(every)  # Dagster's order
    wanted = {k for k in keys if rng.random() < rng.random()}
    max_batch = rng.randint(1, 10)
    occupied, _ = occupied_in(every)
    ordered = in_storage_order({k: every[k] for k in wanted}, occupied)
    assert plan_batches(ordered, wanted, max_batch) == plan_batches(keys, wanted, max_batch)


def test_a_batch_of_new_keys_among_a_million_asks_nothing():
    every = {f"doc-{i:07d}": i for i in range(1, 1_000_001)}  # a million known, then 50 new ones
    new = {f"new-{i:02d}": 1_000_000 + i for i in range(1, 51)}
    occupied, asked = occupied_in({**every, **new})
    ordered = in_storage_order(new, occupied)
    assert plan_batches(ordered, set(new), 20) == [("new-01", "new-20"), ("new-21", "new-40"), ("new-41", "new-50")]
    assert asked == []
