"""deploy/dagster.yaml, the production instance, loaded into a real DagsterInstance: its
storage in a real PostgreSQL, its run launcher checking the run task definition in (moto's)
ECS, its compute logs going to (moto's) S3."""

from __future__ import annotations

import shutil
import uuid
from urllib.parse import urlparse

import boto3
import dagster as dg
import pytest

from rag_assets_tests.live import REPO
from rag_assets_tests.store_fixtures import pg_server_fixture  # noqa: F401 - the session's PostgreSQL


@pytest.fixture
def deploy_home(tmp_path, pg_server, s3_env, monkeypatch):
    """DAGSTER_HOME holding deploy/dagster.yaml, with the environment an ECS task would have."""
    dsn = urlparse(pg_server.dsn)
    database = f"dagster_{uuid.uuid4().hex[:8]}"
    import psycopg

    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    ecs = boto3.client("ecs")
    task = ecs.register_task_definition(
        family="rag-assets-run",
        containerDefinitions=[{"name": "run", "image": "rag-assets:test", "memory": 2048}],
    )["taskDefinition"]["taskDefinitionArn"]
    s3_env.create_bucket(Bucket="compute-logs")
    for name, value in {
        "DAGSTER_PG_HOST": dsn.hostname,
        "DAGSTER_PG_PORT": str(dsn.port),
        "DAGSTER_PG_DB": database,
        "DAGSTER_PG_USERNAME": dsn.username,
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_RUN_TASK_DEFINITION": task,
        "DAGSTER_COMPUTE_LOG_BUCKET": "compute-logs",
    }.items():
        monkeypatch.setenv(name, value)
    shutil.copy(REPO / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path, task


def test_the_production_instance_loads_against_postgres_ecs_and_s3(deploy_home):
    from dagster_aws.ecs import EcsRunLauncher
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    home, task = deploy_home
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        launcher = instance.run_launcher
        assert isinstance(launcher, EcsRunLauncher)
        assert launcher.task_definition == task and launcher.container_name == "run"
        assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
        assert instance.run_monitoring_enabled
        # The storage works: a run and its events land in PostgreSQL.
        run = instance.create_run_for_job(dg.GraphDefinition(name="noop", node_defs=[]).to_job())
        instance.report_engine_event("hello from the deployment test", run)
        assert [e.message for e in instance.all_logs(run.run_id)][-1] == "hello from the deployment test"
    with dg.DagsterInstance.from_config(str(home)) as again:  # another process's view: the same database
        assert again.get_run_by_id(run.run_id) is not None


def test_a_run_task_definition_without_the_run_container_is_refused(deploy_home, monkeypatch):
    other = boto3.client("ecs").register_task_definition(
        family="not-rag-assets", containerDefinitions=[{"name": "web", "image": "x", "memory": 512}]
    )["taskDefinition"]["taskDefinitionArn"]
    monkeypatch.setenv("DAGSTER_RUN_TASK_DEFINITION", other)
    home, _ = deploy_home
    with dg.DagsterInstance.from_config(str(home)) as instance, pytest.raises(Exception, match="container 'run'"):
        _ = instance.run_launcher


def test_a_run_becomes_an_ecs_task_with_the_run_command(deploy_home):
    """EcsRunLauncher against moto's ECS: the task of the run task definition, its `run`
    container told to execute this run of this code. Outside ECS there is no task of the
    daemon's to copy the cluster and network from, so this copy of deploy/dagster.yaml names
    them (the one change)."""
    import yaml

    home, task = deploy_home
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName="rag-assets")
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    config["run_launcher"]["config"].update(
        use_current_ecs_task_config=False,
        run_task_kwargs={
            "cluster": "rag-assets",
            "launchType": "FARGATE",
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "DISABLED"}},
        },
    )
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    from rag_assets.dagster_compat import module_job_origin
    from rag_assets.definitions import defs

    job = defs.resolve_job_def("ingest_documents")
    origin = module_job_origin("rag_assets.definitions", "defs", "ingest_documents", "/usr/local/bin/python")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.create_run_for_job(job, job_code_origin=origin, tags={"rag/launched_by": "sensor"})
        # Through the instance to its run launcher; the ECS launcher reads the run and its code origin, not a workspace.
        instance.launch_run(run.run_id, workspace=None)
        arns = ecs.list_tasks(cluster="rag-assets")["taskArns"]
        assert len(arns) == 1
        started = ecs.describe_tasks(cluster="rag-assets", tasks=arns, include=["TAGS"])["tasks"][0]
        assert started["taskDefinitionArn"] == task
        (override,) = started["overrides"]["containerOverrides"]
        assert override["name"] == "run"
        command = override["command"]
        assert command[:5] == ["/usr/local/bin/python", "-m", "dagster", "api", "execute_run"]
        args = dg.deserialize_value(command[5])
        assert args.run_id == run.run_id and args.job_origin.job_name == "ingest_documents"
        assert args.job_origin.repository_origin.code_pointer.module == "rag_assets.definitions"
        # The run's task gets the instance by reference to its own environment: no secret
        # travels in the command.
        assert "unused-with-trust-auth" not in command[5] and "DAGSTER_PG_PASSWORD" in command[5]
        tags = {t["key"]: t["value"] for t in started.get("tags", [])}
        assert tags.get("dagster/run_id") == run.run_id and tags.get("rag/launched_by") == "sensor"


def test_the_production_instance_keeps_each_processs_keys_current_in_postgres(deploy_home):
    from rag_assets import dagster_compat as compat

    home, _ = deploy_home
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance, compat.KeyCachingInstance)
        storage, other = instance.event_log_storage, compat.PartitionKeysCache()  # another process's

        def read() -> list[str]:
            truth = storage.get_dynamic_partitions("d")
            assert other.read(storage, "pg", "d") == instance.get_dynamic_partitions("d") == truth
            return truth

        instance.add_dynamic_partitions("d", ["a", "b", "c"])
        assert read() == ["a", "b", "c"]
        assert read() == ["a", "b", "c"]
        instance.add_dynamic_partitions("d", ["x"])
        assert read() == ["a", "b", "c", "x"]
        for key in ("x", "c"):  # the newest keys go, then come back among others
            instance.delete_dynamic_partition("d", key)
        instance.add_dynamic_partitions("d", ["y", "c"])
        assert read() == ["a", "b", "y", "c"]
        assert other.reads == {"unchanged": 1, "added": 1, "whole": 2}
