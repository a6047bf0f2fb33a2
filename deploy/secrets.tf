# Secrets Manager secrets whose values the operator puts afterwards (`aws secretsmanager
# put-secret-value`, deploy/README.md): the values never pass through Terraform or its state.
# The master password is the RDS-managed secret (database.tf); which container reads which
# secret is decided in access.tf. A destroyed secret can be restored for
# secret_recovery_window_days (7 at least).

locals {
  api_keys = {
    OPENAI_API_KEY   = "openai-api-key"
    PINECONE_API_KEY = "pinecone-api-key"
    METABASE_API_KEY = "metabase-api-key"
    # Signs webhook notifications and derives the hub's tenant tokens (RAG_NOTIFY).
    RAG_NOTIFY_SECRET = "notify-secret"
  }
  # The passwords of the two database roles (deploy/db-roles.sql).
  db_roles = {
    storage = { secret = "db-storage-password", role = var.db_storage_username, database = "dagster" }
    vectors = { secret = "db-vectors-password", role = var.db_vectors_username, database = "rag" }
  }
}

resource "aws_secretsmanager_secret" "api_keys" {
  for_each                = local.api_keys
  name                    = "${var.name}/${each.value}"
  description             = "${each.key} of rag_assets (value put by the operator)"
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret" "db_roles" {
  for_each                = local.db_roles
  name                    = "${var.name}/${each.value.secret}"
  description             = "Password of database role ${each.value.role} (value put by the operator)"
  recovery_window_in_days = var.secret_recovery_window_days
}

locals {
  openai_secret_arn = aws_secretsmanager_secret.api_keys["OPENAI_API_KEY"].arn
}
