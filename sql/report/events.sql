-- A job's audit trail (created, gate, throttle, outage, paused, resumed, forced, placeholders, canary, verify, ...),
-- oldest first. Binds: job_id.
SELECT e.id, e.kind, e.message, e.details, e.created_at
FROM backfill_events AS e
WHERE e.job_id = %(job_id)s
ORDER BY e.created_at, e.id
