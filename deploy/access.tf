# Who gets which secret, and which tasks may reach the internet: each container only what its
# code reads, the internet only where the configuration names an external API (deploy/README.md,
# "Secrets per container" and "Egress"). Derived from variables only, so that every decision is
# known at plan time.

locals {
  # What the configuration names. extra_environment overrides the contract's values (ecs.tf).
  index_uri_override    = lookup(var.extra_environment, "RAG_INDEX_URI", "")
  cache_uri_override    = lookup(var.extra_environment, "RAG_EMBEDDING_CACHE_URI", "")
  analyses_uri_override = lookup(var.extra_environment, "RAG_ANALYSES_URI", "")
  postgres_schemes      = ["postgresql://", "postgres://"]

  index_named       = anytrue([for s in local.postgres_schemes : startswith(local.index_uri_override, s)])
  index_in_postgres = local.index_uri_override == "" || local.index_named
  index_in_pinecone = startswith(local.index_uri_override, "pinecone://")
  cache_named       = anytrue([for s in local.postgres_schemes : startswith(local.cache_uri_override, s)])
  cache_in_postgres = local.cache_uri_override == "" || local.cache_named
  # Image analyses live beside the vectors when those are in PostgreSQL (rag_assets/settings.py).
  analyses_named       = anytrue([for s in local.postgres_schemes : startswith(local.analyses_uri_override, s)])
  analyses_in_postgres = local.analyses_uri_override == "" ? local.index_in_postgres : local.analyses_named

  embeds_with_openai   = startswith(var.embedder, "openai:")
  analyzes_with_openai = startswith(lookup(var.extra_environment, "RAG_IMAGE_ANALYZER", ""), "openai:")
  uses_openai          = local.embeds_with_openai || local.analyzes_with_openai
  uses_metabase        = var.metabase_url != ""
  notify               = lookup(var.extra_environment, "RAG_NOTIFY", "")
  uses_notify          = !contains(["", "none"], local.notify)
  # webhook:URL signs with the secret; ws://HOST:PORT (the hub) derives tenants' tokens from it;
  # apigateway:... does not use it (rag_assets/resources/notifiers.py).
  notify_signs = anytrue([for s in ["webhook:", "ws://", "wss://"] : startswith(local.notify, s)])
  notify_url   = trimprefix(trimprefix(local.notify, "webhook:"), "apigateway:")

  # The TCP port of a URL: its own, else its scheme's (https, wss: 443; http, ws: 80).
  urls = {
    openai   = lookup(var.extra_environment, "OPENAI_BASE_URL", "https://api.openai.com/v1")
    metabase = var.metabase_url
    notify   = local.notify_url
  }
  url_ports = {
    for k, url in local.urls : k => try(
      tonumber(regex("^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*:([0-9]+)(?:[/?#]|$)", url)[0]),
      anytrue([for s in ["https://", "wss://"] : startswith(lower(url), s)]) ? 443 : 80,
    )
  }

  # ---- secrets: environment variable -> Secrets Manager secret (valueFrom) ------------------
  secret_value_from = {
    DAGSTER_PG_PASSWORD = aws_secretsmanager_secret.db_roles["storage"].arn # Dagster's storage role
    PGPASSWORD          = aws_secretsmanager_secret.db_roles["vectors"].arn # the vector rows' role (libpq)
    OPENAI_API_KEY      = aws_secretsmanager_secret.api_keys["OPENAI_API_KEY"].arn
    PINECONE_API_KEY    = aws_secretsmanager_secret.api_keys["PINECONE_API_KEY"].arn
    METABASE_API_KEY    = aws_secretsmanager_secret.api_keys["METABASE_API_KEY"].arn
    RAG_NOTIFY_SECRET   = aws_secretsmanager_secret.api_keys["RAG_NOTIFY_SECRET"].arn
  }

  # Which process reads which secret (the table in deploy/README.md says why).
  container_secret_names = {
    # The UI and GraphQL: Dagster's storage only. Sensors and assets never run here.
    webserver = ["DAGSTER_PG_PASSWORD"]
    # Schedules, sensors' ticks, the run queue and the run launcher: Dagster's storage only
    # (sensors are evaluated by the code location, which the daemon calls over gRPC).
    daemon = ["DAGSTER_PG_PASSWORD"]
    # Sensors run here: the instance (from the daemon's instance ref), the index they compare
    # with the source, the notifier.
    code-location = compact([
      "DAGSTER_PG_PASSWORD",
      local.index_in_postgres ? "PGPASSWORD" : "",
      local.index_in_pinecone ? "PINECONE_API_KEY" : "",
      local.uses_notify && local.notify_signs ? "RAG_NOTIFY_SECRET" : "",
    ])
    # The assets: the index, the embedding cache and analyses, the embedder, Metabase.
    run = compact([
      "DAGSTER_PG_PASSWORD",
      local.index_in_postgres || local.cache_in_postgres || local.analyses_in_postgres ? "PGPASSWORD" : "",
      local.uses_openai ? "OPENAI_API_KEY" : "",
      local.index_in_pinecone ? "PINECONE_API_KEY" : "",
      local.uses_metabase ? "METABASE_API_KEY" : "",
    ])
  }
  container_secrets = {
    for c, names in local.container_secret_names :
    c => [for n in sort(names) : { name = n, valueFrom = local.secret_value_from[n] }]
  }

  # The one-off task that creates the database roles (deploy/db-roles.sql): the master
  # password and the two roles' passwords, nothing else.
  db_setup_secrets = [
    { name = "PGPASSWORD", valueFrom = "${local.db_secret_arn}:password::" },
    { name = "RAG_DB_STORAGE_PASSWORD", valueFrom = aws_secretsmanager_secret.db_roles["storage"].arn },
    { name = "RAG_DB_VECTORS_PASSWORD", valueFrom = aws_secretsmanager_secret.db_roles["vectors"].arn },
  ]

  # What the execution role may read: exactly the secrets the task definitions name.
  referenced_secret_arns = sort(distinct(flatten([
    [for c, secrets in local.container_secrets : [for s in secrets : s.valueFrom]],
    [for s in local.db_setup_secrets : trimsuffix(s.valueFrom, ":password::")],
  ])))

  # ---- internet egress: TCP ports to 0.0.0.0/0 (through the NAT) per service ----------------
  internet_ports = {
    webserver = []
    daemon    = []
    code-location = concat(
      local.index_in_pinecone ? [443] : [],
      local.uses_notify ? [local.url_ports.notify] : [],
    )
    run = concat(
      local.uses_openai ? [local.url_ports.openai] : [],
      local.index_in_pinecone ? [443] : [],
      local.uses_metabase ? [local.url_ports.metabase] : [],
    )
  }
  internet_ports_granted = {
    for service, ports in local.internet_ports :
    service => distinct(concat(ports, contains(var.extra_internet_egress, service) ? [443] : []))
  }
  internet_egress = merge([
    for service, ports in local.internet_ports_granted : {
      for port in ports : "${service}:${port}" => { service = service, port = port }
    }
  ]...)
}
