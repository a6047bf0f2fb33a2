"""A labelled retrieval corpus that nobody here wrote: the Python Language Reference topics
that ship with every CPython (`pydoc_data.topics`, what `help("if")` prints), and questions
written by hand, each labelled with the topics that answer it.

The three topics that only gather others (`compound`, `specialnames`, and `else`, a copy of
`if`) are left out, so that every answer lives in one place. Queries are split in two by
position: the even ones tune (chunk size, runtime), the odd ones are held out and only
reported.

Scores are by document: the ranked chunks are folded to the ranked list of distinct
documents (each at its best chunk's rank). recall@5 is the share of queries with a relevant
document among the first five; nDCG@10 rewards relevant documents ranked first. The metrics
are rag_assets.lib.retrieval_eval's, the ones `rag-assets eval` reports.
"""

from __future__ import annotations

from collections.abc import Sequence

from rag_assets.lib.retrieval_eval import distinct_documents, ndcg_at, recall_at

LEFT_OUT = {"compound", "specialnames", "else"}

QUERIES: list[tuple[str, frozenset[str]]] = [
    (q, frozenset(r.split()))
    for q, r in [
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
]


def documents() -> dict[str, str]:
    """Topic name -> its text, the gathering topics left out."""
    from pydoc_data.topics import topics

    return {name: text for name, text in sorted(topics.items()) if name not in LEFT_OUT}


def split_queries() -> tuple[list[tuple[str, frozenset[str]]], list[tuple[str, frozenset[str]]]]:
    """(tuning queries, held-out queries)."""
    return QUERIES[0::2], QUERIES[1::2]


def scores(ranked_chunks_docs: Sequence[Sequence[str]], queries: Sequence[tuple[str, frozenset[str]]]) -> dict[str, float]:
    """Mean recall@5 and nDCG@10 of each query's ranked chunk documents."""
    docs = [distinct_documents(r) for r in ranked_chunks_docs]
    n = len(queries)
    return {
        "recall@5": sum(recall_at(d, rel) for d, (_, rel) in zip(docs, queries, strict=True)) / n,
        "ndcg@10": sum(ndcg_at(d, rel) for d, (_, rel) in zip(docs, queries, strict=True)) / n,
    }
