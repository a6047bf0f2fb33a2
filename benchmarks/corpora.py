"""Labelled retrieval corpora that nobody here wrote, built offline and deterministically from
text that ships with what `make install-test` installs, with three kinds of query each.

- **pydoc**: the Python Language Reference topics that ship with every CPython
  (`pydoc_data.topics`, what `help("if")` prints). The three topics that only gather others
  (`compound`, `specialnames`, and `else`, a copy of `if`) are left out, so that every
  answer lives in one place.
- **stdlib**: the docstrings of a fixed list of standard-library modules, one document a
  module (its docstring, then each public class, method and function it defines, by name).
- **dagster**: the docstrings of Dagster's public API (dagster==1.13.27, pinned by setup.py),
  one document per module that defines them.

The stdlib and dagster documents depend on the versions installed (Python 3.11.7 and the
pinned Dagster on this project's machines): the builder is deterministic for given versions,
and `fingerprint()` says which text was used.

Queries, each labelled with the document(s) that answer it:

- **lexical**: a sentence of a document with two or three words swapped for others from a
  fixed table (SYNONYMS), sentences and words drawn by a seeded generator: the kind of the
  held-out benchmark of the issue (sentences of the documents with a few words changed).
  Labelled with every document that holds the original sentence.
- **keyword**: two to four distinctive terms of a document (the highest tf-idf words that
  occur at least twice in it), labelled with every document holding all of them.
- **natural**: questions written by hand (60 for pydoc, 30 for stdlib, 20 for dagster).

Each kind is split in two by position: the even ones tune, the odd ones are held out and
only reported. Scores are by document: the ranked chunks are folded to the ranked list of
distinct documents (each at its best chunk's rank). recall@5 is the share of queries with a
relevant document among the first five; nDCG@10 rewards relevant documents ranked first.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rag_assets.lib.retrieval_eval import distinct_documents, ndcg_at, recall_at

KINDS = ("lexical", "keyword", "natural")
GENERATED_PER_KIND = 60  # lexical and keyword queries per corpus (30 tune, 30 held out)


@dataclass(frozen=True)
class Query:
    text: str
    relevant: frozenset[str]
    kind: str


@dataclass(frozen=True)
class Corpus:
    name: str
    description: str
    documents: dict[str, str]
    queries: tuple[Query, ...]

    def of_kind(self, kind: str) -> list[Query]:
        return [q for q in self.queries if q.kind == kind]

    def split(self, kind: str) -> tuple[list[Query], list[Query]]:
        """(tuning queries, held-out queries) of one kind."""
        queries = self.of_kind(kind)
        return queries[0::2], queries[1::2]


def _natural(pairs: list[tuple[str, str]]) -> list[Query]:
    return [Query(q, frozenset(r.split()), "natural") for q, r in pairs]


# ---------------------------------------------------------------------------------------------
# pydoc: the Python Language Reference topics

PYDOC_LEFT_OUT = {"compound", "specialnames", "else"}

PYDOC_QUESTIONS = _natural(
    [
        ("what happens to assert statements when Python runs with optimization", "assert"),
        ("unpack a sequence into several variables with a starred target", "assignment"),
        ("define a coroutine function with async def", "async"),
        ("intercept lookups of missing attributes on an object", "attribute-access"),
        ("does x += 1 modify a mutable object in place", "augassign"),
        ("sign of the result of the modulo operator and floor division", "binary"),
        ("bitwise exclusive or of two integers", "bitwise"),
        ("leave a loop before it finishes", "break"),
        ("passing keyword arguments and unpacking a dictionary into a call", "calls"),
        ("class decorators and the metaclass keyword in a class statement", "class"),
        ("are chained comparisons like a < b < c allowed", "comparisons"),
        ("methods an object needs to be used in a with statement", "context-managers with"),
        ("skip to the next iteration of a loop", "continue"),
        ("how an int and a float are converted when added together", "conversions"),
        ("difference between the official string representation and the informal one", "customization"),
        ("set a breakpoint and step through code line by line", "debugger"),
        ("remove a name binding or delete an item from a list", "del"),
        ("syntax of a dictionary comprehension", "dict"),
        ("name resolution of free variables inside code run by exec or eval", "dynamic-features"),
        ("the termination model of exception handling", "exceptions"),
        ("how the scope of a name is determined in a block", "execmodel naming"),
        ("exponent notation in floating point literals", "floating"),
        ("iterate over the items of a list with a loop", "for"),
        ("padding and alignment in the format specification mini-language", "formatstrings"),
        ("default parameter values are evaluated once when the function is defined", "function"),
        ("change a module level variable from inside a function", "global"),
        ("names with two leading underscores are mangled inside a class", "atom-identifiers id-classes"),
        ("which words are reserved keywords and soft keywords", "identifiers"),
        ("run a block only when a condition holds, with elif branches", "if"),
        ("write a complex number literal with the j suffix", "imaginary"),
        ("relative imports with leading dots and importing everything with a star", "import"),
        ("test whether a value is contained in a collection", "in"),
        ("hexadecimal octal and binary integer literals with underscores", "integers"),
        ("an anonymous function written as an expression", "lambda"),
        ("rebind a variable of an enclosing function from a nested function", "nonlocal"),
        ("reflected operands when the left operand does not support addition", "numeric-types"),
        ("object identity, the is operator and immutable values", "objects"),
        ("which operators bind more tightly than others", "operator-summary"),
        ("a statement that does nothing, used as a placeholder", "pass"),
        ("raising an integer to a negative power gives a float", "power"),
        ("chain a new exception to the one being handled", "raise"),
        ("what a return statement inside a generator does", "return"),
        ("make a container class that supports len() and indexing", "sequence-types"),
        ("shifting an integer left by n bits", "shifting"),
        ("select a range of items from a sequence with a step", "slicings"),
        ("the __dict__, __class__ and __mro__ attributes every object or class has", "specialattrs"),
        ("split a string on whitespace and strip characters from its ends", "string-methods"),
        ("raw string literals and escape sequences", "strings"),
        ("which values are considered false in a condition", "truth"),
        ("a clause that always runs whether or not an exception occurred", "try"),
        ("get a value from a dictionary with a default when the key is missing", "typesmapping"),
        ("the instance and the function behind a bound method", "typesmethods"),
        ("operations common to lists, tuples and ranges", "typesseq"),
        ("append, extend, insert and pop on a mutable sequence", "typesseq-mutable"),
        ("bitwise inversion of an integer with the tilde operator", "unary"),
        ("delegate part of a generator's work to a subgenerator", "yield"),
        ("repeat a block as long as an expression is true", "while"),
        ("several context managers in one statement", "with"),
        ("suspend a coroutine until an awaitable completes", "await async"),
        ("a reference to an attribute of an object with a dot", "attribute-references"),
    ]
)


def pydoc_documents() -> dict[str, str]:
    """Topic name -> its text, the gathering topics left out."""
    from pydoc_data.topics import topics

    return {name: text for name, text in sorted(topics.items()) if name not in PYDOC_LEFT_OUT}


# ---------------------------------------------------------------------------------------------
# Docstrings of modules: the standard library's, Dagster's

STDLIB_MODULES = [
    "abc", "argparse", "base64", "calendar", "codecs", "collections", "configparser", "contextlib", "csv",
    "dataclasses", "decimal", "difflib", "email.message", "ftplib", "getopt", "gzip", "heapq", "http.cookies",
    "imaplib", "inspect", "io", "ipaddress", "itertools", "json", "logging", "mailbox", "optparse", "os", "pathlib",
    "queue", "random", "shutil", "smtplib", "socketserver", "sqlite3", "statistics", "subprocess", "tarfile",
    "tempfile", "textwrap", "threading", "timeit", "tokenize", "traceback", "typing", "unittest.case", "urllib.parse",
    "uuid", "weakref", "zipfile",
]

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _doc(obj) -> str:
    return _ADDRESS.sub("", inspect.getdoc(obj) or "").strip()


def _members(owner_module: str, names, get) -> list[tuple[str, object]]:
    """Public classes and functions among `names` defined in `owner_module`, sorted by name."""
    out = []
    for name in sorted(set(names)):
        if name.startswith("_"):
            continue
        obj = get(name)
        if (inspect.isclass(obj) or inspect.isroutine(obj)) and getattr(obj, "__module__", None) == owner_module:
            out.append((name, obj))
    return out


def _entry(name: str, obj) -> str:
    """A class or function as text: its name and docstring, then its public methods' (by name)."""
    parts = []
    doc = _doc(obj)
    if doc:
        parts.append(f"{name}\n\n{doc}")
    if inspect.isclass(obj):
        for method, value in sorted(vars(obj).items()):
            if method.startswith("_"):
                continue
            value = value.__func__ if isinstance(value, classmethod | staticmethod) else value
            if isinstance(value, property):
                value = value.fget
            if inspect.isroutine(value) and (method_doc := _doc(value)):
                parts.append(f"{name}.{method}\n\n{method_doc}")
    return "\n\n".join(parts)


def stdlib_documents() -> dict[str, str]:
    """Module name -> its docstring and its public classes' and functions' docstrings."""
    docs = {}
    for module_name in STDLIB_MODULES:
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None) or dir(module)
        parts = [f"Module {module_name}", _doc(module)]
        parts += [_entry(n, o) for n, o in _members(module.__name__, names, lambda n, m=module: getattr(m, n, None))]
        docs[module_name] = "\n\n".join(p for p in parts if p)
    return docs


def dagster_documents(min_chars: int = 300) -> dict[str, str]:
    """The defining module (less `dagster._core.` and `dagster.`) -> the docstrings of the public
    classes and functions of `dagster` it defines (those of at least `min_chars`)."""
    import dagster

    by_module: dict[str, list[str]] = {}
    for name in sorted(n for n in dir(dagster) if not n.startswith("_")):
        obj = getattr(dagster, name)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)) or len(_doc(obj)) < min_chars:
            continue
        module = getattr(obj, "__module__", "") or ""
        if not module.startswith("dagster"):
            continue
        by_module.setdefault(module, []).append(_entry(name, obj))
    docs = {}
    for module, entries in sorted(by_module.items()):
        short = module.removeprefix("dagster._core.").removeprefix("dagster.").removeprefix("_")
        docs[short] = f"Module {short}\n\n" + "\n\n".join(entries)
    return docs


STDLIB_QUESTIONS = _natural(
    [
        ("parse command line options and print a usage message", "argparse optparse"),
        ("encode binary data as printable ASCII for email or URLs", "base64"),
        ("count how many times each item occurs in a list", "collections"),
        ("read settings from an INI style configuration file with sections", "configparser"),
        ("suppress a specific exception inside a with block", "contextlib"),
        ("write rows to a comma separated values file", "csv"),
        ("generate __init__ and __repr__ automatically for a class that holds data", "dataclasses"),
        ("exact decimal arithmetic with a chosen rounding mode and precision", "decimal"),
        ("compare two lists of lines and show the differences as a unified diff", "difflib"),
        ("keep a list as a priority queue where the smallest item is popped first", "heapq"),
        ("get the source code and the signature of a function at run time", "inspect"),
        ("check whether an IP address belongs to a network", "ipaddress"),
        ("serialize a Python dictionary to a JSON string", "json"),
        ("send log messages of different severity levels to a file handler", "logging"),
        ("rename a file, walk a directory tree and read environment variables", "os"),
        ("object oriented file system paths, joining them and globbing", "pathlib"),
        ("a thread safe FIFO queue to pass work between threads", "queue"),
        ("shuffle a list and pick a random element", "random"),
        ("copy a whole directory tree and remove it recursively", "shutil"),
        ("send an email through an SMTP server with TLS and login", "smtplib"),
        ("mean, median and standard deviation of a list of numbers", "statistics"),
        ("run an external program and capture its output", "subprocess"),
        ("extract the members of a gzip or bz2 compressed tar archive", "tarfile"),
        ("create a temporary directory that is removed when done", "tempfile"),
        ("wrap a long paragraph of text to a given line width", "textwrap"),
        ("a lock to protect shared state between threads", "threading"),
        ("measure how long a small snippet of code takes to run", "timeit"),
        ("print the stack trace of the exception being handled", "traceback"),
        ("split a URL into scheme, host, path and query string", "urllib.parse"),
        ("generate a random universally unique identifier", "uuid"),
        ("read and write ZIP archives", "zipfile"),
        ("a dictionary whose values are removed when the objects are no longer referenced", "weakref"),
    ]
)

DAGSTER_QUESTIONS = _natural(
    [
        ("declare a software-defined asset with a decorator", "definitions.decorators.asset_decorator"),
        ("one function that produces several assets at once", "definitions.decorators.asset_decorator"),
        ("run a job on a cron schedule", "definitions.decorators.schedule_decorator definitions.schedule_definition"),
        (
            "a sensor that launches runs when something changes outside Dagster",
            "definitions.decorators.sensor_decorator definitions.sensor_definition",
        ),
        ("react to a run that failed by sending an alert", "definitions.run_status_sensor_definition utils.alert"),
        ("daily partitions starting at a given date", "definitions.partitions.definition.time_window_subclasses"),
        ("a data quality check attached to an asset", "definitions.decorators.asset_check_decorator"),
        ("an IO manager that pickles outputs to the local file system", "storage.fs_io_manager"),
        (
            "load all the assets defined in a Python module",
            "definitions.module_loaders.load_assets_from_modules definitions.module_loaders.load_defs_from_module",
        ),
        (
            "the object that gathers assets, jobs, schedules and sensors of a code location",
            "definitions.definitions_class",
        ),
        ("materialize assets in process for a test", "definitions.materialize"),
        ("a job that selects a subset of assets to materialize", "definitions.unresolved_asset_job_definition"),
        ("metadata attached to a materialization event", "definitions.events"),
        (
            "configuration of a run that varies with a time window partition",
            "definitions.partitions.partitioned_config.time_window",
        ),
        (
            "check that an asset was updated recently enough",
            "definitions.asset_checks.asset_check_factories.freshness_checks.last_update definitions.freshness",
        ),
        (
            "run an external process and report its results back through pipes",
            "pipes.utils pipes.client pipes.subprocess pipes.context",
        ),
        ("a sensor that watches several assets for new materializations", "definitions.multi_asset_sensor_definition"),
        (
            "define an asset that is produced outside of Dagster",
            (
                "definitions.decorators.source_asset_decorator definitions.source_asset "
                "definitions.assets.definition.asset_spec"
            ),
        ),
        ("the type checks of inputs and outputs with a custom Dagster type", "types.dagster_type"),
        ("execute a job and get the result of the run in Python", "execution.api execution.execute_in_process_result"),
    ]
)


# ---------------------------------------------------------------------------------------------
# Generated queries: lexical (words swapped) and keyword (distinctive terms)

SYNONYMS = {
    "returns": "gives", "return": "give", "value": "quantity", "values": "quantities", "object": "instance",
    "objects": "instances", "function": "routine", "functions": "routines", "method": "procedure",
    "methods": "procedures", "argument": "parameter", "arguments": "parameters", "specified": "given",
    "default": "standard", "create": "make", "created": "made", "creates": "makes", "used": "employed",
    "use": "employ", "uses": "employs", "using": "employing", "file": "document", "files": "documents",
    "number": "count", "name": "label", "names": "labels", "error": "failure", "errors": "failures",
    "called": "invoked", "call": "invocation", "new": "fresh", "first": "initial", "last": "final",
    "list": "sequence", "string": "text", "strings": "texts", "character": "symbol", "characters": "symbols",
    "must": "has to", "should": "ought to", "can": "may", "will": "shall", "also": "too", "only": "solely",
    "each": "every", "all": "every", "any": "whatever", "when": "whenever", "if": "whenever", "between": "among",
    "type": "kind", "types": "kinds", "set": "collection", "contains": "holds", "contain": "hold",
    "following": "next", "result": "outcome", "results": "outcomes", "data": "information", "example": "instance",
    "class": "category", "instance": "occurrence", "attribute": "property", "attributes": "properties",
    "expression": "formula", "statement": "instruction", "statements": "instructions", "block": "section",
    "code": "program", "execution": "running", "executed": "run", "evaluated": "computed", "defined": "declared",
    "define": "declare", "defines": "declares", "raise": "throw", "raised": "thrown", "raises": "throws",
    "exception": "error condition", "exceptions": "error conditions", "true": "correct", "false": "incorrect",
    "equal": "identical", "different": "distinct", "same": "identical", "large": "big", "small": "little",
    "may": "might", "allows": "permits", "allowed": "permitted", "provides": "supplies", "provide": "supply",
    "required": "needed", "requires": "needs", "optional": "elective", "possible": "feasible", "usually": "normally",
    "typically": "generally", "however": "nevertheless", "therefore": "thus", "because": "since", "order": "sequence",
    "single": "lone", "multiple": "several", "several": "various", "current": "present", "previous": "prior",
    "case": "situation", "cases": "situations", "behavior": "behaviour", "behaviour": "conduct", "supported": "handled",
    "support": "handle", "explicitly": "expressly", "automatically": "implicitly", "directly": "straight",
    "specific": "particular", "given": "supplied", "passed": "handed", "pass": "hand", "run": "execute",
    "runs": "executes", "time": "moment", "key": "identifier", "keys": "identifiers", "item": "element",
    "items": "elements", "module": "library", "modules": "libraries", "write": "output", "read": "load",
    "open": "start", "start": "begin", "end": "finish", "stop": "halt", "change": "alter", "changes": "alters",
    "changed": "altered", "keep": "retain", "keeps": "retains", "add": "append", "added": "appended",
    "remove": "delete", "removed": "deleted", "similar": "alike", "important": "significant", "simple": "plain",
    "output": "result", "input": "entry", "single-line": "one-line", "operation": "action", "operations": "actions",
    "operator": "operation sign", "operand": "argument", "operands": "arguments", "sequence": "series",
    "mapping": "dictionary", "variable": "name", "variables": "names", "loop": "cycle", "condition": "test",
    "asset": "artifact", "assets": "artifacts", "job": "task", "jobs": "tasks", "run's": "execution's",
    "partition": "slice", "partitions": "slices", "resource": "facility", "resources": "facilities",
    "configuration": "setup", "config": "settings",
}

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_TERM = re.compile(r"[A-Za-z][A-Za-z0-9]{3,}")
STOPWORDS = frozenset(
    [
        "this", "that", "with", "from", "have", "which", "when", "will", "would", "there", "their", "these", "those",
        "been", "being", "were", "into", "than", "then", "they", "them", "such", "also", "only", "other", "each",
        "more", "most", "some", "what", "your", "must", "should", "could", "does", "done", "used", "using", "uses",
        "none", "true", "false", "self", "note", "example", "returns", "return", "value", "values", "object",
        "objects", "function", "functions", "default", "argument", "arguments", "given", "string", "list", "type",
        "class", "method", "name", "names", "following", "instead",
    ]
)


def _seed(name: str, kind: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{name}/{kind}".encode()).digest()[:8], "big")


def _sentences(text: str) -> list[str]:
    """Prose sentences of a text: paragraphs' lines joined, 10 to 40 words, mostly words."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        flat = " ".join(paragraph.split())
        for sentence in _SENTENCE.split(flat):
            words = sentence.split()
            if not 10 <= len(words) <= 40 or not sentence.endswith("."):
                continue
            if any(s in sentence for s in (">>>", "::", "{", "}", "=", "[", "]")):
                continue
            if sum(bool(_WORD.fullmatch(w.strip(".,;:()\"'`*"))) for w in words) < 0.8 * len(words):
                continue
            out.append(sentence)
    return out


def _swap(sentence: str, rng: random.Random) -> str | None:
    """The sentence with 2 or 3 of its words found in SYNONYMS swapped, or None if it has fewer."""
    tokens = re.split(r"(\W+)", sentence)
    candidates = [i for i, t in enumerate(tokens) if t.lower() in SYNONYMS]
    if len(candidates) < 2:
        return None
    for i in rng.sample(candidates, min(len(candidates), rng.choice((2, 3)))):
        new = SYNONYMS[tokens[i].lower()]
        tokens[i] = new[0].upper() + new[1:] if tokens[i][0].isupper() else new
    return "".join(tokens)


def _flat(text: str) -> str:
    return " ".join(text.split())


def lexical_queries(name: str, documents: dict[str, str], n: int = GENERATED_PER_KIND) -> list[Query]:
    """`n` sentences with words swapped, from documents taken in a seeded order, one sentence
    of each document before a second of any."""
    rng = random.Random(_seed(name, "lexical"))
    flat = {doc: _flat(text) for doc, text in documents.items()}
    pools = {}
    for doc in sorted(documents):
        sentences = sorted(set(_sentences(documents[doc])))
        rng.shuffle(sentences)
        pools[doc] = [s for s in sentences if sum(t.lower() in SYNONYMS for t in re.split(r"\W+", s)) >= 2]
    order = [doc for doc in sorted(pools) if pools[doc]]
    rng.shuffle(order)
    out, seen = [], set()
    while len(out) < n and any(pools[doc] for doc in order):
        for doc in order:
            if len(out) == n:
                break
            while pools[doc]:
                sentence = pools[doc].pop()
                if sentence not in seen:
                    break
            else:
                continue
            seen.add(sentence)
            relevant = frozenset(d for d, text in flat.items() if sentence in text)
            out.append(Query(_swap(sentence, rng), relevant, "lexical"))
    return out


def keyword_queries(name: str, documents: dict[str, str], n: int = GENERATED_PER_KIND) -> list[Query]:
    """`n` queries of 2-4 distinctive terms of a document: its highest tf-idf words seen at
    least twice in it, labelled with every document holding all of them."""
    rng = random.Random(_seed(name, "keyword"))
    terms = {doc: Counter(t.lower() for t in _TERM.findall(text)) for doc, text in documents.items()}
    df = Counter(t for counts in terms.values() for t in counts)
    total = len(documents)
    out = []
    docs = sorted(documents)
    rng.shuffle(docs)
    for doc in docs:
        if len(out) == n:
            break
        counts = terms[doc]
        scored = sorted(
            (
                (c * math.log(total / df[t]), t)
                for t, c in counts.items()
                if c >= 2 and t not in STOPWORDS and df[t] < total / 4
            ),
            reverse=True,
        )
        size = rng.choice((2, 3, 4))
        if len(scored) < size:
            continue
        chosen = [t for _, t in scored[:size]]
        rng.shuffle(chosen)
        relevant = frozenset(d for d, counts in terms.items() if all(t in counts for t in chosen))
        out.append(Query(" ".join(chosen), relevant, "keyword"))
    return out


def _build(name: str, description: str, documents: dict[str, str], natural: list[Query]) -> Corpus:
    missing = {d for q in natural for d in q.relevant} - set(documents)
    if missing:
        raise ValueError(f"{name}: questions labelled with documents it does not have: {sorted(missing)}")
    queries = lexical_queries(name, documents) + keyword_queries(name, documents) + natural
    return Corpus(name, description, documents, tuple(queries))


@functools.cache
def corpus(name: str) -> Corpus:
    if name == "pydoc":
        return _build("pydoc", "Python Language Reference topics (pydoc_data)", pydoc_documents(), PYDOC_QUESTIONS)
    if name == "stdlib":
        return _build(
            "stdlib",
            f"docstrings of {len(STDLIB_MODULES)} standard-library modules",
            stdlib_documents(),
            STDLIB_QUESTIONS,
        )
    if name == "dagster":
        return _build("dagster", "docstrings of Dagster's public API", dagster_documents(), DAGSTER_QUESTIONS)
    raise ValueError(f"unknown corpus {name!r} (known: {', '.join(CORPORA)})")


CORPORA = ("pydoc", "stdlib", "dagster")


def fingerprint(c: Corpus) -> str:
    """A digest of a corpus's documents and queries: equal on machines that build the same."""
    h = hashlib.sha256()
    for doc, text in sorted(c.documents.items()):
        h.update(f"{doc}\0{text}\0".encode())
    for q in c.queries:
        h.update(f"{q.kind}\0{q.text}\0{' '.join(sorted(q.relevant))}\0".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Scores


def scores(ranked_chunks_docs: Sequence[Sequence[str]], relevant: Sequence[frozenset[str]]) -> dict[str, float]:
    """Mean recall@5 and nDCG@10 of each query's ranked chunk documents."""
    docs = [distinct_documents(r) for r in ranked_chunks_docs]
    n = len(relevant)
    return {
        "recall@5": sum(recall_at(d, rel) for d, rel in zip(docs, relevant, strict=True)) / n,
        "ndcg@10": sum(ndcg_at(d, rel) for d, rel in zip(docs, relevant, strict=True)) / n,
    }
