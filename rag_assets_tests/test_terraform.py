"""deploy/*.tf really applied, checked and destroyed against a moto server.

A copy of deploy/ gets one `moto_override.tf` (every endpoint the configuration uses pointed
at moto, test credentials): the production files carry nothing of moto. `terraform init` is
offline (deploy/terraform.rc: the provider from a local mirror), then validate, apply, the
checks below with boto3 against moto, and destroy, which must leave nothing of this
deployment's name prefix behind.

The module runs its own moto server rather than the session's (conftest.moto_endpoint):
moto gives every RDS instance the same DbiResourceId, and the AWS provider reads an instance
back by that id, so a second instance on a shared server would be mistaken for this one.
Real AWS is out of reach on purpose: the AWS SDK's proxy is a closed port (only 127.0.0.1 is
exempt), so a service missing from the override fails at once instead of calling AWS.

About five minutes, most of it the AWS provider's own fixed waits (RDS: a minute before it
first looks at a new instance, then three polls 10 s apart; the load balancer: a minute).

The deployment is applied once with every external API configured (an OpenAI embedder,
Metabase, webhook notifications): the least-privilege checks (deploy/README.md, "Secrets per
container" and "Egress") then see each secret and each way out at its most; two plans of
other configurations (nothing external; Pinecone) show what each container gets there.

moto evaluates a bucket policy's Deny on object requests without looking at its condition:
`aws:SecureTransport` would refuse every object request, TLS or not. This module teaches
moto's evaluation that one condition (`moto_reads_secure_transport`): moto's server speaks
plain HTTP to everyone, so a request marked with the PLAIN_HTTP header stands for plain HTTP,
every other one for the TLS that the AWS SDKs and the provider use against AWS.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote_plus

import boto3
import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PROVIDER = "registry.terraform.io/hashicorp/aws/5.100.0"

# The configuration applied: every external API named, so that each secret and each way to
# the internet is granted somewhere (the checks show where, and where not).
CONFIGURED = {
    "embedder": "openai:text-embedding-3-small",
    "metabase_url": "https://metabase.example.com:8443",  # its own port: the run tasks' egress names it
    "extra_environment": '{RAG_NOTIFY="webhook:https://hooks.example.com/rag"}',
}
# What each container gets under CONFIGURED (deploy/access.tf; deploy/README.md says why).
CONFIGURED_SECRETS = {
    "webserver": {"DAGSTER_PG_PASSWORD"},
    "daemon": {"DAGSTER_PG_PASSWORD"},
    "code-location": {"DAGSTER_PG_PASSWORD", "PGPASSWORD", "RAG_NOTIFY_SECRET"},
    "run": {"DAGSTER_PG_PASSWORD", "PGPASSWORD", "OPENAI_API_KEY", "METABASE_API_KEY"},
}
CONFIGURED_INTERNET = {"webserver": set(), "daemon": set(), "code-location": {443}, "run": {443, 8443}}
# Secrets that are never the webserver's, whatever the configuration.
NOT_THE_WEBSERVERS = {"OPENAI_API_KEY", "PINECONE_API_KEY", "METABASE_API_KEY", "RAG_NOTIFY_SECRET", "PGPASSWORD"}
# The AWS APIs the tasks reach through VPC interface endpoints (deploy/network.tf).
INTERFACE_ENDPOINTS = {"ecr.api", "ecr.dkr", "logs", "secretsmanager", "sqs", "ecs", "ec2", "lambda"}
TASK_GROUPS = ["webserver", "daemon", "code-location", "run", "db-setup"]

# A request to moto's S3 carrying this header stands for plain HTTP (see the module's docstring).
PLAIN_HTTP = "X-Rag-Test-Transport"

# Every AWS service deploy/*.tf talks to (the provider's endpoint names).
MOTO_SERVICES = [
    "acm", "cognitoidp", "ec2", "ecr", "ecs", "elbv2", "iam", "lambda", "logs", "rds", "s3",
    "secretsmanager", "servicediscovery", "sqs", "sts",
]  # fmt: skip

# What a second plan shows because moto does not store or return it (deploy/README.md):
# (resource type, attribute), updates in place only.
MOTO_DRIFT = {
    ("aws_ecs_service", "enable_ecs_managed_tags"),
    ("aws_ecs_service", "availability_zone_rebalancing"),
    ("aws_ecs_service", "health_check_grace_period_seconds"),
}

# Actions that have no resource-level permissions: the only ones allowed on Resource "*"
# (listed in deploy/README.md).
UNSCOPABLE = {"ecr:GetAuthorizationToken", "ecs:DescribeTaskDefinition", "ec2:DescribeNetworkInterfaces"}

# The environment contract of the four Dagster containers (deploy/README.md).
CONTRACT_ENV = {
    "DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB", "DAGSTER_PG_USERNAME",
    "DAGSTER_RUN_TASK_DEFINITION", "DAGSTER_COMPUTE_LOG_BUCKET", "RAG_SOURCE_URI", "RAG_SQS_QUEUE_URL",
    "RAG_INDEX_URI", "RAG_WORK_URI", "RAG_WORK_DIR", "RAG_EMBEDDING_CACHE_URI", "RAG_EMBEDDER",
    "RAG_EMBED_ON", "RAG_EXECUTOR", "METABASE_URL",
}  # fmt: skip


# ---- terraform and its provider ------------------------------------------------------------


def terraform_binary() -> str:
    found = shutil.which("terraform")
    if not found:
        pytest.fail(
            "terraform is not installed: install Terraform 1.11 (https://developer.hashicorp.com/terraform/install)"
            " and put `terraform` on PATH; deploy/README.md lists the prerequisites"
        )
    version = json.loads(subprocess.run([found, "version", "-json"], check=True, capture_output=True, text=True).stdout)
    if not version["terraform_version"].startswith("1.11."):
        pytest.fail(f"deploy/ pins Terraform ~> 1.11; {found} is {version['terraform_version']}")
    return found


def cli_config(tmp: Path) -> Path:
    """deploy/terraform.rc if its mirror holds the provider; else a copy naming the mirror
    found in the usual places (or $TF_PLUGIN_MIRROR); else a failure saying what to do."""
    rc = DEPLOY / "terraform.rc"
    configured = re.search(r'path\s*=\s*"([^"]+)"', rc.read_text()).group(1)
    candidates = [os.environ.get("TF_PLUGIN_MIRROR"), configured, "/opt/tf-plugins",
                  str(Path.home() / ".terraform.d/plugins"), "/usr/share/terraform/plugins",
                  "/usr/local/share/terraform/plugins"]  # fmt: skip
    for mirror in filter(None, candidates):
        if (Path(mirror) / PROVIDER).is_dir():
            if mirror == configured:
                return rc
            copy = tmp / "terraform.rc"
            copy.write_text(rc.read_text().replace(configured, mirror))
            return copy
    pytest.fail(
        f"the AWS provider 5.100.0 is not in a local mirror ({PROVIDER} under {configured}, as deploy/terraform.rc"
        " says): create the mirror with `terraform providers mirror <dir>` in deploy/ on a machine with registry"
        " access, then set TF_PLUGIN_MIRROR=<dir> (or edit deploy/terraform.rc)"
    )


# ---- moto and the deployment ---------------------------------------------------------------


def self_signed_certificate(acm) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rag.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return acm.import_certificate(
        Certificate=cert.public_bytes(serialization.Encoding.PEM),
        PrivateKey=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
    )["CertificateArn"]


def override(endpoint: str) -> str:
    endpoints = "\n".join(f'    {service} = "{endpoint}"' for service in MOTO_SERVICES)
    return f"""# Written by rag_assets_tests/test_terraform.py: the provider talks to moto.
provider "aws" {{
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true
  endpoints {{
{endpoints}
  }}
}}
"""


_transport = threading.local()


@contextmanager
def moto_reads_secure_transport():
    """moto's S3 evaluating a bucket policy's `aws:SecureTransport` condition: a request with
    the PLAIN_HTTP header is plain HTTP (a Deny conditioned on it applies), any other one is
    TLS (such a Deny does not apply). Everything else is moto's own evaluation."""
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket
    from moto.s3.responses import S3Response

    key_response, get_permission = S3Response._key_response, FakeBucket.get_permission
    plain_only = {"Bool": {"aws:SecureTransport": "false"}}

    def transport_aware_key_response(self, request, full_url):
        _transport.plain = request.headers.get(PLAIN_HTTP) == "plain"
        try:
            return key_response(self, request, full_url)
        finally:
            _transport.plain = False

    def transport_aware_permission(self, action, resource):
        if self.policy is None:
            return get_permission(self, action, resource)
        policy = json.loads(self.policy)
        kept = []
        for statement in _list_of(policy["Statement"]):
            if statement.get("Condition") == plain_only:
                if not getattr(_transport, "plain", False):
                    continue
                statement = {k: v for k, v in statement.items() if k != "Condition"}
            kept.append(statement)
        if not kept:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**policy, "Statement": kept})).is_action_permitted(action, resource)

    S3Response._key_response, FakeBucket.get_permission = transport_aware_key_response, transport_aware_permission
    try:
        yield
    finally:
        S3Response._key_response, FakeBucket.get_permission = key_response, get_permission


def _list_of(value) -> list:
    return value if isinstance(value, list) else [value]


def over_plain_http(client):
    """The client's S3 requests stand for plain HTTP (moto_reads_secure_transport)."""

    def mark(request, **_):
        request.headers[PLAIN_HTTP] = "plain"

    client.meta.events.register("before-sign.s3.*", mark)
    return client


class Deployment:
    def __init__(self, workdir: Path, endpoint: str, prefix: str, env: dict, variables: dict):
        self.workdir, self.endpoint, self.prefix, self.env, self.variables = workdir, endpoint, prefix, env, variables
        self.terraform = terraform_binary()
        self.outputs: dict = {}

    def tf(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [self.terraform, *args],
            cwd=self.workdir,
            env=self.env,
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"terraform {args[0]} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def var_args(self, **more) -> list[str]:
        return [f"-var={k}={v}" for k, v in {**self.variables, **more}.items()]

    def client(self, service: str):
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip

    def state_resources(self) -> list[dict]:
        """The applied state's resources (terraform show -json)."""
        return json.loads(self.tf("show", "-json").stdout)["values"]["root_module"]["resources"]

    def plan_of(self, **variables) -> list[dict]:
        """The resources as a plan of another configuration would leave them (no refresh, not applied)."""
        name = f"other-{uuid.uuid4().hex[:6]}.plan"
        self.tf("plan", "-refresh=false", "-input=false", f"-out={name}", *self.var_args(**variables))
        return json.loads(self.tf("show", "-json", name).stdout)["planned_values"]["root_module"]["resources"]


@pytest.fixture(scope="module")
def secure_transport():
    with moto_reads_secure_transport():
        yield


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, secure_transport) -> Deployment:
    from moto.server import ThreadedMotoServer

    from rag_assets_tests.conftest import free_port

    started = time.monotonic()
    tmp = tmp_path_factory.mktemp("terraform")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        workdir = tmp / "deploy"
        workdir.mkdir()
        for f in [*DEPLOY.glob("*.tf"), DEPLOY / ".terraform.lock.hcl"]:
            shutil.copy(f, workdir / f.name)
        (workdir / "moto_override.tf").write_text(override(endpoint))

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
        env.update(
            TF_CLI_CONFIG_FILE=str(cli_config(tmp)),
            TF_IN_AUTOMATION="1",
            TF_INPUT="0",
            CHECKPOINT_DISABLE="1",
            AWS_EC2_METADATA_DISABLED="true",
            # Anything not sent to moto fails at once: no proxy listens on port 9.
            HTTPS_PROXY="http://127.0.0.1:9",
            HTTP_PROXY="http://127.0.0.1:9",
            NO_PROXY="127.0.0.1,localhost",
        )
        prefix = f"rtf-{uuid.uuid4().hex[:8]}"
        probe = Deployment(workdir, endpoint, prefix, env, {})
        variables = {
            "name": prefix,
            "image_tag": "test-1",
            "lambda_image_tag": "test-1",
            "certificate_arn": self_signed_certificate(probe.client("acm")),
            "force_destroy": "true",
            "db_deletion_protection": "false",
            "db_skip_final_snapshot": "true",
            **CONFIGURED,
        }
        dep = Deployment(workdir, endpoint, prefix, env, variables)
        dep.tf("init", "-input=false", "-lockfile=readonly")
        dep.tf("validate")
        dep.tf("apply", "-auto-approve", "-input=false", "-parallelism=20", *dep.var_args())
        dep.outputs = {k: v["value"] for k, v in json.loads(dep.tf("output", "-json").stdout).items()}
        dep.applied_after = time.monotonic() - started
        yield dep
    finally:
        server.stop()


# ---- policy evaluation (moto has no iam:SimulatePrincipalPolicy) -----------------------------


def role_statements(iam, role: str) -> list[dict]:
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == [], f"{role}: managed policies"
    statements = []
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):
            document = json.loads(document)
        for s in document["Statement"]:
            statements.append({**s, "Action": _list(s.get("Action")), "Resource": _list(s.get("Resource"))})
    return statements


def _list(value) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def allows(statements: list[dict], action: str, resource: str) -> bool:
    """Whether an Allow statement matches (its conditions read as satisfied: an upper bound,
    so a False is a real "cannot")."""
    for s in statements:
        if s["Effect"] != "Allow" or "NotAction" in s or "NotResource" in s:
            continue
        if any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in s["Action"]) and any(
            fnmatch.fnmatchcase(resource, r) for r in s["Resource"]
        ):
            return True
    return False


def conditions(statements: list[dict], action: str) -> list[dict]:
    return [s.get("Condition", {}) for s in statements if action in s["Action"]]


def same_json(a, b) -> bool:
    """Two JSON documents equal but for spacing (moto writes `{"a": 1}`, AWS `{"a":1}`)."""
    try:
        return isinstance(a, str) and isinstance(b, str) and json.loads(a) == json.loads(b)
    except ValueError:
        return False


# ---- the checks ----------------------------------------------------------------------------


def test_apply_from_nothing_and_outputs(deployment):
    out = deployment.outputs
    for name in ["ui_url", "queue_url", "dlq_url", "document_bucket", "work_bucket", "dagster_image_repository_url",
                 "lambda_image_repository_url", "embed_function_name", "rds_endpoint",
                 "cognito_user_pool_id"]:  # fmt: skip
        assert out[name], name
    assert out["ui_url"].startswith("https://") and out["embed_function_name"] == f"{deployment.prefix}-embed"
    assert deployment.applied_after < 240, f"init + validate + apply took {deployment.applied_after:.0f}s"
    # A second plan against what was created changes nothing but what moto does not keep.
    deployment.tf("plan", "-input=false", "-out=second.plan", *deployment.var_args())
    plan = json.loads(deployment.tf("show", "-json", "second.plan").stdout)
    drift = set()
    for change in plan.get("resource_changes", []):
        actions = change["change"]["actions"]
        if actions in (["no-op"], ["read"]):
            continue
        before, after = change["change"]["before"] or {}, change["change"]["after"] or {}
        unknown = change["change"].get("after_unknown") or {}
        keys = {
            k
            for k in set(before) | set(after)
            if (before.get(k) != after.get(k) and not same_json(before.get(k), after.get(k))) or unknown.get(k) is True
        }
        drift |= {(change["type"], tuple(actions), k) for k in keys}
    unexpected = {d for d in drift if (d[0], d[2]) not in MOTO_DRIFT or d[1] != ("update",)}
    assert not unexpected, f"a second plan would change: {sorted(unexpected)}"


def refused_plan(deployment, **variables) -> str:
    """A plan with these variables, which must fail: its error, on one line."""
    bad = deployment.tf(
        "plan", "-no-color", "-refresh=false", "-input=false", *deployment.var_args(**variables), check=False
    )
    assert bad.returncode != 0, variables
    return " ".join(bad.stderr.replace("│", " ").split())


def test_variables_are_validated(deployment):
    """One plan with every variable wrong: Terraform reports each."""
    refused = refused_plan(
        deployment,
        executor="celery",
        cognito_mfa="OFF",
        extra_internet_egress='["db"]',
        db_storage_username="rag",  # the master user's name
        db_vectors_username="Robert'); DROP",
        secret_recovery_window_days="0",
    )
    for says in [
        "executor must be",
        'cognito_mfa must be "ON" or "OPTIONAL"',
        "extra_internet_egress: a list of",
        "db_vectors_username: lower-case letters",
        "must be three different roles",
        "secret_recovery_window_days: 7 to 30",
    ]:
        assert says in refused, says


def test_buckets_and_the_queue(deployment):
    s3, sqs = deployment.client("s3"), deployment.client("sqs")
    out = deployment.outputs
    docs, work = out["document_bucket"], out["work_bucket"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=out["queue_url"], AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=out["dlq_url"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    notifications = s3.get_bucket_notification_configuration(Bucket=docs)["QueueConfigurations"]
    assert [n["QueueArn"] for n in notifications] == [queue_arn]
    assert set(notifications[0]["Events"]) == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}

    attributes = sqs.get_queue_attributes(QueueUrl=out["queue_url"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn and int(redrive["maxReceiveCount"]) == 5
    (statement,) = json.loads(attributes["Policy"])["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == f"arn:aws:s3:::{docs}"

    assert s3.get_bucket_versioning(Bucket=docs)["Status"] == "Enabled"
    for bucket in (docs, work, out["log_bucket"]):
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values()) and len(block) == 4, bucket
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}, bucket
    rules = s3.get_bucket_lifecycle_configuration(Bucket=work)["Rules"]
    pipes = [r for r in rules if r.get("Filter", {}).get("Prefix") == "work/_pipes/"]
    assert pipes and pipes[0]["Status"] == "Enabled" and pipes[0]["Expiration"]["Days"] == 3

    # An object dropped into the bucket, then that version deleted: both events on the queue.
    # (moto sends no event for a delete marker, s3:ObjectRemoved:DeleteMarkerCreated.)
    version = s3.put_object(Bucket=docs, Key="acme/handbook 1.txt", Body=b"vacation: 25 days")["VersionId"]
    s3.delete_object(Bucket=docs, Key="acme/handbook 1.txt", VersionId=version)
    events = []
    deadline = time.monotonic() + 15
    while len(events) < 2 and time.monotonic() < deadline:
        response = sqs.receive_message(QueueUrl=out["queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in response.get("Messages", []):
            for record in json.loads(message["Body"]).get("Records", []):
                s3_part = record["s3"]
                events.append((record["eventName"], s3_part["bucket"]["name"], unquote_plus(s3_part["object"]["key"])))
            sqs.delete_message(QueueUrl=out["queue_url"], ReceiptHandle=message["ReceiptHandle"])
    assert [(e[0].split(":")[0], *e[1:]) for e in events] == [
        ("ObjectCreated", docs, "acme/handbook 1.txt"),
        ("ObjectRemoved", docs, "acme/handbook 1.txt"),
    ], events


def test_every_bucket_refuses_plain_http(deployment):
    """A policy on each bucket denies every request not made over TLS (moto enforces it on
    object requests, with the transport as moto_reads_secure_transport tells it)."""
    from botocore.exceptions import ClientError

    out = deployment.outputs
    s3, plain = deployment.client("s3"), over_plain_http(deployment.client("s3"))
    buckets = [out["document_bucket"], out["work_bucket"], out["log_bucket"]]
    listed = {b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(deployment.prefix)}
    assert listed == set(buckets)
    for bucket in buckets:
        statements = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
        (deny,) = [s for s in statements if s["Effect"] == "Deny"]
        assert deny["Principal"] == "*" and _list_of(deny["Action"]) == ["s3:*"], bucket
        assert set(_list_of(deny["Resource"])) == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        key = "acme/tls-probe.txt"
        with pytest.raises(ClientError) as refused:
            plain.put_object(Bucket=bucket, Key=key, Body=b"over plain HTTP")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, bucket
        version = s3.put_object(Bucket=bucket, Key=key, Body=b"over TLS").get("VersionId")
        with pytest.raises(ClientError) as refused:
            plain.get_object(Bucket=bucket, Key=key)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, bucket
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"over TLS"
        s3.delete_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))


def test_the_load_balancer_logs_to_its_own_bucket(deployment):
    out, p = deployment.outputs, deployment.prefix
    s3, elb = deployment.client("s3"), deployment.client("elbv2")
    account = deployment.client("sts").get_caller_identity()["Account"]
    logs = out["log_bucket"]
    (lb,) = elb.describe_load_balancers(Names=[p])["LoadBalancers"]
    found = elb.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])["Attributes"]
    attributes = {a["Key"]: a["Value"] for a in found}
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["access_logs.s3.bucket"] == logs and attributes["access_logs.s3.prefix"] == "alb"
    # Log delivery may write under alb/AWSLogs/<account>/ only: as the service (regions since
    # August 2022) and as us-east-1's Elastic Load Balancing account (older regions).
    statements = json.loads(s3.get_bucket_policy(Bucket=logs)["Policy"])["Statement"]
    (delivery,) = [s for s in statements if s["Effect"] == "Allow"]
    assert delivery["Principal"] == {
        "Service": "logdelivery.elasticloadbalancing.amazonaws.com",
        "AWS": "arn:aws:iam::127311923021:root",
    }
    assert _list_of(delivery["Action"]) == ["s3:PutObject"]
    assert _list_of(delivery["Resource"]) == [f"arn:aws:s3:::{logs}/alb/AWSLogs/{account}/*"]
    (expiry,) = s3.get_bucket_lifecycle_configuration(Bucket=logs)["Rules"]
    assert expiry["Status"] == "Enabled" and expiry["Expiration"]["Days"] == 90
    rule = s3.get_bucket_encryption(Bucket=logs)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"  # the only one ALB logs take


def test_secrets_can_be_restored_for_seven_days(deployment):
    """Secrets Manager keeps no recovery window on a secret (it is an argument of DeleteSecret):
    the applied state says it here, and test_destroy_leaves_nothing_behind sees moto schedule
    each deletion 7 days ahead."""
    secrets = [r for r in deployment.state_resources() if r["type"] == "aws_secretsmanager_secret"]
    names = {r["values"]["name"].removeprefix(deployment.prefix + "/") for r in secrets}
    assert names == {"openai-api-key", "pinecone-api-key", "metabase-api-key", "notify-secret",
                     "db-storage-password", "db-vectors-password"}  # fmt: skip
    assert {r["values"]["recovery_window_in_days"] for r in secrets} == {
        7
    }  # fewer is refused (test_variables_are_validated)


@pytest.fixture(scope="module")
def policies(deployment) -> dict[str, list[dict]]:
    iam = deployment.client("iam")
    roles = [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(deployment.prefix + "-")]
    names = {"ecs-execution", "webserver", "daemon", "code-location", "run", "embed"}
    assert sorted(roles) == sorted(f"{deployment.prefix}-{n}" for n in names)
    return {n: role_statements(iam, f"{deployment.prefix}-{n}") for n in names}


def task_definition_arn(deployment, family: str) -> str:
    found = deployment.client("ecs").describe_task_definition(taskDefinition=family)
    return found["taskDefinition"]["taskDefinitionArn"]


@pytest.fixture(scope="module")
def arns(deployment) -> dict[str, str]:
    out, p = deployment.outputs, deployment.prefix
    account = deployment.client("sts").get_caller_identity()["Account"]
    sqs, sm = deployment.client("sqs"), deployment.client("secretsmanager")
    ecs_base = f"arn:aws:ecs:us-east-1:{account}"
    return {
        "queue": sqs.get_queue_attributes(QueueUrl=out["queue_url"], AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ],
        "dlq": sqs.get_queue_attributes(QueueUrl=out["dlq_url"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"],
        "docs": f"arn:aws:s3:::{out['document_bucket']}",
        "work": f"arn:aws:s3:::{out['work_bucket']}",
        "run_td": deployment.client("ecs").describe_task_definition(taskDefinition=f"{p}-run")["taskDefinition"][
            "taskDefinitionArn"
        ],
        "webserver_td": f"{ecs_base}:task-definition/{p}-webserver:1",
        "db_setup_td": task_definition_arn(deployment, f"{p}-db-setup"),
        "task": f"{ecs_base}:task/{p}/0123456789abcdef",
        "other_cluster_task": f"{ecs_base}:task/someone-else/0123456789abcdef",
        "embed": deployment.client("lambda").get_function(FunctionName=out["embed_function_name"])["Configuration"][
            "FunctionArn"
        ],
        "other_function": f"arn:aws:lambda:us-east-1:{account}:function:someone-else",
        "openai": sm.describe_secret(SecretId=f"{p}/openai-api-key")["ARN"],
        "pinecone": sm.describe_secret(SecretId=f"{p}/pinecone-api-key")["ARN"],
        "role": lambda name: f"arn:aws:iam::{account}:role/{p}-{name}",
    }


def test_no_wildcard_actions_and_star_resources_only_where_aws_cannot_scope(policies):
    for role, statements in policies.items():
        for s in statements:
            assert s["Effect"] == "Allow" and s["Action"] and s["Resource"], (role, s)
            for action in s["Action"]:
                assert "*" not in action, f"{role}: wildcard action {action}"
            if "*" in s["Resource"]:
                assert set(s["Action"]) <= UNSCOPABLE, f"{role}: Resource * for {s['Action']}"
            for resource in s["Resource"]:
                assert resource == "*" or resource.startswith("arn:aws:"), (role, resource)


def test_each_role_can_do_its_job_and_no_more(policies, arns, deployment):
    a = arns
    compute_log = f"{a['work']}/compute-logs/run-1/step.err"
    work_file = f"{a['work']}/work/chunks/doc.parquet"

    web = policies["webserver"]
    assert allows(web, "s3:GetObject", compute_log) and allows(web, "s3:ListBucket", a["work"])
    assert allows(web, "ecs:StopTask", a["task"]) and allows(web, "ecs:DescribeTasks", a["task"])
    assert not allows(web, "ecs:StopTask", a["other_cluster_task"])
    assert not allows(web, "s3:GetObject", work_file) and not allows(web, "s3:PutObject", compute_log)
    assert not allows(web, "ecs:RunTask", a["run_td"]) and not allows(web, "iam:PassRole", a["role"]("run"))
    assert conditions(web, "s3:ListBucket") == [{"StringLike": {"s3:prefix": "compute-logs/*"}}]

    daemon = policies["daemon"]
    assert allows(daemon, "ecs:RunTask", a["run_td"]) and not allows(daemon, "ecs:RunTask", a["webserver_td"])
    assert not allows(daemon, "ecs:RunTask", a["db_setup_td"])  # the master password's task: the operator's only
    assert allows(daemon, "ecs:TagResource", a["task"]) and allows(daemon, "ec2:DescribeNetworkInterfaces", "*")
    assert allows(daemon, "iam:PassRole", a["role"]("run")) and allows(
        daemon, "iam:PassRole", a["role"]("ecs-execution")
    )
    assert not allows(daemon, "iam:PassRole", a["role"]("daemon")) and not allows(
        daemon, "iam:PassRole", a["role"]("webserver")
    )
    assert conditions(daemon, "iam:PassRole") == [{"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}]
    assert allows(daemon, "s3:PutObject", compute_log) and not allows(daemon, "s3:GetObject", work_file)
    assert not allows(daemon, "sqs:ReceiveMessage", a["queue"]) and not allows(
        daemon, "lambda:InvokeFunction", a["embed"]
    )

    code = policies["code-location"]
    for action in ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]:
        assert allows(code, action, a["queue"]) and not allows(code, action, a["dlq"]), action
    assert allows(code, "s3:GetObject", f"{a['docs']}/acme/handbook.txt") and allows(code, "s3:ListBucket", a["docs"])
    assert allows(code, "s3:GetObjectVersion", f"{a['docs']}/acme/handbook.txt")
    assert not allows(code, "s3:PutObject", f"{a['docs']}/acme/handbook.txt") and not allows(
        code, "s3:GetObject", work_file
    )
    assert not allows(code, "ecs:RunTask", a["run_td"]) and not allows(code, "iam:PassRole", a["role"]("run"))
    assert allows(code, "ecs:DescribeTaskDefinition", "*") and not allows(
        code, "secretsmanager:GetSecretValue", a["openai"]
    )

    run = policies["run"]
    assert allows(run, "s3:GetObject", f"{a['docs']}/acme/handbook.txt") and not allows(
        run, "s3:PutObject", f"{a['docs']}/x"
    )
    # Images' thumbnails, under the project's own prefix; nothing else.
    for action in ["s3:PutObject", "s3:DeleteObject"]:
        assert allows(run, action, f"{a['docs']}/.rag-thumbnails/acme/boat.jpg"), action
        assert not allows(run, action, f"{a['docs']}/acme/boat.jpg"), action
        assert not allows(run, action, f"{a['docs']}/acme/thumbnails/boat.jpg"), action
        assert not allows(run, action, f"{a['docs']}/acme/.rag-thumbnails/boat.jpg"), action
    for action in ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]:
        assert allows(run, action, work_file) and allows(run, action, compute_log), action
    assert allows(run, "lambda:InvokeFunction", a["embed"]) and not allows(
        run, "lambda:InvokeFunction", a["other_function"]
    )
    assert allows(run, "ecs:RunTask", a["run_td"]) and not allows(run, "ecs:RunTask", a["webserver_td"])
    assert not allows(run, "ecs:RunTask", a["db_setup_td"])
    assert allows(run, "iam:PassRole", a["role"]("run")) and not allows(run, "iam:PassRole", a["role"]("daemon"))
    assert allows(
        run,
        "logs:GetLogEvents",
        f"arn:aws:logs:us-east-1:123456789012:log-group:/ecs/{deployment.prefix}/run:log-stream:run/run/abc",
    )
    assert not allows(run, "sqs:ReceiveMessage", a["queue"]) and not allows(
        run, "secretsmanager:GetSecretValue", a["openai"]
    )

    embed = policies["embed"]
    pipes_file = f"{a['work']}/work/_pipes/run-1/abc/vectors.npy"
    assert allows(embed, "s3:GetObject", pipes_file) and allows(embed, "s3:PutObject", pipes_file)
    assert not allows(embed, "s3:PutObject", work_file) and not allows(embed, "s3:GetObject", work_file)
    assert not allows(embed, "s3:GetObject", compute_log) and not allows(embed, "s3:GetObject", f"{a['docs']}/x")
    assert allows(embed, "secretsmanager:GetSecretValue", a["openai"])
    assert not allows(embed, "secretsmanager:GetSecretValue", a["pinecone"])
    for action in ["sqs:ReceiveMessage", "sqs:SendMessage", "sqs:DeleteMessage"]:
        assert not allows(embed, action, a["queue"]), action
    assert not allows(embed, "ecs:RunTask", a["run_td"]) and not allows(embed, "lambda:InvokeFunction", a["embed"])

    # The execution role reads exactly the secrets the task definitions reference: here the
    # two roles' passwords, the master's (db-setup), OpenAI, Metabase and the notify secret;
    # not Pinecone's, which no container gets in this configuration.
    ecs = deployment.client("ecs")
    referenced = set()
    for family in ["run", "webserver", "daemon", "code-location", "db-setup"]:
        td = ecs.describe_task_definition(taskDefinition=f"{deployment.prefix}-{family}")["taskDefinition"]
        referenced |= {re.sub(r":password::$", "", s["valueFrom"]) for s in td["containerDefinitions"][0]["secrets"]}
    execution = policies["ecs-execution"]
    readable = {r for s in execution if "secretsmanager:GetSecretValue" in s["Action"] for r in s["Resource"]}
    assert readable == referenced and len(referenced) == 6
    assert a["pinecone"] not in readable and deployment.outputs["db_password_secret_arn"] in readable
    assert not allows(execution, "s3:GetObject", f"{a['docs']}/x") and not allows(execution, "ecs:RunTask", a["run_td"])

    iam = deployment.client("iam")
    for name in ["ecs-execution", "webserver", "daemon", "code-location", "run"]:
        trust = iam.get_role(RoleName=f"{deployment.prefix}-{name}")["Role"]["AssumeRolePolicyDocument"]
        assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "ecs-tasks.amazonaws.com"}], name
    trust = iam.get_role(RoleName=f"{deployment.prefix}-embed")["Role"]["AssumeRolePolicyDocument"]
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "lambda.amazonaws.com"}]


def test_the_ui_and_graphql_need_a_cognito_sign_in(deployment):
    elb, idp = deployment.client("elbv2"), deployment.client("cognito-idp")
    (lb,) = elb.describe_load_balancers(Names=[deployment.prefix])["LoadBalancers"]
    listeners = {l["Port"]: l for l in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]}
    assert set(listeners) == {80, 443}

    http = listeners[80]
    assert http["Protocol"] == "HTTP"
    (redirect,) = http["DefaultActions"]
    assert redirect["Type"] == "redirect" and redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert redirect["RedirectConfig"]["Port"] == "443"

    https = listeners[443]
    assert (
        https["Protocol"] == "HTTPS"
        and https["Certificates"][0]["CertificateArn"] == deployment.variables["certificate_arn"]
    )
    default = sorted(https["DefaultActions"], key=lambda a: a["Order"])
    assert [a["Type"] for a in default] == ["authenticate-cognito", "forward"]
    pool_id = deployment.outputs["cognito_user_pool_id"]
    auth = default[0]["AuthenticateCognitoConfig"]
    assert auth["UserPoolArn"].endswith(f"userpool/{pool_id}")
    assert auth.get("OnUnauthenticatedRequest", "authenticate") == "authenticate"

    # Every listener's every rule: a forward only after an authentication.
    graphql = None
    for listener in listeners.values():
        for rule in elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]:
            actions = sorted(rule["Actions"], key=lambda a: a.get("Order", 0))
            types = [a["Type"] for a in actions]
            for i, kind in enumerate(types):
                if kind == "forward":
                    assert any(t.startswith("authenticate-") for t in types[:i]), (listener["Port"], rule)
            paths = [
                v
                for c in rule["Conditions"]
                for v in c.get("Values", []) + c.get("PathPatternConfig", {}).get("Values", [])
            ]
            if "/graphql*" in paths:
                graphql = actions
    assert graphql is not None and [a["Type"] for a in graphql] == ["authenticate-cognito", "forward"]
    assert graphql[0]["AuthenticateCognitoConfig"]["OnUnauthenticatedRequest"] == "deny"

    pool = idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    # MFA required (cognito_mfa defaults to ON), with an authenticator app.
    assert pool["MfaConfiguration"] == "ON"
    mfa = idp.get_user_pool_mfa_config(UserPoolId=pool_id)
    assert mfa["MfaConfiguration"] == "ON" and mfa["SoftwareTokenMfaConfiguration"] == {"Enabled": True}
    client = idp.describe_user_pool_client(UserPoolId=pool_id, ClientId=auth["UserPoolClientId"])["UserPoolClient"]
    assert client.get("ClientSecret") and client["AllowedOAuthFlows"] == ["code"]
    assert client["AllowedOAuthFlowsUserPoolClient"] is True
    assert client["CallbackURLs"] == [f"https://{lb['DNSName']}/oauth2/idpresponse"]
    domain = idp.describe_user_pool_domain(Domain=auth["UserPoolDomain"])["DomainDescription"]
    assert domain["UserPoolId"] == pool_id


def security_groups(deployment) -> dict[str, dict]:
    p = deployment.prefix
    found = deployment.client("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{p}-*"]}])
    return {g["GroupName"].removeprefix(p + "-"): g for g in found["SecurityGroups"]}


def rules(group: dict, direction: str, names: dict[str, str]) -> set[tuple]:
    """(protocol, from port, to port, where) of each rule: where is a group's name, pl:<id> or a CIDR."""
    out = set()
    for r in group["IpPermissionsEgress" if direction == "egress" else "IpPermissions"]:
        ports = (r["IpProtocol"], r.get("FromPort"), r.get("ToPort"))
        out |= {(*ports, names.get(pair["GroupId"], pair["GroupId"])) for pair in r.get("UserIdGroupPairs", [])}
        out |= {(*ports, f"pl:{pl['PrefixListId']}") for pl in r.get("PrefixListIds", [])}
        out |= {(*ports, cidr["CidrIp"]) for cidr in r.get("IpRanges", [])}
        out |= {(*ports, cidr["CidrIpv6"]) for cidr in r.get("Ipv6Ranges", [])}
    return out


def test_network_isolation(deployment):
    ec2, rds = deployment.client("ec2"), deployment.client("rds")
    p = deployment.prefix
    groups = security_groups(deployment)
    ids = {name: g["GroupId"] for name, g in groups.items()}
    names = {i: name for name, i in ids.items()}
    assert set(ids) == {"alb", "webserver", "daemon", "code-location", "run", "db-setup", "db", "endpoints"}

    def ingress(name):
        return rules(groups[name], "ingress", names)

    assert ingress("webserver") == {("tcp", 3000, 3000, "alb")}
    assert ingress("code-location") == {("tcp", 4000, 4000, n) for n in ["webserver", "daemon", "run"]}
    assert ingress("db") == {("tcp", 5432, 5432, n) for n in TASK_GROUPS}
    assert ingress("endpoints") == {("tcp", 443, 443, n) for n in TASK_GROUPS}
    assert ingress("daemon") == ingress("run") == ingress("db-setup") == set()
    assert {r[1] for r in ingress("alb")} == {80, 443}

    (db,) = rds.describe_db_instances(DBInstanceIdentifier=f"{p}-db")["DBInstances"]
    assert db["Engine"] == "postgres" and db["EngineVersion"].split(".")[0] in {"15", "16"}
    assert db["PubliclyAccessible"] is False and db["StorageEncrypted"] is True
    assert [g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]] == [ids["db"]]
    private = {
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": [f"{p}-private-*"]}])["Subnets"]
    }
    assert len(private) == 2 and {s["SubnetIdentifier"] for s in db["DBSubnetGroup"]["Subnets"]} == private
    assert db["MasterUserSecret"]["SecretArn"] == deployment.outputs["db_password_secret_arn"]


def test_egress_only_to_what_is_configured(deployment):
    """Every task reaches AWS through the VPC endpoints and PostgreSQL; the internet (through
    the NAT) only where its configuration names an external API, on that API's port."""
    ec2, p = deployment.client("ec2"), deployment.prefix
    groups = security_groups(deployment)
    names = {g["GroupId"]: name for name, g in groups.items()}
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "tag:Project", "Values": [p]}])["Vpcs"]
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["VpcEndpoints"]
    by_service = {e["ServiceName"].removeprefix("com.amazonaws.us-east-1."): e for e in endpoints}
    assert set(by_service) == INTERFACE_ENDPOINTS | {"s3"}
    subnets = ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": [f"{p}-private-*"]}])["Subnets"]
    private = {s["SubnetId"] for s in subnets}
    for service in INTERFACE_ENDPOINTS:
        endpoint = by_service[service]
        assert endpoint["VpcEndpointType"] == "Interface" and endpoint["PrivateDnsEnabled"] is True, service
        assert [g["GroupId"] for g in endpoint["Groups"]] == [groups["endpoints"]["GroupId"]], service
        assert set(endpoint["SubnetIds"]) == private, service
    assert by_service["s3"]["VpcEndpointType"] == "Gateway"
    s3_name = {"Name": "prefix-list-name", "Values": ["com.amazonaws.us-east-1.s3"]}
    (s3_list,) = ec2.describe_prefix_lists(Filters=[s3_name])["PrefixLists"]
    s3 = f"pl:{s3_list['PrefixListId']}"
    (private_routes,) = ec2.describe_route_tables(Filters=[{"Name": "tag:Name", "Values": [f"{p}-private"]}])[
        "RouteTables"
    ]
    assert any(r.get("DestinationPrefixListId") == s3_list["PrefixListId"] for r in private_routes["Routes"])

    base = {("tcp", 443, 443, "endpoints"), ("tcp", 443, 443, s3), ("tcp", 5432, 5432, "db")}
    grpc = {("tcp", 4000, 4000, "code-location")}
    expected = {
        "webserver": base | grpc,
        "daemon": base | grpc,
        "run": base | grpc | {("tcp", port, port, "0.0.0.0/0") for port in CONFIGURED_INTERNET["run"]},
        "code-location": base | {("tcp", port, port, "0.0.0.0/0") for port in CONFIGURED_INTERNET["code-location"]},
        "db-setup": base,
        "alb": {("tcp", 3000, 3000, "webserver"), ("tcp", 443, 443, "0.0.0.0/0")},  # Cognito's endpoints
        "db": set(),
        "endpoints": set(),
    }
    assert {name: rules(g, "egress", names) for name, g in groups.items()} == expected
    assert {k: set(v) for k, v in deployment.outputs["internet_egress"].items()} == CONFIGURED_INTERNET


def test_task_definitions_services_and_the_lambda(deployment):
    ecs, sd, lam = deployment.client("ecs"), deployment.client("servicediscovery"), deployment.client("lambda")
    p, out = deployment.prefix, deployment.outputs
    address = out["rds_address"]
    expected = {
        "DAGSTER_HOME": "/opt/dagster/dagster_home",
        "DAGSTER_PG_HOST": address,
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_PG_USERNAME": "dagster_storage",  # the storage role, not the master user
        "DAGSTER_RUN_TASK_DEFINITION": f"{p}-run",
        "DAGSTER_COMPUTE_LOG_BUCKET": out["work_bucket"],
        "RAG_SOURCE_URI": f"s3://{out['document_bucket']}/",
        "RAG_SQS_QUEUE_URL": out["queue_url"],
        "RAG_INDEX_URI": f"postgresql://rag_vectors@{address}:5432/rag?sslmode=require",  # the vectors role
        "RAG_EMBEDDING_CACHE_URI": f"postgresql://rag_vectors@{address}:5432/rag?sslmode=require",
        "RAG_WORK_URI": f"s3://{out['work_bucket']}/work",
        "RAG_WORK_DIR": "/tmp/rag",
        "RAG_EMBEDDER": "openai:text-embedding-3-small",
        "RAG_EMBED_ON": f"lambda:{out['embed_function_name']}",
        "RAG_EXECUTOR": "in_process",
        "METABASE_URL": "https://metabase.example.com:8443",
        "RAG_NOTIFY": "webhook:https://hooks.example.com/rag",
        "DAGSTER_CODE_LOCATION_HOST": f"code-location.{p}.internal",
    }
    assert CONTRACT_ENV <= set(expected)
    image = f"{out['dagster_image_repository_url']}:test-1"
    commands = {}
    for family in ["run", "webserver", "daemon", "code-location"]:
        td = ecs.describe_task_definition(taskDefinition=f"{p}-{family}")["taskDefinition"]
        assert td["requiresCompatibilities"] == ["FARGATE"] and td["networkMode"] == "awsvpc"
        assert td["executionRoleArn"].endswith(f"role/{p}-ecs-execution")
        assert td["taskRoleArn"].endswith(f"role/{p}-{family}")
        (container,) = td["containerDefinitions"]
        assert container["name"] == family and container["image"] == image
        env = {e["name"]: e["value"] for e in container["environment"]}
        assert {k: env.get(k) for k in expected} == expected, family
        # Each container only the secrets its code reads; never the master password.
        secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
        assert set(secrets) == CONFIGURED_SECRETS[family], family
        assert secrets["DAGSTER_PG_PASSWORD"] == out["db_role_secret_arns"]["storage"]
        if "PGPASSWORD" in secrets:
            assert secrets["PGPASSWORD"] == out["db_role_secret_arns"]["vectors"]
        for name in set(secrets) & set(out["api_key_secret_arns"]):
            assert secrets[name] == out["api_key_secret_arns"][name], (family, name)
        assert not any(v.startswith(out["db_password_secret_arn"]) for v in secrets.values()), family
        in_plain_sight = {"PGPASSWORD", "DAGSTER_PG_PASSWORD", *out["api_key_secret_arns"]} & set(env)
        assert not in_plain_sight, f"a secret in plain environment: {in_plain_sight}"
        commands[family] = container.get("command")
    assert out["container_secrets"] == {k: sorted(v) for k, v in CONFIGURED_SECRETS.items()}
    assert not NOT_THE_WEBSERVERS & CONFIGURED_SECRETS["webserver"]

    # The db-setup task: psql running deploy/db-roles.sql as the master user; no task role.
    td = ecs.describe_task_definition(taskDefinition=f"{p}-db-setup")["taskDefinition"]
    assert td["executionRoleArn"].endswith(f"role/{p}-ecs-execution") and not td.get("taskRoleArn")
    (container,) = td["containerDefinitions"]
    assert container["name"] == "db-setup" and container["image"] == image
    assert container["command"] == [
        "psql", "--no-psqlrc", "--set=ON_ERROR_STOP=1", "--file=/opt/dagster/app/deploy/db-roles.sql"
    ]  # fmt: skip
    assert {e["name"]: e["value"] for e in container["environment"]} == {
        "PGHOST": address, "PGPORT": "5432", "PGDATABASE": "rag", "PGUSER": "rag", "PGSSLMODE": "require",
        "PGCONNECT_TIMEOUT": "20", "RAG_DB_STORAGE_ROLE": "dagster_storage", "RAG_DB_STORAGE_DATABASE": "dagster",
        "RAG_DB_VECTORS_ROLE": "rag_vectors", "RAG_DB_VECTORS_DATABASE": "rag",
    }  # fmt: skip
    assert {s["name"]: s["valueFrom"] for s in container["secrets"]} == {
        "PGPASSWORD": out["db_password_secret_arn"] + ":password::",
        "RAG_DB_STORAGE_PASSWORD": out["db_role_secret_arns"]["storage"],
        "RAG_DB_VECTORS_PASSWORD": out["db_role_secret_arns"]["vectors"],
    }
    assert commands["run"] is None  # EcsRunLauncher gives each run its command
    assert commands["webserver"] == [
        "dagster-webserver",
        "-h",
        "0.0.0.0",
        "-p",
        "3000",
        "-w",
        "/opt/dagster/app/deploy/workspace.yaml",
    ]
    assert commands["daemon"] == ["dagster-daemon", "run", "-w", "/opt/dagster/app/deploy/workspace.yaml"]
    assert commands["code-location"][:8] == ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m"]
    assert commands["code-location"][8] == "rag_assets.definitions"

    # Three services, no run service; the code location registered in Cloud Map.
    service_arns = ecs.list_services(cluster=p)["serviceArns"]
    services = {s["serviceName"]: s for s in ecs.describe_services(cluster=p, services=service_arns)["services"]}
    assert set(services) == {f"{p}-webserver", f"{p}-daemon", f"{p}-code-location"}
    assert services[f"{p}-daemon"]["desiredCount"] == 1
    assert services[f"{p}-webserver"]["loadBalancers"][0]["containerPort"] == 3000
    (namespace,) = [n for n in sd.list_namespaces()["Namespaces"] if n["Name"] == f"{p}.internal"]
    (discovery,) = [s for s in sd.list_services()["Services"] if s["Name"] == "code-location" and s["Arn"] in
                    {r["registryArn"] for r in services[f"{p}-code-location"]["serviceRegistries"]}]  # fmt: skip
    assert sd.get_service(Id=discovery["Id"])["Service"]["DnsConfig"]["NamespaceId"] == namespace["Id"]
    workspace = (DEPLOY / "workspace.yaml").read_text()
    assert (
        "DAGSTER_CODE_LOCATION_HOST" in workspace
        and "port: 4000" in workspace
        and "location_name: rag_assets" in workspace
    )

    fn = lam.get_function(FunctionName=out["embed_function_name"])["Configuration"]
    assert fn["PackageType"] == "Image" and fn["Timeout"] == 900 and fn["MemorySize"] == 3008
    assert lam.get_function(FunctionName=out["embed_function_name"])["Code"]["ImageUri"] == (
        f"{out['lambda_image_repository_url']}:test-1"
    )
    assert fn["ImageConfigResponse"]["ImageConfig"]["Command"] == ["rag_assets.frontends.pipes_embed.lambda_handler"]
    assert fn["Environment"]["Variables"] == {
        "RAG_EMBEDDER": "openai:text-embedding-3-small",
        "RAG_MODEL_CACHE": "/tmp/models",
        "HF_HUB_OFFLINE": "1",
        "OPENAI_API_KEY_SECRET_ARN": out["api_key_secret_arns"]["OPENAI_API_KEY"],
    }
    assert fn["Role"].endswith(f"role/{p}-embed")


def planned_access(deployment, **variables) -> tuple[dict, dict, dict]:
    """Under another configuration (a plan, not applied): each container's secrets, each task
    group's internet ports, and the Lambda's environment."""
    resources = deployment.plan_of(**variables)
    groups = {g["GroupId"]: name for name, g in security_groups(deployment).items()}
    secrets = {}
    for r in resources:
        if r["type"] == "aws_ecs_task_definition":
            (container,) = json.loads(r["values"]["container_definitions"])
            secrets[container["name"]] = {s["name"] for s in container.get("secrets", [])}
    internet = {name: set() for name in groups.values()}
    for r in resources:
        v = r["values"]
        if r["type"] == "aws_security_group_rule" and v["type"] == "egress" and v.get("cidr_blocks"):
            assert v["cidr_blocks"] == ["0.0.0.0/0"]
            internet[groups[v["security_group_id"]]].add(v["from_port"])
    (fn,) = [r for r in resources if r["type"] == "aws_lambda_function"]
    return secrets, internet, fn["values"]["environment"][0]["variables"]


def test_other_configurations_get_only_what_they_name(deployment):
    """Nothing external configured: no container gets an API key, no task the internet, the
    Lambda no secret. With Pinecone as the index: its key and HTTPS out for the code location
    (sensors list the index) and the run tasks, the vectors role's password for the run tasks
    only (the embedding cache stays in PostgreSQL)."""
    secrets, internet, lambda_env = planned_access(
        deployment, embedder="local:all-MiniLM-L6-v2", metabase_url="", extra_environment="{}"
    )
    assert secrets == {
        "webserver": {"DAGSTER_PG_PASSWORD"},
        "daemon": {"DAGSTER_PG_PASSWORD"},
        "code-location": {"DAGSTER_PG_PASSWORD", "PGPASSWORD"},
        "run": {"DAGSTER_PG_PASSWORD", "PGPASSWORD"},
        "db-setup": {"PGPASSWORD", "RAG_DB_STORAGE_PASSWORD", "RAG_DB_VECTORS_PASSWORD"},
    }
    assert internet == {name: set() for name in internet} | {"alb": {443}}  # the load balancer: Cognito only
    assert "OPENAI_API_KEY_SECRET_ARN" not in lambda_env

    pinecone = '{RAG_INDEX_URI="pinecone://rag"}'
    secrets, internet, _ = planned_access(
        deployment, embedder="local:all-MiniLM-L6-v2", metabase_url="", extra_environment=pinecone
    )
    assert secrets["code-location"] == {"DAGSTER_PG_PASSWORD", "PINECONE_API_KEY"}
    assert secrets["run"] == {"DAGSTER_PG_PASSWORD", "PGPASSWORD", "PINECONE_API_KEY"}
    assert secrets["webserver"] == secrets["daemon"] == {"DAGSTER_PG_PASSWORD"}
    assert internet["code-location"] == internet["run"] == {443}
    assert internet["webserver"] == internet["daemon"] == internet["db-setup"] == set()


def test_destroy_leaves_nothing_behind(deployment):
    p = deployment.prefix
    s3 = deployment.client("s3")
    for bucket in (deployment.outputs["document_bucket"], deployment.outputs["work_bucket"]):
        s3.put_object(Bucket=bucket, Key="work/left-behind.txt", Body=b"force_destroy empties the bucket")
    # moto fails to delete a bucket holding a delete marker (FakeDeleteMarker.dispose): none left.
    for marker in s3.list_object_versions(Bucket=deployment.outputs["document_bucket"]).get("DeleteMarkers", []):
        s3.delete_object(Bucket=deployment.outputs["document_bucket"], Key=marker["Key"], VersionId=marker["VersionId"])
    deployment.tf("destroy", "-auto-approve", "-input=false", "-parallelism=20", *deployment.var_args())
    c = deployment.client
    left = {
        "buckets": [b["Name"] for b in c("s3").list_buckets()["Buckets"] if b["Name"].startswith(p)],
        "queues": c("sqs").list_queues(QueueNamePrefix=p).get("QueueUrls", []),
        "roles": [r["RoleName"] for r in c("iam").list_roles()["Roles"] if r["RoleName"].startswith(p)],
        "policies": [
            x["PolicyName"] for x in c("iam").list_policies(Scope="Local")["Policies"] if x["PolicyName"].startswith(p)
        ],
        "clusters": [
            x["clusterName"] for x in c("ecs").describe_clusters(clusters=[p])["clusters"] if x["status"] != "INACTIVE"
        ],
        "task definitions": c("ecs").list_task_definitions(familyPrefix=p, status="ACTIVE")["taskDefinitionArns"],
        "functions": [
            f["FunctionName"] for f in c("lambda").list_functions()["Functions"] if f["FunctionName"].startswith(p)
        ],
        "db instances": [
            d["DBInstanceIdentifier"]
            for d in c("rds").describe_db_instances()["DBInstances"]
            if d["DBInstanceIdentifier"].startswith(p)
        ],
        # The RDS-managed password (rds!db-...: this server holds no other) goes with the
        # instance; the others are checked below.
        "secrets": [
            s["Name"]
            for s in c("secretsmanager").list_secrets(IncludePlannedDeletion=True)["SecretList"]
            if s["Name"].startswith(p) and not s.get("DeletedDate") or s["Name"].startswith("rds!")
        ],
        "load balancers": [
            x["LoadBalancerName"]
            for x in c("elbv2").describe_load_balancers()["LoadBalancers"]
            if x["LoadBalancerName"].startswith(p)
        ],
        "target groups": [
            x["TargetGroupName"]
            for x in c("elbv2").describe_target_groups()["TargetGroups"]
            if x["TargetGroupName"].startswith(p)
        ],
        "user pools": [
            x["Name"] for x in c("cognito-idp").list_user_pools(MaxResults=60)["UserPools"] if x["Name"].startswith(p)
        ],
        "ecr repositories": [
            r["repositoryName"]
            for r in c("ecr").describe_repositories()["repositories"]
            if r["repositoryName"].startswith(p)
        ],
        "log groups": [
            g["logGroupName"]
            for prefix in (f"/ecs/{p}", f"/aws/lambda/{p}")
            for g in c("logs").describe_log_groups(logGroupNamePrefix=prefix)["logGroups"]
        ],
        "namespaces": [
            n["Name"] for n in c("servicediscovery").list_namespaces()["Namespaces"] if n["Name"].startswith(p)
        ],
        "vpcs": [v["VpcId"] for v in c("ec2").describe_vpcs(Filters=[{"Name": "tag:Project", "Values": [p]}])["Vpcs"]],
        "security groups": [
            g["GroupName"]
            for g in c("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{p}-*"]}])[
                "SecurityGroups"
            ]
        ],
    }
    assert {k: v for k, v in left.items() if v} == {}
    # The API keys and the roles' passwords are scheduled for deletion in 7 days
    # (secret_recovery_window_days): restorable until then.
    scheduled = {
        s["Name"].removeprefix(p + "/"): s["DeletedDate"]
        for s in c("secretsmanager").list_secrets(IncludePlannedDeletion=True)["SecretList"]
        if s["Name"].startswith(p + "/")
    }
    assert set(scheduled) == {"openai-api-key", "pinecone-api-key", "metabase-api-key", "notify-secret",
                              "db-storage-password", "db-vectors-password"}  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    for name, when in scheduled.items():
        assert datetime.timedelta(days=6, hours=23) < when - now <= datetime.timedelta(days=7), (name, when)
    state = json.loads(deployment.tf("show", "-json").stdout)
    assert not state.get("values", {}).get("root_module", {}).get("resources")
