"""A minimal reproduction, for Dagster upstream, of docs/decisions.md D20 and D38: in Dagster
1.13, a run over a range of K keys of a dynamic partitions definition loads every key of the
definition, once per asset when the run is created (its planned events) and several times
per step while it runs, to slice the same K keys each time - and rag_assets' workaround
beside it.

    python benchmarks/ranged_run_repro.py [--partitions 1000,100000,1000000] [--keys 20] [--assets 4]

Nothing of rag_assets is needed for the first columns: a chain of dynamic-partitioned assets,
one run over the last K keys (`dg.materialize` creates the run and runs its steps in this
process). Printed a size: how many times the keys were loaded while the run was created and
while its steps ran, the seconds each load took, and the run's seconds; then the same run
under `partition_keys_of_the_run`, which answers with the range's keys from one indexed
query. What upstream could do: resolve a run's range once per run, and from the storage's
ids, not by slicing the whole list.
"""

import argparse
import logging
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rag_assets.dagster_compat import partition_keys_of_the_run

parts = dg.DynamicPartitionsDefinition(name="docs")
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def chain(length: int) -> list[dg.AssetsDefinition]:
    """`length` ranged assets, each depending on the one before."""
    out: list[dg.AssetsDefinition] = []
    for n in range(length):

        @dg.asset(
            name=f"step_{n}",
            partitions_def=parts,
            backfill_policy=dg.BackfillPolicy.single_run(),
            deps=out[-1:],
        )
        def step(context: dg.AssetExecutionContext) -> None:
            assert len(context.partition_keys) > 1

        out.append(step)
    return out


class Loads:
    """Counts and times the storage's loads of every key (the call Dagster's slicing makes),
    as made while the run is created (its planned events) or while its steps run."""

    def __init__(self, instance: dg.DagsterInstance):
        self.seconds: dict[str, list[float]] = {"create": [], "steps": []}
        read = instance.event_log_storage.get_dynamic_partitions

        def timed(partitions_def_name: str):
            creating = any(f.name == "_log_asset_planned_events" for f in traceback.extract_stack())
            started = time.perf_counter()
            try:
                return read(partitions_def_name)
            finally:
                self.seconds["create" if creating else "steps"].append(time.perf_counter() - started)

        instance.event_log_storage.get_dynamic_partitions = timed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--partitions", default="1000,100000,1000000")
    p.add_argument("--keys", type=int, default=20, help="partitions in the run")
    p.add_argument("--assets", type=int, default=4, help="assets in the run (rag_assets' ingest job has 4)")
    args = p.parse_args()
    logging.getLogger("dagster").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    assets = chain(args.assets)
    print(f"dagster {dg.__version__}; a run of {args.keys} partitions through {args.assets} assets")
    print(
        f"{'partitions':>11}{'loads at create':>17}{'loads in steps':>16}{'s a load':>10}{'run s':>8}"
        f"{'with the workaround: loads':>28}{'run s':>8}"
    )
    for n in (int(x) for x in args.partitions.split(",")):
        with dg.instance_for_test() as instance:
            keys = [f"doc-{i:07d}" for i in range(n)]
            for start in range(0, n, 10_000):
                instance.add_dynamic_partitions("docs", keys[start : start + 10_000])
            tags = {
                "dagster/asset_partition_range_start": keys[-args.keys],
                "dagster/asset_partition_range_end": keys[-1],
            }
            loads = Loads(instance)
            started = time.perf_counter()
            dg.materialize(assets, instance=instance, tags=tags, run_config=QUIET)
            plain = time.perf_counter() - started
            create, steps = len(loads.seconds["create"]), len(loads.seconds["steps"])
            each = statistics.median(loads.seconds["create"] + loads.seconds["steps"])
            for k in loads.seconds:
                loads.seconds[k].clear()
            started = time.perf_counter()
            with partition_keys_of_the_run(instance, "docs", tags["dagster/asset_partition_range_start"], keys[-1]):
                dg.materialize(assets, instance=instance, tags=tags, run_config=QUIET)
            ours = time.perf_counter() - started
            kept = sum(len(v) for v in loads.seconds.values())
        print(f"{n:>11,}{create:>17}{steps:>16}{each:>10.3f}{plain:>8.2f}{kept:>28}{ours:>8.2f}")


if __name__ == "__main__":
    main()
