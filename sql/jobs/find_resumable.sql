-- The newest unfinished job of the same mode, range and (when given) selector, to resume instead of starting
-- anew: a reprocess job of other snapshots in the same range is another job. Binds: mode, from_ts, to_ts,
-- selector (jsonb, as on the job row, or NULL: any).
SELECT *
FROM backfill_jobs
WHERE mode = %(mode)s AND from_ts = %(from_ts)s AND to_ts = %(to_ts)s
  AND (%(selector)s::jsonb IS NULL OR selector = %(selector)s::jsonb)
  AND status IN ('pending', 'running', 'paused', 'failed')
ORDER BY created_at DESC
LIMIT 1
