"""A stand-in for one catchup source (`demo`), served by a real `dagster dev` in test_graphql_cli.py."""
