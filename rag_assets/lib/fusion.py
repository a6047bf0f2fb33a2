"""Reciprocal rank fusion: one ranking from several, by rank alone (Cormack, Clarke and
Büttcher, SIGIR 2009). Hybrid search fuses the vector and the keyword ranking with it
(`rag_assets.search`); scores of the two lists (cosine, BM25, ts_rank) are never compared.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

RRF_K = 60  # the constant of the paper; ranks past the first few count for little either way


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hashable]], k: int = RRF_K) -> list[tuple[Hashable, float]]:
    """Every item of the rankings once, best first, with its fused score: the sum over the
    rankings it is in of 1 / (k + rank), rank counted from 1 (a ranking that repeats an item
    counts its first place only).

    Ties are broken, in this order, by the best rank the item has in any ranking, then by the
    first ranking (in the order given) where it has that rank, then by the item itself (so
    items must be comparable with each other: ids). The same rankings always give the same
    list. An item in several rankings scores above an item in only one of them at a rank no
    better than its own best.
    """
    if k < 1:
        raise ValueError(f"the RRF constant must be at least 1, not {k}")
    terms: dict[Hashable, list[float]] = {}
    best: dict[Hashable, tuple[int, int]] = {}  # item -> (best rank, index of the ranking with it)
    for which, ranking in enumerate(rankings):
        seen = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            terms.setdefault(item, []).append(1.0 / (k + rank))
            if item not in best or rank < best[item][0]:
                best[item] = (rank, which)
    # fsum: correctly rounded, so equal multisets of terms give exactly equal scores.
    scored = [(item, math.fsum(parts)) for item, parts in terms.items()]
    scored.sort(key=lambda pair: (-pair[1], best[pair[0]], pair[0]))
    return scored


def best_fused_score(rankings: int, k: int = RRF_K) -> float:
    """The score of an item first in each of `rankings` rankings: the fused score's maximum,
    summed as the fused scores are (`rankings / (k + 1)` rounds differently: for 3 rankings and
    k=4 it is 0.6, below the 0.6000000000000001 an item first in all three scores)."""
    return math.fsum([1.0 / (k + 1)] * rankings)
