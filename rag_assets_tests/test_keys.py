import dagster as dg
import pytest

from rag_assets.lib.keys import (
    DocRef,
    decode_partition_key,
    encode_partition_key,
    is_sidecar,
    parse_root_registry,
    root_alias,
    root_registry_key,
    sidecar_keys,
    split_partition_key,
    tenant_from_key,
)

AWKWARD_KEYS = [
    "plain/report.pdf",
    "acme/with space/q1 report.pdf",
    "acme/pipe|in|name.pdf",
    "acme/a,b,c.csv",
    "acme/[draft] notes].txt",
    "acme/100%25 done %.md",
    "acme/three...dots..../....pdf",
    "acme/ünïcödé/日本語 ☃.pdf",
    "acme/new\nline\tand\rcontrol\x00\x07\x08\x0b\x0c\x7f.txt",
    "acme/%2E%2E%2E.pdf",
    "",
]
ROOTS = ["s3://bucket", "s3://my.bucket", "/tmp/in box", "/srv/a|b,c", "/srv/data/corpus...", "/"]


@pytest.mark.parametrize("root", ROOTS)
@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_partition_key_round_trip_and_is_dagster_safe(root, key):
    ref = DocRef(tenant="t|1, [x]...", root=root, key=key)
    encoded = encode_partition_key(ref)
    registry = parse_root_registry([root_registry_key(r) for r in ROOTS])
    assert decode_partition_key(encoded, registry) == ref
    dg.StaticPartitionsDefinition([encoded, root_registry_key(root)])  # Dagster's own check of a key's characters
    for bad in [",", "[", "]"]:  # the partition-selection syntax's
        assert bad not in encoded, (bad, encoded)
        assert bad not in root_registry_key(root), (bad, root)


@pytest.mark.parametrize("bad", ["...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0"])
def test_dagsters_check_of_a_key_refuses_what_the_keys_escape(bad):
    """The check above is Dagster's (a partitions definition refuses keys it cannot take):
    it must still refuse these, which AWKWARD_KEYS hold and the encoding escapes."""
    with pytest.raises(dg.DagsterInvalidDefinitionError):
        dg.StaticPartitionsDefinition([f"a{bad}b"])


@pytest.mark.parametrize(
    "ref, key",
    [
        (DocRef("acme", "s3://bucket", "docs/q1 report.pdf"), "acme|docs/q1 report.pdf|s3:bucket"),
        (DocRef("bench", "/srv/data/corpus", "doc_000.pdf"), f"bench|doc_000.pdf|{root_alias('/srv/data/corpus')}"),
    ],
)
def test_partition_key_reads_tenant_then_key_then_a_short_root(ref, key):
    assert encode_partition_key(ref) == key
    assert root_alias("/srv/data/corpus").startswith("file:corpus~") and len(root_alias("/srv/data/corpus")) == 18


def test_folder_roots_are_decoded_through_the_registry_and_s3_roots_by_themselves():
    folder = encode_partition_key(DocRef("acme", "/srv/in", "acme/a.pdf"))
    with pytest.raises(ValueError, match="not registered"):
        decode_partition_key(folder)
    assert decode_partition_key(folder, parse_root_registry([root_registry_key("/srv/in")])).root == "/srv/in"
    assert decode_partition_key(encode_partition_key(DocRef("acme", "s3://b", "acme/a.pdf"))).root == "s3://b"


@pytest.mark.parametrize(
    "old, ref",
    [
        ("acme|s3://bucket|docs/q1 report.pdf", DocRef("acme", "s3://bucket", "docs/q1 report.pdf")),
        ("bench|/srv/data/corpus|doc_000.pdf", DocRef("bench", "/srv/data/corpus", "doc_000.pdf")),
        ("t%7C1|/tmp/in box|a%2Cb.pdf", DocRef("t|1", "/tmp/in box", "a,b.pdf")),
    ],
)
def test_keys_of_the_old_form_still_decode(old, ref):
    assert decode_partition_key(old) == ref
    assert split_partition_key(old).alias == root_alias(ref.root)


@pytest.mark.parametrize("malformed", ["", "acme", "acme|s3://bucket", "a|b|c|d", "a|b|c|", "acme|key.pdf|nowhere"])
def test_decode_rejects_malformed_keys(malformed):
    with pytest.raises(ValueError, match="not a document partition key"):
        decode_partition_key(malformed)


@pytest.mark.parametrize(
    "key, rule, tenant",
    [
        ("acme/docs/a.pdf", "segment:0", "acme"),
        ("/acme/docs/a.pdf", "segment:0", "acme"),
        ("acme/docs/a.pdf", "segment:1", "docs"),
        ("acme/docs/a.pdf", "", "acme"),
        ("acme/docs/a.pdf", None, "acme"),
        ("a.pdf", "fixed:shared", "shared"),
        ("acme/docs/a.pdf", "fixed:other", "other"),
        ("uploads/tenant=globex/a.pdf", r"regex:tenant=(?P<tenant>[^/]+)/", "globex"),
    ],
)
def test_tenant_from_key(key, rule, tenant):
    assert tenant_from_key(key, rule) == tenant


@pytest.mark.parametrize(
    "key, rule, message",
    [
        ("a.pdf", "segment:0", "no tenant"),  # a file at the root has no tenant folder
        ("acme/a.pdf", "segment:1", "no tenant"),  # the file name is never the tenant
        ("acme/a.pdf", r"regex:tenant=(?P<tenant>\w+)", "no tenant"),
        ("acme/a.pdf", r"regex:(?P<tenant>x)?", "no tenant"),  # matches, but the group is empty
        ("acme/a.pdf", "fixed:", "unknown"),
        ("acme/a.pdf", "folder:0", "unknown"),
        ("acme/a.pdf", "segment:x", None),
    ],
)
def test_tenant_from_key_errors(key, rule, message):
    with pytest.raises(ValueError, match=message):
        tenant_from_key(key, rule)


@pytest.mark.parametrize(
    "key, rule",
    [
        pytest.param("acme/docs/a.pdf", "segment:-1"),
        pytest.param("acme//a.pdf", "segment:1"),
    ],
)
def test_tenant_from_key_never_returns_file_name_or_empty(key, rule):
    # BUG: segment:-1 gives the file name as the tenant; an empty folder (a//b.pdf) gives tenant ''
    with pytest.raises(ValueError):
        tenant_from_key(key, rule)


def test_tenant_from_key_invalid_regex_is_value_error():
    with pytest.raises(ValueError):
        tenant_from_key("acme/a.pdf", "regex:(?P<tenant>")


@pytest.mark.parametrize(
    "key, expected",
    [
        ("acme/report.pdf", ["acme/report.pdf.meta.json", "acme/report.meta.json"]),
        ("acme/archive.tar.gz", ["acme/archive.tar.gz.meta.json", "acme/archive.tar.meta.json"]),
        ("report", ["report.meta.json"]),
        (".hidden", [".hidden.meta.json"]),
    ],
)
def test_sidecar_keys(key, expected):
    assert sidecar_keys(key) == expected
    assert all(is_sidecar(k) for k in sidecar_keys(key))


@pytest.mark.parametrize("key", ["acme/v1.2/report", "acme/.cfg/notes"])
def test_sidecar_keys_stay_in_the_files_folder(key):
    folder = key.rpartition("/")[0] + "/"
    assert all(k.startswith(folder) and "/" not in k[len(folder) :] for k in sidecar_keys(key))
    assert sidecar_keys(key) == [key + ".meta.json"]


@pytest.mark.parametrize(
    "key, sidecar",
    [("a/report.pdf.meta.json", True), ("a/report.meta.json", True), ("a/report.pdf", False), ("meta.json", False)],
)
def test_is_sidecar(key, sidecar):
    assert is_sidecar(key) is sidecar


@pytest.mark.parametrize(
    "other",
    [
        DocRef("globex", "s3://bucket", "docs/a.pdf"),
        DocRef("acme", "s3://other", "docs/a.pdf"),
        DocRef("acme", "/srv/in", "docs/a.pdf"),
    ],
)
def test_document_id_differs_across_tenants_and_roots(other):
    ref = DocRef("acme", "s3://bucket", "docs/a.pdf")
    assert ref.document_id == "acme:s3://bucket/docs/a.pdf"
    assert other.document_id != ref.document_id


def test_uri_joins_root_and_key_once():
    assert DocRef("t", "s3://bucket/", "k.pdf").uri == DocRef("t", "s3://bucket", "k.pdf").uri == "s3://bucket/k.pdf"


@pytest.mark.parametrize(
    "ref",
    [
        DocRef("acme", "s3://docs", "acme/a.pdf"),
        DocRef("team:ops", "/srv/inbox", "ops/a.png"),
        DocRef("x", "s3://b", "x/y:z.txt"),
    ],
)
def test_the_tenant_of_a_document_id(ref):
    from rag_assets.lib.keys import document_tenant

    assert document_tenant(ref.document_id, ref.uri) == ref.tenant
