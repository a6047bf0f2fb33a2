"""Group document partitions into ranged runs (docs/architecture.md, decision 4)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence


def plan_batches(
    ordered_keys: Sequence[str | None], wanted: set[str] | Sequence[str], max_batch: int
) -> list[tuple[str, str]]:
    """Ranges (first, last) over `ordered_keys` that cover exactly the `wanted` keys.

    A Dagster run targets one contiguous range of a dynamic partitions definition, so a run
    holds a contiguous stretch of wanted keys, at most `max_batch` of them. A None in
    `ordered_keys` stands for keys that are not wanted (`in_storage_order`).
    """
    return [(members[0], members[-1]) for members in plan_batch_members(ordered_keys, wanted, max_batch)]


def plan_batch_members(
    ordered_keys: Sequence[str | None], wanted: set[str] | Sequence[str], max_batch: int
) -> list[list[str]]:
    """The keys of each of `plan_batches`' ranges, in order: what a run of that range holds."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    wanted = set(wanted)
    missing = wanted.difference(ordered_keys)
    if missing:
        raise ValueError(f"keys not among the partitions: {sorted(missing)[:5]}")
    batches: list[list[str]] = []
    run: list[str] = []
    for key in ordered_keys:
        if key in wanted:
            run.append(key)
            if len(run) == max_batch:
                batches.append(run)
                run = []
        elif run:
            batches.append(run)
            run = []
    if run:
        batches.append(run)
    return batches


def in_storage_order(ids: Mapping[str, int], occupied: Callable[[int, int], bool]) -> list[str | None]:
    """The keys of `ids` (key -> storage id, which orders a dynamic partitions definition) in
    that order, with a None where other keys lie between two of them: `occupied(low, high)`
    says whether the definition holds a key with an id in [low, high]. What `plan_batches`
    needs to know of a million keys, learnt from the wanted ones (docs/decisions.md D38)."""
    out: list[str | None] = []
    previous: int | None = None
    for key, storage_id in sorted(ids.items(), key=lambda item: item[1]):
        if previous is not None and storage_id > previous + 1 and occupied(previous + 1, storage_id - 1):
            out.append(None)
        out.append(key)
        previous = storage_id
    return out
