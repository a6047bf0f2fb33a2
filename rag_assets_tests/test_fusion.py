"""Reciprocal rank fusion (rag_assets/lib/fusion.py): examples, then properties."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rag_assets.lib.fusion import RRF_K, best_fused_score, reciprocal_rank_fusion


def order(rankings, k=RRF_K):
    return [item for item, _ in reciprocal_rank_fusion(rankings, k)]


@pytest.mark.parametrize(
    ("rankings", "expected"),
    [
        ([], []),
        ([[], []], []),
        ([["a", "b", "c"]], ["a", "b", "c"]),  # one list: its own order
        ([["a", "b", "c"], []], ["a", "b", "c"]),  # an empty side changes nothing
        ([[], ["x", "y"]], ["x", "y"]),
        ([["a", "b"], ["b", "a"]], ["a", "b"]),  # a tie (1+2 vs 2+1): best rank 1 in both, the first list's wins
        ([["b", "a"], ["a", "b"]], ["b", "a"]),
        ([["a", "b", "c"], ["c", "b", "a"]], ["a", "c", "b"]),  # 1+3 = 3+1 > 2+2: 1/61+1/63 > 2/62
        ([["v1", "both"], ["both", "k1"]], ["both", "v1", "k1"]),  # in both lists beats first in one
        ([["a", "x"], ["b", "x"]], ["x", "a", "b"]),  # second in both beats first in one
        ([["z"], ["a"]], ["z", "a"]),  # first in one list each: the first list's first
        ([["a", "a", "b"], ["b"]], ["b", "a"]),  # a repeat counts its first place only
        ([["a", "b"], ["c", "d"], ["b", "d"]], ["b", "d", "a", "c"]),  # three lists
    ],
)
def test_fused_order(rankings, expected):
    assert order(rankings) == expected


def test_scores_are_sums_of_reciprocal_ranks():
    fused = dict(reciprocal_rank_fusion([["a", "b"], ["b"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert best_fused_score(2) == pytest.approx(2 / 61) and best_fused_score(2) >= max(fused.values())
    assert dict(reciprocal_rank_fusion([["a"]], k=1)) == {"a": 0.5}


def test_a_bad_constant_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        reciprocal_rank_fusion([["a"]], k=0)


# --- properties ----------------------------------------------------------------------------

ids = st.integers(min_value=0, max_value=40)
ranking = st.lists(ids, unique=True, max_size=25)


@given(st.lists(ranking, max_size=4), st.integers(min_value=1, max_value=100))
def test_every_item_once_best_first_and_deterministic(rankings, k):
    fused = reciprocal_rank_fusion(rankings, k)
    items = [item for item, _ in fused]
    assert len(items) == len(set(items))  # no duplicates
    assert set(items) == {i for r in rankings for i in r}  # nothing lost, nothing added
    scores = [s for _, s in fused]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s <= best_fused_score(len(rankings), k) for s in scores)
    # The same rankings give the same list, whatever containers they come in.
    assert reciprocal_rank_fusion([tuple(r) for r in rankings], k) == fused
    assert reciprocal_rank_fusion(list(rankings), k) == fused


@given(ranking, ranking)
def test_a_hit_in_both_lists_ranks_above_one_in_either_alone(vector, keyword):
    """An item of both lists comes before every item of one list only whose rank there is no
    better than the both-item's best rank."""
    rank_v = {item: n for n, item in enumerate(vector, start=1)}
    rank_k = {item: n for n, item in enumerate(keyword, start=1)}
    position = {item: n for n, item in enumerate(order([vector, keyword]))}
    both = set(rank_v) & set(rank_k)
    alone = {i: rank_v[i] for i in set(rank_v) - both} | {i: rank_k[i] for i in set(rank_k) - both}
    for x in both:
        best = min(rank_v[x], rank_k[x])
        for y, rank in alone.items():
            if rank >= best:
                assert position[x] < position[y], (x, y)


@given(ranking, ranking)
def test_ties_fall_to_the_best_rank_then_the_first_list(vector, keyword):
    fused = reciprocal_rank_fusion([vector, keyword])
    rank_of = [{item: n for n, item in enumerate(r, start=1)} for r in (vector, keyword)]

    def tiebreak(item):
        ranks = [(r[item], which) for which, r in enumerate(rank_of) if item in r]
        return min(ranks), item

    for (a, sa), (b, sb) in pairwise(fused):
        if sa == sb:
            assert tiebreak(a) < tiebreak(b)


@given(ranking)
def test_one_list_keeps_its_order(single):
    assert order([single]) == single
    assert order([single, []]) == single == order([[], single])


@pytest.mark.parametrize(("rankings", "k"), [(3, 4), (3, 60), (4, 1), (2, 7)])
def test_the_best_score_is_the_score_of_an_item_first_everywhere(rankings, k):
    """Found by the property above: 3 / 5 rounds below 1/5 + 1/5 + 1/5 summed as fused."""
    (fused,) = reciprocal_rank_fusion([["x"]] * rankings, k)
    assert fused[1] == best_fused_score(rankings, k)
