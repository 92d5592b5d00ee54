-- A job's guard readings, oldest first (the report's chart). Binds: job_id.
SELECT taken_at, probe_ms, baseline_ms, active_sessions, waiting_lock, waiting_lwlock, waiting_io,
       blocked_by_backfill, dead_tuples, autovacuum_running, wal_bytes_per_s, replica_lag_s, other_mean_ms, other_baseline_ms,
       state, reason, allowed_workers, batch_size
  FROM guard_readings WHERE job_id = %(job_id)s ORDER BY taken_at, id
