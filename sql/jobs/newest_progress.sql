-- The newest job of a mode and how far it got: (job_id, snapshots handled, total); no row when none exists.
-- Binds: mode
SELECT job_id, processed_count + error_count AS handled, coalesce(total_count, 0) AS total
FROM backfill_jobs
WHERE mode = %(mode)s
ORDER BY created_at DESC
LIMIT 1
