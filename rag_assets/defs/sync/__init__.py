"""The sensors that keep the index in step with the source: S3 events, listing passes."""
