"""Benchmarks for dynamo_snapshot.runtime. Run them with `just bench` (all) or `just bench NAME`."""
