-- Change a job's status (pause, resume, fail) if it is in one of the expected statuses; records why.
-- Binds: job_id, status, reason, from_statuses (text[]).
UPDATE backfill_jobs
SET status = %(status)s, status_reason = %(reason)s, updated_at = now(),
    finished_at = CASE WHEN %(status)s IN ('done', 'failed') THEN now() ELSE finished_at END
WHERE job_id = %(job_id)s AND status = ANY(%(from_statuses)s::text[])
RETURNING *
