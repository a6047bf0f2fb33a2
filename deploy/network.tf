# A VPC of two public subnets (load balancer, NAT gateway) and two private subnets (tasks,
# database) in two AZs. The tasks reach AWS through VPC endpoints (S3: gateway; the others:
# interface endpoints), the internet (through the NAT) only where access.tf says their
# configuration names an external API (deploy/README.md, Egress).

data "aws_availability_zones" "available" {
  state = "available"
}

locals {
  azs = length(var.availability_zones) > 0 ? var.availability_zones : slice(data.aws_availability_zones.available.names, 0, 2)
}

resource "aws_vpc" "main" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true # Cloud Map private DNS and the RDS endpoint resolve in the VPC
  tags                 = { Name = var.name }
}

resource "aws_internet_gateway" "main" {
  vpc_id = aws_vpc.main.id
  tags   = { Name = var.name }
}

resource "aws_subnet" "public" {
  count                   = 2
  vpc_id                  = aws_vpc.main.id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  map_public_ip_on_launch = false
  tags                    = { Name = "${var.name}-public-${count.index}" }
}

resource "aws_subnet" "private" {
  count             = 2
  vpc_id            = aws_vpc.main.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index + 8)
  tags              = { Name = "${var.name}-private-${count.index}" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id
  tags   = { Name = "${var.name}-public" }
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.main.id
}

resource "aws_route_table_association" "public" {
  count          = 2
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_eip" "nat" {
  domain = "vpc"
  tags   = { Name = "${var.name}-nat" }
}

resource "aws_nat_gateway" "main" {
  allocation_id = aws_eip.nat.id
  subnet_id     = aws_subnet.public[0].id
  tags          = { Name = var.name }
  depends_on    = [aws_internet_gateway.main]
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.main.id
  tags   = { Name = "${var.name}-private" }
}

resource "aws_route" "private_nat" {
  route_table_id         = aws_route_table.private.id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.main.id
}

resource "aws_route_table_association" "private" {
  count          = 2
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

# S3 without the NAT (documents, work files, compute logs are most of the traffic).
resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.main.id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]
  tags              = { Name = "${var.name}-s3" }
}

# Interface endpoints of the AWS APIs the tasks call: ECR (image pulls), Logs (awslogs; ECS
# Pipes reads step logs), Secrets Manager (secrets injected at start), SQS (the events queue),
# ECS and EC2 (launching and watching run tasks: EcsRunLauncher, ecs_executor), Lambda (the
# embed function). Private DNS: the SDKs' usual host names resolve to them in the VPC.
locals {
  interface_endpoints = ["ecr.api", "ecr.dkr", "logs", "secretsmanager", "sqs", "ecs", "ec2", "lambda"]
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = toset(local.interface_endpoints)
  vpc_id              = aws_vpc.main.id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true
  tags                = { Name = "${var.name}-${each.key}" }
}

# ---- security groups ----------------------------------------------------------------------
# In:  alb -> webserver:3000; webserver, daemon, run -> code location:4000; the five task
#      groups -> db:5432 and -> endpoints:443.
# Out: every task -> endpoints:443, S3 (the gateway endpoint's prefix list):443, db:5432;
#      webserver, daemon, run -> code location:4000; the internet only as access.tf says.

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "Load balancer: HTTPS (and the HTTP redirect) from alb_ingress_cidrs"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group" "webserver" {
  name        = "${var.name}-webserver"
  description = "Dagster webserver: port 3000 from the load balancer only"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group" "daemon" {
  name        = "${var.name}-daemon"
  description = "Dagster daemon: no inbound"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group" "code_location" {
  name        = "${var.name}-code-location"
  description = "Code location gRPC: port 4000 from webserver, daemon and run tasks only"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group" "run" {
  name        = "${var.name}-run"
  description = "Dagster run (and step) tasks: no inbound"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group" "db_setup" {
  name        = "${var.name}-db-setup"
  description = "The one-off database set-up task: no inbound"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group" "db" {
  name        = "${var.name}-db"
  description = "PostgreSQL: port 5432 from the Dagster tasks and the db-setup task only"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group" "endpoints" {
  name        = "${var.name}-endpoints"
  description = "VPC interface endpoints: HTTPS from the tasks only"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group_rule" "alb_in" {
  for_each          = toset(["80", "443"])
  type              = "ingress"
  security_group_id = aws_security_group.alb.id
  cidr_blocks       = var.alb_ingress_cidrs
  protocol          = "tcp"
  from_port         = tonumber(each.value)
  to_port           = tonumber(each.value)
  description       = each.value == "80" ? "HTTP (redirected to HTTPS)" : "HTTPS"
}

resource "aws_security_group_rule" "alb_to_webserver" {
  type                     = "egress"
  security_group_id        = aws_security_group.alb.id
  source_security_group_id = aws_security_group.webserver.id
  protocol                 = "tcp"
  from_port                = 3000
  to_port                  = 3000
  description              = "The Dagster webserver"
}

# authenticate-cognito: the load balancer calls the Cognito token and user-info endpoints.
resource "aws_security_group_rule" "alb_to_cognito" {
  type              = "egress"
  security_group_id = aws_security_group.alb.id
  cidr_blocks       = ["0.0.0.0/0"]
  protocol          = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "Cognito endpoints (sign-in)"
}

resource "aws_security_group_rule" "webserver_from_alb" {
  type                     = "ingress"
  security_group_id        = aws_security_group.webserver.id
  source_security_group_id = aws_security_group.alb.id
  protocol                 = "tcp"
  from_port                = 3000
  to_port                  = 3000
  description              = "The load balancer"
}

locals {
  grpc_clients = {
    webserver = aws_security_group.webserver.id
    daemon    = aws_security_group.daemon.id
    run       = aws_security_group.run.id
  }
  task_groups = merge(local.grpc_clients, {
    code-location = aws_security_group.code_location.id
    db-setup      = aws_security_group.db_setup.id
  })
  # Every task's way out: AWS APIs (interface endpoints), S3 (gateway endpoint), PostgreSQL.
  task_egress = merge([
    for task, group in local.task_groups : {
      "${task}:endpoints" = {
        group = group, port = 443, to_group = aws_security_group.endpoints.id, description = "AWS APIs (endpoints)"
      }
      "${task}:db" = { group = group, port = 5432, to_group = aws_security_group.db.id, description = "PostgreSQL" }
    }
  ]...)
  grpc_egress = {
    for task, group in local.grpc_clients : "${task}:code-location" => {
      group = group, port = 4000, to_group = aws_security_group.code_location.id, description = "The code location"
    }
  }
  internet_groups = {
    webserver     = aws_security_group.webserver.id
    daemon        = aws_security_group.daemon.id
    code-location = aws_security_group.code_location.id
    run           = aws_security_group.run.id
  }
}

resource "aws_security_group_rule" "code_location_grpc" {
  for_each                 = local.grpc_clients
  type                     = "ingress"
  security_group_id        = aws_security_group.code_location.id
  source_security_group_id = each.value
  protocol                 = "tcp"
  from_port                = 4000
  to_port                  = 4000
  description              = "gRPC from ${each.key}"
}

resource "aws_security_group_rule" "db_postgres" {
  for_each                 = local.task_groups
  type                     = "ingress"
  security_group_id        = aws_security_group.db.id
  source_security_group_id = each.value
  protocol                 = "tcp"
  from_port                = 5432
  to_port                  = 5432
  description              = "PostgreSQL from ${each.key}"
}

resource "aws_security_group_rule" "endpoints_https" {
  for_each                 = local.task_groups
  type                     = "ingress"
  security_group_id        = aws_security_group.endpoints.id
  source_security_group_id = each.value
  protocol                 = "tcp"
  from_port                = 443
  to_port                  = 443
  description              = "HTTPS from ${each.key}"
}

resource "aws_security_group_rule" "task_to_group" {
  for_each                 = merge(local.task_egress, local.grpc_egress)
  type                     = "egress"
  security_group_id        = each.value.group
  source_security_group_id = each.value.to_group
  protocol                 = "tcp"
  from_port                = each.value.port
  to_port                  = each.value.port
  description              = each.value.description
}

# S3 (documents, work files, compute logs, image layers from ECR) through the gateway endpoint.
resource "aws_security_group_rule" "task_to_s3" {
  for_each          = local.task_groups
  type              = "egress"
  security_group_id = each.value
  prefix_list_ids   = [aws_vpc_endpoint.s3.prefix_list_id]
  protocol          = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "S3 (gateway endpoint)"
}

# The internet, through the NAT: only the ports of the external APIs a service's configuration
# names (access.tf), and extra_internet_egress.
resource "aws_security_group_rule" "task_to_internet" {
  for_each          = local.internet_egress
  type              = "egress"
  security_group_id = local.internet_groups[each.value.service]
  cidr_blocks       = ["0.0.0.0/0"]
  protocol          = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  description       = "External APIs of ${each.value.service} (deploy/README.md, Egress)"
}
