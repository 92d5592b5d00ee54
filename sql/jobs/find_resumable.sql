-- The newest unfinished job of the same mode and range, to resume instead of starting anew.
-- Binds: mode, from_ts, to_ts.
SELECT *
FROM backfill_jobs
WHERE mode = %(mode)s AND from_ts = %(from_ts)s AND to_ts = %(to_ts)s
  AND status IN ('pending', 'running', 'paused', 'failed')
ORDER BY created_at DESC
LIMIT 1
