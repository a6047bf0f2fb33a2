"""Intermediate values of partitions: one file per partition, even in ranged runs, and a
partition's many items in parts a step writes and the next reads one at a time."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg


def partition_path(base_dir: str, asset_key: dg.AssetKey, partition_key: str) -> Path:
    """Where an asset's value for a partition is kept (its parts beside it, `.parts/`)."""
    digest = hashlib.sha256(partition_key.encode("utf-8")).hexdigest()[:40]
    return Path(base_dir, *asset_key.path, digest[:2], digest + ".pkl")


def write_atomically(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    tmp.replace(path)  # atomic: a killed run never leaves half a file


@dataclass(frozen=True)
class Parts:
    """A partition's items in files of a few thousand each: iterating gives one part (a
    list) at a time, so a date of 100,000 records is never in memory whole."""

    files: tuple[str, ...]

    def __iter__(self) -> Iterator[list]:
        for file in self.files:
            yield pickle.loads(Path(file).read_bytes())


def parts_of(items: list | Parts) -> Iterator[list]:
    """The parts of a partition's items, whether they are in memory (one part) or in files."""
    return iter([items]) if isinstance(items, list) else iter(items)


class WorkArea(dg.ConfigurableResource):
    """The folder of intermediate values (RAG_WORK_DIR/work), for steps that write a
    partition's items in parts (the IO manager keeps only their list)."""

    base_dir: str

    def write_parts(self, asset_key: dg.AssetKey, partition_key: str, parts: Iterable[list]) -> Parts:
        """Each list of `parts` in a file of its own, under a new folder that then replaces the
        partition's earlier parts."""
        home = partition_path(self.base_dir, asset_key, partition_key).with_suffix(".parts")
        folder = home / uuid.uuid4().hex
        files = []
        for n, part in enumerate(parts):
            files.append(str(folder / f"part-{n:05}.pkl"))
            write_atomically(Path(files[-1]), part)
        for old in home.iterdir() if home.exists() else ():
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
        return Parts(tuple(files))


class PartitionedPickleIOManager(dg.ConfigurableIOManager):
    """Stores a `{partition_key: value}` output one pickle per partition, and loads an input's
    partitions back as such a dict. Dagster's file IO manager refuses ranged (single-run)
    outputs; this one exists to allow them."""

    base_dir: str

    def _path(self, asset_key: dg.AssetKey, partition_key: str) -> Path:
        return partition_path(self.base_dir, asset_key, partition_key)

    def handle_output(self, context: dg.OutputContext, obj: dict) -> None:
        expected = set(context.asset_partition_keys)
        if set(obj) != expected:
            raise ValueError(f"{context.asset_key.to_user_string()}: output keys {sorted(obj)[:3]} differ from the run's partitions")
        for key, value in obj.items():
            write_atomically(self._path(context.asset_key, key), value)

    def delete_partition(self, asset_keys: list[dg.AssetKey], partition_key: str) -> None:
        """Forget a partition's values and parts (its document was purged): nothing is left behind."""
        for asset_key in asset_keys:
            path = self._path(asset_key, partition_key)
            path.unlink(missing_ok=True)
            shutil.rmtree(path.with_suffix(".parts"), ignore_errors=True)

    def load_input(self, context: dg.InputContext) -> dict:
        values = {}
        for key in context.asset_partition_keys:
            path = self._path(context.asset_key, key)
            if not path.exists():
                raise FileNotFoundError(f"{context.asset_key.to_user_string()}[{key}] has not been materialized")
            values[key] = pickle.loads(path.read_bytes())
        return values
