-- A job's committed batches (the throughput time series): when each finished, how long it took, how many
-- snapshots it handled and how many of them failed, oldest first. Small rows only. Binds: job_id.
SELECT b.finished_at, b.duration_ms, b.snapshots, b.failed
FROM backfill_batches AS b
WHERE b.job_id = %(job_id)s
ORDER BY b.finished_at, b.id
