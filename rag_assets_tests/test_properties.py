"""Property tests (hypothesis) of what hostile names reach: the tenant rule, partition keys,
thumbnail keys, what a terminal is shown, over arbitrary unicode, separators and lengths."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import example, given, settings
from hypothesis import strategies as st

from rag_assets.lib.display import printable
from rag_assets.lib.images import THUMBNAILS_PREFIX, is_thumbnail, thumbnail_key
from rag_assets.lib.keys import (
    BadTenant,
    DocRef,
    check_tenant,
    decode_partition_key,
    document_tenant,
    encode_partition_key,
    is_valid_tenant,
    parse_root_registry,
    root_registry_key,
    tenant_from_key,
)

# Separators and the characters paths, partition keys, SQL and terminals treat specially.
AWKWARD = "/\\|,[].:%'\"`$;*?~@_-\x00\x07\x1b\n\r\t\u202e\u2028 "
text = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(AWKWARD), max_size=300)
tenant_like = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}", fullmatch=True).filter(lambda t: ".." not in t)


def independent_rule(tenant: str) -> bool:
    """The tenant rule, said again without the project's regex."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")
    return (
        1 <= len(tenant) <= 128
        and tenant[0].isascii()
        and tenant[0].isalnum()
        and all(c in allowed for c in tenant)
        and ".." not in tenant
    )


@given(text)
@example("acme")
@example("..")
@example("a..b")
@example("-acme")
@example("a" * 129)
@example("acme\n")
def test_the_tenant_rule_is_exactly_the_documented_one(tenant):
    assert is_valid_tenant(tenant) is independent_rule(tenant)


@given(tenant_like)
def test_a_valid_tenant_is_one_harmless_path_segment(tenant):
    assert check_tenant(tenant) == tenant
    assert "/" not in tenant and "\\" not in tenant and tenant not in (".", "..") and printable(tenant) == tenant


@given(text.filter(lambda t: not independent_rule(t)))
def test_an_invalid_tenant_is_refused_by_name(tenant):
    try:
        check_tenant(tenant)
    except BadTenant as e:
        assert "tenant" in str(e)
    else:
        raise AssertionError(f"{tenant!r} was accepted")


@given(
    st.lists(
        st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(AWKWARD), min_size=1, max_size=40),
        min_size=2,
        max_size=6,
    )
)
def test_a_key_gives_a_valid_tenant_or_a_clear_error(segments):
    key = "/".join(segments)
    try:
        tenant = tenant_from_key(key, "segment:0")
    except ValueError as e:
        assert "tenant" in str(e)
    else:
        assert is_valid_tenant(tenant) and tenant == key.strip("/").split("/")[0]


roots = st.sampled_from(["s3://bucket", "s3://my.bucket", "/srv/in box", "/srv/a|b,c", "/", "/data/..."])


@given(tenant_like, text, roots)
def test_partition_keys_round_trip_and_are_dagster_safe(tenant, key, root):
    ref = DocRef(tenant, root, key)
    encoded = encode_partition_key(ref)
    assert decode_partition_key(encoded, parse_root_registry([root_registry_key(root)])) == ref
    assert "..." not in encoded and not re.search(r"[\x00-\x1f\x7f,\[\]]", encoded)
    assert document_tenant(ref.document_id, ref.uri) == tenant


@settings(max_examples=300)
@given(tenant_like, text, text)
def test_thumbnail_keys_stay_under_the_prefix_and_never_share(tenant, key, other):
    made = thumbnail_key(tenant, key)
    assert made.startswith(f"{THUMBNAILS_PREFIX}/{tenant}/") and is_thumbnail(made)
    segments = made.split("/")
    assert "" not in segments and "." not in segments and ".." not in segments
    assert len(made.encode("utf-8")) <= 1024 and all(len(s.encode("utf-8")) <= 255 for s in segments)
    assert printable(made) == made  # nothing a terminal would act on
    if other != key:
        assert thumbnail_key(tenant, other) != made


@given(text)
def test_what_a_terminal_is_shown_has_no_control_characters(value):
    shown = printable(value)
    assert not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in shown)
    assert "\u202e" not in shown
    if all(unicodedata.category(c) not in ("Cc", "Zl", "Zp", "Cs", "Cf") for c in value):
        assert shown == value  # ordinary text, accents and all, is shown as it is


def partitions_by_key_parsed_whole(partitions, root):
    """partitions_by_key as it was before its fast paths (D38): every key taken apart whole."""
    from rag_assets.lib.keys import root_alias, split_partition_key

    out = {}
    for partition in partitions:
        try:
            parts = split_partition_key(partition)
        except ValueError:
            continue
        if parts.alias == root_alias(root):
            out.setdefault(parts.key, []).append(partition)
    return out


ROOTS = ["s3://bucket", "s3://other", "/srv/in", "/srv/in box|x"]


@given(
    st.lists(
        st.one_of(
            st.builds(lambda t, r, k: encode_partition_key(DocRef(t, r, k)), tenant_like, st.sampled_from(ROOTS), text),
            st.builds(lambda t, r, k: f"{t}|{r}|{k}", tenant_like, st.sampled_from(ROOTS), text),  # the old form
            text,  # anything at all
        ),
        max_size=30,
    ),
    st.sampled_from(ROOTS),
)
@example(["acme|a.txt|s3:bucket", "acme|a|b|s3:bucket", "acme|s3://bucket|a.txt", "a|b|c|", "x|y|s3:other"], "s3://bucket")
def test_partitions_by_key_takes_apart_only_what_it_must_and_agrees_with_the_whole_parse(partitions, root):
    from rag_assets.lib.reconcile import partitions_by_key

    assert partitions_by_key(partitions, root) == partitions_by_key_parsed_whole(partitions, root)


PARTITIONS = st.one_of(
    st.builds(lambda t, r, k: encode_partition_key(DocRef(t, r, k)), tenant_like, st.sampled_from(ROOTS), text),
    st.builds(lambda t, r, k: f"{t}|{r}|{k}", tenant_like, st.sampled_from(ROOTS), text),
)


@given(st.lists(st.tuples(st.lists(PARTITIONS, max_size=8), st.integers(0, 3)), max_size=6), st.sampled_from(ROOTS))
def test_the_memo_of_partitions_by_key_agrees_as_keys_are_added_and_deleted(steps, root):
    from rag_assets.lib.reconcile import PartitionsByKeyMemo

    memo, known, given_before = PartitionsByKeyMemo(), [], []
    for added, deleted in steps:
        del known[:deleted]  # the oldest go (a purge); the rest keep their order
        known += [p for p in dict.fromkeys(added) if p not in known]
        by_key = memo(known, root)
        assert by_key == partitions_by_key_parsed_whole(known, root)  # in Dagster's order, each key's
        for earlier, copy in given_before:  # a map handed out before is never changed
            assert earlier == copy
        given_before.append((by_key, {k: list(v) for k, v in by_key.items()}))


@given(st.lists(PARTITIONS, max_size=30, unique=True), st.sampled_from(ROOTS), text, st.one_of(st.none(), text))
@example(
    ["acme|a|s3:bucket", "acme|a%7Cb|s3:bucket", "acme|ab|s3:bucket", "beta|a|s3:bucket"], "s3://bucket", "a", "ab"
)
def test_the_keys_of_a_span_are_those_the_whole_parse_finds_there(partitions, root, start, stop):
    from rag_assets.lib.keys import in_span
    from rag_assets.lib.reconcile import partitions_by_key

    by_key, whole = partitions_by_key(partitions, root), partitions_by_key_parsed_whole(partitions, root)
    assert list(by_key.in_span(start, stop)) == sorted(k for k in whole if in_span(k, start, stop))
    asked = [start, *list(whole)[::2]]  # some keys at once: by a walk over their stretch, or a bisection each
    for looked_up in (by_key, by_key.with_keys(asked), by_key.with_keys(asked, walk=0)):
        for key in [start, *whole]:
            assert looked_up.get(key) == whole.get(key)
            assert (key in looked_up) == (key in whole)


# --- a listing pass, a span of keys a tick ------------------------------------------------------

short_keys = st.text(alphabet="ab./-é日", min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    documents=st.sets(short_keys, max_size=25),
    sidecar_of=st.sets(short_keys, max_size=10),
    ghosts=st.sets(short_keys, max_size=10),
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=8),
)
def test_a_pass_judges_every_key_once_and_each_document_after_its_sidecars(documents, sidecar_of, ghosts, cuts):
    """However the listing is paged, the spans of a pass's ticks tile every key: each listed
    document and each key only the index holds is judged by exactly one tick, and a document
    only once every sidecar it may have is listed (or the listing ended)."""
    from rag_assets.lib.keys import is_sidecar, sidecar_keys
    from rag_assets.lib.reconcile import listing_span

    documents = {d for d in documents if not is_sidecar(d)}
    listing = sorted(documents | {sidecar_keys(d)[0] for d in sidecar_of & documents})
    pages = [listing[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(listing)], strict=True)]
    start, judged, listed = "", [], []
    for n, page in enumerate(pages):
        listed += page
        finished = n == len(pages) - 1
        span = listing_span(start, [k for k in listed if not is_sidecar(k) and k >= start], max(page, default=None),
                            finished)  # fmt: skip
        assert span.start == start and (span.stop is None or span.stop >= start)
        for key in [k for k in documents if k in span]:
            assert finished or (key in listed and max(sidecar_keys(key)) <= max(listed))  # nothing of it may still come
        judged += [k for k in sorted(documents | ghosts) if k in span]
        start = span.stop if span.stop is not None else start
    assert sorted(judged) == sorted(documents | ghosts)  # every key once: none twice, none missed
