import pytest

from rag_assets.lib.hashing import chunk_id, content_hash, text_hash


def test_content_hash_is_stable_sha256():
    assert content_hash("acme", b"data") == content_hash("acme", b"data")
    assert len(content_hash("acme", b"data")) == 64


@pytest.mark.parametrize(
    "a, b",
    [
        (("acme", b"data"), ("globex", b"data")),  # same file, two tenants: two documents
        (("acme", b"data"), ("acme", b"data!")),
        (("acme", b""), ("", b"acme")),
        (("ab", b"c"), ("a", b"bc")),  # the tenant/bytes boundary cannot be shifted
        (("a", b"bc"), ("abc", b"")),
    ],
)
def test_content_hash_depends_on_tenant_and_bytes(a, b):
    assert content_hash(*a) != content_hash(*b)


BASE = ("acme:s3://bucket/a.pdf", 3, "Some chunk text.")


@pytest.mark.parametrize(
    "changed",
    [
        ("globex:s3://bucket/a.pdf", 3, "Some chunk text."),
        ("acme:s3://bucket/b.pdf", 3, "Some chunk text."),
        ("acme:s3://bucket/a.pdf", 4, "Some chunk text."),
        ("acme:s3://bucket/a.pdf", 3, "Some chunk text!"),
        ("acme:s3://bucket/a.pdf3", 0, "Some chunk text."),  # fields do not run into each other
        ("acme:s3://bucket/a.pdf", 31, "Some chunk text."),
    ],
)
def test_chunk_id_changes_with_each_field(changed):
    assert chunk_id(*changed) != chunk_id(*BASE)


def test_chunk_id_is_stable():
    assert chunk_id(*BASE) == chunk_id(*BASE)
    assert len(chunk_id(*BASE)) == 32


def test_text_hash():
    assert text_hash("é") == text_hash("é") != text_hash("e")
