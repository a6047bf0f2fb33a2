"""The planner (lib.reconcile): the source against the index, the runs in flight and what
each sensor asked for before; the deletion guard; batches, run keys and the failure
sensor's split."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rag_assets.defs.sync.sensors import listing_prefix
from rag_assets.lib.identity import index_identity, pipeline_fingerprint, source_etag, split_source_etag
from rag_assets.lib.keys import DocRef, encode_partition_key, sidecar_keys
from rag_assets.lib.reconcile import (
    Backoff,
    KeySpan,
    PurgeGuard,
    PurgeTarget,
    Request,
    Target,
    Wanted,
    guard_purges,
    guard_releases,
    ingest_batches,
    listing_span,
    partitions_by_key,
    partitions_in_ranges,
    plan_documents,
    wanted_documents,
)
from rag_assets.resources.vector_stores import IndexedDocument

ROOT = "s3://docs"
PIPE = pipeline_fingerprint(160, 32, "formatted_text")


def part(key: str, tenant: str | None = None) -> str:
    return encode_partition_key(DocRef(tenant or key.split("/")[0], ROOT, key))


def held(key: str, etag: str, pipeline: str = PIPE, tenant: str | None = None) -> IndexedDocument:
    ref = DocRef(tenant or key.split("/")[0], ROOT, key)
    return IndexedDocument(ref.document_id, ref.tenant, key, "c" * 64, etag, pipeline, 3, "d" * 16)


def index(*docs: IndexedDocument) -> dict:
    return {d.document_id: d for d in docs}


def want(key: str, etag: str, version: str | None = None) -> Wanted:
    return Wanted(key, etag, version or f"{etag}@1")


def plan(wanted=(), indexed=(), partitions=(), **kw):
    return plan_documents(
        root=ROOT,
        wanted={w.key: w for w in wanted},
        indexed=index(*indexed),
        by_key=partitions_by_key(partitions, ROOT),
        tenant_rule="segment:0",
        pipeline=PIPE,
        **kw,
    )


def test_what_the_index_holds_decides():
    p = plan(
        wanted=[
            want("acme/same.pdf", "e1"),
            want("acme/edited.pdf", "e2"),
            want("acme/new.pdf", "e3"),
            want("acme/lost.pdf", "e4"),
        ],
        indexed=[held("acme/same.pdf", "e1"), held("acme/edited.pdf", "e1")],
        partitions=[part("acme/same.pdf"), part("acme/edited.pdf"), part("acme/lost.pdf")],
    )
    assert p.current == [part("acme/same.pdf")]
    assert {t.key: t.reason for t in p.ingest} == {
        "acme/edited.pdf": "changed",
        "acme/new.pdf": "new",
        "acme/lost.pdf": "missing",
    }
    assert p.add == [part("acme/new.pdf")] and p.purge == []


def test_another_chunking_or_model_is_out_of_date():
    p = plan(
        wanted=[want("acme/a.pdf", "e1")],
        indexed=[held("acme/a.pdf", "e1", pipeline="other")],
        partitions=[part("acme/a.pdf")],
    )
    assert [(t.key, t.reason) for t in p.ingest] == [("acme/a.pdf", "pipeline")]


def test_a_complete_pass_purges_rows_and_partitions_whose_objects_are_gone_whoever_made_them():
    cli_copy = held("flat/x.txt", "e9", tenant="initech")  # ingested with --tenant: the rule says "flat"
    p = plan(
        wanted=[want("acme/kept.pdf", "e1")],
        indexed=[held("acme/kept.pdf", "e1"), held("acme/gone.pdf", "e2"), cli_copy],
        partitions=[
            part("acme/kept.pdf"),
            part("acme/gone.pdf"),
            part("flat/x.txt", "initech"),
            part("acme/no-rows.pdf"),
        ],
        complete=True,
    )
    by_key = {t.key: t for t in p.purge}
    assert set(by_key) == {"acme/gone.pdf", "flat/x.txt", "acme/no-rows.pdf"}
    assert by_key["flat/x.txt"].document_ids == (cli_copy.document_id,)  # by the id it was indexed under
    assert by_key["flat/x.txt"].partitions == (part("flat/x.txt", "initech"),)
    assert by_key["acme/no-rows.pdf"].document_ids == () and all(t.if_gone for t in p.purge)


def test_a_complete_pass_purges_only_under_the_prefix_it_listed():
    p = plan(
        wanted=[want("acme/a.pdf", "e1")],
        indexed=[held("acme/a.pdf", "e1"), held("acme/gone.pdf", "e1"), held("globex/b.pdf", "e1")],
        partitions=[part("globex/b.pdf")],
        complete=True,
        scope="acme/",
    )
    assert [t.key for t in p.purge] == ["acme/gone.pdf"]  # globex/ was not listed: not known gone


def test_without_a_complete_pass_only_the_keys_said_gone_are_purged():
    p = plan(
        indexed=[held("acme/a.pdf", "e1"), held("acme/b.pdf", "e1")],
        partitions=[part("acme/a.pdf")],
        gone=["acme/a.pdf"],
    )
    assert [t.key for t in p.purge] == ["acme/a.pdf"]


def test_a_document_keeps_the_tenant_it_was_first_ingested_under_and_copies_go():
    first = part("flat/x.txt", "initech")
    p = plan(
        wanted=[want("flat/x.txt", "e1")],
        indexed=[held("flat/x.txt", "e1", tenant="initech"), held("flat/x.txt", "e1", tenant="flat")],
        partitions=[first, part("flat/x.txt", "flat")],
    )
    assert p.current == [first] and p.add == []
    (copy,) = p.purge
    assert not copy.if_gone and copy.partitions == (part("flat/x.txt", "flat"),)
    assert copy.document_ids == (DocRef("flat", ROOT, "flat/x.txt").document_id,)


def test_work_in_flight_unreadable_documents_and_backoff_wait():
    partitions = [part(f"acme/{n}.pdf") for n in "abcd"]
    p = plan(
        wanted=[want(f"acme/{n}.pdf", "e1") for n in "abcd"],
        partitions=partitions,
        in_flight={partitions[0]},
        unreadable={partitions[1]: "e1", partitions[2]: "e0"},  # c was unreadable at another version
        requests={partitions[3]: Request("e1@1", 0, at=100.0)},
        now=110.0,
    )
    assert p.waiting == ["acme/a.pdf", "acme/d.pdf"] and p.unreadable == ["acme/b.pdf"]
    assert [(t.key, t.attempt) for t in p.ingest] == [("acme/c.pdf", 0)]


def test_a_document_back_at_an_earlier_version_gets_a_new_attempt():
    partition = part("acme/a.pdf")
    p = plan(
        wanted=[want("acme/a.pdf", "e1", "e1@1")],
        partitions=[partition],
        requests={partition: Request("e1@1+meta:m@2", 4, 100.0)},
        now=101.0,
    )
    assert [(t.attempt, t.retry) for t in p.ingest] == [(5, False)]
    p = plan(
        wanted=[want("acme/a.pdf", "e1", "e1@1")],
        partitions=[partition],
        requests={partition: Request("e1@1", 0, 0.0)},
        now=100.0,
    )
    assert [(t.attempt, t.retry) for t in p.ingest] == [(1, True)]


def test_purges_in_flight_are_not_asked_for_again():
    assert plan(indexed=[held("acme/a.pdf", "e1")], gone=["acme/a.pdf"], purging={"acme/a.pdf"}).purge == []


@pytest.mark.parametrize(
    "previous, version, now, expected",
    [
        (None, "v1", 0.0, 0),
        (Request("v0", 3, 0.0), "v1", 1.0, 4),  # a new version at once, with the next attempt: a new run key
        (Request("v1", 0, 100.0), "v1", 129.0, None),
        (Request("v1", 0, 100.0), "v1", 130.0, 1),
        (Request("v1", 2, 100.0), "v1", 219.0, None),
        (Request("v1", 2, 100.0), "v1", 220.0, 3),
        (Request("v1", 20, 100.0), "v1", 3699.0, None),  # capped at an hour
        (Request("v1", 20, 100.0), "v1", 3700.0, 21),
        (Request("v1", 2, 100.0, done=True), "v1", 101.0, 3),  # held since, and lost: at once
    ],
)
def test_backoff(previous, version, now, expected):
    assert Backoff(30.0, 3600.0).attempt_due(previous, version, now) == expected


def test_no_tenant_in_the_key_is_skipped_with_its_reason():
    p = plan(wanted=[want("top.pdf", "e1")])
    assert p.ingest == [] and p.skipped[0][0] == "top.pdf" and "no tenant" in p.skipped[0][1]


class Obj(SimpleNamespace):
    pass


def test_a_document_carries_the_sidecar_it_reads():
    objects = {
        "a/r.pdf": Obj(etag="d1", version="d1@1"),
        "a/r.meta.json": Obj(etag="m1", version="m1@1"),
        "a/r.pdf.meta.json": Obj(etag="m2", version="m2@1"),  # read first (lib.keys.sidecar_keys)
        "a/s.txt": Obj(etag="d2", version="d2@1"),
        "a/s.meta.json": Obj(etag="m3", version="m3@1"),
        "a/orphan.meta.json": Obj(etag="m4", version="m4@1"),
    }
    docs = wanted_documents(objects)
    assert set(docs) == {"a/r.pdf", "a/s.txt"}
    assert docs["a/r.pdf"] == Wanted("a/r.pdf", "d1+meta:m2", "d1@1+meta:m2@1")
    assert split_source_etag(docs["a/s.txt"].etag) == ("d2", "m3") and split_source_etag("d9") == ("d9", None)
    assert source_etag("d9") == "d9"


def targets(*specs) -> list[Target]:
    return [Target(part(k), k, v, "new", a) for k, v, a in specs]


def test_batches_are_ranges_and_run_keys_follow_version_attempt_and_index():
    ordered = [part(f"acme/{n}.pdf") for n in "abcde"]
    batch = lambda ts, identity="i1": ingest_batches(ts, ordered, 2, identity)
    base = targets(("acme/a.pdf", "v1", 0), ("acme/b.pdf", "v1", 0), ("acme/c.pdf", "v1", 0), ("acme/e.pdf", "v1", 0))
    assert [len(b.members) for b in batch(base)] == [2, 1, 1]  # d is not wanted: e stands alone
    key = batch(base)[0].run_key
    assert batch(base)[0].run_key == key  # a replayed tick or a duplicated event: the same key
    assert batch(targets(("acme/a.pdf", "v2", 0), ("acme/b.pdf", "v1", 0)))[0].run_key != key  # written again
    assert batch(targets(("acme/a.pdf", "v1", 1), ("acme/b.pdf", "v1", 0)))[0].run_key != key  # asked again
    assert batch(base, identity="i2")[0].run_key != key  # another index, model or pipeline


def test_the_index_identity_changes_with_store_model_and_pipeline():
    base = index_identity("./.rag/index", "local:m", PIPE)
    assert (
        len(
            {
                base,
                index_identity("postgresql://x", "local:m", PIPE),
                index_identity("./.rag/index", "openai:m", PIPE),
                index_identity("./.rag/index", "local:m", pipeline_fingerprint(200, 32, "formatted_text")),
            }
        )
        == 4
    )


def test_runs_in_flight_cover_their_ranges():
    ordered = ["p1", "p2", "p3", "p4", "p5"]
    assert partitions_in_ranges(ordered, [("p2", "p3"), ("p5", "p5"), ("gone", "p4")]) == {"p2", "p3", "p5"}


@pytest.mark.parametrize(
    "key, prefix",
    [
        ("a/report.pdf", "a/report."),
        ("a/report.meta.json", "a/report."),
        ("a/report.pdf.meta.json", "a/report."),
        ("README", "README"),
        ("x.tar.gz", "x."),
    ],
)
def test_one_listing_finds_a_document_and_every_sidecar_it_could_read(key, prefix):
    assert listing_prefix(key) == prefix


@pytest.mark.parametrize(
    ("start", "documents", "last_listed", "finished", "span"),
    [
        # The listing ended: everything from where the pass stands.
        ("a/m", ["a/m.txt"], "a/z", True, KeySpan("a/m", None)),
        # Up to the last key listed (itself left for the next tick: a sidecar may follow it).
        ("", ["a/a.txt", "a/b.txt"], "a/b.txt", False, KeySpan("", "a/b.txt")),
        # Up to the first document whose sidecar (`a/r.pdf.meta.json`, `a/r.meta.json`) may still come.
        ("", ["a/q.txt", "a/r.pdf", "a/r.pdf.1"], "a/r.pdf.1", False, KeySpan("", "a/r.pdf")),
        # Its sidecar was listed: the document can be judged.
        ("", ["a/r.pdf", "a/s.txt"], "a/s.txt", False, KeySpan("", "a/s.txt")),
        # Nothing listed this tick, or nothing past where the pass stands: an empty span.
        ("a/c", ["a/c.txt"], None, False, KeySpan("a/c", "a/c")),
        ("a/c", ["a/c.txt"], "a/b", False, KeySpan("a/c", "a/c")),
    ],
)
def test_a_listing_tick_judges_the_keys_the_listing_is_past(start, documents, last_listed, finished, span):
    assert listing_span(start, documents, last_listed, finished) == span
    assert all(key not in span or max(sidecar_keys(key)) <= (last_listed or "") or finished for key in documents)


def test_purge_targets_round_trip_through_run_config():
    from rag_assets.defs.maintenance.assets import PurgeConfig, purge_run_config

    target = PurgeTarget("acme/a.pdf", "s3://docs/acme/a.pdf", ("acme:s3://docs/acme/a.pdf",), (part("acme/a.pdf"),))
    config = purge_run_config([target])["ops"]["purge_deleted_documents"]["config"]
    assert PurgeConfig(**config).targets[0].document_ids == list(target.document_ids)


@pytest.mark.parametrize(
    "etag, indexed, materialized, current",
    [
        ('"v1"', [held("acme/a.pdf", '"v1"')], True, True),
        ('"v2"', [held("acme/a.pdf", '"v1"')], True, False),  # a new version
        ('"v1"', [held("acme/a.pdf", '"v1"', pipeline="other")], True, False),  # cut another way
        ('"v1"', [], True, False),  # not in the index
        ('"v1"', [held("acme/a.pdf", '"v1"')], False, False),  # no lineage in this instance
        ("", [held("acme/a.pdf", "")], True, False),  # a version nobody knows
        ('"v1"', [held("acme/a.pdf", '"v1"', tenant="globex")], True, False),  # another tenant's copy
    ],
)
def test_the_command_line_skips_only_current_documents(etag, indexed, materialized, current):
    from rag_assets.ingest import current_documents

    ref = DocRef("acme", ROOT, "acme/a.pdf")
    lineage = {part("acme/a.pdf")} if materialized else set()
    found = current_documents({ref: etag}, index(*indexed), PIPE, lambda keys: lineage & set(keys))
    assert found == ({part("acme/a.pdf"): indexed[0]} if current else {})


@pytest.mark.parametrize(
    "attempt, unwritten, sizes",
    [
        (0, False, [50, 50]),  # asked for the first time: batches of RAG_BATCH_SIZE
        (5, False, [50, 50]),  # a new version, or rows lost after a write: the same
        (1, True, [25, 25, 25, 25]),  # asked for again: halved at each attempt...
        (3, True, [6] * 16 + [4]),
        (6, True, [1] * 100),  # ...until each runs alone: a culprit fails alone, the rest are written
    ],
)
def test_documents_asked_for_again_run_in_ever_smaller_batches(attempt, unwritten, sizes):
    ordered = [f"p{n:03}" for n in range(100)]
    targets = [Target(p, p, "v1", "changed", attempt, unwritten, unwritten) for p in ordered]
    batches = ingest_batches(targets, ordered, 50, "i1")
    assert [len(b.members) for b in batches] == sizes
    assert sorted(m for b in batches for m in b.members) == ordered  # every target, once


def test_fresh_and_retried_documents_are_batched_apart():
    ordered = [f"p{n}" for n in range(6)]
    targets = [Target(p, p, "v1", "new", 0, False) for p in ordered[:3]] + [
        Target(p, p, "v1", "changed", 2, True, True) for p in ordered[3:]
    ]
    assert [b.members for b in ingest_batches(targets, ordered, 4, "i1")] == [
        ("p0", "p1", "p2"),
        ("p3",),
        ("p4",),
        ("p5",),
    ]


# --- the deletion guard -----------------------------------------------------------------------------


def docs(n: int, tenant: str = "acme") -> list[str]:
    return [f"{tenant}/d{i:02}.txt" for i in range(n)]


def gone_targets(keys) -> list[PurgeTarget]:
    return [PurgeTarget(k, f"{ROOT}/{k}", (DocRef(k.split("/")[0], ROOT, k).document_id,), (part(k),)) for k in keys]


@pytest.mark.parametrize(
    "held, gone, guard, holds",
    [
        (9, 9, PurgeGuard(), False),  # fewer than 10 documents: every deletion is ordinary
        (10, 6, PurgeGuard(), True),  # more than half of 10
        (10, 5, PurgeGuard(), False),  # half is not more than half
        (20, 1, PurgeGuard(), False),  # an ordinary delete
        (20, 20, PurgeGuard(), True),  # an unmounted share, a wrong prefix: everything gone
        (20, 5, PurgeGuard(fraction=0.2), True),  # the fraction is a setting
        (20, 20, PurgeGuard(fraction=1.0), False),  # 1: no guard
        (5, 5, PurgeGuard(min_documents=3), True),  # so is the minimum
        (2, 2, PurgeGuard(min_documents=3), False),
    ],
)
def test_the_guard_holds_a_purge_of_more_than_the_fraction_once_the_index_holds_enough(held, gone, guard, holds):
    keys = docs(held)
    purge = gone_targets(keys[:gone])
    decision = guard_purges(purge, indexed=set(keys), guard=guard)
    assert (decision.gone, decision.of, decision.holding) == (gone, held, holds)
    assert decision.purge == ([] if holds else purge) and decision.held == (purge if holds else [])


def test_copies_under_another_tenant_are_not_deletions():
    keys = docs(10)
    copies = [PurgeTarget(k, f"{ROOT}/{k}", (DocRef("old", ROOT, k).document_id,), (), if_gone=False) for k in keys]
    decision = guard_purges(copies, indexed=set(keys), guard=PurgeGuard())  # a tenant rule changed: every copy goes
    assert decision.purge == copies and not decision.holding and decision.gone == 0
    # ...and go while the deletions beside them are held
    decision = guard_purges([*copies[:2], *gone_targets(keys[:6])], indexed=set(keys), guard=PurgeGuard())
    assert decision.purge == copies[:2] and [t.key for t in decision.held] == keys[:6]


def test_deletes_within_the_window_and_those_held_before_count_together():
    keys = docs(20)
    # 8 purged unconfirmed within the window (no longer in the index) and 3 gone now: 11 of 20
    decision = guard_purges(gone_targets(keys[8:11]), indexed=set(keys[8:]), recent=set(keys[:8]), guard=PurgeGuard())
    assert (decision.gone, decision.of, decision.holding) == (11, 20, True)
    # 11 held before (the event sensor's earlier ticks) and one more delete: held too
    decision = guard_purges(gone_targets(keys[11:12]), indexed=set(keys), held=set(keys[:11]), guard=PurgeGuard())
    assert decision.holding and [t.key for t in decision.held] == keys[11:12]
    # a trickle: one delete, with one purged before in the window, of 20
    decision = guard_purges(gone_targets(keys[1:2]), indexed=set(keys[1:]), recent={keys[0]}, guard=PurgeGuard())
    assert not decision.holding and (decision.gone, decision.of) == (2, 20)


def test_a_confirmation_lets_exactly_the_confirmed_purge_through():
    keys = docs(30)
    held = set(keys[:16])  # held and confirmed: 16 of 30
    later = keys[16:24]  # 8 more gone since the confirmation: 8 of the 14 left
    decision = guard_purges(
        gone_targets([*keys[:16], *later]), indexed=set(keys), held=held, confirmed=held, guard=PurgeGuard()
    )
    assert sorted(t.key for t in decision.purge) == sorted(held) == sorted(t.key for t in decision.confirmed)
    assert [t.key for t in decision.held] == later and (decision.gone, decision.of) == (8, 14)
    # without the later ones, the confirmed purge goes alone, and nothing is held
    decision = guard_purges(gone_targets(keys[:16]), indexed=set(keys), held=held, confirmed=held, guard=PurgeGuard())
    assert len(decision.purge) == 16 and not decision.holding


def test_objects_coming_back_clear_the_guard():
    keys = docs(10)
    held = set(keys[:6])
    # a complete pass that sees them all again: nothing is gone, every held key is let go
    decision = guard_purges([], indexed=set(keys), guard=PurgeGuard())
    assert guard_releases(held, None, decision) == held
    # 5 come back: 1 of 10 gone is an ordinary delete, purged, and let go of too
    decision = guard_purges(gone_targets(keys[5:6]), indexed=set(keys), guard=PurgeGuard())
    assert not decision.holding and guard_releases(held, None, decision) == held
    # an event tick that saw two of them back: only those are let go of (the rest were not looked at)
    decision = guard_purges([], indexed=set(keys), held=held - set(keys[:2]), guard=PurgeGuard())
    assert guard_releases(held, set(keys[:2]), decision) == set(keys[:2])
    # still gone: held, not let go of; nor are those a purge run is working on
    decision = guard_purges(gone_targets(keys[2:6]), indexed=set(keys), held=held, guard=PurgeGuard())
    assert decision.holding and guard_releases(held, None, decision, purging=set(keys[:2])) == set()
    # nor a confirmed one being purged (a failed purge is tried again under the same confirmation)
    keys = docs(20)
    held = set(keys[:12])
    decision = guard_purges(
        gone_targets(keys[:12]), indexed=set(keys), held=held, confirmed={keys[0]}, guard=PurgeGuard()
    )
    assert [t.key for t in decision.confirmed] == [keys[0]] and decision.holding
    assert guard_releases(held, None, decision) == set()


@pytest.mark.parametrize("gone, at_least, may", [(5, 0, False), (6, 0, True), (6, 12, False), (7, 12, True)])
def test_the_index_is_counted_only_when_a_mass_delete_is_possible(gone, at_least, may):
    assert PurgeGuard().may_trip(gone, at_least) is may
    assert not PurgeGuard(fraction=1).may_trip(1000, 0)


@pytest.mark.parametrize("done, unwritten", [(False, True), (True, False)])
def test_a_document_whose_run_never_wrote_it_is_marked_for_a_smaller_batch(done, unwritten):
    partition = part("acme/a.pdf")
    earlier = Request("e1@1", 3, at=0.0, done=done)  # asked for before; done: seen current since (rows lost later)
    (target,) = plan(
        wanted=[want("acme/a.pdf", "e1", "e1@1")], partitions=[partition], requests={partition: earlier}, now=1e9
    ).ingest
    assert (target.retry, target.unwritten, target.attempt) == (True, unwritten, 4)
