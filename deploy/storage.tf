# The document bucket (its events to the queue), the work bucket, the load balancer's log
# bucket, the events queue and its dead-letter queue. Every bucket: public access blocked,
# encrypted, and a policy refusing any request not made over TLS.

locals {
  document_bucket = coalesce(var.document_bucket_name, "${var.name}-documents-${local.account_id}")
  work_bucket     = coalesce(var.work_bucket_name, "${var.name}-work-${local.account_id}")
  log_bucket      = coalesce(var.log_bucket_name, "${var.name}-logs-${local.account_id}")
  # Named rather than read from the queue, so that the policies granting it stay known in a
  # plan that updates the queue.
  events_queue_name = "${var.name}-events"
  events_queue_arn  = "arn:${local.partition}:sqs:${local.region}:${local.account_id}:${local.events_queue_name}"
}

# ---- documents ----------------------------------------------------------------------------

resource "aws_s3_bucket" "documents" {
  bucket        = local.document_bucket
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_versioning" "documents" {
  bucket = aws_s3_bucket.documents.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_public_access_block" "documents" {
  bucket                  = aws_s3_bucket.documents.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "documents" {
  bucket = aws_s3_bucket.documents.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_notification" "documents" {
  bucket = aws_s3_bucket.documents.id
  queue {
    id        = "rag-assets-events"
    queue_arn = aws_sqs_queue.events.arn
    events    = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
  }
  depends_on = [aws_sqs_queue_policy.events]
}

# ---- work: intermediates (work/), compute logs (compute-logs/), Pipes messages (work/_pipes/)

resource "aws_s3_bucket" "work" {
  bucket        = local.work_bucket
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_public_access_block" "work" {
  bucket                  = aws_s3_bucket.work.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "work" {
  bucket = aws_s3_bucket.work.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "work" {
  bucket = aws_s3_bucket.work.id
  rule {
    id     = "expire-pipes-messages"
    status = "Enabled"
    filter {
      prefix = "work/_pipes/"
    }
    expiration {
      days = var.pipes_expiry_days
    }
  }
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {
      prefix = ""
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
  }
}

# ---- logs: the load balancer's access logs (alb/AWSLogs/<account>/...) ---------------------

resource "aws_s3_bucket" "logs" {
  bucket        = local.log_bucket
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Load balancer access logs support SSE-S3 only.
resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {
      prefix = ""
    }
    expiration {
      days = var.access_log_expiry_days
    }
  }
}

# ---- bucket policies: TLS only; the log bucket also admits the load balancer's log delivery --

locals {
  alb_log_prefix = "alb"
  buckets = {
    documents = aws_s3_bucket.documents
    work      = aws_s3_bucket.work
    logs      = aws_s3_bucket.logs
  }
  # Regions opened before August 2022 deliver load balancer logs as an Elastic Load Balancing
  # account of the region; later ones as the service logdelivery.elasticloadbalancing.amazonaws.com.
  elb_account_regions = [
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ap-east-1", "ap-south-1",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2",
    "ca-central-1", "eu-central-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-south-1", "eu-north-1",
    "me-south-1", "sa-east-1", "us-gov-west-1", "us-gov-east-1", "cn-north-1", "cn-northwest-1",
  ]
}

data "aws_elb_service_account" "main" {
  count = contains(local.elb_account_regions, local.region) ? 1 : 0
}

data "aws_iam_policy_document" "bucket" {
  for_each = local.buckets
  statement {
    sid       = "DenyPlainHttp"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value.arn, "${each.value.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
  dynamic "statement" {
    for_each = each.key == "logs" ? [1] : []
    content {
      sid       = "LoadBalancerAccessLogs"
      actions   = ["s3:PutObject"]
      resources = ["${each.value.arn}/${local.alb_log_prefix}/AWSLogs/${local.account_id}/*"]
      principals {
        type        = "Service"
        identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
      }
      dynamic "principals" {
        for_each = data.aws_elb_service_account.main
        content {
          type        = "AWS"
          identifiers = [principals.value.arn]
        }
      }
    }
  }
}

resource "aws_s3_bucket_policy" "buckets" {
  for_each = local.buckets
  bucket   = each.value.id
  policy   = data.aws_iam_policy_document.bucket[each.key].json
  # A policy is put once the bucket refuses public ones.
  depends_on = [
    aws_s3_bucket_public_access_block.documents,
    aws_s3_bucket_public_access_block.work,
    aws_s3_bucket_public_access_block.logs,
  ]
}

# ---- queue --------------------------------------------------------------------------------

resource "aws_sqs_queue" "events_dlq" {
  name                      = "${var.name}-events-dlq"
  message_retention_seconds = 1209600 # 14 days, the most SQS keeps
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "events" {
  name                       = local.events_queue_name
  visibility_timeout_seconds = var.queue_visibility_timeout_seconds
  message_retention_seconds  = 1209600
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.events_dlq.arn
    maxReceiveCount     = var.queue_max_receive_count
  })
}

# Only the document bucket (of this account) may send to the queue.
resource "aws_sqs_queue_policy" "events" {
  queue_url = aws_sqs_queue.events.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DocumentBucketEvents"
      Effect    = "Allow"
      Principal = { Service = "s3.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.events.arn
      Condition = {
        ArnEquals    = { "aws:SourceArn" = aws_s3_bucket.documents.arn }
        StringEquals = { "aws:SourceAccount" = local.account_id }
      }
    }]
  })
}
