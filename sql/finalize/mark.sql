-- Mark a done job finalized (once: a finalized job keeps its first finalized_at). Binds: job_id, operator.
UPDATE backfill_jobs
SET finalized_at = now(), finalized_by = %(operator)s, updated_at = now()
WHERE job_id = %(job_id)s AND status = 'done' AND finalized_at IS NULL
RETURNING *
