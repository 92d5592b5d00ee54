-- A job's audit trail for its archive (finalize writes it as audit-log.jsonl): every event, oldest first,
-- with who acted. Binds: job_id.
SELECT e.created_at AS at, e.kind, e.message, e.operator, e.details
FROM backfill_events AS e
WHERE e.job_id = %(job_id)s
ORDER BY e.created_at, e.id
