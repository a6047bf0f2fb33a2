"""The embeddings step on AWS Lambda through Dagster Pipes (RAG_EMBED_ON=lambda:...), end to
end: the real PipesLambdaClient and boto3 against a local Lambda (its Invoke API in front of
worker processes running rag_assets.frontends.pipes_embed.lambda_handler), the intermediates, texts,
vectors and Pipes messages in moto S3. The index must equal the in-process one."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import boto3
import dagster as dg
import lancedb
import numpy as np
import pytest

from rag_assets.definitions import build_definitions
from rag_assets.defs.resources import executor_from_settings
from rag_assets.frontends.pipes_embed import resolve_secrets
from rag_assets.lib.keys import DocRef, encode_partition_key
from rag_assets.lib.vector_files import decode_vectors, encode_vectors
from rag_assets.resources.embedders import EmbedStats
from rag_assets.resources.remote_embedding import (
    EcsEmbedRunner,
    InProcessEmbedRunner,
    LambdaEmbedRunner,
    embed_runner_from_settings,
    merge_results,
    split_batches,
)
from rag_assets.resources.vector_stores import table_name
from rag_assets.settings import Settings
from rag_assets_tests.fakes.ecs_agent import LocalEcsAgent
from rag_assets_tests.fakes.lambda_server import FakeLambdaServer
from rag_assets_tests.test_documents_e2e import corpus, latest_metadata, run_ingest

MODEL = "local:all-MiniLM-L6-v2"
HANDLER = "rag_assets.frontends.pipes_embed.lambda_handler"


@pytest.mark.parametrize(
    "count, per_call, sizes",
    [(0, 8, []), (1, 8, [1]), (8, 8, [8]), (9, 8, [5, 4]), (20, 8, [7, 7, 6]), (5, 1, [1] * 5), (3, 0, [1, 1, 1])],
)
def test_split_batches_even_and_within_the_limit(count, per_call, sizes):
    batches = split_batches(count, per_call)
    assert [len(b) for b in batches] == sizes
    assert [i for b in batches for i in b] == list(range(count))


def test_merge_results_offsets_each_invocations_batches():
    stats = EmbedStats(calls=1, batches=[[0]])
    reported = [
        {
            "calls": 2,
            "retries": 0,
            "tokens": 10,
            "seconds_waited": 0.5,
            "batches": [[0, 1], [2]],
            "runtimes": ["torch-bfloat16"],
            "bf16_probe_cosine_min": 0.9999,
        },
        {
            "calls": 1,
            "retries": 1,
            "tokens": 4,
            "seconds_waited": 0.0,
            "batches": [[1, 0]],
        },  # a worker of an older image
    ]
    merge_results(stats, [range(3), range(3, 5)], reported)
    assert (stats.calls, stats.retries, stats.tokens, stats.seconds_waited) == (4, 1, 14, 0.5)
    assert stats.batches == [[0], [0, 1], [2], [4, 3]]
    assert (stats.runtimes, stats.bf16_probe_cosine_min) == ({"torch-bfloat16"}, 0.9999)


def test_vectors_round_trip_as_npy():
    vectors = np.random.default_rng(1).random((3, 4), dtype=np.float32)
    np.testing.assert_array_equal(decode_vectors(encode_vectors(vectors)), vectors)


@pytest.mark.parametrize(
    "embed_on, kind",
    [("process", InProcessEmbedRunner), ("lambda:rag-embed", LambdaEmbedRunner), ("ecs:rag-embed:3", EcsEmbedRunner)],
)
def test_embed_on_chooses_the_runner(embed_on, kind):
    runner = embed_runner_from_settings(Settings(embed_on=embed_on, work_uri="s3://w/p", ecs_subnets=("subnet-1",)))
    assert type(runner) is kind
    if kind is not InProcessEmbedRunner:
        assert runner.work_uri == "s3://w/p" and (runner.texts_per_call, runner.parallel_calls) == (256, 4)
    if kind is EcsEmbedRunner:
        assert (runner.task_definition, runner.subnets) == ("rag-embed:3", ["subnet-1"])


@pytest.mark.parametrize("embed_on", ["lambda", "lambda:", "sagemaker:x", "process:x", ""])
def test_embed_on_rejects_what_it_does_not_know(embed_on):
    with pytest.raises(ValueError, match="RAG_EMBED_ON"):
        embed_runner_from_settings(Settings(embed_on=embed_on))


def test_executor_setting(rag_env):
    in_process = executor_from_settings("in_process")  # Dagster's, its ranged runs reading their own keys (D38)
    plain = dg.in_process_executor
    assert (in_process.name, in_process.config_schema) == (plain.name, plain.config_schema)
    assert executor_from_settings("ecs").name == "ecs"
    defs = build_definitions(replace(rag_env, executor="ecs"))
    assert {
        defs.resolve_job_def(job).executor_def.name
        for job in ("ingest_documents", "purge_documents", "record_reconciliation")
    } == {"ecs"}
    with pytest.raises(ValueError, match="RAG_EXECUTOR='k8s'"):
        executor_from_settings("k8s")


def test_secret_arns_in_the_environment_become_values(s3_env):
    arn = boto3.client("secretsmanager").create_secret(
        Name=f"openai-{id(s3_env)}", SecretString="sk-from-secrets-manager"
    )["ARN"]
    env = {
        "OPENAI_API_KEY_SECRET_ARN": arn,
        "PINECONE_API_KEY": "already-set",
        "PINECONE_API_KEY_SECRET_ARN": "arn:unused",
    }
    assert resolve_secrets(env) == ["OPENAI_API_KEY"]
    assert env["OPENAI_API_KEY"] == "sk-from-secrets-manager" and env["PINECONE_API_KEY"] == "already-set"


def expected_keys(root) -> list[str]:
    return [
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.endswith(".meta.json")
    ]


def rows_by_chunk(index_uri: str) -> dict[str, dict]:
    table = lancedb.connect(index_uri).open_table(table_name(MODEL, 384))
    return {r["id"]: r for r in table.to_arrow().to_pylist()}


def s3_keys(bucket: str, prefix: str = "") -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture
def local_lambda(s3_env, monkeypatch, tmp_path):
    """A local Lambda with the embed function (workers see moto S3), which boto3's Lambda
    client reaches through AWS_ENDPOINT_URL_LAMBDA; and an empty work bucket."""
    s3_env.create_bucket(Bucket="work")
    with FakeLambdaServer() as server:
        server.add_function("rag-embed", HANDLER, {"RAG_WORK_DIR": str(tmp_path / "lambda-tmp")})
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", server.url)
        yield server


def test_lambda_embedding_gives_the_in_process_index(rag_env, instance, local_lambda, tmp_path):
    # float32 on both sides: on a CPU with bfloat16, `auto` embeds in bfloat16, whose vectors
    # depend on the batch a text was embedded in (to cosine 0.9999, D29); this test compares
    # the transport, which must give the same floats.
    rag_env = replace(rag_env, embedder=f"{MODEL}+float32")
    root = corpus(tmp_path / "inbox")
    in_process = replace(rag_env, index_uri=str(tmp_path / "index-in-process"))
    expected = run_ingest(in_process, instance, root)

    remote = replace(
        rag_env,
        index_uri=str(tmp_path / "index-lambda"),
        work_dir=str(tmp_path / "rag-lambda"),  # an empty embedding cache: every text goes to Lambda
        work_uri="s3://work/rag",
        embed_on="lambda:rag-embed",
        embed_texts_per_call=2,
        embed_parallel_calls=2,
    )
    report = run_ingest(remote, instance, root)

    assert sorted(report.ingested) == sorted(expected.ingested) and report.failed == []
    want, got = rows_by_chunk(in_process.index_uri), rows_by_chunk(remote.index_uri)
    assert set(got) == set(want) and len(got) == expected.chunks
    for chunk_id, row in want.items():
        assert got[chunk_id]["text"] == row["text"] and got[chunk_id]["document_key"] == row["document_key"]
        np.testing.assert_allclose(got[chunk_id]["vector"], row["vector"], atol=1e-5)

    # Every text went to Lambda, in invocations of at most 2, at most 2 workers: a warm
    # worker served more than one (dagster-pipes' per-process context, see pipes_embed).
    invocations = local_lambda.invocations
    assert len(invocations) == math.ceil(expected.chunks / 2) > local_lambda.functions["rag-embed"].started
    assert all(i["error"] is None for i in invocations)
    # The step's materialization says what the workers reported, as in-process.
    meta = latest_metadata(instance, "embeddings", encode_partition_key(DocRef("acme", str(root), "acme/faq.md")))
    assert (
        meta["model"] == MODEL and meta["batch_embedding_calls"] >= len(invocations) and meta["batch_cache_hits"] == 0
    )
    assert meta["embed_runtime"] in ("torch-float32", "torch-bfloat16")  # as the workers reported it
    # Intermediates are in S3; the texts and vectors exchanged are gone; the workers' log lines reached Dagster.
    keys = s3_keys("work", "rag/")
    assert any(k.startswith("rag/embeddings/") for k in keys) and any(k.startswith("rag/chunks/") for k in keys)
    assert not [k for k in keys if k.endswith(("texts.json", "vectors.npy"))]
    assert [k for k in keys if k.startswith("rag/_pipes/messages/")]
    logs = [e.message for e in instance.all_logs(report.runs[0]) if e.message]
    assert len([m for m in logs if re.match(r"embedded [12] text\(s\) in [\d.]+ s", m)]) == len(invocations)


def test_a_failing_function_fails_the_run_and_leaves_the_index_as_it_was(rag_env, instance, local_lambda, tmp_path):
    root = corpus(tmp_path / "inbox")
    # The function cannot read its OpenAI key: every invocation fails.
    local_lambda.add_function(
        "broken", HANDLER, {"OPENAI_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone"}
    )
    remote = replace(
        rag_env, work_uri="s3://work/rag", embed_on="lambda:broken", embed_texts_per_call=4, embed_parallel_calls=2
    )
    report = run_ingest(remote, instance, root)

    assert report.ingested == [] and sorted(f["key"] for f in report.failed) == sorted(expected_keys(root))
    (reason,) = {f["reason"] for f in report.failed}
    assert (
        reason.startswith("RuntimeError: Lambda function 'broken' failed: ResourceNotFoundException: ")
        and "GetSecretValue" in reason
    )
    assert table_name(MODEL, 384) not in lancedb.connect(remote.index_uri).table_names()
    assert len(local_lambda.invocations) >= 1 and all(i["error"] for i in local_lambda.invocations)


def test_remote_embedding_needs_the_work_location_on_s3(rag_env, instance, tmp_path):
    root = corpus(tmp_path / "inbox")
    report = run_ingest(replace(rag_env, embed_on="lambda:rag-embed"), instance, root)
    assert report.ingested == [] and len(report.failed) == 4
    assert {f["reason"] for f in report.failed} == {
        (
            "ValueError: remote embedding needs the work location on S3 (RAG_WORK_URI=s3://...), not "
            f"{str(tmp_path / 'rag' / 'work')!r}"
        )
    }
    assert build_definitions(
        replace(rag_env, embed_on="lambda:rag-embed")
    )  # the definitions load: only the step needs S3


def test_ecs_embedding_gives_the_same_vectors(rag_env, instance, s3_env, tmp_path):
    """RAG_EMBED_ON=ecs:TASK_DEFINITION: the real PipesECSClient against moto's ECS, each task's
    container run by a local agent (moto runs nothing)."""
    s3_env.create_bucket(Bucket="work-ecs")
    ecs = boto3.client("ecs")
    cluster = ecs.create_cluster(clusterName=f"rag-{id(tmp_path)}")["cluster"]["clusterName"]
    ecs.register_task_definition(
        family="rag-embed",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="1024",
        memory="4096",
        containerDefinitions=[
            {
                "name": "run",
                "image": "rag-assets:test",
                "cpu": 1024,
                "memory": 4096,
                "environment": [{"name": "RAG_WORK_DIR", "value": str(tmp_path / "task")}],
            }
        ],
    )
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as Fargate wants (moto needs it too)
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(VpcId=vpc, GroupName=f"rag-{id(tmp_path)}", Description="embed tasks")["GroupId"]
    root = corpus(tmp_path / "inbox")
    expected = run_ingest(replace(rag_env, index_uri=str(tmp_path / "index-in-process")), instance, root)
    remote = replace(
        rag_env,
        index_uri=str(tmp_path / "index-ecs"),
        work_dir=str(tmp_path / "rag-ecs"),
        work_uri="s3://work-ecs/rag",
        embed_on="ecs:rag-embed",
        embed_texts_per_call=64,
        embed_parallel_calls=2,
        ecs_cluster=cluster,
        ecs_subnets=(subnet,),
        ecs_security_groups=(group,),
    )
    with LocalEcsAgent(cluster) as agent:
        report = run_ingest(remote, instance, root)

    assert sorted(report.ingested) == sorted(expected.ingested) and report.failed == []
    want, got = rows_by_chunk(str(tmp_path / "index-in-process")), rows_by_chunk(remote.index_uri)
    assert set(got) == set(want)
    for chunk_id, row in want.items():
        np.testing.assert_allclose(got[chunk_id]["vector"], row["vector"], atol=1e-5)
    assert len(agent.started) == math.ceil(expected.chunks / 64) and all(t["exit"] == 0 for t in agent.started)
    assert all(t["command"][1:] == ["-m", "rag_assets.frontends.pipes_embed"] for t in agent.started)
