-- Enqueue one queue_jobs row (the admin API's `backfill_range`, as the runbook's INSERT does); a worker
-- claims it (queue/claim.sql). Binds: type, payload (jsonb).
INSERT INTO queue_jobs (type, payload)
VALUES (%(type)s, %(payload)s)
RETURNING id, type, status, created_at
