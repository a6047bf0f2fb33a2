# The embed step's Lambda (Dagster Pipes, rag_assets.frontends.pipes_embed.lambda_handler), invoked by
# run tasks when RAG_EMBED_ON=lambda:<name>. No VPC: it reads and writes the work bucket and
# calls OpenAI; its OpenAI key (an OpenAI embedder only) is read from Secrets Manager at cold
# start (*_SECRET_ARN).

locals {
  embed_function_name = "${var.name}-embed"
}

resource "aws_cloudwatch_log_group" "embed" {
  name              = "/aws/lambda/${local.embed_function_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "embed" {
  function_name                  = local.embed_function_name
  description                    = "rag_assets embed step (Dagster Pipes)"
  role                           = aws_iam_role.embed.arn
  package_type                   = "Image"
  image_uri                      = local.lambda_image
  timeout                        = 900
  memory_size                    = var.lambda_memory
  reserved_concurrent_executions = var.lambda_reserved_concurrency
  architectures                  = ["x86_64"]

  image_config {
    command = ["rag_assets.frontends.pipes_embed.lambda_handler"]
  }

  ephemeral_storage {
    size = var.lambda_ephemeral_storage
  }

  environment {
    variables = merge(
      {
        RAG_EMBEDDER    = var.embedder
        RAG_MODEL_CACHE = "/tmp/models"
        HF_HUB_OFFLINE  = "1"
      },
      # The OpenAI key only for an OpenAI embedder (access.tf): a local model needs no secret.
      local.embeds_with_openai ? { OPENAI_API_KEY_SECRET_ARN = local.openai_secret_arn } : {},
    )
  }

  depends_on = [aws_cloudwatch_log_group.embed, aws_iam_role_policy.embed, aws_ecr_repository_policy.lambda]
}
