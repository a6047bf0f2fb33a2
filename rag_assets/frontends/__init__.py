"""The front ends: the command line, the GraphQL client, the embedding service, the notification hub
and the Pipes worker. They depend on the definitions, never the reverse (docs/architecture.md)."""
