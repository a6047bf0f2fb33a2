"""What to tell a person about a failed step: Dagster wraps the exception the code raised."""

from __future__ import annotations

import re
from collections.abc import Sequence

# The step failure's metadata that names the documents of a run that could not be read
# ({partition, key, reason}): written by vector_index (components.index_pipeline), read by the command
# line, the notifications and `rag-assets status` (over GraphQL).
FAILED_PARTITIONS = "failed_partitions"


def first_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def error_summary(chain: Sequence[str | None]) -> str | None:
    """The first line a person can act on, from the messages of an error and its causes:
    Dagster wraps the user code's exception ('Error occurred while executing op "x":'), so the
    first message of the chain that does not just introduce its cause; `pkg.mod.Class: text`
    is shortened to `Class: text`, and a `dagster...Failure: text` (a failure the code raised
    on purpose, said for people) to `text`."""
    for n, message in enumerate(chain):
        line = first_line(message)
        if line and (not line.endswith(":") or n == len(chain) - 1):
            line = re.sub(r"^dagster\.(?:[A-Za-z_]\w*\.)*Failure: ", "", line)
            return re.sub(r"^(?:[A-Za-z_][\w]*\.)+([A-Za-z_]\w*: )", r"\1", line)
    return None


def error_chain(error) -> list[str]:
    """The messages of a Dagster error (SerializableErrorInfo) and its causes, outermost first."""
    chain = []
    while error is not None:
        chain.append(error.message)
        error = error.cause
    return chain


def describe_error(error: BaseException) -> str:
    """One line for an exception caught at a boundary: `Class: message`. An OSError says what
    went wrong without the path it went wrong at (a server's own paths are not for the
    tenants who read failure reasons)."""
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"
    return first_line(f"{type(error).__name__}: {error}") or type(error).__name__
