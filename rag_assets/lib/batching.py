"""Group document partitions into ranged runs (docs/architecture.md, decision 4)."""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(
    ordered_keys: Sequence[str], wanted: set[str] | Sequence[str], max_batch: int
) -> list[tuple[str, str]]:
    """Ranges (first, last) over `ordered_keys` that cover exactly the `wanted` keys.

    A Dagster run targets one contiguous range of a dynamic partitions definition, so a run
    holds a contiguous stretch of wanted keys, at most `max_batch` of them.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    wanted = set(wanted)
    missing = wanted.difference(ordered_keys)
    if missing:
        raise ValueError(f"keys not among the partitions: {sorted(missing)[:5]}")
    batches: list[tuple[str, str]] = []
    run: list[str] = []
    for key in ordered_keys:
        if key in wanted:
            run.append(key)
            if len(run) == max_batch:
                batches.append((run[0], run[-1]))
                run = []
        elif run:
            batches.append((run[0], run[-1]))
            run = []
    if run:
        batches.append((run[0], run[-1]))
    return batches
