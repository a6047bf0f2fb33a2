"""The resources every area shares, chosen from the settings of this load, and the executor."""

from __future__ import annotations

import dagster as dg

from rag_assets.dagster_compat import in_process_executor_reading_run_keys
from rag_assets.lib.keys import check_tenant_rule
from rag_assets.lib.retrieval_eval import parse_floors
from rag_assets.partitions import documents_partitions
from rag_assets.resources.config import GoldenConfig, RagConfig, SyncConfig
from rag_assets.resources.embedders import embedder_from_spec, embedding_cache_from_uri
from rag_assets.resources.event_queue import EventQueue
from rag_assets.resources.image_analysis import analysis_store_from_uri, image_analyzer_from_spec
from rag_assets.resources.io_manager import PartitionedPickleIOManager, WorkArea
from rag_assets.resources.metabase import MetabaseClient
from rag_assets.resources.notifiers import notifier_from_spec
from rag_assets.resources.object_store import ObjectStore
from rag_assets.resources.remote_embedding import embed_runner_from_settings
from rag_assets.resources.stores import vector_store_from_uri
from rag_assets.settings import Settings, loading_settings


def build_resources(settings: Settings) -> dict:
    check_tenant_rule(settings.tenant_from_key)  # a bad RAG_TENANT_FROM_KEY fails here, by name, not key by key
    return {
        "object_store": ObjectStore(),
        "embedder": embedder_from_spec(settings.embedder, settings),
        "embedding_cache": embedding_cache_from_uri(settings.embedding_cache_location),
        "vector_store": vector_store_from_uri(settings.index_uri),
        "work_io_manager": PartitionedPickleIOManager(base_uri=settings.work_location),
        "work_area": WorkArea(base_uri=settings.work_location),
        "embed_runner": embed_runner_from_settings(settings),
        "image_analyzer": image_analyzer_from_spec(settings.image_analyzer),
        "analysis_store": analysis_store_from_uri(settings.analyses_location),
        "rag_config": RagConfig.from_settings(settings),
        "sync_config": SyncConfig.from_settings(settings),
        "event_queue": EventQueue(queue_url=settings.sqs_queue_url),
        "metabase": MetabaseClient(),
        "notifier": notifier_from_spec(settings.notify, settings.notify_secret),
    } | golden_resources(settings)


def golden_resources(settings: Settings) -> dict:
    """The golden_sets checks' configuration, when RAG_GOLDEN_SETS names a folder (a bad
    RAG_GOLDEN_FLOORS fails here, by name)."""
    golden = GoldenConfig.from_settings(settings)
    if golden is None:
        return {}
    parse_floors(golden.floors)
    return {"golden_config": golden}


def executor_from_settings(name: str) -> dg.ExecutorDefinition:
    """RAG_EXECUTOR: in_process (the default: a batch run loads the model once,
    docs/architecture.md; its ranged runs read their own keys, not the million others,
    docs/decisions.md D38), or ecs (each step its own ECS task of the run's task definition)."""
    if name == "in_process":
        return in_process_executor_reading_run_keys(documents_partitions.name)
    if name == "ecs":
        from dagster_aws.ecs import ecs_executor

        return ecs_executor
    raise ValueError(f"RAG_EXECUTOR={name!r}: use in_process or ecs")


@dg.definitions
def defs() -> dg.Definitions:
    settings = loading_settings()
    return dg.Definitions(resources=build_resources(settings), executor=executor_from_settings(settings.executor))
