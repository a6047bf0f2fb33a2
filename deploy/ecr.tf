# The two images: deploy/Dockerfile (webserver, daemon, code location, runs) and
# deploy/Dockerfile.lambda (the embed function).

resource "aws_ecr_repository" "dagster" {
  name                 = "${var.name}/dagster"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.force_destroy
  image_scanning_configuration {
    scan_on_push = true
  }
}

resource "aws_ecr_repository" "lambda" {
  name                 = "${var.name}/embed-lambda"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.force_destroy
  image_scanning_configuration {
    scan_on_push = true
  }
}

# Lambda pulls a container image with the repository's permission, not the function's role.
resource "aws_ecr_repository_policy" "lambda" {
  repository = aws_ecr_repository.lambda.name
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "LambdaPull"
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
      Condition = {
        StringLike = { "aws:sourceArn" = "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${local.embed_function_name}" }
      }
    }]
  })
}

locals {
  dagster_image = "${coalesce(var.image_repository, aws_ecr_repository.dagster.repository_url)}:${var.image_tag}"
  lambda_image  = "${coalesce(var.lambda_image_repository, aws_ecr_repository.lambda.repository_url)}:${var.lambda_image_tag}"
}
