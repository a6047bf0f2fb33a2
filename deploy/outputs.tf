output "ui_url" {
  description = "The Dagster UI (Cognito sign-in)."
  value       = "https://${local.ui_host}/"
}

output "graphql_url" {
  description = "Dagster GraphQL (401 without a signed-in session cookie)."
  value       = "https://${local.ui_host}/graphql"
}

output "load_balancer_dns_name" {
  description = "Point domain_name's DNS record (CNAME or alias) here."
  value       = aws_lb.main.dns_name
}

output "queue_url" {
  value = aws_sqs_queue.events.url
}

output "dlq_url" {
  value = aws_sqs_queue.events_dlq.url
}

output "document_bucket" {
  value = aws_s3_bucket.documents.bucket
}

output "work_bucket" {
  value = aws_s3_bucket.work.bucket
}

output "dagster_image_repository_url" {
  value = aws_ecr_repository.dagster.repository_url
}

output "lambda_image_repository_url" {
  value = aws_ecr_repository.lambda.repository_url
}

output "embed_function_name" {
  value = aws_lambda_function.embed.function_name
}

output "rds_endpoint" {
  value = aws_db_instance.main.endpoint
}

output "rds_address" {
  value = aws_db_instance.main.address
}

output "log_bucket" {
  description = "The load balancer's access logs (alb/AWSLogs/<account id>/...)."
  value       = aws_s3_bucket.logs.bucket
}

output "db_password_secret_arn" {
  description = "The RDS-managed secret of the master user (JSON: username, password); only the db-setup task reads it."
  value       = local.db_secret_arn
}

output "db_role_secret_arns" {
  description = "Passwords of the database roles (deploy/db-roles.sql, values put by the operator): storage, vectors."
  value       = { for k, _ in local.db_roles : k => aws_secretsmanager_secret.db_roles[k].arn }
}

output "container_secrets" {
  description = "The secrets each container gets (access.tf; deploy/README.md says why)."
  value       = { for c, names in local.container_secret_names : c => sort(names) }
}

output "internet_egress" {
  description = "Services whose tasks may reach the internet, and on which ports (access.tf)."
  value       = local.internet_ports_granted
}

output "api_key_secret_arns" {
  description = "Secrets whose values the operator puts (aws secretsmanager put-secret-value)."
  value       = { for env, _ in local.api_keys : env => aws_secretsmanager_secret.api_keys[env].arn }
}

output "cognito_user_pool_id" {
  value = aws_cognito_user_pool.main.id
}

output "cluster_name" {
  value = aws_ecs_cluster.main.name
}

output "run_task_definition_family" {
  value = aws_ecs_task_definition.run.family
}

output "db_setup_task_definition_family" {
  description = "The one-off task creating the database roles (deploy/db-roles.sql)."
  value       = aws_ecs_task_definition.db_setup.family
}

output "db_setup_network_configuration" {
  description = "--network-configuration of the db-setup task (aws ecs run-task)."
  value = jsonencode({
    awsvpcConfiguration = {
      subnets        = aws_subnet.private[*].id
      securityGroups = [aws_security_group.db_setup.id]
      assignPublicIp = "DISABLED"
    }
  })
}

output "run_task_network_configuration" {
  description = "--network-configuration of a one-off run task (aws ecs run-task)."
  value = jsonencode({
    awsvpcConfiguration = {
      subnets        = aws_subnet.private[*].id
      securityGroups = [aws_security_group.run.id]
      assignPublicIp = "DISABLED"
    }
  })
}
