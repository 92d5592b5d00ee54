-- Raise (or set) a job's concurrency: the number of workers all its runs together may use. Binds: job_id,
-- concurrency.
UPDATE backfill_jobs SET concurrency = %(concurrency)s, updated_at = now()
WHERE job_id = %(job_id)s
RETURNING *
