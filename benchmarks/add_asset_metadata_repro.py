"""A minimal reproduction, for Dagster upstream, of docs/decisions.md D7: in Dagster 1.13,
`context.add_asset_metadata(..., partition_key=key)` loads every key of a dynamic partitions
definition to check its one key, so a step that records metadata for each of its K
partitions pays K x (all partitions) - and rag_assets' workaround beside it.

    python benchmarks/add_asset_metadata_repro.py [--partitions 100,10000,100000] [--keys 50]

Nothing of rag_assets is needed for the first column: one dynamic-partitioned asset, a run
over a range of K partitions, one call per partition key.
"""


import argparse
import logging
import sys
import time
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rag_assets.components.metadata import add_partition_metadata

parts = dg.DynamicPartitionsDefinition(name="docs")
TIMES: dict[str, float] = {}


@dg.asset(partitions_def=parts, backfill_policy=dg.BackfillPolicy.single_run())
def doc(context: dg.AssetExecutionContext) -> None:
    keys = context.partition_keys
    started = time.perf_counter()
    if context.run.tags["how"] == "dagster":
        for key in keys:
            context.add_asset_metadata({"n": 1}, partition_key=key)
    else:
        add_partition_metadata(context, {key: {"n": 1} for key in keys})
    TIMES[context.run.tags["how"]] = (time.perf_counter() - started) / len(keys)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--partitions", default="100,10000,100000")
    p.add_argument("--keys", type=int, default=50, help="partitions in the run")
    args = p.parse_args()
    logging.getLogger("dagster").setLevel(logging.ERROR)
    print(f"dagster {dg.__version__}; a run of {args.keys} partitions, one metadata call per partition")
    print(f"{'partitions':>11}{'add_asset_metadata ms/key':>28}{'add_partition_metadata ms/key':>32}")
    for n in (int(x) for x in args.partitions.split(",")):
        with dg.instance_for_test() as instance:
            keys = [f"doc-{i:07d}" for i in range(n)]
            for start in range(0, n, 10_000):
                instance.add_dynamic_partitions("docs", keys[start : start + 10_000])
            run_keys = keys[-args.keys :]
            for how in ("dagster", "rag_assets"):
                dg.materialize(
                    [doc],
                    instance=instance,
                    tags={
                        "dagster/asset_partition_range_start": run_keys[0],
                        "dagster/asset_partition_range_end": run_keys[-1],
                        "how": how,
                    },
                )
        print(f"{n:>11,}{1000 * TIMES['dagster']:>28.2f}{1000 * TIMES['rag_assets']:>32.3f}")


if __name__ == "__main__":
    main()
