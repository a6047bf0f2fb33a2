"""float32 against bfloat16 for the local model on this host, and what runtime auto chooses
here (docs/decisions.md D29).

    python benchmarks/runtime.py [--chunks 200] [--bf16-texts N] [--rounds 3] [--json]

Two sets: the probe's texts (`rag_assets.lib.precision.probe_texts`, what auto times on a
CPU with bfloat16 instructions) and chunks of the Python reference topics cut as the pipeline
cuts them (160/32), evenly picked. Each set is embedded in float32 and in bfloat16 (batch 8,
after a warm-up), `--rounds` times; the median is reported, as chunks/s so that a set of
another size compares. Where the CPU has no bfloat16 instructions torch emulates it, several
times slower: bfloat16 then embeds only `--bf16-texts` of each set (evenly picked, default
24), float32 all of it. The cosines are over the texts both embedded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore")

import numpy as np
import pydoc_corpus
from quality import chunk_corpus

from rag_assets.lib import precision
from rag_assets.resources.embedders import LocalEmbedder, host_bf16


def evenly(items: list, count: int) -> list:
    """`count` of `items` spread over all of them (every length of a sorted set is represented)."""
    if count >= len(items):
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def timed(embedder: LocalEmbedder, texts: list[str], rounds: int) -> tuple[float, np.ndarray]:
    """(median seconds of `rounds` embeddings of `texts`, the vectors)."""
    embedder.embed(texts[:8])  # warm-up: the model loaded, its first batches run
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        vectors = embedder.embed(texts)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), vectors


def compare(name: str, texts: list[str], bf16_count: int, rounds: int) -> dict:
    float32_seconds, float32 = timed(LocalEmbedder(runtime="torch"), texts, rounds)
    both = evenly(list(range(len(texts))), bf16_count)
    bf16_seconds, bf16 = timed(LocalEmbedder(runtime="bf16"), [texts[i] for i in both], rounds)
    cosines = (float32[both] * bf16).sum(axis=1)
    float32_rate, bf16_rate = len(texts) / float32_seconds, len(both) / bf16_seconds
    return {
        "set": name,
        "float32 texts": len(texts),
        "float32 s": round(float32_seconds, 2),
        "float32 texts/s": round(float32_rate, 1),
        "bf16 texts": len(both),
        "bf16 s": round(bf16_seconds, 2),
        "bf16 texts/s": round(bf16_rate, 1),
        "bf16 speed-up": round(bf16_rate / float32_rate, 2),
        "cosine mean": round(float(cosines.mean()), 5),
        "cosine min": round(float(cosines.min()), 5),
        # what the probe would decide from these figures (its own timing is of the same texts)
        "verdict": precision.probe_verdict(1 / float32_rate, 1 / bf16_rate, float(cosines.min())),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=200, help="chunks of the Python reference topics")
    parser.add_argument(
        "--bf16-texts",
        type=int,
        default=None,
        help="texts of each set bfloat16 embeds (default: all where native, else 24)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    cpu, flags = precision.host_cpu()
    native, load = host_bf16(), os.getloadavg()[0]
    chunks, _ = chunk_corpus(pydoc_corpus.documents(), 160, 32)
    sets = {"probe": precision.probe_texts(), "chunks": evenly(chunks, args.chunks)}
    rows = [
        compare(name, texts, args.bf16_texts or (len(texts) if native else 24), args.rounds)
        for name, texts in sets.items()
    ]
    chosen = LocalEmbedder().torch_precision()
    host = {
        "cpu": cpu or "unknown",
        "torch capability": torch.backends.cpu.get_cpu_capability(),
        "bf16 flags": sorted(precision.BF16_FLAGS & flags),
        "threads": torch.get_num_threads(),
        # other work on the cores skews the seconds
        "load average (1 min) before, after": f"{load:.1f}, {os.getloadavg()[0]:.1f}",
        "auto chooses": chosen.precision,
        "auto's probe": "ran or read from the cache"
        if chosen.cosine_min is not None
        else "none: no bfloat16 instructions",
    }
    if args.json:
        print(json.dumps({"host": host, "sets": rows}, indent=2))
        return
    for key, value in host.items():
        print(f"{key}: {value}")
    header = list(rows[0])
    print(" | ".join(f"{h:>15}" for h in header))
    for row in rows:
        print(" | ".join(f"{row[h]!s:>15}" for h in header))


if __name__ == "__main__":
    main()
