"""Keyword (full-text) search in the stores and hybrid search through `search()`: the same
contract on LanceDB (BM25 index) and pgvector (tsvector + GIN); Pinecone is vector-only and
says so. See docs/stores.md and D31."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from rag_assets.lib.fusion import reciprocal_rank_fusion
from rag_assets.resources.pgvector_store import PgVectorStore, pg_table_name, tsv_index
from rag_assets.resources.vector_stores import LanceDBStore, UnsupportedSearch, VectorStore, table_name
from rag_assets.search import CANDIDATES, DEFAULT_MODE, MODES, fuse, mode_for, search
from rag_assets_tests.store_fixtures import (  # the *_fixture functions are pytest fixtures, used by name
    CONTRACT_DIMENSION,
    pg_server_fixture,  # noqa: F401
    pinecone_env_fixture,  # noqa: F401
    pinecone_server_fixture,  # noqa: F401
    store_fixture,  # noqa: F401
    store_kind_fixture,  # noqa: F401
    unique,
)
from rag_assets_tests.test_cli import run_cli
from rag_assets_tests.test_vector_store_contract import (
    add_rows_directly,
    doc_id,
    make_doc,
    pg_connect,
    random_vectors,
    unit,
)

DIM = CONTRACT_DIMENSION

FILLER = [
    "The quarterly report lists revenue by region and the costs of each office.",
    "Employees book travel through the portal and keep their receipts for expenses.",
    "The cafeteria opens at eight and serves lunch until two in the afternoon.",
    "Security badges are renewed every year at the front desk of the main building.",
]
RARE = "The zygomorphic flower of the orchid is symmetric along one plane only."


class FakeEmbedder:
    """What `search()` needs of an embedder: a model id, a dimension, and vectors (given per
    text, else a fixed random unit vector from the text's hash)."""

    def __init__(self, model_id: str, vectors: dict[str, np.ndarray] | None = None):
        self.model_id, self.dimension, self.vectors, self.calls = model_id, DIM, dict(vectors or {}), 0

    def embed(self, texts):
        self.calls += 1
        out = []
        for text in texts:
            if text not in self.vectors:
                seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
                self.vectors[text] = unit(np.random.default_rng(seed).normal(size=DIM))
            out.append(self.vectors[text])
        return np.stack(out)


# The stores with a keyword index (Pinecone's behaviour: test_pinecone_is_vector_only_and_says_why).
with_keyword_index = pytest.mark.parametrize("store_kind", ["lancedb", "pgvector"], indirect=True)


def write(store: VectorStore, model: str, tenant: str, key: str, texts: list[str], seed: int, **kwargs):
    did, rows = make_doc(tenant, key, random_vectors(len(texts), seed=seed), model=model, texts=texts, **kwargs)
    store.replace_documents(model, DIM, {did: rows})
    return did, rows


def keys(hits) -> list[str]:
    return [h.key for h in hits]


# ============================================================================================
# Keyword search, for every store with a keyword index
# ============================================================================================


@with_keyword_index
def test_a_rare_word_finds_its_row(store: VectorStore):
    model = unique("m")
    did, rows = write(
        store, model, "acme", "acme/flowers.txt", [*FILLER[:2], RARE, FILLER[2]], seed=1, pages=[1, 2, 3, 4]
    )
    write(store, model, "acme", "acme/other.txt", FILLER, seed=2)

    hits = store.keyword_query(model, DIM, "zygomorphic", tenant="acme", k=5)
    assert [h.chunk_id for h in hits] == [rows[2].chunk_id]
    hit = hits[0]
    assert (hit.key, hit.tenant, hit.page, hit.text, hit.document_id) == ("acme/flowers.txt", "acme", 3, RARE, did)
    assert hit.metadata == {"ordinal": 2} and hit.score > 0
    # Words, not syntax: case, stemming (English on both stores), and any of the words.
    assert keys(store.keyword_query(model, DIM, "ZYGOMORPHIC Orchids", tenant="acme", k=1)) == ["acme/flowers.txt"]
    assert {h.text for h in store.keyword_query(model, DIM, "receipt", tenant="acme", k=5)} == {FILLER[1]}
    found = store.keyword_query(model, DIM, "receipts badges", tenant="acme", k=10)
    assert {h.text for h in found} == {FILLER[1], FILLER[3]}  # either word: both documents' rows
    assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)
    assert store.keyword_query(model, DIM, "photosynthesis", tenant="acme", k=5) == []
    assert store.keyword_query(model, DIM, "zygomorphic", tenant="acme", k=0) == []
    assert store.keyword_query(unique("m"), DIM, "zygomorphic", tenant="acme") == []  # no table


@with_keyword_index
def test_keyword_search_never_crosses_tenants(store: VectorStore):
    model = unique("m")
    write(store, model, "acme", "acme/a.txt", FILLER, seed=3)
    # Other tenants' rows say the word over and over; one claims to be acme's in its metadata.
    write(
        store, model, "globex", "globex/g.txt", ["zygomorphic " * 30, RARE], seed=4, metadata=[{"tenant": "acme"}] * 2
    )
    write(store, model, "acme2", "acme2/x.txt", [RARE], seed=5)
    write(store, model, "o'hara", "o'hara/x.txt", [RARE], seed=6)

    assert store.keyword_query(model, DIM, "zygomorphic", tenant="acme", k=50) == []
    assert store.keyword_query(model, DIM, "zygomorphic", tenant="acme", k=50, where={"tenant": "acme"}) == []
    assert {h.tenant for h in store.keyword_query(model, DIM, "zygomorphic", tenant="globex", k=50)} == {"globex"}
    assert keys(store.keyword_query(model, DIM, "zygomorphic", tenant="o'hara")) == ["o'hara/x.txt"]
    for phrasing in ["acme' OR '1'='1", "%", "acme%", "ACME", "globex ", "o''hara", "*", "acme,globex"]:
        assert store.keyword_query(model, DIM, "zygomorphic", tenant=phrasing, k=50) == [], phrasing
    for missing in ("", None, "acme\x00"):
        with pytest.raises(ValueError):
            store.keyword_query(model, DIM, "zygomorphic", tenant=missing)


@with_keyword_index
def test_keyword_search_applies_where(store: VectorStore):
    model = unique("m")
    meta = [{"owner": "sales", "n": 1}, {"owner": "hr", "n": 2}, {"owner": "sales", "n": 3, "label": "50%_off"}]
    write(store, model, "acme", "acme/m.txt", [RARE, RARE + " Again.", "zygomorphic petals"], seed=7, metadata=meta)

    def ns(where):
        return sorted(
            h.metadata["n"] for h in store.keyword_query(model, DIM, "zygomorphic", tenant="acme", k=10, where=where)
        )

    assert ns(None) == ns({}) == [1, 2, 3]
    assert ns({"owner": "sales"}) == [1, 3]
    assert ns({"owner": "sales", "n": 3}) == [3] == ns({"label": "50%_off"})
    assert ns({"n": 1.0}) == [1] and ns({"n": True}) == [] and ns({"owner": "x' OR '1'='1"}) == []
    with pytest.raises(ValueError):
        store.keyword_query(model, DIM, "zygomorphic", tenant="acme", where={"n": None})


@with_keyword_index
def test_replaced_and_deleted_documents_leave_no_keyword_ghosts(store: VectorStore):
    model = unique("m")
    did, _ = write(store, model, "acme", "acme/a.txt", [RARE, "the word quokka lives here"], seed=8)
    gone, _ = write(store, model, "acme", "acme/gone.txt", ["quokka quokka"], seed=9)
    assert len(store.keyword_query(model, DIM, "quokka", tenant="acme", k=10)) == 2

    # A new version without the words: the old rows' text is no longer found.
    write(store, model, "acme", "acme/a.txt", ["now about a wombat"], seed=10, version="v2")
    assert keys(store.keyword_query(model, DIM, "zygomorphic quokka", tenant="acme", k=10)) == ["acme/gone.txt"]
    assert keys(store.keyword_query(model, DIM, "wombat", tenant="acme")) == ["acme/a.txt"]
    assert store.delete_documents(model, DIM, [gone]) == 1
    assert store.keyword_query(model, DIM, "quokka", tenant="acme", k=10) == []
    store.replace_documents(model, DIM, {did: []})  # an empty replace empties the document
    assert store.keyword_query(model, DIM, "wombat", tenant="acme", k=10) == []


# (text, whether it holds the rare word as a word of its own, so that its row must be found)
HOSTILE = [
    ("", False),
    ("   ", False),
    ('"', False),
    ("'", False),
    ("''", False),
    ('"zygomorphic', True),
    ("zygomorphic'", True),
    ("zygomorphic' OR '1'='1", True),
    ("a & b | !c", False),
    ("zygomorphic & !orchid", True),
    ("!zygomorphic", True),
    ("zygomorphic:*", True),
    ("zygomorphic <-> orchid", True),
    ("((zygomorphic", True),
    (")", False),
    ("-zygomorphic", True),
    ("+zygomorphic", True),
    ("zygomorphic AND OR NOT", True),
    ("OR", False),
    ("title:zygomorphic", False),
    ("zygomorphic~2", False),
    ("zygomorphic^3", False),
    ("*", False),
    ("?", False),
    ("\\", False),
    ("zygomorphic\\", True),
    ("%_", False),
    ("\x00", False),
    ("zygomorphic\x00", True),
    ("\n\t", False),
    ("日本語のテキスト", False),
    ("🌸 zygomorphic 🌸", True),
    ("x" * 5000, False),
    ("zygomorphic " * 2000, True),
    ("the and of", False),  # stop words only
]


@with_keyword_index
@pytest.mark.parametrize(("text", "holds_the_word"), HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_query_text_never_fails(store: VectorStore, text: str, holds_the_word: bool):
    """Quotes, operators, syntax of either store's query language, NUL, empty: words or
    nothing, never an error; a text that holds the rare word still finds its row."""
    model = unique("m")
    write(store, model, "acme", "acme/flowers.txt", [RARE, FILLER[0]], seed=11)
    write(store, model, "globex", "globex/g.txt", [RARE], seed=12)
    hits = store.keyword_query(model, DIM, text, tenant="acme", k=5)
    assert all(h.tenant == "acme" for h in hits)
    if holds_the_word:
        assert "acme/flowers.txt" in keys(hits), text


@with_keyword_index
def test_keyword_query_text_must_be_a_string(store: VectorStore):
    model = unique("m")
    write(store, model, "acme", "acme/a.txt", [RARE], seed=13)
    for bad in (None, b"zygomorphic", ["zygomorphic"], 3):
        with pytest.raises(TypeError):
            store.keyword_query(model, DIM, bad, tenant="acme")


# ============================================================================================
# Hybrid through search(), and modes
# ============================================================================================


@with_keyword_index
def test_hybrid_fuses_the_vector_and_the_keyword_lists(store: VectorStore):
    model = unique("m")
    rng = np.random.default_rng(14)
    q = unit(rng.normal(size=DIM))
    far = [unit(-q + rng.normal(size=DIM) * 0.1) for _ in range(3)]
    near = [unit(q + rng.normal(size=DIM) * 0.05)]
    texts = ["nothing to see", RARE, "more filler text", "zygomorphic orchid, near too"]
    did, rows = make_doc("acme", "acme/h.txt", [far[0], far[1], far[2], near[0]], model=model, texts=texts)
    gdid, grows = make_doc("globex", "globex/h.txt", [q, q], model=model, texts=[RARE, "zygomorphic"])
    store.replace_documents(model, DIM, {did: rows, gdid: grows})
    embedder = FakeEmbedder(model, {"zygomorphic orchid": q})

    [vector] = search(store, embedder, "acme", ["zygomorphic orchid"], k=4, mode="vector")
    [keyword] = search(store, embedder, "acme", ["zygomorphic orchid"], k=4, mode="keyword")
    [hybrid] = search(store, embedder, "acme", ["zygomorphic orchid"], k=4, mode="hybrid")
    assert vector[0].chunk_id == rows[3].chunk_id and len(vector) == 4
    assert {h.chunk_id for h in keyword} == {rows[1].chunk_id, rows[3].chunk_id}
    # First in both lists: first, with the fused score's maximum (1.0); the keyword-only row
    # (far from the query vector) is second, above vector-only rows ranked below it.
    assert hybrid[0].chunk_id == rows[3].chunk_id and hybrid[0].score == pytest.approx(1.0)
    assert hybrid[1].chunk_id == rows[1].chunk_id
    assert {h.chunk_id for h in hybrid} == {r.chunk_id for r in rows} and {h.tenant for h in hybrid} == {"acme"}
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)
    assert all(0 < h.score <= 1 for h in hybrid)
    assert hybrid == fuse(
        store.query(model, DIM, q, tenant="acme", k=CANDIDATES),
        store.keyword_query(model, DIM, "zygomorphic orchid", "acme", k=CANDIDATES),
    )
    assert search(store, embedder, "acme", ["zygomorphic orchid"], k=2, mode="hybrid") == [hybrid[:2]]
    # The other tenant's rows, exactly the query and full of the words, never come back.
    assert search(store, embedder, "initech", ["zygomorphic orchid"], k=4, mode="hybrid") == [[]]


def test_search_modes_batches_and_where(store: VectorStore, store_kind: str):
    model = unique("m")
    meta = [{"owner": "sales"}, {"owner": "hr"}]
    write(store, model, "acme", "acme/a.txt", [RARE, "zygomorphic " + FILLER[0]], seed=15, metadata=meta)
    embedder = FakeEmbedder(model)
    assert mode_for(store) == (DEFAULT_MODE if store_kind != "pinecone" else "vector")
    assert search(store, embedder, "acme", []) == []
    for mode in store.search_modes:
        found = search(store, embedder, "acme", ["zygomorphic", "cafeteria lunch"], k=5, mode=mode)
        assert len(found) == 2 and all(h.tenant == "acme" for hits in found for h in hits)
        only = search(store, embedder, "acme", ["zygomorphic"], k=5, mode=mode, where={"owner": "hr"})
        assert [h.metadata for h in only[0]] == [{"owner": "hr"}], mode
    calls = embedder.calls
    if "keyword" in store.search_modes:
        search(store, embedder, "acme", ["zygomorphic"], mode="keyword")
        assert embedder.calls == calls  # keyword search embeds nothing
    with pytest.raises(ValueError, match="search mode 'semantic': use one of hybrid, vector, keyword"):
        search(store, embedder, "acme", ["x"], mode="semantic")


def test_pinecone_is_vector_only_and_says_why(store: VectorStore, store_kind: str):
    if store_kind != "pinecone":
        assert set(store.search_modes) == set(MODES)
        return
    assert store.search_modes == ("vector",)
    model = unique("m")
    write(store, model, "acme", "acme/a.txt", [RARE], seed=16)
    embedder = FakeEmbedder(model)
    for mode in ("keyword", "hybrid"):
        with pytest.raises(
            UnsupportedSearch, match=rf"^{mode} search: a Pinecone index is vector-only here \(.*dotproduct"
        ):
            search(store, embedder, "acme", ["zygomorphic"], mode=mode)
    with pytest.raises(UnsupportedSearch, match="vector-only"):
        store.keyword_query(model, DIM, "zygomorphic", tenant="acme")
    # No mode: the store's default, vector.
    [hits] = search(store, embedder, "acme", ["zygomorphic"], k=3)
    assert keys(hits) == ["acme/a.txt"] and hits[0].score <= 1.0


# ============================================================================================
# What is particular to each store
# ============================================================================================


def test_lancedb_finds_new_rows_before_the_index_takes_them_in_and_folds_them_in_past_a_bound(tmp_path):
    store = LanceDBStore(uri=str(tmp_path / "lance"), fts_reindex_rows=3, fts_reindex_fraction=0.5, compact_every=0)
    model = unique("m")

    def counts():
        table = store._table(model, DIM)
        [index] = [i for i in table.list_indices() if i.index_type == "FTS"]
        stats = table.index_stats(index.name)
        return stats.num_indexed_rows, stats.num_unindexed_rows

    def found(text):
        return set(keys(store.keyword_query(model, DIM, text, tenant="acme", k=10)))

    write(store, model, "acme", "acme/a.txt", [RARE, *FILLER], seed=17)
    assert counts() == (5, 0)  # a table's first rows: indexed at once (the index had none)
    write(store, model, "acme", "acme/b.txt", ["quokka", "wombat"], seed=18)
    assert counts() == (5, 2)  # 2 < half of 5: left unindexed, and found all the same
    assert found("quokka zygomorphic") == {"acme/a.txt", "acme/b.txt"}
    write(store, model, "acme", "acme/c.txt", ["numbat"], seed=19)
    assert counts() == (8, 0)  # 3 >= half of 5: folded in
    write(store, model, "acme", "acme/d.txt", ["dingo", "bilby"], seed=20)
    assert counts() == (8, 2)
    write(store, model, "acme", "acme/e.txt", ["echidna"], seed=21)
    assert counts() == (11, 0)  # 3 rows: the bound in rows (under half of 8)
    # Replaced and deleted rows that the index holds are gone from results too.
    write(store, model, "acme", "acme/a.txt", ["only filler now"], seed=22, version="v2")
    store.delete_documents(model, DIM, [doc_id("acme", "acme/b.txt")])
    assert found("zygomorphic quokka wombat") == set()
    assert found("filler numbat") == {"acme/a.txt", "acme/c.txt"}


def test_lancedb_a_table_from_before_the_keyword_index_gets_it(tmp_path):
    """A table written before the store kept a full-text index: a keyword query (a reader)
    or a write builds it over the rows already there."""
    for first in ("read", "write"):
        store = LanceDBStore(uri=str(tmp_path / f"lance-{first}"))
        model = unique("m")
        _, rows = make_doc("acme", "acme/old.txt", random_vectors(2, seed=20), model=model, texts=[RARE, FILLER[0]])
        add_rows_directly(store, "lancedb", model, rows, old=True)
        import lancedb

        table = lancedb.connect(store.uri).open_table(table_name(model, DIM))
        assert [i for i in table.list_indices() if i.index_type == "FTS"] == []
        if first == "write":
            write(store, model, "acme", "acme/new.txt", ["quokka"], seed=21)
        assert keys(store.keyword_query(model, DIM, "zygomorphic", tenant="acme")) == ["acme/old.txt"]
        assert len([i for i in store._table(model, DIM).list_indices() if i.index_type == "FTS"]) == 1


def test_lancedb_native_hybrid_as_documented_agrees_with_search(tmp_path):
    """docs/stores.md shows applications LanceDB's own hybrid query with the tenant filter:
    it runs on the store's table and fuses the same way (RRF, k=60)."""
    store = LanceDBStore(uri=str(tmp_path / "lance"))
    model = unique("m")
    texts = [RARE, *FILLER, "zygomorphic petals of an orchid", "orchid care"]
    write(store, model, "acme", "acme/a.txt", texts, seed=22)
    write(store, model, "globex", "globex/a.txt", texts, seed=23)
    embedder = FakeEmbedder(model)
    q = embedder.embed(["zygomorphic orchid"])[0]

    import lancedb

    table = lancedb.connect(store.uri).open_table(table_name(model, DIM))
    native = (
        table.search(query_type="hybrid")
        .vector(q)
        .text("zygomorphic orchid")
        .distance_type("cosine")
        .where("tenant = 'acme'", prefilter=True)
        .limit(CANDIDATES)
        .to_list()
    )
    assert {r["tenant"] for r in native} == {"acme"} and len(native) == len(texts)
    ours = dict(
        reciprocal_rank_fusion(
            [
                [h.chunk_id for h in store.query(model, DIM, q, "acme", k=CANDIDATES)],
                [h.chunk_id for h in store.keyword_query(model, DIM, "zygomorphic orchid", "acme", k=CANDIDATES)],
            ]
        )
    )
    assert {r["id"]: pytest.approx(ours[r["id"]], rel=1e-5) for r in native} == {
        r["id"]: r["_relevance_score"] for r in native
    }


def test_pgvector_full_text_column_index_and_migration(pg_server):
    model = unique("m")
    _, old_rows = make_doc("acme", "acme/old.txt", random_vectors(2, seed=24), model=model, texts=[RARE, FILLER[1]])
    add_rows_directly(PgVectorStore(dsn=pg_server.dsn), "pgvector", model, old_rows, old=True)
    table = pg_table_name(model, DIM)
    # The first reader migrates the table: the column is computed for the rows already there.
    assert keys(PgVectorStore(dsn=pg_server.dsn).keyword_query(model, DIM, "zygomorphic", tenant="acme")) == [
        "acme/old.txt"
    ]
    with pg_connect(pg_server) as conn:
        column = conn.execute(
            "SELECT data_type, is_generated, generation_expression FROM information_schema.columns "
            "WHERE table_name = %s AND column_name = 'content_tsv'",
            (table,),
        ).fetchone()
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (tsv_index(table),)).fetchone()
        conn.execute("SET enable_seqscan = off")  # a table of two rows: ask what the planner can use
        params = {"text": "zygomorphic", "tenant": "acme", "model": model, "k": 5}
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + PgVectorStore.keyword_sql(table), params))
    assert column[:2] == ("tsvector", "ALWAYS") and "to_tsvector('english'::regconfig, content)" in column[2]
    assert "USING gin (content_tsv)" in index[0]
    assert tsv_index(table) in plan  # the GIN index serves the match
    # A fresh table has them from the start; writes keep the column (it is generated).
    fresh = unique("m")
    write(PgVectorStore(dsn=pg_server.dsn), fresh, "acme", "acme/new.txt", ["quokka"], seed=25)
    assert keys(PgVectorStore(dsn=pg_server.dsn).keyword_query(fresh, DIM, "quokkas", tenant="acme")) == [
        "acme/new.txt"
    ]


def test_pgvector_hybrid_in_one_statement_agrees_with_search(pg_server):
    """The one-statement hybrid SQL of docs/stores.md gives search()'s hybrid order and scores."""
    from pgvector.psycopg import register_vector
    from psycopg.types.json import Jsonb

    store = PgVectorStore(dsn=pg_server.dsn)
    model = unique("m")
    texts = [RARE, *FILLER, "zygomorphic petals of an orchid", "orchid care", "zygomorphic"]
    meta = [{"owner": "sales" if i % 2 else "hr"} for i in range(len(texts))]
    write(store, model, "acme", "acme/a.txt", texts, seed=26, metadata=meta)
    write(store, model, "globex", "globex/a.txt", texts, seed=27)
    embedder = FakeEmbedder(model)
    for where in (None, {"owner": "hr"}):
        [ours] = search(store, embedder, "acme", ["zygomorphic orchid"], k=5, mode="hybrid", where=where)
        params = {"vector": embedder.embed(["zygomorphic orchid"])[0], "text": "zygomorphic orchid", "tenant": "acme"}
        params |= {"model": model, "depth": CANDIDATES, "k": 5} | ({"where": Jsonb(where)} if where else {})
        with pg_connect(pg_server) as conn:
            register_vector(conn)
            rows = conn.execute(PgVectorStore.hybrid_sql(pg_table_name(model, DIM), bool(where)), params).fetchall()
        assert [(r[0], r[1], r[2]) for r in rows] == [(h.chunk_id, h.key, h.tenant) for h in ours]
        assert [float(r[-1]) for r in rows] == pytest.approx([h.score for h in ours])
        assert where is None or all(json.dumps(r[6]) == json.dumps(where) for r in rows)


# ============================================================================================
# The command line
# ============================================================================================


@pytest.mark.slow
def test_cli_query_modes(rag_env, tmp_path):
    from rag_assets_tests.conftest import make_pdf

    inbox = tmp_path / "inbox"
    make_pdf(inbox / "acme" / "flowers.pdf", ["Roses need sun and water.", "The zygomorphic orchid blooms in spring."])
    make_pdf(inbox / "acme" / "garage.pdf", ["The parking garage closes at ten at night."])
    make_pdf(inbox / "globex" / "g.pdf", ["zygomorphic zygomorphic zygomorphic"])
    assert run_cli("ingest", str(inbox), "--json").returncode == 0

    def query(*args):
        done = run_cli("query", *args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    keyword = query("zygomorphic", "--tenant", "acme", "--mode", "keyword")
    assert [(h["key"], h["page"]) for h in keyword] == [("acme/flowers.pdf", 2)] and keyword[0]["score"] > 0
    assert query("zygomorphic", "--tenant", "acme", "--mode", "keyword", "-k", "3") == keyword
    hybrid = query("zygomorphic", "--tenant", "acme", "-k", "3")  # the default mode
    assert query("zygomorphic", "--tenant", "acme", "-k", "3", "--mode", DEFAULT_MODE) == hybrid
    assert (hybrid[0]["key"], hybrid[0]["page"]) == ("acme/flowers.pdf", 2) and len(hybrid) == 3
    assert {h["tenant"] for h in hybrid} == {"acme"} and all(0 < h["score"] <= 1 for h in hybrid)
    vector = query("when does the garage close", "--tenant", "acme", "-k", "1", "--mode", "vector")
    assert vector[0]["key"] == "acme/garage.pdf" and -1 <= vector[0]["score"] <= 1
    assert query("zygomorphic", "--tenant", "globex", "--mode", "keyword")[0]["key"] == "globex/g.pdf"
    assert query('"zygomorphic" OR 1=1 -- :*', "--tenant", "acme", "--mode", "keyword")[0]["key"] == "acme/flowers.pdf"
    assert query("", "--tenant", "acme", "--mode", "keyword") == []
    human = run_cli("query", "zygomorphic", "--tenant", "acme", "--mode", "keyword")
    assert human.returncode == 0 and "acme/flowers.pdf p.2" in human.stdout
    bad = run_cli("query", "zygomorphic", "--tenant", "acme", "--mode", "semantic")
    assert bad.returncode == 2 and "invalid choice: 'semantic'" in bad.stderr


def test_cli_keyword_on_pinecone_is_one_clear_line(rag_env, monkeypatch):
    """No server is needed to refuse: the mode is checked against the store before anything
    is asked of it."""
    monkeypatch.setenv("RAG_INDEX_URI", "pinecone://docs?namespace={tenant}&host=http://127.0.0.1:9")
    monkeypatch.setenv("PINECONE_API_KEY", "test-key")
    for mode in ("keyword", "hybrid"):
        done = run_cli("query", "zygomorphic", "--tenant", "acme", "--mode", mode)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.startswith(f"rag-assets query: {mode} search: a Pinecone index is vector-only here (")
        assert done.stderr.rstrip("\n").count("\n") == 0, done.stderr


def test_lancedb_a_failed_optimize_leaves_the_write_in_place(tmp_path, monkeypatch, caplog):
    """optimize() after a write is upkeep: when it fails (a concurrent writer's commit came
    first), the write stands, and the rows are found, unindexed, until the next write folds
    them in."""
    import lancedb.table

    def conflict(self, **kwargs):
        raise RuntimeError("lance error: Retryable commit conflict for version 39")

    store = LanceDBStore(uri=str(tmp_path / "lance"))
    model = unique("m")
    monkeypatch.setattr(lancedb.table.LanceTable, "optimize", conflict)
    assert write(store, model, "acme", "acme/a.txt", [RARE], seed=40)[1]
    assert "optimize() after the write failed; the next write tries again" in caplog.text
    assert keys(store.keyword_query(model, DIM, "zygomorphic", tenant="acme")) == ["acme/a.txt"]
    monkeypatch.undo()
    write(store, model, "acme", "acme/b.txt", ["quokka"], seed=41)
    table = store._table(model, DIM)
    [index] = [i for i in table.list_indices() if i.index_type == "FTS"]
    assert table.index_stats(index.name).num_unindexed_rows == 0
