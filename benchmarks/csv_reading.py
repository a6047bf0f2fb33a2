"""CSV reading is linear in the file's size, and a hostile line is refused at once.

Times the project's CSV reader (`lib.parsing.stream_csv`: the encoding found, lines bounded,
rows as dicts) over exports of growing size, beside the floor: the standard library's
`csv.DictReader` over the same bytes. Then a file whose one line is 50 MB (the probe's
case, 80 s before the fix) and a 50 MB header of 25 million columns. Medians of 3, one run.

    .venv/bin/python benchmarks/csv_reading.py [--sizes 10,20,40,80]
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag_assets.lib.parsing import BadDocument, stream_csv


def export(megabytes: int) -> bytes:
    row = (
        "{n},Product {n}: a kettle that whistles when the water boils; steel, 1.7 litres. Ships in two days.,kitchen\n"
    )
    out, n = io.StringIO(), 0
    out.write("id,formatted_text,category\n")
    while out.tell() < megabytes << 20:
        out.write(row.format(n=n))
        n += 1
    return out.getvalue().encode()


def median_seconds(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def ours(data: bytes) -> int:
    return sum(1 for _ in stream_csv("export.csv", io.BytesIO(data), ["formatted_text"]))


def floor(data: bytes) -> int:
    return sum(1 for _ in csv.DictReader(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="")))


def refused(data: bytes) -> str:
    try:
        ours(data)
    except BadDocument as e:
        return e.reason
    return "read (not refused)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,20,40,80", help="export sizes in MB")
    args = parser.parse_args()
    print(f"{'export':>8} | {'rows':>9} | {'floor s':>7} | {'ours s':>7} | {'ratio':>5} | ours MB/s")
    for size in map(int, args.sizes.split(",")):
        data = export(size)
        rows = floor(data)
        assert ours(data) == rows
        base, mine = median_seconds(lambda d=data: floor(d)), median_seconds(lambda d=data: ours(d))
        print(f"{size:>6} MB | {rows:>9,} | {base:>7.2f} | {mine:>7.2f} | {mine / base:>4.2f}x | {size / mine:>8.1f}")
    for name, data in (
        ("one 50 MB line", b"id,formatted_text\n1," + b"x" * (50 << 20) + b"\n"),
        ("a 50 MB header", b"formatted_text," + b"c," * (25 << 20) + b"\n"),
    ):
        seconds = median_seconds(lambda d=data: refused(d))
        print(f"{name}: {refused(data)!r} in {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
