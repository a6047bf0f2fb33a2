# The API keys, as Secrets Manager secrets whose values the operator puts afterwards
# (`aws secretsmanager put-secret-value`, deploy/README.md): the values never pass through
# Terraform or its state. The database password is the RDS-managed secret (database.tf).

locals {
  api_keys = {
    OPENAI_API_KEY   = "openai-api-key"
    PINECONE_API_KEY = "pinecone-api-key"
    METABASE_API_KEY = "metabase-api-key"
    # Signs webhook notifications and derives the hub's tenant tokens (RAG_NOTIFY).
    RAG_NOTIFY_SECRET = "notify-secret"
  }
}

resource "aws_secretsmanager_secret" "api_keys" {
  for_each                = local.api_keys
  name                    = "${var.name}/${each.value}"
  description             = "${each.key} of rag_assets (value put by the operator)"
  recovery_window_in_days = var.secret_recovery_window_days
}

locals {
  openai_secret_arn = aws_secretsmanager_secret.api_keys["OPENAI_API_KEY"].arn
  # The secrets of the four Dagster containers: name in the container -> valueFrom.
  task_secrets = merge(
    { for env, _ in local.api_keys : env => aws_secretsmanager_secret.api_keys[env].arn },
    {
      DAGSTER_PG_PASSWORD = "${local.db_secret_arn}:password::"
      PGPASSWORD          = "${local.db_secret_arn}:password::"
    },
  )
  # What the execution role may read: exactly the secrets above.
  task_secret_arns = concat([for env, _ in local.api_keys : aws_secretsmanager_secret.api_keys[env].arn], [local.db_secret_arn])
}
