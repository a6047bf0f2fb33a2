# A VPC of two public subnets (load balancer, NAT gateway) and two private subnets (tasks,
# database) in two AZs. The tasks reach AWS APIs, ECR, OpenAI and Pinecone through the NAT.

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

# ---- security groups ----------------------------------------------------------------------
# alb -> webserver:3000; webserver, daemon, run -> code location:4000; all tasks -> db:5432.
# Outbound: the tasks reach AWS APIs and the embedding/vector services over HTTPS.

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

resource "aws_security_group" "db" {
  name        = "${var.name}-db"
  description = "PostgreSQL: port 5432 from the Dagster tasks only"
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
  db_clients = merge(local.grpc_clients, { code_location = aws_security_group.code_location.id })
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
  for_each                 = local.db_clients
  type                     = "ingress"
  security_group_id        = aws_security_group.db.id
  source_security_group_id = each.value
  protocol                 = "tcp"
  from_port                = 5432
  to_port                  = 5432
  description              = "PostgreSQL from ${each.key}"
}

resource "aws_security_group_rule" "tasks_out" {
  for_each          = local.db_clients
  type              = "egress"
  security_group_id = each.value
  cidr_blocks       = ["0.0.0.0/0"]
  protocol          = "-1"
  from_port         = 0
  to_port           = 0
  description       = "AWS APIs, ECR, OpenAI, Pinecone, Metabase, the database and the code location"
}
