"""Which precision the local model runs in: the decisions, without torch (docs/decisions.md D29).

On a CPU with bfloat16 instructions (AVX512_BF16, AMX) all-MiniLM-L6-v2 embeds ~1.5x faster
in bfloat16 than in float32, its vectors at cosine 0.9999 to the float32 ones. Without them
torch emulates bfloat16, several times slower. So bfloat16 is only tried on a CPU that has
the instructions, and only kept when a probe on that host finds it faithful and faster; the
verdict is kept in a small JSON file so that later processes do not probe again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

# /proc/cpuinfo's names of native bfloat16 arithmetic: x86's flags, and aarch64's Features "bf16".
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "amx_tile", "bf16"})
MIN_COSINE = 0.9995  # every probe text's bfloat16 vector at least this close to its float32 one
MIN_SPEEDUP = 1.1  # and bfloat16 at least this much faster: a tie keeps the exact float32
PROBE_TEXTS = 32
PROBE_VERSION = 1  # in the cache key: a changed probe (texts, thresholds) probes again
PRECISIONS = ("float32", "bfloat16")


def bf16_native(flags: Iterable[str], capability: str = "") -> bool:
    """Whether a CPU with these /proc/cpuinfo flags computes bfloat16 natively. torch's
    reported capability (`torch.backends.cpu.get_cpu_capability()`: DEFAULT, AVX2, AVX512...)
    counts when it names BF16 or AMX; AVX512 alone does not (Skylake has it, without bf16)."""
    named = capability.upper()
    return bool(BF16_FLAGS & {f.lower() for f in flags}) or "BF16" in named or "AMX" in named


def cpu_identity(cpuinfo: str) -> tuple[str, frozenset[str]]:
    """(the CPU's model name, its flags) from the text of /proc/cpuinfo (x86 `flags`, aarch64 `Features`)."""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name in ("model name", "cpu model") and not model:
            model = value.strip()
        elif name in ("flags", "features"):
            flags.update(value.split())
    return model, frozenset(flags)


def host_cpu(path: str = "/proc/cpuinfo") -> tuple[str, frozenset[str]]:
    """This host's `cpu_identity`; no flags where there is no /proc/cpuinfo (float32 there)."""
    try:
        return cpu_identity(Path(path).read_text(errors="replace"))
    except OSError:
        return "", frozenset()


def probe_texts(count: int = PROBE_TEXTS) -> list[str]:
    """`count` texts from a short sentence to a model window's worth (60 to 1,400 characters),
    cut from the Python reference topics that ship with CPython: the same on every host."""
    from pydoc_data.topics import topics

    names, lengths = sorted(topics), (60, 200, 600, 1400)
    return [" ".join(topics[names[i * len(names) // count]].split())[: lengths[i % len(lengths)]] for i in range(count)]


def probe_verdict(float32_seconds: float, bf16_seconds: float, cosine_min: float) -> str:
    """bfloat16 when its vectors are all within MIN_COSINE of float32's and it embedded the
    probe at least MIN_SPEEDUP times as fast; else float32."""
    faithful = cosine_min >= MIN_COSINE
    faster = bf16_seconds * MIN_SPEEDUP <= float32_seconds
    return "bfloat16" if faithful and faster else "float32"


@dataclass(frozen=True)
class Verdict:
    """The precision the local model runs in, and the probe's figures when one decided it."""

    precision: str
    cosine_min: float | None = None
    cosine_mean: float | None = None
    float32_seconds: float | None = None
    bf16_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: one of {', '.join(PRECISIONS)}")


def probe_key(depends_on: Mapping) -> str:
    """A digest of what a probe's verdict depends on (CPU, torch, weights, the probe itself)."""
    return hashlib.sha256(json.dumps(depends_on, sort_keys=True).encode()).hexdigest()[:16]


def _entries(path: Path) -> dict:
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def cached_verdict(path: Path, depends_on: Mapping, probe: Callable[[], Verdict]) -> tuple[Verdict, bool]:
    """(the verdict, whether it was read from the file): the one the JSON file at `path` holds
    for `depends_on`, else `probe()`'s, added to the file for the next process. An unreadable
    file or entry is as none: probed again, and rewritten. A file that cannot be written only
    means probing again next time."""
    key = probe_key(depends_on)
    try:
        return Verdict(**_entries(path)[key]["verdict"]), True
    except (KeyError, TypeError, ValueError):
        pass
    verdict = probe()
    entries = {**_entries(path), key: {"verdict": asdict(verdict), "depends_on": dict(depends_on)}}
    scratch = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch.write_text(json.dumps(entries, indent=1, sort_keys=True))
        os.replace(scratch, path)  # a reader sees the old file or the new one, never half of one
    except OSError:
        with contextlib.suppress(OSError):
            scratch.unlink()
    return verdict, False
