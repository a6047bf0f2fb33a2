# ---- naming and placement ----------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name (buckets get the account id appended unless named)."
  type        = string
  default     = "rag-assets"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name))
    error_message = "name: lower-case letters, digits and dashes, 2-20 characters, starting with a letter (load balancer names are 32 at most)."
  }
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; two public and two private /20 subnets are cut from it."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Two AZs for the subnets; empty: the region's first two."
  type        = list(string)
  default     = []
}

variable "alb_ingress_cidrs" {
  description = "Who may reach the load balancer (80 redirects, 443 requires Cognito sign-in)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "extra_internet_egress" {
  description = "Services whose tasks may reach the internet (HTTPS) whatever is configured (deploy/README.md, Egress)."
  type        = list(string)
  default     = []

  validation {
    condition     = length(setsubtract(var.extra_internet_egress, ["webserver", "daemon", "code-location", "run"])) == 0
    error_message = "extra_internet_egress: a list of webserver, daemon, code-location, run."
  }
}

# ---- buckets and queue -------------------------------------------------------------------

variable "document_bucket_name" {
  description = "Bucket the documents are dropped into; null: <name>-documents-<account id>."
  type        = string
  default     = null
}

variable "work_bucket_name" {
  description = "Bucket of intermediates, compute logs and Pipes messages; null: <name>-work-<account id>."
  type        = string
  default     = null
}

variable "log_bucket_name" {
  description = "Bucket of the load balancer's access logs; null: <name>-logs-<account id>."
  type        = string
  default     = null
}

variable "access_log_expiry_days" {
  description = "Days after which the load balancer's access logs expire."
  type        = number
  default     = 90
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete non-empty buckets and ECR repositories (tests; never in production)."
  type        = bool
  default     = false
}

variable "pipes_expiry_days" {
  description = "Days after which Pipes messages under work/_pipes/ expire."
  type        = number
  default     = 3
}

variable "queue_visibility_timeout_seconds" {
  description = "Visibility timeout of the events queue (the sensor deletes a message once its run is requested)."
  type        = number
  default     = 300
}

variable "queue_max_receive_count" {
  description = "Receives of an event before it moves to the dead-letter queue."
  type        = number
  default     = 5
}

# ---- images ------------------------------------------------------------------------------

variable "image_repository" {
  description = "Repository URI of the Dagster image (deploy/Dockerfile); null: this stack's ECR repository."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "Tag of the Dagster image (webserver, daemon, code location, runs)."
  type        = string
}

variable "lambda_image_repository" {
  description = "Repository URI of the Lambda image (deploy/Dockerfile.lambda); null: this stack's ECR repository."
  type        = string
  default     = null
}

variable "lambda_image_tag" {
  description = "Tag of the Lambda image."
  type        = string
}

# ---- Dagster / rag_assets settings (the environment of the tasks) -------------------------

variable "embedder" {
  description = "RAG_EMBEDDER of the tasks and the Lambda."
  type        = string
  default     = "local:all-MiniLM-L6-v2"
}

variable "executor" {
  description = "RAG_EXECUTOR: in_process (steps in the run task) or ecs (a task per step)."
  type        = string
  default     = "in_process"

  validation {
    condition     = contains(["in_process", "ecs"], var.executor)
    error_message = "executor must be \"in_process\" or \"ecs\"."
  }
}

variable "metabase_url" {
  description = "METABASE_URL of the tasks (empty: no Metabase)."
  type        = string
  default     = ""
}

variable "extra_environment" {
  description = "More environment for the four Dagster containers (e.g. RAG_NOTIFY); it decides secrets and egress too."
  type        = map(string)
  default     = {}
}

# ---- sizes -------------------------------------------------------------------------------

variable "service_desired_count" {
  description = "Tasks of the webserver and code location services (the daemon is 0 or 1). 0 for the first apply, before the secrets and databases exist."
  type        = number
  default     = 1
}

variable "webserver_cpu" {
  type    = number
  default = 1024
}

variable "webserver_memory" {
  type    = number
  default = 2048
}

variable "daemon_cpu" {
  type    = number
  default = 512
}

variable "daemon_memory" {
  type    = number
  default = 1024
}

variable "code_location_cpu" {
  type    = number
  default = 1024
}

variable "code_location_memory" {
  type    = number
  default = 4096
}

variable "run_cpu" {
  type    = number
  default = 2048
}

variable "run_memory" {
  type    = number
  default = 8192
}

variable "run_ephemeral_storage_gib" {
  description = "Fargate ephemeral storage of run tasks (RAG_WORK_DIR=/tmp/rag), 21-200."
  type        = number
  default     = 40
}

variable "lambda_memory" {
  description = "Memory (MB) of the embed Lambda."
  type        = number
  default     = 3008
}

variable "lambda_ephemeral_storage" {
  description = "/tmp (MB) of the embed Lambda (RAG_MODEL_CACHE=/tmp/models)."
  type        = number
  default     = 2048
}

variable "lambda_reserved_concurrency" {
  description = "Reserved concurrency of the embed Lambda; -1: none (account pool)."
  type        = number
  default     = -1
}

variable "log_retention_days" {
  type    = number
  default = 30
}

# ---- database ----------------------------------------------------------------------------

variable "db_engine_version" {
  description = "PostgreSQL major version (15 or 16) of the RDS instance."
  type        = string
  default     = "16"

  validation {
    condition     = can(regex("^1[56](\\.[0-9]+)?$", var.db_engine_version))
    error_message = "db_engine_version: PostgreSQL 15 or 16."
  }
}

variable "db_instance_class" {
  type    = string
  default = "db.t4g.medium"
}

variable "db_allocated_storage" {
  description = "GiB."
  type        = number
  default     = 50
}

variable "db_username" {
  description = "Master user of the RDS instance (its password: an RDS-managed secret); only the db-setup task uses it."
  type        = string
  default     = "rag"
}

variable "db_storage_username" {
  description = "Role owning Dagster's storage (runs, events, schedules) in database dagster (deploy/db-roles.sql)."
  type        = string
  default     = "dagster_storage"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.db_storage_username))
    error_message = "db_storage_username: lower-case letters, digits and underscores, not starting with a digit."
  }
}

variable "db_vectors_username" {
  description = "Role owning the vector rows, embedding cache and image analyses in database rag (deploy/db-roles.sql)."
  type        = string
  default     = "rag_vectors"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.db_vectors_username))
    error_message = "db_vectors_username: lower-case letters, digits and underscores, not starting with a digit."
  }
  validation {
    condition     = length(toset([var.db_username, var.db_storage_username, var.db_vectors_username])) == 3
    error_message = "db_username, db_storage_username and db_vectors_username must be three different roles."
  }
}

variable "db_multi_az" {
  type    = bool
  default = false
}

variable "db_deletion_protection" {
  type    = bool
  default = true
}

variable "db_skip_final_snapshot" {
  description = "Destroy without a final snapshot (tests)."
  type        = bool
  default     = false
}

variable "secret_recovery_window_days" {
  description = "Days a destroyed secret (API keys, database roles' passwords) can still be restored; 7-30."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30
    error_message = "secret_recovery_window_days: 7 to 30 (0, deletion without recovery, is not offered)."
  }
}

# ---- sign-in -----------------------------------------------------------------------------

variable "certificate_arn" {
  description = "ACM certificate of the HTTPS listener (covering domain_name)."
  type        = string
}

variable "domain_name" {
  description = "Host name of the UI (a DNS record pointing at the load balancer, covered by the certificate); null: the load balancer's own DNS name."
  type        = string
  default     = null
}

variable "cognito_domain_prefix" {
  description = "Prefix of the Cognito hosted sign-in domain (<prefix>.auth.<region>.amazoncognito.com); null: <name>-<account id>."
  type        = string
  default     = null
}

variable "cognito_mfa" {
  description = "Cognito MFA (authenticator app, TOTP): ON (every user) or OPTIONAL (each user chooses)."
  type        = string
  default     = "ON"

  validation {
    condition     = contains(["ON", "OPTIONAL"], var.cognito_mfa)
    error_message = "cognito_mfa must be \"ON\" or \"OPTIONAL\"."
  }
}

variable "session_timeout_seconds" {
  description = "How long a signed-in session (ALB cookie) lasts."
  type        = number
  default     = 43200
}
