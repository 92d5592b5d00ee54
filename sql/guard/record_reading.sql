-- One sampled guard reading. Binds: every column of guard_readings but id and taken_at.
INSERT INTO guard_readings (job_id, probe_ms, baseline_ms, active_sessions, waiting_lock, waiting_lwlock,
    waiting_io, blocked_by_backfill, dead_tuples, autovacuum_running, wal_bytes_per_s, replica_lag_s,
    other_mean_ms, other_baseline_ms, xacts_per_s, state, reason, allowed_workers, batch_size)
VALUES (%(job_id)s, %(probe_ms)s, %(baseline_ms)s, %(active_sessions)s, %(waiting_lock)s, %(waiting_lwlock)s,
    %(waiting_io)s, %(blocked_by_backfill)s, %(dead_tuples)s, %(autovacuum_running)s, %(wal_bytes_per_s)s,
    %(replica_lag_s)s, %(other_mean_ms)s, %(other_baseline_ms)s, %(xacts_per_s)s,
    %(state)s, %(reason)s, %(allowed_workers)s, %(batch_size)s)
