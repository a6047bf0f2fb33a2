"""Reading a document within limits: `parse_document` in a worker process with a time limit
(RAG_MAX_SECONDS_PER_DOCUMENT) and a memory ceiling (RAG_MAX_MEMORY_MB, the worker's address
space), so a file that makes a parser loop or balloon fails by name, and the run, the other
documents and the index go on (docs/decisions.md D25).

pebble's process pool kills a worker whose task runs past its timeout and starts another;
the worker is forked from a forkserver that has imported the parsers (not from the run's
process, which holds the model and threads). One worker serves a whole step, so its start
(and the OCR models' load, when a scan needs them) is paid once per run.
"""

from __future__ import annotations

import multiprocessing
import resource
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

from rag_assets.lib.parsing import BadDocument, ParsedDocument, parse_document

_PRELOADED = ["rag_assets.lib.parsing"]


def _limit_memory(memory_mb: int) -> None:
    if memory_mb > 0:
        limit = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class ParseSandbox:
    """`with ParseSandbox(seconds, memory_mb) as sandbox: sandbox.parse(name, data, ...)`.
    A limit of 0 turns that limit off; both 0: documents are parsed in this process."""

    def __init__(self, seconds: float, memory_mb: int):
        self.seconds, self.memory_mb = seconds, memory_mb
        self._pool = None

    def __enter__(self) -> ParseSandbox:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool.join()
            self._pool = None

    def _pool_started(self):
        if self._pool is None:
            from pebble import ProcessPool

            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(_PRELOADED)
            self._pool = ProcessPool(max_workers=1, context=context, initializer=_limit_memory, initargs=(self.memory_mb,))
        return self._pool

    def parse(self, name: str, data: bytes, **options) -> ParsedDocument:
        """parse_document's result, or BadDocument naming the limit the document went past."""
        if self.seconds <= 0 and self.memory_mb <= 0:
            return parse_document(name, data, **options)
        from pebble import ProcessExpired

        future = self._pool_started().schedule(parse_document, args=(name, data), kwargs=options, timeout=self.seconds or None)
        try:
            return future.result()
        except FutureTimeout:
            raise BadDocument(name, f"took more than {self.seconds:g} s to read (RAG_MAX_SECONDS_PER_DOCUMENT)") from None
        except MemoryError:
            raise BadDocument(name, f"needed more than {self.memory_mb} MiB to read (RAG_MAX_MEMORY_MB)") from None
        except (ProcessExpired, BrokenProcessPool) as e:
            # The worker died: out of memory before the task began (receiving the bytes), the
            # kernel's OOM killer, a crash in a C library. The next document gets a new pool.
            self.__exit__()
            raise BadDocument(
                name, f"its reader process died while reading it ({e}); the memory limit is {self.memory_mb} MiB (RAG_MAX_MEMORY_MB)"
            ) from None
