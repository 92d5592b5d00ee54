-- Append an event (gate, throttle, pause, resume, placeholders, ...) to a job's audit trail.
-- Binds: job_id, kind, message, details (jsonb), operator (who acted).
INSERT INTO backfill_events (job_id, kind, message, details, operator)
VALUES (%(job_id)s, %(kind)s, %(message)s, %(details)s, %(operator)s)
