-- A job's newest event of one kind: when, who, what. Binds: job_id, kind.
SELECT created_at, operator, message, details
FROM backfill_events
WHERE job_id = %(job_id)s AND kind = %(kind)s
ORDER BY id DESC
LIMIT 1
