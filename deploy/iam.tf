# One execution role (ECS: pull the image, write the logs, inject the secrets) and one task
# role per service, each with only what that process calls (the db-setup task has none).
# Resource "*" only where the action has no resource-level permissions:
# ecr:GetAuthorizationToken, ecs:DescribeTaskDefinition, ec2:DescribeNetworkInterfaces
# (deploy/README.md).

locals {
  cluster_name   = var.name
  run_family     = "${var.name}-run"
  cluster_arn    = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:cluster/${local.cluster_name}"
  cluster_tasks  = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${local.cluster_name}/*"
  run_task_defs  = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${local.run_family}:*"
  compute_logs   = "${aws_s3_bucket.work.arn}/compute-logs/*"
  work_objects   = "${aws_s3_bucket.work.arn}/work/*"
  passable_roles = [aws_iam_role.run.arn, aws_iam_role.execution.arn]

  # An image repository given by URI (<account>.dkr.ecr.<region>.amazonaws.com/<repo>) as an ARN.
  dagster_repo_match = try(regex("^([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com/(.+)$", var.image_repository), null)
  dagster_repo_arn   = local.dagster_repo_match == null ? aws_ecr_repository.dagster.arn : "arn:${local.partition}:ecr:${local.dagster_repo_match[1]}:${local.dagster_repo_match[0]}:repository/${local.dagster_repo_match[2]}"
}

data "aws_iam_policy_document" "ecs_tasks_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# ---- execution role -----------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  name               = "${var.name}-ecs-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # no resource-level permissions
  }
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [local.dagster_repo_arn]
  }
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for g in aws_cloudwatch_log_group.ecs : "${g.arn}:*"]
  }
  statement {
    sid       = "InjectSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.referenced_secret_arns # access.tf: exactly those the task definitions name
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# ---- webserver: read step logs, show and terminate runs ------------------------------------

resource "aws_iam_role" "webserver" {
  name               = "${var.name}-webserver"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

data "aws_iam_policy_document" "webserver" {
  statement {
    sid       = "ListComputeLogs"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.work.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["compute-logs/*"]
    }
  }
  statement {
    sid       = "ReadComputeLogs"
    actions   = ["s3:GetObject"]
    resources = [local.compute_logs]
  }
  statement {
    sid       = "RunTasks"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
    resources = [local.cluster_tasks]
  }
  statement {
    sid       = "RunTaskDefinition"
    actions   = ["ecs:DescribeTaskDefinition"]
    resources = ["*"] # no resource-level permissions
  }
}

resource "aws_iam_role_policy" "webserver" {
  name   = "webserver"
  role   = aws_iam_role.webserver.id
  policy = data.aws_iam_policy_document.webserver.json
}

# ---- daemon: launch, watch and stop run tasks; its step logs -------------------------------

resource "aws_iam_role" "daemon" {
  name               = "${var.name}-daemon"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

data "aws_iam_policy_document" "launch_runs" {
  statement {
    sid       = "RunTheRunTaskDefinition"
    actions   = ["ecs:RunTask"]
    resources = [local.run_task_defs]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }
  statement {
    sid       = "WatchAndStopTasks"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
    resources = [local.cluster_tasks]
  }
  statement {
    sid       = "TagLaunchedTasks"
    actions   = ["ecs:TagResource"]
    resources = [local.cluster_tasks]
    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask"]
    }
  }
  statement {
    sid       = "Unscopable"
    actions   = ["ecs:DescribeTaskDefinition", "ec2:DescribeNetworkInterfaces"]
    resources = ["*"] # no resource-level permissions
  }
  statement {
    sid       = "PassRunRoles"
    actions   = ["iam:PassRole"]
    resources = local.passable_roles
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "daemon" {
  source_policy_documents = [data.aws_iam_policy_document.launch_runs.json]
  statement {
    sid       = "ListComputeLogs"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.work.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["compute-logs/*"]
    }
  }
  statement {
    sid       = "ReadWriteComputeLogs"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = [local.compute_logs]
  }
}

resource "aws_iam_role_policy" "daemon" {
  name   = "daemon"
  role   = aws_iam_role.daemon.id
  policy = data.aws_iam_policy_document.daemon.json
}

# ---- code location: sensors read the queue and the documents -------------------------------

resource "aws_iam_role" "code_location" {
  name               = "${var.name}-code-location"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

data "aws_iam_policy_document" "code_location" {
  statement {
    sid       = "ConsumeEvents"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
    resources = [local.events_queue_arn]
  }
  statement {
    sid       = "ListDocuments"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.documents.arn]
  }
  statement {
    sid       = "ReadDocuments"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.documents.arn}/*"]
  }
  # Sensor ticks' logs (context.log) go to the compute log manager from the code server.
  statement {
    sid       = "WriteSensorLogs"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = [local.compute_logs]
  }
  statement {
    sid       = "RunTaskDefinition"
    actions   = ["ecs:DescribeTaskDefinition"]
    resources = ["*"] # no resource-level permissions
  }
}

resource "aws_iam_role_policy" "code_location" {
  name   = "code-location"
  role   = aws_iam_role.code_location.id
  policy = data.aws_iam_policy_document.code_location.json
}

# ---- run (and ECS step) tasks --------------------------------------------------------------

resource "aws_iam_role" "run" {
  name               = "${var.name}-run"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

data "aws_iam_policy_document" "run" {
  # RAG_EXECUTOR=ecs and ECS Pipes launch step tasks of the run task definition.
  source_policy_documents = [data.aws_iam_policy_document.launch_runs.json]
  statement {
    sid       = "ListDocuments"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.documents.arn]
  }
  statement {
    sid       = "ReadDocuments"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.documents.arn}/*"]
  }
  # Images' thumbnails go under the project's own prefix at the source's root,
  # .rag-thumbnails/{tenant}/... (docs/architecture.md, Images), and are purged with their image.
  statement {
    sid       = "WriteThumbnails"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.documents.arn}/.rag-thumbnails/*"]
  }
  statement {
    sid       = "ListWork"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.work.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["work/*", "compute-logs/*"]
    }
  }
  statement {
    sid       = "ReadWriteWork"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [local.work_objects, local.compute_logs]
  }
  statement {
    sid       = "InvokeEmbed"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.embed.arn, "${aws_lambda_function.embed.arn}:*"]
  }
  statement {
    sid       = "ReadStepTaskLogs"
    actions   = ["logs:GetLogEvents"]
    resources = ["${aws_cloudwatch_log_group.ecs["run"].arn}:*"]
  }
}

resource "aws_iam_role_policy" "run" {
  name   = "run"
  role   = aws_iam_role.run.id
  policy = data.aws_iam_policy_document.run.json
}

# ---- embed Lambda -------------------------------------------------------------------------

data "aws_iam_policy_document" "lambda_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "embed" {
  name               = "${var.name}-embed"
  assume_role_policy = data.aws_iam_policy_document.lambda_trust.json
}

data "aws_iam_policy_document" "embed" {
  # The texts to embed, the vectors beside them and the Pipes messages: all under
  # RAG_WORK_URI/_pipes/ (rag_assets/resources/remote_embedding.py).
  statement {
    sid       = "PipesExchange"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.work.arn}/work/_pipes/*"]
  }
  # The OpenAI key, read at a cold start (OPENAI_API_KEY_SECRET_ARN), only with an OpenAI embedder.
  dynamic "statement" {
    for_each = local.embeds_with_openai ? [local.openai_secret_arn] : []
    content {
      sid       = "OpenAIKey"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [statement.value]
    }
  }
  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.embed.arn}:*"]
  }
}

resource "aws_iam_role_policy" "embed" {
  name   = "embed"
  role   = aws_iam_role.embed.id
  policy = data.aws_iam_policy_document.embed.json
}
