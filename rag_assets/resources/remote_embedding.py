"""Where the embeddings step runs its model (RAG_EMBED_ON): in the step's own process, or on
AWS Lambda or ECS through Dagster Pipes (docs/architecture.md, Remote steps).

The step keeps everything but the model: the embedding cache, the accounting, the
materialization. Only the texts the cache lacks travel, through the work location on S3, in
invocations of at most `texts_per_call` texts, `parallel_calls` at a time; each reports its
cost back through Pipes (rag_assets.frontends.pipes_embed).
"""

from __future__ import annotations

import functools
import json
import random
import string
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
import numpy as np

from rag_assets.lib.vector_files import REQUEST, decode_vectors
from rag_assets.resources.embedders import Embedder, EmbedStats
from rag_assets.resources.io_manager import join, read_bytes, remove, s3_client, write_bytes
from rag_assets.resources.object_store import split_s3_uri
from rag_assets.settings import Settings


@dataclass(frozen=True)
class RemoteEmbedder:
    """An embedder whose `embed` runs elsewhere: what `embed_with_cache` needs of one."""

    model_id: str
    dimension: int
    send: Callable[[Sequence[str], EmbedStats | None], np.ndarray]

    def embed(self, texts: Sequence[str], stats: EmbedStats | None = None) -> np.ndarray:
        return self.send(texts, stats)


def split_batches(count: int, per_call: int) -> list[range]:
    """The invocations of `count` texts, at most `per_call` each, as even as can be."""
    if count == 0:
        return []
    calls = -(-count // max(1, per_call))
    size = -(-count // calls)
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def merge_results(stats: EmbedStats, batches: Sequence[range], results: Sequence[dict]) -> None:
    """Add the invocations' reported costs to `stats`, their batches as indices of all texts."""
    for batch, result in zip(batches, results, strict=True):
        stats.calls += result["calls"]
        stats.retries += result["retries"]
        stats.tokens += result["tokens"]
        stats.seconds_waited += result["seconds_waited"]
        stats.batches.extend([[batch.start + i for i in b] for b in result["batches"]])
        for runtime in result.get("runtimes", []):  # a worker of an older image reports none
            stats.ran_on(runtime, result.get("bf16_probe_cosine_min"))


@functools.cache
def _work_message_reader_class() -> type:
    # dagster_aws is imported only by a step that sends its texts away, not by every process
    # that loads the code location (each run the daemon launches; docs/decisions.md D33).
    from dagster_aws.pipes import PipesS3MessageReader

    class WorkMessageReader(PipesS3MessageReader):
        """Pipes messages under the work location's `_pipes/messages/` (not at the bucket's root:
        the remote workers may write only below the work prefix), read every second."""

        def __init__(self, *, work_uri: str):
            bucket, self.prefix = split_s3_uri(join(work_uri, "_pipes", "messages"))
            super().__init__(bucket=bucket, client=s3_client(), interval=1)

        @contextmanager
        def get_params(self) -> Iterator[dict]:
            with super().get_params() as params:
                yield {**params, "key_prefix": f"{self.prefix}/{''.join(random.choices(string.ascii_letters, k=24))}"}

    return WorkMessageReader


def work_message_reader(work_uri: str):
    """A Pipes message reader of the work location (a dagster_aws PipesS3MessageReader)."""
    return _work_message_reader_class()(work_uri=work_uri)


class EmbedRunner(dg.ConfigurableResource, ABC):
    """Where the embeddings step runs its embedder."""

    @abstractmethod
    def embedder_for(self, context: dg.AssetExecutionContext, embedder: Embedder) -> Embedder | RemoteEmbedder: ...


class InProcessEmbedRunner(EmbedRunner):
    """The model runs in the step's process (the default)."""

    def embedder_for(self, context: dg.AssetExecutionContext, embedder: Embedder) -> Embedder:
        return embedder


class PipesEmbedRunner(EmbedRunner, ABC):
    """Sends the texts to remote workers through Pipes, several invocations at a time."""

    work_uri: str  # s3://bucket/prefix: where texts, vectors and Pipes messages go
    texts_per_call: int = 256
    parallel_calls: int = 4

    @abstractmethod
    def invoke(self, context: dg.AssetExecutionContext, request: dict) -> dg.PipesClientCompletedInvocation: ...

    def embedder_for(self, context: dg.AssetExecutionContext, embedder: Embedder) -> RemoteEmbedder:
        if not self.work_uri.startswith("s3://"):
            raise ValueError(
                f"remote embedding needs the work location on S3 (RAG_WORK_URI=s3://...), not {self.work_uri!r}"
            )

        def send(texts: Sequence[str], stats: EmbedStats | None) -> np.ndarray:
            return self.embed_remotely(context, embedder, texts, stats if stats is not None else EmbedStats())

        return RemoteEmbedder(embedder.model_id, embedder.dimension, send)

    def embed_remotely(self, context, embedder: Embedder, texts: Sequence[str], stats: EmbedStats) -> np.ndarray:
        batches = split_batches(len(texts), self.texts_per_call)
        if not batches:
            return np.zeros((0, embedder.dimension), np.float32)

        def one(batch: range) -> tuple[np.ndarray, dict]:
            return self.embed_batch(context, embedder, [texts[i] for i in batch])

        with ThreadPoolExecutor(max_workers=max(1, self.parallel_calls)) as pool:
            done = list(pool.map(one, batches))
        merge_results(stats, batches, [result for _, result in done])
        context.log.info(
            f"{len(texts)} text(s) embedded remotely in {len(batches)} invocation(s), "
            f"{max(r['seconds'] for _, r in done):.2f} s the longest"
        )
        return np.concatenate([vectors for vectors, _ in done])

    def embed_batch(self, context, embedder: Embedder, texts: list[str]) -> tuple[np.ndarray, dict]:
        """One invocation: the texts out, the vectors and the reported cost back."""
        home = join(self.work_uri, "_pipes", context.run.run_id, uuid.uuid4().hex)
        request = {
            "texts": join(home, "texts.json"),
            "vectors": join(home, "vectors.npy"),
            "embedder": embedder.spec,
            "model_id": embedder.model_id,
            "share": self.parallel_calls,
        }
        write_bytes(request["texts"], json.dumps(texts).encode("utf-8"))
        try:
            invocation = self.invoke(context, request)
            reports = [m for m in invocation.get_custom_messages() if isinstance(m, dict) and "texts" in m]
            if len(reports) != 1 or reports[0]["texts"] != len(texts):
                raise RuntimeError(f"remote embedding of {len(texts)} texts reported {reports!r}")
            vectors = decode_vectors(read_bytes(request["vectors"]))
        finally:
            remove(home)
        if vectors.shape != (len(texts), embedder.dimension):
            raise RuntimeError(f"remote embedding returned {vectors.shape} vectors for {len(texts)} texts")
        return vectors, reports[0]


class LambdaEmbedRunner(PipesEmbedRunner):
    """Each invocation is a synchronous call of an AWS Lambda function running
    rag_assets.frontends.pipes_embed.lambda_handler (RAG_EMBED_ON=lambda:FUNCTION)."""

    function_name: str

    def invoke(self, context, request: dict) -> dg.PipesClientCompletedInvocation:
        import boto3
        from botocore.config import Config
        from dagster_aws.pipes import PipesLambdaClient

        # A synchronous invocation may take Lambda's 15 minutes.
        client = boto3.session.Session().client("lambda", config=Config(read_timeout=960, retries={"mode": "standard"}))
        pipes = PipesLambdaClient(client=client, message_reader=work_message_reader(self.work_uri))
        try:
            return pipes.run(function_name=self.function_name, event={REQUEST: request}, context=context)
        except Exception as e:
            raise function_error(self.function_name, e) from e


def function_error(function_name: str, error: Exception) -> Exception:
    """PipesLambdaClient's "Lambda Function Error (Unhandled):" followed by the function's
    error as JSON, said in one line: which function, which exception, its message."""
    head, _, body = str(error).partition("\n")
    if not head.startswith("Lambda Function Error"):
        return error
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {}
    what = ": ".join(str(payload[k]) for k in ("errorType", "errorMessage") if payload.get(k)) or body.strip()[:500]
    return RuntimeError(f"Lambda function {function_name!r} failed: {what}")


class EcsEmbedRunner(PipesEmbedRunner):
    """Each invocation is an ECS task of `task_definition` running `python -m
    rag_assets.frontends.pipes_embed` (RAG_EMBED_ON=ecs:TASK_DEFINITION), in the cluster and subnets
    given (RAG_ECS_CLUSTER, RAG_ECS_SUBNETS, RAG_ECS_SECURITY_GROUPS)."""

    task_definition: str
    container_name: str = "run"
    cluster: str | None = None
    subnets: list[str] = []  # noqa: RUF012 - a pydantic field (Dagster config): copied per instance
    security_groups: list[str] = []  # noqa: RUF012 - a pydantic field (Dagster config): copied per instance

    def invoke(self, context, request: dict) -> dg.PipesClientCompletedInvocation:
        import boto3
        from dagster_aws.pipes import PipesECSClient

        params: dict = {
            "taskDefinition": self.task_definition,
            "count": 1,
            "overrides": {
                "containerOverrides": [
                    {"name": self.container_name, "command": ["python", "-m", "rag_assets.frontends.pipes_embed"]}
                ]
            },
        }
        if self.cluster:
            params["cluster"] = self.cluster
        if self.subnets:
            params["launchType"] = "FARGATE"
            params["networkConfiguration"] = {
                "awsvpcConfiguration": {
                    "subnets": self.subnets,
                    "securityGroups": self.security_groups,
                    "assignPublicIp": "DISABLED",
                }
            }
        pipes = PipesECSClient(
            client=boto3.session.Session().client("ecs"), message_reader=work_message_reader(self.work_uri)
        )
        return pipes.run(context=context, run_task_params=params, extras={REQUEST: request})


def embed_runner_from_settings(settings: Settings) -> EmbedRunner:
    """RAG_EMBED_ON: `process`, `lambda:FUNCTION_NAME` or `ecs:TASK_DEFINITION`."""
    kind, _, target = settings.embed_on.partition(":")
    common = {
        "work_uri": settings.work_location,
        "texts_per_call": settings.embed_texts_per_call,
        "parallel_calls": settings.embed_parallel_calls,
    }
    if kind == "process" and not target:
        return InProcessEmbedRunner()
    if kind == "lambda" and target:
        return LambdaEmbedRunner(function_name=target, **common)
    if kind == "ecs" and target:
        network = {"subnets": list(settings.ecs_subnets), "security_groups": list(settings.ecs_security_groups)}
        return EcsEmbedRunner(task_definition=target, cluster=settings.ecs_cluster, **network, **common)
    raise ValueError(f"RAG_EMBED_ON={settings.embed_on!r}: use process, lambda:FUNCTION_NAME or ecs:TASK_DEFINITION")
