"""Intermediate values of document partitions, one file per partition, even in ranged runs."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import dagster as dg


class PartitionedPickleIOManager(dg.ConfigurableIOManager):
    """Stores a `{partition_key: value}` output one pickle per partition, and loads an input's
    partitions back as such a dict. Dagster's file IO manager refuses ranged (single-run)
    outputs; this one exists to allow them."""

    base_dir: str

    def _path(self, asset_key: dg.AssetKey, partition_key: str) -> Path:
        digest = hashlib.sha256(partition_key.encode("utf-8")).hexdigest()[:40]
        return Path(self.base_dir, *asset_key.path, digest[:2], digest + ".pkl")

    def handle_output(self, context: dg.OutputContext, obj: dict) -> None:
        expected = set(context.asset_partition_keys)
        if set(obj) != expected:
            raise ValueError(f"{context.asset_key.to_user_string()}: output keys {sorted(obj)[:3]} differ from the run's partitions")
        for key, value in obj.items():
            path = self._path(context.asset_key, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
            tmp.replace(path)  # atomic: a killed run never leaves half a file

    def delete_partition(self, asset_keys: list[dg.AssetKey], partition_key: str) -> None:
        """Forget a partition's values (its document was purged): nothing is left behind."""
        for asset_key in asset_keys:
            self._path(asset_key, partition_key).unlink(missing_ok=True)

    def load_input(self, context: dg.InputContext) -> dict:
        values = {}
        for key in context.asset_partition_keys:
            path = self._path(context.asset_key, key)
            if not path.exists():
                raise FileNotFoundError(f"{context.asset_key.to_user_string()}[{key}] has not been materialized")
            values[key] = pickle.loads(path.read_bytes())
        return values
