# The UI and GraphQL behind an Application Load Balancer that requires a Cognito sign-in on
# every request: HTTP only redirects to HTTPS; HTTPS authenticates, then forwards. No
# listener or rule forwards without authenticating first.

locals {
  ui_host = coalesce(var.domain_name, aws_lb.main.dns_name)
}

resource "aws_lb" "main" {
  name                       = var.name
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = aws_subnet.public[*].id
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  idle_timeout               = 120
  access_logs {
    bucket  = aws_s3_bucket.logs.id
    prefix  = local.alb_log_prefix
    enabled = true
  }
  # The load balancer checks that it may write to the bucket when logging is enabled.
  depends_on = [aws_s3_bucket_policy.buckets]
}

resource "aws_lb_target_group" "webserver" {
  name                 = "${var.name}-web"
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = 3000
  vpc_id               = aws_vpc.main.id
  deregistration_delay = 30
  health_check {
    path                = "/server_info"
    matcher             = "200"
    interval            = 30
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.main.arn
  port              = 80
  protocol          = "HTTP"
  default_action {
    type = "redirect"
    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.main.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type  = "authenticate-cognito"
    order = 1
    authenticate_cognito {
      user_pool_arn              = aws_cognito_user_pool.main.arn
      user_pool_client_id        = aws_cognito_user_pool_client.alb.id
      user_pool_domain           = aws_cognito_user_pool_domain.main.domain
      scope                      = "openid email"
      session_timeout            = var.session_timeout_seconds
      on_unauthenticated_request = "authenticate"
    }
  }
  default_action {
    type             = "forward"
    order            = 2
    target_group_arn = aws_lb_target_group.webserver.arn
  }
}

# GraphQL without a session: 401, not a redirect to the sign-in page (scripts; the UI's own
# GraphQL calls carry the session cookie).
resource "aws_lb_listener_rule" "graphql" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 10

  action {
    type  = "authenticate-cognito"
    order = 1
    authenticate_cognito {
      user_pool_arn              = aws_cognito_user_pool.main.arn
      user_pool_client_id        = aws_cognito_user_pool_client.alb.id
      user_pool_domain           = aws_cognito_user_pool_domain.main.domain
      scope                      = "openid email"
      session_timeout            = var.session_timeout_seconds
      on_unauthenticated_request = "deny"
    }
  }
  action {
    type             = "forward"
    order            = 2
    target_group_arn = aws_lb_target_group.webserver.arn
  }

  condition {
    path_pattern {
      values = ["/graphql*"]
    }
  }
}
