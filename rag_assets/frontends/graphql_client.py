"""Launch a date range of a catchup source and watch it, over Dagster's GraphQL API.

What the legacy pipeline's `/process?start_date=` and `/status?task_id=` endpoints did, against
the Dagster webserver (`make dev`: http://127.0.0.1:3000; https and a path prefix work too):

- `launch_backfill(url, job, dates)`: a backfill of those partitions of an asset job (one run
  per date), returns the backfill id;
- `status(url, id)`: where a backfill (or a single run) is, in one small dict;
- `wait(url, id)`: polls `status` until the backfill is over.

The documents below are posted over one httpx client per `Connection` (`wait` polls on one,
its connections kept alive). dagster-graphql's `DagsterGraphQLClient` is not used: its public
methods submit a job, read a run's status, terminate runs and reload or shut down a code
location, and none of these documents (backfills, runs with their tags and materializations,
event logs, partition keys) is among them. When `RAG_DAGSTER_TOKEN` is set it is sent as
`Authorization: Bearer <token>` (a webserver behind an authenticating proxy).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from rag_assets.lib.errors import FAILED_PARTITIONS, error_summary, first_line

TOKEN_ENV = "RAG_DAGSTER_TOKEN"
# A load balancer's sign-in session (deploy/: the ALB's Cognito cookies, `name=value; ...`
# as a browser sends them): an ALB that authenticates takes cookies, not bearer tokens.
COOKIE_ENV = "RAG_DAGSTER_COOKIE"

# The five statuses `status` reports; the last three are final.
REQUESTED, IN_PROGRESS, COMPLETED, FAILED, CANCELED = "REQUESTED", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELED"
FINAL = frozenset({COMPLETED, FAILED, CANCELED})

# The most partitions one backfill may ask for: 3,660 dates, about ten years of a daily source.
# The webserver holds a backfill's partitions in memory (3.65 M dates took it from 165 to
# 779 MB), so a longer range is launched in parts.
MAX_BACKFILL_PARTITIONS = 3660
# The most lines of a failure's listing (a run naming each document it could not read) kept
# in a reason; the rest is counted ("... and N more").
MAX_REASON_LINES = 20

PARTITION_TAG = "dagster/partition"
BACKFILL_TAG = "dagster/backfill"
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

# Run statuses (RunStatus enum), by what they mean for the partition of the run.
_RUN_DONE = {"SUCCESS"}
_RUN_FAILED = {"FAILURE", "CANCELED"}  # QUEUED, NOT_STARTED, MANAGED, STARTING, STARTED, CANCELING: in progress


class DagsterAPIError(RuntimeError):
    """The webserver answered with an error (unknown job, bad partitions, a PythonError...);
    the message is the server's."""


class DagsterUnreachable(DagsterAPIError):
    """No answer from the webserver at that URL (nothing listening, DNS, TLS, timeout), or an
    HTTP error from it or a proxy in front of it (401 without the right token...)."""


# --------------------------------------------------------------------------------------------
# GraphQL documents

WORKSPACE_QUERY = """
query RagWorkspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation {
            name
            repositories { name pipelines { name } partitionSets { name pipelineName } }
          }
          ... on PythonError { message }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

LAUNCH_BACKFILL_MUTATION = """
mutation RagLaunchBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""

BACKFILL_QUERY = """
query RagBackfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      id
      status
      isAssetBackfill
      numPartitions
      partitionNames
      error { message }
      partitionStatuses { results { partitionName runId runStatus } }
      assetBackfillData {
        assetBackfillStatuses {
          __typename
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted
            numPartitionsInProgress
            numPartitionsMaterialized
            numPartitionsFailed
          }
        }
      }
    }
    ... on Error { message }
  }
}
"""

_RUN_FIELDS = """
  runId
  jobName
  status
  creationTime
  tags { key value }
  assetSelection { path }
  assetMaterializations {
    assetKey { path }
    partition
    timestamp
    metadataEntries { label ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue } }
  }
"""

RUN_QUERY = (
    """
query RagRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {"""
    + _RUN_FIELDS
    + """}
    ... on Error { message }
  }
}
"""
)

RUNS_QUERY = (
    """
query RagRuns($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results {"""
    + _RUN_FIELDS
    + """} }
    ... on Error { message }
  }
}
"""
)

JOB_ASSETS_QUERY = """
query RagJobAssets($pipeline: PipelineSelector!) {
  assetNodes(pipeline: $pipeline) { assetKey { path } isPartitioned }
}
"""

PARTITION_KEYS_PAGE = 10_000

ASSET_PARTITION_KEYS_QUERY = f"""
query RagAssetPartitionKeys($assetKey: AssetKeyInput!, $cursor: String) {{
  assetNodeOrError(assetKey: $assetKey) {{
    __typename
    ... on AssetNode {{
      partitionKeyConnection(limit: {PARTITION_KEYS_PAGE}, ascending: false, cursor: $cursor) {{
        results cursor hasMore
      }}
    }}
    ... on Error {{ message }}
  }}
}}
"""

_ERROR_FIELDS = "message className errorChain { error { message className } }"

RUN_LOGS_QUERY = f"""
query RagRunLogs($runId: ID!, $afterCursor: String) {{
  logsForRun(runId: $runId, afterCursor: $afterCursor, limit: 1000) {{
    __typename
    ... on EventConnection {{
      cursor
      hasMore
      events {{
        __typename
        ... on ExecutionStepFailureEvent {{
          stepKey message error {{ {_ERROR_FIELDS} }}
          failureMetadata {{ metadataEntries {{ label ... on JsonMetadataEntry {{ jsonString }} }} }}
        }}
        ... on RunFailureEvent {{ message error {{ {_ERROR_FIELDS} }} }}
        ... on EngineEvent {{ message error {{ {_ERROR_FIELDS} }} }}
      }}
    }}
    ... on Error {{ message }}
  }}
}}
"""


# --------------------------------------------------------------------------------------------
# The connection


def auth_headers(env: dict[str, str] | None = None) -> dict[str, str]:
    """The headers of every request: `Authorization: Bearer $RAG_DAGSTER_TOKEN` and
    `Cookie: $RAG_DAGSTER_COOKIE`, each when it is set."""
    env = os.environ if env is None else env
    token, cookie = env.get(TOKEN_ENV, "").strip(), env.get(COOKIE_ENV, "").strip()
    return {**({"Authorization": f"Bearer {token}"} if token else {}), **({"Cookie": cookie} if cookie else {})}


def graphql_endpoint(url: str) -> str:
    """http://host:port[/prefix] (or .../graphql) -> http://host:port[/prefix]/graphql."""
    parts = urlsplit(url.strip() if "://" in url else f"http://{url.strip()}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL of a Dagster webserver: {url!r}")
    path = parts.path.rstrip("/").removesuffix("/graphql")
    return f"{parts.scheme}://{parts.netloc}{path}/graphql"


class Connection:
    """One webserver's GraphQL API, with the bearer token and cookie of the environment if any
    (`auth_headers`): one httpx client (its connections kept alive from one document to the
    next), and what was read of runs that are over, which does not change: their failures and
    their partition ranges, read once however often `wait` polls. Use it in a `with`."""

    def __init__(self, url: str) -> None:
        self.url = url  # as given, for messages
        self.endpoint = graphql_endpoint(url)  # .../graphql
        self._http = httpx.Client(headers=auth_headers(), timeout=60.0, follow_redirects=True)
        self.failures: dict[
            tuple[str, str], tuple[str, int | None]
        ] = {}  # (run id, status) -> (reason, documents named)
        self.ranges: dict[str, list[str]] = {}  # run id -> the partition keys of its range

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def execute(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of one GraphQL document; DagsterUnreachable or DagsterAPIError otherwise."""
        try:
            response = self._http.post(self.endpoint, json={"query": document, "variables": variables or {}})
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise DagsterUnreachable(f"cannot reach the Dagster webserver at {self.url}: {reason}") from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not answer.keys() & {"data", "errors"}:
            if response.is_error:
                raise DagsterUnreachable(
                    f"the Dagster webserver at {self.url} answered HTTP {response.status_code} {response.reason_phrase}"
                )
            shown = first_line(response.text) or "an empty body"
            raise DagsterUnreachable(f"no Dagster GraphQL API at {self.endpoint}: not a GraphQL answer: {shown}")
        if answer.get("errors"):
            raise DagsterAPIError(
                "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in answer["errors"])
            )
        return answer["data"]


def execute(url: str, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one GraphQL document against the webserver at `url` (its `data`)."""
    with Connection(url) as conn:
        return conn.execute(document, variables)


def _ok(result: dict[str, Any], *expected: str) -> dict[str, Any]:
    """A union result of the expected type, or DagsterAPIError with the server's message."""
    if result.get("__typename") in expected:
        return result
    raise DagsterAPIError(f"{result.get('__typename')}: {result.get('message') or 'unexpected answer'}")


# --------------------------------------------------------------------------------------------
# Launch


def find_job(conn: Connection, job_name: str) -> tuple[dict[str, str], str]:
    """(repository selector, partition set name) of the partitioned job `job_name`, whichever
    code location and repository of the workspace has it."""
    workspace = _ok(conn.execute(WORKSPACE_QUERY)["workspaceOrError"], "Workspace")
    found, jobs, broken = [], set(), []
    for entry in workspace["locationEntries"]:
        location = entry.get("locationOrLoadError") or {}
        if location.get("__typename") != "RepositoryLocation":
            reason = (location.get("message") or entry["loadStatus"]).strip().splitlines()[0]
            broken.append(f"{entry['name']} ({reason})")
            continue
        for repo in location["repositories"]:
            names = {p["name"] for p in repo["pipelines"]}
            jobs |= {name for name in names if not name.startswith("__")}  # not Dagster's hidden asset jobs
            if job_name in names:
                sets = [s["name"] for s in repo["partitionSets"] if s["pipelineName"] == job_name]
                selector = {"repositoryLocationName": location["name"], "repositoryName": repo["name"]}
                found.append((selector, sets))
    if not found:
        message = f"no job named {job_name!r} at {conn.url}"
        message += f"; jobs there: {', '.join(sorted(jobs))}" if jobs else "; no jobs there"
        if broken:
            message += f"; code locations that failed to load: {'; '.join(broken)}"
        raise DagsterAPIError(message)
    if len(found) > 1:
        where = ", ".join(f"{s['repositoryName']}@{s['repositoryLocationName']}" for s, _ in found)
        raise DagsterAPIError(f"job {job_name!r} is in more than one repository at {conn.url}: {where}")
    selector, sets = found[0]
    if not sets:
        raise DagsterAPIError(f"job {job_name!r} is not partitioned: it has no partitions to backfill")
    expected = f"{job_name}_partition_set"  # how Dagster names the partition set of an asset job
    return selector, expected if expected in sets else sets[0]


def launch_backfill(url: str, job_name: str, partition_keys: list[str]) -> str:
    """Launch a backfill of `partition_keys` of the job `job_name` (a job backfill: one run per
    partition key, submitted by the daemon); returns the backfill id. An unknown job, a
    partition key the job does not have or any other error of the server raises DagsterAPIError
    with the server's message; no webserver at `url`, DagsterUnreachable; more than
    MAX_BACKFILL_PARTITIONS keys, ValueError (before any request)."""
    if not partition_keys:
        raise ValueError("no partitions to launch")
    if len(partition_keys) > MAX_BACKFILL_PARTITIONS:
        raise ValueError(f"{len(partition_keys):,} partitions: a backfill takes at most {MAX_BACKFILL_PARTITIONS:,}")
    with Connection(url) as conn:
        repository_selector, partition_set = find_job(conn, job_name)
        params = {
            "selector": {"partitionSetName": partition_set, "repositorySelector": repository_selector},
            "partitionNames": list(partition_keys),
            "fromFailure": False,
        }
        result = conn.execute(LAUNCH_BACKFILL_MUTATION, {"backfillParams": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise DagsterAPIError(f"no backfill of {job_name} launched: {result['__typename']}: {result.get('message')}")
    return result["backfillId"]


# --------------------------------------------------------------------------------------------
# Status


def status(url: str, id: str) -> dict[str, Any]:
    """Where the backfill `id` is (or the run `id`: a backfill is looked for first), as

        {"id": ..., "status": ..., "partitions": {"total", "done", "failed", "in_progress"},
         "records": N, "failures": [{"partition": ..., "reason": ...}]}

    `partitions` counts the backfill's partitions by the status of the latest run of each:
    done = succeeded; failed = failed or canceled; in_progress = a run queued, starting, started
    or canceling. Partitions without a run yet are in none of the three (total is more than
    their sum until every partition has a run). For an asset backfill (launched from the UI's
    asset pages) the counts are those of its `*_vector_index` asset (else its last asset).

    `records` is the sum of the `records` metadata entry of the latest materialization of each
    `*_vector_index` asset partition the backfill's runs made (0 when none did).

    `failures` holds each failed partition and the first line of its run's error (the user
    code's exception when a step failed, else the run's failure), with the lines that follow
    it when it introduces a list (a document run's "2 of 22 document(s) could not be read:"
    and one line per document, at most MAX_REASON_LINES); a backfill the daemon could not
    process (Dagster's FAILED/FAILING) adds an entry whose partition is None.

    `status` maps Dagster's backfill status onto five:

    - REQUESTED: REQUESTED and no run launched yet;
    - IN_PROGRESS: REQUESTED with runs launched (the daemon sets the final status once every
      run is over, so a backfill whose runs are all finished stays IN_PROGRESS until it has);
      CANCELING and FAILING (runs are being canceled; CANCELED or FAILED follow);
    - COMPLETED: COMPLETED_SUCCESS;
    - FAILED: COMPLETED_FAILED (every partition had its run and some failed or were
      canceled) and FAILED (the daemon could not go on with the backfill);
    - CANCELED: CANCELED.

    The deprecated COMPLETED (which older daemons set once all runs were submitted) is read from
    the partitions: IN_PROGRESS while some are not over, then FAILED if any failed, else
    COMPLETED.

    A run id: one run, its partition from its `dagster/partition` tag, or its partition range
    (the `dagster/asset_partition_range_start`/`_end` tags): the dates from start to end, or
    (a batch of documents) the keys from start to end of its assets' partitions, as the
    webserver lists them; QUEUED/NOT_STARTED/MANAGED -> REQUESTED, STARTING/STARTED/CANCELING
    -> IN_PROGRESS, SUCCESS -> COMPLETED, FAILURE -> FAILED, CANCELED -> CANCELED. All its
    partitions count as the run does; its failure is one entry, whose partition is the range
    `START...END` for a ranged run.
    """
    with Connection(url) as conn:
        return _status(conn, id)


def _status(conn: Connection, id: str) -> dict[str, Any]:
    backfill = conn.execute(BACKFILL_QUERY, {"backfillId": id})["partitionBackfillOrError"]
    if backfill["__typename"] == "PartitionBackfill":
        return _backfill_status(conn, backfill)
    if backfill["__typename"] != "BackfillNotFoundError":
        _ok(backfill, "PartitionBackfill")  # a PythonError: raise it
    run = conn.execute(RUN_QUERY, {"runId": id})["runOrError"]
    if run["__typename"] == "RunNotFoundError":
        raise DagsterAPIError(f"no backfill and no run with id {id!r} at {conn.url}")
    return _run_status(conn, _ok(run, "Run"))


def _backfill_status(conn: Connection, backfill: dict[str, Any]) -> dict[str, Any]:
    runs = _backfill_runs(conn, backfill["id"])
    latest_runs = _latest_run_by_partition(runs)
    failed_partitions: list[tuple[str, dict]] = []
    if backfill["isAssetBackfill"]:
        total, done, failed, in_progress = _asset_backfill_counts(backfill, latest_runs)
        failed_partitions = [(p, r) for p, r in sorted(latest_runs.items()) if r["status"] in _RUN_FAILED]
        launched = bool(runs)
    else:
        by_id = {r["runId"]: r for r in runs}
        results = (backfill.get("partitionStatuses") or {}).get("results") or []
        total = backfill.get("numPartitions") or len(results)
        done = failed = in_progress = 0
        for row in results:
            if row.get("runStatus") is None:
                continue
            if row["runStatus"] in _RUN_DONE:
                done += 1
            elif row["runStatus"] in _RUN_FAILED:
                failed += 1
                run = by_id.get(row["runId"]) or {"runId": row["runId"], "status": row["runStatus"]}
                failed_partitions.append((row["partitionName"], run))
            else:
                in_progress += 1
        launched = any(row.get("runId") for row in results)
    failures = [
        {"partition": p, "reason": _failure(conn, run["runId"], run["status"])[0]} for p, run in failed_partitions
    ]
    dagster_status = backfill["status"]
    if dagster_status in ("FAILED", "FAILING") and backfill.get("error"):
        failures.append({"partition": None, "reason": "backfill: " + first_line(backfill["error"]["message"])})
    unfinished = in_progress > 0 or done + failed < total
    return {
        "id": backfill["id"],
        "status": _map_backfill_status(dagster_status, launched=launched, unfinished=unfinished, failed=failed > 0),
        "partitions": {"total": total, "done": done, "failed": failed, "in_progress": in_progress},
        "records": _records(runs),
        "failures": failures,
    }


def _map_backfill_status(dagster_status: str, *, launched: bool, unfinished: bool, failed: bool) -> str:
    if dagster_status == "REQUESTED":
        return IN_PROGRESS if launched else REQUESTED
    if dagster_status in ("CANCELING", "FAILING"):
        return IN_PROGRESS
    if dagster_status == "COMPLETED_SUCCESS":
        return COMPLETED
    if dagster_status in ("COMPLETED_FAILED", "FAILED"):
        return FAILED
    if dagster_status == "CANCELED":
        return CANCELED
    if dagster_status == "COMPLETED":  # deprecated: all runs submitted, not necessarily over
        return IN_PROGRESS if unfinished else FAILED if failed else COMPLETED
    raise DagsterAPIError(f"unknown backfill status {dagster_status!r} (a newer Dagster?)")


def _asset_backfill_counts(backfill: dict[str, Any], latest_runs: dict[str, dict]) -> tuple[int, int, int, int]:
    rows = [
        r
        for r in ((backfill.get("assetBackfillData") or {}).get("assetBackfillStatuses") or [])
        if r.get("__typename") == "AssetPartitionsStatusCounts"
    ]
    index = [r for r in rows if r["assetKey"]["path"][-1].endswith("_vector_index")] or rows[-1:]
    if index:
        row = index[-1]
        return (
            row["numPartitionsTargeted"],
            row["numPartitionsMaterialized"],
            row["numPartitionsFailed"],
            row["numPartitionsInProgress"],
        )
    statuses = [r["status"] for r in latest_runs.values()]  # unpartitioned assets: count runs
    done = sum(s in _RUN_DONE for s in statuses)
    failed = sum(s in _RUN_FAILED for s in statuses)
    return backfill.get("numPartitions") or len(statuses), done, failed, len(statuses) - done - failed


def _run_status(conn: Connection, run: dict[str, Any]) -> dict[str, Any]:
    tags = _tags(run)
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    ranged = PARTITION_TAG not in tags and bool(start and end)
    partitions = _run_partitions(run)
    if ranged and partitions == [f"{start}...{end}"]:  # not dates: its assets' keys from start to end
        partitions = _range_partitions(conn, run, start, end) or partitions
    count = len(partitions) or 1  # an unpartitioned run: one
    state = run["status"]
    if state in _RUN_DONE:
        mapped, counts = COMPLETED, {"done": count, "failed": 0, "in_progress": 0}
    elif state in _RUN_FAILED:
        mapped = CANCELED if state == "CANCELED" else FAILED
        # A document run that named its unreadable documents wrote the others first.
        named = _failure(conn, run["runId"], state)[1] if ranged else None
        failed = count if named is None else min(named, count)
        counts = {"done": count - failed, "failed": failed, "in_progress": 0}
    else:
        mapped = REQUESTED if state in ("QUEUED", "NOT_STARTED", "MANAGED") else IN_PROGRESS
        counts = {"done": 0, "failed": 0, "in_progress": count}
    reason = _failure(conn, run["runId"], state)[0] if state in _RUN_FAILED else None
    label = f"{start}...{end}" if ranged else tags.get(PARTITION_TAG)
    return {
        "id": run["runId"],
        "status": mapped,
        "partitions": {"total": count, **counts},
        "records": _records([run]),
        "failures": [{"partition": label, "reason": reason}] if reason else [],
    }


def _range_partitions(conn: Connection, run: dict[str, Any], start: str, end: str) -> list[str] | None:
    """The keys from `start` to `end` of the partitions of a ranged run's assets (a batch of
    documents: dynamic partitions, in the order they were added, paged from the newest), read once per run and
    connection; None when the webserver cannot say (the run's job is not in its workspace, the
    keys are gone)."""
    if run["runId"] not in conn.ranges:
        keys = _read_range(conn, run, start, end)
        if keys is None:
            return None
        conn.ranges[run["runId"]] = keys
    return conn.ranges[run["runId"]]


def _read_range(conn: Connection, run: dict[str, Any], start: str, end: str) -> list[str] | None:
    # A run launched by the webserver names its assets; one run in a process of its own (the
    # command line's execute_in_process) does not: its job's assets then.
    assets = [a["path"] for a in run.get("assetSelection") or []]
    if not assets and run.get("jobName"):
        for selector in _repositories_of_job(conn, run["jobName"]):
            job = {**selector, "pipelineName": run["jobName"]}
            nodes = conn.execute(JOB_ASSETS_QUERY, {"pipeline": job})["assetNodes"]
            assets += [node["assetKey"]["path"] for node in nodes if node["isPartitioned"]]
    for path in assets:  # the assets of a ranged run share their partitions: the first partitioned one says
        keys, cursor, inside = [], None, False
        while True:
            variables = {"assetKey": {"path": path}, "cursor": cursor}
            node = conn.execute(ASSET_PARTITION_KEYS_QUERY, variables)["assetNodeOrError"]
            page = node.get("partitionKeyConnection") if node["__typename"] == "AssetNode" else None
            if page is None:
                break  # not partitioned (or not found): the next asset
            for key in page["results"]:  # newest first: a run's range is most often among the last added
                inside = inside or key == end
                if inside:
                    keys.append(key)
                    if key == start:
                        return keys[::-1]
            if not page["hasMore"]:
                return None
            cursor = page["cursor"]
    return None


def _repositories_of_job(conn: Connection, job_name: str) -> list[dict[str, str]]:
    """Repository selectors of the loaded code locations that have the job `job_name`."""
    workspace = _ok(conn.execute(WORKSPACE_QUERY)["workspaceOrError"], "Workspace")
    return [
        {"repositoryLocationName": location["name"], "repositoryName": repo["name"]}
        for entry in workspace["locationEntries"]
        if (location := entry.get("locationOrLoadError") or {}).get("__typename") == "RepositoryLocation"
        for repo in location["repositories"]
        if job_name in {p["name"] for p in repo["pipelines"]}
    ]


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run.get("tags") or []}


def _run_partitions(run: dict[str, Any]) -> list[str]:
    """The partition of a run, or the dates of its partition range (a run of several dates)."""
    tags = _tags(run)
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if not (start and end):
        return []
    try:
        from datetime import date, timedelta

        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError:
        return [f"{start}...{end}"]
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _backfill_runs(conn: Connection, backfill_id: str) -> list[dict[str, Any]]:
    flt = {"tags": [{"key": BACKFILL_TAG, "value": backfill_id}]}
    return _ok(conn.execute(RUNS_QUERY, {"filter": flt})["runsOrError"], "Runs")["results"]


def _latest_run_by_partition(runs: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for run in sorted(runs, key=lambda r: r.get("creationTime") or 0):
        for partition in _run_partitions(run):
            latest[partition] = run
    return latest


def _records(runs: Iterable[dict[str, Any]]) -> int:
    """Sum of `records` over the latest materialization of each (*_vector_index asset, partition)."""
    latest: dict[tuple, tuple[float, float]] = {}
    for run in runs:
        for event in run.get("assetMaterializations") or []:
            path = event["assetKey"]["path"]
            if not path[-1].endswith("_vector_index"):
                continue
            value = None
            for entry in event.get("metadataEntries") or []:
                if entry.get("label") == "records":
                    value = entry.get("intValue", entry.get("floatValue"))
            key = (tuple(path), event.get("partition"))
            stamp = float(event.get("timestamp") or 0)
            if value is not None and (key not in latest or stamp >= latest[key][0]):
                latest[key] = (stamp, value)
    total = sum(value for _, value in latest.values())
    return int(total) if float(total).is_integer() else total


def _error_summary(error: dict[str, Any] | None) -> str | None:
    """The summary (lib.errors.error_summary) of a GraphQL PythonError and its chain; when
    that line introduces a list (it ends with ':', as a document run's "2 of 22 document(s)
    could not be read:" does), the lines of the list follow it (at most MAX_REASON_LINES)."""
    if not error:
        return None
    chain = [error] + [link["error"] for link in error.get("errorChain") or [] if link.get("error")]
    messages = [err.get("message") for err in chain]
    summary = error_summary(messages)
    if summary and summary.endswith(":"):
        for message in messages:
            lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
            if len(lines) > 1 and lines[0].endswith(summary):
                return "\n".join([summary, *_capped(lines[1:])])
    return summary


def _capped(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_REASON_LINES:
        return lines
    return [*lines[:MAX_REASON_LINES], f"... and {len(lines) - MAX_REASON_LINES} more"]


def _failure(conn: Connection, run_id: str | None, state: str) -> tuple[str, int | None]:
    """The first line of the error of a failed (or canceled) run, and how many documents it
    named as unreadable (the others were written in the same run; None: it failed otherwise);
    read once per run and connection."""
    if not run_id:
        return f"no run ({state.lower()})", None
    if (run_id, state) not in conn.failures:
        conn.failures[(run_id, state)] = _read_failure_reason(conn, run_id, state)
    return conn.failures[(run_id, state)]


def _read_failure_reason(conn: Connection, run_id: str, state: str) -> tuple[str, int | None]:
    step_failure = run_failure = engine_error = named = None
    cursor = None
    while True:
        logs = conn.execute(RUN_LOGS_QUERY, {"runId": run_id, "afterCursor": cursor})["logsForRun"]
        if logs["__typename"] != "EventConnection":
            return f"run {run_id} {state.lower()} ({logs.get('message') or logs['__typename']})"
        for event in logs["events"]:
            kind = event["__typename"]
            if kind == "ExecutionStepFailureEvent" and step_failure is None:
                summary = _error_summary(event.get("error")) or first_line(event.get("message"))
                step_failure = f"{event['stepKey']}: {summary}" if event.get("stepKey") else summary
                for entry in (event.get("failureMetadata") or {}).get("metadataEntries") or []:
                    if entry.get("label") == FAILED_PARTITIONS and entry.get("jsonString"):
                        named = len(json.loads(entry["jsonString"]))
            elif kind == "RunFailureEvent":
                run_failure = _error_summary(event.get("error")) or first_line(event.get("message"))
            elif kind == "EngineEvent" and event.get("error") and engine_error is None:
                engine_error = _error_summary(event["error"])
        if step_failure or not logs["hasMore"]:
            break
        cursor = logs["cursor"]
    if state == "CANCELED":
        return "run canceled" + (f" ({step_failure})" if step_failure else ""), None
    return step_failure or engine_error or run_failure or f"run {run_id} failed (no error in its event log)", named


# --------------------------------------------------------------------------------------------
# Wait


def wait(
    url: str,
    id: str,
    poll_seconds: float = 2.0,
    timeout: float | None = None,
    *,
    on_poll: Callable[[dict[str, Any]], None] | None = None,
    unreachable_grace: float = 60.0,
) -> dict[str, Any]:
    """Poll `status(url, id)` every `poll_seconds` until it is COMPLETED, FAILED or CANCELED and
    return that last status. `on_poll` sees every status on the way. TimeoutError after `timeout`
    seconds (None: no limit). Once the first status came, a webserver that stops answering (a
    restart) is waited for up to `unreachable_grace` seconds before DagsterUnreachable is raised."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with Connection(url) as conn:
        current = _status(conn, id)
        unreachable_since = None
        while True:
            if unreachable_since is None and on_poll is not None:
                on_poll(current)
            if current["status"] in FINAL:
                return current
            if deadline is not None and time.monotonic() + poll_seconds > deadline:
                raise TimeoutError(f"{id} still {current['status']} after {timeout:g} s: {current['partitions']}")
            time.sleep(poll_seconds)
            try:
                current = _status(conn, id)
                unreachable_since = None
            except DagsterUnreachable:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > unreachable_grace:
                    raise
