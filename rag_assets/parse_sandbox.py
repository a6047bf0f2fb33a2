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
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Self, TypeVar

from rag_assets.lib.errors import describe_error
from rag_assets.lib.parsing import BadDocument, ParsedDocument, parse_document

_PRELOADED = ["rag_assets.lib.parsing", "rag_assets.lib.images"]
T = TypeVar("T")


def guarded(fn: Callable[..., T], name: str, args: tuple, kwargs: dict) -> T:
    """`fn(*args, **kwargs)`, with any exception but MemoryError (which the caller names with
    its limit) turned into BadDocument: one line naming the file and what went wrong. Runs in
    the reader process, so what comes back is always something the parent can unpickle."""
    try:
        return fn(*args, **kwargs)
    except (BadDocument, MemoryError):
        raise
    except RecursionError:
        raise BadDocument(name, "nested too deeply to read (more levels than Python's recursion limit)") from None
    # untrusted input: a reader's own error is this file's failure, not the batch's
    except Exception as e:  # noqa: BLE001 - the reason above
        raise BadDocument(name, f"could not be read ({describe_error(e)})") from None


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

    def __enter__(self) -> Self:
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
            self._pool = ProcessPool(
                max_workers=1, context=context, initializer=_limit_memory, initargs=(self.memory_mb,)
            )
        return self._pool

    def parse(self, name: str, data: bytes, **options) -> ParsedDocument:
        """parse_document's result, or BadDocument naming the file and why it cannot be read."""
        return self.run(parse_document, name, name, data, **options)

    def run(self, fn: Callable[..., T], name: str, *args, **kwargs) -> T:
        """`fn(*args, **kwargs)` (a module-level function: it crosses to the reader process)
        for the document `name`, within the limits: its result, or BadDocument naming the file
        and the reason (an exception of the reader's, or the limit it went past)."""
        if self.seconds <= 0 and self.memory_mb <= 0:
            try:
                return guarded(fn, name, args, kwargs)
            except MemoryError:
                raise BadDocument(name, "ran out of memory while reading it") from None
        from pebble import ProcessExpired

        future = self._pool_started().schedule(guarded, args=(fn, name, args, kwargs), timeout=self.seconds or None)
        try:
            return future.result()
        except BadDocument:
            raise
        except FutureTimeout:
            raise BadDocument(
                name, f"took more than {self.seconds:g} s to read (RAG_MAX_SECONDS_PER_DOCUMENT)"
            ) from None
        except MemoryError:
            raise BadDocument(name, f"needed more than {self.memory_mb} MiB to read (RAG_MAX_MEMORY_MB)") from None
        except (ProcessExpired, BrokenProcessPool) as e:
            # The worker died: out of memory before the task began (receiving the bytes), the
            # kernel's OOM killer, a crash in a C library. The next document gets a new pool.
            self.__exit__()
            raise BadDocument(
                name,
                f"its reader process died while reading it ({e}); "
                f"the memory limit is {self.memory_mb} MiB (RAG_MAX_MEMORY_MB)",
            ) from None
        # what crossing processes can raise (a result that does not unpickle, ...)
        except Exception as e:  # noqa: BLE001 - the reason above
            raise BadDocument(name, f"could not be read ({describe_error(e)})") from None
