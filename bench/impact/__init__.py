"""bench/impact: p50/p90/p99 of a fixed-rate pgbench read load, quiet and during backfill runs (issue 14)."""
