"""The code location: the defs folder (rag_assets/defs, one folder per area) loaded with
`dg`'s component tree, with the settings read from the environment once per load."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

import rag_assets.defs
from rag_assets.settings import Settings, loading_with

# Where pyproject.toml is in a checkout. An installed package (the deployment's image) has none:
# the tree needs a root, not a file in it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Everything in rag_assets/defs, built with `settings` (default: read from the environment)."""
    # Dagster's loader uses its own beta and preview classes (code references, module loading),
    # and ranged runs (`backfill_policy`: how a batch of documents becomes one run,
    # docs/architecture.md) are a beta parameter we take knowingly: this load does not print them.
    with loading_with(settings or Settings.from_env()), warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.ComponentTree.from_module(defs_module=rag_assets.defs, project_root=PROJECT_ROOT).build_defs()


defs = build_definitions()
