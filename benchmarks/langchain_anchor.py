"""The anchor: the script a user could write instead of rag_assets, with the LangChain
Indexing API. Run by benchmarks/anchor.py inside its own virtual environment (LangChain is
not a dependency of rag_assets), one process per phase, so it starts cold as a cron job would.

    python langchain_anchor.py --corpus DIR --state DIR --model PATH [--queries FILE]

Plain defaults of a tutorial: PyPDFLoader per file (a Document per page),
RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=150), HuggingFaceEmbeddings
over the same packaged all-MiniLM-L6-v2 weights (normalized), LanceDB, and
`index(..., cleanup="incremental", source_id_key="source")` with a SQLRecordManager, which
skips unchanged chunks and deletes the replaced ones. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--queries",
        type=Path,
        help="a JSON list of query texts: their ranked sources (paths under --corpus) are printed",
    )
    parser.add_argument("--depth", type=int, default=50)
    args = parser.parse_args()

    started = time.perf_counter()
    from langchain_classic.indexes import SQLRecordManager
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.vectorstores import LanceDB
    from langchain_core.indexing import index
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    imports = time.perf_counter() - started
    started = time.perf_counter()
    embeddings = HuggingFaceEmbeddings(
        model_name=args.model, model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True}
    )
    embeddings.embed_query("warm up the model")
    model_load = time.perf_counter() - started

    args.state.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    store = LanceDB(uri=str(args.state / "lancedb"), embedding=embeddings, table_name="chunks", mode="append")
    records = SQLRecordManager("anchor", db_url=f"sqlite:///{args.state / 'records.sqlite'}")
    records.create_schema()
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=150)

    def documents():
        for path in sorted(args.corpus.rglob("*.pdf")):
            yield from splitter.split_documents(PyPDFLoader(str(path)).load())

    result = index(documents(), records, store, cleanup="incremental", source_id_key="source")
    seconds = time.perf_counter() - started

    out = {"imports_seconds": imports, "model_load_seconds": model_load, "index_seconds": seconds, **result}
    out["rows"] = store.get_table().count_rows()
    if args.queries:
        ranked = []
        for query in json.loads(args.queries.read_text()):
            hits = store.similarity_search(query, k=args.depth)
            ranked.append([Path(h.metadata["source"]).relative_to(args.corpus).as_posix() for h in hits])
        out["ranked"] = ranked
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
