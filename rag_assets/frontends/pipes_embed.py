"""The embed step's remote half (RAG_EMBED_ON=lambda:... or ecs:...; docs/architecture.md,
Remote steps): it reads a batch of texts from the work location, embeds them with the
embedder the step names, writes the vectors beside them and reports what it cost through
Dagster Pipes, so the step's materialization reads as when it embeds in-process.

- AWS Lambda: the image's handler is `rag_assets.frontends.pipes_embed.lambda_handler`; the request
  and the Pipes context come in the event.
- ECS: the task runs `python -m rag_assets.frontends.pipes_embed`; the Pipes context comes in the
  environment and the request in its extras.

Messages go to S3 beside the intermediates (PipesS3MessageWriter): Lambda hands back only
the last 4 KB of a function's log, which Pipes would otherwise have to read them from.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from functools import cache

from dagster_pipes import PipesMappingParamsLoader, PipesS3MessageWriter, open_dagster_pipes

from rag_assets.dagster_compat import forget_pipes_context
from rag_assets.lib.vector_files import REQUEST, encode_vectors
from rag_assets.resources.embedders import Embedder, EmbedStats, embedder_from_spec
from rag_assets.resources.io_manager import read_bytes, s3_client, write_bytes
from rag_assets.settings import Settings

SECRET_SUFFIX = "_SECRET_ARN"


def resolve_secrets(environ=os.environ) -> list[str]:
    """NAME_SECRET_ARN=arn in the environment becomes NAME=<the secret's value> (Lambda has
    no native way to put a Secrets Manager secret into a function's environment). Returns the
    names set."""
    wanted = {k.removesuffix(SECRET_SUFFIX): v for k, v in environ.items() if k.endswith(SECRET_SUFFIX) and v}
    missing = {name: arn for name, arn in wanted.items() if not environ.get(name)}
    if missing:
        import boto3

        client = boto3.client("secretsmanager")
        for name, arn in missing.items():
            environ[name] = client.get_secret_value(SecretId=arn)["SecretString"]
    return sorted(missing)


@cache
def _embedder(spec: str, share: int) -> Embedder:
    """The embedder, built once per warm worker; with `share` workers at a time, each keeps
    1/share of the account's rate limits."""
    settings = Settings.from_env()
    settings = replace(
        settings,
        embed_service_url=None,
        openai_requests_per_second=settings.openai_requests_per_second / share,
        openai_tokens_per_minute=settings.openai_tokens_per_minute / share,
    )
    return embedder_from_spec(spec, settings)


def embed_request(request: dict) -> dict:
    """Embed the texts at request["texts"] (a JSON list) with request["embedder"], write the
    vectors to request["vectors"] (.npy float32) and return what it cost."""
    started = time.perf_counter()
    embedder = _embedder(request["embedder"], max(1, int(request.get("share", 1))))
    if embedder.model_id != request["model_id"]:
        raise ValueError(
            f"embedder {request['embedder']!r} is model {embedder.model_id}, the step expects {request['model_id']}"
        )
    texts = json.loads(read_bytes(request["texts"]))
    stats = EmbedStats()
    vectors = embedder.embed(texts, stats)
    if vectors.shape != (len(texts), embedder.dimension):
        raise ValueError(f"{request['embedder']}: {vectors.shape} vectors for {len(texts)} texts")
    write_bytes(request["vectors"], encode_vectors(vectors))
    return {
        "texts": len(texts),
        "calls": stats.calls,
        "retries": stats.retries,
        "tokens": stats.tokens,
        "seconds_waited": stats.seconds_waited,
        "batches": stats.batches,
        "runtimes": sorted(stats.runtimes),
        "bf16_probe_cosine_min": stats.bf16_probe_cosine_min,
        "seconds": round(time.perf_counter() - started, 3),
    }


def run_with_pipes(params_loader=None, request: dict | None = None) -> dict:
    """Open the Pipes session (context from `params_loader`, else the environment), embed the
    request (given, or the session's extra), report the result and return it."""
    writer = PipesS3MessageWriter(client=s3_client(), interval=5)
    kwargs = {"params_loader": params_loader} if params_loader else {}
    try:
        with open_dagster_pipes(message_writer=writer, **kwargs) as pipes:
            request = request or pipes.get_extra(REQUEST)
            result = embed_request(request)
            pipes.log.info(f"embedded {result['texts']} text(s) in {result['seconds']} s ({result['calls']} call(s))")
            pipes.report_custom_message(result)
    finally:
        # dagster-pipes keeps one context per process and hands the closed one to the next
        # open_dagster_pipes: a warm Lambda's second invocation would fail
        # (dagster-io/dagster#22094, open). Forget it once it is closed.
        forget_pipes_context()
    return result


def lambda_handler(event: dict, context=None) -> dict:
    """AWS Lambda's entry point."""
    resolve_secrets()
    result = run_with_pipes(PipesMappingParamsLoader(event), event[REQUEST])
    return {"texts": result["texts"], "seconds": result["seconds"]}


def main() -> None:
    """An ECS task's entry point (`python -m rag_assets.frontends.pipes_embed`)."""
    resolve_secrets()
    run_with_pipes()


if __name__ == "__main__":
    main()
