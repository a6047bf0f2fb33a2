# The ECS cluster (Fargate): services for the webserver, the daemon and the code location
# (found through Cloud Map), the run task definition that the daemon's EcsRunLauncher
# (deploy/dagster.yaml) launches, one task per run (and per step with RAG_EXECUTOR=ecs), and
# the one-off db-setup task (deploy/db-roles.sql). Each container's secrets: access.tf.

resource "aws_ecs_cluster" "main" {
  name = local.cluster_name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE"]
}

resource "aws_cloudwatch_log_group" "ecs" {
  for_each          = toset(["webserver", "daemon", "code-location", "run", "db-setup"])
  name              = "/ecs/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
}

# ---- Cloud Map: code-location.<name>.internal -> the code location's tasks ----------------

resource "aws_service_discovery_private_dns_namespace" "main" {
  name        = "${var.name}.internal"
  description = "rag_assets services"
  vpc         = aws_vpc.main.id
}

resource "aws_service_discovery_service" "code_location" {
  name = "code-location"
  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.main.id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "A"
      ttl  = 10
    }
  }
  health_check_custom_config {
    failure_threshold = 1
  }
  force_destroy = true
}

# ---- the containers' environment: the contract with rag_assets (deploy/README.md) ---------

locals {
  code_location_host = "code-location.${var.name}.internal"

  dagster_environment = merge({
    AWS_REGION                  = local.region
    AWS_DEFAULT_REGION          = local.region
    DAGSTER_HOME                = "/opt/dagster/dagster_home"
    DAGSTER_PG_HOST             = local.db_address
    DAGSTER_PG_PORT             = "5432"
    DAGSTER_PG_DB               = local.db_roles.storage.database
    DAGSTER_PG_USERNAME         = var.db_storage_username
    DAGSTER_RUN_TASK_DEFINITION = local.run_family # the family: its latest ACTIVE revision
    DAGSTER_COMPUTE_LOG_BUCKET  = aws_s3_bucket.work.bucket
    DAGSTER_CODE_LOCATION_HOST  = local.code_location_host # deploy/workspace.yaml
    RAG_SOURCE_URI              = "s3://${aws_s3_bucket.documents.bucket}/"
    RAG_SQS_QUEUE_URL           = aws_sqs_queue.events.url
    RAG_INDEX_URI               = local.rag_db_uri
    RAG_EMBEDDING_CACHE_URI     = local.rag_db_uri
    RAG_WORK_URI                = "s3://${aws_s3_bucket.work.bucket}/work"
    RAG_WORK_DIR                = "/tmp/rag"
    RAG_EMBEDDER                = var.embedder
    RAG_EMBED_ON                = "lambda:${aws_lambda_function.embed.function_name}"
    RAG_EXECUTOR                = var.executor
    # For RAG_EMBED_ON=ecs:<name>-run (through extra_environment): where those tasks run.
    RAG_ECS_CLUSTER         = local.cluster_name
    RAG_ECS_SUBNETS         = join(",", aws_subnet.private[*].id)
    RAG_ECS_SECURITY_GROUPS = aws_security_group.run.id
    METABASE_URL            = var.metabase_url
  }, var.extra_environment)

  environment_list = [for k in sort(keys(local.dagster_environment)) : { name = k, value = local.dagster_environment[k] }]

  workspace = "/opt/dagster/app/deploy/workspace.yaml"

  containers = {
    webserver = {
      command = ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", local.workspace]
      port    = 3000
      health  = null
    }
    daemon = {
      command = ["dagster-daemon", "run", "-w", local.workspace]
      port    = null
      health  = null
    }
    code-location = {
      command = ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "rag_assets.definitions", "--location-name", "rag_assets"]
      port    = 4000
      health = {
        command     = ["CMD", "dagster", "api", "grpc-health-check", "-p", "4000"]
        interval    = 30
        timeout     = 10
        retries     = 3
        startPeriod = 120
      }
    }
  }

  sizes = {
    webserver     = { cpu = var.webserver_cpu, memory = var.webserver_memory }
    daemon        = { cpu = var.daemon_cpu, memory = var.daemon_memory }
    code-location = { cpu = var.code_location_cpu, memory = var.code_location_memory }
  }

  task_roles = {
    webserver     = aws_iam_role.webserver.arn
    daemon        = aws_iam_role.daemon.arn
    code-location = aws_iam_role.code_location.arn
  }
}

resource "aws_ecs_task_definition" "service" {
  for_each                 = local.containers
  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = local.sizes[each.key].cpu
  memory                   = local.sizes[each.key].memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = local.task_roles[each.key]
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  container_definitions = jsonencode([merge(
    {
      name         = each.key
      image        = local.dagster_image
      essential    = true
      command      = each.value.command
      environment  = local.environment_list
      secrets      = local.container_secrets[each.key]
      portMappings = each.value.port == null ? [] : [{ containerPort = each.value.port, protocol = "tcp" }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.ecs[each.key].name
          awslogs-region        = local.region
          awslogs-stream-prefix = each.key
        }
      }
    },
    each.value.health == null ? {} : { healthCheck = each.value.health },
  )])
}

# The run task definition: not a service. Its container must be named "run"
# (deploy/dagster.yaml); EcsRunLauncher gives it the command of each run.
resource "aws_ecs_task_definition" "run" {
  family                   = local.run_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.run_cpu
  memory                   = var.run_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.run.arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  ephemeral_storage {
    size_in_gib = var.run_ephemeral_storage_gib
  }
  container_definitions = jsonencode([{
    name        = "run"
    image       = local.dagster_image
    essential   = true
    environment = local.environment_list
    secrets     = local.container_secrets["run"]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.ecs["run"].name
        awslogs-region        = local.region
        awslogs-stream-prefix = "run"
      }
    }
  }])
}

# The database roles (deploy/db-roles.sql), run once by the operator (aws ecs run-task,
# deploy/README.md) and again after a role's password changes: psql as the master user, the
# only task that gets its password. No task role: it calls no AWS API.
resource "aws_ecs_task_definition" "db_setup" {
  family                   = "${var.name}-db-setup"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  container_definitions = jsonencode([{
    name      = "db-setup"
    image     = local.dagster_image
    essential = true
    command   = ["psql", "--no-psqlrc", "--set=ON_ERROR_STOP=1", "--file=/opt/dagster/app/deploy/db-roles.sql"]
    environment = [for k, v in {
      PGHOST                  = local.db_address
      PGPORT                  = "5432"
      PGDATABASE              = local.db_roles.vectors.database # RDS made it (db_name)
      PGUSER                  = var.db_username
      PGSSLMODE               = "require"
      PGCONNECT_TIMEOUT       = "20"
      RAG_DB_STORAGE_ROLE     = local.db_roles.storage.role
      RAG_DB_STORAGE_DATABASE = local.db_roles.storage.database
      RAG_DB_VECTORS_ROLE     = local.db_roles.vectors.role
      RAG_DB_VECTORS_DATABASE = local.db_roles.vectors.database
    } : { name = k, value = v }]
    secrets = local.db_setup_secrets
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.ecs["db-setup"].name
        awslogs-region        = local.region
        awslogs-stream-prefix = "db-setup"
      }
    }
  }])
}

# ---- services -----------------------------------------------------------------------------

resource "aws_ecs_service" "code_location" {
  name                    = "${var.name}-code-location"
  cluster                 = aws_ecs_cluster.main.id
  task_definition         = aws_ecs_task_definition.service["code-location"].arn
  desired_count           = var.service_desired_count
  launch_type             = "FARGATE"
  propagate_tags          = "SERVICE"
  enable_ecs_managed_tags = true
  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.code_location.id]
    assign_public_ip = false
  }
  service_registries {
    registry_arn = aws_service_discovery_service.code_location.arn
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
}

resource "aws_ecs_service" "webserver" {
  name                              = "${var.name}-webserver"
  cluster                           = aws_ecs_cluster.main.id
  task_definition                   = aws_ecs_task_definition.service["webserver"].arn
  desired_count                     = var.service_desired_count
  launch_type                       = "FARGATE"
  propagate_tags                    = "SERVICE"
  enable_ecs_managed_tags           = true
  health_check_grace_period_seconds = 120
  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.webserver.id]
    assign_public_ip = false
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.webserver.arn
    container_name   = "webserver"
    container_port   = 3000
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  depends_on = [aws_lb_listener.https]
}

# Exactly one daemon (never two during a deployment: the old one stops first).
resource "aws_ecs_service" "daemon" {
  name                               = "${var.name}-daemon"
  cluster                            = aws_ecs_cluster.main.id
  task_definition                    = aws_ecs_task_definition.service["daemon"].arn
  desired_count                      = min(1, var.service_desired_count)
  launch_type                        = "FARGATE"
  propagate_tags                     = "SERVICE"
  enable_ecs_managed_tags            = true
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.daemon.id]
    assign_public_ip = false
  }
}
