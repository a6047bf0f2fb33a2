"""A local ECS agent for moto's ECS: moto records the tasks RunTask starts but runs nothing.
This agent follows a cluster's RUNNING tasks and runs each one's container as a local
process (the task definition's command and environment, with the task's overrides), then
stops the task in moto when the process exits, as Fargate would."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Self

import boto3


class LocalEcsAgent:
    def __init__(self, cluster: str, container: str = "run", interval: float = 0.2) -> None:
        self.cluster, self.container, self.interval = cluster, container, interval
        self.ecs = boto3.session.Session().client("ecs")
        self.started: list[dict] = []  # task arn, command, exit code
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _follow(self) -> None:
        seen: set[str] = set()
        running: list[threading.Thread] = []
        while not self._stop.wait(self.interval):
            arns = [
                a
                for a in self.ecs.list_tasks(cluster=self.cluster, desiredStatus="RUNNING")["taskArns"]
                if a not in seen
            ]
            if not arns:
                continue
            for task in self.ecs.describe_tasks(cluster=self.cluster, tasks=arns)["tasks"]:
                seen.add(task["taskArn"])
                thread = threading.Thread(target=self._run, args=(task,), daemon=True)
                thread.start()
                running.append(thread)
        for thread in running:
            thread.join(timeout=600)

    def _run(self, task: dict) -> None:
        definition = self.ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
        (container,) = [c for c in definition["containerDefinitions"] if c["name"] == self.container]
        override = next(
            (o for o in task.get("overrides", {}).get("containerOverrides", []) if o["name"] == self.container), {}
        )
        command = override.get("command") or container.get("command") or []
        env = {e["name"]: e["value"] for e in container.get("environment", []) + override.get("environment", [])}
        if command[:1] == ["python"]:
            command = [sys.executable, *command[1:]]  # this machine's Python, the image's would be on PATH
        record = {"task": task["taskArn"], "command": command, "exit": None}
        self.started.append(record)
        record["exit"] = subprocess.run(command, env={**os.environ, **env}, check=False).returncode
        self.ecs.stop_task(
            cluster=self.cluster, task=task["taskArn"], reason=f"Essential container exited ({record['exit']})"
        )
