"""Per-user progress notifications from what Dagster recorded."""
